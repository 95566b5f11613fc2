/** Inflights ring buffer and Progress state machine (etcd tracker tests, thesis §3.5 / §4.2.1). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Inflights } from '../../src/raft/tracker/inflights.js';
import { Progress, ProgressState } from '../../src/raft/tracker/progress.js';

test('inflights: add until full, free up to an index, wrap around', () => {
  const inf = new Inflights(4);
  for (const i of [1, 2, 3, 4]) inf.add(i);
  assert.ok(inf.full());
  assert.throws(() => inf.add(5));
  inf.freeLE(2);
  assert.equal(inf.size, 2);
  inf.add(5);
  inf.add(6); // wraps
  assert.ok(inf.full());
  inf.freeLE(5);
  assert.equal(inf.size, 1);
  inf.freeFirstOne();
  assert.equal(inf.size, 0);
  inf.freeFirstOne(); // no-op on empty
  assert.equal(inf.size, 0);
});

test('inflights behave like a naive queue', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), n: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ kind: fc.constant('free' as const), n: fc.integer({ min: 0, max: 40 }) }),
    fc.record({ kind: fc.constant('first' as const), n: fc.constant(0) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 60 }), (cap, ops) => {
      const inf = new Inflights(cap);
      const naive: number[] = [];
      let last = 0;
      for (const o of ops) {
        if (o.kind === 'add') {
          if (naive.length === cap) continue;
          last += o.n;
          inf.add(last);
          naive.push(last);
        } else if (o.kind === 'free') {
          while (naive.length > 0 && naive[0]! <= o.n) naive.shift();
          inf.freeLE(o.n);
        } else {
          naive.shift();
          inf.freeFirstOne();
        }
        assert.equal(inf.size, naive.length);
        assert.equal(inf.full(), naive.length === cap);
      }
    }),
    { numRuns: 500 },
  );
});

test('progress: probe pauses after one message, replicate pauses when the window is full', () => {
  const pr = new Progress(5, 2, false);
  assert.equal(pr.state, ProgressState.Probe);
  assert.equal(pr.isPaused(), false);
  pr.probeSent = true;
  assert.equal(pr.isPaused(), true);
  assert.ok(pr.maybeUpdate(4)); // an ack unpauses
  assert.equal(pr.isPaused(), false);
  pr.becomeReplicate();
  assert.equal(pr.next, 5);
  pr.inflights.add(5);
  pr.inflights.add(6);
  assert.equal(pr.isPaused(), true);
  pr.becomeSnapshot(10);
  assert.equal(pr.isPaused(), true);
  assert.equal(pr.inflights.size, 0);
});

test('progress: maybeUpdate never lowers match or next', () => {
  const pr = new Progress(10, 4, false);
  pr.match = 5;
  assert.equal(pr.maybeUpdate(3), false);
  assert.equal(pr.match, 5);
  assert.equal(pr.next, 10);
  assert.equal(pr.maybeUpdate(12), true);
  assert.equal(pr.next, 13);
});

test('progress: maybeDecrTo table (etcd TestProgressMaybeDecr)', () => {
  // [state, match, next, rejected, hint, wantOk, wantNext]
  const cases: [ProgressState, number, number, number, number, boolean, number][] = [
    [ProgressState.Replicate, 5, 10, 5, 5, false, 10], // stale: rejected <= match
    [ProgressState.Replicate, 5, 10, 4, 4, false, 10],
    [ProgressState.Replicate, 5, 10, 9, 9, true, 6], // back to match + 1
    [ProgressState.Probe, 0, 0 + 1, 0, 0, true, 1],
    [ProgressState.Probe, 0, 10, 5, 5, false, 10], // not the latest probe
    [ProgressState.Probe, 0, 10, 9, 9, true, 9],
    [ProgressState.Probe, 0, 10, 9, 2, true, 3], // follows the hint
    [ProgressState.Probe, 4, 10, 9, 1, true, 5], // never below match + 1
  ];
  for (const [state, match, next, rejected, hint, wantOk, wantNext] of cases) {
    const pr = new Progress(next, 4, false);
    pr.match = match;
    if (state === ProgressState.Replicate) {
      pr.becomeReplicate();
      pr.next = next;
    }
    assert.equal(
      pr.maybeDecrTo(rejected, hint),
      wantOk,
      `case ${state} ${match} ${next} ${rejected}`,
    );
    assert.equal(pr.next, wantNext);
  }
});

test('progress: leaving snapshot state probes after the snapshot', () => {
  const pr = new Progress(3, 4, false);
  pr.match = 2;
  pr.becomeSnapshot(20);
  pr.becomeProbe();
  assert.equal(pr.next, 21);
  pr.becomeSnapshot(20);
  pr.pendingSnapshot = 0; // failed snapshot
  pr.becomeProbe();
  assert.equal(pr.next, 3);
});
