/**
 * A compaction that drops more records than a batch holds deletes them afterwards, a batch per
 * backend transaction (MvccStore.compactStep), as etcd defers its physical compaction. Whenever
 * the batches run, and across a reopen in the middle (a crash: the store rebuilds its index from
 * what is left and finishes the deletes), the end state is the one a compaction in one go leaves:
 * on both backends, the same key bucket, the same reads and the same hash() at every point.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { KvRequest, RangeRequest } from '../../src/kv/api-types.js';
import type { Backend } from '../../src/kv/backend/backend.js';
import { encodeCommand } from '../../src/kv/mvcc/command.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import { BACKENDS, compact, del, FakeLessor, get, put } from './mvcc-helpers.js';

type Step =
  | { kind: 'put' | 'del'; key: string }
  | { kind: 'compact'; back: number }
  | { kind: 'batches'; count: number }
  | { kind: 'reopen' };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.integer({ min: 0, max: 2 }).map((i) => ({ kind: 'put' as const, key: `k${i}` })),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 2 }).map((i) => ({ kind: 'del' as const, key: `k${i}` })),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 4 }).map((back) => ({ kind: 'compact' as const, back })),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1, max: 3 }).map((count) => ({ kind: 'batches' as const, count })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

/** Every record of the key bucket, as hex key → hex value. */
function keyBucket(backend: Backend): Map<string, string> {
  const out = new Map<string, string>();
  backend.scan('key', new Uint8Array(0), null, (k, v) => {
    out.set(Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex'));
    return true;
  });
  return out;
}

/** What a reader sees: every key's value, version and revisions at the current revision. */
function visible(sm: KvStateMachine): string {
  const all = get('k', { end: 'l' }).request as RangeRequest;
  return JSON.stringify(
    sm
      .range(all)
      .kvs.map((kv) => [
        Buffer.from(kv.key).toString(),
        Buffer.from(kv.value).toString(),
        kv.createRevision,
        kv.modRevision,
        kv.version,
      ]),
  );
}

for (const kind of BACKENDS) {
  test(`a compaction's deletes in batches end as one in one go, across reopens (${kind.name} backend)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        // Long enough for compactions that drop more than a batch (fast-check's arrays are short).
        fc.array(step, { minLength: 30, maxLength: 80 }),
        fc.integer({ min: 1, max: 3 }),
        async (steps, batch) => {
          const batched = kind.create();
          const inOneGo = kind.create();
          try {
            const open = (backend: Backend, compactBatchRecords: number) =>
              KvStateMachine.open(backend, { lessor: new FakeLessor(), compactBatchRecords });
            let sm = open(batched.backend, batch);
            const reference = open(inOneGo.backend, 1_000_000);
            const apply = (r: KvRequest): void => {
              const index = sm.appliedIndex() + 1;
              const a = sm.apply(index, encodeCommand(r));
              const b = reference.apply(index, encodeCommand(r));
              assert.equal(a.kind, b.kind, `${r.type}: ${JSON.stringify([a, b])}`);
            };
            const live = new Set<string>();
            for (const s of steps) {
              if (s.kind === 'compact') {
                const at = sm.store.currentRevision() - s.back;
                if (at <= sm.store.compactRevision() || at < 1) continue;
                apply(compact(at));
              } else if (s.kind === 'batches') {
                for (let i = 0; i < s.count; i++) {
                  const before = keyBucket(batched.backend).size;
                  const pending = sm.store.compactionPending();
                  const more = sm.store.compactStep();
                  const deleted = before - keyBucket(batched.backend).size;
                  assert.ok(
                    deleted <= batch,
                    `a batch deleted ${deleted} records, more than ${batch}`,
                  );
                  if (pending && more) assert.equal(deleted, batch);
                }
              } else if (s.kind === 'reopen') {
                sm = open(batched.backend, batch);
              } else {
                if (s.kind === 'del' && !live.has(s.key)) continue;
                apply(s.kind === 'put' ? put(s.key, `v${sm.appliedIndex()}`) : del(s.key));
                if (s.kind === 'put') live.add(s.key);
                else live.delete(s.key);
              }
              // Whatever is left to delete, readers see the same state and the same hash.
              assert.equal(sm.store.compactRevision(), reference.store.compactRevision());
              assert.equal(visible(sm), visible(reference));
              assert.deepEqual(sm.hash(), reference.hash());
              // The key bucket: the one-go state plus exactly the records still to delete.
              const held = keyBucket(batched.backend);
              const want = keyBucket(inOneGo.backend);
              const extra = [...held.keys()].filter((k) => !want.has(k)).sort();
              const pending = sm.store
                .compactionPendingRecords()
                .map((k) => Buffer.from(k).toString('hex'))
                .filter((k) => held.has(k))
                .sort();
              assert.deepEqual(extra, pending);
              for (const [k, v] of want) assert.equal(held.get(k), v, `record ${k}`);
            }
            while (sm.store.compactStep()) {}
            assert.equal(sm.store.compactionPending(), false);
            assert.deepEqual(keyBucket(batched.backend), keyBucket(inOneGo.backend));
            assert.equal(
              sm.store.finishedCompactRevision(),
              reference.store.finishedCompactRevision(),
            );
            // And once finished, a reopen has nothing left to do.
            assert.equal(open(batched.backend, batch).store.compactionPending(), false);
          } finally {
            await batched.cleanup();
            await inOneGo.cleanup();
          }
        },
      ),
      { numRuns: kind.name === 'lmdb' ? 40 : 200 },
    );
  });
}

test('a compaction of more than a batch leaves its deletes to compactStep: none in its own apply', async () => {
  const { backend, cleanup } = BACKENDS[0]!.create();
  try {
    const sm = KvStateMachine.open(backend, { lessor: new FakeLessor(), compactBatchRecords: 10 });
    let index = 0;
    for (let i = 0; i < 50; i++) sm.apply(++index, encodeCommand(put('k', `v${i}`)));
    const records = keyBucket(backend).size;
    sm.apply(++index, encodeCommand(compact(sm.store.currentRevision())));
    assert.equal(keyBucket(backend).size, records, 'the apply deleted nothing');
    assert.equal(sm.store.compactionPendingRecords().length, 49);
    let steps = 0;
    while (sm.store.compactStep()) steps++;
    assert.equal(steps + 1, 5, 'five batches of ten');
    assert.equal(keyBucket(backend).size, 1);
    assert.equal(sm.store.finishedCompactRevision(), sm.store.compactRevision());
  } finally {
    await cleanup();
  }
});
