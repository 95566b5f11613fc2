import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EventType, type KeyRange, type KvEvent, type WatchableStore } from '../../src/kv/types.js';
import { WatchHub } from '../../src/kv/watch/hub.js';
import { rangeContains } from '../../src/kv/watch/key-range.js';
import type { WatchResponse } from '../../src/kv/watch/response.js';
import type { WatchStream } from '../../src/kv/watch/stream.js';
import { enc, type FakeOp } from './watch-fake-store.js';
import { drain, showEvent } from './watch-helpers.js';

const KEYS = ['a', 'b', 'c', 'd'] as const;
const RANGES: readonly KeyRange[] = [
  { key: enc('a'), rangeEnd: new Uint8Array(0) },
  { key: enc('c'), rangeEnd: new Uint8Array(0) },
  { key: enc('b'), rangeEnd: enc('d') },
  { key: new Uint8Array(0), rangeEnd: new Uint8Array([0]) },
];

type Step =
  | { kind: 'write'; ops: FakeOp[] }
  | {
      kind: 'watch';
      stream: number;
      range: number;
      back: number;
      noPut: boolean;
      noDelete: boolean;
      prevKv: boolean;
      fragment: boolean;
    }
  | { kind: 'drain'; stream: number; count: number }
  | { kind: 'tick' }
  | { kind: 'cancel'; stream: number; pick: number }
  | { kind: 'compact'; back: number };

const key = fc.constantFrom(...KEYS);
const fakeOp: fc.Arbitrary<FakeOp> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ put: key, value: fc.constantFrom('x', 'yy', 'z'.repeat(90)) }),
  },
  { weight: 1, arbitrary: fc.record({ del: key }) },
);
const streamIndex = fc.integer({ min: 0, max: 1 });
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      ops: fc.array(fakeOp, { minLength: 1, maxLength: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('watch' as const),
      stream: streamIndex,
      range: fc.integer({ min: 0, max: RANGES.length - 1 }),
      back: fc.integer({ min: -2, max: 12 }), // start = current - back; < 0 means future, 12 means 0
      noPut: fc.boolean(),
      noDelete: fc.boolean(),
      prevKv: fc.boolean(),
      fragment: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('drain' as const),
      stream: streamIndex,
      count: fc.integer({ min: 0, max: 6 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('tick' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('cancel' as const),
      stream: streamIndex,
      pick: fc.nat(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('compact' as const),
      back: fc.integer({ min: 2, max: 20 }),
    }),
  },
);

interface Expectation {
  readonly stream: number;
  readonly watchId: number;
  readonly range: KeyRange;
  readonly firstRevision: number;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly prevKv: boolean;
}

function reference(history: readonly KvEvent[], w: Expectation): string[] {
  return history
    .filter((e) => e.kv.modRevision >= w.firstRevision && rangeContains(w.range, e.kv.key))
    .filter((e) => !(e.type === EventType.Put ? w.noPut : w.noDelete))
    .map((e) => showEvent(w.prevKv ? e : { ...e, prevKv: null }));
}

/**
 * What the contract needs to drive a store: any WatchableStore plus a way to commit a batch of
 * puts/deletes as one revision and to compact. The fake and the real MVCC store both fit.
 */
export interface StoreUnderTest {
  readonly store: WatchableStore;
  /** Commits `ops` as one transaction (no revision when nothing changes, as etcd). */
  write(ops: readonly FakeOp[]): void;
  compact(revision: number): void;
}

interface Totals {
  events: number;
  watchers: number;
  compacted: number;
}

function run(steps: readonly Step[], makeStore: () => StoreUnderTest, totals: Totals): void {
  const limits = {
    queueResponsesMax: 6,
    queueControlReserve: 2,
    pendingEventsMax: 3,
    syncBatchEventsMax: 3,
    syncEventsPerTickMax: 5,
    responseBytesMax: 300,
  };
  const subject = makeStore();
  const store = subject.store;
  const history: KvEvent[] = [];
  store.onCommit((_revision, events) => history.push(...events));
  const hub = new WatchHub(store, limits);
  const streams: WatchStream[] = [hub.openStream(), hub.openStream()];
  const received: WatchResponse[][] = [[], []];
  const watchers: Expectation[] = [];
  const take = (i: number, n: number) => received[i]!.push(...drain(streams[i]!, n));
  let now = 0;

  for (const s of steps) {
    switch (s.kind) {
      case 'write':
        subject.write(s.ops);
        break;
      case 'watch': {
        const stream = streams[s.stream]!;
        if (stream.backlogged) take(s.stream, Number.POSITIVE_INFINITY);
        const current = store.currentRevision();
        const start = s.back === 12 ? 0 : Math.max(1, current - s.back);
        const { stream: _, range, back: __, kind: ___, ...flags } = s;
        const watchId = stream.watch({ ...RANGES[range]!, startRevision: start, ...flags });
        assert.ok(watchId >= 0);
        const firstRevision = start === 0 ? current + 1 : start;
        watchers.push({
          stream: s.stream,
          watchId,
          range: RANGES[range]!,
          firstRevision,
          ...flags,
        });
        break;
      }
      case 'drain':
        take(s.stream, s.count);
        break;
      case 'tick':
        now += 10;
        hub.tick(now);
        break;
      case 'cancel': {
        const mine = watchers.filter((w) => w.stream === s.stream);
        const stream = streams[s.stream]!;
        if (mine.length === 0) break;
        if (stream.backlogged) take(s.stream, Number.POSITIVE_INFINITY);
        stream.cancel(mine[s.pick % mine.length]!.watchId);
        break;
      }
      case 'compact':
        if (store.currentRevision() - s.back > store.compactRevision()) {
          subject.compact(store.currentRevision() - s.back);
        }
        break;
    }
    for (const stream of streams)
      assert.ok(stream.pendingResponses <= limits.queueResponsesMax + 20);
  }
  // Liveness: a consumer that reads everything catches every watcher up.
  for (
    let round = 0;
    hub.hasPendingWork() || streams.some((x) => x.pendingResponses > 0);
    round++
  ) {
    assert.ok(round < 10_000, 'catch-up terminates');
    now += 10;
    hub.tick(now);
    take(0, Number.POSITIVE_INFINITY);
    take(1, Number.POSITIVE_INFINITY);
  }
  for (const w of watchers) check(w, received[w.stream]!, history, totals);
}

function check(
  w: Expectation,
  responses: readonly WatchResponse[],
  history: readonly KvEvent[],
  totals: Totals,
): void {
  const mine = responses.filter((r) => r.watchId === w.watchId);
  const events: string[] = [];
  let pieces: string[] = [];
  let end: WatchResponse | undefined;
  for (const r of mine) {
    assert.equal(end, undefined, 'nothing after the cancel');
    if (r.canceled) end = r;
    pieces.push(...r.events.map(showEvent));
    if (!r.fragment) {
      events.push(...pieces);
      pieces = [];
    }
  }
  assert.deepEqual(pieces, [], 'a fragmented response is always completed');
  const expected = reference(history, w);
  totals.events += events.length;
  totals.watchers += 1;
  if (end?.compactRevision) totals.compacted += 1;
  if (end === undefined) {
    assert.deepEqual(events, expected, `watcher ${w.watchId}`);
  } else {
    // Cancelled (by the client or by compaction): a prefix, with no gap and no duplicate.
    assert.deepEqual(events, expected.slice(0, events.length), `watcher ${w.watchId} prefix`);
    if (end.compactRevision > 0) {
      // Cancelled for compaction only if the revision it needed next was compacted away:
      // strictly below the compaction revision (etcd's rule).
      const last = events.at(-1);
      const needed = last === undefined ? w.firstRevision : Number(/@(\d+)/.exec(last)![1]) + 1;
      assert.ok(needed < end.compactRevision, `needed ${needed}, compacted ${end.compactRevision}`);
    }
  }
}

/**
 * The watch contract as a property: random writes interleaved with watchers created at random
 * start revisions (past, current, future), random filters, slow and fast draining, ticks,
 * cancels and compactions. Every watcher must see exactly its events, in order, with no gap and
 * no duplicate; one cancelled must have seen a prefix. Tiny limits force victims, unsynced
 * catch-up, fragmentation and backpressure.
 */
export function checkWatchContract(makeStore: () => StoreUnderTest, numRuns: number): void {
  const totals = { events: 0, watchers: 0, compacted: 0 };
  fc.assert(
    fc.property(fc.array(step, { minLength: 10, maxLength: 200, size: 'max' }), (steps) =>
      run(steps, makeStore, totals),
    ),
    { numRuns },
  );
  // The generator must exercise the interesting paths, or the property proves little.
  assert.ok(totals.events > 25 * numRuns && totals.watchers > 2 * numRuns, JSON.stringify(totals));
  assert.ok(totals.compacted > numRuns / 20, JSON.stringify(totals));
}
