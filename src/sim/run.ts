/**
 * What one simulated run takes and gives, shared by the raw simulator (simulator.ts) and member
 * mode (member-host.ts), and a few helpers both print with.
 */
import type { BugName, ConfState, NodeId } from '../raft/types.js';
import type { MemberBugName } from '../server/assemble.js';
import type { RunFailure } from './checker.js';
import type { SimFault } from './member-io.js';
import type { SimParams } from './params.js';
import type { PolicyBugName } from './redundancy.js';

export type Phase = 'safety' | 'liveness' | 'done';

export interface RunOptions {
  readonly seed: number;
  /** Fixes the number of voters (otherwise picked by the seed). */
  readonly voters?: number;
  readonly bug?: BugName;
  /** Build readable trace lines: true collects them in the result, a function receives each. */
  readonly trace?: boolean | ((line: string) => void);
  /** Events at most in the safety phase (then the liveness phase starts). */
  readonly maxSteps?: number;
  /** false: no seed uses lease-based reads (by default some do). */
  readonly leaseReads?: boolean;
  /** Let seeds step messages during a Ready (off by default until FINDINGS.md #6 is fixed). */
  readonly stepsDuringReady?: boolean;
  /**
   * Member mode: run the production member loop (`Member`) with the KV state machine on
   * simulated I/O (member-host.ts) instead of the simulator's own NodeHost.
   */
  readonly member?: boolean;
  /** Member mode only: a fault injected in the simulated I/O (proof the checks can fail). */
  readonly fault?: SimFault;
  /**
   * Redundancy mode (member mode with standbys and the production redundancy driver on every
   * member, src/sim/redundancy.ts); `voters` may then be 3 or 5.
   */
  readonly redundancy?: boolean;
  /** Redundancy mode only: an injected policy bug (src/cluster/health.ts POLICY_BUG_NAMES). */
  readonly policyBug?: PolicyBugName;
  /** Member mode only: a bug of the parts around the loop (src/server/assemble.ts). */
  readonly memberBug?: MemberBugName;
}

export type { FailureKind, RunFailure } from './checker.js';

export interface RunResult {
  readonly seed: number;
  readonly params: SimParams;
  readonly paramsLine: string;
  readonly failure: RunFailure | null;
  readonly traceHash: string;
  readonly traceLines: readonly string[] | null;
  readonly steps: number;
  readonly virtualMs: number;
  readonly messagesSent: number;
  readonly messagesDelivered: number;
  readonly writesAcked: number;
  readonly readsServed: number;
  readonly crashes: number;
  readonly confChanges: number;
  readonly leaderTerms: number;
  readonly checks: number;
  /** Virtual time from the start of the liveness phase to a committed proposal everywhere. */
  readonly livenessMs: number;
}

export function membersOf(cs: ConfState): NodeId[] {
  const all = new Set<NodeId>([
    ...cs.voters,
    ...cs.learners,
    ...cs.votersOutgoing,
    ...cs.learnersNext,
  ]);
  return [...all].sort((a, b) => a - b);
}

export function formatConf(cs: ConfState): string {
  let s = `voters=${cs.voters.join(',')}`;
  if (cs.votersOutgoing.length > 0) s += ` outgoing=${cs.votersOutgoing.join(',')}`;
  if (cs.learners.length > 0) s += ` learners=${cs.learners.join(',')}`;
  if (cs.learnersNext.length > 0) s += ` learnersNext=${cs.learnersNext.join(',')}`;
  if (cs.autoLeave) s += ' auto-leave';
  return s;
}
