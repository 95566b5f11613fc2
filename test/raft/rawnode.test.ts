/** The RawNode Ready/Advance contract (etcd rawnode_test.go) and a randomized safety check. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeConfChange, encodeConfChange } from '../../src/raft/codec.js';
import { RaftError } from '../../src/raft/errors.js';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { ConfChangeType, type Message, MessageType, StateType } from '../../src/raft/types.js';
import { AssertionError } from '../../src/util/assert.js';
import { Prng } from '../../src/util/prng.js';
import { Cluster, enc, makeConfig, msg, newSolo, readMessages } from './harness.js';

test('bootstrap writes a snapshot at index 1, term 1 and refuses a used storage', () => {
  const storage = new MemoryStorage();
  RawNode.bootstrap(storage, [3, 1, 2]);
  assert.equal(storage.snapshot().metadata.index, 1);
  assert.deepEqual(storage.snapshot().metadata.confState.voters, [1, 2, 3]);
  assert.deepEqual(storage.initialState().hardState, { term: 1, vote: 0, commit: 1 });
  assert.throws(() => RawNode.bootstrap(storage, [1]), AssertionError);
  const node = new RawNode(makeConfig(1, storage));
  assert.equal(node.hasReady(), false, 'a fresh node has nothing to do');
  assert.equal(node.status().applied, 1);
});

test('step refuses local message types', () => {
  const s = newSolo(1, [1, 2, 3]);
  for (const type of [
    MessageType.Hup,
    MessageType.Beat,
    MessageType.CheckQuorum,
    MessageType.Unreachable,
    MessageType.SnapStatus,
  ]) {
    assert.throws(
      () => s.node.step(msg({ type, from: 2, to: 1 })),
      (e: unknown) => e instanceof RaftError && e.code === 'STEP_LOCAL_MSG',
    );
  }
});

test('a vote leaves in the same Ready as the hard state that records it', () => {
  const s = newSolo(1, [1, 2, 3]);
  s.node.step(msg({ type: MessageType.Vote, from: 2, to: 1, term: 5, index: 1, logTerm: 1 }));
  const rd = s.node.ready();
  assert.deepEqual(rd.hardState, { term: 5, vote: 2, commit: 1 });
  assert.equal(rd.mustSync, true);
  assert.equal(rd.messages[0]!.type, MessageType.VoteResp);
  s.node.advance(rd);
  assert.equal(s.node.hasReady(), false);
});

test('ready() twice without advance() is an assertion failure; advance needs its Ready', () => {
  const s = newSolo(1, [1]);
  s.node.campaign();
  const rd = s.node.ready();
  assert.throws(() => s.node.ready(), AssertionError);
  s.storage.append(rd.entries);
  s.node.advance(rd);
  assert.throws(() => s.node.advance(rd), AssertionError);
});

test('a single-voter leader commits its entry once advance reports it durable (thesis §10.2.1)', () => {
  const s = newSolo(1, [1]);
  s.node.campaign();
  readMessages(s);
  s.node.propose(enc('a'));
  const rd = s.node.ready();
  assert.equal(rd.entries.length, 1);
  assert.equal(rd.committedEntries.length, 0, 'not committed before its own write is durable');
  assert.equal(rd.mustSync, true);
  s.storage.append(rd.entries);
  if (rd.hardState !== null) s.storage.setHardState(rd.hardState);
  s.node.advance(rd);
  const next = s.node.ready();
  assert.deepEqual(
    next.committedEntries.map((e) => e.index),
    [rd.entries[0]!.index],
    'committed once durable',
  );
  assert.equal(next.mustSync, false, 'a commit-only hard state needs no fdatasync');
  s.node.advance(next);
  assert.equal(s.node.status().applied, rd.entries[0]!.index);
});

test('a restarted node keeps term, vote and commit, and does not re-apply', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.node(1).propose(enc('a'));
  c.drain();
  const before = c.node(2).status();
  const storage = c.get(2).storage;
  const node = new RawNode(makeConfig(2, storage, { applied: before.applied }));
  const st = node.status();
  assert.equal(st.term, before.term);
  assert.equal(st.vote, before.vote);
  assert.equal(st.commit, before.commit);
  assert.equal(st.raftState, StateType.Follower);
  assert.equal(node.hasReady(), false);
  const fromZero = new RawNode(makeConfig(2, storage.clone()));
  const rd = fromZero.ready();
  assert.ok(
    rd.committedEntries.length > 0,
    'applied 0: committed entries after the snapshot again',
  );
});

test('status reports progress on the leader only', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  const st = c.node(1).status();
  assert.equal(st.lead, 1);
  assert.equal(st.raftState, StateType.Leader);
  assert.deepEqual([...st.progress.keys()], [1, 2, 3]);
  assert.equal(st.progress.get(2)!.state, 'replicate');
  assert.equal(st.progress.get(2)!.match, st.commit);
  assert.equal(c.node(2).status().progress.size, 0);
});

test('soft state appears in a Ready when the leader or role changes', () => {
  const s = newSolo(1, [1]);
  s.node.campaign();
  const rd = s.node.ready();
  assert.deepEqual(rd.softState, { lead: 1, raftState: StateType.Leader });
  s.storage.append(rd.entries);
  s.node.advance(rd);
  s.node.propose(enc('x'));
  assert.equal(s.node.ready().softState, null);
});

test('ConfChange codec round-trips and rejects garbage', () => {
  const cc = {
    transition: 2 as const,
    changes: [
      { type: 0 as const, nodeId: 7 },
      { type: 2 as const, nodeId: 9 },
    ],
    context: enc('ctx'),
  };
  const back = decodeConfChange(encodeConfChange(cc));
  assert.equal(back.transition, 2);
  assert.deepEqual(back.changes, cc.changes);
  assert.deepEqual([...back.context], [...cc.context]);
  assert.equal(decodeConfChange(new Uint8Array(0)).changes.length, 0);
  assert.throws(() => decodeConfChange(new Uint8Array([0xc1])), RaftError);
  assert.throws(
    () => decodeConfChange(encodeConfChange({ ...cc, changes: [{ type: 7 as 0, nodeId: 1 }] })),
    RaftError,
  );
});

/** Runs a 5-node cluster on a faulty network; returns a trace and checks safety as it goes. */
function fuzz(seed: number, steps: number): string[] {
  const rng = new Prng(seed);
  const c = new Cluster([1, 2, 3, 4, 5, 6], {
    voters: [1, 2, 3, 4, 5],
    preVote: rng.chance(0.5),
    checkQuorum: rng.chance(0.5),
    maxInflightMsgs: 1 + rng.int(4),
    maxMsgBytes: 8 + rng.int(64),
  });
  const ids = [1, 2, 3, 4, 5, 6];
  // Membership churn: node 6 (learner, voter, removed) and node 5 (demoted, promoted).
  const churn = [
    [{ type: ConfChangeType.AddLearnerNode, nodeId: 6 }],
    [{ type: ConfChangeType.AddNode, nodeId: 6 }],
    [{ type: ConfChangeType.RemoveNode, nodeId: 6 }],
    [{ type: ConfChangeType.AddLearnerNode, nodeId: 5 }],
    [{ type: ConfChangeType.AddNode, nodeId: 5 }],
  ];
  const trace: string[] = [];
  const leaders = new Map<number, number>(); // term -> leader
  let proposals = 0;
  const attempt = (fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof RaftError)) throw e;
    }
  };
  for (let step = 0; step < steps; step++) {
    const roll = rng.float();
    if (roll < 0.04) {
      c.tickAll(1);
    } else if (roll < 0.1) {
      const id = rng.pick(ids);
      attempt(() => c.node(id).propose(enc(`p${proposals++}`)));
    } else if (roll < 0.102) {
      c.restart(rng.pick(ids));
    } else if (roll < 0.11) {
      c.compact(rng.pick(ids));
    } else if (roll < 0.12) {
      const lead = c.leader();
      const changes = rng.pick(churn);
      if (lead !== 0)
        attempt(() => c.node(lead).proposeConfChange({ transition: 0, changes, context: enc('') }));
    } else {
      c.flush();
      // Deliver the oldest or a random message, maybe dropping or duplicating it.
      if (c.queue.length > 0) {
        const i = rng.chance(0.5) ? 0 : rng.int(c.queue.length);
        const m = c.queue.splice(i, 1)[0] as Message;
        if (rng.chance(0.1)) continue;
        if (rng.chance(0.05)) c.queue.push(m);
        c.node(m.to).step(m);
        if (m.type === MessageType.Snap) c.node(m.from).reportSnapshot(m.to, true);
      }
    }
    for (const m of c.members.values()) {
      const r = m.node.raft;
      if (r.state === StateType.Leader) {
        const prev = leaders.get(r.term);
        assert.ok(
          prev === undefined || prev === m.id,
          `seed ${seed}: two leaders in term ${r.term}`,
        );
        leaders.set(r.term, m.id);
      }
    }
    trace.push(`${step}:${c.queue.length}:${c.leader()}`);
  }
  // State machine safety: applied sequences are prefixes of one another.
  const seqs = [...c.members.values()].map((m) => m.appliedData);
  for (const a of seqs) {
    for (const b of seqs) {
      const n = Math.min(a.length, b.length);
      assert.deepEqual(a.slice(0, n), b.slice(0, n), `seed ${seed}: divergent applied entries`);
    }
  }
  return trace;
}

test('randomized faulty network: one leader per term, identical applied prefixes', () => {
  for (let seed = 1; seed <= 25; seed++) fuzz(seed, 1500);
});

test('the same seed gives the same run', () => {
  assert.deepEqual(fuzz(42, 500), fuzz(42, 500));
});
