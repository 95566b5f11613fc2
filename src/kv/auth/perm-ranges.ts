/**
 * etcd's range permission cache (server/auth/range_perm_cache.go) without an interval tree: a
 * user's granted key permissions, merged into sorted disjoint intervals, one set for read and
 * one for write. A key is permitted iff an interval holds it; a range iff one merged interval
 * covers it whole (etcd's IntervalTree.Contains: the union of the grants must cover it).
 *
 * Encoding of ranges (etcd's rules b1–b3):
 *   rangeEnd empty         a single key: the interval [key, key ‖ 0x00)
 *   rangeEnd = [0x00]      open-ended: [key, ∞)
 *   otherwise              [key, rangeEnd)
 */
import { assert } from '../../util/assert.js';
import { compareBytes } from '../../util/bytes.js';

/** authpb.Permission_Type. */
export const PermType = { Read: 0, Write: 1, ReadWrite: 2 } as const;
export type PermType = (typeof PermType)[keyof typeof PermType];

export interface KeyPermission {
  readonly permType: PermType;
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
}

export function isOpenEnded(rangeEnd: Uint8Array): boolean {
  return rangeEnd.length === 1 && rangeEnd[0] === 0;
}

/** etcd's isValidPermissionRange: a key, and an end that is empty, open-ended or after it. */
export function isValidPermissionRange(key: Uint8Array, rangeEnd: Uint8Array): boolean {
  if (key.length === 0) return false;
  if (rangeEnd.length === 0 || isOpenEnded(rangeEnd)) return true;
  return compareBytes(key, rangeEnd) < 0;
}

/** The key right after `key` (key ‖ 0x00): a single key's interval ends there. */
function successor(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1);
  out.set(key, 0);
  return out;
}

/** [begin, end); end null is unbounded. */
interface Interval {
  readonly begin: Uint8Array;
  readonly end: Uint8Array | null;
}

function permInterval(key: Uint8Array, rangeEnd: Uint8Array): Interval {
  if (rangeEnd.length === 0) return { begin: key, end: successor(key) };
  if (isOpenEnded(rangeEnd)) return { begin: key, end: null };
  return { begin: key, end: rangeEnd };
}

/** 1 when a's end is past b's (null is ∞). */
function compareEnds(a: Uint8Array | null, b: Uint8Array | null): number {
  if (a === null) return b === null ? 0 : 1;
  if (b === null) return -1;
  return compareBytes(a, b);
}

/** Sorted, disjoint, non-adjacent intervals: their union is the set of permitted keys. */
export class IntervalSet {
  private constructor(private readonly intervals: readonly Interval[]) {}

  static of(ranges: readonly { key: Uint8Array; rangeEnd: Uint8Array }[]): IntervalSet {
    const sorted = ranges
      .map((r) => permInterval(r.key, r.rangeEnd))
      .filter((i) => i.end === null || compareBytes(i.begin, i.end) < 0)
      .sort((a, b) => compareBytes(a.begin, b.begin));
    const merged: Interval[] = [];
    for (const next of sorted) {
      const last = merged[merged.length - 1];
      // Touching intervals merge too: [a, b) ∪ [b, c) covers [a, c).
      if (last !== undefined && (last.end === null || compareBytes(next.begin, last.end) <= 0)) {
        if (compareEnds(next.end, last.end) > 0)
          merged[merged.length - 1] = { ...last, end: next.end };
        continue;
      }
      merged.push(next);
    }
    return new IntervalSet(merged);
  }

  get size(): number {
    return this.intervals.length;
  }

  /** The last interval beginning at or before `key`, or undefined. */
  private floor(key: Uint8Array): Interval | undefined {
    let lo = 0;
    let hi = this.intervals.length; // answer in [lo - 1, hi)
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareBytes(this.intervals[mid]!.begin, key) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? undefined : this.intervals[lo - 1];
  }

  containsKey(key: Uint8Array): boolean {
    const i = this.floor(key);
    return i !== undefined && (i.end === null || compareBytes(key, i.end) < 0);
  }

  /** [key, end) whole, end null being ∞. */
  coversRange(key: Uint8Array, end: Uint8Array | null): boolean {
    const i = this.floor(key);
    if (i === undefined) return false;
    if (i.end !== null && compareBytes(key, i.end) >= 0) return false;
    return compareEnds(end, i.end) <= 0;
  }
}

/** A user's merged permissions (etcd's unifiedRangePermissions). */
export class UserPermissions {
  constructor(
    readonly read: IntervalSet,
    readonly write: IntervalSet,
  ) {}

  static of(perms: readonly KeyPermission[]): UserPermissions {
    const read = perms.filter((p) => p.permType !== PermType.Write);
    const write = perms.filter((p) => p.permType !== PermType.Read);
    return new UserPermissions(IntervalSet.of(read), IntervalSet.of(write));
  }

  /**
   * etcd's isRangeOpPermitted for a request's key and range end: an empty end is the key
   * alone, [0x00] is every key from `key` on.
   */
  permits(
    type: typeof PermType.Read | typeof PermType.Write,
    key: Uint8Array,
    rangeEnd: Uint8Array,
  ): boolean {
    assert(type === PermType.Read || type === PermType.Write, 'a check is for read or write');
    const set = type === PermType.Read ? this.read : this.write;
    if (rangeEnd.length === 0) return set.containsKey(key);
    return set.coversRange(key, isOpenEnded(rangeEnd) ? null : rangeEnd);
  }
}
