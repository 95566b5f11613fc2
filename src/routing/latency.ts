/**
 * Latency statistics for routing: an exponentially weighted moving average per member, and a
 * bounded window of recent samples for percentiles (the hedge delay). Pure: samples come with
 * the caller's times; nothing here reads a clock.
 */
import { assert } from '../util/assert.js';

/** Samples the percentile window keeps (the newest overwrite the oldest). */
export const LATENCY_WINDOW_SAMPLES_MAX = 512;

/**
 * Finagle's peak EWMA: a sample above the average replaces it at once (a member that just
 * turned slow is avoided by the next request, not after many), one below pulls it down with a
 * weight that decays with time, not sample count: a sample `dtMs` after the previous one moves
 * the average by 1 - exp(-dtMs / tauMs), so rarely sampled members forget as fast as busy ones.
 */
export class Ewma {
  private valueMs: number | null = null;
  private atMs = 0;

  constructor(private readonly tauMs: number) {
    assert(tauMs > 0, 'tauMs > 0');
  }

  /** Null until the first sample. */
  get value(): number | null {
    return this.valueMs;
  }

  /**
   * The average as of `nowMs`: decayed toward zero since the last sample (Finagle reads its cost
   * as observe(0)), so a member nobody picks because it was slow is tried again in time.
   */
  valueAt(nowMs: number): number | null {
    if (this.valueMs === null) return null;
    const dtMs = Math.max(0, nowMs - this.atMs);
    return this.valueMs * Math.exp(-dtMs / this.tauMs);
  }

  observe(sampleMs: number, nowMs: number): void {
    assert(Number.isFinite(sampleMs) && sampleMs >= 0, 'a latency sample is finite and >= 0');
    if (this.valueMs === null || sampleMs >= this.valueMs) {
      this.valueMs = sampleMs;
    } else {
      const dtMs = Math.max(0, nowMs - this.atMs);
      const weight = 1 - Math.exp(-dtMs / this.tauMs);
      this.valueMs += weight * (sampleMs - this.valueMs);
    }
    this.atMs = Math.max(this.atMs, nowMs);
  }

  reset(sampleMs: number | null, nowMs: number): void {
    this.valueMs = sampleMs;
    this.atMs = nowMs;
  }
}

/** The last `capacity` samples; percentiles over them, recomputed at most every `every` samples. */
export class LatencyWindow {
  private readonly samples: Float64Array;
  private count = 0;
  private next = 0;
  private sorted: Float64Array | null = null;
  private sinceSort = 0;

  constructor(
    readonly capacity = LATENCY_WINDOW_SAMPLES_MAX,
    private readonly resortEvery = 16,
  ) {
    assert(capacity >= 1 && capacity <= LATENCY_WINDOW_SAMPLES_MAX, 'window capacity');
    assert(resortEvery >= 1, 'resortEvery >= 1');
    this.samples = new Float64Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  add(sampleMs: number): void {
    assert(Number.isFinite(sampleMs) && sampleMs >= 0, 'a latency sample is finite and >= 0');
    this.samples[this.next] = sampleMs;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
    this.sinceSort++;
  }

  /** The q-quantile (nearest rank, q in [0, 1]) of the window, or null when empty. */
  quantile(q: number): number | null {
    assert(q >= 0 && q <= 1, 'q in [0, 1]');
    if (this.count === 0) return null;
    if (
      this.sorted === null ||
      this.sorted.length !== this.count ||
      this.sinceSort >= this.resortEvery
    ) {
      this.sorted = this.samples.slice(0, this.count).sort();
      this.sinceSort = 0;
    }
    const rank = Math.min(this.count - 1, Math.max(0, Math.ceil(q * this.count) - 1));
    return this.sorted[rank]!;
  }
}
