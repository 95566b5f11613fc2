/** Membership changes (thesis §4.1 single-server, §4.3 joint consensus; etcd confchange). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyChange, restore } from '../../src/raft/confchange/confchange.js';
import { RaftError } from '../../src/raft/errors.js';
import type { Progress } from '../../src/raft/tracker/progress.js';
import { EMPTY_TRACKER_CONFIG, type TrackerConfig } from '../../src/raft/tracker/tracker.js';
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  MessageType,
  type NodeId,
  StateType,
} from '../../src/raft/types.js';
import { Cluster, enc } from './harness.js';

const { AddNode, RemoveNode, AddLearnerNode } = ConfChangeType;
const cc = (
  changes: [ConfChangeType, NodeId][],
  transition: ConfChangeTransition = ConfChangeTransition.Auto,
): ConfChange => ({
  transition,
  changes: changes.map(([type, nodeId]) => ({ type, nodeId })),
  context: new Uint8Array(0),
});
const LEAVE = cc([]);

type Base = { config: TrackerConfig; progress: Map<NodeId, Progress> };
const start = (voters: NodeId[], learners: NodeId[] = []): Base =>
  restore(
    { config: EMPTY_TRACKER_CONFIG, progress: new Map(), lastIndex: 10, maxInflightMsgs: 4 },
    { voters, learners, votersOutgoing: [], learnersNext: [], autoLeave: false },
  );
const apply = (b: Base, change: ConfChange): Base =>
  applyChange({ ...b, lastIndex: 10, maxInflightMsgs: 4 }, change);
const show = (b: Base): string => {
  const c = b.config;
  let s = `voters=(${c.voters.join(' ')})`;
  if (c.votersOutgoing.length > 0) s += `&&(${c.votersOutgoing.join(' ')})`;
  if (c.learners.length > 0) s += ` learners=(${c.learners.join(' ')})`;
  if (c.learnersNext.length > 0) s += ` learners_next=(${c.learnersNext.join(' ')})`;
  if (c.autoLeave) s += ' autoleave';
  return s;
};

test('confchange table: simple, joint and leave (thesis §4.1, §4.3)', () => {
  // [start voters, start learners, change, want]
  const cases: [NodeId[], NodeId[], ConfChange, string][] = [
    [[1], [], cc([[AddNode, 2]]), 'voters=(1 2)'],
    [[1, 2], [], cc([[RemoveNode, 2]]), 'voters=(1)'],
    [[1], [], cc([[AddLearnerNode, 2]]), 'voters=(1) learners=(2)'],
    [[1], [2], cc([[AddNode, 2]]), 'voters=(1 2)'], // promote
    [
      [1, 2, 3],
      [],
      cc([
        [AddNode, 4],
        [RemoveNode, 3],
      ]),
      'voters=(1 2 4)&&(1 2 3) autoleave',
    ],
    [[1, 2, 3], [], cc([[AddLearnerNode, 3]]), 'voters=(1 2)&&(1 2 3) learners_next=(3) autoleave'],
    [[1, 2], [], cc([[AddNode, 3]], ConfChangeTransition.JointExplicit), 'voters=(1 2 3)&&(1 2)'],
    [
      [1, 2],
      [],
      cc([[AddNode, 3]], ConfChangeTransition.JointImplicit),
      'voters=(1 2 3)&&(1 2) autoleave',
    ],
    [[1], [], cc([[AddNode, 0]]), 'voters=(1)'], // id 0 ignored
  ];
  for (const [voters, learners, change, want] of cases) {
    assert.equal(
      show(apply(start(voters, learners), change)),
      want,
      JSON.stringify(change.changes),
    );
  }
});

test('confchange: leaving joint applies learners_next and drops removed voters', () => {
  let b = start([1, 2, 3]);
  b = apply(
    b,
    cc([
      [AddLearnerNode, 3],
      [AddNode, 4],
      [RemoveNode, 2],
    ]),
  );
  assert.equal(show(b), 'voters=(1 4)&&(1 2 3) learners_next=(3) autoleave');
  b = apply(b, LEAVE);
  assert.equal(show(b), 'voters=(1 4) learners=(3)');
  assert.deepEqual([...b.progress.keys()].sort(), [1, 3, 4]);
});

test('confchange: invalid changes are refused without touching the base', () => {
  const refuse = (b: Base, change: ConfChange, why: RegExp): void =>
    assert.throws(
      () => apply(b, change),
      (e: unknown) => e instanceof RaftError && why.test(e.message),
    );
  const b = start([1, 2]);
  refuse(
    b,
    cc([
      [RemoveNode, 1],
      [RemoveNode, 2],
    ]),
    /removed all voters/,
  );
  refuse(b, LEAVE, /non-joint/);
  const joint = apply(b, cc([[AddNode, 3]], ConfChangeTransition.JointExplicit));
  refuse(joint, cc([[AddNode, 4]]), /already joint|joint config/);
  assert.equal(show(b), 'voters=(1 2)');
  assert.equal(b.progress.get(1)!.isLearner, false);
});

test('confchange: restore rebuilds a joint configuration from its ConfState', () => {
  const cs = {
    voters: [1, 2, 4],
    votersOutgoing: [1, 2, 3],
    learners: [5],
    learnersNext: [3],
    autoLeave: true,
  };
  const b = restore(
    { config: EMPTY_TRACKER_CONFIG, progress: new Map(), lastIndex: 3, maxInflightMsgs: 4 },
    cs,
  );
  assert.equal(show(b), 'voters=(1 2 4)&&(1 2 3) learners=(5) learners_next=(3) autoleave');
});

function committedCluster(ids: NodeId[], voters: NodeId[]): Cluster {
  const c = new Cluster(ids, { voters });
  c.elect(voters[0]!);
  return c;
}

function config(c: Cluster, id: NodeId): string {
  const s = c.node(id).status().config;
  let out = `voters=(${s.voters.join(' ')})`;
  if (s.votersOutgoing.length > 0) out += `&&(${s.votersOutgoing.join(' ')})`;
  if (s.learners.length > 0) out += ` learners=(${s.learners.join(' ')})`;
  return out;
}

test('a learner receives the log but does not count in the quorum', () => {
  const c = committedCluster([1, 2, 3], [1, 2]);
  c.node(1).proposeConfChange(cc([[AddLearnerNode, 3]]));
  c.drain();
  c.tickAll(1);
  c.drain();
  assert.equal(config(c, 1), 'voters=(1 2) learners=(3)');
  c.node(1).propose(enc('a'));
  c.drain();
  assert.deepEqual(c.get(3).appliedData, ['a']);
  // With voter 2 unreachable, the learner's ack cannot commit anything.
  c.filter = (m) => m.to !== 2 && m.from !== 2;
  c.node(1).propose(enc('b'));
  c.drain();
  assert.deepEqual(c.get(1).appliedData, ['a']);
});

test('add a voter with an empty log, then promote a learner (thesis §4.2.1)', () => {
  const c = committedCluster([1, 2, 3, 4], [1, 2, 3]);
  c.node(1).proposeConfChange(cc([[AddLearnerNode, 4]]));
  c.drain();
  c.tickAll(1);
  c.drain();
  c.node(1).proposeConfChange(cc([[AddNode, 4]]));
  c.drain();
  assert.equal(config(c, 1), 'voters=(1 2 3 4)');
  assert.equal(config(c, 4), 'voters=(1 2 3 4)');
  assert.equal(c.node(4).raft.isLearner, false);
});

test('a change takes effect when applied, not when appended', () => {
  const c = committedCluster([1, 2, 3], [1, 2, 3]);
  c.node(1).proposeConfChange(cc([[RemoveNode, 3]]));
  c.flush(); // appended, not yet committed
  assert.equal(config(c, 1), 'voters=(1 2 3)');
  c.drain();
  assert.equal(config(c, 1), 'voters=(1 2)');
});

test('at most one pending change (thesis §4.1)', () => {
  const c = committedCluster([1, 2, 3], [1, 2, 3]);
  c.node(1).proposeConfChange(cc([[AddLearnerNode, 4]]));
  assert.throws(
    () => c.node(1).proposeConfChange(cc([[AddLearnerNode, 5]])),
    (e: unknown) => e instanceof RaftError && e.code === 'PROPOSAL_DROPPED',
  );
  c.drain();
  c.node(1).proposeConfChange(cc([[AddLearnerNode, 5]])); // fine once applied
  c.drain();
  assert.equal(config(c, 1), 'voters=(1 2 3) learners=(4 5)');
});

test('invalid changes are refused at proposal on the leader', () => {
  const c = committedCluster([1, 2], [1, 2]);
  assert.throws(
    () =>
      c.node(1).proposeConfChange(
        cc([
          [RemoveNode, 1],
          [RemoveNode, 2],
        ]),
      ),
    (e: unknown) => e instanceof RaftError && e.code === 'INVALID_CONF_CHANGE',
  );
  assert.throws(
    () => c.node(1).proposeConfChange(LEAVE),
    (e: unknown) => e instanceof RaftError && e.code === 'INVALID_CONF_CHANGE',
  );
});

test('thesis §4.3: replacing two voters goes through joint consensus and leaves automatically', () => {
  const c = committedCluster([1, 2, 3, 4, 5], [1, 2, 3]);
  c.node(1).proposeConfChange(
    cc([
      [AddNode, 4],
      [AddNode, 5],
      [RemoveNode, 3],
    ]),
  );
  c.drain();
  for (let i = 0; i < 3; i++) {
    c.tickAll(1);
    c.drain();
  }
  assert.equal(config(c, 1), 'voters=(1 2 4 5)');
  assert.equal(config(c, 4), 'voters=(1 2 4 5)');
  c.node(1).propose(enc('after'));
  c.drain();
  assert.deepEqual(c.get(5).appliedData, ['after']);
});

test('thesis §4.3: in a joint config commits need a majority of both halves', () => {
  const c = committedCluster([1, 2, 3, 4], [1, 2, 3]);
  c.node(1).proposeConfChange(
    cc(
      [
        [AddNode, 4],
        [RemoveNode, 2],
        [RemoveNode, 3],
      ],
      ConfChangeTransition.JointExplicit,
    ),
  );
  c.drain();
  c.tickAll(1);
  c.drain();
  assert.equal(config(c, 1), 'voters=(1 4)&&(1 2 3)');
  // The old half (1 2 3) has 1 only if 2 and 3 are cut off: no commit.
  c.filter = (m) => ![2, 3].includes(m.to) && ![2, 3].includes(m.from);
  c.node(1).propose(enc('x'));
  c.drain();
  assert.deepEqual(c.get(1).appliedData, []);
  c.heal();
  c.tickAll(1);
  c.drain();
  assert.deepEqual(c.get(1).appliedData, ['x']);
  // Explicit leave.
  c.node(1).proposeConfChange(LEAVE);
  c.drain();
  assert.equal(config(c, 1), 'voters=(1 4)');
});

test('demoting a voter to learner uses joint consensus', () => {
  const c = committedCluster([1, 2, 3], [1, 2, 3]);
  c.node(1).proposeConfChange(cc([[AddLearnerNode, 3]]));
  c.drain();
  c.tickAll(1);
  c.drain();
  assert.equal(config(c, 1), 'voters=(1 2) learners=(3)');
  assert.equal(c.node(3).raft.isLearner, true);
  // The auto-leave entry was proposed by the leader and applied everywhere.
  const leaves = c.get(1).node.raft.log.committed;
  assert.ok(leaves > 0);
});

test('removing the leader: it leads on until the voter it hands over to wins (thesis §3.10)', () => {
  // etcd keeps a removed leader leading (its TODO: TimeoutNow to the most caught-up follower);
  // we do both: keep leading, refuse proposals, and transfer leadership.
  const c = committedCluster([1, 2, 3], [1, 2, 3]);
  const term = c.node(1).raft.term;
  c.filter = (m) => m.type !== MessageType.TimeoutNow; // the first handovers are lost
  c.node(1).proposeConfChange(cc([[RemoveNode, 1]]));
  c.drain();
  assert.equal(config(c, 1), 'voters=(2 3)');
  assert.equal(c.node(1).raft.state, StateType.Leader, 'it leads on, outside the voters');
  assert.throws(
    () => c.node(1).propose(enc('during')),
    (e) => e instanceof RaftError,
  );
  // TimeoutNow waits until the transferee acknowledged a heartbeat that carried the commit.
  const timeoutNowSent = (): boolean =>
    c.sent.some((m) => m.type === MessageType.TimeoutNow && m.from === 1);
  assert.equal(timeoutNowSent(), false, 'not before a heartbeat round');
  for (let i = 0; i < 5 && !timeoutNowSent(); i++) {
    c.tickAll(1);
    c.drain();
  }
  assert.ok(timeoutNowSent());
  assert.equal(c.node(1).raft.state, StateType.Leader, 'the TimeoutNow was lost: still leading');
  c.heal();
  // After an election timeout without a successor it tries again (the next voter).
  for (let i = 0; i < 30 && c.node(1).raft.state === StateType.Leader; i++) {
    c.tickAll(1);
    c.drain();
  }
  const lead = c.leader();
  assert.ok(lead === 2 || lead === 3, `leader ${lead}`);
  assert.equal(c.node(lead).raft.term, term + 1, 'won by the transfer, not a timeout race');
  assert.equal(c.node(1).raft.state, StateType.Follower);
  c.node(lead).propose(enc('post'));
  c.drain();
  assert.deepEqual(c.get(lead === 2 ? 3 : 2).appliedData, ['post']);
});

test('a replaced sole voter leads on until its successor learned the change (finding 3)', () => {
  // Voters {2}, learner 3; "replace 2 by 3" enters joint {3}&&{2} and leaves it at index L.
  // 2 appends x at L+1, and both x and the first message telling 3 that L committed are lost.
  // Had 2 stepped down on applying L, 3 (still joint: it needs 2's vote) could never win: 2's
  // log is longer, and 2, outside its configuration, never campaigns.
  const c = new Cluster([2, 3], { voters: [2] });
  c.elect(2);
  c.node(2).proposeConfChange(cc([[AddLearnerNode, 3]]));
  c.drain();
  c.node(2).proposeConfChange(
    cc([
      [AddNode, 3],
      [RemoveNode, 2],
    ]),
  );
  c.processReady(2); // 2 alone commits and applies the joint entry, then appends the leave
  assert.equal(config(c, 2), 'voters=(3)&&(2)');
  const leave = c.node(2).raft.log.lastIndex();
  c.node(2).propose(enc('x'));
  c.processReady(2);
  let lostEntry = false;
  let lostCommit = false;
  c.filter = (m) => {
    if (m.from !== 2 || m.to !== 3) return true;
    if (!lostEntry && m.entries.some((e) => e.index > leave)) {
      lostEntry = true;
      return false;
    }
    if (!lostCommit && m.commit >= leave) {
      lostCommit = true;
      return false;
    }
    return true;
  };
  c.drain();
  assert.ok(lostEntry && lostCommit, 'the scenario happened');
  assert.equal(config(c, 2), 'voters=(3)');
  for (let i = 0; i < 40 && c.leader() !== 3; i++) {
    c.tickAll(1);
    c.drain();
  }
  assert.equal(c.leader(), 3);
  assert.equal(config(c, 3), 'voters=(3)', '3 knew the change committed before it campaigned');
  c.isolate(2); // removed, 2 may shut down now: 3 must not need it
  c.node(3).propose(enc('y'));
  c.drain();
  assert.deepEqual(c.get(3).appliedData, ['x', 'y']);
  assert.equal(c.node(2).raft.state, StateType.Follower);
});

test('a removed leader sends TimeoutNow only once its successor knows the change committed', () => {
  // Same replacement; the first message telling 3 that the leave committed is lost, and 2,
  // removed, goes away right after its TimeoutNow (a removed member may shut down). Had 3
  // campaigned still joint, it would need 2's vote; knowing the commit, it wins alone.
  const c = new Cluster([2, 3], { voters: [2] });
  c.elect(2);
  c.node(2).proposeConfChange(cc([[AddLearnerNode, 3]]));
  c.drain();
  c.node(2).proposeConfChange(
    cc([
      [AddNode, 3],
      [RemoveNode, 2],
    ]),
  );
  c.processReady(2);
  const leave = c.node(2).raft.log.lastIndex();
  let lostCommit = false;
  let gone = false;
  c.filter = (m) => {
    if (gone) return m.from !== 2 && m.to !== 2;
    if (m.type === MessageType.TimeoutNow && m.from === 2) {
      gone = true; // its last word
      return true;
    }
    if (!lostCommit && m.from === 2 && m.to === 3 && m.commit >= leave) {
      lostCommit = true;
      return false;
    }
    return true;
  };
  c.drain();
  assert.ok(lostCommit, 'the scenario happened');
  const leads3 = (): boolean => c.node(3).raft.state === StateType.Leader;
  for (let i = 0; i < 40 && !leads3(); i++) {
    c.tickAll(1);
    c.drain();
  }
  assert.ok(gone, 'TimeoutNow was sent');
  assert.ok(leads3(), '3 leads (2, cut off, still believes it leads an older term)');
  assert.equal(config(c, 3), 'voters=(3)');
  c.node(3).propose(enc('z'));
  c.drain();
  assert.deepEqual(c.get(3).appliedData, ['z']);
});

test('a leader outside the voters serves no read from its commit index alone', () => {
  // 2 was replaced by 3 (config {3}: a single voter, but not 2) and still leads: 3 may
  // already lead a later term, so 2 needs 3's heartbeat ack for a ReadIndex.
  const c = new Cluster([2, 3], { voters: [2] });
  c.elect(2);
  c.node(2).proposeConfChange(cc([[AddLearnerNode, 3]]));
  c.drain();
  c.filter = (m) => m.type !== MessageType.TimeoutNow;
  c.node(2).proposeConfChange(
    cc([
      [AddNode, 3],
      [RemoveNode, 2],
    ]),
  );
  c.drain();
  assert.equal(config(c, 2), 'voters=(3)');
  assert.equal(c.node(2).raft.state, StateType.Leader);
  c.filter = (m) => m.type !== MessageType.TimeoutNow && m.type !== MessageType.HeartbeatResp;
  c.node(2).readIndex(enc('r1'));
  c.drain();
  assert.deepEqual(c.get(2).readStates, [], 'no answer without the voter');
  c.filter = (m) => m.type !== MessageType.TimeoutNow;
  c.tick(2, 1);
  c.drain();
  assert.equal(c.get(2).readStates.length, 1, 'answered once 3 acknowledged a heartbeat');
});

test('a removed follower gets no more appends', () => {
  const c = committedCluster([1, 2, 3], [1, 2, 3]);
  c.node(1).proposeConfChange(cc([[RemoveNode, 3]]));
  c.drain();
  const before = c.sent.length;
  c.node(1).propose(enc('x'));
  c.drain();
  assert.ok(c.sent.slice(before).every((m) => m.to !== 3));
});
