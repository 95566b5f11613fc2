/**
 * The LMDB backend (the `lmdb` package): one named database per bucket, binary keys and values,
 * synchronous write transactions (`transactionSync`). LMDB's copy-on-write B+tree gives the
 * all-or-nothing commit the MVCC store relies on to keep the applied index and the data it
 * covers in one transaction.
 *
 * Durability. `durable: true` commits with an fsync (about 0.5 ms each here). A member runs with
 * `durable: false`: the Raft log (the WAL) is the durable record, and the KV store is a cache of
 * it that a restart catches up by replaying the log from the store's applied index (etcd commits
 * bbolt in batches for the same reason). A commit without fsync survives a process crash (it is
 * in the page cache) but a machine crash may lose it, or, on a file system that reorders writes,
 * damage the file (LMDB's MDB_NOSYNC). So the store records, in `tandem-kv-state.json`, the boot
 * it was opened in and whether it was closed cleanly (synced): opened again after an unclean
 * stop in another boot (the machine crashed or rebooted), the store is not trusted — it is
 * emptied (`rebuilt`), and the member restores it from its last snapshot and replays the log.
 *
 * Without fsync the environment is also opened with MDB_WRITEMAP: a commit's pages are written
 * through the memory map instead of by a write() each (measured with bench/kv.ts: a one-entry
 * commit 29 → 12 µs, which every member pays per Ready at low load). After a process crash
 * nothing changes: LMDB never overwrites a live page, the meta page switches last, and the
 * mapped pages are in the page cache. After a machine crash the kernel may have written the
 * mapped pages in any order, so even an order-preserving file system may leave a damaged file
 * (LMDB's docs: NOSYNC keeps ACI only without WRITEMAP); the boot guard above already trusts no
 * store across an unclean stop in another boot. LMDB sizes a mapped file to its whole map
 * (sparse), so the store's size is the end of its last page (`lastPageNumber`), the size the
 * file has without the write map.
 *
 * Defragment (etcd's). LMDB reuses freed pages but never shrinks its file; `defragment` writes
 * a compacted copy (mdb_env_copy2 with MDB_CP_COMPACT, off the event loop) into `defrag/`, syncs
 * it, and swaps it in: the old environment closed, the copy renamed over `data.mdb`, the
 * directory synced, the new file opened, in one synchronous step, so no read meets a closed
 * store. The caller must not write meanwhile (the member pauses its apply). A crash before the
 * rename leaves the old file whole (the partial copy is removed at the next open); after it, the
 * new file is complete and synced. Read views (snapshots, hashes in slices) pin the old
 * environment: the swap waits for them, bounded, then gives up and says so.
 */
import { Buffer } from 'node:buffer';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
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
   * false = commit without fsync (LMDB `noSync`), trusted after an unclean stop only within
   * the same boot (see the header). Safe only when the Raft log is durable and will be replayed,
   * as the applied index is lost with the data it covers. Default true.
   */
  readonly durable?: boolean;
  /** The boot this process runs in (default: Linux's boot id; null where there is none). */
  readonly bootId?: string | null;
}

/** Where `defragment` writes the compacted copy before swapping it in. */
export const DEFRAG_DIR = 'defrag';
const DATA_FILE = 'data.mdb';
/** sizeBytes() reads LMDB's environment info at most this often. */
const SIZE_REFRESH_MS = 100;
/** How long `defragment` waits for open read views before giving up, and how often it looks. */
const DEFRAG_VIEWS_WAIT_MS_MAX = 10_000;
const DEFRAG_VIEWS_POLL_MS = 10;

/** Where a non-durable store records its boot and whether it was closed cleanly. */
export const KV_STATE_FILE = 'tandem-kv-state.json';
const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';

interface KvStateRecord {
  readonly bootId: string | null;
  readonly clean: boolean;
}

/** This machine's boot id (changes at every boot), or null where the OS has none. */
export function currentBootId(): string | null {
  try {
    return readFileSync(BOOT_ID_PATH, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

type Binary = Database<Buffer, Buffer>;

/** The part of lmdb-js's getStats() (mdb_stat, with the free list's for the root) used here. */
interface LmdbTreeStats {
  readonly treeBranchPageCount: number;
  readonly treeLeafPageCount: number;
  readonly overflowPages: number;
}
interface LmdbStats extends LmdbTreeStats {
  readonly pageSize: number;
  readonly free: LmdbTreeStats;
  /** The environment's highest page in use (mdb_env_info's me_last_pgno). */
  readonly lastPageNumber: number;
}
/** Every LMDB file begins with two meta pages. */
const LMDB_META_PAGES = 2;

function treePages(s: LmdbTreeStats): number {
  return s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
}

export class LmdbBackend implements Backend {
  readonly kind = 'lmdb';
  /** Replaced by `defragment` (a new environment over the compacted file). */
  private root: RootDatabase<Buffer, Buffer>;
  private dbs: Record<Bucket, Binary>;
  /** The same databases, read through lmdb-js without copies (`scanViews`). */
  private viewDbs: Record<Bucket, Binary>;
  private inWrite = false;
  private closed = false;
  /** Read views not yet released: the environment must stay open under them. */
  private openViews = 0;
  /** The defragment in progress, which `close` waits for. */
  private defragging: Promise<void> | null = null;
  /** `close` was called: a defragment waiting for read views gives up at once. */
  private closeRequested = false;
  private readonly path: string;
  private readonly durable: boolean;
  private sizeCached = 0;
  private sizeReadAtMs = Number.NEGATIVE_INFINITY;
  private readonly bootId: string | null;
  /**
   * Why the store was emptied at open (a non-durable store after an unclean stop in another
   * boot), or null: the caller restores it from its snapshot and log.
   */
  readonly rebuilt: string | null;

  constructor(options: LmdbBackendOptions) {
    this.path = options.path;
    this.durable = options.durable !== false;
    this.bootId = options.bootId === undefined ? currentBootId() : options.bootId;
    this.rebuilt = this.durable ? null : distrust(options.path, this.bootId);
    if (this.rebuilt !== null) {
      rmSync(join(options.path, DATA_FILE), { force: true });
      rmSync(join(options.path, 'lock.mdb'), { force: true });
    }
    // A defragment interrupted before its swap: the old file is whole, the copy is dropped.
    rmSync(join(options.path, DEFRAG_DIR), { recursive: true, force: true });
    ({
      root: this.root,
      dbs: this.dbs,
      viewDbs: this.viewDbs,
    } = openEnvironment(options.path, this.durable));
    if (!this.durable) writeStateRecord(options.path, { bootId: this.bootId, clean: false });
  }

  get(bucket: Bucket, key: Uint8Array): Uint8Array | undefined {
    this.assertOpen();
    return toBytes(this.dbs[bucket].get(asBuffer(key)));
  }

  scan(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void {
    this.assertOpen();
    scanDb(this.dbs[bucket], start, end, visit, undefined);
  }

  scanViews(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void {
    this.assertOpen();
    // lmdb-js decodes each entry from its one reused read buffer: the views below are of it.
    for (const { key, value } of this.viewDbs[bucket].getRange(rangeOptions(start, end))) {
      if (!visit(key, value)) return;
    }
  }

  write<T>(fn: (tx: WriteTx) => T): T {
    this.assertOpen();
    assert(!this.inWrite, 'nested write transaction');
    this.inWrite = true;
    const tx: WriteTx = {
      get: (bucket, key) => this.get(bucket, key),
      scan: (bucket, start, end, visit) => this.scan(bucket, start, end, visit),
      put: (bucket, key, value) => {
        // Inside transactionSync, put/remove execute synchronously in the open transaction:
        // LMDB copies key and value during the call, so views of the caller's bytes suffice.
        void this.dbs[bucket].put(asBuffer(key), asBuffer(value));
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
    // The view keeps the environment it was opened on, even across a defragment's swap (which
    // waits for every view to be released before it closes that environment).
    const dbs = this.dbs;
    const transaction = this.root.useReadTransaction();
    this.openViews++;
    let released = false;
    const reader: BackendReader = {
      get: (bucket, key) => {
        assert(!released, 'read view used after release');
        return toBytes(dbs[bucket].get(asBuffer(key), { transaction }));
      },
      scan: (bucket, start, end, visit) => {
        assert(!released, 'read view used after release');
        scanDb(dbs[bucket], start, end, visit, transaction);
      },
    };
    return {
      ...reader,
      // Through the plain handles: lmdb-js's view handles (viewDbs) lose their place in a read
      // transaction once a write commits, and the leader writes between a snapshot's slices.
      scanViews: (bucket, start, end, visit) => {
        assert(!released, 'read view used after release');
        const options = { ...rangeOptions(start, end), transaction };
        for (const { key, value } of dbs[bucket].getRange(options)) {
          if (!visit(key, value)) return;
        }
      },
      release: () => {
        if (released) return;
        released = true;
        this.openViews--;
        transaction.done();
      },
    };
  }

  /**
   * Bytes of the store's file up to its last page (etcd's backend Size, which Status and the
   * quota read): the file's size without the write map, which sizes the file to the whole map.
   * Read again at most every SIZE_REFRESH_MS: the quota check asks on every write.
   */
  sizeBytes(): number {
    const nowMs = performance.now();
    // Closed (a scrape after stop): the last size read.
    if (nowMs - this.sizeReadAtMs < SIZE_REFRESH_MS || this.closed) return this.sizeCached;
    const env = this.root.getStats() as LmdbStats;
    this.sizeCached = (env.lastPageNumber + 1) * env.pageSize;
    this.sizeReadAtMs = nowMs;
    return this.sizeCached;
  }

  /**
   * Bytes of the pages holding data: the two meta pages, every tree's branch, leaf and overflow
   * pages (each bucket's, the main database's, the free list's own). The rest of the file is
   * free pages, reused by later writes and given back by `defragment`. Four mdb_stat calls.
   */
  inUseBytes(): number {
    this.assertOpen();
    const stats = [
      this.root.getStats() as LmdbStats,
      ...BUCKETS.map((b) => this.dbs[b].getStats() as LmdbStats),
    ];
    const root = stats[0]!;
    let pages = LMDB_META_PAGES + treePages(root.free);
    for (const s of stats) pages += treePages(s);
    return pages * root.pageSize;
  }

  /**
   * Gives the file's free pages back (see the header). The caller guarantees that no `write`
   * runs until this settles. Rejects, the store unchanged, when read views stay open too long.
   */
  defragment(): Promise<void> {
    this.assertOpen();
    assert(this.defragging === null, 'one defragment at a time');
    const run = this.copyAndSwap();
    this.defragging = run.then(
      () => {},
      () => {},
    );
    return run.finally(() => {
      this.defragging = null;
    });
  }

  private async copyAndSwap(): Promise<void> {
    const copyDir = join(this.path, DEFRAG_DIR);
    rmSync(copyDir, { recursive: true, force: true });
    mkdirSync(copyDir);
    try {
      const writing = this.inWrite;
      assert(!writing, 'defragment during a write');
      await this.root.backup(copyDir, true); // mdb_env_copy2(MDB_CP_COMPACT) in a worker
      const copy = join(copyDir, DATA_FILE);
      fsyncPath(copy, 'r+');
      fsyncPath(copyDir, 'r');
      for (let waitedMs = 0; this.openViews > 0; waitedMs += DEFRAG_VIEWS_POLL_MS) {
        if (waitedMs >= DEFRAG_VIEWS_WAIT_MS_MAX || this.closeRequested) {
          throw new Error(
            'defragment: a snapshot or hash is still being read from the store; try again',
          );
        }
        await new Promise((resolve) => setTimeout(resolve, DEFRAG_VIEWS_POLL_MS));
      }
      assert(!this.inWrite && !this.closed, 'defragment swaps an idle, open store');
      this.swapIn(copy);
    } finally {
      rmSync(copyDir, { recursive: true, force: true });
    }
  }

  /**
   * One synchronous step, so that no read runs between the old environment and the new one:
   * lmdb's close is synchronous when no asynchronous write is pending (the store makes none).
   */
  private swapIn(copy: string): void {
    const closing = this.root.close();
    const status = (this.root as unknown as { status: string }).status;
    assert(status === 'closed', `lmdb closed synchronously (status ${status})`);
    void closing;
    renameSync(copy, join(this.path, DATA_FILE));
    fsyncPath(this.path, 'r');
    ({
      root: this.root,
      dbs: this.dbs,
      viewDbs: this.viewDbs,
    } = openEnvironment(this.path, this.durable));
    this.sizeReadAtMs = Number.NEGATIVE_INFINITY; // the next sizeBytes() sees the smaller file
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closeRequested = true;
    await this.defragging;
    if (this.closed) return;
    this.closed = true;
    if (!this.durable) {
      // Flush every commit, then record the clean stop: the next open trusts the store.
      // mdb_env_sync: lmdb's type definitions omit the method the store class has.
      const env = this.root as unknown as { sync(done: (error?: Error) => void): void };
      await new Promise<void>((resolve, reject) =>
        env.sync((error) => (error ? reject(error) : resolve())),
      );
    }
    await this.root.close();
    if (!this.durable) writeStateRecord(this.path, { bootId: this.bootId, clean: true });
  }

  private assertOpen(): void {
    assert(!this.closed, 'lmdb backend is closed');
  }
}

/**
 * lmdb-js's custom key and value coders (its `keyEncoder` and `encoder` options), which make
 * a database handle hand out views of lmdb-js's reused read buffers: a range read then
 * allocates no copy of each key and value. Only `scanViews` reads through them; nothing is
 * written through them (`encode` exists because lmdb-js wants a pair).
 */
const VIEW_KEYS = {
  writeKey: (key: Uint8Array, target: Uint8Array, start: number): number => {
    target.set(key, start);
    return start + key.length;
  },
  readKey: (source: Uint8Array, start: number, end: number): Uint8Array =>
    source.subarray(start, end),
};
const VIEW_VALUES = {
  encode: (value: Uint8Array): Uint8Array => value,
  // lmdb-js passes its read buffer with the value's size (the buffer is longer).
  decode: (bytes: Uint8Array, size: number = bytes.length): Uint8Array => bytes.subarray(0, size),
};

interface Environment {
  readonly root: RootDatabase<Buffer, Buffer>;
  readonly dbs: Record<Bucket, Binary>;
  readonly viewDbs: Record<Bucket, Binary>;
}

function openEnvironment(path: string, durable: boolean): Environment {
  const root = open<Buffer, Buffer>({
    path,
    keyEncoding: 'binary',
    encoding: 'binary',
    noSync: !durable,
    // Pages through the map (see the header); with fsync LMDB would msync the map, slower.
    useWritemap: !durable,
  });
  const dbs: Partial<Record<Bucket, Binary>> = {};
  const viewDbs: Partial<Record<Bucket, Binary>> = {};
  for (const bucket of BUCKETS) {
    dbs[bucket] = root.openDB<Buffer, Buffer>({
      name: bucket,
      keyEncoding: 'binary',
      encoding: 'binary',
    });
    // lmdb-js's declared options lack the coder hooks its README documents.
    const viewOptions = { name: bucket, keyEncoder: VIEW_KEYS, encoder: VIEW_VALUES };
    viewDbs[bucket] = root.openDB<Buffer, Buffer>(viewOptions as { name: string });
  }
  return {
    root,
    dbs: dbs as Record<Bucket, Binary>,
    viewDbs: viewDbs as Record<Bucket, Binary>,
  };
}

/** fsync of a file ('r+') or a directory ('r'). */
function fsyncPath(path: string, flags: 'r' | 'r+'): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
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
    ...rangeOptions(start, end),
    ...(transaction === undefined ? {} : { transaction }),
  };
  for (const { key, value } of db.getRange(options)) {
    if (!visit(new Uint8Array(key), toBytes(value)!)) return;
  }
}

const FIRST_KEY = Buffer.from([0]);

function rangeOptions(start: Uint8Array, end: Uint8Array | null): { start: Buffer; end?: Buffer } {
  return {
    // LMDB keys are never empty: an empty start means "from the first key", [0]. Explicit, as
    // lmdb-js's own default start depends on the handle's key coder.
    start: start.length === 0 ? FIRST_KEY : asBuffer(start),
    ...(end === null ? {} : { end: asBuffer(end) }),
  };
}

/** A Buffer view of `bytes` (lmdb-js wants Buffers): `bytes` itself when it is one. */
function asBuffer(bytes: Uint8Array): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A plain Uint8Array copy: lmdb may reuse its buffers across reads. */
function toBytes(value: Buffer | undefined): Uint8Array | undefined {
  return value === undefined ? undefined : new Uint8Array(value);
}

/**
 * Why a non-durable store at `path` cannot be trusted, or null when it can: it was not closed
 * cleanly, and it was opened in another boot (or the boot is unknown).
 */
function distrust(path: string, bootId: string | null): string | null {
  const file = join(path, KV_STATE_FILE);
  if (!existsSync(file)) return null; // a new store, or one written with fsync
  let record: KvStateRecord;
  try {
    record = JSON.parse(readFileSync(file, 'utf8')) as KvStateRecord;
  } catch {
    return `${KV_STATE_FILE} is unreadable`;
  }
  if (record.clean) return null;
  if (bootId !== null && record.bootId === bootId) return null; // a process crash: page cache kept
  return bootId === null
    ? 'it was not closed cleanly and this system has no boot id to tell a process crash from a machine crash'
    : 'it was not closed cleanly before the machine restarted';
}

/** Writes the state record with an fsync (the store's commits do not sync it). */
function writeStateRecord(path: string, record: KvStateRecord): void {
  const file = join(path, KV_STATE_FILE);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, JSON.stringify(record));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dir = openSync(path, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
