/**
 * The segmented write-ahead log (etcd's WAL, in our format: see format.ts).
 *
 * Group commit: `save()` encodes everything one Raft Ready asks to persist (snapshot marker,
 * entries, hard state) into one reused buffer and issues ONE write and ONE fdatasync per copy
 * (primary and optional mirror, in parallel; both in one O_DSYNC write where the file system
 * offers `writeDurable`); it resolves once every copy is durable. Saves are
 * serialized: the next write starts only after the previous fdatasync returned, so at any time at
 * most the last batch can be partly on disk. Recovery relies on that (see `open`).
 *
 * A hard state that only moves the commit index (etcd's MustSync false) is not written on its
 * own: it is kept and goes into the next synced batch (or the one `close` writes), as etcd's WAL
 * leaves such records buffered until its next sync. A crash before that loses only a commit
 * index, which the member learns again from the leader; every write the WAL makes is synced.
 *
 * Segments: `<seq>-<firstIndex>.wal`, created as a `.tmp` file, preallocated with zeros, given a
 * header batch (segment header, latest snapshot marker, latest hard state: so releasing older
 * segments never loses them), synced, renamed into place and the directory synced. A segment
 * file under its final name therefore always starts with a valid header batch.
 *
 * Write failures: a failed write leaves unknown bytes past the tail; they are zeroed before the
 * next write, so stale valid-looking records never follow newer ones, and the WAL stays usable
 * (ENOSPC is an error, not corruption). A failed fdatasync poisons the WAL (WAL_FAILED): after
 * one, Linux may have dropped the dirty pages while marking them clean, so a retry could report
 * success for data that is gone (PostgreSQL's "fsyncgate"); the member must restart and recover.
 */
import { join } from 'node:path';
import type { Entry, HardState } from '../../raft/types.js';
import { EMPTY_HARD_STATE } from '../../raft/types.js';
import { assert, assertUint } from '../../util/assert.js';
import { removeTempFiles, TMP_SUFFIX, writeFileAtomic } from '../atomic.js';
import { ioError, StorageError, type StorageErrorLocation } from '../errors.js';
import { type FileHandle, type FileSystem, failedBeforeSync, type OpenOptions } from '../fs.js';
import {
  BATCH_BUFFER_BYTES_INITIAL,
  BATCH_BYTES_MAX,
  DAMAGED_SPANS_MAX,
  PREALLOCATE_CHUNK_BYTES,
  REWRITE_BATCH_BYTES,
  SEGMENT_BYTES_DEFAULT,
  SEGMENT_BYTES_MAX,
  SEGMENT_BYTES_MIN,
  SEGMENT_BYTES_OPTION_MAX,
  SEGMENTS_MAX,
} from '../limits.js';
import {
  beginFrame,
  decodeEntry,
  decodeFrame,
  decodeHardState,
  decodeSegmentHeader,
  decodeSnapshot,
  ENTRY_DATA_BYTES_MAX,
  ENTRY_PAYLOAD_HEADER_BYTES,
  encodeEntryHeader,
  encodeHardState,
  encodeSegmentHeader,
  encodeSnapshot,
  FLAG_BATCH_END,
  frameBytes,
  HARD_STATE_PAYLOAD_BYTES,
  parseSegmentName,
  RecordType,
  SEGMENT_HEADER_PAYLOAD_BYTES,
  type SegmentHeader,
  SNAPSHOT_PAYLOAD_BYTES,
  type SnapshotMarker,
  sealFrame,
  segmentName,
} from './format.js';
import { corrupt, LogBuilder, type MissingRange } from './log-builder.js';
import {
  type DamagedSpan,
  isHeaderRecord,
  nonZeroEnd,
  type SegmentImage,
  scanSegment,
  type VerifiedRecord,
} from './scan.js';

/**
 * What recovery may do when no local copy can repair damage (see `Wal.open`).
 *
 * `fetchCommitted` is protocol-aware recovery: the WAL lost entries that it can prove committed;
 * the hook gets them from peers. It resolves with exactly the requested entries once an answer
 * passes `check` (null = acceptable, else what is wrong with it), trying other peers meanwhile;
 * it may wait as long as it takes (the member must not start with a hole), and rejects to
 * refuse. The WAL checks the result again before using it.
 *
 * `onCorruption` is consulted when recovery refuses. 'truncate' cuts the log at the last good
 * batch before the first damage (later segments are deleted); open() then succeeds and reports
 * `stats.lostFrom`: records the member may have acknowledged are gone, so it must not vote or
 * count toward a quorum until peers have sent them again. The default refuses: WAL_CORRUPT.
 */
export interface WalRepairHook {
  onCorruption?(error: StorageError): Promise<'refuse' | 'truncate'>;
  fetchCommitted?(
    request: WalFetchRequest,
    check: (entries: readonly Entry[]) => string | null,
  ): Promise<readonly Entry[]>;
}

/** Committed entries the WAL lacks: firstIndex..lastIndex, all at or below `commitIndex`. */
export interface WalFetchRequest extends MissingRange {
  /** The recovered commit index (this member knew every requested entry committed). */
  readonly commitIndex: number;
  /** The damage that put these entries in doubt. */
  readonly damage: StorageErrorLocation;
}

/** A span damaged in every copy, stepped over by recovery. */
export interface WalDamage extends StorageErrorLocation {
  readonly bytes: number;
}

export interface WalOptions {
  readonly fs: FileSystem;
  readonly dir: string;
  /** A second directory (ideally another device) that receives every record too. */
  readonly mirrorDir?: string | null;
  /** Identity written in every segment header; a mismatch refuses to open (WAL_IDENTITY_MISMATCH). */
  readonly clusterId: number;
  readonly memberId: number;
  readonly segmentBytes?: number;
  /** Zero-fill new segments up front (default true). */
  readonly preallocate?: boolean;
  readonly repair?: WalRepairHook;
}

export interface WalRepair {
  /** The damaged file that was rewritten. */
  readonly file: string;
  readonly offset: number;
  readonly bytes: number;
  /** The copy the good bytes came from. */
  readonly from: string;
}

export interface WalStats {
  readonly segments: number;
  readonly records: number;
  readonly bytesRead: number;
  /** Set when the last batch was incomplete or garbage followed it: where the log was cut. */
  readonly tornTail: {
    readonly file: string;
    readonly offset: number;
    readonly bytes: number;
  } | null;
  /** Records (or whole segments) copied from the good copy into the damaged one. */
  readonly repaired: readonly WalRepair[];
  /** Set when the repair hook chose to truncate at corruption: acknowledged data may be lost. */
  readonly lostFrom: StorageErrorLocation | null;
  /** Spans damaged in every copy that recovery stepped over (harmless, or repaired from peers). */
  readonly damaged: readonly WalDamage[];
  /** Committed entries fetched from peers to fill what the damage held. */
  readonly fetched: readonly { readonly firstIndex: number; readonly lastIndex: number }[];
  /** True when damage was stepped over and the log rewritten into a fresh segment. */
  readonly rewritten: boolean;
}

export interface WalOpenResult {
  readonly wal: Wal;
  readonly hardState: HardState;
  /** The newest snapshot marker: load the snapshot with this index and term. */
  readonly snapshot: SnapshotMarker;
  /** Entries after `snapshot.index`, contiguous, ready for MemoryStorage.append. */
  readonly entries: Entry[];
  readonly stats: WalStats;
}

interface SegmentInfo {
  readonly seq: number;
  readonly firstIndex: number;
  readonly name: string;
}

/** Segments are read through a scratch buffer of this size (zero chunks are not kept). */
const READ_CHUNK_BYTES = 1024 * 1024;
const HEADER_BATCH_BYTES =
  frameBytes(SEGMENT_HEADER_PAYLOAD_BYTES) +
  frameBytes(SNAPSHOT_PAYLOAD_BYTES) +
  frameBytes(HARD_STATE_PAYLOAD_BYTES);
assert(HEADER_BATCH_BYTES < SEGMENT_BYTES_MIN, 'a header batch fits the smallest segment');

export class Wal {
  private readonly fs: FileSystem;
  private readonly dirs: readonly string[];
  private readonly segmentBytes: number;
  private readonly preallocate: boolean;
  private readonly clusterId: number;
  private readonly memberId: number;
  /** Live segments, oldest first; the last one is being written. */
  private readonly segments: SegmentInfo[];
  /** Handles of the last segment, one per copy (primary first). */
  private handles: FileHandle[];
  /** Where the next batch goes in the last segment; always the end of a complete batch. */
  private offset: number;
  /** Bytes past `offset` that a failed write may have touched: zeroed before the next write. */
  private dirtyEnd: number;
  /**
   * The latest commit-only hard state `save` was given and has not written yet (see the file's
   * comment): the next synced save writes it, unless that save carries a later hard state.
   */
  private deferredHardState: HardState | null = null;
  /** Greatest index written (an overestimate after a snapshot replaced the log: safe for release). */
  private lastIndex: number;
  private hardState: HardState;
  private snapshot: SnapshotMarker;
  /** The group-commit buffer, reused by every save; grows by doubling up to BATCH_BYTES_MAX. */
  private buf = new Uint8Array(BATCH_BUFFER_BYTES_INITIAL);
  private view = new DataView(this.buf.buffer);
  private queue: Promise<unknown> = Promise.resolve();
  private failure: StorageError | null = null;
  private closed = false;

  private constructor(
    options: WalOptions,
    state: {
      segments: SegmentInfo[];
      handles: FileHandle[];
      offset: number;
      lastIndex: number;
      hardState: HardState;
      snapshot: SnapshotMarker;
    },
  ) {
    this.fs = options.fs;
    this.dirs = walDirs(options);
    this.segmentBytes = options.segmentBytes ?? SEGMENT_BYTES_DEFAULT;
    this.preallocate = options.preallocate ?? true;
    this.clusterId = options.clusterId;
    this.memberId = options.memberId;
    this.segments = state.segments;
    this.handles = state.handles;
    this.offset = state.offset;
    this.dirtyEnd = state.offset;
    this.lastIndex = state.lastIndex;
    this.hardState = state.hardState;
    this.snapshot = state.snapshot;
    // Empty only inside create(), until the first rotate().
    assert(
      this.handles.length === (this.segments.length === 0 ? 0 : this.dirs.length),
      'one handle per copy',
    );
  }

  /**
   * Opens (or creates) the WAL and recovers it. Every record of every segment is verified, in
   * every copy. At each offset the first copy whose record verifies wins; the others are repaired.
   * Where no copy verifies:
   * - zeroed space with no partial batch before it, and nothing valid after: a clean end;
   * - in the last segment, nothing valid after it: a torn tail, from a crash during the last
   *   write, never acknowledged. It is cut at the last complete batch and zeroed;
   * - anything else is damage in every copy. Recovery steps over it (scan.ts) and classifies it
   *   from the intact records around it (log-builder.ts): harmless, recoverable from peers
   *   (committed entries, fetched through `repair.fetchCommitted`, checked, then the whole log
   *   is rewritten into a fresh segment so the damage is gone), or refused: WAL_CORRUPT naming
   *   the file, the offset and why protocol-aware recovery cannot apply. A refusal consults
   *   `repair.onCorruption`, which may choose to truncate at the first damage instead.
   * A torn write whose later sectors landed while earlier ones did not therefore reads as damage
   * (a valid chain follows it): loud, and recovered only when the rules above prove it safe.
   */
  static async open(options: WalOptions): Promise<WalOpenResult> {
    validateOptions(options);
    const { fs } = options;
    const dirs = walDirs(options);
    for (const dir of dirs) await prepareDir(fs, dir);
    const segments = await listSegments(fs, dirs);
    if (segments.length === 0) return Wal.create(options);
    try {
      return await Wal.recover(options, segments, 'step-over');
    } catch (error) {
      const hook = options.repair?.onCorruption;
      if (!(error instanceof StorageError) || error.code !== 'WAL_CORRUPT' || hook === undefined) {
        throw error;
      }
      if ((await hook.call(options.repair, error)) !== 'truncate') throw error;
      return Wal.recover(options, await listSegments(fs, dirs), 'truncate');
    }
  }

  /**
   * Reads every segment into the log builder. 'step-over': damage is stepped over and classified,
   * any other corruption throws. 'truncate': the log is cut at the first damage (the repair
   * hook's choice) and `stats.lostFrom` says where.
   */
  private static async recover(
    options: WalOptions,
    segments: SegmentInfo[],
    mode: 'step-over' | 'truncate',
  ): Promise<WalOpenResult> {
    const { fs } = options;
    const dirs = walDirs(options);
    const builder = new LogBuilder();
    const repaired: WalRepair[] = [];
    const damaged: WalDamage[] = [];
    let tornTail: WalStats['tornTail'] = null;
    let lostFrom: StorageErrorLocation | null = null;
    let records = 0;
    let bytesRead = 0;
    let prevEnd = -1;
    let tailEnd = 0;
    let kept = segments.length;
    // One segment of lookahead: deciding about damage in a sealed segment needs the next header.
    let next = await readCopies(fs, dirs, segments[0]!);
    for (let i = 0; i < kept; i++) {
      const segment = segments[i]!;
      const copies = next;
      const isLast = i === segments.length - 1;
      next = isLast ? [] : await readCopies(fs, dirs, segments[i + 1]!);
      const paths = dirs.map((dir) => join(dir, segment.name));
      const primary = copies.findIndex((c) => c.bytes !== null);
      const primaryPath = paths[primary]!;
      for (const c of copies) bytesRead += c.bytes?.length ?? 0;
      const recordsEnd = isLast ? -1 : nextPrevEnd(next, segment.seq + 1);

      let sawHeader = false;
      const onBatch = (batch: readonly VerifiedRecord[]): void => {
        for (const r of batch) {
          const where = { file: paths[r.copy]!, offset: r.offset };
          if (sawHeader) {
            applyRecord(builder, copies[r.copy]!, r, where);
            continue;
          }
          if (!isHeaderRecord(r)) throw corrupt(where, 'segment does not start with its header');
          const header = decodeSegmentHeader(copies[r.copy]!.view!, r.payloadAt, r.payloadBytes);
          if (header === null) throw corrupt(where, 'segment header does not decode');
          checkHeader(options, header, segment, prevEnd, where);
          sawHeader = true;
        }
      };
      const onDamage = (span: DamagedSpan): void => {
        const where = { file: primaryPath, offset: span.offset };
        if (damaged.length >= DAMAGED_SPANS_MAX) {
          throw corrupt(where, `more than ${DAMAGED_SPANS_MAX} spans damaged in every copy`);
        }
        damaged.push({ ...where, bytes: span.end - span.offset });
        builder.damaged(where, span.end - span.offset);
      };
      const scan = scanSegment(
        copies,
        segment.seq,
        onBatch,
        mode === 'step-over' ? { onDamage, recordsEnd } : {},
      );
      records += scan.records;
      if (!sawHeader)
        throw corrupt({ file: primaryPath, offset: 0 }, `segment header: ${scan.stopReason}`);

      let cut = isLast;
      if (!scan.cleanEnd || scan.validAfter >= 0) {
        // Damage in a sealed segment is harmless only in its unused slack: the next header
        // records where its batches end, and nothing valid follows.
        const slackOnly = !isLast && scan.validAfter < 0 && recordsEnd === scan.batchEnd;
        if (scan.validAfter >= 0 || (!isLast && !slackOnly)) {
          const where = { file: primaryPath, offset: scan.stopOffset };
          const error = corrupt(
            where,
            scan.validAfter >= 0
              ? `${scan.stopReason}, and a valid record follows at byte ${scan.validAfter}`
              : `${scan.stopReason} in a sealed segment`,
          );
          if (mode !== 'truncate') throw error;
          lostFrom = where;
          cut = true;
          kept = i + 1;
        }
      }

      // Repairs go to the in-memory images too: a copy missing the whole segment is cloned.
      for (const r of scan.repairs) {
        const copy = copies[r.copy]!;
        copy.bytes!.set(r.bytes, r.offset);
        // What it wrote is no longer known zero.
        const written = r.offset + r.bytes.length;
        if (copy.zeroFrom !== undefined && copy.zeroFrom < written) {
          copies[r.copy] = { ...copy, zeroFrom: written };
        }
        await patchFile(fs, paths[r.copy]!, r.bytes, r.offset);
        repaired.push({
          file: paths[r.copy]!,
          offset: r.offset,
          bytes: r.bytes.length,
          from: paths[r.from]!,
        });
      }
      if (cut) {
        // The tail: everything past the last complete batch is zeroed, in every copy.
        let garbage = 0;
        for (let c = 0; c < copies.length; c++) {
          const bytes = copies[c]!.bytes;
          if (bytes === null) continue;
          const end = nonZeroEnd(bytes, scan.batchEnd, copies[c]!.zeroFrom);
          if (end === scan.batchEnd) continue;
          bytes.fill(0, scan.batchEnd, end);
          await patchFile(fs, paths[c]!, new Uint8Array(end - scan.batchEnd), scan.batchEnd);
          garbage = Math.max(garbage, end - scan.batchEnd);
        }
        if (lostFrom === null && (garbage > 0 || scan.stopOffset > scan.batchEnd)) {
          tornTail = { file: primaryPath, offset: scan.batchEnd, bytes: garbage };
        }
        tailEnd = scan.batchEnd;
      }
      const source = copies[primary]!.bytes!;
      for (let c = 0; c < copies.length; c++) {
        if (copies[c]!.bytes !== null) continue;
        await writeFileAtomic(fs, dirs[c]!, segment.name, source);
        repaired.push({ file: paths[c]!, offset: 0, bytes: source.length, from: primaryPath });
      }
      prevEnd = scan.batchEnd;
    }
    const dead = segments.splice(kept);
    for (const segment of dead) {
      for (const dir of dirs) await unlinkIfExists(fs, join(dir, segment.name));
    }
    if (dead.length > 0) for (const dir of dirs) await fs.syncDir(dir);
    builder.finish();
    const fetched = await fetchMissing(options, builder);

    const last = segments[segments.length - 1]!;
    const handles: FileHandle[] = [];
    for (const dir of dirs) handles.push(await fs.open(join(dir, last.name), 'write', DURABLE));
    // A failed write, or a WAL of a version that wrote commit-only hard states unflushed, may
    // leave bytes only in the page cache, and an O_DSYNC write flushes only its own: flush now.
    try {
      for (const handle of handles) await handle.datasync();
    } catch (error) {
      for (const handle of handles) await handle.close().catch(() => {});
      throw ioError(`WAL ${last.name}: fdatasync of the tail`, error);
    }
    const wal = new Wal(options, {
      segments,
      handles,
      offset: tailEnd,
      lastIndex: builder.lastIndex(),
      hardState: builder.hardState,
      snapshot: builder.snapshot,
    });
    if (damaged.length > 0) {
      try {
        await wal.rewriteLog(builder.entries);
      } catch (error) {
        await wal.close();
        throw error;
      }
    }
    return {
      wal,
      hardState: builder.hardState,
      snapshot: builder.snapshot,
      entries: builder.entries,
      stats: {
        segments: wal.segments.length,
        records,
        bytesRead,
        tornTail,
        repaired,
        lostFrom,
        damaged,
        fetched,
        rewritten: damaged.length > 0,
      },
    };
  }

  /** A brand-new WAL: segment 0 with an empty header batch. */
  private static async create(options: WalOptions): Promise<WalOpenResult> {
    const snapshot = { index: 0, term: 0 };
    const wal = new Wal(options, {
      segments: [],
      handles: [],
      offset: 0,
      lastIndex: 0,
      hardState: EMPTY_HARD_STATE,
      snapshot,
    });
    await wal.rotate();
    const stats = {
      segments: 1,
      records: 0,
      bytesRead: 0,
      tornTail: null,
      repaired: [],
      lostFrom: null,
      damaged: [],
      fetched: [],
      rewritten: false,
    };
    return { wal, hardState: EMPTY_HARD_STATE, snapshot, entries: [], stats };
  }

  /**
   * Persists one Ready: `snapshot` marker, then `entries`, then `hardState`, in ONE write and ONE
   * fdatasync per copy. Resolves when durable. Entries may overwrite a suffix written before
   * (recovery keeps the later ones). Nothing to persist resolves at once.
   *
   * `sync` false (etcd's MustSync): only for a hard state whose term and vote are unchanged, which
   * may be lost in a crash without harm (a commit index is learned again). It is not written now
   * but with the next synced save, or by `close` (see the file's comment); it resolves at once.
   * Callers save in Ready order, so a later save's hard state supersedes a deferred one.
   */
  save(
    hardState: HardState | null,
    entries: readonly Entry[],
    snapshot: SnapshotMarker | null,
    sync = true,
  ): Promise<void> {
    assert(sync || (entries.length === 0 && snapshot === null), 'entries and snapshots are synced');
    const deferred = this.deferredHardState;
    if (!sync) {
      if (this.closed || this.failure !== null) {
        return this.exclusive(async () => this.checkUsable());
      }
      if (hardState !== null) {
        assertNotOlder(hardState, deferred ?? this.hardState);
        this.deferredHardState = hardState;
      }
      return Promise.resolve();
    }
    // Taken now, in call order: a commit-only hard state deferred after this call belongs after it.
    this.deferredHardState = null;
    if (hardState !== null && deferred !== null) assertNotOlder(hardState, deferred);
    const hs = hardState ?? deferred;
    return this.exclusive(() => this.saveNow(hs, entries, snapshot));
  }

  /**
   * Deletes the segments whose every live entry is at or below `index`, which a saved snapshot
   * must cover. Returns how many segments were deleted. The last segment always stays.
   */
  releaseTo(index: number): Promise<number> {
    assertUint(index, 'release index');
    return this.exclusive(async () => {
      this.checkUsable();
      assert(
        index <= this.snapshot.index,
        `release to ${index} past the snapshot at ${this.snapshot.index}`,
      );
      let removed = 0;
      // Segment i holds no live entry above segments[i + 1].firstIndex - 1 (its last index when
      // segment i + 1 was created), so it can go once the snapshot covers that.
      while (this.segments.length > 1 && this.segments[1]!.firstIndex <= index + 1) {
        const dead = this.segments[0]!;
        try {
          for (const dir of this.dirs) await unlinkIfExists(this.fs, join(dir, dead.name));
        } catch (error) {
          throw ioError(`WAL release of ${dead.name}`, error);
        }
        this.segments.shift();
        removed++;
      }
      if (removed > 0) {
        try {
          for (const dir of this.dirs) await this.fs.syncDir(dir);
        } catch (error) {
          throw ioError('WAL release: directory sync', error);
        }
      }
      return removed;
    });
  }

  /** Writes a deferred commit-only hard state (so a clean restart knows it), then closes. */
  async close(): Promise<void> {
    await this.exclusive(async () => {
      if (this.closed) return;
      const deferred = this.deferredHardState;
      this.deferredHardState = null;
      if (deferred !== null && this.failure === null) {
        // Best effort: a commit index that fails to land is learned again after the restart, and
        // the failure itself is the next open's to meet.
        await this.saveNow(deferred, [], null).catch(() => {});
      }
      this.closed = true;
      for (const handle of this.handles) await handle.close().catch(() => {});
    });
  }

  /**
   * After recovery stepped over damage: writes the whole recovered state (snapshot marker, hard
   * state, every entry after the marker) into one new segment, created like any other (temp file,
   * fsync, rename, directory fsync, in every copy), then deletes every older segment, oldest
   * first. A crash at any point leaves a WAL that recovers the same state: before the rename, the
   * old segments (their damage is stepped over again); after it, the new segment, whose entries
   * rewrite the whole log from the marker on (older damage then needs nothing from peers); while
   * deleting, a suffix of the old segments and the new one (never a gap in the sequence).
   */
  private async rewriteLog(entries: readonly Entry[]): Promise<void> {
    this.checkUsable();
    assert(
      entries.every((e) => e.term >= 0),
      'a rewritten log holds no placeholder',
    );
    const current = this.segments[this.segments.length - 1]!;
    const seq = current.seq + 1;
    const firstIndex = this.lastIndex + 1;
    const name = segmentName(seq, firstIndex);
    const image = this.encodeImage(
      {
        clusterId: this.clusterId,
        memberId: this.memberId,
        seq,
        firstIndex,
        prevEndOffset: this.offset,
      },
      entries,
    );
    const handles: FileHandle[] = [];
    try {
      for (const dir of this.dirs) handles.push(await this.createSegmentFile(dir, name, image));
    } catch (error) {
      for (const h of handles) await h.close().catch(() => {});
      throw ioError(`WAL rewrite into ${name}`, error);
    }
    for (const handle of this.handles) await handle.close().catch(() => {});
    this.handles = handles;
    const old = this.segments.splice(0, this.segments.length, { seq, firstIndex, name });
    for (const dead of old) {
      for (const dir of this.dirs) await unlinkIfExists(this.fs, join(dir, dead.name));
    }
    for (const dir of this.dirs) await this.fs.syncDir(dir);
    this.offset = image.length;
    this.dirtyEnd = image.length;
  }

  /** A whole segment: its header batch, then `entries` in batches of about REWRITE_BATCH_BYTES. */
  private encodeImage(header: SegmentHeader, entries: readonly Entry[]): Uint8Array {
    let bytes = HEADER_BATCH_BYTES;
    for (const e of entries) bytes += frameBytes(ENTRY_PAYLOAD_HEADER_BYTES + e.data.length);
    if (bytes > SEGMENT_BYTES_MAX) {
      throw new StorageError(
        'RECORD_TOO_LARGE',
        `the recovered log (${bytes} bytes) does not fit one segment (${SEGMENT_BYTES_MAX})`,
      );
    }
    const image = new Uint8Array(bytes);
    const view = new DataView(image.buffer);
    const n = this.encodeHeaderBatch(header);
    image.set(this.buf.subarray(0, n), 0);
    let at = n;
    let batchStart = at;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const p = beginFrame(
        image,
        view,
        at,
        RecordType.Entry,
        ENTRY_PAYLOAD_HEADER_BYTES + e.data.length,
      );
      encodeEntryHeader(view, p, e);
      image.set(e.data, p + ENTRY_PAYLOAD_HEADER_BYTES);
      const frameEnd = at + frameBytes(ENTRY_PAYLOAD_HEADER_BYTES + e.data.length);
      const endsBatch = i === entries.length - 1 || frameEnd - batchStart >= REWRITE_BATCH_BYTES;
      at = sealFrame(image, view, at, endsBatch ? FLAG_BATCH_END : 0, header.seq, at);
      if (endsBatch) batchStart = at;
    }
    assert(at === bytes, 'image encoded to its computed size');
    return image;
  }

  /** For observability and tests. */
  get status(): { segments: number; seq: number; offset: number; lastIndex: number } {
    const last = this.segments[this.segments.length - 1]!;
    return {
      segments: this.segments.length,
      seq: last.seq,
      offset: this.offset,
      lastIndex: this.lastIndex,
    };
  }

  // -------------------------------------------------------------------------------------------

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.queue.then(fn);
    this.queue = result.catch(() => {});
    return result;
  }

  private checkUsable(): void {
    if (this.closed) throw new StorageError('WAL_CLOSED', 'WAL is closed');
    if (this.failure !== null) throw this.failure;
  }

  private async saveNow(
    hardState: HardState | null,
    entries: readonly Entry[],
    snapshot: SnapshotMarker | null,
  ): Promise<void> {
    this.checkUsable();
    let bytes = 0;
    if (snapshot !== null) bytes += frameBytes(SNAPSHOT_PAYLOAD_BYTES);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.data.length > ENTRY_DATA_BYTES_MAX) {
        throw new StorageError(
          'RECORD_TOO_LARGE',
          `entry ${e.index}: ${e.data.length} bytes > ${ENTRY_DATA_BYTES_MAX}`,
        );
      }
      assert(
        e.index >= 1 && (i === 0 || e.index === entries[i - 1]!.index + 1),
        'entries are contiguous',
      );
      bytes += frameBytes(ENTRY_PAYLOAD_HEADER_BYTES + e.data.length);
    }
    if (hardState !== null) bytes += frameBytes(HARD_STATE_PAYLOAD_BYTES);
    if (bytes === 0) return;
    if (bytes > BATCH_BYTES_MAX) {
      throw new StorageError('RECORD_TOO_LARGE', `batch of ${bytes} bytes > ${BATCH_BYTES_MAX}`);
    }
    if (this.dirtyEnd > this.offset) await this.zeroDirty();
    if (this.offset + bytes > this.segmentBytes && this.offset > HEADER_BATCH_BYTES)
      await this.rotate();

    const n = this.encodeBatch(hardState, entries, snapshot, bytes);
    await this.persist(this.buf.subarray(0, n), this.offset);
    this.offset += n;
    if (entries.length > 0) this.lastIndex = entries[entries.length - 1]!.index;
    if (snapshot !== null) {
      this.snapshot = snapshot;
      this.lastIndex = Math.max(this.lastIndex, snapshot.index);
    }
    if (hardState !== null) this.hardState = hardState;
  }

  /** Encodes a batch at buffer offset 0 for file position `this.offset`; returns its length. */
  private encodeBatch(
    hardState: HardState | null,
    entries: readonly Entry[],
    snapshot: SnapshotMarker | null,
    bytes: number,
  ): number {
    this.reserve(bytes);
    const { buf, view, offset } = this;
    const seq = this.segments[this.segments.length - 1]!.seq;
    const count = (snapshot === null ? 0 : 1) + entries.length + (hardState === null ? 0 : 1);
    let at = 0;
    let written = 0;
    const seal = (): void => {
      written++;
      at = sealFrame(buf, view, at, written === count ? FLAG_BATCH_END : 0, seq, offset + at);
    };
    if (snapshot !== null) {
      encodeSnapshot(
        view,
        beginFrame(buf, view, at, RecordType.Snapshot, SNAPSHOT_PAYLOAD_BYTES),
        snapshot,
      );
      seal();
    }
    for (const e of entries) {
      const p = beginFrame(
        buf,
        view,
        at,
        RecordType.Entry,
        ENTRY_PAYLOAD_HEADER_BYTES + e.data.length,
      );
      encodeEntryHeader(view, p, e);
      buf.set(e.data, p + ENTRY_PAYLOAD_HEADER_BYTES);
      seal();
    }
    if (hardState !== null) {
      encodeHardState(
        view,
        beginFrame(buf, view, at, RecordType.HardState, HARD_STATE_PAYLOAD_BYTES),
        hardState,
      );
      seal();
    }
    assert(at === bytes && written === count, 'batch encoded to its computed size');
    return at;
  }

  private reserve(bytes: number): void {
    assert(bytes <= BATCH_BYTES_MAX, 'batch within limit');
    if (bytes <= this.buf.length) return;
    let size = this.buf.length;
    while (size < bytes) size *= 2;
    this.buf = new Uint8Array(Math.min(size, BATCH_BYTES_MAX));
    this.view = new DataView(this.buf.buffer);
  }

  /**
   * Writes and fdatasyncs `data` at `position` in every copy, copies in parallel.
   * allSettled, not all: the buffer must not be reused while any copy is still writing it.
   */
  private async persist(data: Uint8Array, position: number): Promise<void> {
    const results = await Promise.allSettled(
      this.handles.map((h) => writeAndSync(h, data, position)),
    );
    let writeError: unknown = null;
    for (const r of results) {
      if (r.status === 'fulfilled') continue;
      const failure = r.reason as CopyFailure;
      if (failure.stage === 'sync') {
        this.failure = new StorageError(
          'WAL_FAILED',
          `WAL fdatasync failed; restart to recover: ${failure.cause}`,
          {
            cause: failure.cause,
          },
        );
        throw this.failure;
      }
      writeError = failure.cause;
    }
    if (writeError !== null) {
      this.dirtyEnd = Math.max(this.dirtyEnd, position + data.length);
      throw ioError('WAL write', writeError);
    }
  }

  private async zeroDirty(): Promise<void> {
    const zeros = new Uint8Array(Math.min(this.dirtyEnd - this.offset, PREALLOCATE_CHUNK_BYTES));
    for (let at = this.offset; at < this.dirtyEnd; at += zeros.length) {
      await this.persist(zeros.subarray(0, Math.min(zeros.length, this.dirtyEnd - at)), at);
    }
    this.dirtyEnd = this.offset;
  }

  /**
   * Starts the next segment (or the first). On failure the new file is removed from every copy
   * and the WAL stays on the current segment; if even that cleanup fails the WAL is poisoned,
   * since a stray segment would make the current one look sealed.
   */
  private async rotate(): Promise<void> {
    const current = this.segments[this.segments.length - 1];
    const seq = current === undefined ? 0 : current.seq + 1;
    const firstIndex = this.lastIndex + 1;
    const name = segmentName(seq, firstIndex);
    const header = {
      clusterId: this.clusterId,
      memberId: this.memberId,
      seq,
      firstIndex,
      prevEndOffset: this.offset,
    };
    const n = this.encodeHeaderBatch(header);
    const data = this.buf.subarray(0, n);
    const results = await Promise.allSettled(
      this.dirs.map((dir) => this.createSegmentFile(dir, name, data)),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) {
      for (const r of results) if (r.status === 'fulfilled') await r.value.close().catch(() => {});
      try {
        for (const dir of this.dirs) {
          await unlinkIfExists(this.fs, join(dir, name + TMP_SUFFIX));
          await unlinkIfExists(this.fs, join(dir, name));
          await this.fs.syncDir(dir);
        }
      } catch (cleanup) {
        this.failure = new StorageError(
          'WAL_FAILED',
          `WAL segment creation could not be undone: ${cleanup}`,
          {
            cause: cleanup,
          },
        );
      }
      throw ioError(`WAL segment ${name}`, (failed as PromiseRejectedResult).reason);
    }
    for (const handle of this.handles) await handle.close().catch(() => {});
    this.handles = results.map((r) => (r as PromiseFulfilledResult<FileHandle>).value);
    this.segments.push({ seq, firstIndex, name });
    assert(this.segments.length <= SEGMENTS_MAX, 'too many WAL segments: is releaseTo called?');
    this.offset = n;
    this.dirtyEnd = n;
  }

  private encodeHeaderBatch(header: SegmentHeader): number {
    const { buf, view } = this;
    let at = 0;
    encodeSegmentHeader(
      view,
      beginFrame(buf, view, at, RecordType.SegmentHeader, SEGMENT_HEADER_PAYLOAD_BYTES),
      header,
    );
    at = sealFrame(buf, view, at, 0, header.seq, at);
    encodeSnapshot(
      view,
      beginFrame(buf, view, at, RecordType.Snapshot, SNAPSHOT_PAYLOAD_BYTES),
      this.snapshot,
    );
    at = sealFrame(buf, view, at, 0, header.seq, at);
    encodeHardState(
      view,
      beginFrame(buf, view, at, RecordType.HardState, HARD_STATE_PAYLOAD_BYTES),
      this.hardState,
    );
    at = sealFrame(buf, view, at, FLAG_BATCH_END, header.seq, at);
    assert(at === HEADER_BATCH_BYTES, 'header batch size');
    return at;
  }

  private async createSegmentFile(
    dir: string,
    name: string,
    data: Uint8Array,
  ): Promise<FileHandle> {
    const tmp = join(dir, name + TMP_SUFFIX);
    const handle = await this.fs.open(tmp, 'create', DURABLE);
    try {
      if (this.preallocate) await handle.allocate(this.segmentBytes);
      await handle.write(data, 0);
      await handle.sync();
      await this.fs.rename(tmp, join(dir, name));
      await this.fs.syncDir(dir);
      return handle;
    } catch (error) {
      await handle.close().catch(() => {});
      throw error;
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** Raft's term and commit index never go back: a hard state older than one saved is a bug. */
function assertNotOlder(next: HardState, previous: HardState): void {
  assert(
    next.term >= previous.term && next.commit >= previous.commit,
    `hard state (term ${next.term}, commit ${next.commit}) saved after (term ${previous.term}, commit ${previous.commit})`,
  );
}

/** Segment handles write and flush a save in one pool job where the file system can. */
const DURABLE: OpenOptions = Object.freeze({ durableWrites: true });

interface CopyFailure {
  stage: 'write' | 'sync';
  cause: unknown;
}

async function writeAndSync(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  if (handle.writeDurable !== undefined) {
    // One pool job instead of write then fdatasync. A failure that may have hit the flush is a
    // failed fdatasync (it poisons the WAL); only one raised before any flush is a write's.
    try {
      await handle.writeDurable(data, position);
    } catch (cause) {
      throw { stage: failedBeforeSync(cause) ? 'write' : 'sync', cause } satisfies CopyFailure;
    }
    return;
  }
  try {
    await handle.write(data, position);
  } catch (cause) {
    throw { stage: 'write', cause } satisfies CopyFailure;
  }
  try {
    await handle.datasync();
  } catch (cause) {
    throw { stage: 'sync', cause } satisfies CopyFailure;
  }
}

function walDirs(options: WalOptions): string[] {
  return options.mirrorDir == null ? [options.dir] : [options.dir, options.mirrorDir];
}

function validateOptions(options: WalOptions): void {
  const bytes = options.segmentBytes ?? SEGMENT_BYTES_DEFAULT;
  if (
    !Number.isSafeInteger(bytes) ||
    bytes < SEGMENT_BYTES_MIN ||
    bytes > SEGMENT_BYTES_OPTION_MAX ||
    bytes % 8 !== 0
  ) {
    throw new StorageError(
      'INVALID_CONFIG',
      `segmentBytes must be a multiple of 8 in [${SEGMENT_BYTES_MIN}, ${SEGMENT_BYTES_OPTION_MAX}], got ${bytes}`,
    );
  }
  for (const [name, id] of [
    ['clusterId', options.clusterId],
    ['memberId', options.memberId],
  ] as const) {
    if (!Number.isSafeInteger(id) || id < 0)
      throw new StorageError('INVALID_CONFIG', `${name} must be a uint, got ${id}`);
  }
  if (options.mirrorDir != null && options.mirrorDir === options.dir) {
    throw new StorageError('INVALID_CONFIG', 'mirrorDir must differ from dir');
  }
}

/** Creates the directory and removes `.tmp` leftovers of a segment creation that crashed. */
async function prepareDir(fs: FileSystem, dir: string): Promise<void> {
  await fs.mkdir(dir);
  await removeTempFiles(fs, dir, '.wal');
}

/** The union of both copies' segment lists, checked for gaps. */
async function listSegments(fs: FileSystem, dirs: readonly string[]): Promise<SegmentInfo[]> {
  const bySeq = new Map<number, SegmentInfo>();
  for (const dir of dirs) {
    for (const name of await fs.readdir(dir)) {
      const parsed = parseSegmentName(name);
      if (parsed === null) continue;
      const other = bySeq.get(parsed.seq);
      if (other !== undefined && other.name !== name) {
        throw corrupt({ file: join(dir, name), offset: 0 }, `copies disagree: ${other.name}`);
      }
      bySeq.set(parsed.seq, { ...parsed, name });
    }
  }
  const segments = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  if (segments.length > SEGMENTS_MAX) {
    throw corrupt({ file: dirs[0]!, offset: 0 }, `${segments.length} segments > ${SEGMENTS_MAX}`);
  }
  for (let i = 1; i < segments.length; i++) {
    if (segments[i]!.seq !== segments[i - 1]!.seq + 1) {
      throw corrupt(
        { file: join(dirs[0]!, segments[i]!.name), offset: 0 },
        `segment ${segments[i - 1]!.seq + 1} is missing`,
      );
    }
  }
  return segments;
}

/** Reads every copy of a segment whole; a copy without the file gets a null image. */
async function readCopies(
  fs: FileSystem,
  dirs: readonly string[],
  segment: SegmentInfo,
): Promise<SegmentImage[]> {
  const copies: SegmentImage[] = [];
  const scratch = new Uint8Array(READ_CHUNK_BYTES);
  for (const dir of dirs) {
    const path = join(dir, segment.name);
    const stat = await fs.stat(path);
    if (stat === null) {
      copies.push({ bytes: null, view: null });
      continue;
    }
    if (stat.sizeBytes > SEGMENT_BYTES_MAX) {
      throw corrupt(
        { file: path, offset: SEGMENT_BYTES_MAX },
        `segment of ${stat.sizeBytes} bytes > ${SEGMENT_BYTES_MAX}`,
      );
    }
    // Read a chunk at a time through one scratch buffer; only chunks holding a nonzero byte are
    // copied in. The rest of `bytes` stays untouched (never faulted in): a segment is mostly a
    // preallocated zero tail, and touching 64 MiB costs a member a quarter second at start-up.
    const bytes = new Uint8Array(stat.sizeBytes);
    let zeroFrom = 0;
    const handle = await fs.open(path, 'read');
    try {
      for (let at = 0; at < stat.sizeBytes; at += READ_CHUNK_BYTES) {
        const chunk = scratch.subarray(0, Math.min(READ_CHUNK_BYTES, stat.sizeBytes - at));
        const n = await handle.read(chunk, at);
        assert(n === chunk.length, `short read of ${path}`);
        const last = nonZeroEnd(chunk, 0);
        if (last === 0) continue;
        bytes.set(chunk.subarray(0, last), at);
        zeroFrom = at + last;
      }
    } finally {
      await handle.close();
    }
    copies.push({ bytes, view: new DataView(bytes.buffer), zeroFrom });
  }
  assert(
    copies.some((c) => c.bytes !== null),
    `segment ${segment.name} listed but found in no copy`,
  );
  return copies;
}

/** The `prevEndOffset` of a segment's header, from the first copy where it verifies; -1 if none. */
function nextPrevEnd(copies: readonly SegmentImage[], seq: number): number {
  for (const { bytes, view } of copies) {
    if (bytes === null) continue;
    const frame = decodeFrame(bytes, view!, 0, seq);
    if (!frame.ok || frame.type !== RecordType.SegmentHeader) continue;
    const header = decodeSegmentHeader(view!, frame.payloadAt, frame.payloadBytes);
    if (header !== null) return header.prevEndOffset;
  }
  return -1;
}

function checkHeader(
  options: WalOptions,
  header: SegmentHeader,
  segment: SegmentInfo,
  prevEnd: number,
  where: StorageErrorLocation,
): void {
  if (header.clusterId !== options.clusterId || header.memberId !== options.memberId) {
    throw new StorageError(
      'WAL_IDENTITY_MISMATCH',
      `${where.file} belongs to cluster ${header.clusterId} member ${header.memberId}, ` +
        `not cluster ${options.clusterId} member ${options.memberId}`,
      { location: where },
    );
  }
  if (header.seq !== segment.seq || header.firstIndex !== segment.firstIndex) {
    throw corrupt(where, `header says segment ${header.seq} from index ${header.firstIndex}`);
  }
  if (prevEnd >= 0 && header.prevEndOffset !== prevEnd) {
    throw corrupt(
      where,
      `previous segment should end at byte ${header.prevEndOffset}, ends at ${prevEnd}`,
    );
  }
}

function applyRecord(
  builder: LogBuilder,
  copy: SegmentImage,
  r: VerifiedRecord,
  where: StorageErrorLocation,
): void {
  const view = copy.view!;
  switch (r.type) {
    case RecordType.Entry: {
      const e = decodeEntry(copy.bytes!, view, r.payloadAt, r.payloadBytes);
      if (e === null) throw corrupt(where, 'entry record does not decode');
      builder.entry(e, where);
      return;
    }
    case RecordType.HardState: {
      const h = decodeHardState(view, r.payloadAt, r.payloadBytes);
      if (h === null) throw corrupt(where, 'hard state record does not decode');
      builder.hard(h);
      return;
    }
    case RecordType.Snapshot: {
      const s = decodeSnapshot(view, r.payloadAt, r.payloadBytes);
      if (s === null) throw corrupt(where, 'snapshot record does not decode');
      builder.marker(s, where);
      return;
    }
    case RecordType.SegmentHeader:
      throw corrupt(where, 'segment header in the middle of a segment');
  }
}

/**
 * Fills every run of missing entries through the repair hook (protocol-aware recovery), checking
 * each answer (indexes, terms around the run, limits) again here. Refuses (WAL_CORRUPT) when
 * entries are missing and no hook can fetch them.
 */
async function fetchMissing(
  options: WalOptions,
  builder: LogBuilder,
): Promise<{ firstIndex: number; lastIndex: number }[]> {
  const fetched: { firstIndex: number; lastIndex: number }[] = [];
  const missing = builder.missing();
  if (missing.length === 0) return fetched;
  const damage = builder.damage[0]!.where;
  const commitIndex = builder.hardState.commit;
  const hook = options.repair?.fetchCommitted;
  if (hook === undefined) {
    const first = missing[0]!;
    throw corrupt(
      damage,
      `damaged in every copy; committed entries ${first.firstIndex}..${missing.at(-1)!.lastIndex} ` +
        `(commit ${commitIndex}) could be fetched from peers, but no peer repair is configured`,
    );
  }
  for (const range of missing) {
    assert(range.lastIndex <= commitIndex, 'only committed entries are fetched');
    const request: WalFetchRequest = { ...range, commitIndex, damage };
    const check = (entries: readonly Entry[]): string | null =>
      checkFetched(request, builder.hardState.term, entries);
    const entries = await hook.call(options.repair, request, check);
    const wrong = check(entries);
    if (wrong !== null) {
      throw corrupt(damage, `entries ${range.firstIndex}..${range.lastIndex} from peers: ${wrong}`);
    }
    builder.fill(range, entries);
    fetched.push({ firstIndex: range.firstIndex, lastIndex: range.lastIndex });
  }
  assert(builder.missing().length === 0, 'every missing entry was fetched');
  return fetched;
}

/**
 * What is wrong with `entries` as the committed entries of `request`, or null. Committed entries
 * continue the log around the hole: indexes exactly firstIndex..lastIndex, terms non-decreasing
 * from the entry before through the entry after, none above the current term.
 */
export function checkFetched(
  request: MissingRange,
  currentTerm: number,
  entries: readonly Entry[],
): string | null {
  const want = request.lastIndex - request.firstIndex + 1;
  if (entries.length !== want) return `${entries.length} entries, expected ${want}`;
  let term = request.prevTerm;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const index = request.firstIndex + i;
    if (e.index !== index) return `entry ${i} has index ${e.index}, expected ${index}`;
    if (!Number.isSafeInteger(e.term) || e.term < term) {
      return `entry ${index} has term ${e.term}, below the term ${term} before it`;
    }
    if (e.term > currentTerm)
      return `entry ${index} has term ${e.term} > current term ${currentTerm}`;
    if (e.type !== 0 && e.type !== 1) return `entry ${index} has type ${e.type}`;
    if (e.data.length > ENTRY_DATA_BYTES_MAX) return `entry ${index} is over the size limit`;
    term = e.term;
  }
  if (request.nextTerm !== null && term > request.nextTerm) {
    return `entry ${request.lastIndex} has term ${term} > term ${request.nextTerm} of the entry after`;
  }
  return null;
}

async function patchFile(
  fs: FileSystem,
  path: string,
  bytes: Uint8Array,
  offset: number,
): Promise<void> {
  const handle = await fs.open(path, 'write');
  try {
    await handle.write(bytes, offset);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

async function unlinkIfExists(fs: FileSystem, path: string): Promise<void> {
  if ((await fs.stat(path)) !== null) await fs.unlink(path);
}
