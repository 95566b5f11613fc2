import { Buffer } from 'node:buffer';
import { compareBytes } from '../../util/bytes.js';
import type { KeyRange } from '../types.js';

/** rangeEnd = [0]: every key >= key (etcd's "from key"). */
export function isFromKey(range: KeyRange): boolean {
  return range.rangeEnd.length === 1 && range.rangeEnd[0] === 0;
}

export function isSingleKey(range: KeyRange): boolean {
  return range.rangeEnd.length === 0;
}

/** A range no key can be in (key >= rangeEnd): etcd refuses such watchers. */
export function isEmptyRange(range: KeyRange): boolean {
  if (isSingleKey(range) || isFromKey(range)) return false;
  return compareBytes(range.key, range.rangeEnd) >= 0;
}

export function rangeContains(range: KeyRange, key: Uint8Array): boolean {
  if (isSingleKey(range)) return compareBytes(key, range.key) === 0;
  if (compareBytes(key, range.key) < 0) return false;
  return isFromKey(range) || compareBytes(key, range.rangeEnd) < 0;
}

/** A string with one char per byte: a Map key for exact-key lookups. */
export function keyImage(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}
