/**
 * The dashboard's live numbers of one member, per second: client writes and reads it served,
 * the p99 latency of those calls, and the event loop's delay. Windows of WINDOW_MS; a reader
 * gets the last complete one (no timer: windows roll over when a call ends or a reader asks).
 */
import { assert } from '../util/assert.js';

export const WINDOW_MS = 1000;
/** Latencies kept per window for the p99; past it, a uniform sample (reservoir) of them. */
export const LATENCY_SAMPLES_MAX = 4096;

/** etcd KV methods by what they do (a Txn counts as a write: most are). */
const WRITE_METHODS = new Set(['Put', 'DeleteRange', 'Txn']);
const READ_METHODS = new Set(['Range']);

export interface LiveSample {
  /** Wall-clock ms at the end of the window. */
  readonly atMs: number;
  readonly writesPerSecond: number;
  readonly readsPerSecond: number;
  /** p99 of the window's KV calls, null without any. */
  readonly latencyP99Ms: number | null;
  /** The event loop's delay (p99 since the previous sample), null when not measured. */
  readonly eventLoopDelayMs: number | null;
}

interface Window {
  startMs: number;
  writes: number;
  reads: number;
  calls: number;
  latenciesMs: number[];
}

export interface LiveStatsOptions {
  /** Wall-clock ms. */
  readonly nowMs: () => number;
  /** The event loop's delay since the last call (e.g. a perf_hooks histogram read and reset). */
  readonly eventLoopDelayMs?: () => number | null;
  /** [0, 1): the reservoir's choices. */
  readonly random?: () => number;
}

export class LiveStats {
  private current: Window;
  private last: LiveSample;

  constructor(private readonly o: LiveStatsOptions) {
    const now = o.nowMs();
    this.current = emptyWindow(now);
    this.last = {
      atMs: now,
      writesPerSecond: 0,
      readsPerSecond: 0,
      latencyP99Ms: null,
      eventLoopDelayMs: null,
    };
  }

  /** A gRPC call ended (`path`: /etcdserverpb.KV/Put …). */
  noteCall(path: string, seconds: number): void {
    this.roll();
    const method = path.slice(path.lastIndexOf('/') + 1);
    const w = this.current;
    if (WRITE_METHODS.has(method)) w.writes++;
    else if (READ_METHODS.has(method)) w.reads++;
    else return;
    w.calls++;
    const ms = seconds * 1000;
    if (w.latenciesMs.length < LATENCY_SAMPLES_MAX) {
      w.latenciesMs.push(ms);
      return;
    }
    const slot = Math.floor((this.o.random ?? Math.random)() * w.calls);
    if (slot < LATENCY_SAMPLES_MAX) w.latenciesMs[slot] = ms;
  }

  /** The last complete window. */
  sample(): LiveSample {
    this.roll();
    return this.last;
  }

  private roll(): void {
    const now = this.o.nowMs();
    const w = this.current;
    const elapsedMs = now - w.startMs;
    if (elapsedMs < WINDOW_MS) return;
    // A window that ended long ago (no calls, no readers since) says nothing about the last
    // second: the last complete second was idle.
    const stale = elapsedMs >= 2 * WINDOW_MS;
    const seconds = elapsedMs / 1000;
    this.last = {
      atMs: now,
      writesPerSecond: stale ? 0 : w.writes / seconds,
      readsPerSecond: stale ? 0 : w.reads / seconds,
      latencyP99Ms: stale ? null : percentile(w.latenciesMs, 0.99),
      eventLoopDelayMs: this.o.eventLoopDelayMs?.() ?? null,
    };
    this.current = emptyWindow(now);
  }
}

function emptyWindow(startMs: number): Window {
  return { startMs, writes: 0, reads: 0, calls: 0, latenciesMs: [] };
}

/** The `q` quantile (nearest rank) of `values`, null when empty. Sorts `values`. */
export function percentile(values: number[], q: number): number | null {
  assert(q > 0 && q <= 1, `quantile ${q}`);
  if (values.length === 0) return null;
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.ceil(q * values.length) - 1)]!;
}
