/**
 * The WAL under faults, on real files through the fault layer: a crash at every interesting
 * byte of a workload (with and without losing unsynced writes), bit flips, truncated segments,
 * mirror repair and the repair hook. The rule checked everywhere: a synced batch is never lost
 * (except a flip or cut inside the very last batch, which reads as a torn tail), what is
 * recovered is always the state after a prefix of the batches, and damage anywhere else is
 * reported as WAL_CORRUPT at the damaged file and offset, never skipped.
 */
import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import type { StorageError } from '../../src/storage/errors.js';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import { NodeFileSystem } from '../../src/storage/fs.js';
import { Wal, type WalOptions } from '../../src/storage/wal/wal.js';
import { Prng } from '../../src/util/prng.js';
import {
  assertRecovered,
  type Batch,
  equivalentState,
  model,
  nextBatch,
  removeDir,
  tempDir,
  workload,
} from './helpers.js';

const real = new NodeFileSystem();
const base = { clusterId: 3, memberId: 9 };

async function runWorkload(opts: WalOptions, batches: readonly Batch[]): Promise<number> {
  let wal: Wal;
  try {
    wal = (await Wal.open(opts)).wal;
  } catch {
    return 0;
  }
  let acked = 0;
  for (const b of batches) {
    try {
      await wal.save(b.hardState, b.entries, b.snapshot);
    } catch {
      break;
    }
    acked++;
  }
  await wal.close().catch(() => {});
  return acked;
}

function segmentFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.wal'))
    .sort()
    .map((n) => join(dir, n));
}

function nonZeroEnd(path: string): number {
  const bytes = readFileSync(path);
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return end;
}

test('a crash at every write boundary (and inside each write) loses no acknowledged batch', async () => {
  const batches = workload(new Prng(11), 14, 120);
  const opts = { ...base, segmentBytes: 1024 };
  // Dry run: where does each write start and end?
  const dry = new FaultyFileSystem(real);
  dry.trace = [];
  const dryDir = tempDir();
  assert.equal(await runWorkload({ ...opts, fs: dry, dir: dryDir }, batches), batches.length);
  removeDir(dryDir);
  const points = new Set<number>();
  for (const w of dry.trace) {
    const start = w.totalBytes - w.length;
    for (const n of [start, start + 1, start + (w.length >> 1), w.totalBytes - 1]) points.add(n);
  }
  const total = dry.trace.at(-1)!.totalBytes;
  for (let n = 0; n < total; n += 48) points.add(n); // and a comb over everything in between
  assert.ok(points.size > 250, `${points.size} crash points`);
  const rng = new Prng(12);
  let inFlightRecovered = 0;
  let checked = 0;
  for (const n of [...points].sort((a, b) => a - b)) {
    for (const mode of ['process', 'power', 'power-partial'] as const) {
      const dir = tempDir();
      const fs = new FaultyFileSystem(real);
      fs.crashAfterBytes(n);
      const acked = await runWorkload({ ...opts, fs, dir }, batches);
      assert.ok(fs.isCrashed, `crash at byte ${n} happened`);
      await fs.restart({
        powerLoss: mode !== 'process',
        ...(mode === 'power-partial' ? { rng } : {}),
      });
      const note = `crash at byte ${n} (${mode}), ${acked} acked`;
      const got = await Wal.open({ ...opts, fs: real, dir });
      const k = assertRecovered(got, batches, [acked, acked + 1], note);
      if (k > acked) inFlightRecovered++;
      // Still usable: one more batch, then a clean reopen.
      if (checked++ % 8 === 0) {
        const more = nextBatch(rng, got);
        await got.wal.save(more.hardState, more.entries, more.snapshot);
        await got.wal.close();
        const again = await Wal.open({ ...opts, fs: real, dir });
        assertRecovered(again, [...batches.slice(0, k), more], [k + 1], `${note}, then one more`);
        assert.equal(again.stats.tornTail, null);
        await again.wal.close();
      } else {
        await got.wal.close();
      }
      removeDir(dir);
    }
  }
  assert.ok(inFlightRecovered > 0, 'some in-flight batches landed whole and were kept');
});

test('a crash during recovery itself (while it cuts a torn tail) is recovered next time', async () => {
  const batches = workload(new Prng(13), 12, 120);
  const opts = { ...base, segmentBytes: 1024 };
  for (let n = 0; n < 200; n += 8) {
    const dir = tempDir();
    const fs = new FaultyFileSystem(real);
    fs.tearNextWrite(0);
    fs.crashAfterBytes(3000 + n * 13);
    const acked = await runWorkload({ ...opts, fs, dir }, batches);
    await fs.restart({ powerLoss: false });
    fs.crashAfterBytes(n); // recovery's own writes (zeroing the tail) crash
    await Wal.open({ ...opts, fs, dir }).then(
      (r) => r.wal.close(),
      () => {},
    );
    await fs.restart({ powerLoss: true });
    const got = await Wal.open({ ...opts, fs: real, dir });
    assertRecovered(got, batches, [acked, acked + 1], `recovery crashed at byte ${n}`);
    await got.wal.close();
    removeDir(dir);
  }
});

test('bit flips are detected: a torn tail in the last batch, else WAL_CORRUPT at the file and offset', async () => {
  const batches = workload(new Prng(21), 40, 200);
  const opts = { ...base, segmentBytes: 2048 };
  const pristine = tempDir();
  assert.equal(await runWorkload({ ...opts, fs: real, dir: pristine }, batches), batches.length);
  const files = segmentFiles(pristine).map((p) => basename(p));
  const rng = new Prng(22);
  const outcomes = { corrupt: 0, torn: 0, harmless: 0 };
  for (let trial = 0; trial < 300; trial++) {
    const dir = tempDir();
    cpSync(pristine, dir, { recursive: true });
    const name = trial % 6 === 0 ? files.at(-1)! : files[rng.int(files.length)]!;
    const path = join(dir, name);
    const end = rng.int(5) === 0 ? statSync(path).size : nonZeroEnd(path);
    // One trial in six aims at the last record of the log: that must read as a torn tail.
    const last = trial % 6 === 0;
    const offset = last ? nonZeroEnd(path) - 1 - rng.int(40) : rng.int(end);
    await new FaultyFileSystem(real).flipBit(path, offset, rng.int(8));
    const note = `flip at ${name}:${offset}`;
    try {
      const got = await Wal.open({ ...opts, fs: real, dir });
      const k = assertRecovered(got, batches, [batches.length, batches.length - 1], note);
      if (k < batches.length) {
        assert.equal(name, files.at(-1), `${note}: only the last segment has a torn tail`);
        assert.notEqual(got.stats.tornTail, null);
        outcomes.torn++;
      } else {
        outcomes.harmless++;
      }
      await got.wal.close();
    } catch (error) {
      const e = error as StorageError;
      if (e.code !== 'WAL_CORRUPT') throw error;
      assert.equal(basename(e.location!.file), name, `${note}: ${e.message}`);
      assert.ok(e.location!.offset <= offset, `${note}: reported at ${e.location!.offset}`);
      outcomes.corrupt++;
    }
    removeDir(dir);
  }
  assert.ok(
    outcomes.corrupt > 100 && outcomes.torn > 0 && outcomes.harmless > 0,
    JSON.stringify(outcomes),
  );
});

test('truncated segments: the last one reads as a torn tail; a sealed one is corruption, or stepped over when provably harmless', async () => {
  const batches = workload(new Prng(31), 29, 200);
  const opts = { ...base, segmentBytes: 2048 };
  const pristine = tempDir();
  await runWorkload({ ...opts, fs: real, dir: pristine }, batches);
  const files = segmentFiles(pristine).map((p) => basename(p));
  const rng = new Prng(32);
  const all = batches.map((_, i) => i + 1);
  const outcomes = { corrupt: 0, harmless: 0 };
  for (let trial = 0; trial < 60; trial++) {
    const dir = tempDir();
    cpSync(pristine, dir, { recursive: true });
    const i = rng.int(files.length);
    const path = join(dir, files[i]!);
    const end = nonZeroEnd(path);
    const length = 144 + rng.int(end - 144); // keep the header batch: a cut header is corruption
    truncateSync(path, length);
    const note = `${files[i]} cut to ${length} of ${end}`;
    if (i === files.length - 1) {
      const got = await Wal.open({ ...opts, fs: real, dir });
      assertRecovered(got, batches, all, note);
      await got.wal.close();
    } else {
      // No peer repair here: recovery may only step over what it proves harmless.
      try {
        const got = await Wal.open({ ...opts, fs: real, dir });
        assert.ok(got.stats.damaged.length > 0 && got.stats.rewritten, `${note}: damage reported`);
        assert.deepEqual(got.stats.fetched, []);
        assert.ok(equivalentState(got, batches), `${note}: stepped over to the model's state`);
        outcomes.harmless++;
        await got.wal.close();
      } catch (error) {
        assert.equal((error as StorageError).code, 'WAL_CORRUPT', `${note}: ${error}`);
        outcomes.corrupt++;
      }
    }
    removeDir(dir);
  }
  assert.ok(outcomes.corrupt > 0 && outcomes.harmless > 0, JSON.stringify(outcomes));
});

test('mirror: damage in one copy is repaired from the other, record by record', async () => {
  const batches = workload(new Prng(41), 40, 200);
  const pristine = tempDir();
  const opts = (dir: string) => ({
    ...base,
    segmentBytes: 2048,
    fs: real,
    dir: join(dir, 'a'),
    mirrorDir: join(dir, 'b'),
  });
  assert.equal(await runWorkload(opts(pristine), batches), batches.length);
  const names = segmentFiles(join(pristine, 'a')).map((p) => basename(p));
  const rng = new Prng(42);
  for (let trial = 0; trial < 60; trial++) {
    const dir = tempDir();
    cpSync(pristine, dir, { recursive: true });
    // Up to three flips, each in a random copy: never the same record in both copies (offsets
    // at least a frame apart are not guaranteed distinct records, so the second copy's flips go
    // to another segment).
    const damaged = new Set<string>();
    const flips = 1 + rng.int(3);
    const copyOf = rng.int(2) === 0 ? 'a' : 'b';
    for (let f = 0; f < flips; f++) {
      const copy = f === 2 ? (copyOf === 'a' ? 'b' : 'a') : copyOf;
      const name = names[(f === 2 ? 1 : 0) + rng.int(names.length - 1)]!;
      if (damaged.has(`${copy === 'a' ? 'b' : 'a'}/${name}`)) continue;
      const path = join(dir, copy, name);
      await new FaultyFileSystem(real).flipBit(path, rng.int(nonZeroEnd(path)), rng.int(8));
      damaged.add(`${copy}/${name}`);
    }
    const got = await Wal.open(opts(dir));
    assertRecovered(got, batches, [batches.length], `trial ${trial}: ${[...damaged].join(', ')}`);
    assert.ok(got.stats.repaired.length >= 1, 'repairs are reported');
    await got.wal.close();
    const again = await Wal.open(opts(dir));
    assert.equal(again.stats.repaired.length, 0, 'nothing left to repair');
    await again.wal.close();
    for (const name of names) {
      assert.ok(
        readFileSync(join(dir, 'a', name)).equals(readFileSync(join(dir, 'b', name))),
        `${name} copies agree`,
      );
    }
    removeDir(dir);
  }
});

test('mirror: a segment missing from one copy is cloned; both damaged at one record is refused', async () => {
  const batches = workload(new Prng(43), 30, 200);
  const dir = tempDir();
  const opts = {
    ...base,
    segmentBytes: 2048,
    fs: real,
    dir: join(dir, 'a'),
    mirrorDir: join(dir, 'b'),
  };
  await runWorkload(opts, batches);
  const names = segmentFiles(join(dir, 'a')).map((p) => basename(p));
  unlinkSync(join(dir, 'b', names[1]!));
  unlinkSync(join(dir, 'a', names.at(-1)!));
  const got = await Wal.open(opts);
  assertRecovered(got, batches, [batches.length], 'missing segments');
  assert.deepEqual(
    got.stats.repaired
      .filter((r) => r.offset === 0 && r.bytes > 1024)
      .map((r) => basename(r.file))
      .sort(),
    [names[1], names.at(-1)].sort(),
  );
  await got.wal.close();
  // The same record damaged in both copies of a sealed segment: no copy can repair it. Here the
  // damage lies below a later snapshot marker, so recovery steps over it, reports it and
  // rewrites the log (wal-recovery.test.ts has the cases that need peers or must refuse).
  const fs = new FaultyFileSystem(real);
  await fs.flipBit(join(dir, 'a', names[0]!), 300, 1);
  await fs.flipBit(join(dir, 'b', names[0]!), 300, 2);
  const stepped = await Wal.open(opts);
  assertRecovered(stepped, batches, [batches.length], 'damage in both copies, below the snapshot');
  assert.equal(stepped.stats.damaged.length, 1);
  assert.equal(basename(stepped.stats.damaged[0]!.file), names[0]);
  assert.ok(stepped.stats.damaged[0]!.offset <= 300);
  assert.ok(stepped.stats.rewritten);
  await stepped.wal.close();
  const clean = await Wal.open(opts);
  assertRecovered(clean, batches, [batches.length], 'after the rewrite');
  assert.deepEqual(clean.stats.damaged, []);
  assert.deepEqual(clean.stats.repaired, []);
  await clean.wal.close();
});

test('mirror: a crash loses nothing acknowledged when the copies land differently', async () => {
  const batches = workload(new Prng(44), 12, 120);
  const rng = new Prng(45);
  for (let trial = 0; trial < 40; trial++) {
    const dir = tempDir();
    const fs = new FaultyFileSystem(real);
    const opts = {
      ...base,
      segmentBytes: 1024,
      fs,
      dir: join(dir, 'a'),
      mirrorDir: join(dir, 'b'),
    };
    fs.crashAfterBytes(rng.int(14_000));
    const acked = await runWorkload(opts, batches);
    await fs.restart({ powerLoss: true, rng });
    const got = await Wal.open({ ...opts, fs: real });
    assertRecovered(got, batches, [acked, acked + 1], `trial ${trial}`);
    await got.wal.close();
    removeDir(dir);
  }
});

test('repair hook: "truncate" cuts the log at corruption and reports lostFrom', async () => {
  const batches = workload(new Prng(51), 30, 200);
  const dir = tempDir();
  const opts = { ...base, segmentBytes: 2048, fs: real, dir };
  await runWorkload(opts, batches);
  const files = segmentFiles(dir);
  await new FaultyFileSystem(real).flipBit(files[1]!, 500, 3);
  await assert.rejects(Wal.open(opts), (e: StorageError) => e.code === 'WAL_CORRUPT');
  const seen: StorageError[] = [];
  const got = await Wal.open({
    ...opts,
    repair: {
      onCorruption: async (e) => {
        seen.push(e);
        return 'truncate';
      },
    },
  });
  assert.equal(seen.length, 1);
  assert.deepEqual(got.stats.lostFrom, seen[0]!.location);
  const k = assertRecovered(
    got,
    batches,
    batches.map((_, i) => i),
    'after truncation',
  );
  assert.ok(k < batches.length);
  assert.equal(got.stats.segments, 2, 'later segments are gone');
  const more = nextBatch(new Prng(52), model(batches.slice(0, k)));
  await got.wal.save(more.hardState, more.entries, more.snapshot);
  await got.wal.close();
  const again = await Wal.open(opts);
  assertRecovered(again, [...batches.slice(0, k), more], [k + 1], 'usable after truncation');
  await again.wal.close();
});
