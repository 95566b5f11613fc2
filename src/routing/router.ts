/**
 * The routing core shared by `tandem gateway` (src/proxy/) and the TypeScript client
 * (src/client/): which member a request goes to. Pure and synchronous: the caller reports the
 * cluster's topology and every attempt's start and end with its own clock's times, and asks
 * where to send; nothing here does I/O, reads a clock or draws a random number.
 *
 *   writes, linearizable reads  → the leader; while the leader is down (failures in a row), the
 *                                 best voter (a tandem follower proposes to the leader itself)
 *   serializable, bounded reads → the best serving member (voter or replica, never a standby):
 *                                 same zone first, then the lowest cost, where
 *                                   cost = max(peak EWMA latency, age of its oldest attempt)
 *                                          × (attempts in flight + 1)
 *                                 (Finagle's peak EWMA with load: a member that stops answering
 *                                 grows costly while its attempts wait, before any returns)
 *
 * Outliers are ejected: a member whose attempts fail `failuresToEject` times in a row, or come
 * back slower than `outlierFactor` × the median of the others (and above `outlierFloorMs`)
 * `slowSamplesToEject` times in a row, is out for `ejectBaseMs`, doubled at each ejection in a
 * row up to `ejectMaxMs`; then it is probing: the caller sends it a probe (dueProbes), and a
 * probe that is quick enough brings it back. At most `ejectFractionMax` of the serving members
 * are out at once (a cluster-wide slowdown is not an outlier).
 *
 * Hedging: an idempotent request not answered after hedgeDelayMs() (the `hedgeQuantile` of
 * recent latencies, clamped) may be sent again to the next best member; tryHedge() spends from a
 * budget that grows by `hedgeBudgetRatio` per request, so hedges add at most that fraction of
 * load.
 */
import { assert } from '../util/assert.js';
import { Ewma, LatencyWindow } from './latency.js';

/** Members the router tracks at most (the registry's MEMBERS_MAX). */
export const ROUTER_MEMBERS_MAX = 64;
/** Attempts tracked in flight per member at most; past it, begin() still counts but not ages. */
export const ATTEMPTS_TRACKED_PER_MEMBER_MAX = 4096;

export type MemberRole = 'voter' | 'replica' | 'standby' | 'unknown';

/** One member as the cluster describes it (its registry entry). */
export interface MemberDescription {
  /** The member id in hex, as the registry and /status print it. */
  readonly id: string;
  readonly name: string;
  /** Where its etcd API listens (http://host:port). */
  readonly clientUrl: string;
  readonly role: MemberRole;
  /** '' when unknown. */
  readonly zone: string;
}

export interface Topology {
  readonly members: readonly MemberDescription[];
  /** Hex id; null when the reporting member knows none. */
  readonly leaderId: string | null;
  /** The term the leader was known in (a higher term's leader replaces a lower one's). */
  readonly term: number;
}

export interface RouterOptions {
  /** The caller's zone: reads prefer members of it. Null: no preference. */
  readonly zone: string | null;
  readonly ewmaTauMs: number;
  readonly failuresToEject: number;
  readonly slowSamplesToEject: number;
  readonly outlierFactor: number;
  readonly outlierFloorMs: number;
  readonly ejectBaseMs: number;
  readonly ejectMaxMs: number;
  readonly ejectFractionMax: number;
  /** Probes of a probing member at most this often. */
  readonly probeIntervalMs: number;
  readonly hedgeQuantile: number;
  readonly hedgeDelayMinMs: number;
  readonly hedgeDelayMaxMs: number;
  /** The hedge delay before any latency was seen. */
  readonly hedgeDelayDefaultMs: number;
  readonly hedgeBudgetRatio: number;
  readonly hedgeBudgetBurst: number;
}

export const ROUTER_DEFAULTS: RouterOptions = Object.freeze({
  zone: null,
  ewmaTauMs: 500,
  failuresToEject: 2,
  slowSamplesToEject: 3,
  outlierFactor: 4,
  outlierFloorMs: 50,
  ejectBaseMs: 1_000,
  ejectMaxMs: 30_000,
  ejectFractionMax: 0.5,
  probeIntervalMs: 250,
  hedgeQuantile: 0.9,
  hedgeDelayMinMs: 2,
  hedgeDelayMaxMs: 500,
  hedgeDelayDefaultMs: 50,
  hedgeBudgetRatio: 0.2,
  hedgeBudgetBurst: 20,
});

export type MemberHealth = 'ok' | 'ejected' | 'probing';

/** How an attempt ended, for the router's statistics. */
export type AttemptOutcome =
  /** Answered (whatever the answer: an etcd error is an answer). */
  | 'ok'
  /** The member failed it: unreachable, reset, deadline passed. */
  | 'failed'
  /** Abandoned by the caller (cancelled): its latency is at least the elapsed. */
  | 'abandoned'
  /**
   * Abandoned because a hedge to another member answered first: as 'abandoned', and a slow
   * sample for ejection (it was slower than the hedge delay plus another member's answer).
   */
  | 'outrun';

export interface Attempt {
  readonly memberId: string;
  readonly startMs: number;
  readonly probe: boolean;
  /** Internal: this attempt's key in the member's in-flight map. */
  readonly seq: number;
}

/** Why a request went where it did (counted for /status and metrics). */
export type Decision =
  | 'leader'
  | 'leader-fallback'
  | 'read-zone'
  | 'read-other-zone'
  | 'read-ejected-fallback'
  | 'none';

class MemberState {
  readonly ewma: Ewma;
  readonly inFlight = new Map<number, number>();
  inFlightUntracked = 0;
  failuresInRow = 0;
  slowInRow = 0;
  health: MemberHealth = 'ok';
  /** Ejected: until when; probing: when the last probe went out. */
  untilMs = 0;
  lastProbeMs = Number.NEGATIVE_INFINITY;
  ejectionsInRow = 0;
  ejectionsTotal = 0;
  picks = 0;

  constructor(
    public desc: MemberDescription,
    tauMs: number,
  ) {
    this.ewma = new Ewma(tauMs);
  }

  get serving(): boolean {
    return this.desc.role !== 'standby';
  }

  get inFlightCount(): number {
    return this.inFlight.size + this.inFlightUntracked;
  }

  /** Age of the oldest attempt in flight (Map iterates in insertion order). */
  oldestAgeMs(nowMs: number): number {
    for (const startMs of this.inFlight.values()) return Math.max(0, nowMs - startMs);
    return 0;
  }

  cost(nowMs: number): number {
    const latency = Math.max(this.ewma.valueAt(nowMs) ?? 0, this.oldestAgeMs(nowMs));
    // +1 keeps an idle member's cost its latency; a small constant keeps unknown ones ordered.
    return (latency + 0.01) * (this.inFlightCount + 1);
  }
}

/** What /status shows of one member. */
export interface MemberReport {
  readonly id: string;
  readonly name: string;
  readonly zone: string;
  readonly role: MemberRole;
  readonly clientUrl: string;
  readonly health: MemberHealth;
  readonly ewmaMs: number | null;
  readonly inFlight: number;
  readonly failuresInRow: number;
  readonly ejections: number;
  readonly ejectedForMs: number;
  readonly picks: number;
}

export interface RouterReport {
  readonly zone: string | null;
  readonly leaderId: string | null;
  readonly term: number;
  readonly members: readonly MemberReport[];
  readonly decisions: Readonly<Record<Decision, number>>;
  readonly hedges: { readonly sent: number; readonly won: number; readonly refused: number };
  readonly ejections: number;
  readonly hedgeDelayMs: number;
}

export class Router {
  readonly options: RouterOptions;
  private readonly members = new Map<string, MemberState>();
  private leaderId: string | null = null;
  private term = 0;
  private readonly window = new LatencyWindow();
  private hedgeTokens: number;
  private seq = 0;
  private readonly decisions: Record<Decision, number> = {
    leader: 0,
    'leader-fallback': 0,
    'read-zone': 0,
    'read-other-zone': 0,
    'read-ejected-fallback': 0,
    none: 0,
  };
  private hedgesSent = 0;
  private hedgesWon = 0;
  private hedgesRefused = 0;
  private ejections = 0;

  constructor(options: Partial<RouterOptions> = {}) {
    const o: RouterOptions = { ...ROUTER_DEFAULTS, ...options };
    assert(o.ewmaTauMs > 0 && o.failuresToEject >= 1 && o.slowSamplesToEject >= 1);
    assert(o.outlierFactor > 1 && o.outlierFloorMs >= 0);
    assert(o.ejectBaseMs > 0 && o.ejectBaseMs <= o.ejectMaxMs);
    assert(o.ejectFractionMax >= 0 && o.ejectFractionMax <= 1);
    assert(o.hedgeQuantile > 0 && o.hedgeQuantile <= 1);
    assert(o.hedgeDelayMinMs >= 0 && o.hedgeDelayMinMs <= o.hedgeDelayMaxMs);
    assert(o.hedgeBudgetRatio >= 0 && o.hedgeBudgetBurst >= 0);
    this.options = o;
    this.hedgeTokens = o.hedgeBudgetBurst;
  }

  // -------------------------------------------------------------------------------------------
  // What the cluster says.

  /**
   * The members and leader as a member reported them. Members no longer listed are forgotten
   * (their attempts still end harmlessly); a changed client URL resets a member's statistics.
   */
  applyTopology(topology: Topology): void {
    assert(topology.members.length <= ROUTER_MEMBERS_MAX, 'too many members');
    const seen = new Set<string>();
    for (const desc of topology.members) {
      seen.add(desc.id);
      const known = this.members.get(desc.id);
      if (known === undefined || known.desc.clientUrl !== desc.clientUrl) {
        this.members.set(desc.id, new MemberState(desc, this.options.ewmaTauMs));
      } else {
        known.desc = desc;
      }
    }
    for (const id of [...this.members.keys()]) if (!seen.has(id)) this.members.delete(id);
    if (topology.leaderId !== null) this.noteLeader(topology.leaderId, topology.term);
  }

  /**
   * A leader heard of (a status, a response): adopted when its term is newer than the known
   * leader's, or the same term with no leader known. Returns true when the leader changed.
   */
  noteLeader(id: string, term: number): boolean {
    if (term < this.term) return false;
    if (term === this.term && this.leaderId !== null) return false;
    const changed = this.leaderId !== id;
    this.leaderId = id;
    this.term = term;
    return changed;
  }

  /** The leader is gone (it failed, or said it no longer leads): writes go elsewhere. */
  forgetLeader(id: string): void {
    if (this.leaderId === id) this.leaderId = null;
  }

  get leader(): MemberDescription | null {
    return this.leaderId === null ? null : (this.members.get(this.leaderId)?.desc ?? null);
  }

  get knownTerm(): number {
    return this.term;
  }

  member(id: string): MemberDescription | null {
    return this.members.get(id)?.desc ?? null;
  }

  memberIds(): string[] {
    return [...this.members.keys()];
  }

  // -------------------------------------------------------------------------------------------
  // Where to send.

  /** For a write or a linearizable read. Null: no member is known that could take it. */
  pickLeader(nowMs: number, exclude: ReadonlySet<string> = EMPTY): MemberDescription | null {
    const leader = this.leaderId === null ? undefined : this.members.get(this.leaderId);
    if (leader !== undefined && !exclude.has(leader.desc.id) && !this.isDown(leader)) {
      return this.picked(leader, 'leader');
    }
    // No leader to reach: the best voter (it forwards the proposal once a leader exists); when
    // every voter is down, the one failing least, as a last resort: a member down for writes
    // gets no attempt that could clear it (only ejected ones are probed), so refusing them all
    // would refuse every write until some probe readmits one.
    let best: MemberState | null = null;
    let lastResort: MemberState | null = null;
    for (const m of this.members.values()) {
      if (m.desc.role === 'standby' || m.desc.role === 'replica' || exclude.has(m.desc.id))
        continue;
      if (this.isDown(m)) {
        if (lastResort === null || m.failuresInRow < lastResort.failuresInRow) lastResort = m;
        continue;
      }
      if (best === null || m.cost(nowMs) < best.cost(nowMs)) best = m;
    }
    best ??= lastResort;
    if (best === null) {
      this.decisions.none++;
      return null;
    }
    return this.picked(best, 'leader-fallback');
  }

  /** For a serializable or bounded-staleness read (or a watch). */
  pickRead(nowMs: number, exclude: ReadonlySet<string> = EMPTY): MemberDescription | null {
    this.refreshEjections(nowMs);
    const zone = this.options.zone;
    let bestZone: MemberState | null = null;
    let bestOther: MemberState | null = null;
    let fallback: MemberState | null = null;
    for (const m of this.members.values()) {
      if (!m.serving || exclude.has(m.desc.id)) continue;
      if (m.health !== 'ok' || this.isDown(m)) {
        if (fallback === null || m.untilMs < fallback.untilMs) fallback = m;
        continue;
      }
      const cost = m.cost(nowMs);
      if (zone !== null && m.desc.zone === zone) {
        if (bestZone === null || cost < bestZone.cost(nowMs)) bestZone = m;
      } else if (bestOther === null || cost < bestOther.cost(nowMs)) {
        bestOther = m;
      }
    }
    if (bestZone !== null) return this.picked(bestZone, 'read-zone');
    if (bestOther !== null) return this.picked(bestOther, 'read-other-zone');
    if (fallback !== null) return this.picked(fallback, 'read-ejected-fallback');
    this.decisions.none++;
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // Attempts.

  begin(memberId: string, nowMs: number, probe = false): Attempt {
    const m = this.members.get(memberId);
    const seq = ++this.seq;
    if (m !== undefined) {
      if (m.inFlight.size < ATTEMPTS_TRACKED_PER_MEMBER_MAX) m.inFlight.set(seq, nowMs);
      else m.inFlightUntracked++;
      if (probe) m.lastProbeMs = nowMs;
    }
    if (!probe)
      this.hedgeTokens = Math.min(
        this.options.hedgeBudgetBurst,
        this.hedgeTokens + this.options.hedgeBudgetRatio,
      );
    return { memberId, startMs: nowMs, probe, seq };
  }

  end(attempt: Attempt, outcome: AttemptOutcome, nowMs: number): void {
    const m = this.members.get(attempt.memberId);
    if (m === undefined) return; // forgotten meanwhile
    this.refreshEjections(nowMs);
    if (!m.inFlight.delete(attempt.seq) && m.inFlightUntracked > 0) m.inFlightUntracked--;
    const elapsedMs = Math.max(0, nowMs - attempt.startMs);
    if (outcome === 'failed') {
      m.slowInRow = 0;
      m.failuresInRow++;
      m.ewma.observe(Math.max(elapsedMs, this.options.outlierFloorMs), nowMs);
      if (attempt.probe) this.eject(m, nowMs);
      else if (m.failuresInRow >= this.options.failuresToEject) this.eject(m, nowMs);
      return;
    }
    if (outcome === 'abandoned' || outcome === 'outrun') {
      // Only a lower bound: counts when it raises the average (the member is slower than that).
      if (elapsedMs > (m.ewma.valueAt(nowMs) ?? 0)) m.ewma.observe(elapsedMs, nowMs);
      if (outcome === 'outrun') this.noteSlow(m, nowMs);
      else this.noteSpeed(m, elapsedMs, nowMs, attempt.probe);
      return;
    }
    m.failuresInRow = 0;
    m.ewma.observe(elapsedMs, nowMs);
    if (!attempt.probe) this.window.add(elapsedMs);
    this.noteSpeed(m, elapsedMs, nowMs, attempt.probe);
  }

  /** Members whose ejection ended and that are due a probe now. */
  dueProbes(nowMs: number): MemberDescription[] {
    this.refreshEjections(nowMs);
    const due: MemberDescription[] = [];
    for (const m of this.members.values()) {
      if (m.health !== 'probing' || m.inFlight.size > 0) continue;
      if (nowMs - m.lastProbeMs < this.options.probeIntervalMs) continue;
      due.push(m.desc);
    }
    return due;
  }

  // -------------------------------------------------------------------------------------------
  // Hedging.

  hedgeDelayMs(): number {
    const o = this.options;
    const q = this.window.size < 8 ? null : this.window.quantile(o.hedgeQuantile);
    return Math.min(o.hedgeDelayMaxMs, Math.max(o.hedgeDelayMinMs, q ?? o.hedgeDelayDefaultMs));
  }

  /** Spends one hedge from the budget; false when the budget is out (do not hedge). */
  tryHedge(): boolean {
    // (a tolerance: ten additions of 0.1 make 0.9999999999999999)
    if (this.hedgeTokens < 1 - 1e-9) {
      this.hedgesRefused++;
      return false;
    }
    this.hedgeTokens = Math.max(0, this.hedgeTokens - 1);
    this.hedgesSent++;
    return true;
  }

  /** A hedge answered before the attempt it backed up. */
  noteHedgeWon(): void {
    this.hedgesWon++;
  }

  // -------------------------------------------------------------------------------------------

  health(id: string): MemberHealth | null {
    return this.members.get(id)?.health ?? null;
  }

  report(nowMs: number): RouterReport {
    this.refreshEjections(nowMs);
    return {
      zone: this.options.zone,
      leaderId: this.leaderId,
      term: this.term,
      members: [...this.members.values()].map((m) => ({
        id: m.desc.id,
        name: m.desc.name,
        zone: m.desc.zone,
        role: m.desc.role,
        clientUrl: m.desc.clientUrl,
        health: m.health,
        ewmaMs: m.ewma.valueAt(nowMs),
        inFlight: m.inFlightCount,
        failuresInRow: m.failuresInRow,
        ejections: m.ejectionsTotal,
        ejectedForMs: m.health === 'ejected' ? Math.max(0, m.untilMs - nowMs) : 0,
        picks: m.picks,
      })),
      decisions: { ...this.decisions },
      hedges: { sent: this.hedgesSent, won: this.hedgesWon, refused: this.hedgesRefused },
      ejections: this.ejections,
      hedgeDelayMs: this.hedgeDelayMs(),
    };
  }

  // -------------------------------------------------------------------------------------------

  private picked(m: MemberState, decision: Decision): MemberDescription {
    m.picks++;
    this.decisions[decision]++;
    return m.desc;
  }

  /** Down for writes: failed `failuresToEject` times in a row (slowness does not count). */
  private isDown(m: MemberState): boolean {
    return m.failuresInRow >= this.options.failuresToEject;
  }

  private noteSpeed(m: MemberState, elapsedMs: number, nowMs: number, probe: boolean): void {
    const slowMs = this.slowThresholdMs(m);
    const slow = elapsedMs > slowMs;
    if (probe) {
      if (m.health !== 'probing') return;
      if (slow) this.eject(m, nowMs);
      else this.readmit(m, elapsedMs, nowMs);
      return;
    }
    if (slow) this.noteSlow(m, nowMs);
    else m.slowInRow = 0;
  }

  private noteSlow(m: MemberState, nowMs: number): void {
    m.slowInRow++;
    if (m.slowInRow >= this.options.slowSamplesToEject) this.eject(m, nowMs);
  }

  /** Slower than this is an outlier: outlierFactor × the others' median EWMA, floored. */
  private slowThresholdMs(self: MemberState): number {
    const others: number[] = [];
    for (const m of this.members.values()) {
      if (m === self || !m.serving || m.health !== 'ok') continue;
      // The last average, not decayed: an idle member is not thereby a fast one.
      const v = m.ewma.value;
      if (v !== null) others.push(v);
    }
    if (others.length === 0) return Number.POSITIVE_INFINITY; // nobody to compare with
    others.sort((a, b) => a - b);
    const median = others[Math.floor((others.length - 1) / 2)]!;
    return Math.max(this.options.outlierFloorMs, this.options.outlierFactor * median);
  }

  private eject(m: MemberState, nowMs: number): void {
    if (m.health === 'ejected') return;
    // Past the fraction, a member stays in: a failing one is then only a last resort (isDown).
    if (m.health === 'ok' && !this.mayEjectAnother()) return;
    const ms = Math.min(
      this.options.ejectMaxMs,
      this.options.ejectBaseMs * 2 ** Math.min(m.ejectionsInRow, 30),
    );
    m.health = 'ejected';
    m.untilMs = nowMs + ms;
    m.ejectionsInRow++;
    m.ejectionsTotal++;
    m.slowInRow = 0;
    this.ejections++;
  }

  private readmit(m: MemberState, probeMs: number, nowMs: number): void {
    m.health = 'ok';
    m.failuresInRow = 0;
    m.slowInRow = 0;
    m.ewma.reset(probeMs, nowMs);
    m.untilMs = nowMs;
  }

  private mayEjectAnother(): boolean {
    let serving = 0;
    let out = 0;
    for (const m of this.members.values()) {
      if (!m.serving) continue;
      serving++;
      if (m.health !== 'ok') out++;
    }
    return out + 1 <= Math.floor(serving * this.options.ejectFractionMax);
  }

  private refreshEjections(nowMs: number): void {
    for (const m of this.members.values()) {
      if (m.health === 'ejected' && nowMs >= m.untilMs) m.health = 'probing';
      // A member readmitted and well for ejectMaxMs starts its doubling afresh.
      if (
        m.health === 'ok' &&
        m.ejectionsInRow > 0 &&
        nowMs - m.untilMs >= this.options.ejectMaxMs
      ) {
        m.ejectionsInRow = 0;
      }
    }
  }
}

const EMPTY: ReadonlySet<string> = new Set();
