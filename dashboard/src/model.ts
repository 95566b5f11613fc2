/**
 * What the page shows, from what members and `tandem dev`'s controls send: member cards grouped
 * by zone, the leader, the replication factor, lag in entries and in time. No DOM here (the
 * tests run it under node).
 */

/** A member's GET /dashboard/api/state (src/api/dashboard.ts). */
export interface MemberState {
  readonly status: MemberStatusJson;
  readonly stats: LiveSample;
  readonly events: { readonly epochMs: number; readonly items: readonly MemberEvent[] };
  readonly devControls: string | null;
}

export interface MemberStatusJson {
  readonly name: string;
  readonly memberId: string;
  readonly leader: string;
  readonly isLeader: boolean;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly role: string;
  readonly standbyMode: string;
  readonly zone: string;
  readonly health: string;
  readonly lastHeardFromLeaderMsAgo: number | null;
  readonly standbyStalenessSeconds: number | null;
  readonly replication?: { readonly voters: number; readonly configuredVoters: number | null };
  readonly registry: readonly RegistryEntry[];
}

export interface RegistryEntry {
  readonly id: string;
  readonly name: string;
  readonly role: string;
  readonly standbyMode: string;
  readonly zone: string;
  readonly health: string;
  readonly lag: number | null;
  readonly lastRefreshMs: number | null;
}

export interface LiveSample {
  readonly atMs: number;
  readonly writesPerSecond: number;
  readonly readsPerSecond: number;
  readonly latencyP99Ms: number | null;
  readonly eventLoopDelayMs: number | null;
}

export interface MemberEvent {
  readonly seq: number;
  readonly atMs: number;
  readonly kind: string;
  readonly text: string;
  readonly subject?: string;
  readonly failoverMs?: number;
}

/** `tandem dev`'s GET /dev/state (src/cli/dev-controls.ts). */
export interface DevState {
  readonly members: readonly {
    readonly name: string;
    readonly admin: string;
    readonly zone: string | null;
    readonly plannedRole: string | null;
    readonly plannedStandbyMode: string | null;
    readonly process: 'running' | 'paused' | 'down';
    readonly partitioned: boolean;
    readonly dashboard: Omit<MemberState, 'devControls'> | null;
  }[];
  readonly load: { running: boolean; untilMs: number; ops: number; errors: number } | null;
  readonly timeline: readonly TimelineEvent[];
}

export interface TimelineEvent extends MemberEvent {
  readonly source: string;
}

export interface Card {
  readonly name: string;
  readonly zone: string;
  /** voter, replica, or standby (hot|warm|cold). */
  readonly role: string;
  readonly roleLabel: string;
  readonly isLeader: boolean;
  readonly term: number | null;
  readonly commitIndex: number | null;
  readonly appliedIndex: number | null;
  /** Entries behind the leader's commit index (null: unknown). */
  readonly lagEntries: number | null;
  /** How long ago the leader had committed what this member has applied (null: unknown). */
  readonly lagMs: number | null;
  readonly stalenessSeconds: number | null;
  readonly health: string;
  /** running, paused, down, or `unknown` outside `tandem dev`. */
  readonly process: string;
  readonly partitioned: boolean;
  /** Its own status reached the page (else the card is the leader's or registry's view). */
  readonly answered: boolean;
}

export interface ClusterView {
  readonly cards: readonly Card[];
  readonly zones: readonly string[];
  readonly leader: string | null;
  readonly term: number | null;
  readonly voters: number | null;
  readonly configuredVoters: number | null;
}

export function roleLabel(role: string, standbyMode: string | null | undefined): string {
  return role === 'standby' ? `standby ${standbyMode ?? 'hot'}` : role;
}

/** Samples of the leader's commit index kept to tell lag in time (one a poll: minutes). */
export const COMMIT_SAMPLES_MAX = 1200;

/**
 * When each commit index was first seen at the leader, so a member's applied index tells how
 * far behind in time it is: the time since the leader had committed the entry after it.
 */
export class CommitClock {
  private readonly samples: { atMs: number; commit: number }[] = [];

  note(atMs: number, commit: number): void {
    const last = this.samples.at(-1);
    if (last !== undefined && commit <= last.commit) return;
    this.samples.push({ atMs, commit });
    if (this.samples.length > COMMIT_SAMPLES_MAX) this.samples.shift();
  }

  /** ms behind for a member that applied `applied`, at `nowMs`; null before any sample. */
  lagMs(applied: number, nowMs: number): number | null {
    const last = this.samples.at(-1);
    if (last === undefined) return null;
    if (applied >= last.commit) return 0;
    // The first sample that committed past `applied`: the member has been behind since then.
    for (const s of this.samples) {
      if (s.commit > applied) return Math.max(0, nowMs - s.atMs);
    }
    return null;
  }
}

/** The cluster from `tandem dev`'s state: every member's own status, the leader's registry. */
export function viewFromDev(dev: DevState, clock: CommitClock, nowMs: number): ClusterView {
  const leader = currentLeader(dev.members.flatMap((m) => m.dashboard?.status ?? []));
  if (leader !== null) clock.note(nowMs, leader.commitIndex);
  const registry = new Map((leader?.registry ?? []).map((r) => [r.name, r]));
  const cards = dev.members.map((m): Card => {
    const s = m.dashboard?.status ?? null;
    const r = registry.get(m.name) ?? s?.registry.find((x) => x.name === m.name) ?? null;
    const role = s?.role ?? r?.role ?? m.plannedRole ?? 'voter';
    const mode = s?.standbyMode ?? r?.standbyMode ?? m.plannedStandbyMode ?? 'hot';
    const lagEntries =
      s !== null && leader !== null
        ? Math.max(0, leader.commitIndex - s.appliedIndex)
        : (r?.lag ?? null);
    return {
      name: m.name,
      zone: s?.zone ?? r?.zone ?? m.zone ?? 'default',
      role,
      roleLabel: roleLabel(role, mode),
      isLeader: s !== null && s === leader,
      term: s?.term ?? null,
      commitIndex: s?.commitIndex ?? null,
      appliedIndex: s?.appliedIndex ?? null,
      lagEntries,
      lagMs: s === null || leader === null ? null : clock.lagMs(s.appliedIndex, nowMs),
      stalenessSeconds: s?.standbyStalenessSeconds ?? stalenessFromRefresh(r),
      health: m.process === 'running' ? (r?.health ?? s?.health ?? 'unknown') : m.process,
      process: m.process,
      partitioned: m.partitioned,
      answered: s !== null,
    };
  });
  return summarize(cards, leader);
}

/**
 * The member that leads: of those that say so, the one of the highest term (an old leader cut
 * off by a partition may still say so in its old term); none when two claim the same term.
 */
export function currentLeader(statuses: readonly MemberStatusJson[]): MemberStatusJson | null {
  const claims = statuses.filter((s) => s.isLeader).sort((a, b) => b.term - a.term);
  if (claims.length === 0) return null;
  if (claims.length > 1 && claims[1]!.term === claims[0]!.term) return null;
  return claims[0]!;
}

/** The cluster as one member sees it: its own status, the others from its registry. */
export function viewFromMember(status: MemberStatusJson, clock: CommitClock, nowMs: number) {
  if (status.isLeader) clock.note(nowMs, status.commitIndex);
  const cards = status.registry.map((r): Card => {
    const self = r.name === status.name;
    const role = self ? status.role : r.role;
    const mode = self ? status.standbyMode : r.standbyMode;
    return {
      name: r.name,
      zone: r.zone || 'default',
      role,
      roleLabel: roleLabel(role, mode),
      isLeader: r.id === status.leader,
      term: self ? status.term : null,
      commitIndex: self ? status.commitIndex : null,
      appliedIndex: self ? status.appliedIndex : null,
      lagEntries: r.lag,
      lagMs: self && status.isLeader ? 0 : null,
      stalenessSeconds: self ? status.standbyStalenessSeconds : stalenessFromRefresh(r),
      health: r.health,
      process: 'unknown',
      partitioned: false,
      answered: self,
    };
  });
  return summarize(cards, status.isLeader ? status : null, status);
}

function stalenessFromRefresh(r: RegistryEntry | null): number | null {
  if (r === null || r.role !== 'standby' || r.lastRefreshMs === null) return null;
  return r.lastRefreshMs / 1000;
}

function summarize(
  cards: Card[],
  leader: MemberStatusJson | null,
  viewer: MemberStatusJson | null = leader,
): ClusterView {
  const zones = [...new Set(cards.map((c) => c.zone))].sort();
  const leaderCard = cards.find((c) => c.isLeader) ?? null;
  return {
    cards: [...cards].sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true })),
    zones,
    leader: leaderCard?.name ?? null,
    term: leader?.term ?? viewer?.term ?? null,
    voters: viewer?.replication?.voters ?? null,
    configuredVoters: viewer?.replication?.configuredVoters ?? null,
  };
}

export function formatMs(ms: number | null): string {
  if (ms === null) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}
