/**
 * An ordered map from string keys to values: a list of sorted chunks (a two-level B-tree).
 * Insert and delete cost O(log n + CHUNK_ENTRIES_MAX), a range scan O(log n + k). Used for the
 * key index (user keys) and the in-memory backend (revision keys), where a plain sorted array
 * would make n random inserts O(n^2).
 *
 *   chunks:  [ a b c d ] [ f g ] [ m n p q r ]      firsts: [ a f m ]
 *
 * Invariants: no chunk is empty; keys ascend within and across chunks; firsts[i] is the first
 * key of chunks[i].
 */
import { assert } from '../../util/assert.js';

const CHUNK_ENTRIES_MAX = 512;

interface Chunk<V> {
  keys: string[];
  values: V[];
}

export class SortedMap<V> {
  private chunks: Chunk<V>[] = [];
  private firsts: string[] = [];
  private count = 0;

  /**
   * A map of `keys` (strictly ascending) to `values`, built in O(n): chunks half full, so that
   * later inserts split none at first.
   */
  static fromSorted<V>(keys: readonly string[], values: readonly V[]): SortedMap<V> {
    assert(keys.length === values.length, 'as many keys as values');
    const map = new SortedMap<V>();
    const per = CHUNK_ENTRIES_MAX >>> 1;
    for (let at = 0; at < keys.length; at += per) {
      const chunk = { keys: keys.slice(at, at + per), values: values.slice(at, at + per) };
      for (let i = at === 0 ? 1 : 0; i < chunk.keys.length; i++) {
        const previous = i === 0 ? keys[at - 1]! : chunk.keys[i - 1]!;
        if (!(previous < chunk.keys[i]!)) assert(false, 'fromSorted keys not ascending');
      }
      map.chunks.push(chunk);
      map.firsts.push(chunk.keys[0]!);
    }
    map.count = keys.length;
    return map;
  }

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    const c = this.chunkFor(key);
    if (c < 0) return undefined;
    const chunk = this.chunks[c]!;
    const i = lowerBound(chunk.keys, key);
    return chunk.keys[i] === key ? chunk.values[i] : undefined;
  }

  set(key: string, value: V): void {
    if (this.chunks.length === 0) {
      this.chunks.push({ keys: [key], values: [value] });
      this.firsts.push(key);
      this.count = 1;
      return;
    }
    const c = Math.max(0, this.chunkFor(key));
    const chunk = this.chunks[c]!;
    const i = lowerBound(chunk.keys, key);
    if (chunk.keys[i] === key) {
      chunk.values[i] = value;
      return;
    }
    chunk.keys.splice(i, 0, key);
    chunk.values.splice(i, 0, value);
    this.firsts[c] = chunk.keys[0]!;
    this.count++;
    if (chunk.keys.length > CHUNK_ENTRIES_MAX) this.split(c);
  }

  delete(key: string): boolean {
    const c = this.chunkFor(key);
    if (c < 0) return false;
    const chunk = this.chunks[c]!;
    const i = lowerBound(chunk.keys, key);
    if (chunk.keys[i] !== key) return false;
    chunk.keys.splice(i, 1);
    chunk.values.splice(i, 1);
    this.count--;
    if (chunk.keys.length === 0) {
      this.chunks.splice(c, 1);
      this.firsts.splice(c, 1);
    } else {
      this.firsts[c] = chunk.keys[0]!;
    }
    return true;
  }

  /**
   * Visits entries with start <= key < end in ascending order (`end` null = unbounded) until
   * `visit` returns false.
   */
  scan(start: string, end: string | null, visit: (key: string, value: V) => boolean): void {
    let c = Math.max(0, this.chunkFor(start));
    let i = c < this.chunks.length ? lowerBound(this.chunks[c]!.keys, start) : 0;
    for (; c < this.chunks.length; c++, i = 0) {
      const { keys, values } = this.chunks[c]!;
      for (; i < keys.length; i++) {
        const key = keys[i]!;
        if (end !== null && key >= end) return;
        if (!visit(key, values[i]!)) return;
      }
    }
  }

  /** Checks the invariants above; for tests. */
  checkInvariants(): void {
    let total = 0;
    let prev: string | null = null;
    assert(this.chunks.length === this.firsts.length, 'chunks/firsts length');
    for (let c = 0; c < this.chunks.length; c++) {
      const chunk = this.chunks[c]!;
      assert(chunk.keys.length > 0 && chunk.keys.length <= CHUNK_ENTRIES_MAX, 'chunk size');
      assert(chunk.keys.length === chunk.values.length, 'chunk keys/values');
      assert(this.firsts[c] === chunk.keys[0], 'firsts');
      for (const key of chunk.keys) {
        assert(prev === null || prev < key, 'keys ascend');
        prev = key;
      }
      total += chunk.keys.length;
    }
    assert(total === this.count, 'count');
  }

  /** Index of the last chunk whose first key <= key; -1 when key precedes every chunk. */
  private chunkFor(key: string): number {
    return upperBound(this.firsts, key) - 1;
  }

  private split(c: number): void {
    const chunk = this.chunks[c]!;
    const half = chunk.keys.length >>> 1;
    const right: Chunk<V> = { keys: chunk.keys.splice(half), values: chunk.values.splice(half) };
    this.chunks.splice(c + 1, 0, right);
    this.firsts.splice(c + 1, 0, right.keys[0]!);
  }
}

/** First index i with keys[i] >= key. */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index i with keys[i] > key. */
function upperBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
