/**
 * The in-memory backend: one ordered map per bucket. Deterministic (no I/O, no clock). A write
 * transaction keeps an undo log so that a throwing transaction leaves no trace, the same
 * all-or-nothing contract LMDB gives.
 */
import { assert } from '../../util/assert.js';
import { bytesToKey } from '../mvcc/bytes.js';
import { SortedMap } from '../mvcc/sorted-map.js';
import {
  type Backend,
  type BackendReader,
  BUCKETS,
  type Bucket,
  type ReadView,
  type ScanVisitor,
  type WriteTx,
} from './backend.js';

interface Entry {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

type Buckets = Record<Bucket, SortedMap<Entry>>;

interface Undo {
  readonly bucket: Bucket;
  readonly key: string;
  readonly previous: Entry | undefined;
}

export class MemoryBackend implements Backend {
  readonly kind = 'memory';
  private buckets: Buckets = newBuckets();
  private undo: Undo[] | null = null;
  private closed = false;

  get(bucket: Bucket, key: Uint8Array): Uint8Array | undefined {
    this.assertOpen();
    return this.buckets[bucket].get(bytesToKey(key))?.value.slice();
  }

  scan(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void {
    this.assertOpen();
    scanMap(this.buckets[bucket], start, end, visit, true);
  }

  scanViews(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor): void {
    this.assertOpen();
    scanMap(this.buckets[bucket], start, end, visit, false);
  }

  write<T>(fn: (tx: WriteTx) => T): T {
    this.assertOpen();
    assert(this.undo === null, 'nested write transaction');
    this.undo = [];
    const tx: WriteTx = {
      get: (bucket, key) => this.get(bucket, key),
      scan: (bucket, start, end, visit) => this.scan(bucket, start, end, visit),
      put: (bucket, key, value) => this.put(bucket, key, value),
      delete: (bucket, key) => this.remove(bucket, key),
    };
    try {
      const result = fn(tx);
      this.undo = null;
      return result;
    } catch (e) {
      this.rollback();
      throw e;
    }
  }

  /**
   * Values are immutable once stored, so a view is a copy of the maps' entry lists: O(entries)
   * pointers, no value bytes.
   */
  readView(): ReadView {
    this.assertOpen();
    assert(this.undo === null, 'read view inside a write transaction');
    const copy = newBuckets();
    for (const bucket of BUCKETS) {
      this.buckets[bucket].scan('', null, (k, entry) => {
        copy[bucket].set(k, entry);
        return true;
      });
    }
    const reader: BackendReader = {
      get: (bucket, key) => copy[bucket].get(bytesToKey(key))?.value.slice(),
      scan: (bucket, start, end, visit) => scanMap(copy[bucket], start, end, visit, true),
    };
    return {
      ...reader,
      scanViews: (bucket, start, end, visit) => scanMap(copy[bucket], start, end, visit, false),
      release: () => {},
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private put(bucket: Bucket, key: Uint8Array, value: Uint8Array): void {
    assert(this.undo !== null, 'put outside a write transaction');
    const k = bytesToKey(key);
    const map = this.buckets[bucket];
    this.undo.push({ bucket, key: k, previous: map.get(k) });
    // Copies (the caller may reuse its buffers): `new Uint8Array(x)` copies even when `x` is a
    // Buffer, whose `slice` would return a view.
    map.set(k, { key: new Uint8Array(key), value: new Uint8Array(value) });
  }

  private remove(bucket: Bucket, key: Uint8Array): void {
    assert(this.undo !== null, 'delete outside a write transaction');
    const k = bytesToKey(key);
    const map = this.buckets[bucket];
    const previous = map.get(k);
    if (previous === undefined) return;
    this.undo.push({ bucket, key: k, previous });
    map.delete(k);
  }

  private rollback(): void {
    const undo = this.undo!;
    this.undo = null;
    for (let i = undo.length - 1; i >= 0; i--) {
      const { bucket, key, previous } = undo[i]!;
      if (previous === undefined) this.buckets[bucket].delete(key);
      else this.buckets[bucket].set(key, previous);
    }
  }

  private assertOpen(): void {
    assert(!this.closed, 'memory backend is closed');
  }
}

function newBuckets(): Buckets {
  return { key: new SortedMap(), meta: new SortedMap() };
}

function scanMap(
  map: SortedMap<Entry>,
  start: Uint8Array,
  end: Uint8Array | null,
  visit: ScanVisitor,
  copy: boolean,
): void {
  map.scan(bytesToKey(start), end === null ? null : bytesToKey(end), (_k, e) =>
    copy ? visit(e.key.slice(), e.value.slice()) : visit(e.key, e.value),
  );
}
