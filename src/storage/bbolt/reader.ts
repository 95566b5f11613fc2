/**
 * Reads a bbolt database file (format.ts) page by page through a `PageSource`, never the whole
 * file at once, checking what it reads: the meta's magic, version and checksum (the newer valid
 * meta wins, as bbolt's), each page's id, type, bounds and element bounds, keys ascending within
 * each bucket, and a bounded tree depth. Damage is a StorageError SNAPSHOT_CORRUPT naming it.
 * Nested buckets (etcd has none) are reported as damage.
 */
import { compareBytes } from '../../util/bytes.js';
import { StorageError } from '../errors.js';
import {
  BRANCH_ELEMENT_BYTES,
  BUCKET_HEADER_BYTES,
  fnv1a64,
  LEAF_ELEMENT_BYTES,
  LEAF_FLAG_BUCKET,
  MAGIC,
  META_CHECKSUM_OFFSET,
  type Meta,
  PAGE_HEADER_BYTES,
  PAGE_SIZE_DEFAULT,
  PAGE_SIZE_MAX,
  PAGE_SIZE_MIN,
  PageFlag,
  TREE_DEPTH_MAX,
  VERSION,
} from './format.js';
import type { BboltEntry } from './writer.js';

/** Bytes of the file: `read(offset, length)` returns exactly that range (shorter at the end). */
export interface PageSource {
  read(offset: number, length: number): Uint8Array;
  readonly sizeBytes: number;
}

/** A PageSource over bytes in memory (tests, small files). */
export function bytesPageSource(bytes: Uint8Array): PageSource {
  return {
    sizeBytes: bytes.length,
    read: (offset, length) => bytes.subarray(offset, offset + length),
  };
}

interface Page {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly flags: number;
  readonly count: number;
}

export class BboltReader {
  readonly meta: Meta;
  private readonly source: PageSource;

  constructor(source: PageSource) {
    this.source = source;
    const first = source.read(0, PAGE_SIZE_DEFAULT);
    const meta0 = parseMeta(first, 0);
    const pageSize = meta0.ok ? meta0.meta.pageSize : PAGE_SIZE_DEFAULT;
    const meta1 = parseMeta(source.read(pageSize, pageSize), 1);
    const valid = [meta0, meta1].flatMap((m) => (m.ok ? [m.meta] : []));
    if (valid.length === 0) {
      throw corrupt(`invalid database: ${meta0.ok ? '' : meta0.why}; ${meta1.ok ? '' : meta1.why}`);
    }
    this.meta = valid.reduce((a, b) => (b.txid > a.txid ? b : a));
    if (this.meta.pgid * this.meta.pageSize > source.sizeBytes) {
      throw corrupt(
        `file of ${source.sizeBytes} bytes shorter than its ${this.meta.pgid} pages of ${this.meta.pageSize}`,
      );
    }
  }

  /** The top-level buckets' names, ascending. */
  bucketNames(): Uint8Array[] {
    const names: Uint8Array[] = [];
    for (const [name] of this.walk(this.meta.rootPgid, null, true)) names.push(name);
    return names;
  }

  /** The entries of the top-level bucket `name`, ascending; null if there is no such bucket. */
  bucket(name: Uint8Array): Iterable<BboltEntry> | null {
    for (const [key, value] of this.walk(this.meta.rootPgid, null, true)) {
      if (compareBytes(key, name) === 0) return this.bucketEntries(name, value);
    }
    return null;
  }

  private bucketEntries(name: Uint8Array, header: Uint8Array): Iterable<BboltEntry> {
    if (header.length < BUCKET_HEADER_BYTES) throw corrupt(`bucket ${text(name)}: short header`);
    const root = readU64(new DataView(header.buffer, header.byteOffset, header.byteLength), 0);
    if (root !== 0) return { [Symbol.iterator]: () => this.walk(root, null, false) };
    const inline = header.subarray(BUCKET_HEADER_BYTES);
    return { [Symbol.iterator]: () => this.walk(0, inline, false) };
  }

  /** In-order entries of the tree at `pgid` (or the inline page), keys checked ascending. */
  private *walk(
    pgid: number,
    inline: Uint8Array | null,
    root: boolean,
  ): Generator<BboltEntry, void, undefined> {
    let prev: Uint8Array | null = null;
    for (const entry of this.walkNode(pgid, inline, root, 0)) {
      if (prev !== null && compareBytes(prev, entry[0]) >= 0) {
        throw corrupt(`keys out of order near page ${pgid}`);
      }
      prev = entry[0];
      yield entry;
    }
  }

  private *walkNode(
    pgid: number,
    inline: Uint8Array | null,
    root: boolean,
    depth: number,
  ): Generator<BboltEntry, void, undefined> {
    if (depth > TREE_DEPTH_MAX) throw corrupt(`tree deeper than ${TREE_DEPTH_MAX} at page ${pgid}`);
    const page = inline === null ? this.page(pgid) : parsePage(inline, 0, 'inline bucket');
    if (page.flags === PageFlag.Branch) {
      if (inline !== null) throw corrupt('inline bucket with a branch page');
      const children: number[] = [];
      for (let i = 0; i < page.count; i++) {
        const at = PAGE_HEADER_BYTES + i * BRANCH_ELEMENT_BYTES;
        children.push(readU64(page.view, at + 8));
      }
      for (const child of children) yield* this.walkNode(child, null, root, depth + 1);
      return;
    }
    if (page.flags !== PageFlag.Leaf) throw corrupt(`page ${pgid}: not a leaf or branch`);
    for (let i = 0; i < page.count; i++) {
      const at = PAGE_HEADER_BYTES + i * LEAF_ELEMENT_BYTES;
      const flags = page.view.getUint32(at, true);
      const pos = page.view.getUint32(at + 4, true);
      const ksize = page.view.getUint32(at + 8, true);
      const vsize = page.view.getUint32(at + 12, true);
      const keyAt = at + pos;
      if (keyAt + ksize + vsize > page.bytes.length || ksize === 0) {
        throw corrupt(`page ${pgid}: element ${i} out of bounds`);
      }
      const isBucket = (flags & LEAF_FLAG_BUCKET) !== 0;
      if (isBucket !== root) {
        throw corrupt(`page ${pgid}: ${root ? 'a plain value among buckets' : 'a nested bucket'}`);
      }
      yield [
        page.bytes.slice(keyAt, keyAt + ksize),
        page.bytes.slice(keyAt + ksize, keyAt + ksize + vsize),
      ];
    }
  }

  private page(pgid: number): Page {
    if (pgid < 2 || pgid >= this.meta.pgid) {
      throw corrupt(`page ${pgid} outside the data pages (2..${this.meta.pgid - 1})`);
    }
    const size = this.meta.pageSize;
    const head = this.source.read(pgid * size, size);
    const first = parsePage(head, pgid, `page ${pgid}`);
    const overflow = new DataView(head.buffer, head.byteOffset).getUint32(12, true);
    if (pgid + overflow >= this.meta.pgid) throw corrupt(`page ${pgid}: overflow past the end`);
    if (overflow === 0) return first;
    return parsePage(this.source.read(pgid * size, (overflow + 1) * size), pgid, `page ${pgid}`);
  }
}

function parsePage(bytes: Uint8Array, id: number, what: string): Page {
  if (bytes.length < PAGE_HEADER_BYTES) throw corrupt(`${what}: short`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const storedId = readU64(view, 0);
  if (storedId !== id) throw corrupt(`${what}: header says page ${storedId}`);
  const flags = view.getUint16(8, true);
  const count = view.getUint16(10, true);
  if (PAGE_HEADER_BYTES + count * LEAF_ELEMENT_BYTES > bytes.length) {
    throw corrupt(`${what}: ${count} elements do not fit`);
  }
  return { bytes, view, flags, count };
}

function parseMeta(
  page: Uint8Array,
  id: number,
): { ok: true; meta: Meta } | { ok: false; why: string } {
  if (page.length < PAGE_HEADER_BYTES + META_CHECKSUM_OFFSET + 8) {
    return { ok: false, why: `meta ${id} truncated` };
  }
  const v = new DataView(page.buffer, page.byteOffset + PAGE_HEADER_BYTES);
  if (v.getUint32(0, true) !== MAGIC) return { ok: false, why: `meta ${id}: bad magic` };
  if (v.getUint32(4, true) !== VERSION) return { ok: false, why: `meta ${id}: version` };
  const sum = fnv1a64(page.subarray(PAGE_HEADER_BYTES, PAGE_HEADER_BYTES + META_CHECKSUM_OFFSET));
  if (v.getBigUint64(META_CHECKSUM_OFFSET, true) !== sum) {
    return { ok: false, why: `meta ${id}: checksum error` };
  }
  const pageSize = v.getUint32(8, true);
  if (pageSize < PAGE_SIZE_MIN || pageSize > PAGE_SIZE_MAX || (pageSize & (pageSize - 1)) !== 0) {
    return { ok: false, why: `meta ${id}: page size ${pageSize}` };
  }
  const meta: Meta = {
    pageSize,
    flags: v.getUint32(12, true),
    rootPgid: readU64(v, 16),
    rootSequence: v.getBigUint64(24, true),
    freelistPgid: v.getBigUint64(32, true),
    pgid: readU64(v, 40),
    txid: v.getBigUint64(48, true),
  };
  if (meta.rootPgid >= meta.pgid || meta.pgid < 4) {
    return { ok: false, why: `meta ${id}: root page ${meta.rootPgid} of ${meta.pgid}` };
  }
  return { ok: true, meta };
}

function readU64(view: DataView, at: number): number {
  const n = view.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`page id ${n} beyond 2^53`);
  return Number(n);
}

function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

function corrupt(detail: string): StorageError {
  return new StorageError('SNAPSHOT_CORRUPT', `bbolt database: ${detail}`);
}
