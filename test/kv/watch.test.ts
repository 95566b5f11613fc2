import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Lessor } from '../../src/kv/lease/lessor.js';
import { isCompactedForWatch, WatchHub } from '../../src/kv/watch/hub.js';
import { responseBytes } from '../../src/kv/watch/response.js';
import { dec, enc, FakeWatchableStore } from './watch-fake-store.js';
import { drain, eventsOf, show, showAll, showEvent } from './watch-helpers.js';

const ALL = { key: new Uint8Array(0), rangeEnd: new Uint8Array([0]) };
const COMPACTED = 'mvcc: required revision has been compacted';

function setup(options: ConstructorParameters<typeof WatchHub>[1] = {}) {
  const store = new FakeWatchableStore();
  const hub = new WatchHub(store, options);
  const stream = hub.openStream();
  return { store, hub, stream };
}

describe('live events', () => {
  test('a key watcher sees puts and deletes of its key only', () => {
    const { store, stream } = setup();
    assert.equal(stream.watch({ key: enc('a') }), 0);
    store.put('a', '1');
    store.put('b', '1');
    store.del('a');
    assert.deepEqual(showAll(stream), [
      'w0 | h1 | created',
      'w0 | h2 | put a=1 @2',
      'w0 | h4 | del a @4',
    ]);
  });

  test('range, from-key and all-keys watchers; one response per revision', () => {
    const { store, stream } = setup();
    const range = stream.watch({ key: enc('b'), rangeEnd: enc('d') });
    const fromKey = stream.watch({ key: enc('c'), rangeEnd: new Uint8Array([0]) });
    const all = stream.watch(ALL);
    drain(stream);
    store.txn([
      { put: 'a', value: '1' },
      { put: 'b', value: '1' },
      { put: 'd', value: '1' },
      { put: 'c', value: '1' },
    ]);
    const responses = drain(stream);
    assert.deepEqual(eventsOf(responses, range).map(showEvent), ['put b=1 @2', 'put c=1 @2']);
    assert.deepEqual(eventsOf(responses, fromKey).map(showEvent), ['put d=1 @2', 'put c=1 @2']);
    assert.equal(eventsOf(responses, all).length, 4);
    assert.equal(responses.length, 3, 'one response per watcher for the revision');
  });

  test('a future start revision skips earlier commits', () => {
    const { store, stream } = setup();
    stream.watch({ key: enc('a'), startRevision: 4 });
    drain(stream);
    for (let i = 0; i < 4; i++) store.put('a', `${i}`);
    assert.deepEqual(eventsOf(drain(stream), 0).map(showEvent), ['put a=2 @4', 'put a=3 @5']);
  });
});

describe('history', () => {
  test('a past start revision replays history, then goes live, with no gap or duplicate', () => {
    const { store, hub, stream } = setup({ syncBatchEventsMax: 3, syncEventsPerTickMax: 3 });
    for (let i = 2; i <= 11; i++) store.put('k', `${i}`);
    stream.watch({ key: enc('k'), startRevision: 4 });
    store.put('k', '12'); // while unsynced: must come from history, exactly once
    const seen: string[] = [];
    for (let t = 0; hub.hasPendingWork(); t++) {
      hub.tick(t);
      seen.push(...eventsOf(drain(stream), 0).map((e) => dec(e.kv.value)));
      assert.ok(t < 20, 'catches up in bounded ticks');
    }
    store.put('k', '13');
    seen.push(...eventsOf(drain(stream), 0).map((e) => dec(e.kv.value)));
    const expected = Array.from({ length: 10 }, (_, i) => `${i + 4}`);
    assert.deepEqual(seen, expected);
  });

  test('a revision larger than the batch is read whole, never split', () => {
    const { store, hub, stream } = setup({ syncBatchEventsMax: 4, syncEventsPerTickMax: 4 });
    store.put('x', '0');
    store.txn(Array.from({ length: 10 }, (_, i) => ({ put: `k${i}`, value: `${i}` })));
    store.put('y', '0');
    stream.watch({ ...ALL, startRevision: 2 });
    drain(stream);
    for (let t = 0; t < 5; t++) hub.tick(t);
    const revisions = drain(stream).map((r) => [...new Set(r.events.map((e) => e.kv.modRevision))]);
    assert.deepEqual(revisions, [[2], [3], [4]]);
  });

  test('history respects filters and prevKv', () => {
    const { store, hub, stream } = setup();
    store.put('a', '1');
    store.put('a', '2');
    store.del('a');
    const puts = stream.watch({ key: enc('a'), startRevision: 2, noDelete: true, prevKv: true });
    const dels = stream.watch({ key: enc('a'), startRevision: 2, noPut: true });
    drain(stream);
    hub.tick(0);
    store.put('a', '3');
    const responses = drain(stream);
    assert.deepEqual(eventsOf(responses, puts).map(showEvent), [
      'put a=1 @2',
      'put a=2 @3 (prev 1)',
      'put a=3 @5',
    ]);
    assert.deepEqual(eventsOf(responses, dels).map(showEvent), ['del a @4']);
  });

  test('live prevKv only when asked for', () => {
    const { store, stream } = setup();
    const withPrev = stream.watch({ key: enc('a'), prevKv: true });
    const without = stream.watch({ key: enc('a') });
    store.put('a', '1');
    store.put('a', '2');
    const responses = drain(stream);
    assert.deepEqual(eventsOf(responses, withPrev).map(showEvent), [
      'put a=1 @2',
      'put a=2 @3 (prev 1)',
    ]);
    assert.deepEqual(eventsOf(responses, without).map(showEvent), ['put a=1 @2', 'put a=2 @3']);
  });
});

describe('compaction', () => {
  test('a start revision below the compact revision is cancelled at once; at it, it streams', () => {
    const { store, hub, stream } = setup();
    for (let i = 0; i < 6; i++) store.put('a', `${i}`);
    store.compact(5);
    assert.equal(stream.watch({ key: enc('a'), startRevision: 4 }), 0);
    assert.equal(stream.watch({ key: enc('a'), startRevision: 5 }), 1);
    assert.equal(stream.watch({ key: enc('a'), startRevision: 6 }), 2);
    hub.tick(0);
    assert.deepEqual(showAll(stream), [
      'w0 | h7 | created',
      `w0 | h7 | canceled(${COMPACTED}) | compact=5`,
      'w1 | h7 | created',
      'w2 | h7 | created',
      'w1 | h7 | put a=3 @5 | put a=4 @6 | put a=5 @7',
      'w2 | h7 | put a=4 @6 | put a=5 @7',
    ]);
    assert.equal(stream.watcherCount, 2);
  });

  test('isCompactedForWatch: strictly below the compaction revision (etcd)', () => {
    assert.equal(isCompactedForWatch(2, 3), true);
    assert.equal(isCompactedForWatch(3, 3), false);
    assert.equal(isCompactedForWatch(4, 3), false);
    assert.equal(isCompactedForWatch(1, 0), false, 'never compacted');
  });

  test('history compacted while a watcher catches up cancels it', () => {
    const { store, hub, stream } = setup({ syncBatchEventsMax: 2, syncEventsPerTickMax: 2 });
    for (let i = 0; i < 8; i++) store.put('a', `${i}`);
    stream.watch({ key: enc('a'), startRevision: 2 });
    hub.tick(0); // delivers revisions 2 and 3
    store.compact(6);
    hub.tick(1);
    const lines = showAll(stream);
    assert.deepEqual(lines, [
      'w0 | h9 | created',
      'w0 | h9 | put a=0 @2',
      'w0 | h9 | put a=1 @3',
      `w0 | h9 | canceled(${COMPACTED}) | compact=6`,
    ]);
    assert.deepEqual(hub.stats(), { streams: 1, synced: 0, unsynced: 0, victims: 0 });
  });
});

describe('watch ids and cancel', () => {
  test('auto ids count up and skip client-chosen ones; duplicates are refused', () => {
    const { stream } = setup();
    assert.equal(stream.watch({ key: enc('a'), watchId: 1 }), 1);
    assert.equal(stream.watch({ key: enc('a') }), 0);
    assert.equal(stream.watch({ key: enc('a') }), 2);
    assert.equal(stream.watch({ key: enc('a'), watchId: 2 }), -1);
    assert.deepEqual(
      showAll(stream).at(-1),
      'w-1 | h1 | created | canceled(mvcc: duplicate watch ID provided on the WatchStream)',
    );
  });

  test('an empty range or a negative start revision is refused', () => {
    const { stream } = setup();
    assert.equal(stream.watch({ key: enc('b'), rangeEnd: enc('a') }), -1);
    assert.equal(stream.watch({ key: enc('b'), startRevision: -1 }), -1);
    const reasons = drain(stream).map((r) => r.cancelReason);
    assert.deepEqual(reasons, [
      'mvcc: watcher range is empty',
      'tandem: invalid watch request: start revision -1',
    ]);
  });

  test('the watcher limit per stream holds', () => {
    const { stream } = setup({ watchersMax: 2 });
    stream.watch({ key: enc('a') });
    stream.watch({ key: enc('a') });
    assert.equal(stream.watch({ key: enc('a') }), -1);
    stream.cancel(0);
    assert.equal(stream.watch({ key: enc('a') }), 2);
  });

  test('cancel acknowledges and stops events; unknown ids are false', () => {
    const { store, hub, stream } = setup();
    const id = stream.watch({ key: enc('a') });
    store.put('a', '1');
    assert.equal(stream.cancel(id), true);
    assert.equal(stream.cancel(id), false);
    store.put('a', '2');
    assert.deepEqual(showAll(stream), [
      'w0 | h1 | created',
      'w0 | h2 | put a=1 @2',
      'w0 | h2 | canceled',
    ]);
    assert.equal(hub.stats().synced, 0);
  });

  test('closing a stream drops its watchers; the hub stops listening on close', () => {
    const { store, hub, stream } = setup();
    stream.watch({ key: enc('a'), startRevision: 1 });
    stream.close();
    assert.deepEqual(hub.stats(), { streams: 0, synced: 0, unsynced: 0, victims: 0 });
    assert.throws(() => stream.watch({ key: enc('a') }), { code: 'WATCH_STREAM_CLOSED' });
    hub.close();
    store.put('a', '1');
  });

  test('a client that floods creates without reading is told to back off', () => {
    const { stream } = setup({ queueResponsesMax: 8, queueControlReserve: 2 });
    for (let i = 0; i < 7; i++) stream.watch({ key: enc('a') });
    assert.equal(stream.backlogged, true);
    assert.throws(() => stream.watch({ key: enc('a') }), { code: 'WATCH_STREAM_BACKLOGGED' });
    drain(stream);
    assert.equal(stream.backlogged, false);
  });
});

describe('progress', () => {
  test('requestProgress answers with the current revision when all watchers are synced', () => {
    const { store, stream } = setup();
    stream.watch({ key: enc('a') });
    store.put('b', '1');
    stream.requestProgress();
    assert.deepEqual(showAll(stream), ['w0 | h1 | created', 'w-1 | h2 | progress']);
  });

  test('requestProgress waits for unsynced watchers to catch up', () => {
    const { store, hub, stream } = setup({ syncBatchEventsMax: 1, syncEventsPerTickMax: 1 });
    store.put('a', '1');
    store.put('a', '2');
    stream.watch({ key: enc('a'), startRevision: 2 });
    stream.requestProgress();
    hub.tick(0);
    hub.tick(1);
    assert.deepEqual(showAll(stream), [
      'w0 | h3 | created',
      'w0 | h3 | put a=1 @2',
      'w0 | h3 | put a=2 @3',
      'w-1 | h3 | progress',
    ]);
  });

  test('periodic progress goes only to idle progressNotify watchers', () => {
    const { store, hub, stream } = setup({ progressIntervalMs: 1000 });
    const idle = stream.watch({ key: enc('idle'), progressNotify: true });
    const busy = stream.watch({ key: enc('busy'), progressNotify: true });
    stream.watch({ key: enc('idle') }); // no progressNotify
    hub.tick(0);
    drain(stream);
    store.put('busy', '1');
    hub.tick(999);
    assert.equal(drain(stream).length, 1, 'not before the interval');
    hub.tick(1000);
    assert.deepEqual(showAll(stream), [`w${idle} | h2 | progress`]);
    hub.tick(2000);
    const expected = [`w${busy} | h2 | progress`, `w${idle} | h2 | progress`];
    assert.deepEqual(showAll(stream).sort(), expected.sort());
  });
});

describe('fragmentation', () => {
  const value = 'v'.repeat(200);
  const bytesMax = 1000;

  function bigRevision(fragment: boolean) {
    const { store, stream } = setup({ responseBytesMax: bytesMax });
    stream.watch({ ...ALL, fragment, prevKv: true });
    drain(stream);
    store.txn(Array.from({ length: 10 }, (_, i) => ({ put: `k${i}`, value })));
    return drain(stream);
  }

  test('fragment=true splits an oversized response into pieces under the limit', () => {
    const pieces = bigRevision(true);
    assert.ok(pieces.length > 1);
    for (const piece of pieces)
      assert.ok(responseBytes(piece.events) < bytesMax || piece.events.length === 1);
    assert.deepEqual(
      pieces.map((p) => p.fragment),
      [...pieces.slice(1).map(() => true), false],
    );
    const keys = pieces.flatMap((p) => p.events.map((e) => dec(e.kv.key)));
    assert.deepEqual(
      keys,
      Array.from({ length: 10 }, (_, i) => `k${i}`),
    );
  });

  test('fragment=false never splits a revision', () => {
    const responses = bigRevision(false);
    assert.equal(responses.length, 1);
    assert.equal(responses[0]!.events.length, 10);
    assert.equal(responses[0]!.fragment, false);
  });

  test('history groups whole revisions into responses under the limit', () => {
    const { store, hub, stream } = setup({ responseBytesMax: bytesMax });
    for (let i = 0; i < 12; i++) store.put(`k${i}`, value);
    stream.watch({ ...ALL, startRevision: 2 });
    drain(stream);
    hub.tick(0);
    const responses = drain(stream);
    assert.ok(responses.length > 1 && responses.length < 12, `${responses.length} responses`);
    for (const r of responses) assert.ok(responseBytes(r.events) <= bytesMax);
    assert.deepEqual(
      responses.flatMap((r) => r.events.map((e) => e.kv.modRevision)),
      Array.from({ length: 12 }, (_, i) => i + 2),
    );
  });
});

describe('slow consumers', () => {
  test('a stream that is not read stays bounded, then catches up in order', () => {
    const limits = { queueResponsesMax: 8, queueControlReserve: 2, syncBatchEventsMax: 5 };
    const { store, hub, stream } = setup({ ...limits, syncEventsPerTickMax: 5 });
    const fast = hub.openStream();
    stream.watch({ key: enc('k') });
    fast.watch({ key: enc('k') });
    drain(stream);
    let fastEvents = 0;
    for (let i = 0; i < 500; i++) {
      store.put('k', `${i}`);
      if (i % 50 === 0) hub.tick(i);
      assert.ok(stream.pendingResponses <= limits.queueResponsesMax);
      fastEvents += eventsOf(drain(fast), 0).length;
    }
    assert.equal(fastEvents, 500, 'a slow stream never holds back a fast one');
    assert.ok(hub.stats().victims + hub.stats().unsynced === 1, JSON.stringify(hub.stats()));
    const seen: number[] = [];
    for (let t = 0; seen.length < 500; t++) {
      hub.tick(1000 + t);
      for (const r of drain(stream, 3)) seen.push(...r.events.map((e) => Number(dec(e.kv.value))));
      assert.ok(t < 1000, 'catches up');
    }
    assert.deepEqual(
      seen,
      Array.from({ length: 500 }, (_, i) => i),
    );
    store.put('k', 'live');
    hub.tick(5000);
    assert.deepEqual(drain(stream).map(show), ['w0 | h502 | put k=live @502']);
    assert.equal(hub.stats().synced, 2);
  });

  test('a live revision bigger than the victim limit is re-read from history instead', () => {
    const { store, hub, stream } = setup({
      queueResponsesMax: 4,
      queueControlReserve: 2,
      pendingEventsMax: 3,
      syncBatchEventsMax: 3,
      syncEventsPerTickMax: 3,
    });
    stream.watch(ALL);
    drain(stream);
    store.put('a', '1');
    store.put('b', '1'); // the queue is now at its event limit
    store.txn(Array.from({ length: 5 }, (_, i) => ({ put: `k${i}`, value: '1' })));
    assert.deepEqual(hub.stats(), { streams: 1, synced: 0, unsynced: 1, victims: 0 });
    hub.tick(0);
    assert.equal(drain(stream).length, 2);
    hub.tick(1);
    assert.deepEqual(
      drain(stream).map((r) => r.events.length),
      [5],
    );
    assert.equal(hub.stats().synced, 1);
    store.put('c', '1');
    store.put('d', '1');
    store.put('e', '1'); // a small revision is held by the victim
    assert.deepEqual(hub.stats(), { streams: 1, synced: 0, unsynced: 0, victims: 1 });
    drain(stream);
    hub.tick(2);
    assert.deepEqual(drain(stream).map(show), ['w0 | h7 | put e=1 @7']);
    assert.equal(hub.stats().synced, 1);
  });
});

describe('stream plumbing', () => {
  test('onReadable fires when the queue turns non-empty, not on every response', () => {
    const store = new FakeWatchableStore();
    const hub = new WatchHub(store);
    let calls = 0;
    const stream = hub.openStream(() => {
      calls += 1;
    });
    stream.watch({ key: enc('a') });
    store.put('a', '1');
    assert.equal(calls, 1);
    drain(stream);
    store.put('a', '2');
    assert.equal(calls, 2);
  });

  test('a response bigger than the byte budget still passes through an empty queue', () => {
    const { store, stream } = setup({ queueBytesMax: 2_000, responseBytesMax: 1_000 });
    stream.watch(ALL);
    drain(stream);
    store.put('a', 'v'.repeat(5_000));
    store.put('b', '1'); // refused: the big one fills the byte budget
    assert.equal(stream.pendingResponses, 1);
    assert.equal(drain(stream)[0]!.events[0]!.kv.value.length, 5_000);
  });

  test('a lease revoke deleting its keys in one revision reaches watchers as one response', () => {
    const { store, stream } = setup();
    const lessor = new Lessor();
    lessor.grant(1n, 60, 0);
    for (const k of ['a', 'b', 'c']) {
      store.txn([{ put: k, value: '1', lease: 1n }]);
      lessor.attach(1n, enc(k));
    }
    stream.watch(ALL);
    drain(stream);
    const keys = lessor.revoke(1n);
    store.txn(keys.map((k) => ({ del: dec(k) })));
    assert.deepEqual(showAll(stream), ['w0 | h5 | del a @5 | del b @5 | del c @5']);
  });
});

describe('snapshot restore', () => {
  test('synced watchers read the revisions a snapshot skipped from history', () => {
    const { store, hub, stream } = setup();
    const idle = stream.watch({ key: enc('a') });
    const busy = stream.watch({ key: enc('b') });
    store.put('b', '1'); // rev 2
    store.put('c', '1'); // rev 3: nobody's key, but both watchers have seen it
    drain(stream);
    store.installSnapshot(
      [
        { put: 'a', value: 's' },
        { put: 'b', value: 's' },
      ],
      0,
    ); // rev 4
    hub.storeRestored();
    hub.tick(0);
    store.put('a', 'live');
    const responses = drain(stream);
    assert.deepEqual(eventsOf(responses, idle).map(showEvent), ['put a=s @4', 'put a=live @5']);
    assert.deepEqual(eventsOf(responses, busy).map(showEvent), ['put b=s @4']);
  });

  test('a snapshot that compacted the gap cancels the watchers with compactRevision', () => {
    const { store, hub, stream } = setup();
    stream.watch({ key: enc('a') });
    drain(stream);
    // Two revisions past the watcher, compacted at the second: the one it needs (2) is gone.
    store.installSnapshot([{ put: 'a', value: 's' }], 0);
    store.installSnapshot([{ put: 'a', value: 't' }], 3);
    hub.storeRestored();
    hub.tick(0);
    assert.deepEqual(showAll(stream), [`w0 | h3 | canceled(${COMPACTED}) | compact=3`]);
  });
});
