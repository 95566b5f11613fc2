/**
 * One redundancy round, pure: every decision the member's redundancy driver
 * (src/server/redundancy.ts) carries out is made here. The driver observes (raft status,
 * registry, last-heard times), calls `planRound` every POLICY_INTERVAL_MS and carries out the
 * act it returns (propose a conf change or a registry entry, transfer leadership); what the
 * rounds remember in between is the PolicyMemory (memory.ts). No clock, no I/O.
 *
 * A round, on every member:
 *   note      the registry's unstaged warm standbys: refreshes, whoever led (memory.ts);
 *   observe   only on a leader among its own voters (one leading only to hand over plans
 *             nothing): feed the failure detector (one per term: health.ts) and build the view,
 *             its quorum from the last-heard times (health.ts quorumHeard);
 *   decide    nothing while an act is in flight (one at a time); else, first that applies:
 *             1. the planner's action (policy.ts planRedundancy), where
 *                - an unstage of a standby whose refresh is in progress waits until it caught up
 *                  or WARM_REFRESH_TIMEOUT_MS passed (memory.holdRefresh); an unstage of a warm
 *                  standby caught up is a refresh to record;
 *                - a warm refresh (send-snapshot) is carried out as a membership change: the
 *                  standby is staged as a learner (AddLearnerNode), Raft's catch-up ships it the
 *                  latest snapshot or the entries it lacks, and rule 3 unstages it once caught up
 *                  (so it waits, as any change, while one is pending or there is no quorum);
 *             2. a leadership transfer, at most one per LEADER_TRANSFER_COOLDOWN_ELECTIONS
 *                election timeouts (no ping-pong): away from a leader the trim would demote
 *                (policy.ts planTrimTransfer), else to the preferred zone (planLeaderZone);
 *             3. a completed refresh to record (record-refresh, wall-clock time);
 *             4. a health transition to record (record-health), so every member's status
 *                shows the leader's view.
 *
 * Safety: the planner never plans a membership change without a healthy quorum in the current
 * and the resulting configuration; `act` asserts it again before handing a change out.
 */
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  type NodeId,
  type RaftStatus,
  StateType,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import { encodeChangeContext, type RegistryCommand, type RegistryCommandKind } from './commands.js';
import { healthRecords, observationsFrom, quorumHeard } from './health.js';
import type { PolicyMemory } from './memory.js';
import {
  type ConfChangeAction,
  type ConfChangeStep,
  lagOf,
  type ManualOp,
  membershipBlocked,
  planLeaderZone,
  planManual,
  planRedundancy,
  planTrimTransfer,
  quorumRefusal,
  type RedundancyAction,
  type RedundancyPolicy,
  type RedundancyView,
  viewFrom,
  votersAfter,
} from './policy.js';
import type { MemberRecord } from './registry.js';

/** At most one leader-zone transfer per this many election timeouts (no ping-pong). */
export const LEADER_TRANSFER_COOLDOWN_ELECTIONS = 5;

export interface RoundSettings {
  readonly policy: RedundancyPolicy;
  /** The election timeout (ms): CheckQuorum's window, and the unit of the transfer cooldown. */
  readonly electionTimeoutMs: number;
  /** `replication.preferLeaderZone`: the leader hands leadership to a voter of this zone. */
  readonly preferLeaderZone: string | null;
}

/** What the driver observes of its member at one instant. */
export interface Observed {
  /** The member's clock (ms). */
  readonly nowMs: number;
  /** Wall-clock ms since the epoch, for the registry's refresh records (read across processes). */
  readonly wallNowMs: number;
  /** The member believes it leads (its last soft state). */
  readonly isLeader: boolean;
  readonly status: RaftStatus;
  /** Every registered member (`registry.all()`), standbys outside the configuration included. */
  readonly members: readonly MemberRecord[];
  /** When a message from each peer last arrived here (member clock). */
  readonly lastHeardMs: ReadonlyMap<NodeId, number>;
  /** A membership change was proposed and is not applied yet. */
  readonly pendingConfChange: boolean;
  /** An act this driver carried out is not resolved yet (proposed, neither applied nor failed). */
  readonly actInFlight: boolean;
}

/** What the driver carries out; `event` names it in PolicyEvents and metrics. */
export type Act =
  | {
      readonly kind: 'conf-change';
      /** The planner's step, or 'warm-refresh' (a warm standby staged for a refresh). */
      readonly event: ConfChangeStep | 'warm-refresh';
      readonly change: ConfChange;
      readonly reason: string;
    }
  | {
      readonly kind: 'registry';
      readonly event: RegistryCommandKind;
      readonly command: RegistryCommand;
      readonly reason: string;
    }
  | {
      readonly kind: 'transfer-leader';
      readonly event: 'transfer-leader';
      readonly to: NodeId;
      readonly reason: string;
    };

/** What a member sees before it decides. */
export interface ObservedView {
  /** The leader's view (null: this member plans nothing: not leading, or handing over). */
  readonly view: RedundancyView | null;
  /** Why there is no view ('' when there is one). */
  readonly note: string;
}

export interface RoundResult extends ObservedView {
  readonly act: Act | null;
  /** What the round did, or why it did nothing (traces, golden files). */
  readonly note: string;
}

/** One policy round: observe, then decide (see the header). */
export function planRound(memory: PolicyMemory, s: RoundSettings, o: Observed): RoundResult {
  memory.noteRegistry(o.members, o.nowMs);
  const seen = observeRound(memory, s, o);
  if (seen.view === null) {
    memory.dropRefreshRecords(); // the next leader's to find out
    return { ...seen, act: null };
  }
  if (o.actInFlight) return { ...seen, act: null, note: 'an act is in flight' };
  return { ...seen, ...decide(memory, s, seen.view, o) };
}

/**
 * The leader's view of this instant, with the failure detector fed; no view on a member that
 * does not lead, or leads only to hand over (removed or demoted by a change it applied: raft's
 * handover to a voter of the new configuration; the configuration is no longer its to plan).
 */
export function observeRound(memory: PolicyMemory, s: RoundSettings, o: Observed): ObservedView {
  const none = (note: string): ObservedView => ({ view: null, note });
  if (!o.isLeader) {
    memory.stopLeading();
    return none('not the leader');
  }
  const status = o.status;
  if (status.raftState !== StateType.Leader) return none('raft no longer leads');
  const { voters, votersOutgoing } = status.config;
  if (!voters.includes(status.id) && !votersOutgoing.includes(status.id)) {
    memory.stopLeading();
    return none('leading only to hand over: not a voter');
  }
  const detector = memory.lead(status.term, o.members, o.nowMs, s.policy);
  memory.endRefreshes(o.members, o.nowMs);
  const observations = observationsFrom(o.members, status.progress, o.lastHeardMs, o.nowMs);
  detector.observe(o.nowMs, status.commit, observations);
  const view = viewFrom(status, o.members, detector.view(), {
    pendingConfChange: o.pendingConfChange,
    quorumActive: quorumHeard(
      status.config,
      status.id,
      o.lastHeardMs,
      o.nowMs,
      s.electionTimeoutMs,
    ),
    lastSnapshotSentMs: memory.refreshedMs,
    wallNowMs: o.wallNowMs,
  });
  // Standbys outside the configuration hear nothing from Raft: the leader probes them every
  // heartbeat interval (src/server/role.ts), and their answers land in lastHeardMs.
  return { view, note: '' };
}

/** The leader's decision (rules 1-4 of the header), with the memory updated for it. */
function decide(
  memory: PolicyMemory,
  s: RoundSettings,
  view: RedundancyView,
  o: Observed,
): { act: Act | null; note: string } {
  const action = planRedundancy(view, s.policy, o.nowMs);
  if (action !== null) return planned(memory, s, view, o, action);
  const cooldownMs = LEADER_TRANSFER_COOLDOWN_ELECTIONS * s.electionTimeoutMs;
  if (memory.transferAllowed(o.nowMs, cooldownMs)) {
    const transfer =
      planTrimTransfer(view, s.policy, o.nowMs) ??
      planLeaderZone(view, s.preferLeaderZone, s.policy.catchUpEntriesMax);
    if (transfer !== null) {
      memory.noteTransfer(o.nowMs);
      const act: Act = { kind: 'transfer-leader', event: 'transfer-leader', ...transfer };
      return { act, note: act.reason };
    }
  }
  const refresh = memory.nextRefreshRecord(view.members);
  if (refresh !== null) return registryAct(refresh, 'warm refresh record');
  const health = healthRecords(view.members, view.health)[0];
  if (health !== undefined) return registryAct(health, 'health record');
  return { act: null, note: 'nothing to do' };
}

function registryAct(command: RegistryCommand, reason: string): { act: Act; note: string } {
  return { act: { kind: 'registry', event: command.kind, command, reason }, note: reason };
}

/** Rule 1: the planner's action, held or carried out as the header says. */
function planned(
  memory: PolicyMemory,
  s: RoundSettings,
  view: RedundancyView,
  o: Observed,
  action: RedundancyAction,
): { act: Act | null; note: string } {
  if (action.kind === 'conf-change' && action.step === 'unstage') {
    const id = action.change.changes[0]!.nodeId;
    const lag = lagOf(view, id);
    const hold = memory.holdRefresh(id, lag, s.policy.catchUpEntriesMax, o.nowMs);
    if (hold !== null) return { act: null, note: hold };
    const m = view.members.find((r) => r.id === id);
    if (m?.standbyMode === 'warm' && lag <= s.policy.catchUpEntriesMax) {
      memory.noteCaughtUp(id, o.wallNowMs);
    }
  }
  if (action.kind === 'send-snapshot') {
    // A refresh is a membership change here: none while another is pending, nor without a
    // quorum, like any other.
    const blocked = membershipBlocked(view, s.policy);
    if (blocked !== null) return { act: null, note: `warm refresh waits: ${blocked}` };
  }
  const act = actFor(view, s.policy, o, action);
  if (action.kind === 'send-snapshot') memory.startRefresh(action.to, o.nowMs);
  return { act, note: act.reason };
}

/**
 * An operator's request (`tandem member promote|demote|standby NAME`) on the leader's `view`:
 * the act to carry out, or a PolicyError saying why not.
 */
export function manualAct(
  view: RedundancyView,
  s: RoundSettings,
  o: Observed,
  op: ManualOp,
  name: string,
): Act {
  const pendingConfChange = view.pendingConfChange || o.actInFlight;
  const action = planManual({ ...view, pendingConfChange }, s.policy, op, name, o.nowMs);
  assert(action.kind !== 'send-snapshot', 'an operator request is a change or a registry entry');
  return actFor(view, s.policy, o, action);
}

/** How a planned action is carried out; a membership change is checked once more first. */
function actFor(
  view: RedundancyView,
  policy: RedundancyPolicy,
  o: Observed,
  action: RedundancyAction,
): Act {
  switch (action.kind) {
    case 'conf-change':
      assertSafe(view, policy, o, action);
      return {
        kind: 'conf-change',
        event: action.step,
        change: action.change,
        reason: action.reason,
      };
    case 'registry':
      return {
        kind: 'registry',
        event: action.command.kind,
        command: action.command,
        reason: action.reason,
      };
    case 'send-snapshot':
      assertSafe(view, policy, o, null);
      return {
        kind: 'conf-change',
        event: 'warm-refresh',
        change: refreshChange(action.to, o.nowMs),
        reason: action.reason,
      };
  }
}

/** A warm refresh: the standby joins as a learner, for Raft to catch it up. */
export function refreshChange(to: NodeId, nowMs: number): ConfChange {
  return {
    transition: ConfChangeTransition.Auto,
    changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: to }],
    context: encodeChangeContext({ atMs: nowMs, commands: [] }),
  };
}

/**
 * The planner's guarantee, checked again where it matters: one change at a time, with a quorum
 * (null: a warm refresh, which adds a learner). Injected bugs do not weaken it: the simulator
 * relies on this assertion to catch the planner's `double-promote`.
 */
function assertSafe(
  view: RedundancyView,
  policy: RedundancyPolicy,
  o: Observed,
  action: ConfChangeAction | null,
): void {
  const strict = { ...policy, bugs: new Set<never>() };
  const reason = action?.reason ?? 'warm refresh';
  assert(!o.actInFlight, 'one policy action at a time');
  assert(membershipBlocked(view, strict) === null, `conf change while blocked: ${reason}`);
  if (action === null) return;
  const after = votersAfter(view.config.voters, action.change.changes);
  assert(
    quorumRefusal(view, view.config.voters, after) === null,
    `conf change without a quorum: ${action.reason}`,
  );
}
