/**
 * bbolt's file format (etcd-io/bbolt v1.3: page.go, node.go, bucket.go, db.go), the parts a
 * whole-file writer and a reader need. All integers are little-endian (bbolt writes its structs
 * in the machine's order; every platform etcd ships on is little-endian).
 *
 *   page      = id u64 | flags u16 | count u16 | overflow u32 | elements…   (16-byte header)
 *               a page of n bytes spans ceil(n / pageSize) pages; overflow = that - 1
 *   meta      = magic u32 | version u32 | pageSize u32 | flags u32 | root bucket (root u64,
 *               sequence u64) | freelist u64 | pgid u64 (high water mark) | txid u64 |
 *               checksum u64 (FNV-1a 64 of the 56 bytes before it)  — at offset 16 of pages 0, 1
 *   leaf elem = flags u32 (1 = the value is a bucket) | pos u32 | ksize u32 | vsize u32
 *   branch    = pos u32 | ksize u32 | pgid u64
 *               pos: from the element's own first byte to its key (value follows the key)
 *   bucket    = root u64 | sequence u64; root 0 = inline: a leaf page follows in the value
 *   freelist  = count ids (count 0xffff: the first u64 holds the real count)
 */
export const PAGE_HEADER_BYTES = 16;
export const LEAF_ELEMENT_BYTES = 16;
export const BRANCH_ELEMENT_BYTES = 16;
export const BUCKET_HEADER_BYTES = 16;
export const META_BYTES = 64;
/** The checksum covers the meta up to (not including) its checksum field. */
export const META_CHECKSUM_OFFSET = 56;

export const PageFlag = { Branch: 0x01, Leaf: 0x02, Meta: 0x04, Freelist: 0x10 } as const;
export const LEAF_FLAG_BUCKET = 0x01;

export const MAGIC = 0xed0cdaed;
export const VERSION = 2;
/** etcd runs bbolt with the OS page size: 4096 on every platform it supports. */
export const PAGE_SIZE_DEFAULT = 4096;
export const PAGE_SIZE_MIN = 1024;
export const PAGE_SIZE_MAX = 65536;
/** bbolt's own limits (bolt_amd64.go, bucket.go). */
export const KEY_BYTES_MAX = 32768;
export const VALUE_BYTES_MAX = 2 ** 31 - 2;
/** Deeper than any tree a 2^48-page file can hold: a deeper walk is a cycle in a damaged file. */
export const TREE_DEPTH_MAX = 64;

export interface Meta {
  readonly pageSize: number;
  readonly flags: number;
  readonly rootPgid: number;
  readonly rootSequence: bigint;
  /** 2^64 - 1 when the freelist is not stored (bbolt's NoFreelistSync, which etcd uses). */
  readonly freelistPgid: bigint;
  /** Pages in use: every page id is below it. */
  readonly pgid: number;
  readonly txid: bigint;
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const U64_MASK = 0xffff_ffff_ffff_ffffn;

/** FNV-1a 64 (Go's hash/fnv New64a), which bbolt's meta checksum is. */
export function fnv1a64(bytes: Uint8Array): bigint {
  let h = FNV_OFFSET;
  for (const b of bytes) h = ((h ^ BigInt(b)) * FNV_PRIME) & U64_MASK;
  return h;
}

export function writeMeta(out: Uint8Array, at: number, meta: Meta): void {
  const v = new DataView(out.buffer, out.byteOffset + at, META_BYTES);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, VERSION, true);
  v.setUint32(8, meta.pageSize, true);
  v.setUint32(12, meta.flags, true);
  v.setBigUint64(16, BigInt(meta.rootPgid), true);
  v.setBigUint64(24, meta.rootSequence, true);
  v.setBigUint64(32, meta.freelistPgid, true);
  v.setBigUint64(40, BigInt(meta.pgid), true);
  v.setBigUint64(48, meta.txid, true);
  v.setBigUint64(META_CHECKSUM_OFFSET, fnv1a64(out.subarray(at, at + META_CHECKSUM_OFFSET)), true);
}

export function writePageHeader(
  out: Uint8Array,
  at: number,
  id: number,
  flags: number,
  count: number,
  overflow: number,
): void {
  const v = new DataView(out.buffer, out.byteOffset + at, PAGE_HEADER_BYTES);
  v.setBigUint64(0, BigInt(id), true);
  v.setUint16(8, flags, true);
  v.setUint16(10, count, true);
  v.setUint32(12, overflow, true);
}

/** Pages a node of `bytes` bytes occupies. */
export function pagesFor(bytes: number, pageSize: number): number {
  return Math.max(1, Math.ceil(bytes / pageSize));
}
