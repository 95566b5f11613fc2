/**
 * Runs seeds in any mode: the raw simulator (simulator.ts, synchronous) or member mode
 * (member-host.ts, asynchronous: the member's façade answers through promises, and the run
 * lets their continuations run between virtual events).
 */
import type { BugName } from '../raft/types.js';
import type { MemberBugName } from '../server/assemble.js';
import { runMemberSeed } from './member-host.js';
import type { SimFault } from './member-io.js';
import type { PolicyBugName } from './redundancy.js';
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

export interface SeedsOptions {
  readonly seeds: number;
  readonly start?: number;
  readonly voters?: number;
  readonly bug?: BugName;
  readonly maxSteps?: number;
  readonly leaseReads?: boolean;
  readonly stepsDuringReady?: boolean;
  /** Member mode for every seed (see RunOptions.member). */
  readonly member?: boolean;
  readonly fault?: SimFault;
  readonly redundancy?: boolean;
  readonly policyBug?: PolicyBugName;
  readonly memberBug?: MemberBugName;
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
    const result = await runSeed({
      seed,
      ...(options.voters === undefined ? {} : { voters: options.voters }),
      ...(options.bug === undefined ? {} : { bug: options.bug }),
      ...(options.maxSteps === undefined ? {} : { maxSteps: options.maxSteps }),
      ...(options.leaseReads === undefined ? {} : { leaseReads: options.leaseReads }),
      ...(options.stepsDuringReady === undefined
        ? {}
        : { stepsDuringReady: options.stepsDuringReady }),
      ...(options.member === undefined ? {} : { member: options.member }),
      ...(options.fault === undefined ? {} : { fault: options.fault }),
      ...(options.redundancy === undefined ? {} : { redundancy: options.redundancy }),
      ...(options.policyBug === undefined ? {} : { policyBug: options.policyBug }),
      ...(options.memberBug === undefined ? {} : { memberBug: options.memberBug }),
    });
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
