import { isSingleKey, keyImage, rangeContains } from './key-range.js';
import type { Watcher } from './watcher.js';

/**
 * The synced watchers, indexed for matching a committed key: exact-key watchers by key (one map
 * lookup), range watchers in a list checked one by one. etcd keeps ranges in an interval tree;
 * a list is simpler and fine while range watchers number in the hundreds.
 */
export class WatcherIndex {
  private readonly byKey = new Map<string, Set<Watcher>>();
  private readonly ranges = new Set<Watcher>();
  private count = 0;
  /** Watchers here that asked for prev_kv. */
  private prevKvCount = 0;

  get size(): number {
    return this.count;
  }

  /** Whether any watcher here wants events' prevKv (the store reads it only then). */
  wantsPrevKv(): boolean {
    return this.prevKvCount > 0;
  }

  add(watcher: Watcher): void {
    if (isSingleKey(watcher.range)) {
      const image = keyImage(watcher.range.key);
      const set = this.byKey.get(image) ?? new Set<Watcher>();
      if (set.has(watcher)) return;
      set.add(watcher);
      this.byKey.set(image, set);
    } else {
      if (this.ranges.has(watcher)) return;
      this.ranges.add(watcher);
    }
    this.count += 1;
    if (watcher.options.prevKv) this.prevKvCount += 1;
  }

  delete(watcher: Watcher): void {
    let removed: boolean;
    if (isSingleKey(watcher.range)) {
      const image = keyImage(watcher.range.key);
      const set = this.byKey.get(image);
      removed = set?.delete(watcher) ?? false;
      if (set?.size === 0) this.byKey.delete(image);
    } else {
      removed = this.ranges.delete(watcher);
    }
    if (!removed) return;
    this.count -= 1;
    if (watcher.options.prevKv) this.prevKvCount -= 1;
  }

  /** Removes and returns every watcher. */
  takeAll(): Watcher[] {
    const all = [...this.ranges];
    for (const set of this.byKey.values()) all.push(...set);
    this.byKey.clear();
    this.ranges.clear();
    this.count = 0;
    this.prevKvCount = 0;
    return all;
  }

  /** Calls `visit` for each watcher whose range holds `key`. */
  forEachMatch(key: Uint8Array, visit: (watcher: Watcher) => void): void {
    const exact = this.byKey.get(keyImage(key));
    if (exact !== undefined) for (const watcher of exact) visit(watcher);
    for (const watcher of this.ranges) if (rangeContains(watcher.range, key)) visit(watcher);
  }
}
