import { assert } from '../../util/assert.js';

/**
 * A binary min-heap of (lease id, deadline in ms) with at most one entry per id, so that
 * re-registering an id moves its entry instead of adding a stale duplicate (etcd's
 * LeaseExpiredNotifier.RegisterOrUpdate). Ties on the deadline break on the id, which keeps the
 * order, and therefore what the leader proposes, independent of insertion history.
 *
 *   slots:  [ (id, ms) root | children of 0 | children of 1 | ... ]   child(i) = 2i+1, 2i+2
 *   where:  id -> slot index, kept in step with every swap
 */
export class DeadlineHeap {
  private readonly ids: bigint[] = [];
  private readonly deadlinesMs: number[] = [];
  private readonly slotById = new Map<bigint, number>();

  get size(): number {
    return this.ids.length;
  }

  has(id: bigint): boolean {
    return this.slotById.has(id);
  }

  /** Inserts `id` or moves it to its new deadline. */
  set(id: bigint, deadlineMs: number): void {
    assert(!Number.isNaN(deadlineMs), 'deadline must be a number');
    const slot = this.slotById.get(id);
    if (slot === undefined) {
      this.ids.push(id);
      this.deadlinesMs.push(deadlineMs);
      this.slotById.set(id, this.ids.length - 1);
      this.up(this.ids.length - 1);
      return;
    }
    this.deadlinesMs[slot] = deadlineMs;
    this.up(slot);
    this.down(this.slotById.get(id)!);
  }

  delete(id: bigint): boolean {
    const slot = this.slotById.get(id);
    if (slot === undefined) return false;
    const last = this.ids.length - 1;
    this.swap(slot, last);
    this.ids.pop();
    this.deadlinesMs.pop();
    this.slotById.delete(id);
    if (slot < this.ids.length) {
      this.up(slot);
      this.down(this.slotById.get(this.ids[slot]!)!);
    }
    return true;
  }

  /** The earliest (id, deadline), or null when empty. */
  peek(): { readonly id: bigint; readonly deadlineMs: number } | null {
    if (this.ids.length === 0) return null;
    return { id: this.ids[0]!, deadlineMs: this.deadlinesMs[0]! };
  }

  clear(): void {
    this.ids.length = 0;
    this.deadlinesMs.length = 0;
    this.slotById.clear();
  }

  private less(i: number, j: number): boolean {
    const a = this.deadlinesMs[i]!;
    const b = this.deadlinesMs[j]!;
    return a < b || (a === b && this.ids[i]! < this.ids[j]!);
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.ids.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) return;
      const right = left + 1;
      const child = right < n && this.less(right, left) ? right : left;
      if (!this.less(child, i)) return;
      this.swap(i, child);
      i = child;
    }
  }

  private swap(i: number, j: number): void {
    if (i === j) return;
    const id = this.ids[i]!;
    const ms = this.deadlinesMs[i]!;
    this.ids[i] = this.ids[j]!;
    this.deadlinesMs[i] = this.deadlinesMs[j]!;
    this.ids[j] = id;
    this.deadlinesMs[j] = ms;
    this.slotById.set(this.ids[i]!, i);
    this.slotById.set(id, j);
  }
}
