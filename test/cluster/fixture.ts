/** Builders for policy tests: a cluster described member by member, turned into a view. */
import type { HealthState, Role, StandbyMode } from '../../src/cluster/commands.js';
import type { MemberHealth } from '../../src/cluster/health.js';
import {
  makePolicy,
  type RedundancyAction,
  type RedundancyPolicy,
  type RedundancyView,
} from '../../src/cluster/policy.js';
import { type MemberRecord, type Placement, restingPlacement } from '../../src/cluster/registry.js';
import { ConfChangeTransition, type NodeId } from '../../src/raft/types.js';

export interface MemberSpec {
  readonly id: NodeId;
  readonly role: Role;
  readonly mode?: StandbyMode;
  readonly zone?: string;
  /** Defaults to the role's resting placement. */
  readonly placement?: Placement;
  /** Health state, since 0 unless `sinceMs`. */
  readonly health?: HealthState;
  readonly sinceMs?: number;
  /** Entries behind the commit index (members in the configuration). */
  readonly lag?: number;
  readonly demotedAtMs?: number;
  /** Voters: promoted by the policy at this time (the trim's candidates). */
  readonly policyPromotedAtMs?: number;
  readonly snapshotEveryMs?: number;
  /** Warm standbys: the registry's recorded refresh (wall-clock ms). */
  readonly lastRefreshAtMs?: number;
}

export const COMMIT = 10_000;

/** Tests use a small, explicit policy: 10 s replacement, 5 s stability, promote within 100. */
export const POLICY: RedundancyPolicy = makePolicy({
  voters: 3,
  replaceAfterMs: 10_000,
  preferSameZone: true,
  silentAfterMs: 1_000,
  stabilityMs: 5_000,
  lagEntriesMax: 1_000,
  catchUpEntriesMax: 100,
});

export const voter = (id: NodeId, more: Partial<MemberSpec> = {}): MemberSpec => ({
  id,
  role: 'voter',
  zone: 'a',
  ...more,
});
export const standby = (id: NodeId, mode: StandbyMode, more: Partial<MemberSpec> = {}) =>
  ({ id, role: 'standby', mode, zone: 'a', ...more }) as MemberSpec;
export const replica = (id: NodeId, more: Partial<MemberSpec> = {}): MemberSpec => ({
  id,
  role: 'replica',
  zone: 'a',
  ...more,
});

export function record(s: MemberSpec): MemberRecord {
  const mode = s.mode ?? 'hot';
  const placement = s.placement ?? restingPlacement(s.role, mode);
  return {
    id: s.id,
    name: `n${s.id}`,
    peerUrls: [`10.0.0.${s.id}:2380`],
    clientUrls: [],
    isLearner: placement !== 'voter',
    placement,
    role: s.role,
    standbyMode: mode,
    snapshotEveryMs: s.snapshotEveryMs ?? 60_000,
    zone: s.zone ?? '',
    health: 'healthy',
    healthSinceMs: 0,
    promotedAtMs: s.policyPromotedAtMs ?? null,
    demotedAtMs: s.demotedAtMs ?? null,
    promotedByPolicy: s.policyPromotedAtMs !== undefined,
    lastRefreshAtMs: s.lastRefreshAtMs ?? null,
  };
}

export interface ViewOptions {
  readonly leaderId?: NodeId;
  readonly pendingConfChange?: boolean;
  readonly quorumActive?: boolean;
  readonly votersOutgoing?: NodeId[];
  readonly lastSnapshotSentMs?: Map<NodeId, number>;
  readonly wallNowMs?: number;
}

export function view(specs: readonly MemberSpec[], o: ViewOptions = {}): RedundancyView {
  const members = specs.map(record);
  const voters = members.filter((m) => m.placement === 'voter').map((m) => m.id);
  const learners = members.filter((m) => m.placement === 'learner').map((m) => m.id);
  const progress = new Map<NodeId, { match: number }>();
  const health = new Map<NodeId, MemberHealth>();
  for (const s of specs) {
    const m = members.find((x) => x.id === s.id)!;
    if (m.placement !== 'none') progress.set(s.id, { match: COMMIT - (s.lag ?? 0) });
    health.set(s.id, {
      state: s.health ?? 'healthy',
      sinceMs: s.sinceMs ?? 0,
      betterSinceMs: null,
    });
  }
  return {
    leaderId: o.leaderId ?? 1,
    members,
    config: {
      voters,
      learners,
      votersOutgoing: o.votersOutgoing ?? [],
      learnersNext: [],
      autoLeave: false,
    },
    commit: COMMIT,
    progress,
    pendingConfChange: o.pendingConfChange ?? false,
    quorumActive: o.quorumActive ?? true,
    health,
    lastSnapshotSentMs: o.lastSnapshotSentMs ?? new Map(),
    ...(o.wallNowMs === undefined ? {} : { wallNowMs: o.wallNowMs }),
  };
}

const TYPE_NAMES = ['AddNode', 'RemoveNode', 'AddLearnerNode'];

/** One line per action, e.g. "replace: AddNode(4) AddLearnerNode(2) joint". */
export function summary(action: RedundancyAction | null): string {
  if (action === null) return 'nothing';
  if (action.kind === 'send-snapshot') return `send-snapshot(${action.to})`;
  if (action.kind === 'registry') return `registry: ${action.command.kind}(${action.command.id})`;
  const changes = action.change.changes.map((c) => `${TYPE_NAMES[c.type]}(${c.nodeId})`);
  const joint = action.change.transition === ConfChangeTransition.JointImplicit ? ' joint' : '';
  return `${action.step}: ${changes.join(' ')}${joint}`;
}

export function policy(overrides: Partial<RedundancyPolicy> = {}): RedundancyPolicy {
  return makePolicy({ ...POLICY, ...overrides });
}
