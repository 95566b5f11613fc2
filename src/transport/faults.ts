/**
 * Test-mode fault rules, per peer link: drop a fraction of outbound messages, or delay them all
 * by a fixed time (keeping their order). Exists only when the transport is built with
 * `faultInjection: true`; chaos tests use it to partition and slow links without root. A
 * symmetric partition is a drop rule on both members.
 *
 * Randomness comes from the injected generator, so a seeded chaos run drops the same messages.
 */
import type { Message, NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import type { Random } from '../util/prng.js';
import { TransportError } from './errors.js';
import { FAULT_DELAY_MESSAGES_MAX } from './limits.js';
import { messageBytes } from './message-codec.js';
import { FixedRing } from './ring.js';
import type { TimerHandle, TransportTimers } from './timers.js';

export interface LinkFault {
  /** Probability in [0, 1] that an outbound message to the peer is dropped; 1 = partition. */
  readonly dropRate?: number;
  /** Every outbound message to the peer waits this long before it is queued. */
  readonly delayMs?: number;
}

interface Delayed {
  readonly message: Message;
  readonly dueMs: number;
}

/** One delayed link: a bounded FIFO (constant delay keeps due times in order) and one timer. */
class DelayLine {
  readonly ring = new FixedRing<Delayed>(FAULT_DELAY_MESSAGES_MAX);
  timer: TimerHandle | null = null;
  dropped = 0;
}

export interface FaultCounters {
  readonly dropped: number;
  readonly delayed: number;
}

export class FaultInjector {
  private readonly rules = new Map<NodeId, { dropRate: number; delayMs: number }>();
  private readonly lines = new Map<NodeId, DelayLine>();
  private droppedTotal = 0;
  private delayedTotal = 0;

  constructor(
    private readonly timers: TransportTimers,
    private readonly random: Random,
    /** Where a delayed message goes once due (the peer's queue). */
    private readonly release: (to: NodeId, message: Message) => void,
  ) {}

  set(peer: NodeId, fault: LinkFault): void {
    const dropRate = fault.dropRate ?? 0;
    const delayMs = fault.delayMs ?? 0;
    if (!(dropRate >= 0 && dropRate <= 1) || !(Number.isSafeInteger(delayMs) && delayMs >= 0)) {
      throw new TransportError('TRANSPORT_CONFIG', `bad link fault ${JSON.stringify(fault)}`);
    }
    this.rules.set(peer, { dropRate, delayMs });
  }

  /** Removes the rule; messages already delayed are still released when due. */
  clear(peer: NodeId): void {
    this.rules.delete(peer);
  }

  clearAll(): void {
    this.rules.clear();
  }

  counters(): FaultCounters {
    return { dropped: this.droppedTotal, delayed: this.delayedTotal };
  }

  /** True when the rule consumed the message (dropped or delayed); false to send it now. */
  intercept(to: NodeId, message: Message): boolean {
    const rule = this.rules.get(to);
    if (rule === undefined) return false;
    if (rule.dropRate > 0 && this.random.float() < rule.dropRate) {
      this.droppedTotal += 1;
      return true;
    }
    if (rule.delayMs === 0) return false;
    let line = this.lines.get(to);
    if (line === undefined) {
      line = new DelayLine();
      this.lines.set(to, line);
    }
    if (line.ring.isFull()) {
      line.ring.shift(); // same policy as the peer queue: the oldest goes
      line.dropped += 1;
      this.droppedTotal += 1;
    }
    line.ring.push({ message, dueMs: this.timers.now() + rule.delayMs }, messageBytes(message));
    this.delayedTotal += 1;
    if (line.timer === null) this.arm(to, line);
    return true;
  }

  private arm(to: NodeId, line: DelayLine): void {
    assert(line.ring.length > 0);
    const head = line.ring.peek();
    const waitMs = Math.max(0, head.dueMs - this.timers.now());
    line.timer = this.timers.setTimeout(() => this.releaseDue(to, line), waitMs);
  }

  private releaseDue(to: NodeId, line: DelayLine): void {
    line.timer = null;
    const now = this.timers.now();
    while (line.ring.length > 0 && line.ring.peek().dueMs <= now) {
      this.release(to, line.ring.shift().message);
    }
    if (line.ring.length > 0) this.arm(to, line);
  }

  close(): void {
    for (const line of this.lines.values()) {
      if (line.timer !== null) this.timers.clearTimeout(line.timer);
      line.ring.clear();
    }
    this.lines.clear();
    this.rules.clear();
  }
}
