/**
 * Fast failover (tandem's extension, Raft.leaderDown): a follower told that its leader's process
 * is gone forgets the leader — ending the lease it granted under CheckQuorum (thesis §6.2) — and
 * campaigns after 1 + rank ticks instead of a randomized election timeout (paper §5.2). Election
 * safety does not depend on timing, so these tests check the timing and the lease rules only.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { StateType } from '../../src/raft/types.js';
import { Cluster, enc } from './harness.js';

const E = 10; // electionTicks in makeConfig

function settled(ids: number[]): Cluster {
  const c = new Cluster(ids, { preVote: true, checkQuorum: true });
  // Past the start-up lease (leaseUnknown), so a later election is a normal one.
  c.tickAll(E);
  c.elect(1);
  assert.equal(c.leader(), 1);
  return c;
}

test('a follower told that its leader is down campaigns after 1 + its rank in ticks', () => {
  const c = settled([1, 2, 3]);
  c.isolate(1); // the dead leader says nothing more
  c.node(3).reportPeerDown(1); // rank 1 among the other voters {2, 3}
  assert.equal(c.node(3).raft.lead, 0, 'the leader is forgotten at once');
  c.tick(3, 1);
  assert.equal(c.node(3).raft.state, StateType.Follower, 'not before its rank');
  c.tick(3, 1);
  assert.equal(c.node(3).raft.state, StateType.PreCandidate, 'after 1 + rank ticks');
});

test('followers that both learn it elect a new leader in a few ticks, without a split vote', () => {
  for (const ids of [
    [1, 2, 3],
    [1, 2, 3, 4, 5],
  ]) {
    const c = settled(ids);
    const term = c.node(1).raft.term;
    c.isolate(1);
    for (const id of ids.slice(1)) c.node(id).reportPeerDown(1);
    let ticks = 0;
    const newLeader = (): boolean =>
      ids.slice(1).some((id) => c.node(id).raft.state === StateType.Leader);
    while (!newLeader()) {
      for (const id of ids.slice(1)) c.tick(id);
      c.drain();
      ticks += 1;
      assert.ok(ticks <= 2, `a new leader within 2 ticks (${ids.length} voters), not ${E}`);
    }
    const leaders = ids.slice(1).filter((id) => c.node(id).raft.state === StateType.Leader);
    assert.deepEqual(leaders, [2], 'the lowest-ranked follower wins at once');
    assert.equal(c.node(2).raft.term, term + 1, 'one election, no split vote');
  }
});

test('a follower still in its lease refuses the early candidate (CheckQuorum)', () => {
  const c = settled([1, 2, 3]);
  const term = c.node(1).raft.term;
  c.isolate(1);
  c.node(2).reportPeerDown(1); // only node 2 learns it; node 3 heard from 1 just now
  c.tick(2, 1);
  c.drain();
  assert.notEqual(c.node(2).raft.state, StateType.Leader);
  assert.equal(c.node(3).raft.lead, 1, 'node 3 keeps its leader and its lease');
  assert.equal(c.node(3).raft.term, term);
});

test('the report is ignored unless it names our leader, and by leaders and learners', () => {
  const c = settled([1, 2, 3]);
  c.node(2).reportPeerDown(3); // not its leader
  assert.equal(c.node(2).raft.lead, 1);
  c.node(1).reportPeerDown(2); // the leader itself
  assert.equal(c.node(1).raft.state, StateType.Leader);
  const elapsed = c.node(2).raft.electionElapsedTicks;
  c.node(2).reportPeerDown(0);
  assert.equal(c.node(2).raft.electionElapsedTicks, elapsed);

  // A learner never campaigns: the report changes nothing for it.
  const d = new Cluster([], { preVote: true, checkQuorum: true });
  for (const id of [1, 2, 3, 4]) {
    const storage = new MemoryStorage();
    RawNode.bootstrap(storage, [1, 2, 3], undefined, [4]);
    d.addMember(id, storage);
  }
  d.tickAll(E);
  d.elect(1);
  d.node(1).propose(enc('x'));
  d.drain();
  assert.equal(d.node(4).raft.lead, 1, 'the learner follows the leader');
  d.isolate(1);
  d.node(4).reportPeerDown(1);
  assert.equal(d.node(4).raft.lead, 1);
  d.tick(4, 2 * E);
  assert.equal(d.node(4).raft.state, StateType.Follower);
});
