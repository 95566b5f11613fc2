/** Linearizable reads (thesis §6.4 ReadIndex, §6.4.1 leases). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftError } from '../../src/raft/errors.js';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { MessageType, ReadOnlyOption, StateType } from '../../src/raft/types.js';
import { Cluster, dec, enc, entry, msg, newSolo, readMessages } from './harness.js';

const E = 10;

test('thesis §6.4: the leader answers after a quorum acks a heartbeat with the context', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.node(1).readIndex(enc('r1'));
  c.flush();
  const beats = c.queue.filter((m) => m.type === MessageType.Heartbeat);
  assert.equal(beats.length, 2);
  assert.ok(beats.every((m) => dec(m.context) === 'r1'));
  assert.equal(c.get(1).readStates.length, 0, 'not before the acks');
  c.drain();
  assert.equal(c.get(1).readStates.length, 1);
  assert.equal(c.get(1).readStates[0]!.index, c.node(1).raft.log.committed);
  assert.equal(dec(c.get(1).readStates[0]!.requestCtx), 'r1');
});

test('thesis §6.4: without a quorum of acks there is no answer', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.isolate(1);
  c.node(1).readIndex(enc('r'));
  c.drain();
  assert.equal(c.get(1).readStates.length, 0);
  c.heal();
  c.tick(1);
  c.drain();
  assert.equal(c.get(1).readStates.length, 1, 'the next heartbeat carries the pending context');
});

test('thesis §6.4: a new leader answers only after committing an entry of its term', () => {
  const s = newSolo(1, [1, 2, 3]);
  s.node.raft.becomeCandidate();
  s.node.raft.becomeLeader();
  readMessages(s);
  s.node.readIndex(enc('early'));
  const beats = readMessages(s).filter((m) => m.type === MessageType.Heartbeat);
  assert.equal(beats.length, 0, 'held back until the empty entry commits');
  const r = s.node.raft;
  s.node.step(
    msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: r.log.lastIndex() }),
  );
  const out = readMessages(s);
  const ctxBeats = out.filter(
    (m) => m.type === MessageType.Heartbeat && dec(m.context) === 'early',
  );
  assert.equal(ctxBeats.length, 2);
  s.node.step(
    msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: r.term, context: enc('early') }),
  );
  readMessages(s);
  assert.equal(s.readStates.length, 1);
  assert.equal(s.readStates[0]!.index, r.log.lastIndex());
});

test('a follower forwards ReadIndex and gets the leader commit index back', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.node(1).propose(enc('a'));
  c.drain();
  c.node(3).readIndex(enc('f'));
  c.drain();
  assert.equal(c.get(3).readStates.length, 1);
  assert.equal(c.get(3).readStates[0]!.index, c.node(1).raft.log.committed);
});

test('reads without a leader, or beyond maxPendingReads, are rejected', () => {
  const s = newSolo(1, [1, 2, 3]);
  assert.throws(
    () => s.node.readIndex(enc('x')),
    (e: unknown) => e instanceof RaftError && e.code === 'READ_INDEX_DROPPED',
  );
  const c = new Cluster([1, 2, 3], { maxPendingReads: 2 });
  c.elect(1);
  c.isolate(1);
  c.node(1).readIndex(enc('a'));
  c.node(1).readIndex(enc('b'));
  assert.throws(
    () => c.node(1).readIndex(enc('c')),
    (e: unknown) => e instanceof RaftError && e.code === 'READ_INDEX_DROPPED',
  );
});

test('several pending reads are all answered by one confirming round, in order', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.isolate(1);
  for (const k of ['a', 'b', 'c']) c.node(1).readIndex(enc(k));
  c.drain();
  c.heal();
  c.tick(1);
  c.drain();
  assert.deepEqual(
    c.get(1).readStates.map((r) => dec(r.requestCtx)),
    ['a', 'b', 'c'],
  );
});

test('a single-voter leader answers at once', () => {
  const c = new Cluster([1]);
  c.elect(1);
  c.node(1).readIndex(enc('solo'));
  c.flush();
  assert.equal(c.get(1).readStates.length, 1);
});

test('a sole voter restarted with a commit index behind its log answers only after committing in its term', () => {
  // A crash lost the unsynced commit index: entries 2..4 may have been committed (and applied,
  // acknowledged) before it, yet the restored commit index is 1.
  const storage = new MemoryStorage();
  RawNode.bootstrap(storage, [1]);
  const last = storage.lastIndex();
  storage.append([2, 3, 4].map((i) => entry(last + i - 1, 1, `w${i}`)));
  storage.setHardState({ term: 1, vote: 1, commit: last });
  const s = newSolo(1, [1], {}, storage);
  s.node.campaign();
  assert.equal(s.node.raft.state, StateType.Leader);
  s.node.readIndex(enc('after-restart'));
  assert.equal(
    s.node.raft.log.committed,
    last,
    'the empty entry of the new term is not durable yet',
  );
  assert.equal(s.readStates.length, 0);
  const out = readMessages(s); // the empty entry is written; it and everything before commit
  assert.equal(out.length, 0);
  assert.equal(s.readStates.length, 1, 'answered once an entry of the term committed');
  assert.equal(s.readStates[0]!.index, last + 4);
});

test('thesis §6.4.1: LeaseBased reads answer locally while the lease holds', () => {
  const c = new Cluster([1, 2, 3], {
    checkQuorum: true,
    readOnlyOption: ReadOnlyOption.LeaseBased,
  });
  c.tickAll(E);
  c.elect(1);
  assert.equal(c.node(1).leaseValid(), false, 'no heartbeat acknowledged yet');
  c.tick(1);
  c.drain();
  assert.equal(c.node(1).leaseValid(), true);
  const before = c.sent.length;
  c.node(1).readIndex(enc('lease'));
  c.flush();
  assert.equal(c.get(1).readStates.length, 1);
  assert.equal(c.sent.slice(before).filter((m) => m.type === MessageType.Heartbeat).length, 0);
  // Cut off: the lease runs out an election timeout after the last acknowledged heartbeat.
  c.isolate(1);
  for (let i = 0; i < E - 1; i++) c.tick(1);
  c.drain();
  assert.equal(c.node(1).leaseValid(), true, 'still within the election timeout');
  c.tick(1);
  c.drain();
  assert.equal(c.node(1).leaseValid(), false);
  c.node(1).readIndex(enc('late'));
  c.drain();
  assert.equal(c.get(1).readStates.length, 1, 'falls back to a confirming round, which fails');
});

test('leaseValid is false without CheckQuorum and on followers', () => {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.tick(1);
  c.drain();
  assert.equal(c.node(1).leaseValid(), false);
  assert.equal(c.node(2).leaseValid(), false);
});

test('after sending TimeoutNow a leader never trusts its lease again in that term', () => {
  // Simulator finding 4: the transferee may win later, so older quorum answers prove nothing.
  const c = new Cluster([1, 2, 3], {
    checkQuorum: true,
    readOnlyOption: ReadOnlyOption.LeaseBased,
  });
  c.tickAll(E);
  c.elect(1);
  c.tick(1);
  c.drain();
  assert.equal(c.node(1).leaseValid(), true);
  c.filter = (m) => m.type !== MessageType.TimeoutNow; // the transfer never completes
  c.node(1).transferLeader(2);
  c.drain();
  assert.ok(
    c.sent.some((m) => m.type === MessageType.TimeoutNow),
    'TimeoutNow was sent',
  );
  for (let i = 0; i < 2 * E; i++) {
    c.tick(1);
    c.drain();
  }
  assert.equal(c.node(1).status().leadTransferee, 0, 'the transfer was abandoned');
  assert.equal(c.node(1).status().raftState, StateType.Leader, 'still leading with heartbeats');
  assert.equal(c.node(1).leaseValid(), false);
});
