/**
 * WatchHub.refuseAll: when the member stops serving clients (demoted to a standby), every watcher
 * is cancelled with a reason the client sees (etcd's cancel_reason) and new ones are refused; a
 * cancel that finds the stream's queue full is owed, not lost; null serves again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WatchHub } from '../../src/kv/watch/hub.js';
import { enc, FakeWatchableStore } from './watch-fake-store.js';
import { drain, show } from './watch-helpers.js';

const REASON = 'tandem: member n3 is a cold standby and serves no client traffic';

test('every watcher is cancelled with the reason; creates are refused until served again', () => {
  const store = new FakeWatchableStore();
  const hub = new WatchHub(store);
  const stream = hub.openStream();
  const a = stream.watch({ key: enc('a') });
  const b = stream.watch({ key: enc('b') });
  drain(stream);
  store.put('a', '1');
  hub.refuseAll(REASON);
  store.put('b', '2'); // after the cancel: never delivered
  const lines = drain(stream).map(show);
  assert.deepEqual(lines, [
    `w${a} | h2 | put a=1 @2`,
    `w${a} | h2 | canceled(${REASON})`,
    `w${b} | h2 | canceled(${REASON})`,
  ]);
  assert.equal(stream.watcherCount, 0);
  assert.equal(stream.watch({ key: enc('c') }), -1);
  assert.deepEqual(drain(stream).map(show), [`w-1 | h3 | created | canceled(${REASON})`]);
  // A stream opened while refusing refuses too; serving again accepts watchers.
  const late = hub.openStream();
  assert.equal(late.watch({ key: enc('d') }), -1);
  hub.refuseAll(null);
  const again = stream.watch({ key: enc('a') });
  assert.ok(again >= 0);
  store.put('a', '3');
  assert.deepEqual(drain(stream).map(show), [
    `w${again} | h3 | created`,
    `w${again} | h4 | put a=3 @4`,
  ]);
});

test('cancels that do not fit a full queue are owed and delivered as the client reads', () => {
  const store = new FakeWatchableStore();
  const hub = new WatchHub(store, { queueResponsesMax: 8, queueControlReserve: 2 });
  const stream = hub.openStream();
  const ids: number[] = [];
  for (let i = 0; i < 5; i++) ids.push(stream.watch({ key: enc('k') }));
  drain(stream);
  for (let i = 0; i < 3; i++) store.put('k', String(i)); // 5 watchers x 3 revisions: full
  assert.equal(stream.pendingResponses, 6, 'events fill the queue up to the control reserve');
  hub.refuseAll(REASON);
  // No create while cancels are owed: the API edge pauses reading (backlogged), never loses one.
  assert.throws(() => stream.watch({ key: enc('x') }), /backlogged/);
  const responses = [];
  for (let round = 0; round < 10 && responses.length < 20; round++) {
    hub.tick(round);
    responses.push(...drain(stream));
  }
  const cancelled = responses.filter((r) => r.canceled).map((r) => r.watchId);
  assert.deepEqual(cancelled.sort(), [...ids].sort(), 'one cancel per watcher, none lost');
  assert.ok(responses.every((r) => !r.canceled || r.cancelReason === REASON));
  assert.equal(stream.watch({ key: enc('x') }), -1, 'refused, no longer backlogged');
});
