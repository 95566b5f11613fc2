/**
 * Protocol-aware WAL recovery (wal.ts "open", log-builder.ts): a record damaged in every copy is
 * stepped over, the hole classified from the intact records around it, and committed entries it
 * held are fetched through the repair hook (peers, in production). Every refusal case and every
 * recovery case on real files, a crash at every step of the repair, and random damage against
 * the reference model: recovery yields the model's state or refuses, never anything else.
 */
import assert from 'node:assert/strict';
import { closeSync, cpSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Entry, HardState } from '../../src/raft/types.js';
import type { StorageError } from '../../src/storage/errors.js';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import { NodeFileSystem } from '../../src/storage/fs.js';
import { RecordType, type SnapshotMarker } from '../../src/storage/wal/format.js';
import { type InspectedRecord, inspectWal } from '../../src/storage/wal/inspect.js';
import {
  checkFetched,
  Wal,
  type WalFetchRequest,
  type WalOptions,
  type WalRepairHook,
} from '../../src/storage/wal/wal.js';
import { Prng } from '../../src/util/prng.js';
import {
  assertRecovered,
  type Batch,
  equivalentState,
  model,
  modelLog,
  removeDir,
  tempDir,
  workload,
} from './helpers.js';

const real = new NodeFileSystem();
const base = { clusterId: 5, memberId: 7 };

function ent(index: number, term: number, text = `v${index}.${term}`): Entry {
  return { index, term, type: 0, data: new TextEncoder().encode(text) };
}

function hs(term: number, commit: number, vote = 1): HardState {
  return { term, vote, commit };
}

function batch(
  entries: readonly Entry[],
  hardState: HardState | null,
  snapshot: SnapshotMarker | null = null,
): Batch {
  return { entries, hardState, snapshot };
}

async function write(opts: WalOptions, batches: readonly Batch[]): Promise<void> {
  const { wal } = await Wal.open(opts);
  for (const b of batches) await wal.save(b.hardState, b.entries, b.snapshot);
  await wal.close();
}

interface Located extends InspectedRecord {
  /** The entry's index for entry records, else -1. */
  readonly index: number;
}

/** Every verified record of the WAL in `dir`, in order, with its file and entry index. */
function records(dir: string): Located[] {
  return inspectWal(dir).map((r) => ({ ...r, index: r.entry?.index ?? -1 }));
}

/** Flips a bit in the payload of `r` in the primary and, when given, in the mirror too. */
async function damage(r: Located, mirrorFile: string | null = null): Promise<void> {
  const fs = new FaultyFileSystem(real);
  await fs.flipBit(r.file, r.payloadAt + 1, 3);
  if (mirrorFile !== null) await fs.flipBit(mirrorFile, r.payloadAt + 2, 5);
}

/** A repair hook answering from `log` (what peers hold) for entries at or below `commit`. */
function peers(
  log: readonly (Entry | undefined)[],
  commit: number,
): WalRepairHook & { requests: WalFetchRequest[] } {
  const requests: WalFetchRequest[] = [];
  return {
    requests,
    async fetchCommitted(request, check) {
      requests.push(request);
      assert.ok(request.lastIndex <= commit, 'only committed entries are asked for');
      const entries: Entry[] = [];
      for (let i = request.firstIndex; i <= request.lastIndex; i++) {
        const e = log[i];
        if (e === undefined) throw new Error(`peers do not hold entry ${i} (compacted)`);
        entries.push(e);
      }
      assert.equal(check(entries), null, 'the right entries pass the check');
      return entries;
    },
  };
}

async function refused(opts: WalOptions, why: RegExp, offsetMax: number): Promise<void> {
  await assert.rejects(Wal.open(opts), (e: StorageError) => {
    assert.equal(e.code, 'WAL_CORRUPT');
    assert.match(e.message, /damaged in every copy/);
    assert.match(e.message, why);
    assert.ok(e.location!.offset <= offsetMax, `reported at ${e.location!.offset}`);
    return true;
  });
}

// A log of three terms: entries 1..12, commit trailing the appends, one hard state per batch.
const BASE_LOG: Batch[] = [
  batch([ent(1, 1), ent(2, 1), ent(3, 1)], hs(1, 0)),
  batch([ent(4, 1), ent(5, 1)], hs(1, 3)),
  batch([ent(6, 2), ent(7, 2), ent(8, 2)], hs(2, 5)),
  batch([ent(9, 2), ent(10, 2)], hs(2, 8)),
  batch([ent(11, 3), ent(12, 3)], hs(3, 10)),
  batch([], hs(3, 12)),
];

test('recover: a committed entry damaged in the primary AND the mirror at the same spot is fetched, the log rewritten, and the WAL reads clean after', async () => {
  const dir = tempDir();
  const opts = { ...base, fs: real, dir: join(dir, 'a'), mirrorDir: join(dir, 'b') };
  await write(opts, BASE_LOG);
  const target = records(opts.dir).find((r) => r.index === 7)!;
  await damage(target, target.file.replace(opts.dir, opts.mirrorDir));
  await refused(opts, /no peer repair is configured/, target.offset);

  const hook = peers(modelLog(BASE_LOG), 12);
  const got = await Wal.open({ ...opts, repair: hook });
  assertRecovered(got, BASE_LOG, [BASE_LOG.length], 'after the fetch');
  // The commit known before the damage was 3 (the damaged batch's own hard state, commit 5,
  // comes after its entries): entries 4..7 are in doubt, as the damage might have held a batch
  // rewriting them; the intact entry 8 after it bounds the hole.
  assert.equal(hook.requests.length, 1);
  const req = hook.requests[0]!;
  assert.deepEqual(
    [req.firstIndex, req.lastIndex, req.prevTerm, req.nextTerm, req.commitIndex],
    [4, 7, 1, 2, 12],
  );
  assert.equal(req.damage.offset, target.offset);
  assert.deepEqual(got.stats.fetched, [{ firstIndex: 4, lastIndex: 7 }]);
  assert.equal(got.stats.damaged.length, 1);
  assert.ok(got.stats.rewritten);
  // Still usable: a new batch, then a clean reopen without any hook.
  await got.wal.save(hs(3, 13), [ent(13, 3)], null);
  await got.wal.close();
  const more = [...BASE_LOG, batch([ent(13, 3)], hs(3, 13))];
  const again = await Wal.open(opts);
  assertRecovered(again, more, [more.length], 'reopened');
  assert.deepEqual(again.stats.damaged, []);
  assert.deepEqual(again.stats.repaired, [], 'both copies agree');
  await again.wal.close();
});

test('recover: the hole starts at the commit known before the damage, not at the entry before it (a damaged batch may have rewritten a suffix)', async () => {
  // Entries 6..10 of term 1 (commit 5); a new leader's batch rewrote 7..9 with term 2; another
  // leader appended 9 at term 3. Damage the term-2 batch: the local 7 and 8 of term 1 are stale,
  // and only a hole from commit + 1 = 6 on replaces them.
  const batches: Batch[] = [
    batch(
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => ent(i, 1)),
      hs(1, 5),
    ),
    batch([ent(7, 2), ent(8, 2), ent(9, 2)], hs(2, 5)),
    batch([ent(9, 3)], hs(3, 9)),
  ];
  const dir = tempDir();
  const opts = { ...base, fs: real, dir };
  await write(opts, batches);
  const target = records(dir).filter((r) => r.index === 8)[1]!;
  await damage(target);
  const hook = peers(modelLog(batches), 9);
  const got = await Wal.open({ ...opts, repair: hook });
  assert.deepEqual(
    hook.requests.map((r) => [r.firstIndex, r.lastIndex]),
    [[6, 8]],
  );
  assertRecovered(got, batches, [batches.length], 'the term-2 entries, not the stale term-1 ones');
  assert.deepEqual(
    got.entries.slice(5, 9).map((e) => e.term),
    [1, 2, 2, 3],
  );
  await got.wal.close();
});

test('harmless: damage whose entries are all below a later snapshot, or rewritten from the known commit on, needs no peer', async () => {
  // Below the snapshot: the marker at 10 covers the damaged entry 7.
  const below = [...BASE_LOG, batch([], hs(3, 12), { index: 10, term: 2 })];
  const dir = tempDir();
  const opts = { ...base, fs: real, dir };
  await write(opts, below);
  await damage(records(dir).find((r) => r.index === 7)!);
  const got = await Wal.open(opts);
  assertRecovered(got, below, [below.length], 'below the snapshot');
  assert.equal(got.stats.damaged.length, 1);
  assert.deepEqual(got.stats.fetched, []);
  await got.wal.close();

  // A damaged hard-state-only batch: the commit before it (12) covers everything before the
  // next entry (13), and a later hard state supersedes the lost one.
  const hsOnly = [...BASE_LOG, batch([], hs(4, 12, 3)), batch([ent(13, 4)], hs(4, 13, 3))];
  const dir2 = tempDir();
  await write({ ...opts, dir: dir2 }, hsOnly);
  const all = records(dir2).filter((r) => r.type === RecordType.HardState);
  await damage(all.at(-2)!);
  const got2 = await Wal.open({ ...opts, dir: dir2 });
  assertRecovered(got2, hsOnly, [hsOnly.length], 'lost hard state superseded');
  assert.equal(got2.stats.damaged.length, 1);
  await got2.wal.close();
});

/**
 * Writes `batches`, damages the record of entry `damagedIndex`, and expects recovery to refuse
 * with `why` at that record's offset although peers (commit `peerCommit`) would answer.
 */
async function assertRefusedAt(
  batches: readonly Batch[],
  damagedIndex: number,
  peerCommit: number,
  why: RegExp,
): Promise<void> {
  const dir = tempDir();
  const opts = { ...base, fs: real, dir };
  await write(opts, batches);
  const target = records(dir).find((r) => r.index === damagedIndex)!;
  await damage(target);
  await refused({ ...opts, repair: peers(modelLog(batches), peerCommit) }, why, target.offset);
}

test('refuse: no intact hard state follows the damage (it may have held the latest term, vote, commit)', async () => {
  const batches = [...BASE_LOG, batch([ent(13, 3), ent(14, 3)], null), batch([ent(15, 3)], null)];
  await assertRefusedAt(batches, 13, 12, /no intact hard state follows/);
});

test('refuse: no intact entry record follows the damage (unbounded, possibly acknowledged entries)', async () => {
  const batches = [...BASE_LOG, batch([ent(13, 3), ent(14, 3)], hs(3, 12)), batch([], hs(3, 14))];
  await assertRefusedAt(batches, 14, 14, /no intact entry record follows/);
});

test('refuse: missing entries above the commit index (this member may have acknowledged them)', async () => {
  const batches = [
    ...BASE_LOG,
    batch([ent(13, 3), ent(14, 3), ent(15, 3)], hs(3, 12)),
    batch([ent(16, 3)], hs(3, 13)),
  ];
  await assertRefusedAt(
    batches,
    14,
    13,
    /entries 14\.\.14 are unknown and above the commit index 13/,
  );
});

test('refuse: a damaged segment header, whatever the hook', async () => {
  const dir = tempDir();
  const opts = { ...base, fs: real, dir };
  await write(opts, BASE_LOG);
  await new FaultyFileSystem(real).flipBit(records(dir)[0]!.file, 20, 1);
  await assert.rejects(
    Wal.open({ ...opts, repair: peers(modelLog(BASE_LOG), 12) }),
    (e: StorageError) => e.code === 'WAL_CORRUPT' && e.location!.offset === 0,
  );
});

test('fetched entries are checked: wrong indexes or terms are refused, never written', async () => {
  const range = { firstIndex: 6, lastIndex: 8, prevTerm: 1, nextTerm: 2 };
  // Damage to entry 7 of BASE_LOG puts 4..7 in doubt (see the first test).
  const liarAnswer = [ent(4, 1), ent(5, 1), ent(6, 2), ent(7, 9)];
  const good = [ent(6, 2), ent(7, 2), ent(8, 2)];
  assert.equal(checkFetched(range, 3, good), null);
  assert.match(checkFetched(range, 3, good.slice(1))!, /2 entries, expected 3/);
  assert.match(checkFetched(range, 3, [ent(6, 2), ent(8, 2), ent(7, 2)])!, /index 8, expected 7/);
  assert.match(checkFetched(range, 3, [ent(6, 0), ent(7, 2), ent(8, 2)])!, /below the term 1/);
  assert.match(checkFetched(range, 3, [ent(6, 2), ent(7, 3), ent(8, 2)])!, /below the term 3/);
  assert.match(
    checkFetched(range, 3, [ent(6, 2), ent(7, 2), ent(8, 3)])!,
    /> term 2 of the entry after/,
  );
  assert.match(
    checkFetched({ ...range, nextTerm: null }, 2, [ent(6, 2), ent(7, 2), ent(8, 3)])!,
    /> current term 2/,
  );

  const dir = tempDir();
  const opts = { ...base, fs: real, dir };
  await write(opts, BASE_LOG);
  await damage(records(dir).find((r) => r.index === 7)!);
  const before = readFileSync(records(dir)[0]!.file);
  const liar: WalRepairHook = { fetchCommitted: async () => liarAnswer };
  await assert.rejects(
    Wal.open({ ...opts, repair: liar }),
    (e: StorageError) =>
      e.code === 'WAL_CORRUPT' && /from peers: entry 7 has term 9/.test(e.message),
  );
  assert.ok(readFileSync(records(dir)[0]!.file).equals(before), 'nothing written');
});

test('sealed segments: damage running to the end of a segment is bounded by the next header', async () => {
  // Three entries per batch, commit one batch behind: 40 batches over several 1 KiB segments.
  const batches: Batch[] = [];
  for (let b = 0; b < 40; b++) {
    const first = 3 * b + 1;
    batches.push(batch([ent(first, 1), ent(first + 1, 1), ent(first + 2, 1)], hs(1, first - 1)));
  }
  const dir = tempDir();
  const opts = { ...base, fs: real, dir, segmentBytes: 1024 };
  await write(opts, batches);
  const all = records(dir);
  const files = [...new Set(all.map((r) => r.file))];
  assert.ok(files.length >= 3);
  // The last record of the second segment (a batch end), and the record before it.
  const inSecond = all.filter((r) => r.file === files[1]);
  await damage(inSecond.at(-1)!);
  await damage(inSecond.at(-2)!);
  const state = model(batches);
  const hook = peers(modelLog(batches), state.hardState.commit);
  const got = await Wal.open({ ...opts, repair: hook });
  assertRecovered(got, batches, [batches.length], 'the model state');
  assert.equal(hook.requests.length, 1);
  assert.ok(hook.requests[0]!.lastIndex <= state.hardState.commit);
  assert.equal(got.stats.damaged.length, 1, 'one span, up to the recorded end');
  assert.equal(got.stats.segments, 1, 'rewritten into one segment');
  await got.wal.close();
});

test('a crash at any point of the repair (fetch, rewrite, deletion) leaves a WAL that recovers the same state', async () => {
  const batches = workload(new Prng(71), 30, 150);
  const pristine = tempDir();
  const opts = (dir: string) => ({
    ...base,
    segmentBytes: 1024,
    dir: join(dir, 'a'),
    mirrorDir: join(dir, 'b'),
  });
  await write({ ...opts(pristine), fs: real }, batches);
  const state = model(batches);
  const log = modelLog(batches);
  // A committed entry record in a segment after the last snapshot marker's.
  const candidates = records(opts(pristine).dir).filter(
    (r) => r.index > state.snapshot.index && r.index <= state.hardState.commit - 2,
  );
  assert.ok(candidates.length > 0);
  const target = candidates[Math.floor(candidates.length / 2)]!;
  await damage(target, target.file.replace(opts(pristine).dir, opts(pristine).mirrorDir));
  let crashed = 0;
  for (let atBytes = 0; atBytes < 60_000; atBytes += 300) {
    const dir = tempDir();
    cpSync(pristine, dir, { recursive: true });
    const fs = new FaultyFileSystem(real);
    fs.crashAfterBytes(atBytes);
    const first = await Wal.open({
      ...opts(dir),
      fs,
      repair: peers(log, state.hardState.commit),
    }).then(
      (r) => r.wal.close().then(() => true),
      () => false,
    );
    if (!first) crashed++;
    await fs.restart({ powerLoss: true, rng: new Prng(atBytes + 1) });
    const hook = peers(log, state.hardState.commit);
    const got = await Wal.open({ ...opts(dir), fs: real, repair: hook });
    assert.ok(equivalentState(got, batches), `crash after ${atBytes} bytes`);
    await got.wal.close();
    const clean = await Wal.open({ ...opts(dir), fs: real });
    assert.deepEqual(clean.stats.damaged, [], `clean after the crash at ${atBytes}`);
    await clean.wal.close();
    removeDir(dir);
    if (first) break; // past the whole repair
  }
  assert.ok(crashed >= 8, `crashes inside the repair: ${crashed}`);
});

test('random damage in every copy, peers serving the committed log: the model state or a refusal, nothing else', async () => {
  const batches = workload(new Prng(81), 40, 200);
  const pristine = tempDir();
  const opts = (dir: string) => ({
    ...base,
    segmentBytes: 2048,
    fs: real,
    dir: join(dir, 'a'),
    mirrorDir: join(dir, 'b'),
  });
  await write(opts(pristine), batches);
  const state = model(batches);
  const log = modelLog(batches);
  const all = records(opts(pristine).dir);
  const rng = new Prng(82);
  const outcomes = { fetched: 0, harmless: 0, tail: 0, refused: 0 };
  for (let trial = 0; trial < 100; trial++) {
    const dir = tempDir();
    cpSync(pristine, dir, { recursive: true });
    // One to three records, each damaged in both copies; never a segment header.
    const hit = new Set<Located>();
    for (let n = 1 + rng.int(3); n > 0; n--) {
      const r = all[1 + rng.int(all.length - 1)]!;
      if (r.offset > 0) hit.add(r);
    }
    for (const r of hit) {
      await damage(
        { ...r, file: r.file.replace(opts(pristine).dir, opts(dir).dir) },
        r.file.replace(opts(pristine).dir, opts(dir).mirrorDir),
      );
    }
    const note = `trial ${trial}: ${[...hit].map((r) => `${r.file.slice(-12)}:${r.offset}`).join(', ')}`;
    const hook = peers(log, state.hardState.commit);
    try {
      const got = await Wal.open({ ...opts(dir), repair: hook });
      if (got.stats.tornTail !== null && !equivalentState(got, batches)) {
        // The last batch's own damage reads as a torn tail: the state before it.
        assertRecovered(got, batches, [batches.length - 1], note);
        outcomes.tail++;
      } else {
        assert.ok(equivalentState(got, batches), `${note}: the model state`);
        if (got.stats.fetched.length > 0) outcomes.fetched++;
        else outcomes.harmless++;
      }
      await got.wal.close();
    } catch (error) {
      const e = error as StorageError;
      assert.equal(e.code, 'WAL_CORRUPT', `${note}: ${e.message}`);
      outcomes.refused++;
    }
    removeDir(dir);
  }
  assert.ok(
    outcomes.fetched > 20 && outcomes.refused > 0 && outcomes.harmless + outcomes.tail > 0,
    JSON.stringify(outcomes),
  );
});

test('megabytes zeroed in the middle of the tail segment, records after them: damage, never the end of the log', async () => {
  // Recovery reads a segment a chunk (1 MiB) at a time and keeps only chunks holding data: the
  // records beyond a whole zeroed chunk must still be seen, so the zeroed span is damage.
  const dir = tempDir();
  try {
    const opts = { ...base, fs: real, dir, segmentBytes: 8 * 1024 * 1024 };
    const big = (index: number) => ent(index, 1, 'x'.repeat(64 * 1024));
    const batches: Batch[] = [];
    for (let i = 1; i <= 60; i += 2) batches.push(batch([big(i), big(i + 1)], hs(1, i - 1)));
    await write(opts, batches);
    const file = records(dir)[0]!.file;
    const holeStart = 1024 * 1024;
    const after = records(dir).filter((r) => r.offset >= 2 * holeStart && r.index > 0);
    assert.ok(after.length > 0, 'entry records lie beyond the hole');
    const fd = openSync(file, 'r+');
    writeSync(fd, new Uint8Array(holeStart), 0, holeStart, holeStart);
    closeSync(fd);
    await assert.rejects(Wal.open(opts), (e: StorageError) => {
      assert.equal(e.code, 'WAL_CORRUPT', e.message);
      return true;
    });
  } finally {
    removeDir(dir);
  }
});
