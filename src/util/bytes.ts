/**
 * Byte-string helpers shared by every layer: etcd's key order (Go's bytes.Compare), equality,
 * concatenation and the end of a prefix range. One copy, so the layers cannot disagree on what
 * order or which range a key is in.
 */
import { Buffer } from 'node:buffer';

/** Unsigned lexicographic comparison, as Go's bytes.Compare (a prefix sorts first). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b); // native, and takes any Uint8Array
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0;
}

/** A new array holding `a` then `b`. */
export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * The end of the range of every key starting with `prefix` (etcd's GetPrefixRangeEnd): the
 * prefix cut after its last byte below 0xff, that byte incremented; [0] (every key from
 * `prefix` on) when there is none. A new array: never a view of `prefix`.
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      const end = Uint8Array.from(prefix.subarray(0, i + 1));
      end[i]! += 1;
      return end;
    }
  }
  return Uint8Array.of(0);
}
