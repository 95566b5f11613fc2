import { assert } from '../util/assert.js';

/**
 * A bounded FIFO over a fixed circular array (undici's FixedCircularBuffer, without growth).
 * Each slot also carries a byte size so the owner can bound bytes as well as items without
 * re-measuring what it removes.
 *
 *        head (oldest)          tail (next free slot)
 *          v                      v
 *   [ . . M M M M M M M M M M M M . . . . ]   length = 12, capacity = 16 (power of two)
 *
 * Indexes wrap with a mask. Slots are cleared on removal so the ring never retains a message
 * (and its entry buffers) after handing it out.
 */
export class FixedRing<T> {
  private readonly items: (T | undefined)[];
  private readonly sizes: Float64Array;
  private readonly mask: number;
  private head = 0;
  private count = 0;
  private bytesTotal = 0;
  /** The most items the owner allows; the storage is rounded up to a power of two. */
  readonly limit: number;

  constructor(limit: number) {
    assert(Number.isSafeInteger(limit) && limit > 0, 'FixedRing: limit must be positive');
    let capacity = 1;
    while (capacity < limit) capacity *= 2;
    this.items = new Array<T | undefined>(capacity).fill(undefined);
    this.sizes = new Float64Array(capacity);
    this.mask = capacity - 1;
    this.limit = limit;
  }

  get length(): number {
    return this.count;
  }

  /** Sum of the sizes of the items held. */
  get bytes(): number {
    return this.bytesTotal;
  }

  isFull(): boolean {
    return this.count === this.limit;
  }

  push(item: T, size: number): void {
    assert(this.count < this.limit, 'FixedRing: push on a full ring');
    const slot = (this.head + this.count) & this.mask;
    this.items[slot] = item;
    this.sizes[slot] = size;
    this.count += 1;
    this.bytesTotal += size;
  }

  /** The oldest item, left in place; the ring must not be empty. */
  peek(): T {
    assert(this.count > 0, 'FixedRing: peek on an empty ring');
    return this.items[this.head] as T;
  }

  /** The size of the oldest item; the ring must not be empty. */
  peekSize(): number {
    assert(this.count > 0, 'FixedRing: peek on an empty ring');
    return this.sizes[this.head]!;
  }

  shift(): T {
    assert(this.count > 0, 'FixedRing: shift on an empty ring');
    const slot = this.head;
    const item = this.items[slot] as T;
    this.items[slot] = undefined;
    this.bytesTotal -= this.sizes[slot]!;
    this.head = (this.head + 1) & this.mask;
    this.count -= 1;
    if (this.count === 0) this.bytesTotal = 0; // no float drift across many add/subtract cycles
    return item;
  }

  clear(): void {
    while (this.count > 0) this.shift();
  }
}
