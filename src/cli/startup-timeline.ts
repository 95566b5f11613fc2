/**
 * When each start-up phase of `tandem start` ended, in ms since the process started (Node's
 * performance.now(), whose origin is the process start) and in CPU ms the process had used by
 * then. The member logs them with 'tandem member serving', and the time since start again with
 * 'role confirmed with the leader' (from then on it serves clients), so an operator, or
 * bench/startup.ts, sees where a slow restart went.
 */

/** The phases in order; each mark is the end of the phase named. */
export const STARTUP_PHASES = [
  'modules',
  'config',
  'storage',
  'transport',
  'member',
  'clientPort',
  'adminPort',
] as const;
export type StartupPhase = (typeof STARTUP_PHASES)[number];

/** What the serving line's `startupMs` holds, in order: Node's boot, then each phase's end. */
export const STARTUP_TIMELINE_KEYS = ['nodeBoot', ...STARTUP_PHASES] as const;

export class StartupTimeline {
  private readonly endsMs: Partial<Record<StartupPhase | 'nodeBoot', number>> = {
    nodeBoot: Math.round(performance.nodeTiming.bootstrapComplete),
  };

  mark(phase: StartupPhase): void {
    this.endsMs[phase] = Math.round(performance.now());
  }

  /** For a log line: each phase's end so far, and the CPU time used up to now. */
  summary(): Record<string, number> {
    const cpu = process.cpuUsage();
    return { ...this.endsMs, cpuMs: Math.round((cpu.user + cpu.system) / 1000) };
  }

  /** ms since the process started. */
  static sinceStartMs(): number {
    return Math.round(performance.now());
  }
}

/**
 * How bin/tandem.js compiled the bundle this process runs: with its V8 code cache (`used`), without
 * one yet or with one V8 refused (`absent`, `rejected`: written during this run), or with none
 * (`off`: disabled or not supported by this Node); `none` when not started from the bundle (tsx).
 */
export function codeCacheState(): string {
  const state = (globalThis as Record<symbol, unknown>)[Symbol.for('tandem.codeCache')];
  return typeof state === 'string' ? state : 'none';
}
