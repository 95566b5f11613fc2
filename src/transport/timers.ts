/**
 * Time as the transport needs it: a monotonic clock and one-shot timers. Injected so tests and
 * the simulator control it; the real implementation unrefs its timers so an idle transport
 * never keeps the process alive by itself.
 *
 * The transport keeps a handful of timers per peer (retry, probe, dial, snapshot stall), never
 * one per message.
 */
export type TimerHandle = unknown;

export interface TransportTimers {
  /** Monotonic milliseconds. */
  now(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const REAL_TIMERS: TransportTimers = Object.freeze({
  now: () => performance.now(),
  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return timer;
  },
  clearTimeout(handle: TimerHandle): void {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
});
