/**
 * A compaction whose deletes still run (MvccStore.compactStep) in an etcd snapshot: the file says
 * so as etcd does (scheduledCompactRev ahead of finishedCompactRev, the records still there), and
 * a restore from it (`tandem restore --from`) finishes the compaction when the store opens.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import { encodeCommand } from '../../src/kv/mvcc/command.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import { etcdSnapshotFile, restoreEtcdSnapshot } from '../../src/server/etcd-snapshot.js';
import { BboltReader, bytesPageSource } from '../../src/storage/bbolt/reader.js';
import { compact, FakeLessor, put } from '../kv/mvcc-helpers.js';

const enc = new TextEncoder();

function snapshotOf(sm: KvStateMachine, backend: MemoryBackend): Uint8Array {
  const store = sm.store;
  const file = etcdSnapshotFile({
    view: backend.readView(),
    appliedIndex: store.appliedIndex(),
    revision: store.currentRevision(),
    compactRevision: store.compactRevision(),
    finishedCompactRevision: store.finishedCompactRevision(),
    members: [],
    removedMemberIds: [],
  });
  return Buffer.concat([...file.chunks]);
}

/** etcd's meta mark `name` as a main revision (0: absent). */
function mark(reader: BboltReader, name: string): number {
  for (const [k, v] of reader.bucket(enc.encode('meta')) ?? []) {
    // etcd's revision bytes: the main revision, 8 bytes big-endian, first.
    if (Buffer.from(k).toString() === name) return Number(Buffer.from(v).readBigUInt64BE(0));
  }
  return 0;
}

function records(backend: MemoryBackend): number {
  let n = 0;
  backend.scan('key', new Uint8Array(0), null, () => {
    n++;
    return true;
  });
  return n;
}

test('a snapshot taken mid-compaction says so as etcd does, and a restore from it finishes the compaction', () => {
  const backend = new MemoryBackend();
  const sm = KvStateMachine.open(backend, { lessor: new FakeLessor(), compactBatchRecords: 3 });
  let index = 0;
  for (let i = 0; i < 10; i++) sm.apply(++index, encodeCommand(put('k', `v${i}`)));
  const first = sm.store.currentRevision() - 5;
  sm.apply(++index, encodeCommand(compact(first))); // drops 4: one batch of 3 left for later
  while (sm.store.compactStep()) {}
  const second = sm.store.currentRevision();
  sm.apply(++index, encodeCommand(compact(second))); // drops 5 more: pending
  assert.ok(sm.store.compactionPending());
  sm.store.compactStep(); // 3 of 5 deleted, 2 left

  const reader = new BboltReader(bytesPageSource(snapshotOf(sm, backend)));
  assert.equal(mark(reader, 'scheduledCompactRev'), second);
  assert.equal(mark(reader, 'finishedCompactRev'), first);
  assert.equal([...(reader.bucket(enc.encode('key')) ?? [])].length, 1 + 2, 'the two left too');

  const restored = new MemoryBackend();
  const result = restoreEtcdSnapshot(restored, reader);
  assert.equal(result.compactRevision, second);
  const opened = KvStateMachine.open(restored, { lessor: new FakeLessor() });
  assert.equal(opened.store.compactRevision(), second);
  assert.equal(opened.store.finishedCompactRevision(), first);
  assert.equal(opened.store.compactionPendingRecords().length, 2);
  while (opened.store.compactStep()) {}
  assert.equal(records(restored), 1);
  assert.equal(opened.store.finishedCompactRevision(), second);

  // Once finished, the marks agree.
  while (sm.store.compactStep()) {}
  const done = new BboltReader(bytesPageSource(snapshotOf(sm, backend)));
  assert.equal(mark(done, 'scheduledCompactRev'), second);
  assert.equal(mark(done, 'finishedCompactRev'), second);
});
