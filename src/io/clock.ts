/**
 * Time as a member sees it: a monotonic clock and one-shot timers. Injected everywhere time is
 * needed (the member loop, the transport) so that the simulator runs the same code on virtual
 * time. The real clock unrefs its timers: an idle component never keeps the process alive.
 */
export type TimerHandle = unknown;

export interface Clock {
  /** Monotonic milliseconds (not wall-clock time). */
  now(): number;
  /**
   * Wall-clock milliseconds since the Unix epoch, for facts other processes read (registry
   * records, lease id seeds); never for measuring durations, which use `now`.
   */
  wallNow(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /** Runs `callback` soon, after the current event (setImmediate; a zero-delay virtual event). */
  defer(callback: () => void): void;
}

export const REAL_CLOCK: Clock = Object.freeze({
  // Whole milliseconds: the pure layers take integer times.
  now: () => Math.floor(performance.now()),
  wallNow: () => Date.now(),
  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return timer;
  },
  clearTimeout(handle: TimerHandle): void {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
  defer(callback: () => void): void {
    setImmediate(callback);
  },
});
