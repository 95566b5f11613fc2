/**
 * The MVCC store (etcd's server/storage/mvcc kvstore.go + kvstore_txn.go): revisioned key-value
 * history over a Backend, with the key index in memory.
 *
 * - One main revision per write transaction that changes something; one sub revision per change.
 *   A fresh store is at revision 1 (etcd's), so the first write is revision 2.
 * - Every write transaction also records the Raft index it applies (`appliedIndex`) in the same
 *   backend transaction, so after a crash the store and its applied index agree.
 * - Compaction runs inside the applying transaction for the index and the compact revision;
 *   the records it drops are deleted there too when they are few, and otherwise afterwards in
 *   batches of COMPACT_BATCH_RECORDS, each its own backend transaction (`compactStep`), as etcd
 *   defers its physical compaction: a compaction of 100,000 records held every member's loop
 *   for a quarter second. `scheduled_compact_rev` ahead of `finished_compact_rev` in the meta
 *   bucket says a compaction's deletes are not all done; open finishes them (etcd's rule).
 *
 * The key index is rebuilt from the key bucket on open (as etcd does) rather than persisted: the
 * backend stays the single source of truth, so no crash can leave two structures disagreeing,
 * and the cost — one scan of the history — is bounded by compaction.
 *
 * Invariants: compactMainRev <= currentRev; the key index describes exactly the backend's key
 * bucket, except for the records of a compaction still being deleted (`compactPending`; all
 * below compactMainRev, so no read reaches them: reads go through the index). A backend failure
 * after the index changed leaves them apart, so the store then refuses all further use
 * (`failed`), as etcd panics on backend errors.
 */
import { crc32c } from '@node-rs/crc32';
import { assert, assertUint } from '../../util/assert.js';
import { bytesEqual } from '../../util/bytes.js';
import {
  type Backend,
  type BackendReader,
  BUCKETS,
  type Bucket,
  type ReadView,
  type WriteTx,
} from '../backend/backend.js';
import { KvError } from '../errors.js';
import {
  type CommitSubscription,
  EventType,
  type KeyRange,
  type KeyValue,
  type KvEvent,
  type LeaseAttachments,
  type LeaseId,
  NO_LEASE,
  type WatchableStore,
} from '../types.js';
import { bytesToKey, bytesToKeyAt, keyToBytes, rangeEndKey, scratchBytes } from './bytes.js';
import { etcdRevisionKey, etcdStoredValue } from './etcd-codec.js';
import type { KeyIndex } from './key-index.js';
import {
  decodeKeyValue,
  encodeKeyValueScratch,
  newKeyValueHeader,
  readKeyValueHeader,
} from './kv-codec.js';
import {
  bytesToRevision,
  isTombstone,
  MARKED_REVISION_BYTES,
  REVISION_BYTES,
  type Revision,
  readU64,
  revisionToBytes,
  writeRevisionKey,
  writeU64,
  writeU64Bytes,
} from './revision.js';
import { type KeyRevision, TreeIndex, TreeIndexLoader } from './tree-index.js';

// Reused for every revision key and applied index the store writes or looks up: backends copy
// what they store and read keys only during the call, and the apply path runs one at a time.
const revisionKeyScratch = scratchBytes(REVISION_BYTES);
const tombstoneKeyScratch = scratchBytes(MARKED_REVISION_BYTES);
const appliedIndexScratch = scratchBytes(8);

/** The backend key of a revision, in a reused buffer valid until the next call. */
function scratchRevisionKey(rev: Revision, tombstone: boolean): Uint8Array {
  return writeRevisionKey(tombstone ? tombstoneKeyScratch : revisionKeyScratch, rev.main, rev.sub);
}

const META_APPLIED_INDEX = new TextEncoder().encode('consistent_index');
/** The compaction whose deletes are all done (etcd snapshots and the simulator read it too). */
export const META_COMPACT_REVISION = new TextEncoder().encode('finished_compact_rev');
/** The last compaction applied; ahead of META_COMPACT_REVISION while its deletes run. */
export const META_SCHEDULED_COMPACT_REVISION = new TextEncoder().encode('scheduled_compact_rev');
/**
 * Records a compaction deletes inside its applying transaction at most; past it, in batches of
 * this many per backend transaction (etcd's default compaction batch limit, 1,000).
 */
export const COMPACT_BATCH_RECORDS = 1000;

/** Bugs of the store, for the simulator to catch (never in production). */
export type StoreBugName =
  /** Open ignores a compaction whose deletes did not all run: their records stay for good. */
  'compaction-forgets-pending';
const KEY_BUCKET_NAME = new TextEncoder().encode('key');
const BUCKET_NAMES: Readonly<Record<Bucket, Uint8Array>> = {
  key: KEY_BUCKET_NAME,
  meta: new TextEncoder().encode('meta'),
};
/** etcd's store starts at revision 1 and "no compaction yet" is -1. */
const REVISION_INITIAL = 1;
const COMPACT_REVISION_NONE = -1;

/** What an mvcc-level range returns (etcd's RangeResult). */
export interface RangeResult {
  readonly kvs: KeyValue[];
  /** Matching keys at the read revision, regardless of limit. */
  readonly count: number;
  /** The transaction's revision, which the response header carries. */
  readonly rev: number;
}

export interface RangeOptions {
  /** 0 = no limit. */
  readonly limit: number;
  /** <= 0 = the transaction's revision. */
  readonly rev: number;
  readonly countOnly: boolean;
}

const RANGE_ALL: RangeOptions = { limit: 0, rev: 0, countOnly: false };

/** The read side of a transaction (etcd's TxnRead). */
export interface TxnRead {
  /** The revision reads see by default. */
  rev(): number;
  /** The oldest revision still readable (the compact revision; -1 if never compacted). */
  firstRev(): number;
  range(key: Uint8Array, rangeEnd: Uint8Array, options?: RangeOptions): RangeResult;
}

/** The write side (etcd's TxnWrite). Writes are visible to later reads of the same txn. */
export interface TxnWrite extends TxnRead {
  /** Returns the revision of the write. */
  put(key: Uint8Array, value: Uint8Array, lease: LeaseId): number;
  /** Returns [deleted, header revision]. */
  deleteRange(key: Uint8Array, rangeEnd: Uint8Array): [number, number];
  /** Number of changes so far. */
  changes(): number;
  /**
   * Side state of the layers above (lease table, member registry) kept in the meta bucket, in
   * the same backend transaction as the entry's effects and applied index. Keys must start with
   * EXTENSION_META_PREFIX; they change no revision.
   */
  putMeta(key: Uint8Array, value: Uint8Array): void;
  deleteMeta(key: Uint8Array): void;
}

/** The meta-bucket key prefix reserved for side state of the layers above the store. */
export const EXTENSION_META_PREFIX = new TextEncoder().encode('x:');

export function isExtensionMetaKey(key: Uint8Array): boolean {
  return (
    key.length > EXTENSION_META_PREFIX.length &&
    key[0] === EXTENSION_META_PREFIX[0] &&
    key[1] === EXTENSION_META_PREFIX[1]
  );
}

export interface KvHash {
  /** CRC32C over the key bucket: every revision up to `revision`, in revision order (KvHasher). */
  readonly hash: number;
  readonly revision: number;
  readonly compactRevision: number;
}

type LeaseOp = { attach: boolean; id: LeaseId; key: Uint8Array };
type CommitListener = (revision: number, events: readonly KvEvent[]) => void;

interface Subscriber {
  readonly listener: CommitListener;
  readonly prevKvWanted: (() => boolean) | null;
}

export class MvccStore implements WatchableStore {
  /** Replaced once, by `restore`. */
  private index = new TreeIndex();
  private currentRev = REVISION_INITIAL;
  private compactMainRev = COMPACT_REVISION_NONE;
  /** The compaction whose deletes are all done (META_COMPACT_REVISION). */
  private finishedCompactRev = COMPACT_REVISION_NONE;
  /** Backend keys of records compacted away but not yet deleted, and where the next batch starts. */
  private compactPending: CompactionRecords | null = null;
  private applied = 0;
  private writing = false;
  /** The open backend transaction of a `batch`, which `write`s join. */
  private batchTx: WriteTx | null = null;
  /** Committed-to-be write transactions whose effects wait for the backend commit. */
  private committing: { revision: number; txn: StoreTxnWrite }[] = [];
  private failed: unknown = null;
  private readonly subscribers = new Set<Subscriber>();

  private constructor(
    readonly backend: Backend,
    private readonly lessor: LeaseAttachments,
    private readonly compactBatchRecords: number,
    private readonly bugs: ReadonlySet<StoreBugName>,
  ) {
    assert(
      Number.isInteger(compactBatchRecords) && compactBatchRecords > 0,
      'a compaction batch holds a record or more',
    );
  }

  /**
   * Opens a store over a backend, rebuilding the key index from its key bucket.
   * `compactBatchRecords`: see COMPACT_BATCH_RECORDS (the simulator makes it small).
   */
  static open(
    backend: Backend,
    lessor: LeaseAttachments,
    compactBatchRecords = COMPACT_BATCH_RECORDS,
    bugs: ReadonlySet<StoreBugName> = new Set(),
  ): MvccStore {
    const store = new MvccStore(backend, lessor, compactBatchRecords, bugs);
    store.restore();
    return store;
  }

  currentRevision(): number {
    return this.currentRev;
  }

  /** 0 when never compacted, as WatchableStore wants. */
  compactRevision(): number {
    return Math.max(0, this.compactMainRev);
  }

  appliedIndex(): number {
    return this.applied;
  }

  /** The oldest readable revision as etcd's FirstRev: the compact revision, -1 if none yet. */
  firstRevision(): number {
    return this.compactMainRev;
  }

  /** Number of keys with any history in the index (live or not yet compacted away). */
  indexedKeys(): number {
    return this.index.size;
  }

  /** A read transaction at the current revision. */
  read(): TxnRead {
    this.assertIdle();
    const rev = this.currentRev;
    return {
      rev: () => rev,
      firstRev: () => this.compactMainRev,
      range: (key, rangeEnd, options = RANGE_ALL) =>
        this.rangeKeys(this.backend, key, rangeEnd, rev, options),
    };
  }

  /**
   * Runs `fn` as one write transaction applying Raft entry `appliedIndex`: the revision advances
   * by one if `fn` changed anything, the applied index is stored with the data, and listeners
   * hear about the changes once the backend has committed. `fn` must not throw (request errors
   * are results); any exception here leaves the store unusable, as etcd panics.
   */
  write<T>(appliedIndex: number, fn: (txn: TxnWrite) => T): T {
    this.assertUsable();
    assert(!this.writing, 'nested write');
    if (appliedIndex <= this.applied)
      assert(false, `applied index ${appliedIndex} <= ${this.applied}`);
    this.writing = true;
    try {
      if (this.batchTx !== null) return this.writeIn(this.batchTx, appliedIndex, fn);
      const result = this.backend.write((tx) => this.writeIn(tx, appliedIndex, fn));
      this.afterCommit();
      return result;
    } catch (e) {
      this.failed = e;
      throw e;
    } finally {
      this.writing = false;
    }
  }

  /**
   * Runs several `write`s (one per Raft entry) in one backend transaction — one fsync for a
   * whole Ready's committed entries, as etcd's batched backend commits. Listeners hear about
   * every revision once the batch has committed.
   */
  batch<T>(fn: () => T): T {
    this.assertUsable();
    assert(this.batchTx === null && !this.writing, 'batch inside a write or batch');
    try {
      const result = this.backend.write((tx) => {
        this.batchTx = tx;
        try {
          return fn();
        } finally {
          this.batchTx = null;
        }
      });
      this.afterCommit();
      return result;
    } catch (e) {
      this.failed = e;
      throw e;
    }
  }

  private writeIn<T>(tx: WriteTx, appliedIndex: number, fn: (txn: TxnWrite) => T): T {
    const txn = new StoreTxnWrite(this, tx);
    const result = fn(txn);
    // Lease attachments at once, not after the batch commits: a later entry of the same batch
    // (a revoke) must find the keys this one attached. A failed commit fails the store anyway.
    if (txn.leaseOps !== null) {
      for (const op of txn.leaseOps) {
        if (op.attach) this.lessor.attach(op.id, op.key);
        else this.lessor.detach(op.id, op.key);
      }
    }
    // Every entry, even inside a batch (where only the last one's would survive the commit):
    // the state after each entry is then the same whatever the batch boundaries, which the
    // simulator's per-entry digest of the backend checks across members.
    this.recordApplied(tx, appliedIndex);
    this.applied = appliedIndex;
    if (txn.changes() > 0) this.currentRev++;
    assert(this.currentRev === txn.beginRev + (txn.changes() > 0 ? 1 : 0), 'revision step');
    if (txn.events.length > 0) this.committing.push({ revision: this.currentRev, txn });
    return result;
  }

  /**
   * Compacts history below `rev` inside a write (as etcd's Compact + scheduleCompaction, done
   * at once: the whole removal is one backend transaction, so no crash leaves it half done).
   */
  compact(txn: TxnWrite, rev: number): void {
    const tx = (txn as StoreTxnWrite).tx;
    assert(tx !== undefined, 'compact needs a store write transaction');
    this.checkCompactable(rev);
    // The index holds every record of the key bucket (the invariant above), so the revisions it
    // drops are exactly the records to delete: no scan of the history (which took ~45 µs per
    // record, 5 s at 110,000, holding the loop on every member).
    // Appended to the deletes still pending, if any: those must run first.
    const dropped = this.compactPending ?? new CompactionRecords();
    this.index.compact(rev, (r, tombstone) => dropped.push(r, tombstone));
    writeMetaU64(tx, META_SCHEDULED_COMPACT_REVISION, rev);
    this.compactMainRev = rev;
    if (this.compactPending === null && dropped.length <= this.compactBatchRecords) {
      for (let i = 0; i < dropped.length; i++) tx.delete('key', dropped.key(i));
      writeMetaU64(tx, META_COMPACT_REVISION, rev);
      this.finishedCompactRev = rev;
      return;
    }
    // Too many for one go: compactStep deletes them after this transaction, a batch at a time.
    this.compactPending = dropped;
  }

  /** True while a compaction's records wait for `compactStep`. */
  compactionPending(): boolean {
    return this.compactPending !== null;
  }

  /** The backend keys of the records a compaction dropped that are not deleted yet. */
  compactionPendingRecords(): readonly Uint8Array[] {
    const pending = this.compactPending;
    const out: Uint8Array[] = [];
    if (pending === null) return out;
    // Copies: key() is a reused scratch buffer (a Buffer, whose slice() would be a view of it).
    for (let i = pending.next; i < pending.length; i++) out.push(new Uint8Array(pending.key(i)));
    return out;
  }

  /** The compaction whose deletes are all done (< compactRevision() while some wait). */
  finishedCompactRevision(): number {
    return Math.max(0, this.finishedCompactRev);
  }

  /**
   * Deletes the next `maxRecords` records of the pending compaction in one backend transaction,
   * and when none is left records it finished. Runs between writes, never inside one. True while
   * more remain.
   */
  compactStep(maxRecords = this.compactBatchRecords): boolean {
    assert(maxRecords > 0, 'a compaction step deletes something');
    this.assertIdle();
    const pending = this.compactPending;
    if (pending === null) return false;
    const end = Math.min(pending.length, pending.next + maxRecords);
    const rev = this.compactMainRev;
    try {
      this.backend.write((tx) => {
        for (let i = pending.next; i < end; i++) tx.delete('key', pending.key(i));
        if (end === pending.length) writeMetaU64(tx, META_COMPACT_REVISION, rev);
      });
    } catch (error) {
      this.failed = error;
      throw error;
    }
    pending.next = end;
    if (end < pending.length) return true;
    this.compactPending = null;
    this.finishedCompactRev = rev;
    return false;
  }

  /** Throws COMPACTED / FUTURE_REV as etcd's Compact would for `rev`. */
  checkCompactable(rev: number): void {
    if (rev <= this.compactMainRev) throw new KvError('COMPACTED');
    if (rev > this.currentRev) throw new KvError('FUTURE_REV');
  }

  eventsBetween(
    range: KeyRange,
    startRevision: number,
    endRevision: number,
    limit: number,
    withPrevKv: boolean,
  ): readonly KvEvent[] {
    this.assertIdle();
    // Strictly below: the compaction revision's own events are kept (etcd's watch rule).
    if (startRevision < this.compactMainRev) throw new KvError('COMPACTED');
    const events: KvEvent[] = [];
    if (endRevision <= startRevision || limit <= 0) return events;
    const key = bytesToKey(range.key);
    const end = rangeEndKey(range.rangeEnd);
    const from = revisionToBytes({ main: startRevision, sub: 0 });
    const to = revisionToBytes({ main: endRevision, sub: 0 });
    this.backend.scan('key', from, to, (revBytes, value) => {
      const kv = decodeKeyValue(value);
      const k = bytesToKey(kv.key);
      if (!inRange(k, key, end)) return true;
      const type = isTombstone(revBytes) ? EventType.Delete : EventType.Put;
      const prevKv = withPrevKv ? this.valueAt(this.backend, k, kv.modRevision - 1) : null;
      events.push({ type, kv, prevKv });
      return events.length < limit;
    });
    return events;
  }

  /**
   * Calls `listener` once per changed revision after its commit (see `afterCommit`). Events
   * carry prevKv while any subscriber wants it (`CommitSubscription`); otherwise a put does
   * not read its predecessor's value from the backend.
   */
  onCommit(listener: CommitListener, subscription: CommitSubscription = {}): () => void {
    const subscriber: Subscriber = {
      listener,
      prevKvWanted: subscription.prevKvWanted ?? null,
    };
    this.subscribers.add(subscriber);
    return () => {
      this.subscribers.delete(subscriber);
    };
  }

  /** @internal Whether a put's event must carry prevKv (some subscriber wants it now). */
  prevKvWanted(): boolean {
    for (const s of this.subscribers) if (s.prevKvWanted === null || s.prevKvWanted()) return true;
    return false;
  }

  /**
   * etcd's HashKV (HashByRev) at `revision` (0 = the current one): equal on every member at the
   * same applied index. COMPACTED below the compact revision, FUTURE_REV past the current one.
   */
  hashKv(revision = 0): KvHash {
    this.assertIdle();
    const hasher = this.hasher(revision);
    this.backend.scan('key', new Uint8Array(0), hasher.end(), (k, v) => {
      hasher.write(k, v);
      return true;
    });
    return hasher.result();
  }

  private hasher(revision: number): KvHasher {
    const at = this.hashRevision(revision);
    return new KvHasher(
      this.compactRevision(),
      at,
      (key) => this.index.get(bytesToKey(key), at)?.modified ?? null,
    );
  }

  /**
   * `hashKv` over a read view taken now, HASH_BATCH_RECORDS records at a time, awaiting
   * `pause()` between batches: a large store is hashed without holding the event loop.
   */
  async hashKvInSlices(pause: () => Promise<void>, revision = 0): Promise<KvHash> {
    this.assertIdle();
    const hasher = this.hasher(revision);
    const view = this.backend.readView();
    try {
      let start: Uint8Array = new Uint8Array(0);
      for (let batch = 0; ; batch++) {
        assert(batch < HASH_BATCHES_MAX, 'hashKv batches bounded');
        let seen = 0;
        let last: Uint8Array | null = null;
        view.scan('key', start, hasher.end(), (k, v) => {
          hasher.write(k, v);
          last = k;
          return ++seen < HASH_BATCH_RECORDS;
        });
        if (seen < HASH_BATCH_RECORDS || last === null) break;
        start = keyAfter(last);
        await pause();
      }
      return hasher.result();
    } finally {
      view.release();
    }
  }

  /**
   * etcd's Hash (the whole backend, "for testing only" there): CRC32C over every bucket of a read
   * view taken now, in bucket then byte order — each bucket's name, then each key and value —
   * except the applied index (etcd's DefaultIgnores skips its consistent_index too): equal on
   * members holding the same state, whatever entries without effect each applied. In slices as
   * `hashKvInSlices`. The revision is the store's when the view was taken.
   */
  async hashBackendInSlices(
    pause: () => Promise<void>,
  ): Promise<{ readonly hash: number; readonly revision: number }> {
    this.assertIdle();
    const revision = this.currentRev;
    const view = this.backend.readView();
    try {
      let hash = 0;
      for (const bucket of BUCKETS) {
        hash = crc32c(BUCKET_NAMES[bucket], hash);
        let start: Uint8Array = new Uint8Array(0);
        for (let batch = 0; ; batch++) {
          assert(batch < HASH_BATCHES_MAX, 'hash batches bounded');
          let seen = 0;
          let last: Uint8Array | null = null;
          view.scan(bucket, start, null, (k, v) => {
            if (!(bucket === 'meta' && bytesEqual(k, META_APPLIED_INDEX))) {
              hash = crc32c(v, crc32c(k, hash));
            }
            last = k;
            return ++seen < HASH_BATCH_RECORDS;
          });
          if (seen < HASH_BATCH_RECORDS || last === null) break;
          start = keyAfter(last);
          await pause();
        }
      }
      return { hash, revision };
    } finally {
      view.release();
    }
  }

  /** The revision a HashKV of `revision` covers, refused as etcd's hashByRev refuses it. */
  private hashRevision(revision: number): number {
    assertUint(revision, 'hash revision');
    if (revision > 0 && revision < this.compactMainRev) throw new KvError('COMPACTED');
    if (revision > this.currentRev) throw new KvError('FUTURE_REV');
    return revision === 0 ? this.currentRev : revision;
  }

  private recordApplied(tx: WriteTx, appliedIndex: number): void {
    writeU64Bytes(appliedIndexScratch, 0, appliedIndex);
    tx.put('meta', META_APPLIED_INDEX, appliedIndexScratch);
  }

  /**
   * Listeners, in revision order, once the backend has committed (lease attachments were made
   * by each write). A throwing listener is a bug: it fails the store like a backend error (the
   * watchers would otherwise silently miss what follows).
   */
  private afterCommit(): void {
    if (this.committing.length === 0) return;
    const done = this.committing;
    this.committing = [];
    // Those subscribed now; one that unsubscribes from a callback hears nothing more.
    const subscribers = [...this.subscribers];
    for (const { revision, txn } of done) {
      assert(txn.events.length > 0, 'only changed revisions are committing');
      for (const s of subscribers) {
        if (this.subscribers.has(s)) s.listener(revision, txn.events);
      }
    }
  }

  /** @internal The mvcc-level range (etcd's rangeKeys) at transaction revision `curRev`. */
  rangeKeys(
    reader: BackendReader,
    key: Uint8Array,
    rangeEnd: Uint8Array,
    curRev: number,
    options: RangeOptions,
  ): RangeResult {
    const rev = this.readRevisionOf(options, curRev);
    const k = bytesToKey(key);
    const end = rangeEndKey(rangeEnd);
    if (options.countOnly) return { kvs: [], count: this.index.count(k, end, rev), rev: curRev };
    const { revs, total } = this.index.revisions(k, end, rev, options.limit);
    const kvs = revs.map((r) => this.readRevision(reader, r.rev.modified, false));
    return { kvs, count: total, rev: curRev };
  }

  /**
   * `read().range(...)` in slices of at most RANGE_SLICE_KEYS index entries, awaiting `pause()`
   * between them, so that a range over a large store does not hold the caller's event loop for
   * its whole length (etcd answers it from a goroutine). The read revision and a backend view are
   * fixed at the start, so the answer is the one `read().range` would have given then. A
   * compaction past that revision between slices fails the range with COMPACTED: the index no
   * longer says which revision each key had. `sliceKeys`: smaller slices, for tests. `txnRev`:
   * the revision of the read transaction this range is part of (a read-only txn's ranges all read
   * at the revision its compares saw), the current one by default.
   */
  async rangeInSlices(
    key: Uint8Array,
    rangeEnd: Uint8Array,
    options: RangeOptions,
    pause: () => Promise<void>,
    sliceKeys = RANGE_SLICE_KEYS,
    txnRev = this.currentRev,
  ): Promise<RangeResult> {
    assert(sliceKeys > 0 && sliceKeys <= RANGE_SLICE_KEYS, 'slice size in bounds');
    assert(txnRev <= this.currentRev, 'a transaction revision the store has reached');
    this.assertIdle();
    const curRev = txnRev;
    const end = rangeEndKey(rangeEnd);
    // One key: one step, as `read().range`.
    if (end === null) return this.rangeKeys(this.backend, key, rangeEnd, curRev, options);
    const rev = this.readRevisionOf(options, curRev);
    const keep = options.countOnly
      ? 0
      : options.limit > 0
        ? options.limit
        : Number.POSITIVE_INFINITY;
    const revs: KeyRevision[] = [];
    const kvs: KeyValue[] = [];
    let total = 0;
    let view: ReadView | null = null;
    try {
      let start: string | null = bytesToKey(key);
      for (let slice = 0; start !== null; slice++) {
        assert(slice < RANGE_SLICES_MAX, 'range slices bounded');
        if (slice > 0) {
          view ??= this.backend.readView(); // pinned before the first pause: later writes unseen
          await pause();
          if (rev < this.compactMainRev) throw new KvError('COMPACTED');
        }
        const step = this.index.revisionsSlice(start, end, rev, sliceKeys, keep, revs);
        total += step.counted;
        const reader: BackendReader = view ?? this.backend;
        for (let i = kvs.length; i < revs.length; i++) {
          kvs.push(this.readRevision(reader, revs[i]!.rev.modified, false));
        }
        start = step.next;
      }
    } finally {
      view?.release();
    }
    return { kvs, count: total, rev: curRev };
  }

  /** The revision a range reads at (its own, or the transaction's): FUTURE_REV, COMPACTED. */
  private readRevisionOf(options: RangeOptions, curRev: number): number {
    if (options.rev > curRev) throw new KvError('FUTURE_REV');
    const rev = options.rev <= 0 ? curRev : options.rev;
    if (rev < this.compactMainRev) throw new KvError('COMPACTED');
    return rev;
  }

  /** @internal The key's KeyValue at `atRev`, or null. */
  valueAt(reader: BackendReader, key: string, atRev: number): KeyValue | null {
    if (atRev <= 0) return null;
    const r = this.index.get(key, atRev);
    return r === null ? null : this.readRevision(reader, r.modified, false);
  }

  /** @internal `known`: the key's index entry if the caller has it. */
  indexPut(key: string, rev: Revision, lease: LeaseId, known: KeyIndex | undefined): void {
    this.index.put(key, rev, lease, known);
  }

  /** @internal The key's history in the index (live or not), if it has any. */
  keyIndex(key: string): KeyIndex | undefined {
    return this.index.keyIndex(key);
  }

  /** @internal `known`: the key's index entry if the caller has it. */
  indexTombstone(key: string, rev: Revision, known: KeyIndex | undefined): void {
    this.index.tombstone(key, rev, known);
  }

  /** @internal The index entries of the keys live at `atRev` in the range. */
  liveKeyIndexes(key: Uint8Array, rangeEnd: Uint8Array, atRev: number): KeyIndex[] {
    return this.index.liveKeyIndexes(bytesToKey(key), rangeEndKey(rangeEnd), atRev);
  }

  private readRevision(reader: BackendReader, rev: Revision, tombstone: boolean): KeyValue {
    const bytes = reader.get('key', scratchRevisionKey(rev, tombstone));
    if (bytes === undefined)
      assert(false, `index points at missing revision ${rev.main}.${rev.sub}`);
    return decodeKeyValue(bytes);
  }

  /**
   * Rebuilds the index and counters from the backend (etcd's store.restore). One pass over the
   * key bucket through views (`scanViews`), reading each record's header in place: the index
   * needs the key, revision, creation, version and lease, never the value, so a restart costs
   * per record one key string and the index's own entries, not a decoded copy of the history.
   */
  private restore(): void {
    let maxRev = 0;
    const header = newKeyValueHeader();
    // Keys some put attached to a lease: their live lease is re-attached after the scan.
    const leased = new Set<string>();
    const index = new TreeIndexLoader();
    this.backend.scanViews('key', new Uint8Array(0), null, (revBytes, value) => {
      const rev = bytesToRevision(revBytes);
      readKeyValueHeader(value, header);
      const k = bytesToKeyAt(value, header.keyStart, header.keyEnd);
      if (isTombstone(revBytes)) {
        // A tombstone without its put is one kept at the compaction revision (key-index.ts).
        if (index.keyIndex(k)?.isLive() === true) index.tombstone(k, rev);
        else index.restoreTombstone(k, rev);
      } else {
        index.restorePut(k, rev, header.createRevision, header.version, header.lease);
        if (header.lease !== NO_LEASE) leased.add(k);
      }
      if (rev.main > maxRev) maxRev = rev.main;
      return true;
    });
    this.index = index.finish();
    this.finishedCompactRev = readMetaU64(this.backend, META_COMPACT_REVISION) ?? -1;
    const scheduled = readMetaU64(this.backend, META_SCHEDULED_COMPACT_REVISION) ?? -1;
    this.compactMainRev = Math.max(this.finishedCompactRev, scheduled);
    this.applied = readMetaU64(this.backend, META_APPLIED_INDEX) ?? 0;
    this.currentRev = Math.max(REVISION_INITIAL, maxRev, this.compactMainRev);
    this.compactPending = null;
    // INJECTED BUG compaction-forgets-pending: the leftover records stay in the key bucket.
    const forget = this.bugs.has('compaction-forgets-pending');
    if (scheduled > this.finishedCompactRev && !forget) {
      // A compaction whose deletes did not all happen before the stop: the index was rebuilt
      // from what is left, and compacting it again drops exactly the records still there.
      const records = new CompactionRecords();
      this.index.compact(scheduled, (r, tombstone) => records.push(r, tombstone));
      this.compactPending = records;
    }
    for (const k of leased) {
      const ki = this.index.keyIndex(k);
      if (ki === undefined || !ki.isLive()) continue;
      const lease = ki.lease(); // the latest put's
      if (lease !== NO_LEASE && this.lessor.exists(lease)) this.lessor.attach(lease, keyToBytes(k));
    }
  }

  /**
   * Reads outside a write go to the backend's committed state, so they must not run while a
   * write has changed the index but not yet committed (e.g. from a listener inside a batch).
   */
  private assertIdle(): void {
    this.assertUsable();
    assert(!this.writing && this.batchTx === null, 'read of the store inside its own write');
  }

  private assertUsable(): void {
    if (this.failed !== null) {
      throw new Error('mvcc store failed during a write; reopen it', { cause: this.failed });
    }
  }
}

/** One write transaction (etcd's storeTxnWrite). */
class StoreTxnWrite implements TxnWrite {
  readonly beginRev: number;
  readonly events: KvEvent[] = [];
  /** Lease attachments to change, made when the write ends (null: none, the usual case). */
  leaseOps: LeaseOp[] | null = null;

  constructor(
    private readonly store: MvccStore,
    readonly tx: WriteTx,
  ) {
    this.beginRev = store.currentRevision();
  }

  rev(): number {
    return this.beginRev;
  }

  firstRev(): number {
    return this.store.firstRevision();
  }

  changes(): number {
    return this.events.length;
  }

  range(key: Uint8Array, rangeEnd: Uint8Array, options = RANGE_ALL): RangeResult {
    const rev = this.beginRev + (this.events.length > 0 ? 1 : 0);
    return this.store.rangeKeys(this.tx, key, rangeEnd, rev, options);
  }

  put(key: Uint8Array, value: Uint8Array, lease: LeaseId): number {
    const rev = this.beginRev + 1;
    const k = bytesToKey(key);
    // The predecessor's creation, version and lease come from the key index; its value is read
    // from the backend only when a subscriber wants events' prevKv (a watcher with prev_kv).
    const ki = this.store.keyIndex(k);
    const live = ki?.isLive() === true;
    const createRevision = live ? ki.liveCreatedMain() : rev;
    const version = live ? ki.liveVersion() + 1 : 1;
    const oldLease = live ? ki.lease() : NO_LEASE;
    const prev = live && this.store.prevKvWanted() ? this.store.valueAt(this.tx, k, rev) : null;
    if (prev !== null) {
      assert(
        prev.createRevision === createRevision &&
          prev.version + 1 === version &&
          prev.lease === oldLease,
        'the key index agrees with the stored predecessor',
      );
    }
    const idxRev: Revision = { main: rev, sub: this.events.length };
    const kv: KeyValue = {
      key: key.slice(),
      value: value.slice(),
      createRevision,
      modRevision: rev,
      version,
      lease,
    };
    this.tx.put('key', scratchRevisionKey(idxRev, false), encodeKeyValueScratch(kv));
    this.store.indexPut(k, idxRev, lease, ki);
    this.events.push({ type: EventType.Put, kv, prevKv: prev });
    if (oldLease !== lease) {
      if (oldLease !== NO_LEASE) this.leaseOp(false, oldLease, kv.key);
      if (lease !== NO_LEASE) this.leaseOp(true, lease, kv.key);
    }
    return rev;
  }

  private leaseOp(attach: boolean, id: LeaseId, key: Uint8Array): void {
    this.leaseOps ??= [];
    this.leaseOps.push({ attach, id, key });
  }

  putMeta(key: Uint8Array, value: Uint8Array): void {
    assert(isExtensionMetaKey(key), 'extension meta key without its prefix');
    this.tx.put('meta', key, value);
  }

  deleteMeta(key: Uint8Array): void {
    assert(isExtensionMetaKey(key), 'extension meta key without its prefix');
    this.tx.delete('meta', key);
  }

  deleteRange(key: Uint8Array, rangeEnd: Uint8Array): [number, number] {
    const rrev = this.beginRev + (this.events.length > 0 ? 1 : 0);
    const live = this.store.liveKeyIndexes(key, rangeEnd, rrev);
    const prevWanted = live.length > 0 && this.store.prevKvWanted();
    for (const ki of live) this.delete(ki, prevWanted);
    const n = live.length;
    return [n, n !== 0 || this.events.length > 0 ? this.beginRev + 1 : this.beginRev];
  }

  /**
   * As in put, the deleted value is read from the backend only when a subscriber wants events'
   * prevKv (a watcher with prev_kv): the lease comes from the key index. Reading and decoding
   * every value was 60 % of a DeleteRange over 100,000 keys, which the loop spent in one go.
   */
  private delete(ki: KeyIndex, prevWanted: boolean): void {
    const rev = this.beginRev + 1;
    const k = ki.key;
    assert(ki.isLive(), 'delete of a key that is not live');
    const lease = ki.lease();
    const prev = prevWanted ? this.store.valueAt(this.tx, k, rev) : null;
    if (prevWanted) {
      assert(prev !== null, 'a live key has a stored value');
      assert(prev.lease === lease, 'the key index agrees with the stored predecessor');
    }
    const idxRev: Revision = { main: rev, sub: this.events.length };
    const kv: KeyValue = {
      key: prev?.key ?? keyToBytes(k),
      value: TOMBSTONE_VALUE,
      createRevision: 0,
      modRevision: rev,
      version: 0,
      lease: NO_LEASE,
    };
    this.tx.put('key', scratchRevisionKey(idxRev, true), encodeKeyValueScratch(kv));
    this.store.indexTombstone(k, idxRev, ki);
    this.events.push({ type: EventType.Delete, kv, prevKv: prev });
    if (lease !== NO_LEASE) this.leaseOp(false, lease, kv.key);
  }
}

/**
 * The records a compaction dropped, in plain number arrays (no object per record: a compaction
 * of 100,000 records allocated that many arrays and their GC stalled the loop), and where the
 * next batch starts.
 */
class CompactionRecords {
  private readonly mains: number[] = [];
  private readonly subs: number[] = [];
  private readonly tombstones: boolean[] = [];
  next = 0;

  get length(): number {
    return this.mains.length;
  }

  push(rev: Revision, tombstone: boolean): void {
    this.mains.push(rev.main);
    this.subs.push(rev.sub);
    this.tombstones.push(tombstone);
  }

  /** The backend key of record `i`, in a reused buffer valid until the next call. */
  key(i: number): Uint8Array {
    return scratchRevisionKey({ main: this.mains[i]!, sub: this.subs[i]! }, this.tombstones[i]!);
  }
}

/** Every tombstone's value: one shared empty array (nothing can write into zero bytes). */
const TOMBSTONE_VALUE = new Uint8Array(0);

function inRange(k: string, key: string, end: string | null): boolean {
  if (end === null) return k === key;
  return k >= key && (end === '' || k < end);
}

function writeMetaU64(tx: WriteTx, key: Uint8Array, value: number): void {
  const bytes = new Uint8Array(8);
  writeU64(new DataView(bytes.buffer), 0, value);
  tx.put('meta', key, bytes);
}

function readMetaU64(reader: BackendReader, key: Uint8Array): number | undefined {
  const bytes = reader.get('meta', key);
  if (bytes === undefined) return undefined;
  assert(bytes.length === 8, 'meta value is 8 bytes');
  const n = readU64(new DataView(bytes.buffer, bytes.byteOffset, 8), 0);
  assertUint(n, 'meta value');
  return n;
}

/**
 * etcd's kvHasher (mvcc/hash.go): CRC32C (Castagnoli) of the bucket name "key", then of every
 * stored revision key and KeyValue up to `revision`, in revision order, each in etcd's bytes
 * (etcd-codec.ts: the same history hashes as on etcd). A revision at or below the compact
 * revision counts only when it still holds its key's value at `revision` (etcd's HashByRev
 * keeps only kvindex.Keep(rev) below the compaction), so the hash does not depend on what a
 * compaction has physically removed yet. (etcd also counts every such revision when no key at
 * all is live at `revision`; here they never count.)
 */
export class KvHasher {
  private hash = crc32c(KEY_BUCKET_NAME);

  /** `liveAt(key)`: the revision holding `key`'s value at `revision`, or null (deleted, none). */
  constructor(
    private readonly compactRevision: number,
    private readonly revision: number,
    private readonly liveAt: (key: Uint8Array) => Revision | null = () => null,
  ) {}

  /** Where a scan can stop: the first revision past `revision`. */
  end(): Uint8Array {
    return revisionToBytes({ main: this.revision + 1, sub: 0 });
  }

  write(revisionKey: Uint8Array, value: Uint8Array): void {
    const main = bytesToRevision(revisionKey).main;
    if (main > this.revision) return;
    const tombstone = isTombstone(revisionKey);
    const kv = decodeKeyValue(value);
    if (main <= this.compactRevision) {
      if (tombstone) return;
      const live = this.liveAt(kv.key);
      const rev = bytesToRevision(revisionKey);
      if (live === null || live.main !== rev.main || live.sub !== rev.sub) return;
    }
    const etcdValue = etcdStoredValue(kv, tombstone);
    this.hash = crc32c(etcdValue, crc32c(etcdRevisionKey(revisionKey), this.hash));
  }

  result(): KvHash {
    return { hash: this.hash, revision: this.revision, compactRevision: this.compactRevision };
  }
}

/**
 * Index entries visited per slice of `rangeInSlices`: a few milliseconds of work at most (each
 * kept one costs a backend read and a decode).
 */
const RANGE_SLICE_KEYS = 512;
/** Slices of one range at most: 2^31 keys, beyond any store. */
const RANGE_SLICES_MAX = 2 ** 20;

/** Records hashed per slice of `hashKvInSlices` (a few milliseconds of work). */
const HASH_BATCH_RECORDS = 4096;
/** Slices at most: 2^32 records, far more than any store holds. */
const HASH_BATCHES_MAX = 2 ** 20;

/** The smallest key after `key` in byte order: `key` and a zero byte. */
function keyAfter(key: Uint8Array): Uint8Array {
  const next = new Uint8Array(key.length + 1);
  next.set(key, 0);
  return next;
}
