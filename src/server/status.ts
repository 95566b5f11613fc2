/**
 * A member's status as JSON (the admin endpoint's GET /status, read by `tandem status`, the
 * integration tests and chaos): its raft state, its role as it knows it, and two views of the
 * membership — etcd's (voters and learners) and tandem's registry (standbys outside the
 * configuration too, with the leader's live health and lag).
 */
import { NONE } from '../raft/types.js';
import type { AssembledMember } from './assemble.js';
import { SERVER_VERSION } from './facade.js';
import { type ApplyTracker, standbyStalenessSeconds } from './metrics.js';

export interface StatusSources {
  readonly assembled: AssembledMember;
  readonly applies: ApplyTracker;
  readonly name: string;
  readonly clusterId: bigint;
  /** The configured zone, until the registry has this member's. */
  readonly zone: string;
  /** `replication.voters`: the voters the redundancy policy keeps (null: not configured here). */
  readonly configuredVoters?: number;
  /** Monotonic ms (the member's clock) and wall-clock ms. */
  readonly nowMs: () => number;
  readonly wallNowMs: () => number;
}

export function memberStatusJson(s: StatusSources) {
  const { member, state, role, facade, redundancy } = s.assembled;
  const selfId = member.id;
  const self = state.member(selfId);
  const selfRole = role.selfRole();
  const leaderHeardMs = member.leader === NONE ? undefined : member.lastHeardMs.get(member.leader);
  const isLeader = member.isLeader;
  const progress = isLeader ? member.status().progress : null;
  return {
    name: s.name,
    memberId: selfId.toString(16),
    clusterId: s.clusterId.toString(16),
    version: SERVER_VERSION,
    leader: member.leader.toString(16),
    isLeader,
    term: member.term,
    commitIndex: member.commitIndex,
    appliedIndex: member.appliedIndex,
    revision: state.revision(),
    // tandem's view of this member: its role as confirmed with the leader (RoleTruth).
    role: selfRole.role,
    placement: selfRole.placement,
    standbyMode: selfRole.standbyMode,
    roleSource: selfRole.source,
    zone: self?.zone || s.zone,
    health: redundancy?.health(selfId)?.state ?? self?.health ?? 'unknown',
    lastHeardFromLeaderMsAgo:
      leaderHeardMs === undefined ? null : Math.max(0, s.nowMs() - leaderHeardMs),
    // A warm or cold standby: seconds since it last applied anything (metrics.ts); else null.
    standbyStalenessSeconds: standbyStalenessSeconds(
      selfRole.role,
      selfRole.standbyMode,
      s.applies,
    ),
    // Reads served from local state at once vs after a read barrier (bounded reads' locality).
    reads: facade.readCounters(),
    // The replication factor: voters in the configuration now against the configured count.
    replication: {
      voters: state.members().filter((m) => !m.isLearner).length,
      configuredVoters: s.configuredVoters ?? null,
    },
    // etcd's view (voters and learners) ...
    members: state.members().map((m) => ({ ...m, id: m.id.toString(16) })),
    // ... and tandem's (standbys outside the configuration too, the leader's live health).
    registry: state.allMembers().map((m) => {
      const live = redundancy?.health(m.id) ?? null;
      const match = progress?.get(m.id)?.match;
      return {
        ...m,
        id: m.id.toString(16),
        health: live?.state ?? m.health,
        healthSinceMs: live?.sinceMs ?? m.healthSinceMs,
        // Warm standbys: ms since a leader recorded it caught up (wall clock), else null.
        lastRefreshMs:
          m.lastRefreshAtMs === null ? null : Math.max(0, s.wallNowMs() - m.lastRefreshAtMs),
        lag: match === undefined ? null : Math.max(0, member.commitIndex - match),
      };
    }),
  };
}
