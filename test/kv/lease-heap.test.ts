import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DeadlineHeap } from '../../src/kv/lease/deadline-heap.js';
import { LeaseIdGenerator } from '../../src/kv/lease/lease-id.js';

test('DeadlineHeap agrees with a sorted map under random set/delete', () => {
  const op = fc.tuple(
    fc.constantFrom('set', 'delete', 'peek'),
    fc.integer({ min: 1, max: 20 }),
    fc.integer({ min: 0, max: 50 }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const heap = new DeadlineHeap();
      const model = new Map<bigint, number>();
      for (const [kind, n, ms] of ops) {
        const id = BigInt(n);
        if (kind === 'set') {
          heap.set(id, ms);
          model.set(id, ms);
        } else if (kind === 'delete') {
          assert.equal(heap.delete(id), model.delete(id));
        }
        const expected = [...model].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))[0];
        const top = heap.peek();
        assert.deepEqual(top && [top.id, top.deadlineMs], expected ?? null);
        assert.equal(heap.size, model.size);
      }
    }),
    { numRuns: 300 },
  );
});

test('LeaseIdGenerator follows etcd idutil: member | low 40 bits of ms | counter', () => {
  const nowMs = 1_700_000_000_123;
  const gen = new LeaseIdGenerator(0x1234, nowMs);
  const base = (0x1234n << 48n) | ((BigInt(nowMs) & ((1n << 40n) - 1n)) << 8n);
  assert.equal(gen.next(), base + 1n);
  assert.equal(gen.next(), base + 2n);
  const high = new LeaseIdGenerator(0xffff, nowMs).next();
  assert.ok(high > 0n && high < 1n << 63n, 'the sign bit is cleared');
});
