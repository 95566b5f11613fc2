/**
 * The window of append messages in flight to one follower (etcd-io/raft tracker/inflights.go).
 * A fixed-capacity ring of the last entry index of each unacknowledged MsgApp:
 *
 *     buffer: [ . . 7 9 12 . . ]     start=2, count=3, capacity=7
 *                   ^start    ^ start+count (mod capacity) is where the next add goes
 *
 * Indexes arrive in increasing order, so freeing everything <= an acked index pops from the front.
 */
import { assert } from '../../util/assert.js';

export class Inflights {
  private readonly buffer: Float64Array;
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, 'inflights capacity must be > 0');
    this.buffer = new Float64Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  full(): boolean {
    return this.count === this.capacity;
  }

  /** Records a MsgApp whose last entry is `index`; indexes must increase. */
  add(index: number): void {
    assert(!this.full(), 'cannot add into a full inflights window');
    if (this.count > 0) {
      const last = this.buffer[(this.start + this.count - 1) % this.capacity]!;
      assert(index > last, `inflight index ${index} not above ${last}`);
    }
    this.buffer[(this.start + this.count) % this.capacity] = index;
    this.count++;
  }

  /** Frees every in-flight message whose last index is <= `index` (they were acknowledged). */
  freeLE(index: number): void {
    while (this.count > 0 && this.buffer[this.start]! <= index) {
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  /** Frees the oldest message: a heartbeat response proves the follower is alive (etcd 3.5). */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.capacity;
    this.count--;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}
