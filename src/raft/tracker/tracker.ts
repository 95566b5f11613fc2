/**
 * The membership configuration and the per-peer progress the leader tracks
 * (etcd-io/raft tracker/tracker.go). Id lists are kept sorted so every iteration is in id order,
 * independent of the history that built the configuration.
 */
import { assert } from '../../util/assert.js';
import { jointCommittedIndex, jointVoteResult } from '../quorum/joint.js';
import { VoteResult } from '../quorum/majority.js';
import { type ConfState, isVoterIn, type NodeId } from '../types.js';
import type { Progress } from './progress.js';

/** A membership configuration; every list is sorted and duplicate-free. */
export interface TrackerConfig {
  /** Voters of the incoming (or only) configuration. */
  readonly voters: readonly NodeId[];
  /** Voters of the outgoing configuration; non-empty only while joint. */
  readonly votersOutgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** Outgoing voters that become learners when the joint configuration is left. */
  readonly learnersNext: readonly NodeId[];
  readonly autoLeave: boolean;
}

export const EMPTY_TRACKER_CONFIG: TrackerConfig = Object.freeze({
  voters: [],
  votersOutgoing: [],
  learners: [],
  learnersNext: [],
  autoLeave: false,
});

export function isJoint(config: TrackerConfig): boolean {
  return config.votersOutgoing.length > 0;
}

export function toConfState(config: TrackerConfig): ConfState {
  return {
    voters: config.voters,
    learners: config.learners,
    votersOutgoing: config.votersOutgoing,
    learnersNext: config.learnersNext,
    autoLeave: config.autoLeave,
  };
}

export class ProgressTracker {
  config: TrackerConfig = EMPTY_TRACKER_CONFIG;
  progress: Map<NodeId, Progress> = new Map();
  /** Every id in `progress`, sorted: the iteration order for broadcasts. */
  ids: NodeId[] = [];
  /** Union of incoming and outgoing voters, sorted. */
  voterIds: NodeId[] = [];
  readonly votes: Map<NodeId, boolean> = new Map();
  private readonly scratch: number[] = [];
  private readonly activeScratch: Map<NodeId, boolean> = new Map();
  // Bound once: committed() runs on every append acknowledgement.
  private readonly matchOf = (id: NodeId): number | undefined => this.progress.get(id)?.match;
  private readonly responseTickOf = (id: NodeId): number | undefined =>
    this.progress.get(id)?.lastResponseTick;

  constructor(readonly maxInflightMsgs: number) {}

  /** Installs a configuration and its progress map (built by confchange). */
  setConfig(config: TrackerConfig, progress: Map<NodeId, Progress>): void {
    this.config = config;
    this.progress = progress;
    for (const [id, pr] of progress) pr.isLearner = config.learners.includes(id);
    this.ids = [...progress.keys()].sort(compareIds);
    this.voterIds = sortedUnion(config.voters, config.votersOutgoing);
    this.checkInvariants();
  }

  confState(): ConfState {
    return toConfState(this.config);
  }

  isSingleton(): boolean {
    return this.config.voters.length === 1 && this.config.votersOutgoing.length === 0;
  }

  /** The largest index replicated on a quorum (joint-aware). */
  committed(): number {
    return jointCommittedIndex(
      this.config.voters,
      this.config.votersOutgoing,
      this.matchOf,
      this.scratch,
    );
  }

  /** The largest tick by which a quorum of voters had answered (for the leader lease). */
  quorumResponseTick(): number {
    return jointCommittedIndex(
      this.config.voters,
      this.config.votersOutgoing,
      this.responseTickOf,
      this.scratch,
    );
  }

  /** True when a quorum of voters was recently active (CheckQuorum). */
  quorumActive(): boolean {
    const votes = this.activeScratch;
    votes.clear();
    for (const [id, pr] of this.progress) {
      if (!pr.isLearner) votes.set(id, pr.recentActive);
    }
    return (
      jointVoteResult(this.config.voters, this.config.votersOutgoing, votes) === VoteResult.Won
    );
  }

  resetVotes(): void {
    this.votes.clear();
  }

  /** Records the first answer of `id`; later answers from the same voter are ignored. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voterIds) {
      const vote = this.votes.get(id);
      if (vote === undefined) continue;
      if (vote) granted++;
      else rejected++;
    }
    const result = jointVoteResult(this.config.voters, this.config.votersOutgoing, this.votes);
    return { granted, rejected, result };
  }

  isVoter(id: NodeId): boolean {
    return isVoterIn(this.config, id);
  }

  checkInvariants(): void {
    const c = this.config;
    for (const id of c.learners) {
      assert(!c.voters.includes(id), `learner ${id} is also an incoming voter`);
      assert(!c.votersOutgoing.includes(id), `learner ${id} is also an outgoing voter`);
      assert(this.progress.get(id)?.isLearner === true, `learner ${id} lacks learner progress`);
    }
    for (const id of c.learnersNext) {
      assert(c.votersOutgoing.includes(id), `next learner ${id} is not an outgoing voter`);
      assert(this.progress.get(id)?.isLearner === false, `next learner ${id} marked learner`);
    }
    for (const id of this.voterIds) {
      assert(this.progress.get(id)?.isLearner === false, `voter ${id} lacks voter progress`);
    }
    assert(
      this.progress.size === this.voterIds.length + c.learners.length,
      'progress map does not match the configuration',
    );
    if (!isJoint(c)) assert(c.learnersNext.length === 0 && !c.autoLeave, 'non-joint auto-leave');
  }
}

export function compareIds(a: NodeId, b: NodeId): number {
  return a - b;
}

function sortedUnion(a: readonly NodeId[], b: readonly NodeId[]): NodeId[] {
  const out = [...a];
  for (const id of b) if (!out.includes(id)) out.push(id);
  return out.sort(compareIds);
}
