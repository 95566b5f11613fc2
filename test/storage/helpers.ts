/** Shared test helpers: temp dirs, a naive reference model of the WAL, a random workload. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import type { Entry, HardState } from '../../src/raft/types.js';
import { EMPTY_HARD_STATE } from '../../src/raft/types.js';
import type { SnapshotMarker } from '../../src/storage/wal/format.js';
import type { WalOpenResult } from '../../src/storage/wal/wal.js';
import type { Prng } from '../../src/util/prng.js';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp dir, removed when the test file ends. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-storage-'));
  dirs.push(dir);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface Batch {
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: SnapshotMarker | null;
}

export interface ModelState {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMarker;
  readonly entries: readonly Entry[];
}

/**
 * The reference: the whole log as a plain array indexed from 1 (nothing ever compacted), with
 * the rules written the obvious way. The WAL must recover exactly this after a prefix of batches.
 */
export function model(batches: readonly Batch[]): ModelState {
  let hardState = EMPTY_HARD_STATE;
  let snapshot: SnapshotMarker = { index: 0, term: 0 };
  let log: (Entry | undefined)[] = []; // log[i] is the entry at index i
  for (const b of batches) {
    if (b.snapshot !== null) {
      const s = b.snapshot;
      const held = log[s.index];
      if (held === undefined || held.term !== s.term) log = [];
      snapshot = s;
    }
    for (const e of b.entries) {
      log.length = e.index;
      log[e.index] = e;
    }
    if (b.hardState !== null) hardState = b.hardState;
  }
  const entries = log.filter((e): e is Entry => e !== undefined && e.index > snapshot.index);
  return { hardState, snapshot, entries };
}

/**
 * The whole log the model holds after `batches` (log[i] = the entry at index i), below its
 * snapshot too, until a snapshot that replaced the log: what peers hold committed.
 */
export function modelLog(batches: readonly Batch[]): (Entry | undefined)[] {
  let log: (Entry | undefined)[] = [];
  for (const b of batches) {
    if (b.snapshot !== null) {
      const held = log[b.snapshot.index];
      if (held === undefined || held.term !== b.snapshot.term) log = [];
    }
    for (const e of b.entries) {
      log.length = e.index;
      log[e.index] = e;
    }
  }
  return log;
}

/**
 * Recovery after damage may keep an older snapshot marker than the model (the newer one was in
 * the damage, see log-builder.ts): equivalent when the hard state is the model's, the older
 * marker is one the model passed through, and the entries from it on are the model's log.
 */
export function equivalentState(got: ModelState, batches: readonly Batch[]): boolean {
  const want = model(batches);
  if (sameState(got, want)) return true;
  if (JSON.stringify(got.hardState) !== JSON.stringify(want.hardState)) return false;
  if (
    !batches.some(
      (b) => b.snapshot?.index === got.snapshot.index && b.snapshot.term === got.snapshot.term,
    )
  ) {
    return false;
  }
  if (got.snapshot.index >= want.snapshot.index) return false;
  const log = modelLog(batches);
  const tail = got.entries.filter((e) => e.index > want.snapshot.index);
  const head = got.entries.filter((e) => e.index <= want.snapshot.index);
  if (head.length !== want.snapshot.index - got.snapshot.index) return false;
  const sameEntry = (e: Entry, w: Entry | undefined): boolean =>
    w !== undefined &&
    e.index === w.index &&
    e.term === w.term &&
    e.type === w.type &&
    Buffer.from(e.data).equals(Buffer.from(w.data));
  return (
    head.every((e) => sameEntry(e, log[e.index])) &&
    sameState({ ...got, snapshot: want.snapshot, entries: tail }, want)
  );
}

export function sameState(got: ModelState, want: ModelState): boolean {
  if (JSON.stringify(got.hardState) !== JSON.stringify(want.hardState)) return false;
  if (got.snapshot.index !== want.snapshot.index || got.snapshot.term !== want.snapshot.term)
    return false;
  if (got.entries.length !== want.entries.length) return false;
  return got.entries.every((e, i) => {
    const w = want.entries[i]!;
    return (
      e.index === w.index &&
      e.term === w.term &&
      e.type === w.type &&
      Buffer.from(e.data).equals(Buffer.from(w.data))
    );
  });
}

/** Asserts that the recovered state is the model after one of the `allowed` batch counts. */
export function assertRecovered(
  got: WalOpenResult | ModelState,
  batches: readonly Batch[],
  allowed: readonly number[],
  note = '',
): number {
  for (const k of allowed) if (sameState(got, model(batches.slice(0, k)))) return k;
  assert.fail(
    `${note}: recovered state (last ${got.entries.at(-1)?.index ?? got.snapshot.index}, ` +
      `${got.entries.length} entries, hs ${JSON.stringify(got.hardState)}) is not the model after ${allowed.join(' or ')} batches`,
  );
}

/**
 * Generates the next batch from the current state, as raft would: entries continue the log or
 * overwrite a suffix above the commit index (never a committed entry) with a higher term; now
 * and then a hard state (commit never goes back), a local snapshot marker (at a committed entry
 * the log holds) or a leader's snapshot past the end of the log (with the hard state that commits
 * it, as raft's restore does). Protocol-aware recovery relies on these Raft rules.
 */
export function nextBatch(rng: Prng, state: ModelState, dataBytesMax = 300): Batch {
  const last = state.entries.at(-1) ?? { index: state.snapshot.index, term: state.snapshot.term };
  let term = Math.max(last.term, state.hardState.term, 1);
  let snapshot: SnapshotMarker | null = null;
  const committed = state.entries.filter((e) => e.index <= state.hardState.commit);
  const roll = rng.int(20);
  if (roll === 0 && committed.length > 0) {
    const e = committed[rng.int(committed.length)]!;
    snapshot = { index: e.index, term: e.term };
  } else if (roll === 1) {
    snapshot = { index: last.index + 1 + rng.int(5), term };
  }
  const floor = Math.max(snapshot?.index ?? state.snapshot.index, state.hardState.commit);
  let start = Math.max(last.index + 1, floor + 1);
  if (snapshot !== null && snapshot.index >= last.index) start = snapshot.index + 1;
  else if (rng.int(6) === 0 && last.index > floor) {
    start = floor + 1 + rng.int(last.index - floor); // overwrite a suffix, with a newer term
    term++;
  }
  const entries: Entry[] = [];
  const count = rng.int(5);
  for (let i = 0; i < count; i++) {
    const data = new Uint8Array(rng.int(dataBytesMax + 1));
    for (let j = 0; j < data.length; j++) data[j] = rng.int(256);
    entries.push({ index: start + i, term, type: rng.int(8) === 0 ? 1 : 0, data });
  }
  const leaderSnapshot = snapshot !== null && snapshot.index > last.index;
  const hardState =
    rng.int(2) === 0 || count === 0 || leaderSnapshot
      ? { term, vote: rng.int(4), commit: Math.max(state.hardState.commit, start - 1) }
      : null;
  return { hardState, entries, snapshot };
}

/** A deterministic workload of `n` batches. */
export function workload(rng: Prng, n: number, dataBytesMax = 300): Batch[] {
  const batches: Batch[] = [];
  for (let i = 0; i < n; i++) batches.push(nextBatch(rng, model(batches), dataBytesMax));
  return batches;
}
