import { assert } from '../../util/assert.js';

/**
 * A fixed-capacity FIFO on a circular array (undici's FixedQueue, one ring): push refuses instead
 * of growing, so a queue can never hold more than it was sized for.
 *
 *        head                tail
 *         v                   v
 *   [ . . a b c d e . . . . . ]     length = 5, capacity = 14
 *   push writes at tail, shift reads at head, both wrap around.
 */
export class BoundedQueue<T> {
  private readonly slots: (T | undefined)[];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, 'capacity must be positive');
    this.slots = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.count;
  }

  get free(): number {
    return this.capacity - this.count;
  }

  push(item: T): boolean {
    if (this.count === this.capacity) return false;
    this.slots[(this.head + this.count) % this.capacity] = item;
    this.count += 1;
    return true;
  }

  peek(): T | undefined {
    return this.count === 0 ? undefined : this.slots[this.head];
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.slots[this.head];
    this.slots[this.head] = undefined; // let the item be collected
    this.head = (this.head + 1) % this.capacity;
    this.count -= 1;
    return item;
  }

  clear(): void {
    while (this.count > 0) this.shift();
  }
}
