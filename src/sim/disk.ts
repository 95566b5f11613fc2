/**
 * A simulated disk: writes take virtual time, complete in order, and become durable only when
 * they complete. A crash loses every write still in flight (as a power cut loses what was not
 * fdatasync'ed); what completed before it survives. The durable bytes themselves live with the
 * caller (a MemoryStorage and a state machine image): a write is a closure that mutates them, run
 * at completion time, so "durable" means exactly "its closure has run".
 */
import { assert } from '../util/assert.js';
import type { Prng } from '../util/prng.js';
import type { EventQueue } from './queue.js';

export interface DiskParams {
  writeLatencyMsMin: number;
  writeLatencyMsMax: number;
}

/** Writes queued on one disk at most: the member loop keeps one Ready in flight, plus slack. */
export const DISK_WRITES_PENDING_MAX = 64;

export class SimDisk {
  private epoch = 0;
  private pending = 0;
  /** The completion time of the last queued write: writes complete in FIFO order. */
  private tailMs = 0;
  writesCompleted = 0;
  writesLost = 0;

  constructor(
    private readonly queue: EventQueue,
    private readonly rng: Prng,
    readonly params: DiskParams,
  ) {
    assert(params.writeLatencyMsMin >= 0, 'disk latency must be non-negative');
    assert(params.writeLatencyMsMax >= params.writeLatencyMsMin, 'disk latency range is empty');
  }

  get writesPending(): number {
    return this.pending;
  }

  /**
   * Queues a write. At completion, `persist` makes it durable and then `done` runs; neither runs
   * when the node crashes first.
   */
  write(persist: () => void, done: () => void): void {
    assert(this.pending < DISK_WRITES_PENDING_MAX, 'disk write queue overflow');
    const p = this.params;
    const latencyMs =
      p.writeLatencyMsMin + this.rng.float() * (p.writeLatencyMsMax - p.writeLatencyMsMin);
    const completeMs = Math.max(this.queue.nowMs + latencyMs, this.tailMs);
    this.tailMs = completeMs;
    const epoch = this.epoch;
    this.pending++;
    this.queue.at(completeMs, () => {
      if (epoch !== this.epoch) return;
      this.pending--;
      this.writesCompleted++;
      persist();
      done();
    });
  }

  /** Loses every write in flight. */
  crash(): void {
    this.writesLost += this.pending;
    this.pending = 0;
    this.epoch++;
    this.tailMs = this.queue.nowMs;
  }
}
