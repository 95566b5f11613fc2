import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { StorageError } from '../../src/storage/errors.js';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import {
  type FileHandle,
  NodeFileSystem,
  type OpenMode,
  type OpenOptions,
} from '../../src/storage/fs.js';
import { RECORD_PAYLOAD_BYTES_MAX } from '../../src/storage/limits.js';
import { Wal, type WalOptions } from '../../src/storage/wal/wal.js';
import { Prng } from '../../src/util/prng.js';
import { assertRecovered, type Batch, model, sameState, tempDir, workload } from './helpers.js';

const real = new NodeFileSystem();

function options(dir: string, extra: Partial<WalOptions> = {}): WalOptions {
  return { fs: real, dir, clusterId: 7, memberId: 1, segmentBytes: 4096, ...extra };
}

async function saveAll(wal: Wal, batches: readonly Batch[]): Promise<void> {
  for (const b of batches) await wal.save(b.hardState, b.entries, b.snapshot);
}

test('a new WAL recovers empty, then recovers every saved batch', async () => {
  const dir = tempDir();
  const first = await Wal.open(options(dir));
  assert.equal(first.entries.length, 0);
  assert.deepEqual(first.snapshot, { index: 0, term: 0 });
  const batches = workload(new Prng(1), 40);
  await saveAll(first.wal, batches);
  await first.wal.close();
  const again = await Wal.open(options(dir));
  assertRecovered(again, batches, [batches.length], 'reopen');
  assert.equal(again.stats.tornTail, null);
  assert.ok(again.stats.segments > 1, `rotated into ${again.stats.segments} segments`);
  // It keeps going where it stopped.
  const more = workload(new Prng(2), 0);
  const next = [...batches, ...more];
  await again.wal.close();
  const third = await Wal.open(options(dir));
  assertRecovered(third, next, [next.length], 'third open');
  await third.wal.close();
});

test('later records win: an overwritten suffix and a snapshot that replaces the log', async () => {
  const dir = tempDir();
  const { wal } = await Wal.open(options(dir));
  const e = (index: number, term: number) => ({
    index,
    term,
    type: 0 as const,
    data: new Uint8Array([index, term]),
  });
  await wal.save({ term: 1, vote: 1, commit: 0 }, [e(1, 1), e(2, 1), e(3, 1), e(4, 1)], null);
  await wal.save({ term: 2, vote: 2, commit: 2 }, [e(3, 2), e(4, 2)], null); // conflict at 3
  await wal.save(null, [], { index: 2, term: 1 }); // local snapshot: entries after 2 stay
  await wal.close();
  let got = await Wal.open(options(dir));
  assert.deepEqual(got.snapshot, { index: 2, term: 1 });
  assert.deepEqual(
    got.entries.map((x) => [x.index, x.term]),
    [
      [3, 2],
      [4, 2],
    ],
  );
  assert.deepEqual(got.hardState, { term: 2, vote: 2, commit: 2 });
  await got.wal.save(null, [e(11, 3)], { index: 10, term: 3 }); // the leader's snapshot
  await got.wal.close();
  got = await Wal.open(options(dir));
  assert.deepEqual(got.snapshot, { index: 10, term: 3 });
  assert.deepEqual(
    got.entries.map((x) => [x.index, x.term]),
    [[11, 3]],
  );
  await got.wal.close();
});

test('releaseTo deletes only segments a snapshot covers; recovery still has everything after it', async () => {
  const dir = tempDir();
  const { wal } = await Wal.open(options(dir, { segmentBytes: 1024 }));
  const batches = workload(new Prng(3), 60);
  await saveAll(wal, batches);
  const m = model(batches);
  const at = m.entries[Math.floor(m.entries.length / 2)]!;
  const marker = { hardState: null, entries: [], snapshot: { index: at.index, term: at.term } };
  await wal.save(null, [], marker.snapshot);
  const before = readdirSync(dir).length;
  assert.equal(await wal.releaseTo(at.index), before - readdirSync(dir).length);
  assert.ok(readdirSync(dir).length < before, 'some segments were released');
  await assert.rejects(wal.releaseTo(at.index + 1), /past the snapshot/);
  await wal.close();
  const got = await Wal.open(options(dir, { segmentBytes: 1024 }));
  assert.ok(sameState(got, model([...batches, marker])));
  await got.wal.close();
});

test('segments are preallocated and named <seq>-<firstIndex>.wal', async () => {
  const dir = tempDir();
  const { wal } = await Wal.open(options(dir, { segmentBytes: 1024 }));
  await saveAll(wal, workload(new Prng(4), 20));
  await wal.close();
  const names = readdirSync(dir).sort();
  assert.match(names[0]!, /^0{16}-0{15}1\.wal$/);
  for (const name of names) {
    assert.match(name, /^[0-9a-f]{16}-[0-9a-f]{16}\.wal$/);
    assert.ok(statSync(join(dir, name)).size >= 1024, `${name} preallocated`);
  }
});

test('a data dir from another cluster or member is refused', async () => {
  const dir = tempDir();
  const { wal } = await Wal.open(options(dir));
  await wal.close();
  await assert.rejects(
    Wal.open(options(dir, { clusterId: 8 })),
    (e: StorageError) => e.code === 'WAL_IDENTITY_MISMATCH',
  );
  await assert.rejects(
    Wal.open(options(dir, { memberId: 2 })),
    (e: StorageError) => e.code === 'WAL_IDENTITY_MISMATCH',
  );
});

test('limits: oversized entries and bad options are typed errors', async () => {
  const dir = tempDir();
  await assert.rejects(
    Wal.open(options(dir, { segmentBytes: 100 })),
    (e: StorageError) => e.code === 'INVALID_CONFIG',
  );
  const { wal } = await Wal.open(options(dir));
  const big = {
    index: 1,
    term: 1,
    type: 0 as const,
    data: new Uint8Array(RECORD_PAYLOAD_BYTES_MAX),
  };
  await assert.rejects(
    wal.save(null, [big], null),
    (e: StorageError) => e.code === 'RECORD_TOO_LARGE',
  );
  await wal.save({ term: 1, vote: 0, commit: 0 }, [], null); // still usable
  await wal.close();
  await assert.rejects(wal.save(null, [], null), (e: StorageError) => e.code === 'WAL_CLOSED');
});

test('ENOSPC on a write is NO_SPACE, not corruption; the WAL stays usable and recovers', async () => {
  for (const landBytes of [0, 40, 100_000]) {
    const dir = tempDir();
    const fs = new FaultyFileSystem(real);
    const { wal } = await Wal.open(options(dir, { fs }));
    const batches = workload(new Prng(5), 30);
    const acked: Batch[] = [];
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i]!;
      if (i % 7 === 3) {
        // The failed batch may land whole (landBytes past its size) yet is not acknowledged.
        fs.failNextWrite('ENOSPC', landBytes);
        await assert.rejects(
          wal.save(b.hardState, b.entries, b.snapshot),
          (e: StorageError) => e.code === 'NO_SPACE',
        );
        if (i % 2 === 1) {
          await wal.save(b.hardState, b.entries, b.snapshot); // raft retries the Ready
          acked.push(b);
          continue;
        }
        // Or something shorter follows (here the workload ends, its later batches would not fit).
        const shorter = { ...b, entries: b.entries.slice(0, 1) };
        await wal.save(shorter.hardState, shorter.entries, shorter.snapshot);
        acked.push(shorter);
        break;
      }
      await wal.save(b.hardState, b.entries, b.snapshot);
      acked.push(b);
    }
    await wal.close();
    const got = await Wal.open(options(dir));
    assert.equal(got.stats.tornTail, null, `landBytes ${landBytes}: no garbage left behind`);
    assertRecovered(got, acked, [acked.length], `landBytes ${landBytes}`);
    await got.wal.close();
  }
});

test('ENOSPC while creating a segment leaves the WAL on the old one, and a retry works', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const { wal } = await Wal.open(options(dir, { fs, segmentBytes: 1024 }));
  const batches = workload(new Prng(6), 40);
  const acked: Batch[] = [];
  let failures = 0;
  for (const b of batches) {
    fs.failNextWrite('ENOSPC', 0, '.tmp'); // fires only when a segment is being created
    try {
      await wal.save(b.hardState, b.entries, b.snapshot);
      acked.push(b);
    } catch (error) {
      assert.equal((error as StorageError).code, 'NO_SPACE');
      failures++;
      await wal.save(b.hardState, b.entries, b.snapshot); // the retry creates the segment
      acked.push(b);
    }
  }
  assert.ok(failures > 0, 'segment creation failed at least once');
  assert.ok(!readdirSync(dir).some((n) => n.endsWith('.tmp')), 'no temp file left');
  await wal.close();
  const got = await Wal.open(options(dir));
  assertRecovered(got, acked, [acked.length], 'after rotation failures');
  await got.wal.close();
});

test('a failed fdatasync poisons the WAL (WAL_FAILED); recovery from disk works', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const { wal } = await Wal.open(options(dir, { fs }));
  const batches = workload(new Prng(7), 10);
  await saveAll(wal, batches.slice(0, 5));
  fs.failNextSync('EIO');
  const b = batches[5]!;
  await assert.rejects(
    wal.save(b.hardState, b.entries, b.snapshot),
    (e: StorageError) => e.code === 'WAL_FAILED',
  );
  await assert.rejects(
    wal.save(b.hardState, b.entries, b.snapshot),
    (e: StorageError) => e.code === 'WAL_FAILED',
  );
  await wal.close();
  await fs.restart({ powerLoss: true });
  const got = await Wal.open(options(dir));
  assertRecovered(got, batches, [5, 6], 'after fsync failure');
  await got.wal.close();
});

test('group commit: one write and one fdatasync per save, whatever the batch size', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const { wal } = await Wal.open(options(dir, { fs, segmentBytes: 1024 * 1024 }));
  fs.trace = [];
  const entries = Array.from({ length: 256 }, (_, i) => ({
    index: i + 1,
    term: 1,
    type: 0 as const,
    data: new Uint8Array(256),
  }));
  await wal.save({ term: 1, vote: 1, commit: 0 }, entries, null);
  assert.equal(fs.trace.length, 1, 'one write');
  assert.equal(fs.trace[0]!.length, 256 * (16 + 24 + 256) + 16 + 24);
  await wal.close();
});

test('a commit-only hard state (MustSync false) is not written: a crash loses it, never anything else', async () => {
  const e = (index: number) => ({
    index,
    term: 1,
    type: 0 as const,
    data: new Uint8Array([index]),
  });
  for (const powerLoss of [false, true]) {
    const dir = tempDir();
    const fs = new FaultyFileSystem(real);
    const { wal } = await Wal.open(options(dir, { fs }));
    await wal.save({ term: 1, vote: 1, commit: 0 }, [e(1), e(2), e(3)], null);
    const bytesBefore = fs.totalBytesWritten;
    const syncsBefore = fs.syncCount;
    await wal.save({ term: 1, vote: 1, commit: 3 }, [], null, false);
    assert.equal(fs.totalBytesWritten, bytesBefore, 'no write for a commit-only hard state');
    assert.equal(fs.syncCount, syncsBefore, 'no fdatasync either');
    await fs.restart({ powerLoss });
    const got = await Wal.open(options(dir, { fs }));
    assert.deepEqual(
      got.entries.map((x) => x.index),
      [1, 2, 3],
    );
    assert.equal(got.hardState.commit, 0, `the commit index is lost (power loss: ${powerLoss})`);
    assert.deepEqual(got.stats.damaged, [], 'nothing damaged');
    await got.wal.close();
  }
});

test('a deferred commit-only hard state goes into the next synced save that carries none', async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const entry = (index: number) => ({ index, term: 1, type: 0 as const, data: new Uint8Array(8) });
  const { wal } = await Wal.open(options(dir, { fs, segmentBytes: 4096 }));
  await wal.save({ term: 1, vote: 1, commit: 0 }, [entry(1)], null);
  // Many commit-only saves, then saves of entries alone: the latest deferred one is written.
  for (let i = 0; i < 50; i++) await wal.save({ term: 1, vote: 1, commit: 1 }, [], null, false);
  await wal.save({ term: 1, vote: 1, commit: 1 }, [], null, false);
  for (let i = 2; i <= 200; i++) {
    await wal.save({ term: 1, vote: 1, commit: i - 1 }, [], null, false);
    await wal.save(null, [entry(i)], null);
  }
  await fs.restart({ powerLoss: true });
  const got = await Wal.open(options(dir, { fs, segmentBytes: 4096 }));
  assert.equal(got.entries.length, 200);
  assert.equal(got.hardState.commit, 199, 'the last deferred hard state went with entry 200');
  assert.deepEqual(got.stats.damaged, [], 'nothing damaged');
  assert.ok(got.stats.segments > 1, 'the saves spanned segments');
  // A synced save with its own (later) hard state supersedes the deferred one.
  await got.wal.save({ term: 1, vote: 1, commit: 200 }, [], null, false);
  await got.wal.save({ term: 2, vote: 0, commit: 200 }, [], null);
  await fs.restart({ powerLoss: true });
  const next = await Wal.open(options(dir, { fs, segmentBytes: 4096 }));
  assert.deepEqual(next.hardState, { term: 2, vote: 0, commit: 200 });
  await next.wal.close();
});

test("a deferred commit-only hard state goes with a snapshot's marker, and is written by close", async () => {
  const dir = tempDir();
  const fs = new FaultyFileSystem(real);
  const entry = (index: number) => ({ index, term: 1, type: 0 as const, data: new Uint8Array(8) });
  const { wal } = await Wal.open(options(dir, { fs }));
  await wal.save({ term: 1, vote: 1, commit: 0 }, [entry(1), entry(2), entry(3)], null);
  await wal.save({ term: 1, vote: 1, commit: 2 }, [], null, false);
  await wal.save(null, [], { index: 2, term: 1 });
  await fs.restart({ powerLoss: true });
  const got = await Wal.open(options(dir, { fs }));
  assert.equal(got.snapshot.index, 2);
  assert.equal(got.hardState.commit, 2, 'a marker is never ahead of the commit index written');
  await got.wal.save({ term: 1, vote: 1, commit: 3 }, [], null, false);
  await got.wal.close();
  await fs.restart({ powerLoss: true });
  const closed = await Wal.open(options(dir, { fs }));
  assert.equal(closed.hardState.commit, 3, 'close wrote it, synced');
  assert.equal(closed.stats.tornTail, null);
  await closed.wal.close();
});

test('a commit-only hard state older than one saved is refused (an assertion: a bug)', async () => {
  const { wal } = await Wal.open(options(tempDir()));
  await wal.save({ term: 2, vote: 1, commit: 5 }, [], null);
  assert.throws(() => wal.save({ term: 2, vote: 1, commit: 4 }, [], null, false), /commit 4/);
  await wal.save({ term: 2, vote: 1, commit: 6 }, [], null, false);
  assert.throws(() => wal.save({ term: 2, vote: 1, commit: 5 }, [], null), /commit 5/);
  await wal.close();
});

test('a commit-only hard state given to a closed WAL is refused (WAL_CLOSED), not kept', async () => {
  const { wal } = await Wal.open(options(tempDir()));
  await wal.save({ term: 1, vote: 1, commit: 0 }, [], null);
  await wal.close();
  await assert.rejects(
    wal.save({ term: 1, vote: 1, commit: 0 }, [], null, false),
    (err: StorageError) => err.code === 'WAL_CLOSED',
  );
});

test('entries are never saved without fdatasync', async () => {
  const { wal } = await Wal.open(options(tempDir()));
  assert.throws(
    () => wal.save(null, [{ index: 1, term: 1, type: 0, data: new Uint8Array(0) }], null, false),
    /entries and snapshots are synced/,
  );
  await wal.close();
});

/**
 * The real file system, counting each handle call, and failing the next `writeDurable` with
 * `failDurable` (an errno code) when set.
 */
class CountingFileSystem extends NodeFileSystem {
  readonly calls = { write: 0, datasync: 0, writeDurable: 0 };
  failDurable: string | null = null;

  override async open(path: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    const inner = await super.open(path, mode, options);
    const calls = this.calls;
    const wrapped: FileHandle = Object.create(inner);
    wrapped.write = (data, position) => {
      calls.write++;
      return inner.write(data, position);
    };
    wrapped.datasync = () => {
      calls.datasync++;
      return inner.datasync();
    };
    if (inner.writeDurable !== undefined) {
      const durable = inner.writeDurable;
      wrapped.writeDurable = async (data, position) => {
        calls.writeDurable++;
        const code = this.failDurable;
        this.failDurable = null;
        if (code !== null) {
          // As the kernel may: part of the record written, and then the error.
          await inner.write(data.subarray(0, data.length >> 1), position);
          throw Object.assign(new Error(`${code}: injected, write`), { code });
        }
        return durable(data, position);
      };
    }
    return wrapped;
  }
}

test('a synced save is one durable write per copy, no separate fdatasync; a commit-only hard state is no write', async () => {
  const dir = tempDir();
  const fs = new CountingFileSystem();
  const { wal } = await Wal.open(options(dir, { fs, segmentBytes: 1024 * 1024 }));
  const e = (index: number) => ({ index, term: 1, type: 0 as const, data: new Uint8Array(99) });
  const before = { ...fs.calls };
  await wal.save({ term: 1, vote: 1, commit: 0 }, [e(1), e(2)], null);
  assert.deepEqual(
    { ...fs.calls },
    { ...before, writeDurable: before.writeDurable + 1 },
    'one writeDurable',
  );
  await wal.save({ term: 1, vote: 1, commit: 2 }, [], null, false);
  assert.deepEqual(
    { ...fs.calls },
    { ...before, writeDurable: before.writeDurable + 1 },
    'then nothing',
  );
  await wal.close(); // writes the deferred hard state: one more durable write
  const got = await Wal.open(options(dir));
  assert.deepEqual(
    got.entries.map((x) => x.index),
    [1, 2],
  );
  assert.equal(got.hardState.commit, 2);
  await got.wal.close();
});

test('a durable write that may have failed in its flush (EIO) poisons the WAL; one refused for space (ENOSPC) leaves it usable', async () => {
  const batches = workload(new Prng(17), 8);
  for (const code of ['EIO', 'ENOSPC']) {
    const dir = tempDir();
    const fs = new CountingFileSystem();
    const { wal } = await Wal.open(options(dir, { fs }));
    await saveAll(wal, batches.slice(0, 4));
    fs.failDurable = code;
    const b = batches[4]!;
    const expected = code === 'EIO' ? 'WAL_FAILED' : 'NO_SPACE';
    await assert.rejects(
      wal.save(b.hardState, b.entries, b.snapshot),
      (err: StorageError) => err.code === expected,
    );
    if (code === 'EIO') {
      // Poisoned: a retry could report success for data the kernel dropped (fsyncgate).
      await assert.rejects(
        wal.save(b.hardState, b.entries, b.snapshot),
        (err: StorageError) => err.code === 'WAL_FAILED',
      );
      await wal.close();
      const got = await Wal.open(options(dir));
      assertRecovered(got, batches, [4, 5], `after ${code}`);
      await got.wal.close();
      continue;
    }
    // Space refused: the torn record is overwritten, and the WAL goes on.
    await saveAll(wal, batches.slice(4));
    await wal.close();
    const got = await Wal.open(options(dir));
    assertRecovered(got, batches, [batches.length], `after ${code}`);
    await got.wal.close();
  }
});
