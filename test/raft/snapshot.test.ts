/** Snapshots and log compaction (thesis §5.1; etcd MsgSnap, reportSnapshot). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeConfChange } from '../../src/raft/codec.js';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { ProgressState } from '../../src/raft/tracker/progress.js';
import { ConfChangeType, EntryType, MessageType, StateType } from '../../src/raft/types.js';
import { Cluster, enc, makeConfig, msg, newSolo, readMessages, type Solo } from './harness.js';

/** Leader 1 commits `n` entries while 3 is cut off, then compacts its log past them. */
function laggingCluster(n: number): Cluster {
  const c = new Cluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < n; i++) c.node(1).propose(enc(`v${i}`));
  c.drain();
  assert.ok(c.compact(1));
  return c;
}

test('thesis §5.1: a follower whose next entries were compacted gets a snapshot', () => {
  const c = laggingCluster(5);
  c.heal();
  c.tickAll(1);
  c.drain();
  const snaps = c.sent.filter((m) => m.type === MessageType.Snap && m.to === 3);
  assert.equal(snaps.length, 1);
  const f = c.get(3);
  assert.equal(f.appliedIndex, c.get(1).appliedIndex);
  assert.equal(f.storage.firstIndex(), f.appliedIndex + 1);
  // The leader waits in snapshot state until the transport reports the snapshot.
  assert.equal(c.node(1).raft.tracker.progress.get(3)!.state, ProgressState.Replicate);
  c.node(1).propose(enc('after'));
  c.drain();
  assert.deepEqual(c.get(3).appliedData, ['v0', 'v1', 'v2', 'v3', 'v4', 'after']);
});

test('reportSnapshot: failure makes the leader probe and resend; success resumes', () => {
  for (const ok of [true, false]) {
    const c = laggingCluster(3);
    c.heal();
    c.filter = (m) => m.type !== MessageType.Snap; // the snapshot is lost in transit
    c.tickAll(1);
    c.drain();
    const pr = c.node(1).raft.tracker.progress.get(3)!;
    assert.equal(pr.state, ProgressState.Snapshot);
    c.node(1).reportSnapshot(3, ok);
    assert.equal(pr.state, ProgressState.Probe);
    c.heal();
    for (let i = 0; i < 3; i++) {
      c.tickAll(1);
      c.drain();
    }
    assert.equal(c.get(3).appliedIndex, c.get(1).appliedIndex, `ok=${ok}`);
  }
});

test('a follower installs a snapshot through Ready and restores its configuration', () => {
  const s = newSolo(3, [1, 2, 3]);
  const confState = {
    voters: [1, 2, 3],
    learners: [4],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  const snapshot = { metadata: { index: 11, term: 2, confState }, data: enc('image') };
  s.node.step(msg({ type: MessageType.Snap, from: 1, to: 3, term: 2, snapshot }));
  assert.ok(s.node.hasReady());
  const rd = s.node.ready();
  assert.equal(rd.snapshot, snapshot);
  assert.equal(rd.committedEntries.length, 0);
  assert.ok(rd.hardState !== null && rd.hardState.commit === 11);
  const resp = rd.messages.find((m) => m.type === MessageType.AppResp)!;
  assert.equal(resp.index, 11);
  s.storage.applySnapshot(rd.snapshot!);
  s.storage.setHardState(rd.hardState!);
  s.node.advance(rd);
  assert.equal(s.node.raft.log.applied, 11);
  assert.deepEqual(s.node.status().config.learners, [4]);
});

test('a stale snapshot (at or below commit) is acknowledged with the commit index', () => {
  const s = newSolo(3, [1, 2, 3]);
  const confState = {
    voters: [1, 2, 3],
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  const snapshot = { metadata: { index: 1, term: 1, confState }, data: enc('old') };
  s.node.step(msg({ type: MessageType.Snap, from: 1, to: 3, term: 2, snapshot }));
  const out = readMessages(s);
  assert.equal(s.node.raft.log.unstable.snapshot, null);
  assert.equal(out.find((m) => m.type === MessageType.AppResp)!.index, 1);
});

test('a member of its own configuration ignores a snapshot that does not list it', () => {
  const s = newSolo(3, [1, 2, 3]);
  const confState = {
    voters: [1, 2],
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  const snapshot = { metadata: { index: 20, term: 2, confState }, data: enc('x') };
  s.node.step(msg({ type: MessageType.Snap, from: 1, to: 3, term: 2, snapshot }));
  readMessages(s);
  assert.equal(s.node.raft.log.committed, 1);
});

test('a node outside its own configuration accepts newer snapshots without it, then joins (finding 2)', () => {
  // A member added at index 21 installs a snapshot taken before its addition (10); the leader,
  // having compacted again, then only has another pre-addition snapshot (20) to send. etcd
  // refuses both (its server ships fresh snapshots that list the peer); we accept both: each is
  // newer than anything we committed, and our configuration does not list us either.
  const storage = new MemoryStorage();
  const s: Solo = {
    node: new RawNode(makeConfig(4, storage)),
    storage,
    applied: [],
    readStates: [],
  };
  const without4 = {
    voters: [1, 2, 3],
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  const snap = (index: number) => ({
    metadata: { index, term: 2, confState: without4 },
    data: enc(`image${index}`),
  });
  const answer = (): number => readMessages(s).find((m) => m.type === MessageType.AppResp)!.index;
  for (const index of [10, 20]) {
    s.node.step(msg({ type: MessageType.Snap, from: 1, to: 4, term: 2, snapshot: snap(index) }));
    assert.equal(answer(), index, `snapshot ${index} installed`);
    assert.equal(s.node.raft.log.committed, index);
  }
  const addition = {
    term: 2,
    index: 21,
    type: EntryType.ConfChange,
    data: encodeConfChange({
      transition: 0,
      changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: 4 }],
      context: new Uint8Array(0),
    }),
  };
  const app = { type: MessageType.App, from: 1, to: 4, term: 2, logTerm: 2, index: 20 };
  s.node.step(msg({ ...app, entries: [addition], commit: 21 }));
  assert.equal(answer(), 21);
  assert.deepEqual(s.node.status().config.learners, [4], 'it learned of its own addition');
  // Now it is in its configuration: a snapshot without it can only post-date its removal.
  s.node.step(msg({ type: MessageType.Snap, from: 1, to: 4, term: 2, snapshot: snap(40) }));
  assert.equal(answer(), 21, 'refused: answered with the commit index');
  assert.deepEqual(s.node.status().config.learners, [4]);
});

test('a node with a pending snapshot does not campaign', () => {
  const s = newSolo(3, [1, 2, 3]);
  const confState = {
    voters: [1, 2, 3],
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  s.node.step(
    msg({
      type: MessageType.Snap,
      from: 1,
      to: 3,
      term: 2,
      snapshot: { metadata: { index: 9, term: 2, confState }, data: enc('') },
    }),
  );
  assert.equal(s.node.raft.promotable(), false);
  for (let i = 0; i < 40; i++) s.node.tick();
  assert.equal(s.node.raft.state, StateType.Follower);
});

test('a restarted follower resumes from its snapshot and log', () => {
  const c = laggingCluster(4);
  c.heal();
  c.tickAll(1);
  c.drain();
  const before = c.get(3).appliedIndex;
  const m = c.restart(3);
  assert.equal(m.node.raft.log.committed >= before, true);
  c.node(1).propose(enc('z'));
  c.drain();
  assert.equal(c.get(3).appliedIndex, c.get(1).appliedIndex);
});

test('a snapshot arriving while committed entries are handed out but unapplied is refused', () => {
  // Simulator finding 6: installing it would switch the configuration under those entries.
  const s = newSolo(3, [1, 2, 3]);
  const entries = [2, 3, 4].map((index) => ({
    term: 2,
    index,
    type: 0 as const,
    data: enc(`e${index}`),
  }));
  s.node.step(
    msg({
      type: MessageType.App,
      from: 1,
      to: 3,
      term: 2,
      logTerm: 1,
      index: 1,
      entries,
      commit: 4,
    }),
  );
  const rd = s.node.ready();
  assert.equal(rd.committedEntries.length, 3, 'handed out, to apply once persisted');
  s.storage.append(rd.entries);
  s.storage.setHardState(rd.hardState!);
  const confState = {
    voters: [1, 2, 3],
    learners: [4],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  const snapshot = { metadata: { index: 11, term: 2, confState }, data: enc('image') };
  s.node.step(msg({ type: MessageType.Snap, from: 1, to: 3, term: 2, snapshot }));
  assert.deepEqual(s.node.status().config.learners, [], 'configuration unchanged');
  s.node.advance(rd);
  s.node.step(msg({ type: MessageType.Snap, from: 1, to: 3, term: 2, snapshot }));
  assert.deepEqual(s.node.status().config.learners, [4], 'accepted once applied');
});
