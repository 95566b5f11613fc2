/**
 * Ranges in slices (KvStateMachine.rangeInSlices, which serves client Ranges): on both backends,
 * the answer equals `range` at the moment the call began, for any range, limit, revision,
 * count-only, keys-only and sort, whatever writes land between the slices; a compaction past the
 * read revision between slices fails it with COMPACTED, one at or below does not; a range that
 * fits one slice never pauses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type KvRequest, rangeRequest, SortOrder, SortTarget } from '../../src/kv/api-types.js';
import { KvError } from '../../src/kv/errors.js';
import { encodeCommand } from '../../src/kv/mvcc/command.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import { BACKENDS, cmp, compact, del, enc, FakeLessor, put, txn } from './mvcc-helpers.js';

function applyAll(sm: KvStateMachine, reqs: readonly KvRequest[]): void {
  for (const r of reqs) sm.apply(sm.appliedIndex() + 1, encodeCommand(r));
}

/** The answer, or the KvError code it threw. */
async function outcome(f: () => unknown): Promise<unknown> {
  try {
    return await f();
  } catch (error) {
    return (error as KvError).code;
  }
}

/**
 * A state machine on a fresh `kind` backend holding `history`, and a pause that applies the next
 * batch of `during` (round robin) each time, as writes landing between slices.
 */
async function withStore(
  kind: (typeof BACKENDS)[number],
  history: readonly KvRequest[],
  during: readonly (readonly KvRequest[])[],
  body: (sm: KvStateMachine, pause: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const { backend, cleanup } = kind.create();
  try {
    const sm = KvStateMachine.open(backend, { lessor: new FakeLessor() });
    applyAll(sm, history);
    let pauses = 0;
    const pause = async () => {
      applyAll(sm, during[pauses % Math.max(1, during.length)] ?? []);
      pauses++;
    };
    await body(sm, pause);
  } finally {
    await cleanup();
  }
}

const keyName = fc.integer({ min: 0, max: 40 }).map((i) => `k${String(i).padStart(2, '0')}`);
const write: fc.Arbitrary<KvRequest> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(keyName, fc.string({ maxLength: 4 })).map(([k, v]) => put(k, v)),
  },
  { weight: 1, arbitrary: keyName.map((k) => del(k)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(keyName, keyName)
      .map(([a, b]) => [a, b].sort())
      .map(([lo, hi]) => del(lo!, { end: hi! })),
  },
);

/** A range request over the keys above: a span, a prefix-like span, from-key, or one key. */
const rangeReq = fc
  .record({
    from: keyName,
    span: fc.constantFrom('to', 'from-key', 'one', 'all'),
    to: keyName,
    limit: fc.constantFrom(0, 0, 1, 3, 10),
    revBack: fc.constantFrom(0, 0, 1, 5),
    countOnly: fc.boolean(),
    keysOnly: fc.boolean(),
    sort: fc.constantFrom(
      [SortOrder.None, SortTarget.Key],
      [SortOrder.Descend, SortTarget.Key],
      [SortOrder.Ascend, SortTarget.Mod],
      [SortOrder.Descend, SortTarget.Value],
    ),
    minMod: fc.constantFrom(0, 0, 5),
  })
  .map((r) => (current: number) => {
    const key = r.span === 'all' ? enc('\0') : enc(r.from);
    const rangeEnd =
      r.span === 'one'
        ? new Uint8Array(0)
        : r.span === 'to'
          ? enc(r.to > r.from ? r.to : `${r.from}\xff`)
          : Uint8Array.of(0);
    return rangeRequest({
      key,
      rangeEnd,
      limit: r.limit,
      revision: r.revBack === 0 ? 0 : Math.max(1, current - r.revBack),
      countOnly: r.countOnly,
      keysOnly: r.keysOnly,
      sortOrder: r.sort[0] as SortOrder,
      sortTarget: r.sort[1] as SortTarget,
      minModRevision: r.minMod,
    });
  });

for (const kind of BACKENDS) {
  describe(`ranges in slices (${kind.name} backend)`, () => {
    test('the answer is range() at the start, whatever is written between the slices', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(write, { minLength: 1, maxLength: 60 }),
          fc.array(rangeReq, { minLength: 1, maxLength: 5 }),
          fc.array(fc.array(write, { maxLength: 4 }), { maxLength: 30 }),
          fc.integer({ min: 1, max: 7 }),
          (history, ranges, during, sliceKeys) =>
            withStore(kind, history, during, async (sm, pause) => {
              for (const make of ranges) {
                const req = make(sm.store.currentRevision());
                const expected = await outcome(() => sm.range(req));
                const got = await outcome(() => sm.rangeInSlices(req, pause, sliceKeys));
                assert.deepEqual(got, expected);
              }
            }),
        ),
        { numRuns: kind.name === 'lmdb' ? 60 : 200 },
      );
    });

    test('a read-only txn: readTxn() at the start, whatever is written between the slices', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(write, { minLength: 1, maxLength: 40 }),
          fc.array(rangeReq, { minLength: 1, maxLength: 3 }),
          keyName,
          fc.array(fc.array(write, { maxLength: 4 }), { maxLength: 20 }),
          fc.integer({ min: 1, max: 5 }),
          (history, ranges, compared, during, sliceKeys) =>
            withStore(kind, history, during, async (sm, pause) => {
              const rev = sm.store.currentRevision();
              const reads = ranges.map((make) => ({ type: 'range' as const, request: make(rev) }));
              // Both branches read; the compare picks one, as a lock client's Txn does.
              const t = txn({
                compare: [cmp('version', compared, '>', 0)],
                success: reads,
                failure: [txn({ success: reads.slice(0, 1) })],
              });
              assert.equal(t.type, 'txn');
              const req = t.request as Parameters<KvStateMachine['readTxn']>[0];
              const expected = await outcome(() => sm.readTxn(req));
              const got = await outcome(() => sm.readTxnInSlices(req, pause, sliceKeys));
              assert.deepEqual(got, expected);
            }),
        ),
        { numRuns: kind.name === 'lmdb' ? 40 : 150 },
      );
    });

    test('a compaction past the read revision between slices: COMPACTED; at it: the same answer', async () => {
      const { backend, cleanup } = kind.create();
      try {
        const sm = KvStateMachine.open(backend, { lessor: new FakeLessor() });
        applyAll(
          sm,
          Array.from({ length: 20 }, (_, i) => put(`c${String(i).padStart(2, '0')}`, `${i}`)),
        );
        const all = rangeRequest({ key: enc('c'), rangeEnd: enc('d') });
        const readRev = sm.store.currentRevision();
        const expected = sm.range(all);
        assert.equal(expected.kvs.length, 20);
        // At the read revision: what it reads is kept.
        const atRev = await sm.rangeInSlices(
          all,
          async () => applyAll(sm, [put('c05', 'new'), compact(readRev)]),
          4,
        );
        assert.deepEqual(atRev, expected);
        // Past it: refused, never a mix of two revisions.
        const before = sm.range(all);
        const past = sm.rangeInSlices(
          all,
          async () => applyAll(sm, [put('c06', 'newer'), compact(sm.store.currentRevision())]),
          4,
        );
        await assert.rejects(past, (e) => e instanceof KvError && e.code === 'COMPACTED');
        assert.notDeepEqual(sm.range(all), before, 'the writes between slices did land');
      } finally {
        await cleanup();
      }
    });

    test('a range that fits in one slice never pauses; a larger one pauses once per extra slice', async () => {
      const { backend, cleanup } = kind.create();
      try {
        const sm = KvStateMachine.open(backend, { lessor: new FakeLessor() });
        applyAll(
          sm,
          Array.from({ length: 10 }, (_, i) => put(`p${i}`, 'v')),
        );
        let pauses = 0;
        const pause = async () => {
          pauses++;
        };
        const r = await sm.rangeInSlices(
          rangeRequest({ key: enc('p'), rangeEnd: enc('q') }),
          pause,
          10,
        );
        assert.equal(r.kvs.length, 10);
        assert.equal(pauses, 0);
        const s = await sm.rangeInSlices(
          rangeRequest({ key: enc('p'), rangeEnd: enc('q') }),
          pause,
          3,
        );
        assert.equal(s.count, 10);
        assert.equal(pauses, 3, 'slices of 3, 3, 3, 1');
      } finally {
        await cleanup();
      }
    });
  });
}
