import { Buffer } from 'node:buffer';
import type { KeyRange } from '../types.js';

/** Unsigned byte-wise comparison, as etcd's bytes.Compare. */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

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
  return compareKeys(range.key, range.rangeEnd) >= 0;
}

export function rangeContains(range: KeyRange, key: Uint8Array): boolean {
  if (isSingleKey(range)) return compareKeys(key, range.key) === 0;
  if (compareKeys(key, range.key) < 0) return false;
  return isFromKey(range) || compareKeys(key, range.rangeEnd) < 0;
}

/** A string with one char per byte: a Map key for exact-key lookups. */
export function keyImage(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}
