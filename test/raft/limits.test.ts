/** Limits and their relations (TigerBeetle style: a limit on everything, asserted at startup). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftError } from '../../src/raft/errors.js';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { MessageType, ReadOnlyOption } from '../../src/raft/types.js';
import { AssertionError } from '../../src/util/assert.js';
import { Cluster, enc, makeConfig, msg, newSolo, readMessages } from './harness.js';

test('maxUncommittedBytes: a leader drops proposals beyond the limit until entries commit', () => {
  const s = newSolo(1, [1, 2, 3], { maxUncommittedBytes: 10, maxMsgBytes: 10 });
  s.node.raft.becomeCandidate();
  s.node.raft.becomeLeader();
  readMessages(s);
  s.node.propose(enc('12345'));
  s.node.propose(enc('12345'));
  assert.throws(
    () => s.node.propose(enc('1')),
    (e: unknown) => e instanceof RaftError && e.code === 'PROPOSAL_DROPPED',
  );
  const r = s.node.raft;
  s.node.step(
    msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: r.log.lastIndex() }),
  );
  readMessages(s); // committed entries applied: their bytes no longer count
  assert.equal(r.uncommittedBytes, 0);
  s.node.propose(enc('1'));
});

test('maxUncommittedBytes: the first entry is accepted even when larger than the limit', () => {
  const s = newSolo(1, [1, 2, 3], { maxUncommittedBytes: 4, maxMsgBytes: 4 });
  s.node.raft.becomeCandidate();
  s.node.raft.becomeLeader();
  s.node.propose(enc('0123456789'));
  assert.throws(() => s.node.propose(enc('x')), RaftError);
});

test('maxCommittedBytesPerReady splits committed entries across Readies', () => {
  const c = new Cluster([1], { maxCommittedBytesPerReady: 8 });
  c.elect(1);
  const node = c.node(1);
  for (let i = 0; i < 6; i++) node.propose(enc('abcd'));
  let readies = 0;
  let applied = 0;
  const storage = c.get(1).storage;
  while (node.hasReady()) {
    const rd = node.ready();
    storage.append(rd.entries);
    if (rd.hardState !== null) storage.setHardState(rd.hardState);
    let bytes = 0;
    for (const e of rd.committedEntries) bytes += e.data.length;
    assert.ok(rd.committedEntries.length <= 1 || bytes <= 8, `${bytes} bytes in one Ready`);
    applied += rd.committedEntries.filter((e) => e.data.length > 0).length;
    readies++;
    node.advance(rd);
  }
  assert.equal(applied, 6);
  assert.ok(readies >= 3);
});

test('construction asserts the relations between limits', () => {
  const bad = [
    { electionTicks: 1, heartbeatTicks: 1 },
    { heartbeatTicks: 0 },
    { maxInflightMsgs: 0 },
    { maxUncommittedBytes: 10, maxMsgBytes: 100 },
    { readOnlyOption: ReadOnlyOption.LeaseBased, checkQuorum: false },
    { maxPendingReads: 0 },
    { id: 0 },
  ];
  for (const overrides of bad) {
    const storage = new MemoryStorage();
    RawNode.bootstrap(storage, [1]);
    assert.throws(
      () => new RawNode(makeConfig(1, storage, overrides)),
      AssertionError,
      JSON.stringify(overrides),
    );
  }
});
