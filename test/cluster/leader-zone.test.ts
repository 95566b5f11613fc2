/** The leader-zone preference (planLeaderZone) as a table of small clusters. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planLeaderZone } from '../../src/cluster/policy.js';
import type { NodeId } from '../../src/raft/types.js';
import { view, voter } from './fixture.js';

const CATCH_UP = 100;
const target = (v: ReturnType<typeof view>, zone: string | null): NodeId | null =>
  planLeaderZone(v, zone, CATCH_UP)?.to ?? null;

test('no preference, or a leader already in the zone: nothing', () => {
  const specs = [voter(1, { zone: 'a' }), voter(2, { zone: 'b' }), voter(3, { zone: 'b' })];
  assert.equal(target(view(specs), null), null);
  assert.equal(target(view(specs), 'a'), null);
});

test('the most caught-up healthy voter of the preferred zone, then the lowest id', () => {
  const specs = [
    voter(1, { zone: 'a' }),
    voter(2, { zone: 'b', lag: 5 }),
    voter(3, { zone: 'b', lag: 1 }),
    voter(4, { zone: 'b', lag: 1 }),
    voter(5, { zone: 'a' }),
  ];
  assert.equal(target(view(specs), 'b'), 3);
});

test('an unhealthy or lagging zone is not honoured', () => {
  const down = [voter(1, { zone: 'a' }), voter(2, { zone: 'b', health: 'unreachable' }), voter(3)];
  assert.equal(target(view(down), 'b'), null);
  const behind = [voter(1, { zone: 'a' }), voter(2, { zone: 'b', lag: CATCH_UP + 1 }), voter(3)];
  assert.equal(target(view(behind), 'b'), null);
});

test('never during a membership change, a joint configuration or without a quorum', () => {
  const specs = [voter(1, { zone: 'a' }), voter(2, { zone: 'b' }), voter(3, { zone: 'a' })];
  assert.equal(target(view(specs, { pendingConfChange: true }), 'b'), null);
  assert.equal(target(view(specs, { quorumActive: false }), 'b'), null);
  assert.equal(target(view(specs, { votersOutgoing: [1, 2, 4] }), 'b'), null);
  assert.equal(target(view(specs), 'b'), 2);
});

test('nothing while the leader zone is unknown: unpublished, or the leader not registered', () => {
  // At start-up a member publishes its zone through the log: until then its record says ''.
  // Moving leadership then hands it to a member of the same zone, for nothing.
  const unpublished = [voter(1, { zone: '' }), voter(2, { zone: 'b' }), voter(3, { zone: 'b' })];
  assert.equal(target(view(unpublished), 'b'), null);
  const unregistered = [voter(2, { zone: 'b' }), voter(3, { zone: 'a' })];
  assert.equal(target(view(unregistered, { leaderId: 1 }), 'b'), null);
  // Once the leader's zone is known (and not the preferred one), the preference applies.
  const published = [voter(1, { zone: 'a' }), voter(2, { zone: 'b' }), voter(3, { zone: 'b' })];
  assert.equal(target(view(published), 'b'), 2);
});

test('a voter whose zone or progress is unknown is not a transfer target', () => {
  const unknownZone = [voter(1, { zone: 'a' }), voter(2, { zone: '' }), voter(3, { zone: 'a' })];
  assert.equal(target(view(unknownZone), 'b'), null);
  assert.equal(target(view(unknownZone), ''), null, 'an empty preference is no preference');
  const v = view([voter(1, { zone: 'a' }), voter(2, { zone: 'b' }), voter(3, { zone: 'a' })]);
  const noProgress = { ...v, progress: new Map([...v.progress].filter(([id]) => id !== 2)) };
  assert.equal(target(noProgress, 'b'), null, 'no progress known for the only candidate');
});
