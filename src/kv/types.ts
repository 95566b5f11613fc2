/**
 * The vocabulary of the key-value state machine, shared by mvcc/, lease/ and watch/ and mapped
 * one-to-one to etcd's mvccpb/etcdserverpb messages at the API edge.
 *
 * Revisions are non-negative safe integers (< 2^53; etcd's are int64, which no real cluster
 * approaches). Lease ids are `bigint` because clients may choose any positive int64.
 */

export type LeaseId = bigint;
export const NO_LEASE: LeaseId = 0n;

/** etcd's mvccpb.KeyValue. */
export interface KeyValue {
  readonly key: Uint8Array;
  /** Revision of the last creation of this key (0 for a key that does not exist). */
  readonly createRevision: number;
  /** Revision of the last modification of this key. */
  readonly modRevision: number;
  /** Number of modifications since creation; reset to 0 (and the key removed) by delete. */
  readonly version: number;
  readonly value: Uint8Array;
  readonly lease: LeaseId;
}

export const EventType = { Put: 0, Delete: 1 } as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

/** etcd's mvccpb.Event. For a delete, `kv` holds the key and the deleting `modRevision`. */
export interface KvEvent {
  readonly type: EventType;
  readonly kv: KeyValue;
  /** Filled only when asked for (watch prev_kv, put/delete prev_kv). */
  readonly prevKv: KeyValue | null;
}

/**
 * A half-open key range as etcd has it: `rangeEnd` empty = the single key; `rangeEnd` = [0] =
 * every key >= key; otherwise [key, rangeEnd). Keys compare as unsigned bytes.
 */
export interface KeyRange {
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
}

/**
 * What the watch hub needs from the MVCC store (mvcc/ implements it, watch/ consumes it).
 * All revisions are the store's main revisions.
 */
export interface WatchableStore {
  /** Current (latest committed) revision. */
  currentRevision(): number;
  /** The revision compacted to; history below it is gone (0 when never compacted). */
  compactRevision(): number;
  /**
   * Events with `startRevision <= modRevision < endRevision` on keys in `range`, in revision
   * order (and sub-revision order within a revision), at most `limit` of them. Each carries
   * `prevKv` when `withPrevKv`. Throws a KvError with code COMPACTED when
   * `startRevision <= compactRevision()`.
   */
  eventsBetween(
    range: KeyRange,
    startRevision: number,
    endRevision: number,
    limit: number,
    withPrevKv: boolean,
  ): readonly KvEvent[];
  /**
   * Subscribe to every committed write transaction: called once per revision, after the
   * transaction is durable in the backend, with its events in order. prevKv is filled while
   * `subscription.prevKvWanted()` says so when the write runs (always, without it): reading
   * it costs the store a backend read per put. Returns an unsubscribe function.
   */
  onCommit(
    listener: (revision: number, events: readonly KvEvent[]) => void,
    subscription?: CommitSubscription,
  ): () => void;
}

/** How a commit listener subscribes (WatchableStore.onCommit). */
export interface CommitSubscription {
  /** Whether the listener needs events' prevKv now; asked on every put, so keep it cheap. */
  readonly prevKvWanted?: () => boolean;
}

/**
 * What mvcc/ needs from the lessor (lease/ implements it): whether a lease exists, and the
 * key attachments, which the lessor tracks so that revoking a lease deletes its keys.
 */
export interface LeaseAttachments {
  exists(id: LeaseId): boolean;
  attach(id: LeaseId, key: Uint8Array): void;
  detach(id: LeaseId, key: Uint8Array): void;
}
