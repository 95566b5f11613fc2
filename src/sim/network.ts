/**
 * The simulated network: per-message latency (a base plus an exponential tail, and now and then a
 * long delay that reorders), loss, duplication, and partitions as a set of cut directed links, so
 * symmetric, asymmetric and majority/minority splits are all the same mechanism. A link is checked
 * when a message is sent and again when it would arrive: a partition that starts while a message
 * is in flight drops it.
 *
 * The network knows nothing of Raft: it carries opaque payloads between node ids and reports each
 * delivery and each drop through the handlers it was given.
 */
import { assert } from '../util/assert.js';
import type { Prng } from '../util/prng.js';
import type { EventQueue } from './queue.js';

export interface NetworkParams {
  /** Every message takes at least this long. */
  latencyBaseMs: number;
  /** Mean of the exponential tail added to the base. */
  latencyTailMeanMs: number;
  /** Probability that one copy of a message is lost. */
  lossRate: number;
  /** Probability that a message is delivered twice. */
  duplicateRate: number;
  /** Probability that a message is held back by up to `reorderDelayMsMax` more (reordering). */
  reorderRate: number;
  reorderDelayMsMax: number;
}

export type DropReason = 'lost' | 'partitioned' | 'down';

export interface NetworkHandlers<T> {
  /** Returns false when the receiver is down (the message is then dropped with reason 'down'). */
  deliver(from: number, to: number, payload: T): boolean;
  dropped(from: number, to: number, payload: T, reason: DropReason): void;
  /** False for a payload the modelled transport never duplicates (default: any may be). */
  mayDuplicate?(payload: T): boolean;
}

/** Node ids are small; a link key packs (from, to) into one number. */
const NODE_ID_MAX = 1 << 16;

export class SimNetwork<T> {
  params: NetworkParams;
  private readonly cut = new Set<number>();
  sentCount = 0;
  deliveredCount = 0;
  droppedCount = 0;

  constructor(
    private readonly queue: EventQueue,
    private readonly rng: Prng,
    params: NetworkParams,
    private readonly handlers: NetworkHandlers<T>,
  ) {
    this.params = { ...params };
    checkParams(this.params);
  }

  /** Sends a payload; its fate (deliver or drop) is decided now and reported later. */
  send(from: number, to: number, payload: T): void {
    assert(from !== to, `node ${from} sends to itself`);
    this.sentCount++;
    const duplicated = this.rng.chance(this.params.duplicateRate);
    const copies = duplicated && (this.handlers.mayDuplicate?.(payload) ?? true) ? 2 : 1;
    for (let i = 0; i < copies; i++) this.sendCopy(from, to, payload);
  }

  private sendCopy(from: number, to: number, payload: T): void {
    const delayMs = this.latencyMs();
    if (!this.connected(from, to)) {
      this.queue.after(delayMs, () => this.drop(from, to, payload, 'partitioned'));
    } else if (this.rng.chance(this.params.lossRate)) {
      this.queue.after(delayMs, () => this.drop(from, to, payload, 'lost'));
    } else {
      this.queue.after(delayMs, () => {
        if (!this.connected(from, to)) return this.drop(from, to, payload, 'partitioned');
        if (!this.handlers.deliver(from, to, payload)) return this.drop(from, to, payload, 'down');
        this.deliveredCount++;
      });
    }
  }

  private drop(from: number, to: number, payload: T, reason: DropReason): void {
    this.droppedCount++;
    this.handlers.dropped(from, to, payload, reason);
  }

  latencyMs(): number {
    const p = this.params;
    let ms = p.latencyBaseMs - p.latencyTailMeanMs * Math.log(1 - this.rng.float());
    if (this.rng.chance(p.reorderRate)) ms += this.rng.float() * p.reorderDelayMsMax;
    return ms;
  }

  connected(from: number, to: number): boolean {
    return !this.cut.has(linkKey(from, to));
  }

  /** Cuts the link from → to (one direction only: an asymmetric partition). */
  cutLink(from: number, to: number): void {
    if (from !== to) this.cut.add(linkKey(from, to));
  }

  restoreLink(from: number, to: number): void {
    this.cut.delete(linkKey(from, to));
  }

  /** Cuts every link between the two groups, in both directions or only from a to b. */
  split(a: readonly number[], b: readonly number[], symmetric: boolean): void {
    for (const x of a) {
      for (const y of b) {
        this.cutLink(x, y);
        if (symmetric) this.cutLink(y, x);
      }
    }
  }

  /** Cuts `id` off from every other node in both directions. */
  isolate(id: number, all: readonly number[]): void {
    this.split(
      [id],
      all.filter((x) => x !== id),
      true,
    );
  }

  healAll(): void {
    this.cut.clear();
  }

  get cutLinksCount(): number {
    return this.cut.size;
  }
}

function linkKey(from: number, to: number): number {
  assert(from > 0 && from < NODE_ID_MAX && to > 0 && to < NODE_ID_MAX, 'node id out of range');
  return from * NODE_ID_MAX + to;
}

function checkParams(p: NetworkParams): void {
  assert(p.latencyBaseMs >= 0 && p.latencyTailMeanMs >= 0, 'latency must be non-negative');
  assert(p.lossRate >= 0 && p.lossRate < 1, 'loss rate must be in [0, 1)');
  assert(p.duplicateRate >= 0 && p.duplicateRate < 1, 'duplicate rate must be in [0, 1)');
  assert(p.reorderRate >= 0 && p.reorderRate <= 1, 'reorder rate must be in [0, 1]');
  assert(p.reorderDelayMsMax >= 0, 'reorder delay must be non-negative');
}
