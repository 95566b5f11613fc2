/**
 * Compaction deletes exactly the records etcd's rule removes, and no other: on both backends,
 * after random puts, deletes and compactions, the key bucket holds, for each key, every revision
 * above the last compaction revision C, the latest revision at or below C when it is a put, and
 * a delete exactly at C (kept for watchers). Computed from a plain model of the history, not from
 * the key index the store itself uses to find what to delete.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { KvRequest } from '../../src/kv/api-types.js';
import { encodeCommand } from '../../src/kv/mvcc/command.js';
import { bytesToRevision, isTombstone } from '../../src/kv/mvcc/revision.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import { BACKENDS, compact, del, FakeLessor, put } from './mvcc-helpers.js';

type Step = { kind: 'put' | 'del'; key: string } | { kind: 'compact'; back: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.integer({ min: 0, max: 5 }).map((i) => ({ kind: 'put' as const, key: `k${i}` })),
  },
  {
    weight: 2,
    arbitrary: fc.integer({ min: 0, max: 5 }).map((i) => ({ kind: 'del' as const, key: `k${i}` })),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 6 }).map((back) => ({ kind: 'compact' as const, back })),
  },
);

for (const kind of BACKENDS) {
  test(`compaction leaves exactly etcd's records (${kind.name} backend)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 60 }), async (steps) => {
        const { backend, cleanup } = kind.create();
        try {
          const sm = KvStateMachine.open(backend, { lessor: new FakeLessor() });
          const apply = (r: KvRequest) => sm.apply(sm.appliedIndex() + 1, encodeCommand(r));
          // The model: each key's history of (revision, is a delete); the compaction revision.
          const history = new Map<string, { rev: number; tombstone: boolean }[]>();
          const live = new Set<string>();
          let rev = sm.store.currentRevision();
          let compacted = 0;
          for (const s of steps) {
            if (s.kind === 'compact') {
              const at = rev - s.back;
              if (at <= compacted || at < 1) continue; // refused by the store: not a step
              apply(compact(at));
              compacted = at;
              continue;
            }
            if (s.kind === 'del' && !live.has(s.key)) continue; // deletes nothing: no revision
            apply(s.kind === 'put' ? put(s.key, 'v') : del(s.key));
            rev++;
            assert.equal(sm.store.currentRevision(), rev);
            const h = history.get(s.key) ?? [];
            h.push({ rev, tombstone: s.kind === 'del' });
            history.set(s.key, h);
            if (s.kind === 'put') live.add(s.key);
            else live.delete(s.key);
          }
          const expected: string[] = [];
          for (const h of history.values()) {
            const atOrBelow = h.filter((x) => x.rev <= compacted);
            const last = atOrBelow.at(-1);
            if (last !== undefined && (!last.tombstone || last.rev === compacted)) {
              expected.push(`${last.rev}${last.tombstone ? 't' : ''}`);
            }
            for (const x of h)
              if (x.rev > compacted) expected.push(`${x.rev}${x.tombstone ? 't' : ''}`);
          }
          const held: string[] = [];
          backend.scan('key', new Uint8Array(0), null, (k) => {
            const r = bytesToRevision(k);
            assert.equal(r.sub, 0, 'one change per revision here');
            held.push(`${r.main}${isTombstone(k) ? 't' : ''}`);
            return true;
          });
          assert.deepEqual(held.sort(), expected.sort());
        } finally {
          await cleanup();
        }
      }),
      { numRuns: kind.name === 'lmdb' ? 80 : 300 },
    );
  });
}
