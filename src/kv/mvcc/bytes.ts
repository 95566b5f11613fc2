/**
 * Keys as strings for ordered in-memory structures: each byte becomes one UTF-16 code unit
 * (latin1), so JavaScript's string order is exactly etcd's unsigned byte order (bytes.Compare),
 * including "a prefix sorts first". Strings are what Map and sorted arrays handle fastest.
 */
import { Buffer } from 'node:buffer';

export function bytesToKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/** `bytesToKey(bytes.subarray(start, end))` without the intermediate views when `bytes` is a Buffer. */
export function bytesToKeyAt(bytes: Uint8Array, start: number, end: number): string {
  if (Buffer.isBuffer(bytes)) return bytes.toString('latin1', start, end);
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');
}

export function keyToBytes(key: string): Uint8Array {
  return new Uint8Array(Buffer.from(key, 'latin1'));
}

/**
 * A range end as etcd's mvcc sees it, after mkGteRange: `null` = the single key `key`;
 * `''` = unbounded (every key >= key); otherwise the exclusive end.
 */
export function rangeEndKey(rangeEnd: Uint8Array): string | null {
  if (rangeEnd.length === 0) return null;
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return '';
  return bytesToKey(rangeEnd);
}

/**
 * A buffer for the apply path to reuse (revision keys, encoded values): a Buffer, which is a
 * Uint8Array, so the LMDB backend passes it to lmdb-js without wrapping it in a new view.
 */
export function scratchBytes(length: number): Uint8Array {
  return Buffer.alloc(length);
}
