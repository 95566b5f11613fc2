/** Log replication (Raft paper §5.3, §5.4; thesis §3.5, §10.2 pipelining). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftError } from '../../src/raft/errors.js';
import { MessageType, StateType } from '../../src/raft/types.js';
import {
  Cluster,
  enc,
  entry,
  logTerms,
  msg,
  newSolo,
  readMessages,
  storageWithTerms,
} from './harness.js';

function leaderSolo(voters = [1, 2, 3], overrides = {}) {
  const s = newSolo(1, voters, overrides);
  s.node.raft.becomeCandidate();
  s.node.raft.becomeLeader();
  readMessages(s);
  return s;
}

test('§5.3: the leader appends a proposal and sends it to every follower', () => {
  const s = leaderSolo();
  const r = s.node.raft;
  // Followers start in probe state; acknowledge the empty entry to move them to replicate.
  const li = r.log.lastIndex();
  for (const id of [2, 3])
    s.node.step(msg({ type: MessageType.AppResp, from: id, to: 1, term: r.term, index: li }));
  readMessages(s);
  s.node.propose(enc('x'));
  const apps = readMessages(s).filter((m) => m.type === MessageType.App);
  assert.deepEqual(apps.map((m) => m.to).sort(), [2, 3]);
  for (const m of apps) {
    assert.equal(m.index, li);
    assert.equal(m.logTerm, r.term);
    assert.equal(m.entries.length, 1);
    assert.equal(m.entries[0]!.index, li + 1);
    assert.equal(m.commit, li);
  }
});

test('§5.3: an entry commits once a majority stores it', () => {
  // [voters, acks from, want committed]
  const cases: [number, number[], boolean][] = [
    [1, [], true],
    [3, [], false],
    [3, [2], true],
    [3, [2, 3], true],
    [5, [2], false],
    [5, [2, 3], true],
    [4, [2], false],
    [4, [2, 3], true],
  ];
  for (const [size, acks, want] of cases) {
    const voters = Array.from({ length: size }, (_, i) => i + 1);
    const s = leaderSolo(voters);
    const r = s.node.raft;
    s.node.propose(enc('x'));
    readMessages(s);
    const li = r.log.lastIndex();
    for (const id of acks)
      s.node.step(msg({ type: MessageType.AppResp, from: id, to: 1, term: r.term, index: li }));
    readMessages(s);
    assert.equal(r.log.committed === li, want, `size ${size} acks ${acks}`);
  }
});

test('§5.3: a follower commits up to the leader commit index it learns of', () => {
  const s = newSolo(2, [1, 2, 3]);
  const ents = [entry(2, 1, 'a'), entry(3, 1, 'b'), entry(4, 1, 'c')];
  s.node.step(
    msg({
      type: MessageType.App,
      from: 1,
      to: 2,
      term: 1,
      index: 1,
      logTerm: 1,
      entries: ents,
      commit: 3,
    }),
  );
  readMessages(s);
  assert.equal(s.node.raft.log.committed, 3);
  assert.deepEqual(
    s.applied.map((e) => e.index),
    [2, 3],
  );
  // The commit index is capped by the last new entry of this message.
  const t = newSolo(2, [1, 2, 3]);
  t.node.step(
    msg({
      type: MessageType.App,
      from: 1,
      to: 2,
      term: 1,
      index: 1,
      logTerm: 1,
      entries: [entry(2, 1)],
      commit: 9,
    }),
  );
  readMessages(t);
  assert.equal(t.node.raft.log.committed, 2);
});

test('§5.3: a follower rejects an append whose previous entry does not match', () => {
  // follower log terms: [1, 1(2), 2(3)]; [prev term, prev index, want reject, hint]
  const cases: [number, number, boolean, number][] = [
    [1, 2, false, 0],
    [2, 3, false, 0],
    [1, 3, true, 2], // term mismatch: hint is the last index with term <= 1
    [3, 4, true, 3], // beyond our log: hint is our last index
    [0, 0, false, 0], // before the snapshot: answered with our commit index
  ];
  for (const [logTerm, index, wantReject, wantHint] of cases) {
    const storage = storageWithTerms([1, 2, 3], [1, 2], 2);
    const s = newSolo(2, [1, 2, 3], {}, storage);
    s.node.step(msg({ type: MessageType.App, from: 1, to: 2, term: 2, index, logTerm, commit: 1 }));
    const resp = readMessages(s).find((m) => m.type === MessageType.AppResp)!;
    assert.equal(resp.reject, wantReject, `prev (${index}, ${logTerm})`);
    if (wantReject) assert.equal(resp.rejectHint, wantHint);
  }
});

test('§5.3: a follower appends new entries and truncates conflicting ones', () => {
  // follower terms from index 2: [1, 2]; [prev index, prev term, entries (index, term), want terms]
  const cases: [number, number, [number, number][], number[]][] = [
    [3, 2, [[4, 3]], [1, 1, 2, 3]],
    [
      2,
      1,
      [
        [3, 3],
        [4, 4],
      ],
      [1, 1, 3, 4],
    ],
    [1, 1, [[2, 1]], [1, 1, 2]],
    [1, 1, [[2, 3]], [1, 3]],
  ];
  for (const [index, logTerm, ents, want] of cases) {
    const storage = storageWithTerms([1, 2, 3], [1, 2], 2);
    const s = newSolo(2, [1, 2, 3], {}, storage);
    const entries = ents.map(([i, t]) => entry(i, t));
    s.node.step(
      msg({ type: MessageType.App, from: 1, to: 2, term: 4, index, logTerm, entries, commit: 1 }),
    );
    readMessages(s);
    assert.deepEqual(logTerms(s.node), want, `append after (${index}, ${logTerm})`);
    assert.deepEqual(
      [1, 2, 3, 4, 5].slice(0, want.length).map((i) => s.storage.term(i)),
      want,
      'storage matches the log',
    );
  }
});

test('§5.3 figure 7: the leader brings every follower log in line (fast backtracking)', () => {
  const leaderTerms = [1, 1, 4, 4, 5, 5, 6, 6, 6]; // indexes 2..10 (index 1 is the bootstrap)
  const followers: Record<string, number[]> = {
    a: [1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 4],
    c: [1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 4, 4, 4, 4],
    f: [1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  for (const [name, terms] of Object.entries(followers)) {
    const c = new Cluster([1, 2, 3]);
    c.addMember(1, storageWithTerms([1, 2, 3], leaderTerms, 8));
    c.addMember(2, storageWithTerms([1, 2, 3], terms, 7));
    c.addMember(3, storageWithTerms([1, 2, 3], leaderTerms, 7));
    c.elect(1);
    assert.equal(c.node(1).raft.state, StateType.Leader, name);
    c.node(1).propose(enc('x'));
    c.drain();
    assert.deepEqual(logTerms(c.node(2)), logTerms(c.node(1)), `follower ${name}`);
    const rejections = c.sent.filter(
      (m) => m.type === MessageType.AppResp && m.from === 2 && m.reject,
    );
    assert.ok(rejections.length <= 2, `follower ${name}: ${rejections.length} rejections`);
  }
});

test('§5.4.2: a leader only commits entries of its current term by counting replicas', () => {
  // log: bootstrap(1, t1), (2, t1), (3, t2); leader of term 3 appends (4, t3).
  const cases: [number, number][] = [
    [2, 1],
    [3, 1],
    [4, 4],
  ];
  for (const [ackIndex, wantCommit] of cases) {
    const storage = storageWithTerms([1, 2, 3], [1, 2], 2);
    const s = newSolo(1, [1, 2, 3], {}, storage);
    s.node.raft.becomeCandidate();
    s.node.raft.becomeLeader();
    readMessages(s);
    s.node.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: 3, index: ackIndex }));
    assert.equal(s.node.raft.log.committed, wantCommit, `ack ${ackIndex}`);
  }
});

test('thesis §10.2: in replicate state at most maxInflightMsgs appends are outstanding', () => {
  const s = leaderSolo([1, 2], { maxInflightMsgs: 3 });
  const r = s.node.raft;
  s.node.step(
    msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: r.log.lastIndex() }),
  );
  readMessages(s);
  for (let i = 0; i < 10; i++) s.node.propose(enc(`p${i}`));
  const apps = readMessages(s).filter((m) => m.type === MessageType.App);
  assert.equal(apps.length, 3);
  // Acknowledging the first frees one slot.
  s.node.step(
    msg({
      type: MessageType.AppResp,
      from: 2,
      to: 1,
      term: r.term,
      index: apps[0]!.entries[0]!.index,
    }),
  );
  const more = readMessages(s).filter((m) => m.type === MessageType.App);
  assert.ok(more.length >= 1);
  assert.equal(r.tracker.progress.get(2)!.inflights.size, 3);
});

test('thesis §3.5: in probe state one append at a time; a heartbeat response resumes', () => {
  const s = leaderSolo([1, 2]);
  const r = s.node.raft;
  s.node.propose(enc('a'));
  s.node.propose(enc('b'));
  const apps = readMessages(s).filter((m) => m.type === MessageType.App && m.to === 2);
  assert.equal(apps.length, 1, 'probe sent once, then paused');
  s.node.tick(); // heartbeat
  readMessages(s);
  s.node.step(msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: r.term }));
  const again = readMessages(s).filter((m) => m.type === MessageType.App && m.to === 2);
  assert.equal(again.length, 1, 'the heartbeat response unpaused the probe');
});

test('appends are batched up to maxMsgBytes (at least one entry)', () => {
  const s = leaderSolo([1, 2], { maxMsgBytes: 10, maxUncommittedBytes: 1000 });
  const r = s.node.raft;
  s.node.step(
    msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: r.log.lastIndex() }),
  );
  readMessages(s);
  r.tracker.progress.get(2)!.becomeProbe(); // one message at a time, so the batch is visible
  for (let i = 0; i < 6; i++) s.node.propose(enc('abcd')); // 4 bytes each
  readMessages(s);
  s.node.step(msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: r.term }));
  const app = readMessages(s).find((m) => m.type === MessageType.App)!;
  assert.equal(app.entries.length, 2, '2 x 4 bytes fit in 10, a third does not');
  const big = leaderSolo([1, 2], { maxMsgBytes: 10, maxUncommittedBytes: 1000 });
  big.node.propose(enc('0123456789abcdef'));
  const one = readMessages(big).filter((m) => m.type === MessageType.App);
  assert.ok(one.every((m) => m.entries.length >= 1));
});

test('a follower forwards proposals to the leader', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.node(3).propose(enc('fwd'));
  const fwd = c.queue.find((m) => m.type === MessageType.Prop);
  c.flush();
  const sent = c.queue.find((m) => m.type === MessageType.Prop) ?? fwd;
  assert.equal(sent!.to, 1);
  c.drain();
  assert.deepEqual(c.get(1).appliedData, ['fwd']);
});

test('proposals are dropped without a leader or with forwarding disabled', () => {
  const s = newSolo(1, [1, 2, 3]);
  assert.throws(
    () => s.node.propose(enc('x')),
    (e: unknown) => e instanceof RaftError && e.code === 'PROPOSAL_DROPPED' && e.leader === 0,
  );
  const c = new Cluster([1, 2, 3], { disableProposalForwarding: true });
  c.elect(1);
  assert.throws(
    () => c.node(2).propose(enc('x')),
    (e: unknown) => e instanceof RaftError && e.code === 'PROPOSAL_DROPPED' && e.leader === 1,
  );
  const cand = newSolo(1, [1, 2, 3]);
  cand.node.campaign();
  assert.throws(() => cand.node.propose(enc('x')), RaftError);
});

test('a rejected append in replicate state falls back to probing', () => {
  const s = leaderSolo([1, 2]);
  const r = s.node.raft;
  const li = r.log.lastIndex();
  s.node.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: li }));
  s.node.propose(enc('a'));
  readMessages(s);
  s.node.step(
    msg({
      type: MessageType.AppResp,
      from: 2,
      to: 1,
      term: r.term,
      index: li + 1,
      reject: true,
      rejectHint: li,
      logTerm: r.term,
    }),
  );
  assert.equal(r.tracker.progress.get(2)!.state, 0 /* probe */);
  assert.equal(r.tracker.progress.get(2)!.next, li + 1);
});

test('a 5-node cluster replicates 200 proposals from all members in order', () => {
  const c = new Cluster([1, 2, 3, 4, 5], { maxInflightMsgs: 4, maxMsgBytes: 64 });
  c.elect(1);
  for (let i = 0; i < 200; i++) c.node(1 + (i % 5)).propose(enc(`v${i}`));
  c.drain();
  const want = c.get(1).appliedData;
  assert.equal(want.length, 200);
  for (const id of [2, 3, 4, 5]) assert.deepEqual(c.get(id).appliedData, want);
});

test("thesis §10.2.1: a leader's appends leave before its own write; durable followers alone commit", () => {
  const s = leaderSolo();
  const r = s.node.raft;
  s.node.propose(enc('x'));
  const rd = s.node.ready();
  const li = r.log.lastIndex();
  assert.deepEqual(
    rd.messagesNow.filter((m) => m.type === MessageType.App).map((m) => m.to),
    [2, 3],
    'the appends may leave at once',
  );
  assert.equal(
    rd.messages.some((m) => m.type === MessageType.App),
    false,
    'none wait for the leader write',
  );
  // Both followers made it durable while the leader's own write still runs: a majority.
  for (const id of [2, 3])
    s.node.step(msg({ type: MessageType.AppResp, from: id, to: 1, term: r.term, index: li }));
  assert.equal(r.log.committed, li);
});

test("thesis §10.2.1: one follower's ack and the leader's unfinished write do not commit", () => {
  const s = leaderSolo([1, 2, 3]);
  const r = s.node.raft;
  s.node.propose(enc('x'));
  const rd = s.node.ready();
  const li = r.log.lastIndex();
  s.node.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: li }));
  assert.notEqual(r.log.committed, li, "not before the leader's own write is durable");
  s.storage.append(rd.entries);
  if (rd.hardState !== null) s.storage.setHardState(rd.hardState);
  s.node.advance(rd);
  assert.equal(r.log.committed, li, 'committed once the leader reports its write durable');
});

test('votes, acknowledgements and a new term never leave before the write', () => {
  // A follower's acknowledgement of an append.
  const f = newSolo(2, [1, 2, 3]);
  f.node.step(
    msg({
      type: MessageType.App,
      from: 1,
      to: 2,
      term: 1,
      index: 1,
      logTerm: 1,
      entries: [entry(2, 1)],
      commit: 1,
    }),
  );
  const rd = f.node.ready();
  assert.equal(rd.messagesNow.length, 0);
  assert.ok(rd.messages.some((m) => m.type === MessageType.AppResp));
  // A candidate's vote requests carry its new term.
  const c = newSolo(1, [1, 2, 3]);
  c.node.campaign();
  const crd = c.node.ready();
  assert.equal(crd.messagesNow.length, 0, 'term and vote must be durable first');
  assert.ok(crd.messages.length > 0);
});
