/**
 * The storage under the MVCC store, as etcd's backend (bbolt) is: named buckets of byte keys to
 * byte values, read directly and written in atomic transactions. Two implementations: in-memory
 * (deterministic, for the simulator and tests) and LMDB (durable).
 *
 * Contract: a `write` is all or nothing (if `fn` throws, nothing of it remains); reads inside it
 * see its own writes; when it returns, the transaction is committed (durable for LMDB unless
 * opened with `durable: false`). Bytes handed out are the caller's to keep; bytes passed in
 * are not retained by reference.
 */
export const BUCKETS = ['key', 'meta'] as const;
/** `key`: revision -> KeyValue (etcd's "key" bucket); `meta`: applied index, compact revision. */
export type Bucket = (typeof BUCKETS)[number];

/** Visits one entry; return false to stop the scan. */
export type ScanVisitor = (key: Uint8Array, value: Uint8Array) => boolean;

export interface BackendReader {
  get(bucket: Bucket, key: Uint8Array): Uint8Array | undefined;
  /** Entries with start <= key < end (end null = to the last key), ascending by bytes. */
  scan(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void;
}

export interface WriteTx extends BackendReader {
  put(bucket: Bucket, key: Uint8Array, value: Uint8Array): void;
  delete(bucket: Bucket, key: Uint8Array): void;
}

/** A pinned point-in-time view; call `release` when done. */
export interface ReadView extends BackendReader {
  /**
   * `scan` without the copies `scan` makes for its caller: key and value may be the backend's
   * own buffers, valid only during the visit (copy what you keep). For packing a snapshot.
   */
  scanViews(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void;
  release(): void;
}

export interface Backend extends BackendReader {
  readonly kind: 'memory' | 'lmdb';
  /**
   * `scan` without copies: key and value are views into the backend's own buffers, valid only
   * during the visit (copy what you keep), and the visitor must not read the backend. For one
   * pass over a whole bucket, such as rebuilding the key index on open.
   */
  scanViews(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void;
  write<T>(fn: (tx: WriteTx) => T): T;
  /** A consistent view that later writes do not change (for snapshots). */
  readView(): ReadView;
  close(): Promise<void>;
}
