/**
 * Everything a run does is derived from its seed (TigerBeetle's VOPR): cluster shape, Raft
 * options, network and disk behaviour, fault rates and phase lengths. The parameters are printed
 * with the seed so a failure can be understood before it is replayed.
 */
import { VOTERS_MAX } from '../cluster/policy.js';
import { BUG_NAMES, type BugName } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { Prng } from '../util/prng.js';
import type { DiskParams } from './disk.js';
import type { NetworkParams } from './network.js';

/** Events at most in the safety phase, unless a run says otherwise. */
export const MAX_STEPS_DEFAULT = 2_000_000;

export const VOTERS_CHOICES = [3, 5, 7] as const;
/** Members (voters + learners) at most: membership changes stop adding beyond it. */
export const MEMBERS_MAX = 9;
export const VOTERS_MIN = 3;

/** How the state machine survives a crash. */
export type ApplyMode =
  /** Durable when applied; restart passes its applied index to raft. */
  | 'durable'
  /** Volatile; restart rebuilds it from the snapshot and re-applies the committed log. */
  | 'replay';

export interface SimParams {
  readonly seed: number;
  readonly voters: number;
  /** Learners added by membership changes right after the start. */
  readonly learnersInitial: number;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly maxMsgBytes: number;
  readonly maxInflightMsgs: number;
  readonly maxUncommittedBytes: number;
  readonly network: NetworkParams;
  readonly disk: DiskParams;
  /** Take a snapshot every this many applied entries; 0 = never. */
  readonly snapshotEveryEntries: number;
  /** Entries kept in the log behind a snapshot when compacting. */
  readonly compactKeepEntries: number;
  readonly applyMode: ApplyMode;
  /**
   * A crash loses the writes that were not synced (a Ready with mustSync false: a commit index
   * change only) since the last synced one, as a power cut loses the page cache.
   */
  readonly loseUnsyncedWrites: boolean;
  /**
   * ReadIndex answered from the leader lease (ReadOnlyOption.LeaseBased) when CheckQuorum is on:
   * safe here because every node's clock runs at the same rate.
   */
  readonly leaseReads: boolean;
  /**
   * The member loop steps messages that arrive while a Ready is being persisted (the Ready
   * contract allows it); otherwise it buffers them until advance().
   */
  readonly stepsDuringReady: boolean;
  /** Length of the safety phase (faults on). */
  readonly safetyMs: number;
  /** The liveness phase must elect a leader and commit a proposal within this. */
  readonly livenessMs: number;
  /** Mean time between client proposals / reads / nemesis actions. */
  readonly proposeEveryMs: number;
  readonly readEveryMs: number;
  readonly nemesisEveryMs: number;
  /** Relative weights of the nemesis actions (see workload.ts). */
  readonly faultWeights: Readonly<Record<FaultKind, number>>;
  /** Probability that a node granting a vote crashes and restarts right after sending it. */
  readonly crashAfterVoteRate: number;
  /**
   * Probability that a new leader is crashed or isolated within a few message latencies of its
   * election: leaves uncommitted entries of a higher term on one node (Raft paper figure 8).
   */
  readonly leaderFaultRate: number;
  readonly bugs: ReadonlySet<BugName>;
}

export const FAULT_KINDS = [
  'crash',
  'flash-crash',
  'restart',
  'isolate',
  'split',
  'asymmetric',
  'heal',
  'swizzle',
  'membership',
  'transfer',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ParamOverrides {
  voters?: number;
  bugs?: readonly BugName[];
  /** false: no seed uses lease-based reads (by default about 15% do, with CheckQuorum). */
  leaseReads?: boolean;
  /** Let seeds step messages between ready() and advance() (off by default: FINDINGS.md #6). */
  stepsDuringReady?: boolean;
}

export function deriveParams(seed: number, overrides: ParamOverrides = {}): SimParams {
  assert(Number.isSafeInteger(seed) && seed >= 0, `seed must be a non-negative integer: ${seed}`);
  const rng = new Prng(seed);
  const voters = overrides.voters ?? rng.pick(VOTERS_CHOICES);
  assert(voters >= 1 && voters <= VOTERS_MAX, `voters must be in [1, ${VOTERS_MAX}]`);
  const electionTicks = rng.range(8, 12);
  const lossy = rng.chance(0.7);
  const weights = {} as Record<FaultKind, number>;
  for (const kind of FAULT_KINDS) weights[kind] = rng.chance(0.8) ? rng.range(1, 10) : 0;
  weights.heal += 2;
  const snapshots = rng.chance(0.7);
  const maxMsgBytes = rng.pick([64, 256, 1024, 1 << 20]);
  const bugs = overrides.bugs ?? [];
  for (const bug of bugs) assert(BUG_NAMES.includes(bug), `unknown bug ${bug}`);
  return {
    seed,
    voters,
    learnersInitial: rng.int(3),
    tickMs: 10,
    electionTicks,
    heartbeatTicks: rng.range(1, 3),
    preVote: rng.chance(0.5),
    checkQuorum: rng.chance(0.5),
    maxMsgBytes,
    maxInflightMsgs: rng.pick([1, 4, 32, 256]),
    // raft requires room for one full append message of uncommitted data.
    maxUncommittedBytes: maxMsgBytes * rng.pick([1, 8, 1024]),
    network: {
      latencyBaseMs: rng.range(1, 10),
      latencyTailMeanMs: rng.range(0, 15),
      lossRate: lossy ? rng.float() * 0.15 : 0,
      duplicateRate: rng.chance(0.5) ? rng.float() * 0.1 : 0,
      reorderRate: rng.chance(0.5) ? rng.float() * 0.2 : 0,
      reorderDelayMsMax: rng.range(10, 100),
    },
    disk: (() => {
      const min = rng.float() * 2;
      return { writeLatencyMsMin: min, writeLatencyMsMax: min + rng.float() * 8 };
    })(),
    snapshotEveryEntries: snapshots ? rng.range(3, 40) : 0,
    compactKeepEntries: rng.pick([0, 1, 5, 20]),
    applyMode: rng.chance(0.5) ? 'durable' : 'replay',
    safetyMs: rng.range(3_000, 8_000),
    livenessMs: 10_000,
    proposeEveryMs: rng.range(5, 40),
    readEveryMs: rng.range(10, 80),
    nemesisEveryMs: rng.range(20, 250),
    faultWeights: weights,
    crashAfterVoteRate: rng.chance(0.5) ? rng.float() * 0.5 : 0,
    leaderFaultRate: rng.chance(0.7) ? 0.1 + rng.float() * 0.7 : 0,
    bugs: new Set(bugs),
    // Drawn last: parameters added later go at the end, so older seeds keep their meaning.
    loseUnsyncedWrites: rng.chance(0.5),
    leaseReads: rng.chance(0.3) && overrides.leaseReads !== false,
    // Drawn per seed (FINDINGS.md #6 is fixed); --steps-during-ready forces it on.
    stepsDuringReady: rng.chance(0.5) || overrides.stepsDuringReady === true,
  };
}

/** One line: `seed=… voters=… …`, every derived parameter. */
export function formatParams(p: SimParams): string {
  const n = p.network;
  const fixed = (x: number): string => (Number.isInteger(x) ? String(x) : x.toFixed(3));
  const weights = Object.entries(p.faultWeights)
    .map(([k, w]) => `${k}:${w}`)
    .join(',');
  return [
    `seed=${p.seed}`,
    `voters=${p.voters}`,
    `learners=${p.learnersInitial}`,
    `tick=${p.tickMs}ms`,
    `election=${p.electionTicks}`,
    `heartbeat=${p.heartbeatTicks}`,
    `prevote=${p.preVote}`,
    `checkquorum=${p.checkQuorum}`,
    `msgbytes=${p.maxMsgBytes}`,
    `inflight=${p.maxInflightMsgs}`,
    `uncommitted=${p.maxUncommittedBytes}`,
    `latency=${n.latencyBaseMs}+exp(${n.latencyTailMeanMs})ms`,
    `loss=${fixed(n.lossRate)}`,
    `dup=${fixed(n.duplicateRate)}`,
    `reorder=${fixed(n.reorderRate)}/${n.reorderDelayMsMax}ms`,
    `disk=${fixed(p.disk.writeLatencyMsMin)}-${fixed(p.disk.writeLatencyMsMax)}ms`,
    `snapshot=${p.snapshotEveryEntries}`,
    `keep=${p.compactKeepEntries}`,
    `apply=${p.applyMode}`,
    `lose-unsynced=${p.loseUnsyncedWrites}`,
    `lease-reads=${p.leaseReads && p.checkQuorum}`,
    `steps-during-ready=${p.stepsDuringReady}`,
    `safety=${p.safetyMs}ms`,
    `liveness=${p.livenessMs}ms`,
    `propose=${p.proposeEveryMs}ms`,
    `read=${p.readEveryMs}ms`,
    `nemesis=${p.nemesisEveryMs}ms`,
    `faults=${weights}`,
    `crash-after-vote=${fixed(p.crashAfterVoteRate)}`,
    `leader-fault=${fixed(p.leaderFaultRate)}`,
    `bugs=${[...p.bugs].join(',') || 'none'}`,
  ].join(' ');
}
