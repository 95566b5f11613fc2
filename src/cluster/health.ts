/**
 * The failure detector: the leader's classification of every member as healthy, lagging (its
 * log trails the commit index) or unreachable (silent), with hysteresis.
 *
 * Worse news takes effect at once; better news only after it has held without a break for
 * `stabilityMs`. So a flapping member (heard, silent, heard, ...) stays "unreachable since it
 * first went silent" instead of bouncing between states: its replacement clock keeps running,
 * it is never trusted as a standby to promote, and it causes no churn.
 *
 * Pure: time comes in as `nowMs`. The leader keeps one detector and feeds it each tick.
 *
 * A new leader (one detector per leadership term, `seed`ed from the registry) knows nothing of
 * the time before it began listening: as a follower it heard only the old leader, so the last
 * time it heard another member proves no silence. Silence is counted from when it began
 * listening, and an `unreachable` the registry recorded is only a prior (`inherited`): it keeps
 * the member untrusted and, once this leader itself finds the member silent, keeps its recorded
 * clock; it is never grounds for replacing anyone by itself (the record may be stale: the old
 * leader may have lost office before recording the member's recovery).
 */
import { jointVoteResult } from '../raft/quorum/joint.js';
import { VoteResult } from '../raft/quorum/majority.js';
import type { ConfState, NodeId, ProgressStatus } from '../raft/types.js';
import { assert, assertUint } from '../util/assert.js';
import type { HealthState } from './commands.js';
import type { MemberRecord } from './registry.js';

export const POLICY_BUG_NAMES = [
  /** Promotes the least caught-up standby, without waiting for it to catch up. */
  'promote-lagging',
  /** Plans a membership change while another one is still pending. */
  'double-promote',
  /** The detector trusts a member again as soon as it is heard (no hysteresis). */
  'trust-flapping',
  /**
   * Trims a surplus voter without the trim's guards: neither every voter healthy nor a healthy
   * quorum of the result is required (policy.ts planTrim).
   */
  'trim-without-quorum-check',
] as const;
export type PolicyBugName = (typeof POLICY_BUG_NAMES)[number];

export interface DetectorLimits {
  /** Silence longer than this makes a member unreachable (a few heartbeats; >= election timeout). */
  readonly silentAfterMs: number;
  /** A member whose match index trails the commit index by more than this is lagging. */
  readonly lagEntriesMax: number;
  /** Good news must hold this long without a break before a member is trusted again. */
  readonly stabilityMs: number;
  /** Simulator only: injected bugs (empty in production). */
  readonly bugs?: ReadonlySet<PolicyBugName>;
}

/** One member as the leader sees it this tick. */
export interface Observation {
  readonly id: NodeId;
  /** When the leader last heard from the member; null if never (since it became leader). */
  readonly lastHeardMs: number | null;
  /** The member's match index; null for members outside the Raft configuration. */
  readonly match: number | null;
}

export interface MemberHealth {
  readonly state: HealthState;
  /** When the current state began (for unreachable: when the member went silent). */
  readonly sinceMs: number;
  /** While not yet trusted: when the unbroken run of better news began; null otherwise. */
  readonly betterSinceMs: number | null;
  /**
   * Set on an `unreachable` seeded from the registry until this detector sees for itself the
   * member silent (confirmed: the recorded clock holds) or trusted again. Never acted upon.
   */
  readonly inherited?: true;
}

const SEVERITY: Readonly<Record<HealthState, number>> = { healthy: 0, lagging: 1, unreachable: 2 };

/** What the member looks like right now, before hysteresis. */
export function classify(
  obs: Observation,
  commit: number,
  nowMs: number,
  limits: DetectorLimits,
): HealthState {
  if (obs.lastHeardMs === null || nowMs - obs.lastHeardMs > limits.silentAfterMs) {
    return 'unreachable';
  }
  if (obs.match !== null && commit - obs.match > limits.lagEntriesMax) return 'lagging';
  return 'healthy';
}

/** The hysteresis step: the recorded health after one more observation. */
export function nextHealth(
  prev: MemberHealth | undefined,
  raw: HealthState,
  rawSinceMs: number,
  nowMs: number,
  limits: DetectorLimits,
): MemberHealth {
  assert(rawSinceMs <= nowMs, 'a state cannot begin in the future');
  if (prev?.inherited === true) return nextInherited(prev, raw, rawSinceMs, nowMs, limits);
  if (prev === undefined || SEVERITY[raw] > SEVERITY[prev.state]) {
    return { state: raw, sinceMs: rawSinceMs, betterSinceMs: null };
  }
  if (raw === prev.state) {
    return prev.betterSinceMs === null ? prev : { ...prev, betterSinceMs: null };
  }
  const betterSinceMs = prev.betterSinceMs ?? nowMs;
  const stabilityMs = limits.bugs?.has('trust-flapping') ? 0 : limits.stabilityMs;
  if (nowMs - betterSinceMs >= stabilityMs) {
    return { state: raw, sinceMs: nowMs, betterSinceMs: null };
  }
  return { ...prev, betterSinceMs };
}

/**
 * `nextHealth` for a seeded `unreachable`. Found silent by this leader too: the recorded clock
 * holds if this leader never heard the member, else a silence of its own begins now. Heard:
 * trusted again after stabilityMs, as anyone.
 */
function nextInherited(
  prev: MemberHealth,
  raw: HealthState,
  rawSinceMs: number,
  nowMs: number,
  limits: DetectorLimits,
): MemberHealth {
  assert(prev.state === 'unreachable', 'only a recorded unreachable is inherited');
  if (raw === 'unreachable') {
    const sinceMs = prev.betterSinceMs === null ? prev.sinceMs : rawSinceMs;
    return { state: 'unreachable', sinceMs, betterSinceMs: null };
  }
  const betterSinceMs = prev.betterSinceMs ?? nowMs;
  const stabilityMs = limits.bugs?.has('trust-flapping') ? 0 : limits.stabilityMs;
  if (nowMs - betterSinceMs >= stabilityMs) {
    return { state: raw, sinceMs: nowMs, betterSinceMs: null };
  }
  return { ...prev, betterSinceMs };
}

export class FailureDetector {
  private readonly health = new Map<NodeId, MemberHealth>();
  /** When this detector began listening (`seed`); silence before it is not evidence. */
  private listeningSinceMs: number | null = null;
  /**
   * Members first observed after listening began (added to the cluster since), and when: a
   * member never heard is silent only since it appeared. etcd's workflow adds a voter before
   * its process starts; it gets `replaceAfterMs` like anyone, not a silence dated to this
   * leader's start. Until heard for stabilityMs it is not healthy either (it starts `lagging`):
   * the trim and every quorum guard count it out.
   */
  private readonly appearedMs = new Map<NodeId, number>();

  constructor(private readonly limits: DetectorLimits) {
    assert(limits.silentAfterMs > 0 && limits.stabilityMs >= 0, 'detector limits');
    assertUint(limits.lagEntriesMax, 'lagEntriesMax');
  }

  /**
   * A new leader starts listening at `nowMs`, from the health the registry recorded: it
   * continues the old leader's clocks (a voter silent for 9 s under the old leader is not given
   * a fresh 10 s once this leader finds it silent too), but a recorded `unreachable` is only
   * `inherited` until then (see the header).
   */
  seed(members: readonly MemberRecord[], nowMs: number): void {
    this.listeningSinceMs ??= nowMs;
    for (const m of members) {
      if (this.health.has(m.id)) continue;
      const sinceMs = Math.min(m.healthSinceMs, nowMs);
      this.health.set(
        m.id,
        m.health === 'unreachable'
          ? { state: m.health, sinceMs, betterSinceMs: null, inherited: true }
          : { state: m.health, sinceMs, betterSinceMs: null },
      );
    }
  }

  /** Feeds one tick's observations; members not observed are forgotten (they left). */
  observe(nowMs: number, commit: number, observations: readonly Observation[]): void {
    const seen = new Set<NodeId>();
    for (const raw0 of observations) {
      seen.add(raw0.id);
      let prev = this.health.get(raw0.id);
      if (prev === undefined && this.listeningSinceMs !== null && nowMs > this.listeningSinceMs) {
        this.appearedMs.set(raw0.id, nowMs);
        // A member that just appeared has proven nothing: Raft counts a new peer recently active
        // and its empty log may trail a young log by little. It starts untrusted (catching up)
        // and is trusted once heard for stabilityMs, as anyone coming back.
        prev = { state: 'lagging', sinceMs: nowMs, betterSinceMs: null };
      }
      const obs = this.sinceListening(raw0);
      const raw = classify(obs, commit, nowMs, this.limits);
      // Not heard yet, nor silent for long: no news of a member the registry calls unreachable.
      if (prev?.inherited === true && obs !== raw0 && raw !== 'unreachable') continue;
      // Silence began when the member was last heard, not when we noticed.
      const rawSinceMs = raw === 'unreachable' ? Math.min(obs.lastHeardMs ?? nowMs, nowMs) : nowMs;
      this.health.set(raw0.id, nextHealth(prev, raw, rawSinceMs, nowMs, this.limits));
    }
    for (const id of [...this.health.keys()]) {
      if (seen.has(id)) continue;
      this.health.delete(id);
      this.appearedMs.delete(id);
    }
  }

  /** The observation with silence counted from when this detector began listening at most. */
  private sinceListening(obs: Observation): Observation {
    const listening = this.listeningSinceMs;
    if (listening === null) return obs;
    const startMs = Math.max(listening, this.appearedMs.get(obs.id) ?? listening);
    if (obs.lastHeardMs !== null && obs.lastHeardMs >= startMs) return obs;
    return { ...obs, lastHeardMs: startMs };
  }

  get(id: NodeId): MemberHealth | undefined {
    return this.health.get(id);
  }

  view(): ReadonlyMap<NodeId, MemberHealth> {
    return new Map(this.health);
  }
}

/**
 * Observations from the leader's Raft status: a peer whose progress is recently active was heard
 * within the last election timeout; otherwise the caller's own record of when it last heard from
 * the peer (any message) counts. Members outside the configuration have no progress: their
 * last contact is whatever the transport reports (`lastHeardMs`).
 */
export function observationsFrom(
  members: readonly MemberRecord[],
  progress: ReadonlyMap<NodeId, Pick<ProgressStatus, 'match' | 'recentActive'>>,
  lastHeardMs: ReadonlyMap<NodeId, number>,
  nowMs: number,
): Observation[] {
  return members.map((m) => {
    const pr = progress.get(m.id);
    const heard = pr?.recentActive ? nowMs : (lastHeardMs.get(m.id) ?? null);
    return { id: m.id, lastHeardMs: heard, match: pr === undefined ? null : pr.match };
  });
}

/**
 * CheckQuorum's question asked at any instant: did the leader hear from a quorum of the voters
 * (of both halves of a joint configuration) within the last `windowMs` (the election timeout)?
 * The leader counts itself. Raft's quorum math (src/raft/quorum) decides; the votes are the
 * member's last-heard times (any message from the peer).
 *
 * Why not Raft's own flags: `Progress.recentActive` is CheckQuorum's per-round flag, cleared for
 * every peer each election timeout (and never without CheckQuorum; a new peer starts active), so
 * `tracker.quorumActive()` answers "since the last check", a window of anywhere between 0 and one
 * election timeout: right after a check it says "nobody" until the next heartbeat answers land.
 * The lease's `quorumResponseTick` is a sliding window but counts only heartbeat round trips,
 * stamped when sent (a lease must be conservative). The policy asks "heard within the last
 * election timeout", a sliding window over any message: this function, the only one that asks.
 */
export function quorumHeard(
  config: Pick<ConfState, 'voters' | 'votersOutgoing'>,
  selfId: NodeId,
  lastHeardMs: ReadonlyMap<NodeId, number>,
  nowMs: number,
  windowMs: number,
): boolean {
  assert(windowMs > 0, 'a quorum is heard within a positive window');
  const heard = new Map<NodeId, boolean>();
  for (const id of [...config.voters, ...config.votersOutgoing]) {
    const atMs = lastHeardMs.get(id);
    heard.set(id, id === selfId || (atMs !== undefined && nowMs - atMs <= windowMs));
  }
  return jointVoteResult(config.voters, config.votersOutgoing, heard) === VoteResult.Won;
}

/**
 * Registry commands that record health transitions (so `tandem status` on any member and a
 * future leader see them). Hysteresis bounds how often these are proposed.
 */
export function healthRecords(
  members: readonly MemberRecord[],
  health: ReadonlyMap<NodeId, MemberHealth>,
): { kind: 'record-health'; id: NodeId; health: HealthState; sinceMs: number }[] {
  const out: { kind: 'record-health'; id: NodeId; health: HealthState; sinceMs: number }[] = [];
  for (const m of members) {
    const h = health.get(m.id);
    if (h === undefined || (h.state === m.health && h.sinceMs === m.healthSinceMs)) continue;
    out.push({ kind: 'record-health', id: m.id, health: h.state, sinceMs: h.sinceMs });
  }
  return out;
}
