import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Snapshot } from '../../src/raft/types.js';
import type { StorageError } from '../../src/storage/errors.js';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import { NodeFileSystem } from '../../src/storage/fs.js';
import {
  decodeSnapshotFile,
  encodeSnapshotFile,
  SnapshotStore,
} from '../../src/storage/snapshot/store.js';
import { Prng } from '../../src/util/prng.js';
import { tempDir } from './helpers.js';

const real = new NodeFileSystem();

function snap(index: number, term: number, size = 100): Snapshot {
  const data = new Uint8Array(size).map((_, i) => (i * index) & 0xff);
  const confState = {
    voters: [1, 2, 3],
    learners: [4],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  return { metadata: { index, term, confState }, data };
}

test('save keeps the newest N; load returns the newest that verifies and is accepted', async () => {
  const dir = tempDir();
  const store = new SnapshotStore({ fs: real, dir, keep: 2 });
  await store.init();
  assert.equal((await store.load()).snapshot, null);
  for (const [i, t] of [
    [10, 1],
    [20, 2],
    [30, 2],
  ] as const)
    await store.save(snap(i, t));
  assert.deepEqual(await store.names(), [
    '0000000000000014-0000000000000002.snap',
    '000000000000001e-0000000000000002.snap',
  ]);
  const { snapshot } = await store.load();
  assert.deepEqual(snapshot, snap(30, 2));
  const older = await store.load((m) => m.index === 20 && m.term === 2);
  assert.equal(older.snapshot?.metadata.index, 20);
  assert.deepEqual(
    older.skipped.map((s) => s.reason),
    ['not accepted'],
  );
});

test('a damaged snapshot is skipped (renamed .broken) and the previous one is used', async () => {
  const dir = tempDir();
  const store = new SnapshotStore({ fs: real, dir });
  await store.init();
  await store.save(snap(10, 1));
  await store.save(snap(20, 1, 5000));
  const newest = join(dir, (await store.names()).at(-1)!);
  await new FaultyFileSystem(real).flipBit(newest, 2500, 4);
  const { snapshot, skipped } = await store.load();
  assert.equal(snapshot?.metadata.index, 10);
  assert.deepEqual(
    skipped.map((s) => s.reason),
    ['checksum mismatch'],
  );
  assert.ok(readdirSync(dir).some((n) => n.endsWith('.snap.broken')));
});

test('every single-bit flip of a snapshot file is detected', () => {
  const bytes = encodeSnapshotFile(snap(7, 3, 64));
  const rng = new Prng(9);
  for (let i = 0; i < 2000; i++) {
    const copy = bytes.slice();
    copy[rng.int(copy.length)]! ^= 1 << rng.int(8);
    assert.equal(typeof decodeSnapshotFile(copy), 'string');
  }
  assert.deepEqual(decodeSnapshotFile(bytes), snap(7, 3, 64));
});

test('a crash at any byte of a save leaves the old snapshot or the new one, never neither', async () => {
  for (let n = 0; n < 400; n += 7) {
    const dir = tempDir();
    const fs = new FaultyFileSystem(real);
    const store = new SnapshotStore({ fs, dir, keep: 1 });
    await store.init();
    await store.save(snap(10, 1, 300));
    fs.crashAfterBytes(n);
    const saved = await store.save(snap(20, 2, 300)).then(
      () => true,
      (e: StorageError) => {
        assert.equal(e.code, 'IO');
        return false;
      },
    );
    await fs.restart({ powerLoss: true });
    const reopened = new SnapshotStore({ fs: real, dir, keep: 1 });
    await reopened.init();
    const { snapshot } = await reopened.load();
    assert.ok(snapshot !== null, `crash at ${n}: a snapshot survives`);
    if (saved)
      assert.equal(snapshot.metadata.index, 20, `crash at ${n}: an acknowledged save is durable`);
    assert.ok(
      !readdirSync(dir).some((name) => name.endsWith('.tmp')),
      'temp files are cleaned at init',
    );
  }
});
