/**
 * Runs seeds in any mode: the raw simulator (simulator.ts, synchronous) or member mode
 * (member-host.ts, asynchronous: the member's façade answers through promises, and the run
 * lets their continuations run between virtual events).
 */
import { runMemberSeed } from './member-host.js';
import type { RunOptions, RunResult } from './run.js';
import { runRawSeed } from './simulator.js';

export type { RunOptions, RunResult } from './run.js';

export function isMemberMode(options: RunOptions): boolean {
  return (
    options.member === true ||
    options.fault !== undefined ||
    options.redundancy === true ||
    options.memberBug !== undefined
  );
}

export async function runSeed(options: RunOptions): Promise<RunResult> {
  return isMemberMode(options) ? runMemberSeed(options) : runRawSeed(options);
}

/** Seeds `start`..`start + seeds - 1`, each run with the options of RunOptions but its seed. */
export interface SeedsOptions extends Omit<RunOptions, 'seed' | 'trace'> {
  readonly seeds: number;
  readonly start?: number;
  /** Stop at the first failing seed. */
  readonly stopAtFirst?: boolean;
  readonly onResult?: (result: RunResult) => void;
}

export interface SeedsSummary {
  readonly seedsRun: number;
  readonly failures: readonly RunResult[];
  readonly steps: number;
  readonly messagesSent: number;
  readonly virtualMs: number;
}

export async function runSeeds(options: SeedsOptions): Promise<SeedsSummary> {
  const start = options.start ?? 0;
  const failures: RunResult[] = [];
  let seedsRun = 0;
  let steps = 0;
  let messagesSent = 0;
  let virtualMs = 0;
  for (let seed = start; seed < start + options.seeds; seed++) {
    const { seeds: _seeds, start: _start, stopAtFirst: _stop, onResult: _on, ...run } = options;
    const result = await runSeed({ ...run, seed });
    seedsRun++;
    steps += result.steps;
    messagesSent += result.messagesSent;
    virtualMs += result.virtualMs;
    options.onResult?.(result);
    if (result.failure !== null) {
      failures.push(result);
      if (options.stopAtFirst) break;
    }
  }
  return { seedsRun, failures, steps, messagesSent, virtualMs };
}
