/** Leadership transfer (thesis §3.10; etcd MsgTransferLeader / MsgTimeoutNow). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftError } from '../../src/raft/errors.js';
import { MessageType, StateType } from '../../src/raft/types.js';
import { Cluster, enc } from './harness.js';

const E = 10;

test('thesis §3.10: transfer to an up-to-date follower happens at once via TimeoutNow', () => {
  for (const preVote of [false, true]) {
    const c = new Cluster([1, 2, 3], { preVote, checkQuorum: true });
    c.tickAll(E);
    c.elect(1);
    const term = c.node(1).raft.term;
    c.node(1).transferLeader(2);
    c.drain();
    assert.equal(c.leader(), 2, `preVote ${preVote}`);
    assert.equal(c.node(2).raft.term, term + 1, 'no pre-vote round for a transfer');
    assert.equal(c.node(1).raft.state, StateType.Follower);
    assert.equal(c.node(1).raft.lead, 2);
  }
});

test('thesis §3.10: the leader first catches a lagging transferee up', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 5; i++) c.node(1).propose(enc(`v${i}`));
  c.drain();
  c.heal();
  c.node(1).transferLeader(3);
  c.drain();
  assert.equal(c.leader(), 3);
  assert.deepEqual(c.get(3).appliedData.length, 5);
});

test('proposals are dropped while a transfer is in progress', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  c.node(1).propose(enc('x'));
  c.drain();
  c.node(1).transferLeader(3); // 3 is unreachable: the transfer stays pending
  c.drain();
  assert.equal(c.node(1).raft.leadTransferee, 3);
  assert.throws(
    () => c.node(1).propose(enc('y')),
    (e: unknown) => e instanceof RaftError && e.code === 'PROPOSAL_DROPPED',
  );
});

test('a transfer not done within an election timeout is aborted', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  c.node(1).transferLeader(3);
  c.drain();
  for (let i = 0; i < E; i++) {
    c.tick(1);
    c.drain();
  }
  assert.equal(c.node(1).raft.leadTransferee, 0);
  assert.equal(c.node(1).raft.state, StateType.Leader);
  c.node(1).propose(enc('ok'));
});

test('a follower forwards a transfer request to the leader', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.node(2).transferLeader(2);
  c.drain();
  assert.equal(c.leader(), 2);
});

test('transfer to self, to a learner, or a repeated request is ignored', () => {
  const c = new Cluster([1, 2, 3, 4], { voters: [1, 2, 3] });
  c.elect(1);
  c.node(1).proposeConfChange({
    transition: 0,
    changes: [{ type: 2, nodeId: 4 }],
    context: new Uint8Array(),
  });
  c.drain();
  c.node(1).transferLeader(1);
  c.node(1).transferLeader(4);
  c.drain();
  assert.equal(c.leader(), 1);
  assert.equal(c.node(1).raft.leadTransferee, 0);
});

test('a transfer campaign wins votes even from followers in a CheckQuorum lease', () => {
  const c = new Cluster([1, 2, 3], { checkQuorum: true, preVote: true });
  c.tickAll(E);
  c.elect(1);
  c.tickAll(1);
  c.drain(); // followers just heard from the leader: in lease
  c.node(1).transferLeader(3);
  c.drain();
  assert.equal(c.leader(), 3);
  assert.ok(c.sent.some((m) => m.type === MessageType.TimeoutNow && m.to === 3));
});
