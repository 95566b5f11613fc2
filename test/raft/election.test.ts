/**
 * Leader election (Raft paper §5.1, §5.2, §5.4.1; thesis §9.6 PreVote, §6.2 CheckQuorum,
 * §4.2.3 disruptive servers). Modelled on etcd's raft_paper_test.go.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CAMPAIGN_TRANSFER_CONTEXT } from '../../src/raft/raft.js';
import { type ConfChange, ConfChangeType, MessageType, StateType } from '../../src/raft/types.js';
import { Prng } from '../../src/util/prng.js';
import { Cluster, enc, entry, msg, newSolo, readMessages } from './harness.js';

const E = 10; // electionTicks in makeConfig
const learner = (id: number): ConfChange => ({
  transition: 0,
  changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: id }],
  context: new Uint8Array(0),
});

function becomeRole(s: ReturnType<typeof newSolo>, role: StateType): void {
  const r = s.node.raft;
  if (role === StateType.Follower) return;
  r.becomeCandidate();
  if (role === StateType.Leader) r.becomeLeader();
  readMessages(s);
}

test('§5.1: a message with a higher term makes any role a follower of that term', () => {
  for (const role of [StateType.Follower, StateType.Candidate, StateType.Leader]) {
    for (const type of [MessageType.App, MessageType.Vote]) {
      const s = newSolo(1, [1, 2, 3]);
      becomeRole(s, role);
      s.node.step(msg({ type, from: 2, to: 1, term: 5, logTerm: 9, index: 9 }));
      const r = s.node.raft;
      assert.equal(r.state, StateType.Follower, `role ${role} type ${type}`);
      assert.equal(r.term, 5);
      assert.equal(r.lead, type === MessageType.App ? 2 : 0);
    }
  }
});

test('§5.1 / figure 2: a stale-term App or Heartbeat is answered with our term, in every mode', () => {
  // etcd answers only under CheckQuorum or PreVote; the paper always does (finding 5).
  for (const preVote of [false, true]) {
    for (const checkQuorum of [false, true]) {
      for (const type of [MessageType.App, MessageType.Heartbeat]) {
        const s = newSolo(1, [1, 2, 3], { preVote, checkQuorum });
        s.node.raft.becomeFollower(3, 2);
        readMessages(s);
        s.node.step(msg({ type, from: 3, to: 1, term: 2, index: 1, logTerm: 1, commit: 1 }));
        const what = `preVote=${preVote} checkQuorum=${checkQuorum} type=${type}`;
        assert.equal(s.node.raft.lead, 2, what);
        assert.equal(s.node.raft.term, 3, what);
        const out = readMessages(s);
        assert.equal(out.length, 1, what);
        assert.deepEqual(
          [out[0]!.type, out[0]!.to, out[0]!.term],
          [MessageType.AppResp, 3, 3],
          what,
        );
        assert.equal(out[0]!.reject, false, 'carries nothing but the term');
      }
    }
  }
});

test('§5.1: a stale-term response or vote request is ignored', () => {
  for (const type of [MessageType.AppResp, MessageType.HeartbeatResp, MessageType.Vote]) {
    const s = newSolo(1, [1, 2, 3]);
    s.node.raft.becomeFollower(3, 2);
    readMessages(s);
    s.node.step(msg({ type, from: 3, to: 1, term: 2, index: 9, logTerm: 2 }));
    assert.equal(s.node.raft.lead, 2);
    assert.equal(readMessages(s).length, 0, `type ${type}`);
  }
});

test('a stale leader learns the term of a member whose old configuration excludes it (finding 5)', () => {
  // PreVote and CheckQuorum off. Voters {3,4,5}, leader 4; 3 is cut off while the configuration
  // becomes voters {1,2,3} (4 demoted to learner, 5 removed and gone). 3, still in {3,4,5},
  // campaigns to 4 and 5 only: its term rises, the new leader's never does. Unless 3 (or 4,
  // which 3's vote requests bring to the higher term) answers the leader's stale appends with
  // its term, 3 never catches up.
  const c = new Cluster([1, 2, 3, 4, 5], { voters: [3, 4, 5] });
  c.elect(4);
  c.node(4).proposeConfChange(learner(1));
  c.drain();
  c.node(4).proposeConfChange(learner(2));
  c.drain();
  c.isolate(3);
  c.node(4).proposeConfChange({
    transition: 0,
    changes: [
      { type: ConfChangeType.AddNode, nodeId: 1 },
      { type: ConfChangeType.AddNode, nodeId: 2 },
      { type: ConfChangeType.RemoveNode, nodeId: 5 },
      { type: ConfChangeType.AddLearnerNode, nodeId: 4 },
    ],
    context: new Uint8Array(0),
  });
  for (let i = 0; i < 5 * E && !(c.leader() === 1 || c.leader() === 2); i++) {
    c.tickAll(1);
    c.drain();
  }
  const lead = c.leader();
  assert.ok(lead === 1 || lead === 2, `leader ${lead}`);
  assert.deepEqual(c.node(lead).status().config.voters, [1, 2, 3]);
  assert.deepEqual(c.node(3).status().config.voters, [3, 4, 5], '3 has the old configuration');
  c.filter = () => false; // 3 campaigns alone for a while
  c.tick(3, 6 * E);
  c.drain();
  assert.ok(c.node(3).raft.term > c.node(lead).raft.term + 1, 'its term rose');
  c.filter = (m) => m.from !== 5 && m.to !== 5; // heal; 5 is gone
  let proposed = false;
  for (let i = 0; i < 30 * E && !c.get(3).appliedData.includes('after'); i++) {
    c.tickAll(1);
    c.drain();
    const now = c.leader();
    if (!proposed && now !== 0 && c.node(now).raft.term >= c.node(3).raft.term) {
      c.node(now).propose(enc('after'));
      proposed = true;
    }
  }
  assert.ok(c.get(3).appliedData.includes('after'), `3 caught up (term ${c.node(3).raft.term})`);
});

test('§5.2: nodes start as followers', () => {
  const s = newSolo(1, [1, 2, 3]);
  assert.equal(s.node.raft.state, StateType.Follower);
});

test('§5.2: a leader sends heartbeats every heartbeatTicks', () => {
  const s = newSolo(1, [1, 2, 3]);
  becomeRole(s, StateType.Leader);
  s.node.tick();
  const beats = readMessages(s).filter((m) => m.type === MessageType.Heartbeat);
  assert.deepEqual(beats.map((m) => m.to).sort(), [2, 3]);
});

test('§5.2: a follower or candidate starts an election after its election timeout', () => {
  for (const role of [StateType.Follower, StateType.Candidate]) {
    const s = newSolo(1, [1, 2, 3]);
    becomeRole(s, role);
    const term = s.node.raft.term;
    for (let i = 0; i < 2 * E; i++) s.node.tick();
    const r = s.node.raft;
    assert.equal(r.state, StateType.Candidate);
    assert.ok(r.term > term);
    assert.equal(r.vote, 1);
    const votes = readMessages(s).filter((m) => m.type === MessageType.Vote && m.term === r.term);
    assert.deepEqual(votes.map((m) => m.to).sort(), [2, 3]);
  }
});

test('§5.2: election outcome depends on a majority of votes', () => {
  // [voters, granted by (besides self), rejected by, expected state]
  const cases: [number, number[], number[], StateType][] = [
    [1, [], [], StateType.Leader],
    [3, [2, 3], [], StateType.Leader],
    [3, [2], [], StateType.Leader],
    [5, [2, 3, 4, 5], [], StateType.Leader],
    [5, [2, 3, 4], [], StateType.Leader],
    [5, [2, 3], [], StateType.Leader],
    [3, [], [], StateType.Candidate],
    [5, [2], [], StateType.Candidate],
    [5, [2], [3, 4], StateType.Candidate],
    [3, [], [2, 3], StateType.Follower],
    [5, [2], [3, 4, 5], StateType.Follower],
  ];
  for (const [size, granted, rejected, want] of cases) {
    const voters = Array.from({ length: size }, (_, i) => i + 1);
    const s = newSolo(1, voters);
    s.node.campaign();
    const term = s.node.raft.term;
    for (const id of granted)
      s.node.step(msg({ type: MessageType.VoteResp, from: id, to: 1, term }));
    for (const id of rejected) {
      s.node.step(msg({ type: MessageType.VoteResp, from: id, to: 1, term, reject: true }));
    }
    assert.equal(s.node.raft.state, want, `size ${size} granted ${granted} rejected ${rejected}`);
  }
});

test('§5.2: a follower votes at most once per term, first come first served', () => {
  // [already voted for, candidate, want reject]
  const cases: [number, number, boolean][] = [
    [0, 2, false],
    [0, 3, false],
    [2, 2, false],
    [3, 3, false],
    [2, 3, true],
    [3, 2, true],
  ];
  for (const [vote, from, wantReject] of cases) {
    const s = newSolo(1, [1, 2, 3]);
    s.node.raft.term = 2;
    s.node.raft.vote = vote;
    s.node.step(msg({ type: MessageType.Vote, from, to: 1, term: 2, index: 1, logTerm: 1 }));
    const resp = readMessages(s).find((m) => m.type === MessageType.VoteResp)!;
    assert.equal(resp.reject, wantReject, `vote ${vote} from ${from}`);
  }
});

test('§5.2: a candidate that hears from a leader of its term becomes its follower', () => {
  const s = newSolo(1, [1, 2, 3]);
  s.node.campaign();
  const term = s.node.raft.term;
  s.node.step(msg({ type: MessageType.Heartbeat, from: 2, to: 1, term }));
  assert.equal(s.node.raft.state, StateType.Follower);
  assert.equal(s.node.raft.lead, 2);
  assert.equal(s.node.raft.term, term);
});

test('§5.2: election timeouts are randomized in [electionTicks, 2 * electionTicks)', () => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 200; seed++) {
    const s = newSolo(1, [1, 2, 3], { random: new Prng(seed) });
    const term = s.node.raft.term;
    let ticks = 0;
    while (s.node.raft.term === term) {
      s.node.tick();
      ticks++;
    }
    assert.ok(ticks >= E && ticks < 2 * E, `timeout ${ticks}`);
    seen.add(ticks);
  }
  assert.ok(seen.size >= E - 1, `only ${seen.size} distinct timeouts`);
});

test('§5.4.1: a voter rejects a candidate whose log is less up to date', () => {
  // our log: terms [1 (bootstrap), 2, 2]; [candidate last index, last term, want reject]
  const cases: [number, number, boolean][] = [
    [3, 2, false],
    [4, 2, false],
    [2, 2, true],
    [2, 3, false],
    [9, 1, true],
    [1, 1, true],
  ];
  for (const [index, logTerm, wantReject] of cases) {
    const s = newSolo(1, [1, 2, 3]);
    s.storage.append([entry(2, 2), entry(3, 2)]);
    const fresh = newSolo(1, [1, 2, 3], {}, s.storage);
    fresh.node.step(msg({ type: MessageType.Vote, from: 2, to: 1, term: 3, index, logTerm }));
    const resp = readMessages(fresh).find((m) => m.type === MessageType.VoteResp)!;
    assert.equal(resp.reject, wantReject, `candidate (${index}, ${logTerm})`);
  }
});

test('§5.4.2: a new leader appends an empty entry of its term', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  const r = c.node(1).raft;
  const last = r.log.lastIndex();
  assert.equal(r.log.term(last), r.term);
  assert.equal(r.log.committed, last);
  assert.equal(c.node(2).raft.log.committed, last);
});

test('thesis §9.6: a pre-candidate does not increase its term', () => {
  const s = newSolo(1, [1, 2, 3], { preVote: true });
  const term = s.node.raft.term;
  s.node.campaign();
  assert.equal(s.node.raft.state, StateType.PreCandidate);
  assert.equal(s.node.raft.term, term);
  const pre = readMessages(s).filter((m) => m.type === MessageType.PreVote);
  assert.equal(pre.length, 2);
  assert.ok(pre.every((m) => m.term === term + 1));
  // One granted pre-vote of a quorum: now a real candidate.
  s.node.step(msg({ type: MessageType.PreVoteResp, from: 2, to: 1, term: term + 1 }));
  assert.equal(s.node.raft.state, StateType.Candidate);
  assert.equal(s.node.raft.term, term + 1);
});

test('thesis §9.6: with PreVote, a partitioned node rejoining does not disrupt the leader', () => {
  const c = new Cluster([1, 2, 3], { preVote: true });
  c.elect(1);
  const term = c.node(1).raft.term;
  c.isolate(3);
  for (let i = 0; i < 5 * E; i++) {
    c.tick(3);
    c.drain();
  }
  assert.equal(c.node(3).raft.term, term, 'an isolated pre-candidate keeps its term');
  c.heal();
  c.node(1).propose(new Uint8Array([1]));
  c.tickAll(1);
  c.drain();
  assert.equal(c.node(1).raft.state, StateType.Leader);
  assert.equal(c.node(1).raft.term, term);
});

test('without PreVote, a partitioned node rejoining forces a new term', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  const term = c.node(1).raft.term;
  c.isolate(3);
  for (let i = 0; i < 5 * E; i++) {
    c.tick(3);
    c.drain();
  }
  assert.ok(c.node(3).raft.term > term);
  c.heal();
  for (let i = 0; i < 2 * E; i++) {
    c.tick(3);
    c.drain();
  }
  assert.ok(c.node(1).raft.term > term, 'the old leader saw the higher term');
});

test('thesis §6.2: CheckQuorum makes a leader step down without a quorum', () => {
  const c = new Cluster([1, 2, 3], { checkQuorum: true });
  c.tickAll(E); // let the post-restart lease expire
  c.elect(1);
  assert.equal(c.node(1).raft.state, StateType.Leader);
  c.isolate(1);
  for (let i = 0; i < E + 1; i++) {
    c.tick(1);
    c.drain();
  }
  // One timeout to reset recentActive flags, the next to notice.
  for (let i = 0; i < E; i++) {
    c.tick(1);
    c.drain();
  }
  assert.equal(c.node(1).raft.state, StateType.Follower);
});

test('thesis §6.2: CheckQuorum keeps a leader that hears from a quorum', () => {
  const c = new Cluster([1, 2, 3], { checkQuorum: true });
  c.tickAll(E);
  c.elect(1);
  for (let i = 0; i < 5 * E; i++) {
    c.tick(1);
    c.drain();
  }
  assert.equal(c.node(1).raft.state, StateType.Leader);
});

test('thesis §4.2.3: under CheckQuorum a follower in a lease ignores votes, except transfers', () => {
  for (const force of [false, true]) {
    const s = newSolo(1, [1, 2, 3], { checkQuorum: true });
    s.node.step(msg({ type: MessageType.Heartbeat, from: 2, to: 1, term: 2 }));
    readMessages(s);
    const context = force ? CAMPAIGN_TRANSFER_CONTEXT : new Uint8Array(0);
    s.node.step(
      msg({ type: MessageType.Vote, from: 3, to: 1, term: 3, index: 5, logTerm: 2, context }),
    );
    const resp = readMessages(s).filter((m) => m.type === MessageType.VoteResp);
    if (force) {
      assert.equal(resp.length, 1);
      assert.equal(resp[0]!.reject, false);
      assert.equal(s.node.raft.term, 3);
    } else {
      assert.equal(resp.length, 0, 'ignored');
      assert.equal(s.node.raft.term, 2);
      assert.equal(s.node.raft.lead, 2);
    }
  }
});

test('thesis §4.2.3: the lease ends an election timeout after the last heartbeat', () => {
  const s = newSolo(1, [1, 2, 3], { checkQuorum: true });
  s.node.step(msg({ type: MessageType.Heartbeat, from: 2, to: 1, term: 2 }));
  for (let i = 0; i < E; i++) s.node.tick();
  readMessages(s);
  s.node.step(msg({ type: MessageType.PreVote, from: 3, to: 1, term: 3, index: 5, logTerm: 2 }));
  const resp = readMessages(s).filter((m) => m.type === MessageType.PreVoteResp);
  assert.equal(resp.length, 1);
  assert.equal(resp[0]!.reject, false);
});

test('a restarted node under CheckQuorum ignores votes for one election timeout', () => {
  const s = newSolo(1, [1, 2, 3], { checkQuorum: true });
  s.node.step(msg({ type: MessageType.Vote, from: 3, to: 1, term: 3, index: 5, logTerm: 2 }));
  assert.equal(readMessages(s).filter((m) => m.type === MessageType.VoteResp).length, 0);
  for (let i = 0; i < E; i++) s.node.tick();
  s.node.step(msg({ type: MessageType.Vote, from: 3, to: 1, term: 3, index: 5, logTerm: 2 }));
  const resp = readMessages(s).filter((m) => m.type === MessageType.VoteResp);
  assert.equal(resp.length, 1);
  assert.equal(resp[0]!.reject, false);
});

test('a lower-term heartbeat under CheckQuorum is answered so the old leader steps down', () => {
  const s = newSolo(1, [1, 2, 3], { checkQuorum: true });
  s.node.raft.becomeFollower(5, 3);
  readMessages(s);
  s.node.step(msg({ type: MessageType.Heartbeat, from: 2, to: 1, term: 4 }));
  const out = readMessages(s);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.type, MessageType.AppResp);
  assert.equal(out[0]!.term, 5);
});

test('learners never campaign', () => {
  const s = newSolo(2, [1]);
  s.node.applyConfChange({
    transition: 0,
    changes: [{ type: 2, nodeId: 2 }],
    context: new Uint8Array(),
  });
  for (let i = 0; i < 5 * E; i++) s.node.tick();
  assert.equal(s.node.raft.state, StateType.Follower);
  assert.equal(s.node.raft.isLearner, true);
});

test('a cluster elects exactly one leader per term from ticks alone', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const c = new Cluster([1, 2, 3, 4, 5], {
      preVote: seed % 2 === 0,
      checkQuorum: seed % 3 === 0,
    });
    for (const m of c.members.values())
      m.node.raft.randomizedElectionTicks = E + ((seed * m.id) % E);
    for (let i = 0; i < 10 * E && c.leader() === 0; i++) {
      c.tickAll(1);
      c.drain();
    }
    const leaders = [...c.members.values()].filter((m) => m.node.raft.state === StateType.Leader);
    assert.equal(leaders.length, 1, `seed ${seed}`);
  }
});
