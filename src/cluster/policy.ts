/**
 * The redundancy policy: pure functions from the leader's observed state to the next action
 * (DESIGN.md "Roles", issue 5). No I/O, no timers, no clock: time comes in as `nowMs`.
 *
 * How a member wires it: src/cluster/round.ts does (planRound, on the leader only; followers
 * only take note of the registry), and the member's driver (src/server/redundancy.ts) carries
 * out the act it returns. In outline:
 *
 *   const detector = new FailureDetector(policy);        // one per leadership term
 *   detector.seed(registry.all(), nowMs);                // continue the recorded clocks
 *   every round (POLICY_INTERVAL_MS):
 *     detector.observe(nowMs, status.commit,
 *       observationsFrom(registry.all(), status.progress, lastHeardMs, nowMs));
 *     const view = viewFrom(status, registry.all(), detector.view(),
 *       { pendingConfChange, quorumActive: quorumHeard(...), lastSnapshotSentMs, wallNowMs });
 *     const action = planRedundancy(view, policy, nowMs);
 *     conf-change   -> rawNode.proposeConfChange(action.change); the entry, when applied, goes
 *                      to registry.applyConfChange(confState, change) (its context carries the
 *                      role records); pendingConfChange stays true until then
 *     registry      -> propose encodeRegistryCommand(action.command); apply with
 *                      registry.applyCommand (a RegistryError = a rejected no-op)
 *     send-snapshot -> a warm refresh, carried out as a membership change: the standby is
 *                      staged as a learner (AddLearnerNode, round.ts refreshChange), Raft's
 *                      catch-up ships it the latest snapshot or the entries it lacks, and rule 3
 *                      unstages it (RemoveNode) once it trails the commit index by at most
 *                      catchUpEntriesMax, or after WARM_REFRESH_TIMEOUT_MS (memory.ts); the
 *                      caught-up unstage is recorded (record-refresh, wall-clock time), which
 *                      `lastRefreshMs` reads. No side channel: the snapshot transfer is Raft's,
 *                      and a standby being refreshed is already staged should a voter fail.
 *   otherwise a leader-zone transfer (planLeaderZone), then healthRecords(registry.all(),
 *   detector.view()) so every member's `tandem status` shows the leader's health view.
 *   operators: planManual(view, policy, 'promote' | 'demote' | 'standby', name, nowMs) returns
 *   an action to carry out the same way, or throws a PolicyError saying why not.
 *
 * Rules, in priority order (one membership change at a time; none while a change is pending or
 * the configuration is joint; none unless the leader heard from a quorum recently and the current
 * voters include a healthy quorum):
 *
 *   1. Replace: a voter unreachable for `replaceAfterMs` is replaced by the best standby (one
 *      ready to promote now first; then hot before warm before cold, a learner staged for
 *      promotion counting as hot; the failed voter's zone first when `preferSameZone`; the most
 *      caught-up first). A standby in the Raft configuration that is healthy and caught up is
 *      promoted and the voter demoted in ONE joint change (JointImplicit: AddNode(standby) + the
 *      voter's demotion). A warm or cold standby
 *      outside the configuration is first added as a learner ("stage"); it is promoted on a
 *      later tick, once caught up. The demoted voter becomes a standby of its configured mode:
 *      hot -> AddLearnerNode (stays a learner), warm/cold -> RemoveNode (leaves the configuration,
 *      stays registered).
 *   2. Restore: fewer voters than `voters` -> promote (AddNode, a simple change) the best healthy
 *      caught-up standby, staging one first if needed. A member demoted earlier is not a
 *      candidate here: it is promoted again only to replace a failed voter (or by an operator).
 *   3. Trim: more voters than `voters`, every voter healthy (and no voter awaiting a
 *      replacement) -> the surplus the policy itself promoted goes back to the standbys, one
 *      change at a time: the most recently promoted voter first, demoted to a standby of its
 *      configured mode (as rule 1 demotes; it is promoted again only to replace a failed voter),
 *      and only when the resulting configuration keeps a healthy quorum. Voters an operator put
 *      there (founders, etcd's MemberAdd and MemberPromote, `tandem member promote`) are never
 *      trimmed: `member add` of a voter that runs keeps the cluster at one voter more, as on
 *      etcd. So the surplus a replacement leaves behind is undone: a voter added by `member add`
 *      but not started within replaceAfter is replaced by a standby (rule 1); once it starts (it
 *      is then a standby) or is removed, the promoted standby returns to the standbys and the
 *      cluster is back at `voters`. The leader is not demoted: when it is the only voter to
 *      trim, it hands leadership to another healthy, caught-up voter first (planTrimTransfer).
 *   4. Placement: a warm/cold standby left staged with no need for it goes back outside
 *      (RemoveNode); a replica or hot standby outside the configuration is added as a learner.
 *   5. Warm standbys are refreshed (send-snapshot: staged until caught up, above) every
 *      `snapshotEveryMs` (their own setting), most overdue first, counted from the later of this
 *      leader's last refresh and the registry's recorded one (`lastRefreshMs`: a new leader does
 *      not refresh them all at once); cold standbys hold nothing.
 *
 * Every resulting configuration keeps a healthy quorum: the healthy voters of the old and the new
 * configuration (both count during joint consensus) are checked before a change is planned.
 */
import {
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  type NodeId,
  type RaftStatus,
} from '../raft/types.js';
import { assert, assertUint } from '../util/assert.js';
import { TandemError } from '../util/errors.js';
import { encodeChangeContext, type RegistryCommand } from './commands.js';
import type { DetectorLimits, MemberHealth, PolicyBugName } from './health.js';
import { type MemberRecord, restingPlacement, wasDemoted } from './registry.js';

// ---------------------------------------------------------------------------------------------
// Policy and limits

/**
 * The largest voter set (config, policy and simulator alike): more voters add latency, not
 * safety; odd counts only, as an even one adds a member without adding fault tolerance.
 */
export const VOTERS_MAX = 7;
/** `redundancy.replaceAfter` at most: a day. */
export const REPLACE_AFTER_MS_MAX = 24 * 3600_000;

export interface RedundancyPolicy extends DetectorLimits {
  /** The replication factor: how many voters the cluster should have. */
  readonly voters: number;
  /** A voter unreachable this long is replaced by a standby. */
  readonly replaceAfterMs: number;
  /** Replace a failed voter with a standby of its own zone when there is one. */
  readonly preferSameZone: boolean;
  /** A learner trailing the commit index by at most this many entries may be promoted. */
  readonly catchUpEntriesMax: number;
}

export const POLICY_DEFAULTS: RedundancyPolicy = Object.freeze({
  voters: 3,
  replaceAfterMs: 10_000,
  preferSameZone: true,
  silentAfterMs: 2_000,
  stabilityMs: 5_000,
  lagEntriesMax: 1_000,
  catchUpEntriesMax: 100,
});

export type PolicyErrorCode =
  | 'BAD_POLICY'
  | 'UNKNOWN_MEMBER'
  | 'CHANGE_PENDING'
  | 'NO_QUORUM'
  | 'ALREADY_VOTER'
  | 'NOT_A_VOTER'
  | 'ALREADY_STANDBY'
  | 'NOT_CAUGHT_UP'
  | 'UNREACHABLE'
  | 'IS_LEADER'
  | 'TOO_MANY_VOTERS';
export class PolicyError extends TandemError<PolicyErrorCode> {}

/** A validated policy: defaults for what is not given; a PolicyError names a bad field. */
export function makePolicy(overrides: Partial<RedundancyPolicy> = {}): RedundancyPolicy {
  const p: RedundancyPolicy = { ...POLICY_DEFAULTS, ...overrides };
  const bad = (field: string, expected: string, got: unknown): never => {
    throw new PolicyError('BAD_POLICY', `policy.${field}: expected ${expected}, got ${got}`);
  };
  const int = (v: number) => Number.isSafeInteger(v) && v >= 0;
  if (!int(p.voters) || p.voters < 1 || p.voters > VOTERS_MAX || p.voters % 2 === 0) {
    bad('voters', `an odd number between 1 and ${VOTERS_MAX}`, p.voters);
  }
  if (!int(p.replaceAfterMs) || p.replaceAfterMs === 0 || p.replaceAfterMs > REPLACE_AFTER_MS_MAX)
    bad('replaceAfterMs', `an integer in [1, ${REPLACE_AFTER_MS_MAX}]`, p.replaceAfterMs);
  if (!int(p.silentAfterMs) || p.silentAfterMs === 0) {
    bad('silentAfterMs', 'a positive integer', p.silentAfterMs);
  }
  if (!int(p.stabilityMs)) bad('stabilityMs', 'a non-negative integer', p.stabilityMs);
  if (!int(p.lagEntriesMax)) bad('lagEntriesMax', 'a non-negative integer', p.lagEntriesMax);
  // A learner caught up enough to promote must not count as lagging at the same time.
  if (!int(p.catchUpEntriesMax) || p.catchUpEntriesMax > p.lagEntriesMax) {
    bad(
      'catchUpEntriesMax',
      `an integer in [0, lagEntriesMax=${p.lagEntriesMax}]`,
      p.catchUpEntriesMax,
    );
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// What the planner sees and what it returns

/** The leader's view of the cluster at one instant. */
export interface RedundancyView {
  readonly leaderId: NodeId;
  /** Every registered member (`registry.all()`), standbys outside the configuration included. */
  readonly members: readonly MemberRecord[];
  /** The applied Raft configuration. */
  readonly config: ConfState;
  readonly commit: number;
  /** The leader's replication progress per member in the configuration (RaftStatus.progress). */
  readonly progress: ReadonlyMap<NodeId, { readonly match: number }>;
  /** A membership change was proposed and is not applied yet. */
  readonly pendingConfChange: boolean;
  /** The leader heard from a quorum within the last election timeout (health.ts quorumHeard). */
  readonly quorumActive: boolean;
  /** The failure detector's view (`FailureDetector.view()`). */
  readonly health: ReadonlyMap<NodeId, MemberHealth>;
  /** When each warm standby last got the log, as far as this leader knows (memory.ts). */
  readonly lastSnapshotSentMs: ReadonlyMap<NodeId, number>;
  /**
   * Wall-clock now (ms since the epoch), to age the registry's `lastRefreshAtMs`; absent: the
   * leader's clock is the wall clock (the simulator's shared virtual time).
   */
  readonly wallNowMs?: number;
}

/** Builds a view from the leader's RaftStatus; the rest is what the member loop tracks. */
export function viewFrom(
  status: RaftStatus,
  members: readonly MemberRecord[],
  health: ReadonlyMap<NodeId, MemberHealth>,
  extra: Pick<
    RedundancyView,
    'pendingConfChange' | 'quorumActive' | 'lastSnapshotSentMs' | 'wallNowMs'
  >,
): RedundancyView {
  const { lead: leaderId, commit, config, progress } = status;
  return { leaderId, members, config, commit, progress, health, ...extra };
}

export type ConfChangeStep =
  | 'replace'
  | 'stage'
  | 'restore'
  | 'trim'
  | 'unstage'
  | 'add-learner'
  | 'promote'
  | 'demote'
  | 'standby';

/** Propose `change` (its context carries `commands`, applied with it by the registry). */
export interface ConfChangeAction {
  readonly kind: 'conf-change';
  readonly step: ConfChangeStep;
  readonly change: ConfChange;
  readonly commands: readonly RegistryCommand[];
  /** The member that becomes a voter, if any. */
  readonly promote: NodeId | null;
  /** The voter that stops being one, if any. */
  readonly demote: NodeId | null;
  readonly reason: string;
}

/** Propose `command` as a registry entry of its own. */
export interface RegistryAction {
  readonly kind: 'registry';
  readonly command: RegistryCommand;
  readonly reason: string;
}

/**
 * Refresh a warm standby now (replication at scheduled intervals): carried out by staging it as
 * a learner for Raft to catch up (see the header), not by a snapshot sent on the side.
 */
export interface SnapshotAction {
  readonly kind: 'send-snapshot';
  readonly to: NodeId;
  readonly reason: string;
}

export type RedundancyAction = ConfChangeAction | RegistryAction | SnapshotAction;

// ---------------------------------------------------------------------------------------------
// Small facts about the view

export function quorumOf(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

function bug(policy: RedundancyPolicy, name: PolicyBugName): boolean {
  return policy.bugs?.has(name) ?? false;
}

/** The leader counts as healthy: it is the one observing. */
export function isHealthy(view: RedundancyView, id: NodeId): boolean {
  return id === view.leaderId || view.health.get(id)?.state === 'healthy';
}

function isReachable(view: RedundancyView, id: NodeId): boolean {
  const state = view.health.get(id)?.state;
  return id === view.leaderId || (state !== undefined && state !== 'unreachable');
}

/** Entries the member trails the commit index by; Infinity outside the configuration. */
export function lagOf(view: RedundancyView, id: NodeId): number {
  const pr = view.progress.get(id);
  return pr === undefined ? Number.POSITIVE_INFINITY : Math.max(0, view.commit - pr.match);
}

function memberOf(view: RedundancyView, id: NodeId): MemberRecord | undefined {
  return view.members.find((m) => m.id === id);
}

function nameOf(view: RedundancyView, id: NodeId): string {
  return memberOf(view, id)?.name || `member ${id}`;
}

function healthyCount(view: RedundancyView, voters: Iterable<NodeId>): number {
  let n = 0;
  for (const id of voters) if (isHealthy(view, id)) n++;
  return n;
}

/** The incoming voters after `changes` (the same set arithmetic as raft's confchange). */
export function votersAfter(voters: readonly NodeId[], changes: readonly ConfChangeSingle[]) {
  const out = new Set(voters);
  for (const c of changes) {
    if (c.type === ConfChangeType.AddNode) out.add(c.nodeId);
    else out.delete(c.nodeId);
  }
  return [...out].sort((a, b) => a - b);
}

/**
 * Why going from `before` to `after` voters could leave the cluster unable to commit, or null.
 * During joint consensus both majorities are needed, so both must be healthy.
 */
export function quorumRefusal(
  view: RedundancyView,
  before: readonly NodeId[],
  after: readonly NodeId[],
): string | null {
  for (const [voters, which] of [
    [before, 'the current'],
    [after, 'the resulting'],
  ] as const) {
    const healthy = healthyCount(view, voters);
    const need = quorumOf(voters.length);
    if (voters.length === 0 || healthy < need) {
      return `${which} configuration would have ${healthy} healthy voter${healthy === 1 ? '' : 's'} of ${voters.length} (a quorum needs ${need}): no quorum`;
    }
  }
  return null;
}

/** Why no membership change may be planned now, or null. */
export function membershipBlocked(view: RedundancyView, policy: RedundancyPolicy): string | null {
  // The injected bug skips exactly this rule: the simulator must catch two changes in flight.
  if (view.pendingConfChange && !bug(policy, 'double-promote')) {
    return 'a membership change is pending';
  }
  if (view.config.votersOutgoing.length > 0) return 'the configuration is joint';
  if (!view.quorumActive) return 'the leader has not heard from a quorum recently';
  return quorumRefusal(view, view.config.voters, view.config.voters);
}

// ---------------------------------------------------------------------------------------------
// Standby selection

const MODE_RANK = { hot: 0, warm: 1, cold: 2 } as const;

/**
 * Sort key, smaller is better: ready to promote now (so a ready standby is never passed over for
 * one still catching up), then mode (a staged learner ranks as hot), zone, lag, id.
 */
function standbyKey(
  view: RedundancyView,
  policy: RedundancyPolicy,
  m: MemberRecord,
  zone: string,
): number[] {
  const ready = readyToPromote(view, policy, m) ? 0 : 1;
  const mode = m.placement === 'learner' ? 0 : MODE_RANK[m.standbyMode];
  const otherZone = policy.preferSameZone && zone !== '' && m.zone !== zone ? 1 : 0;
  const lag = lagOf(view, m.id);
  // The injected bug: the least caught-up standby first.
  const lagKey = bug(policy, 'promote-lagging') ? -lag : lag;
  return [ready, mode, otherZone, lagKey, m.id];
}

function compareKeys(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

/** Standbys that could be promoted: reachable, not voting, not excluded. */
function candidates(view: RedundancyView, exclude: (m: MemberRecord) => boolean): MemberRecord[] {
  return view.members.filter(
    (m) =>
      m.role === 'standby' && m.placement !== 'voter' && isReachable(view, m.id) && !exclude(m),
  );
}

/** The best standby to promote in place of a voter of `zone` ('' for none), or null. */
export function bestStandby(
  view: RedundancyView,
  policy: RedundancyPolicy,
  pool: readonly MemberRecord[],
  zone: string,
): MemberRecord | null {
  let best: MemberRecord | null = null;
  let bestKey: number[] = [];
  for (const m of pool) {
    const key = standbyKey(view, policy, m, zone);
    if (best === null || compareKeys(key, bestKey) < 0) [best, bestKey] = [m, key];
  }
  return best;
}

/** A learner that may become a voter now: healthy and caught up with the commit index. */
export function readyToPromote(
  view: RedundancyView,
  policy: RedundancyPolicy,
  m: MemberRecord,
): boolean {
  if (m.placement !== 'learner') return false;
  // The injected bug: promote whoever was picked, caught up or not.
  if (bug(policy, 'promote-lagging')) return isReachable(view, m.id);
  return isHealthy(view, m.id) && lagOf(view, m.id) <= policy.catchUpEntriesMax;
}

// ---------------------------------------------------------------------------------------------
// Planning

/** The next action, or null when there is nothing to do (or nothing may be done) now. */
export function planRedundancy(
  view: RedundancyView,
  policy: RedundancyPolicy,
  nowMs: number,
): RedundancyAction | null {
  checkView(view, nowMs);
  return planMembership(view, policy, nowMs) ?? planSnapshotRefresh(view, nowMs);
}

function checkView(view: RedundancyView, nowMs: number): void {
  assertUint(nowMs, 'nowMs');
  assertUint(view.commit, 'commit');
  assert(
    view.config.voters.includes(view.leaderId) ||
      view.config.votersOutgoing.includes(view.leaderId),
    `the policy runs on the leader, and leader ${view.leaderId} is not a voter`,
  );
}

/** The next membership change (rules 1-3), or null. */
export function planMembership(
  view: RedundancyView,
  policy: RedundancyPolicy,
  nowMs: number,
): ConfChangeAction | null {
  if (membershipBlocked(view, policy) !== null) return null;
  const failed = failedVoters(view, policy, nowMs);
  if (failed.length > 0) {
    return planReplacement(view, policy, failed[0]!, nowMs) ?? planPlacement(view, nowMs, false);
  }
  if (view.config.voters.length < policy.voters) {
    return planRestore(view, policy, nowMs) ?? planPlacement(view, nowMs, false);
  }
  if (view.config.voters.length > policy.voters) {
    const trim = planTrim(view, policy, nowMs);
    if (trim !== null) return trim;
  }
  // A new leader still confirming a recorded failure keeps the standby staged for it.
  return planPlacement(view, nowMs, !awaitingConfirmation(view, policy, nowMs));
}

/**
 * Voters (not the leader) unreachable for at least replaceAfterMs, longest silent first. A
 * silence only the registry recorded (`inherited`: this leader has not found the voter silent
 * itself yet) does not count: the record may be stale.
 */
export function failedVoters(
  view: RedundancyView,
  policy: RedundancyPolicy,
  nowMs: number,
): NodeId[] {
  const failed: { id: NodeId; sinceMs: number }[] = [];
  for (const id of view.config.voters) {
    const h = view.health.get(id);
    if (id === view.leaderId || h === undefined || h.state !== 'unreachable') continue;
    if (h.inherited === true) continue;
    if (nowMs - h.sinceMs >= policy.replaceAfterMs) failed.push({ id, sinceMs: h.sinceMs });
  }
  failed.sort((a, b) => a.sinceMs - b.sinceMs || a.id - b.id);
  return failed.map((f) => f.id);
}

/** A voter the registry records silent for replaceAfterMs, not yet confirmed by this leader. */
function awaitingConfirmation(
  view: RedundancyView,
  policy: RedundancyPolicy,
  nowMs: number,
): boolean {
  return view.config.voters.some((id) => {
    const h = view.health.get(id);
    return h?.inherited === true && nowMs - h.sinceMs >= policy.replaceAfterMs;
  });
}

function planReplacement(
  view: RedundancyView,
  policy: RedundancyPolicy,
  victim: NodeId,
  nowMs: number,
): ConfChangeAction | null {
  const old = memberOf(view, victim);
  const pool = candidates(view, () => false);
  const standby = bestStandby(view, policy, pool, old?.zone ?? '');
  if (standby === null) return null;
  const silentS = Math.round((nowMs - view.health.get(victim)!.sinceMs) / 1000);
  const why = `voter ${nameOf(view, victim)} unreachable for ${silentS}s`;
  if (standby.placement === 'none') return stage(view, standby, why, nowMs);
  if (!readyToPromote(view, policy, standby)) return null; // catching up: wait
  // The demoted voter becomes a standby of its configured mode (hot ones stay learners).
  const mode = old?.standbyMode ?? 'hot';
  const demoteType =
    restingPlacement('standby', mode) === 'learner'
      ? ConfChangeType.AddLearnerNode
      : ConfChangeType.RemoveNode;
  const changes = [
    { type: ConfChangeType.AddNode, nodeId: standby.id },
    { type: demoteType, nodeId: victim },
  ];
  if (quorumRefusal(view, view.config.voters, votersAfter(view.config.voters, changes)) !== null) {
    return null;
  }
  return confAction({
    step: 'replace',
    changes,
    transition: ConfChangeTransition.JointImplicit,
    commands: [
      { kind: 'record-promotion', id: standby.id, atMs: nowMs, byPolicy: true },
      { kind: 'record-demotion', id: victim, atMs: nowMs, role: 'standby' },
    ],
    atMs: nowMs,
    promote: standby.id,
    demote: victim,
    reason: `${why}: promoting ${standby.standbyMode} standby ${nameOf(view, standby.id)} (lag ${lagOf(view, standby.id)}) and demoting ${nameOf(view, victim)} to a ${mode} standby`,
  });
}

function planRestore(
  view: RedundancyView,
  policy: RedundancyPolicy,
  nowMs: number,
): ConfChangeAction | null {
  // A demoted member is promoted again only to replace a failed voter (issue 5).
  const pool = candidates(view, wasDemoted);
  const standby = bestStandby(view, policy, pool, '');
  if (standby === null) return null;
  const why = `${view.config.voters.length} voters of ${policy.voters} wanted`;
  if (standby.placement === 'none') return stage(view, standby, why, nowMs);
  if (!readyToPromote(view, policy, standby)) return null;
  const changes = [{ type: ConfChangeType.AddNode, nodeId: standby.id }];
  if (quorumRefusal(view, view.config.voters, votersAfter(view.config.voters, changes)) !== null) {
    return null;
  }
  return confAction({
    step: 'restore',
    changes,
    transition: ConfChangeTransition.Auto,
    commands: [{ kind: 'record-promotion', id: standby.id, atMs: nowMs, byPolicy: true }],
    atMs: nowMs,
    promote: standby.id,
    demote: null,
    reason: `${why}: promoting ${standby.standbyMode} standby ${nameOf(view, standby.id)} (lag ${lagOf(view, standby.id)})`,
  });
}

/**
 * Voters the trim (rule 3) may return to the standbys, best first: those the policy promoted
 * (the leader among them too: planTrim passes it over, planTrimTransfer moves leadership off
 * it), the most recently promoted first (the newest surplus), then the highest id.
 */
export function trimCandidates(view: RedundancyView, policy: RedundancyPolicy): MemberRecord[] {
  if (view.config.voters.length <= policy.voters) return [];
  const out: MemberRecord[] = [];
  for (const id of view.config.voters) {
    const m = memberOf(view, id);
    if (m === undefined || !m.promotedByPolicy || m.role !== 'voter') continue;
    out.push(m);
  }
  out.sort((a, b) => (b.promotedAtMs ?? 0) - (a.promotedAtMs ?? 0) || b.id - a.id);
  return out;
}

/** Why the trim may not run now (rule 3's guards), or null. */
function trimRefusal(view: RedundancyView, policy: RedundancyPolicy): string | null {
  // The injected bug skips the guards: the simulator must catch a trim that loses the quorum.
  if (bug(policy, 'trim-without-quorum-check')) return null;
  const unhealthy = view.config.voters.filter((id) => !isHealthy(view, id));
  if (unhealthy.length > 0) {
    return `voter ${unhealthy.map((id) => nameOf(view, id)).join(', ')} not healthy`;
  }
  return null;
}

/** Rule 3: one surplus voter the policy promoted goes back to the standbys, or null. */
function planTrim(
  view: RedundancyView,
  policy: RedundancyPolicy,
  nowMs: number,
): ConfChangeAction | null {
  if (trimRefusal(view, policy) !== null) return null;
  const victim = trimCandidates(view, policy).find((m) => m.id !== view.leaderId);
  if (victim === undefined) return null;
  const mode = victim.standbyMode;
  const changes = [
    {
      type:
        restingPlacement('standby', mode) === 'learner'
          ? ConfChangeType.AddLearnerNode
          : ConfChangeType.RemoveNode,
      nodeId: victim.id,
    },
  ];
  const after = votersAfter(view.config.voters, changes);
  if (
    !bug(policy, 'trim-without-quorum-check') &&
    quorumRefusal(view, view.config.voters, after) !== null
  ) {
    return null;
  }
  return confAction({
    step: 'trim',
    changes,
    transition: ConfChangeTransition.JointImplicit,
    commands: [{ kind: 'record-demotion', id: victim.id, atMs: nowMs, role: 'standby' }],
    atMs: nowMs,
    promote: null,
    demote: victim.id,
    reason: `${view.config.voters.length} voters of ${policy.voters} wanted, all healthy: returning ${nameOf(view, victim.id)} (promoted by the policy) to the ${mode} standbys`,
  });
}

/**
 * Rule 3 when the only voter to trim leads: hand leadership to another healthy voter, the most
 * caught-up first (then the lowest id), so the next leader trims it. Null otherwise, and under
 * the same conditions as any membership change.
 */
export function planTrimTransfer(
  view: RedundancyView,
  policy: RedundancyPolicy,
  nowMs: number,
): LeaderTransfer | null {
  if (membershipBlocked(view, policy) !== null || trimRefusal(view, policy) !== null) return null;
  if (failedVoters(view, policy, nowMs).length > 0) return null;
  const candidates = trimCandidates(view, policy);
  if (candidates.length === 0 || candidates.some((m) => m.id !== view.leaderId)) return null;
  let best: { id: NodeId; lag: number } | null = null;
  for (const id of view.config.voters) {
    if (id === view.leaderId || !isHealthy(view, id)) continue;
    const lag = lagOf(view, id);
    if (lag > policy.catchUpEntriesMax) continue;
    if (best === null || lag < best.lag || (lag === best.lag && id < best.id)) best = { id, lag };
  }
  if (best === null) return null;
  return {
    to: best.id,
    reason: `${view.config.voters.length} voters of ${policy.voters} wanted and the leader is the one the policy promoted: transfer to ${nameOf(view, best.id)} before trimming it`,
  };
}

/** A warm or cold standby joins the configuration as a learner, to catch up before promotion. */
function stage(
  view: RedundancyView,
  standby: MemberRecord,
  why: string,
  nowMs: number,
): ConfChangeAction {
  assert(standby.placement === 'none', 'only a standby outside the configuration is staged');
  return confAction({
    step: 'stage',
    changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: standby.id }],
    transition: ConfChangeTransition.Auto,
    commands: [],
    atMs: nowMs,
    promote: null,
    demote: null,
    reason: `${why}: adding ${standby.standbyMode} standby ${nameOf(view, standby.id)} as a learner to catch up before its promotion`,
  });
}

/** Rule 3: members whose placement does not match their role and mode. */
function planPlacement(
  view: RedundancyView,
  nowMs: number,
  unstage: boolean,
): ConfChangeAction | null {
  for (const m of view.members) {
    const resting = restingPlacement(m.role, m.standbyMode);
    if (unstage && m.placement === 'learner' && resting === 'none') {
      return confAction({
        step: 'unstage',
        changes: [{ type: ConfChangeType.RemoveNode, nodeId: m.id }],
        transition: ConfChangeTransition.Auto,
        commands: [],
        atMs: nowMs,
        promote: null,
        demote: null,
        reason: `${m.standbyMode} standby ${nameOf(view, m.id)} is not needed as a learner: returning it outside the configuration`,
      });
    }
    if (m.placement === 'none' && resting === 'learner') {
      return confAction({
        step: 'add-learner',
        changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: m.id }],
        transition: ConfChangeTransition.Auto,
        commands: [],
        atMs: nowMs,
        promote: null,
        demote: null,
        reason: `${m.role === 'replica' ? 'replica' : 'hot standby'} ${nameOf(view, m.id)} is outside the configuration: adding it as a learner`,
      });
    }
  }
  return null;
}

/**
 * When warm standby `m` last caught up, on the leader's clock (-Infinity: never known): the later
 * of this leader's own refresh and the registry's record. The record is wall-clock time from
 * whichever leader wrote it: only its age carries over, and a record from a clock ahead of ours
 * counts as just now (never in the future).
 */
export function lastRefreshMs(view: RedundancyView, m: MemberRecord, nowMs: number): number {
  const ownMs = view.lastSnapshotSentMs.get(m.id) ?? Number.NEGATIVE_INFINITY;
  if (m.lastRefreshAtMs === null) return ownMs;
  const ageMs = Math.max(0, (view.wallNowMs ?? nowMs) - m.lastRefreshAtMs);
  return Math.max(ownMs, nowMs - ageMs);
}

/** Rule 4: the warm standby most overdue for a snapshot, or null. */
export function planSnapshotRefresh(view: RedundancyView, nowMs: number): SnapshotAction | null {
  let due: { m: MemberRecord; lastMs: number } | null = null;
  for (const m of view.members) {
    if (m.role !== 'standby' || m.standbyMode !== 'warm' || m.placement !== 'none') continue;
    const lastMs = lastRefreshMs(view, m, nowMs);
    if (nowMs - lastMs < m.snapshotEveryMs) continue;
    if (due === null || lastMs < due.lastMs) due = { m, lastMs };
  }
  if (due === null) return null;
  const age = Number.isFinite(due.lastMs)
    ? `${Math.round((nowMs - due.lastMs) / 1000)}s old`
    : 'never sent';
  return {
    kind: 'send-snapshot',
    to: due.m.id,
    reason: `warm standby ${nameOf(view, due.m.id)}: snapshot ${age}, refreshed every ${due.m.snapshotEveryMs / 1000}s`,
  };
}

function confAction(a: {
  step: ConfChangeStep;
  changes: readonly ConfChangeSingle[];
  transition: ConfChangeTransition;
  commands: readonly RegistryCommand[];
  atMs: number;
  promote: NodeId | null;
  demote: NodeId | null;
  reason: string;
}): ConfChangeAction {
  assert(a.changes.length > 0, 'a planned change changes something');
  assert(new Set(a.changes.map((c) => c.nodeId)).size === a.changes.length, 'one change per id');
  const context = encodeChangeContext({ atMs: a.atMs, commands: a.commands });
  return {
    kind: 'conf-change',
    step: a.step,
    change: { transition: a.transition, changes: a.changes, context },
    commands: a.commands,
    promote: a.promote,
    demote: a.demote,
    reason: a.reason,
  };
}

// ---------------------------------------------------------------------------------------------
// Manual overrides (tandem member promote|demote|standby NAME)

export type ManualOp = 'promote' | 'demote' | 'standby';

/**
 * The action an operator's request maps to, or a PolicyError saying why not.
 *
 * - promote: a replica or standby becomes a voter (AddNode) once it is a healthy, caught-up
 *   learner; a warm/cold standby outside the configuration is first made a hot standby (added as
 *   a learner) and the operator promotes it again once it has caught up.
 * - demote: a voter becomes a replica (a learner serving reads). The factor drops; the policy
 *   restores it with another standby.
 * - standby: a voter or replica becomes a standby of its configured mode.
 */
export function planManual(
  view: RedundancyView,
  policy: RedundancyPolicy,
  op: ManualOp,
  name: string,
  nowMs: number,
): RedundancyAction {
  checkView(view, nowMs);
  const m = view.members.find((x) => x.name === name);
  if (m === undefined) throw new PolicyError('UNKNOWN_MEMBER', `no member named ${name}`);
  switch (op) {
    case 'promote':
      return manualPromote(view, policy, m, nowMs);
    case 'demote':
      return manualDemote(view, m, 'replica', nowMs);
    case 'standby':
      return m.role === 'voter'
        ? manualDemote(view, m, 'standby', nowMs)
        : manualStandby(view, m, nowMs);
  }
}

function requireMembershipChange(view: RedundancyView, policy: RedundancyPolicy): void {
  // Operators get no injected bugs: the rules hold for them unconditionally.
  const blocked = membershipBlocked(view, { ...policy, bugs: new Set() });
  if (blocked === null) return;
  const pending = view.pendingConfChange || view.config.votersOutgoing.length > 0;
  throw new PolicyError(pending ? 'CHANGE_PENDING' : 'NO_QUORUM', `${blocked}: try again later`);
}

function manualPromote(
  view: RedundancyView,
  policy: RedundancyPolicy,
  m: MemberRecord,
  nowMs: number,
): RedundancyAction {
  if (m.role === 'voter') throw new PolicyError('ALREADY_VOTER', `${m.name} is already a voter`);
  requireMembershipChange(view, policy);
  if (!isReachable(view, m.id)) {
    throw new PolicyError('UNREACHABLE', `${m.name} is unreachable: it cannot catch up`);
  }
  if (view.config.voters.length >= VOTERS_MAX) {
    throw new PolicyError('TOO_MANY_VOTERS', `the cluster already has ${VOTERS_MAX} voters`);
  }
  if (m.placement === 'none') {
    const commands: RegistryCommand[] =
      m.role === 'standby'
        ? [{ kind: 'set-standby', id: m.id, mode: 'hot', snapshotEveryMs: m.snapshotEveryMs }]
        : [];
    return confAction({
      step: 'add-learner',
      changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: m.id }],
      transition: ConfChangeTransition.Auto,
      commands,
      atMs: nowMs,
      promote: null,
      demote: null,
      reason: `${m.name} is outside the configuration: adding it as a learner (a hot standby) to catch up; promote it again once caught up`,
    });
  }
  const strict = { ...policy, bugs: new Set<PolicyBugName>() };
  if (!readyToPromote(view, strict, m)) {
    throw new PolicyError(
      'NOT_CAUGHT_UP',
      `${m.name} trails the commit index by ${lagOf(view, m.id)} entries (at most ${policy.catchUpEntriesMax} to promote) or is not yet trusted healthy`,
    );
  }
  const changes = [{ type: ConfChangeType.AddNode, nodeId: m.id }];
  const refusal = quorumRefusal(view, view.config.voters, votersAfter(view.config.voters, changes));
  if (refusal !== null) throw new PolicyError('NO_QUORUM', `promoting ${m.name}: ${refusal}`);
  return confAction({
    step: 'promote',
    changes,
    transition: ConfChangeTransition.Auto,
    commands: [{ kind: 'record-promotion', id: m.id, atMs: nowMs }],
    atMs: nowMs,
    promote: m.id,
    demote: null,
    reason: `operator: promote ${m.name}`,
  });
}

function manualDemote(
  view: RedundancyView,
  m: MemberRecord,
  to: 'replica' | 'standby',
  nowMs: number,
): RedundancyAction {
  if (m.role !== 'voter') throw new PolicyError('NOT_A_VOTER', `${m.name} is not a voter`);
  if (m.id === view.leaderId) {
    throw new PolicyError('IS_LEADER', `${m.name} leads: transfer leadership first`);
  }
  requireMembershipChange(view, POLICY_DEFAULTS);
  const learner = to === 'replica' || restingPlacement('standby', m.standbyMode) === 'learner';
  const changes = [
    { type: learner ? ConfChangeType.AddLearnerNode : ConfChangeType.RemoveNode, nodeId: m.id },
  ];
  const after = votersAfter(view.config.voters, changes);
  if (healthyCount(view, after) < quorumOf(after.length) || after.length === 0) {
    const healthy = healthyCount(view, after);
    throw new PolicyError(
      'NO_QUORUM',
      `demoting ${m.name} would leave ${healthy} healthy voter${healthy === 1 ? '' : 's'} of ${after.length} (a quorum needs ${quorumOf(after.length)}): no quorum`,
    );
  }
  return confAction({
    step: to === 'replica' ? 'demote' : 'standby',
    changes,
    transition: ConfChangeTransition.JointImplicit,
    commands: [{ kind: 'record-demotion', id: m.id, atMs: nowMs, role: to }],
    atMs: nowMs,
    promote: null,
    demote: m.id,
    reason: `operator: ${to === 'replica' ? 'demote' : 'make standby'} ${m.name}`,
  });
}

function manualStandby(view: RedundancyView, m: MemberRecord, nowMs: number): RedundancyAction {
  if (m.role === 'standby') {
    throw new PolicyError('ALREADY_STANDBY', `${m.name} is already a ${m.standbyMode} standby`);
  }
  const command: RegistryCommand = { kind: 'set-role', id: m.id, role: 'standby' };
  const reason = `operator: make replica ${m.name} a ${m.standbyMode} standby`;
  if (restingPlacement('standby', m.standbyMode) === m.placement || m.placement === 'none') {
    return { kind: 'registry', command, reason };
  }
  requireMembershipChange(view, POLICY_DEFAULTS);
  return confAction({
    step: 'standby',
    changes: [{ type: ConfChangeType.RemoveNode, nodeId: m.id }],
    transition: ConfChangeTransition.Auto,
    commands: [command],
    atMs: nowMs,
    promote: null,
    demote: null,
    reason,
  });
}

/** A leadership transfer the leader-zone preference asks for. */
export interface LeaderTransfer {
  readonly to: NodeId;
  readonly reason: string;
}

/**
 * The leader-zone preference (`replication.preferLeaderZone`): when the leader is outside the
 * preferred zone and that zone has a healthy, caught-up voter, hand leadership to it (the most
 * caught-up first, then the lowest id). Nothing while a membership change is pending, in a
 * joint configuration, or without a quorum. The caller rate-limits the transfers it starts.
 */
export function planLeaderZone(
  view: RedundancyView,
  preferLeaderZone: string | null,
  catchUpEntriesMax: number,
): LeaderTransfer | null {
  if (preferLeaderZone === null || preferLeaderZone === '') return null;
  if (view.pendingConfChange || !view.quorumActive || view.config.votersOutgoing.length > 0) {
    return null;
  }
  // The leader's own zone must be known: a member publishes it through the log after start-up,
  // and until then ('' or no record) it may well sit in the preferred zone already.
  const leaderZone = memberOf(view, view.leaderId)?.zone ?? '';
  if (leaderZone === '' || leaderZone === preferLeaderZone) return null;
  let best: { id: NodeId; lag: number } | null = null;
  for (const id of view.config.voters) {
    if (id === view.leaderId || memberOf(view, id)?.zone !== preferLeaderZone) continue;
    if (view.health.get(id)?.state !== 'healthy') continue;
    const lag = lagOf(view, id);
    if (lag > catchUpEntriesMax) continue;
    if (best === null || lag < best.lag || (lag === best.lag && id < best.id)) best = { id, lag };
  }
  if (best === null) return null;
  return {
    to: best.id,
    reason: `leader outside the preferred zone ${preferLeaderZone}: transfer to ${memberOf(view, best.id)?.name || best.id}`,
  };
}
