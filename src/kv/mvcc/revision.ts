/**
 * Revisions as etcd's server/storage/mvcc/revision.go has them: a `main` revision per write
 * transaction and a `sub` revision per change inside it. In the backend a revision is the key of
 * the stored KeyValue, as 16 big-endian bytes (8 main, 8 sub) so that byte order = revision
 * order, plus a trailing 't' byte on a deletion's tombstone (etcd's markedRevBytesLen) so that
 * rebuilding the key index needs no value decoding to tell a delete.
 */
import { assert, assertUint } from '../../util/assert.js';

export interface Revision {
  readonly main: number;
  readonly sub: number;
}

export const REVISION_BYTES = 16;
export const MARKED_REVISION_BYTES = REVISION_BYTES + 1;
export const TOMBSTONE_MARK = 0x74; // 't'
const TWO_POW_32 = 0x1_0000_0000;

export function compareRevision(a: Revision, b: Revision): number {
  return a.main !== b.main ? a.main - b.main : a.sub - b.sub;
}

export function revisionToBytes(rev: Revision, tombstone = false): Uint8Array {
  assertUint(rev.main, 'revision.main');
  assertUint(rev.sub, 'revision.sub');
  const out = new Uint8Array(tombstone ? MARKED_REVISION_BYTES : REVISION_BYTES);
  const view = new DataView(out.buffer);
  writeU64(view, 0, rev.main);
  writeU64(view, 8, rev.sub);
  if (tombstone) out[REVISION_BYTES] = TOMBSTONE_MARK;
  return out;
}

/**
 * Writes the revision key of (main, sub) into `out` (REVISION_BYTES long, or
 * MARKED_REVISION_BYTES for a tombstone): the same bytes as `revisionToBytes`, without
 * allocating, for the apply path's reused scratch keys.
 */
export function writeRevisionKey(out: Uint8Array, main: number, sub: number): Uint8Array {
  assert(
    out.length === REVISION_BYTES || out.length === MARKED_REVISION_BYTES,
    'revision key buffer size',
  );
  writeU64Bytes(out, 0, main);
  writeU64Bytes(out, 8, sub);
  if (out.length === MARKED_REVISION_BYTES) out[REVISION_BYTES] = TOMBSTONE_MARK;
  return out;
}

/** `writeU64` on bytes, without a DataView. */
export function writeU64Bytes(out: Uint8Array, offset: number, n: number): void {
  assertUint(n, 'u64');
  const high = Math.floor(n / TWO_POW_32);
  const low = n >>> 0;
  out[offset] = high >>> 24;
  out[offset + 1] = (high >>> 16) & 0xff;
  out[offset + 2] = (high >>> 8) & 0xff;
  out[offset + 3] = high & 0xff;
  out[offset + 4] = low >>> 24;
  out[offset + 5] = (low >>> 16) & 0xff;
  out[offset + 6] = (low >>> 8) & 0xff;
  out[offset + 7] = low & 0xff;
}

export function bytesToRevision(bytes: Uint8Array): Revision {
  // The message is built only on failure: this runs for every record of a key index rebuild.
  if (bytes.length !== REVISION_BYTES && bytes.length !== MARKED_REVISION_BYTES) {
    assert(false, `revision key of ${bytes.length} bytes`);
  }
  return { main: readU64Bytes(bytes, 0), sub: readU64Bytes(bytes, 8) };
}

export function isTombstone(bytes: Uint8Array): boolean {
  return bytes.length === MARKED_REVISION_BYTES && bytes[REVISION_BYTES] === TOMBSTONE_MARK;
}

/** Writes a safe integer as an unsigned big-endian 64-bit number. */
export function writeU64(view: DataView, offset: number, n: number): void {
  assertUint(n, 'u64');
  view.setUint32(offset, Math.floor(n / TWO_POW_32));
  view.setUint32(offset + 4, n >>> 0);
}

/** `readU64` on bytes, without a DataView (the key index rebuild reads millions). */
export function readU64Bytes(bytes: Uint8Array, offset: number): number {
  const high =
    ((bytes[offset]! << 24) |
      (bytes[offset + 1]! << 16) |
      (bytes[offset + 2]! << 8) |
      bytes[offset + 3]!) >>>
    0;
  const low =
    ((bytes[offset + 4]! << 24) |
      (bytes[offset + 5]! << 16) |
      (bytes[offset + 6]! << 8) |
      bytes[offset + 7]!) >>>
    0;
  const n = high * TWO_POW_32 + low;
  assert(Number.isSafeInteger(n), 'u64 beyond 2^53');
  return n;
}

export function readU64(view: DataView, offset: number): number {
  const n = view.getUint32(offset) * TWO_POW_32 + view.getUint32(offset + 4);
  assert(Number.isSafeInteger(n), 'u64 beyond 2^53');
  return n;
}
