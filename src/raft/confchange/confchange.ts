/**
 * Membership changes as pure functions from (configuration, progress) to a new pair
 * (etcd-io/raft confchange/confchange.go; Raft thesis §4.3 joint consensus). Nothing is mutated:
 * the caller installs the result when the change entry is applied.
 */
import { RaftError } from '../errors.js';
import { Progress } from '../tracker/progress.js';
import {
  compareIds,
  EMPTY_TRACKER_CONFIG,
  isJoint,
  type TrackerConfig,
} from '../tracker/tracker.js';
import {
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  type NodeId,
} from '../types.js';

export interface ChangeResult {
  readonly config: TrackerConfig;
  readonly progress: Map<NodeId, Progress>;
}

/** What a change starts from: the current configuration and the leader's last log index. */
export interface ChangeBase {
  readonly config: TrackerConfig;
  readonly progress: ReadonlyMap<NodeId, Progress>;
  readonly lastIndex: number;
  readonly maxInflightMsgs: number;
}

interface MutableConfig {
  voters: Set<NodeId>;
  votersOutgoing: Set<NodeId>;
  learners: Set<NodeId>;
  learnersNext: Set<NodeId>;
  autoLeave: boolean;
}

/** An empty `changes` list means "leave the joint configuration". */
export function isLeaveJoint(cc: ConfChange): boolean {
  return cc.changes.length === 0;
}

/**
 * Whether `cc` enters a joint configuration, and if so whether it leaves it automatically.
 * Auto uses joint consensus when more than one voter changes or a voter is demoted (a demoted
 * voter must keep counting in the outgoing quorum until the change is committed).
 */
export function jointMode(
  cc: ConfChange,
  config: TrackerConfig,
): { enter: boolean; autoLeave: boolean } {
  if (cc.transition === ConfChangeTransition.JointImplicit) return { enter: true, autoLeave: true };
  if (cc.transition === ConfChangeTransition.JointExplicit) {
    return { enter: true, autoLeave: false };
  }
  if (cc.changes.length > 1) return { enter: true, autoLeave: true };
  const only = cc.changes[0];
  const demotes =
    only !== undefined &&
    only.type === ConfChangeType.AddLearnerNode &&
    config.voters.includes(only.nodeId);
  return { enter: demotes, autoLeave: demotes };
}

/** Applies `cc` (simple, enter-joint or leave-joint) to `base`. Throws INVALID_CONF_CHANGE. */
export function applyChange(base: ChangeBase, cc: ConfChange): ChangeResult {
  if (isLeaveJoint(cc)) return leaveJoint(base);
  const mode = jointMode(cc, base.config);
  if (mode.enter) return enterJoint(base, mode.autoLeave, cc.changes);
  return simple(base, cc.changes);
}

export function enterJoint(
  base: ChangeBase,
  autoLeave: boolean,
  changes: readonly ConfChangeSingle[],
): ChangeResult {
  const { cfg, progress } = copy(base);
  if (isJoint(base.config)) fail('config is already joint');
  if (cfg.voters.size === 0) fail("can't make a zero-voter config joint");
  cfg.votersOutgoing = new Set(cfg.voters);
  applySingles(base, cfg, progress, changes);
  cfg.autoLeave = autoLeave;
  return finish(cfg, progress);
}

export function leaveJoint(base: ChangeBase): ChangeResult {
  const { cfg, progress } = copy(base);
  if (!isJoint(base.config)) fail("can't leave a non-joint config");
  for (const id of cfg.learnersNext) cfg.learners.add(id);
  cfg.learnersNext.clear();
  for (const id of cfg.votersOutgoing) {
    if (!cfg.voters.has(id) && !cfg.learners.has(id)) progress.delete(id);
  }
  cfg.votersOutgoing.clear();
  cfg.autoLeave = false;
  return finish(cfg, progress);
}

/** A change of at most one voter, outside joint consensus (Raft thesis §4.1). */
export function simple(base: ChangeBase, changes: readonly ConfChangeSingle[]): ChangeResult {
  const { cfg, progress } = copy(base);
  if (isJoint(base.config)) fail("can't apply simple config change in joint config");
  for (const change of changes) {
    if (change.type === ConfChangeType.AddLearnerNode && cfg.voters.has(change.nodeId)) {
      fail(`demoting voter ${change.nodeId} needs joint consensus`);
    }
  }
  applySingles(base, cfg, progress, changes);
  let changed = 0;
  for (const id of base.config.voters) if (!cfg.voters.has(id)) changed++;
  for (const id of cfg.voters) if (!base.config.voters.includes(id)) changed++;
  if (changed > 1) fail('more than one voter changed without entering joint config');
  return finish(cfg, progress);
}

/** Rebuilds a configuration from a ConfState (restart, snapshot), as etcd's confchange.Restore. */
export function restore(base: ChangeBase, cs: ConfState): ChangeResult {
  const add = (type: ConfChangeType, nodeId: NodeId): ConfChangeSingle => ({ type, nodeId });
  const incoming: ConfChangeSingle[] = [];
  for (const id of cs.votersOutgoing) incoming.push(add(ConfChangeType.RemoveNode, id));
  for (const id of cs.voters) incoming.push(add(ConfChangeType.AddNode, id));
  for (const id of cs.learners) incoming.push(add(ConfChangeType.AddLearnerNode, id));
  for (const id of cs.learnersNext) incoming.push(add(ConfChangeType.AddLearnerNode, id));
  let current: ChangeBase = { ...base, config: EMPTY_TRACKER_CONFIG, progress: new Map() };
  const step = (result: ChangeResult): void => {
    current = { ...current, config: result.config, progress: result.progress };
  };
  if (cs.votersOutgoing.length === 0) {
    // One simple change per id: each adds at most one voter.
    for (const change of incoming) step(simple(current, [change]));
  } else {
    // Build the outgoing config first, then enter joint with the incoming one.
    for (const id of cs.votersOutgoing) step(simple(current, [add(ConfChangeType.AddNode, id)]));
    step(enterJoint(current, cs.autoLeave, incoming));
  }
  return { config: current.config, progress: current.progress as Map<NodeId, Progress> };
}

function applySingles(
  base: ChangeBase,
  cfg: MutableConfig,
  progress: Map<NodeId, Progress>,
  changes: readonly ConfChangeSingle[],
): void {
  for (const change of changes) {
    const id = change.nodeId;
    if (id === 0) continue;
    switch (change.type) {
      case ConfChangeType.AddNode:
        makeVoter(base, cfg, progress, id);
        break;
      case ConfChangeType.AddLearnerNode:
        makeLearner(base, cfg, progress, id);
        break;
      case ConfChangeType.RemoveNode:
        remove(cfg, progress, id);
        break;
      default:
        fail(`unknown change type ${String(change.type)}`);
    }
  }
  if (cfg.voters.size === 0) fail('removed all voters');
}

function makeVoter(
  base: ChangeBase,
  cfg: MutableConfig,
  progress: Map<NodeId, Progress>,
  id: NodeId,
): void {
  const pr = progress.get(id);
  if (pr === undefined) {
    initProgress(base, cfg, progress, id, false);
    return;
  }
  cfg.learners.delete(id);
  cfg.learnersNext.delete(id);
  cfg.voters.add(id);
}

function makeLearner(
  base: ChangeBase,
  cfg: MutableConfig,
  progress: Map<NodeId, Progress>,
  id: NodeId,
): void {
  const pr = progress.get(id);
  if (pr === undefined) {
    initProgress(base, cfg, progress, id, true);
    return;
  }
  if (cfg.learners.has(id)) return;
  remove(cfg, progress, id);
  progress.set(id, pr); // keep the replication progress of the demoted voter
  // Still an outgoing voter: it becomes a learner only when the joint config is left.
  if (cfg.votersOutgoing.has(id)) cfg.learnersNext.add(id);
  else cfg.learners.add(id);
}

function remove(cfg: MutableConfig, progress: Map<NodeId, Progress>, id: NodeId): void {
  if (!progress.has(id)) return;
  cfg.voters.delete(id);
  cfg.learners.delete(id);
  cfg.learnersNext.delete(id);
  // An outgoing voter keeps its progress: it still counts in the outgoing quorum.
  if (!cfg.votersOutgoing.has(id)) progress.delete(id);
}

function initProgress(
  base: ChangeBase,
  cfg: MutableConfig,
  progress: Map<NodeId, Progress>,
  id: NodeId,
  isLearner: boolean,
): void {
  if (isLearner) cfg.learners.add(id);
  else cfg.voters.add(id);
  // Probe from the leader's last index; the follower's rejection hint walks it back.
  progress.set(id, new Progress(Math.max(base.lastIndex, 1), base.maxInflightMsgs, isLearner));
}

/** Copies the configuration and each Progress, so the base stays untouched on failure. */
function copy(base: ChangeBase): { cfg: MutableConfig; progress: Map<NodeId, Progress> } {
  const cfg: MutableConfig = {
    voters: new Set(base.config.voters),
    votersOutgoing: new Set(base.config.votersOutgoing),
    learners: new Set(base.config.learners),
    learnersNext: new Set(base.config.learnersNext),
    autoLeave: base.config.autoLeave,
  };
  // Progress objects are shared and never mutated here: ProgressTracker.setConfig sets each
  // `isLearner` flag when the result is installed, so a failed or dry-run change leaves no trace.
  const progress = new Map(base.progress);
  return { cfg, progress };
}

function finish(cfg: MutableConfig, progress: Map<NodeId, Progress>): ChangeResult {
  const sorted = (s: Set<NodeId>): NodeId[] => [...s].sort(compareIds);
  const config: TrackerConfig = {
    voters: sorted(cfg.voters),
    votersOutgoing: sorted(cfg.votersOutgoing),
    learners: sorted(cfg.learners),
    learnersNext: sorted(cfg.learnersNext),
    autoLeave: cfg.autoLeave,
  };
  return { config, progress };
}

function fail(message: string): never {
  throw new RaftError('INVALID_CONF_CHANGE', message);
}
