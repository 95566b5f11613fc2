/**
 * The LMDB backend (the `lmdb` package): one named database per bucket, binary keys and values,
 * synchronous write transactions (`transactionSync`), each committed with an fsync unless
 * `durable` is false. LMDB's copy-on-write B+tree gives the all-or-nothing commit the MVCC
 * store relies on to keep the applied index and the data it covers in one transaction.
 */
import { Buffer } from 'node:buffer';
import { type Database, open, type RootDatabase } from 'lmdb';
import { assert } from '../../util/assert.js';
import {
  type Backend,
  type BackendReader,
  BUCKETS,
  type Bucket,
  type ReadView,
  type ScanVisitor,
  type WriteTx,
} from './backend.js';

export interface LmdbBackendOptions {
  /** Directory of the environment (created if missing). */
  readonly path: string;
  /**
   * false = commit without fsync (LMDB `noSync`): a machine crash may lose the last
   * transactions. Safe only when the Raft log is durable and will be replayed, as the applied
   * index is lost with the data it covers. Default true.
   */
  readonly durable?: boolean;
}

type Binary = Database<Buffer, Buffer>;

export class LmdbBackend implements Backend {
  readonly kind = 'lmdb';
  private readonly root: RootDatabase<Buffer, Buffer>;
  private readonly dbs: Record<Bucket, Binary>;
  private inWrite = false;
  private closed = false;

  constructor(options: LmdbBackendOptions) {
    this.root = open<Buffer, Buffer>({
      path: options.path,
      keyEncoding: 'binary',
      encoding: 'binary',
      noSync: options.durable === false,
    });
    const dbs: Partial<Record<Bucket, Binary>> = {};
    for (const bucket of BUCKETS) {
      dbs[bucket] = this.root.openDB<Buffer, Buffer>({
        name: bucket,
        keyEncoding: 'binary',
        encoding: 'binary',
      });
    }
    this.dbs = dbs as Record<Bucket, Binary>;
  }

  get(bucket: Bucket, key: Uint8Array): Uint8Array | undefined {
    this.assertOpen();
    return toBytes(this.dbs[bucket].get(asBuffer(key)));
  }

  scan(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void {
    this.assertOpen();
    scanDb(this.dbs[bucket], start, end, visit, undefined);
  }

  write<T>(fn: (tx: WriteTx) => T): T {
    this.assertOpen();
    assert(!this.inWrite, 'nested write transaction');
    this.inWrite = true;
    const tx: WriteTx = {
      get: (bucket, key) => this.get(bucket, key),
      scan: (bucket, start, end, visit) => this.scan(bucket, start, end, visit),
      put: (bucket, key, value) => {
        // Inside transactionSync, put/remove execute synchronously in the open transaction.
        void this.dbs[bucket].put(asBuffer(key), Buffer.from(value));
      },
      delete: (bucket, key) => {
        void this.dbs[bucket].remove(asBuffer(key));
      },
    };
    try {
      return this.root.transactionSync(() => fn(tx));
    } finally {
      this.inWrite = false;
    }
  }

  readView(): ReadView {
    this.assertOpen();
    const transaction = this.root.useReadTransaction();
    let released = false;
    const reader: BackendReader = {
      get: (bucket, key) => {
        assert(!released, 'read view used after release');
        return toBytes(this.dbs[bucket].get(asBuffer(key), { transaction }));
      },
      scan: (bucket, start, end, visit) => {
        assert(!released, 'read view used after release');
        scanDb(this.dbs[bucket], start, end, visit, transaction);
      },
    };
    return {
      ...reader,
      release: () => {
        if (released) return;
        released = true;
        transaction.done();
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.root.close();
  }

  private assertOpen(): void {
    assert(!this.closed, 'lmdb backend is closed');
  }
}

function scanDb(
  db: Binary,
  start: Uint8Array,
  end: Uint8Array | null,
  visit: ScanVisitor,
  transaction: ReturnType<RootDatabase['useReadTransaction']> | undefined,
): void {
  const options = {
    // LMDB keys are never empty: an empty start means "from the first key".
    ...(start.length === 0 ? {} : { start: asBuffer(start) }),
    ...(end === null ? {} : { end: asBuffer(end) }),
    ...(transaction === undefined ? {} : { transaction }),
  };
  for (const { key, value } of db.getRange(options)) {
    if (!visit(new Uint8Array(key), toBytes(value)!)) return;
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A plain Uint8Array copy: lmdb may reuse its buffers across reads. */
function toBytes(value: Buffer | undefined): Uint8Array | undefined {
  return value === undefined ? undefined : new Uint8Array(value);
}
