/**
 * The KV state machine that Raft drives: `apply(index, command)` is a deterministic function of
 * the state and the command, so every member that applies the same log holds the same data and
 * the same `hash()`.
 *
 * Exactly-once apply: the applied index is stored in the backend transaction that holds the
 * entry's effects (store.ts). After a crash, replaying the log from any point skips every entry
 * at or below it (`skipped`), so nothing is applied twice and nothing is lost.
 *
 * A request that fails (compacted revision, missing lease, bad request) still consumes its
 * index: the failure is its result, identical on every member.
 */
import { assertUint } from '../util/assert.js';
import type {
  KvRequest,
  KvResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from './api-types.js';
import type { Backend } from './backend/backend.js';
import { isKvError, KvError } from './errors.js';
import { decodeCommand, encodeCommand } from './mvcc/command.js';
import {
  applyPut,
  applyTxn,
  executeCompaction,
  executeDeleteRange,
  executeRange,
  finishRange,
  rangeOptionsOf,
  readTxn,
  readTxnInSlices,
} from './mvcc/execute.js';
import { restoreSnapshot, type SnapshotInfo, snapshotChunks } from './mvcc/snapshot.js';
import { type KvHash, MvccStore, type StoreBugName, type TxnWrite } from './mvcc/store.js';
import { quotaCostBytes } from './quota.js';
import type { LeaseAttachments } from './types.js';
import { checkRequestSize, type KvLimits, kvLimits, validateRequest } from './validate.js';

export interface KvStateMachineOptions {
  readonly lessor: LeaseAttachments;
  readonly limits?: Partial<KvLimits>;
  /** Records a compaction deletes in one backend transaction (default COMPACT_BATCH_RECORDS). */
  readonly compactBatchRecords?: number;
  /** The simulator's injected store bugs (never in production). */
  readonly bugs?: ReadonlySet<StoreBugName>;
}

export type ApplyResult =
  | { readonly kind: 'applied'; readonly response: KvResponse }
  | { readonly kind: 'rejected'; readonly error: KvError }
  /** The entry was applied before (index <= applied index): nothing done. */
  | { readonly kind: 'skipped' };

export interface ApplyEntry {
  readonly index: number;
  readonly command: Uint8Array;
}

export interface KvSnapshot extends SnapshotInfo {
  /** The chunks, lazily, once; the point-in-time view is released when iteration ends. */
  readonly chunks: Iterable<Uint8Array>;
  /** Releases the view if the chunks are never iterated (idempotent). */
  release(): void;
}

export class KvStateMachine {
  readonly store: MvccStore;
  readonly limits: KvLimits;
  private readonly lessor: LeaseAttachments;

  private constructor(backend: Backend, options: KvStateMachineOptions) {
    this.limits = kvLimits(options.limits);
    this.lessor = options.lessor;
    this.store = MvccStore.open(backend, options.lessor, options.compactBatchRecords, options.bugs);
  }

  static open(backend: Backend, options: KvStateMachineOptions): KvStateMachine {
    return new KvStateMachine(backend, options);
  }

  /**
   * Replaces `backend`'s contents with a snapshot and opens a state machine on it. Any state
   * machine previously open on `backend` must be discarded. `beforeOpen` runs between the two:
   * side state kept in the backend (the lease table) is loaded there, so that opening the store,
   * which rebuilds the key index (seconds per million keys), is done once, not again after it.
   */
  static restore(
    backend: Backend,
    chunks: Iterable<Uint8Array>,
    options: KvStateMachineOptions,
    beforeOpen?: () => void,
  ): KvStateMachine {
    const info = restoreSnapshot(backend, chunks);
    beforeOpen?.();
    const sm = new KvStateMachine(backend, options);
    if (sm.appliedIndex() !== info.appliedIndex || sm.store.currentRevision() !== info.revision) {
      throw new KvError('SNAPSHOT_CORRUPT', 'contents disagree with the snapshot header');
    }
    return sm;
  }

  appliedIndex(): number {
    return this.store.appliedIndex();
  }

  /** Validates a request as etcd does before proposing it, and encodes it for the log. */
  encode(req: KvRequest): Uint8Array {
    validateRequest(req, this.limits);
    const bytes = encodeCommand(req);
    checkRequestSize(bytes.length, this.limits);
    return bytes;
  }

  /**
   * `capped`: a NOSPACE alarm is active (replicated state, so the same on every member): a
   * request that would grow the store is refused with NO_SPACE, as etcd's applierV3Capped.
   */
  apply(index: number, command: Uint8Array, capped = false): ApplyResult {
    assertUint(index, 'index');
    if (index <= this.store.appliedIndex()) return { kind: 'skipped' };
    return this.store.write(index, (txn) => this.execute(txn, command, capped));
  }

  /**
   * As `apply`, then `record(txn, result)` in the same write transaction: side state kept with
   * the entry's effects (the request-id table of src/server/dedupe.ts).
   */
  applyRecorded(
    index: number,
    command: Uint8Array,
    capped: boolean,
    record: (txn: TxnWrite, result: ApplyResult) => void,
  ): ApplyResult {
    assertUint(index, 'index');
    if (index <= this.store.appliedIndex()) return { kind: 'skipped' };
    return this.store.write(index, (txn) => {
      const result = this.execute(txn, command, capped);
      record(txn, result);
      return result;
    });
  }

  /** Applies consecutive entries in one backend transaction (one fsync). */
  applyBatch(entries: readonly ApplyEntry[]): ApplyResult[] {
    return this.store.batch(() => entries.map((e) => this.apply(e.index, e.command)));
  }

  /** A local read at the current state (serializable; linearizable once read-index confirms). */
  range(req: RangeRequest): RangeResponse {
    validateRequest({ type: 'range', request: req }, this.limits);
    return executeRange(this.store.read(), req);
  }

  /**
   * `range` in slices, awaiting `pause()` between them (MvccStore.rangeInSlices): for client
   * Ranges, which may cover a whole large store. The same answer `range` gives when called now.
   */
  async rangeInSlices(
    req: RangeRequest,
    pause: () => Promise<void>,
    sliceKeys?: number,
  ): Promise<RangeResponse> {
    validateRequest({ type: 'range', request: req }, this.limits);
    const o = rangeOptionsOf(req);
    const rr = await this.store.rangeInSlices(req.key, req.rangeEnd, o, pause, sliceKeys);
    return finishRange(req, rr);
  }

  /**
   * A read-only txn (isReadOnlyTxn) read locally at the current state, as `range`: etcd serves
   * these after a read barrier, never through the log. Throws what applying it would return.
   */
  readTxn(req: TxnRequest): TxnResponse {
    validateRequest({ type: 'txn', request: req }, this.limits);
    return readTxn(this.store.read(), req);
  }

  /** `readTxn` with its ranges read in slices (readTxnInSlices): for client Txns. */
  readTxnInSlices(
    req: TxnRequest,
    pause: () => Promise<void>,
    sliceKeys?: number,
  ): Promise<TxnResponse> {
    validateRequest({ type: 'txn', request: req }, this.limits);
    return readTxnInSlices(this.store, req, pause, sliceKeys);
  }

  /** etcd's HashKV over the whole key history up to `revision` (0 = current). */
  hash(revision = 0): KvHash {
    return this.store.hashKv(revision);
  }

  /** `hash` in slices, awaiting `pause()` between them (MvccStore.hashKvInSlices). */
  hashInSlices(pause: () => Promise<void>, revision = 0): Promise<KvHash> {
    return this.store.hashKvInSlices(pause, revision);
  }

  snapshot(chunkBytesTarget?: number): KvSnapshot {
    const info = { appliedIndex: this.appliedIndex(), revision: this.store.currentRevision() };
    const view = this.store.backend.readView();
    let used = false;
    const chunks: Iterable<Uint8Array> = {
      [Symbol.iterator]: () => {
        if (used) throw new Error('snapshot chunks can be iterated once');
        used = true;
        return snapshotChunks(view, info, chunkBytesTarget);
      },
    };
    return { ...info, chunks, release: () => view.release() };
  }

  private execute(txn: TxnWrite, command: Uint8Array, capped: boolean): ApplyResult {
    try {
      const req = decodeCommand(command);
      validateRequest(req, this.limits);
      if (capped && quotaCostBytes(req) > 0) throw new KvError('NO_SPACE');
      return { kind: 'applied', response: this.executeRequest(txn, req) };
    } catch (e) {
      // Requests are checked before they write, so a KvError means "nothing changed".
      if (isKvError(e) && txn.changes() === 0) return { kind: 'rejected', error: e };
      throw e;
    }
  }

  private executeRequest(txn: TxnWrite, req: KvRequest): KvResponse {
    switch (req.type) {
      case 'range':
        return { type: 'range', response: executeRange(txn, req.request) };
      case 'put':
        return { type: 'put', response: applyPut(txn, req.request, this.lessor) };
      case 'deleteRange':
        return { type: 'deleteRange', response: executeDeleteRange(txn, req.request) };
      case 'txn':
        return { type: 'txn', response: applyTxn(txn, req.request, this.lessor) };
      case 'compaction':
        return {
          type: 'compaction',
          response: executeCompaction(this.store, txn, req.request.revision),
        };
    }
  }
}
