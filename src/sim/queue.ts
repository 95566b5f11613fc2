/**
 * The simulator's virtual clock and event queue: a binary min-heap ordered by (time, insertion
 * sequence). Two events at the same virtual time run in the order they were scheduled, so a run is
 * a pure function of its seed.
 */
import { assert } from '../util/assert.js';

export type EventFn = () => void;

interface QueuedEvent {
  readonly timeMs: number;
  readonly seq: number;
  readonly fn: EventFn;
}

/** A limit on pending events: a run that exceeds it has a runaway producer (a simulator bug). */
export const EVENTS_PENDING_MAX = 1_000_000;

export class EventQueue {
  private readonly heap: QueuedEvent[] = [];
  private seqNext = 0;
  private nowMsValue = 0;

  /** The virtual time of the event being run (or of the last one run). */
  get nowMs(): number {
    return this.nowMsValue;
  }

  get size(): number {
    return this.heap.length;
  }

  /** Schedules `fn` at `nowMs + delayMs` (delay >= 0). */
  after(delayMs: number, fn: EventFn): void {
    this.at(this.nowMsValue + delayMs, fn);
  }

  /** Schedules `fn` at virtual time `timeMs`, which may not be in the past. */
  at(timeMs: number, fn: EventFn): void {
    assert(Number.isFinite(timeMs), `event time must be finite, got ${timeMs}`);
    assert(timeMs >= this.nowMsValue, `event time ${timeMs} is before now ${this.nowMsValue}`);
    assert(this.heap.length < EVENTS_PENDING_MAX, 'event queue overflow');
    const event: QueuedEvent = { timeMs, seq: this.seqNext++, fn };
    this.heap.push(event);
    this.siftUp(this.heap.length - 1);
  }

  /** The time of the next event, or Infinity when the queue is empty. */
  peekTimeMs(): number {
    return this.heap.length === 0 ? Number.POSITIVE_INFINITY : this.heap[0]!.timeMs;
  }

  /** Runs the earliest event, advancing the clock to its time. Returns false when empty. */
  runNext(): boolean {
    const event = this.pop();
    if (event === undefined) return false;
    assert(event.timeMs >= this.nowMsValue, 'virtual time went backwards');
    this.nowMsValue = event.timeMs;
    event.fn();
    return true;
  }

  private pop(): QueuedEvent | undefined {
    const heap = this.heap;
    if (heap.length === 0) return undefined;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  private siftUp(i: number): void {
    const heap = this.heap;
    const event = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(event, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = event;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const event = heap[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && before(heap[right]!, heap[left]!) ? right : left;
      if (!before(heap[child]!, event)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = event;
  }
}

function before(a: QueuedEvent, b: QueuedEvent): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);
}
