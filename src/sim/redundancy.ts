/**
 * Redundancy mode (`--member --redundancy`): the production RedundancyDriver
 * (src/server/redundancy.ts) ticked on every member of a member-mode cluster that has standbys,
 * under a nemesis built for it (long voter failures, flapping members, partitions, leader
 * crashes), with invariants on what the policy does (checked where the leader hands a change to
 * Raft, and at the end):
 *
 *   quorum-at-change      a change of the voter set leaves a live majority in the incoming (and
 *                         the outgoing, if joint) voter set, "live" as the policy could know it
 *   promote-caught-up     a promoted standby holds the log up to commit - catchUpEntriesMax
 *   flapping-churn        a member seen silent recently is not promoted (hysteresis); a member
 *                         whose outages were all short is never demoted
 *   one-change-at-a-time  no change is handed to Raft while another is in flight
 *   factor-restored       after the faults stop (one voter dead for good), the configuration is
 *                         back to `voters` live voters within a bound derived from the policy
 *                         (more only when an operator's voters alone outnumber it)
 *   trim-surplus          a trim (a voter demoted, none promoted) demotes a voter the policy
 *                         promoted, and only while the voters outnumber `voters`
 *
 * Some seeds play an operator too (`lateVoters`): etcd's `member add` of a voter during the
 * safety phase, its process started late (before or after replaceAfter; at the latest when the
 * liveness phase restarts everyone), as etcd's documented workflow does.
 *
 * Everything here is ground truth the simulator knows (who is down, which links are cut, each
 * member's durable log), translated into what the leader's policy could have known: silence is
 * only "noticeable" once it lasts longer than the detector's window plus the message latency
 * bound, and a member counts as live if it could have been heard within that window.
 */
import { STANDBY_MODES } from '../cluster/commands.js';
import { POLICY_BUG_NAMES, type PolicyBugName } from '../cluster/health.js';
import { makePolicy, quorumOf, type RedundancyPolicy, votersAfter } from '../cluster/policy.js';
import type { Founder } from '../cluster/registry.js';
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  type NodeId,
} from '../raft/types.js';
import { POLICY_INTERVAL_MS } from '../server/redundancy.js';
import { assert } from '../util/assert.js';
import { Prng } from '../util/prng.js';
import { InvariantViolation } from './checker.js';
import type { NetworkParams } from './network.js';

export { POLICY_BUG_NAMES, type PolicyBugName };

/** Standbys per seed, at most (members = voters + standbys <= 8: the sim's id space is small). */
export const STANDBYS_MAX = 3;
/** Outage intervals kept per node or link (older ones no longer matter to any check). */
export const OUTAGE_HISTORY_MAX = 256;
/** Probability bound for the latency margin: a latency above it happens with p < e^-28. */
const LATENCY_TAIL_FACTOR = 28;

/** An operator's `member add` of voter `id` at `atFraction` of the safety phase, started late. */
export interface LateVoter {
  readonly id: NodeId;
  readonly atFraction: number;
  readonly startAfterMs: number;
}
/** Late voters per seed, at most (two make the voter count odd: where a trim can lose quorum). */
export const LATE_VOTERS_MAX = 2;

export type FlapKind =
  /** Outages far shorter than silentAfter: invisible to the detector; must cause nothing. */
  | 'short'
  /** Outages the detector notices, separated by up periods shorter than stabilityMs. */
  | 'noticeable';

export interface RedundancyParams {
  readonly voters: number;
  readonly founders: readonly Founder[];
  readonly policy: RedundancyPolicy;
  /** A member that flaps for a while during the safety phase, or null. */
  readonly flapperId: NodeId | null;
  readonly flapKind: FlapKind;
  /** The liveness phase kills one voter for good: the factor must be restored without it. */
  readonly deadVoter: boolean;
  readonly nemesisEveryMs: number;
  readonly electionMs: number;
  readonly tickMs: number;
  /** A message is delivered within this of being sent (but for p < e^-28). */
  readonly latencyMarginMs: number;
  /** How stale the policy's knowledge of a member may be: silence or recent activity, plus latency. */
  readonly knowledgeWindowMs: number;
  /** The liveness phase must restore the factor (and commit a marker) within this. */
  readonly restoreBoundMs: number;
  /**
   * Share of the leader's membership changes followed at once by its crash (a targeted fault):
   * a new leader inherits the change unapplied, where one-change-at-a-time is easiest to break.
   */
  readonly crashAfterChangeRate: number;
  /** Voters an operator adds the etcd way (ids after the founders'); most seeds have none. */
  readonly lateVoters: readonly LateVoter[];
}

const ZONES = ['a', 'b'] as const;

/** The network a redundancy seed runs on: bounded tails, so silence has a meaning. */
export function redundancyNetwork(n: NetworkParams): NetworkParams {
  return {
    ...n,
    lossRate: Math.min(n.lossRate, 0.05),
    latencyTailMeanMs: Math.min(n.latencyTailMeanMs, 5),
    reorderDelayMsMax: Math.min(n.reorderDelayMsMax, 50),
  };
}

export function deriveRedundancyParams(
  seed: number,
  t: {
    voters?: number;
    electionMs: number;
    tickMs: number;
    requestTimeoutMs: number;
    network: NetworkParams;
    bug: PolicyBugName | null;
  },
): RedundancyParams {
  const rng = new Prng(seed ^ 0x72656475);
  const voters = t.voters ?? (rng.chance(0.25) ? 5 : 3);
  assert(voters === 3 || voters === 5, `redundancy mode runs 3 or 5 voters, got ${voters}`);
  const standbys = rng.range(1, STANDBYS_MAX);
  const founders: Founder[] = [];
  for (let id = 1; id <= voters + standbys; id++) {
    const standby = id > voters;
    founders.push({
      id,
      name: `n${id}`,
      peerUrls: [`http://n${id}:2380`],
      clientUrls: [`http://n${id}:2379`],
      role: standby ? 'standby' : 'voter',
      // A voter's mode is what it becomes when demoted.
      standbyMode: rng.pick(STANDBY_MODES),
      zone: rng.pick(ZONES),
    });
  }
  const replaceAfterMs = rng.range(1_000, 3_000);
  const silentAfterMs = rng.range(250, 450);
  const stabilityMinMs = silentAfterMs + 300;
  const stabilityMs = rng.range(
    stabilityMinMs,
    Math.max(stabilityMinMs, Math.min(1_500, replaceAfterMs - 300)),
  );
  const lagEntriesMax = rng.range(20, 200);
  const policy = makePolicy({
    voters,
    replaceAfterMs,
    silentAfterMs,
    stabilityMs,
    lagEntriesMax,
    catchUpEntriesMax: rng.range(0, 5),
    preferSameZone: rng.chance(0.7),
    bugs: new Set(t.bug === null ? [] : [t.bug]),
  });
  let flapperId: NodeId | null = null;
  if (rng.chance(0.6)) {
    // A flapping standby is most telling when it is the one the policy would pick: hot first.
    const hot = founders.filter((f) => f.role === 'standby' && f.standbyMode === 'hot');
    flapperId = rng.chance(0.6)
      ? hot.length > 0
        ? rng.pick(hot).id
        : rng.range(voters + 1, voters + standbys)
      : rng.range(1, voters);
  }
  const flapKind: FlapKind = rng.chance(0.5) ? 'short' : 'noticeable';
  const n = t.network;
  const latencyMarginMs =
    Math.ceil(n.latencyBaseMs + n.reorderDelayMsMax + LATENCY_TAIL_FACTOR * n.latencyTailMeanMs) +
    1;
  // Leader election after the restarts, the detector noticing the dead voter, replaceAfter,
  // trust regained by restarted members and by a staged standby (stability each), a handful of
  // policy rounds (stage, replace, leave joint, health records), one request stuck until its
  // timeout, and a catch-up allowance.
  const restoreBoundMs =
    10 * t.electionMs +
    silentAfterMs +
    replaceAfterMs +
    2 * stabilityMs +
    8 * POLICY_INTERVAL_MS +
    t.requestTimeoutMs +
    1_000;
  return {
    voters,
    founders,
    policy,
    flapperId,
    flapKind,
    deadVoter: rng.chance(0.7),
    nemesisEveryMs: rng.range(150, 500),
    electionMs: t.electionMs,
    tickMs: t.tickMs,
    latencyMarginMs,
    knowledgeWindowMs: Math.max(silentAfterMs, t.electionMs + t.tickMs) + latencyMarginMs,
    restoreBoundMs,
    // A stream of its own: the parameters above stay what they were for every seed.
    crashAfterChangeRate: new Prng(seed ^ 0x63726173).chance(0.5) ? 0.25 : 0,
    lateVoters: deriveLateVoters(seed, founders.length, replaceAfterMs),
  };
}

/** A stream of its own, like crashAfterChangeRate: seeds without late voters run as before. */
function deriveLateVoters(seed: number, founders: number, replaceAfterMs: number): LateVoter[] {
  const rng = new Prng(seed ^ 0x6c617465);
  if (!rng.chance(0.35)) return [];
  const count = rng.chance(0.5) ? LATE_VOTERS_MAX : 1;
  const atFraction = rng.float() * 0.5;
  const out: LateVoter[] = [];
  for (let i = 1; i <= count; i++) {
    out.push({
      id: founders + i,
      atFraction: Math.min(0.9, atFraction + rng.float() * 0.05),
      startAfterMs: rng.range(0, 2 * replaceAfterMs + 2_000),
    });
  }
  return out;
}

/**
 * The liveness phase's bound with late voters: they start (at the latest) with it, may be
 * trusted only after stabilityMs, and each may cost a replacement and a trim (joint changes).
 */
export function restoreBoundWithLateVoters(r: RedundancyParams): number {
  if (r.lateVoters.length === 0) return r.restoreBoundMs;
  const perVoterMs = r.policy.replaceAfterMs + r.policy.stabilityMs + 8 * POLICY_INTERVAL_MS;
  return r.restoreBoundMs + r.lateVoters.length * perVoterMs;
}

export function formatRedundancyParams(r: RedundancyParams): string {
  const p = r.policy;
  const members = r.founders
    .map((f) => `n${f.id}:${f.role === 'voter' ? 'V' : 'S'}-${f.standbyMode}-${f.zone}`)
    .join(',');
  return [
    'redundancy=on',
    `members=${members}`,
    `replace-after=${p.replaceAfterMs}ms`,
    `silent-after=${p.silentAfterMs}ms`,
    `stability=${p.stabilityMs}ms`,
    `lag-max=${p.lagEntriesMax}`,
    `catch-up-max=${p.catchUpEntriesMax}`,
    `same-zone=${p.preferSameZone}`,
    `flapper=${r.flapperId === null ? 'none' : `n${r.flapperId}/${r.flapKind}`}`,
    `dead-voter=${r.deadVoter}`,
    `rnemesis=${r.nemesisEveryMs}ms`,
    `latency-margin=${r.latencyMarginMs}ms`,
    `restore-bound=${r.restoreBoundMs}ms crash-after-change=${r.crashAfterChangeRate}`,
    `late-voters=${r.lateVoters.map((l) => `n${l.id}@${l.atFraction.toFixed(2)}+${l.startAfterMs}ms`).join(',') || 'none'}`,
    `policy-bug=${[...(p.bugs ?? [])].join(',') || 'none'}`,
  ].join(' ');
}

// ---------------------------------------------------------------------------------------------
// Ground truth: when each node was down, when each directed link was cut

interface Interval {
  readonly fromMs: number;
  toMs: number | null;
}

export class OutageLog {
  private readonly down = new Map<NodeId, Interval[]>();
  private readonly cut = new Map<string, Interval[]>();

  markDown(id: NodeId, nowMs: number): void {
    open(this.down, id, nowMs);
  }

  markUp(id: NodeId, nowMs: number): void {
    close(this.down, id, nowMs);
  }

  /** The set of cut directed links is now `links` (`from>to` keys). */
  setCuts(links: ReadonlySet<string>, nowMs: number): void {
    for (const [key, list] of this.cut) {
      const last = list[list.length - 1];
      if (last !== undefined && last.toMs === null && !links.has(key)) last.toMs = nowMs;
    }
    for (const key of links) {
      const last = this.cut.get(key)?.at(-1);
      if (last === undefined || last.toMs !== null) open(this.cut, key, nowMs);
    }
  }

  /**
   * Merged intervals during which `from`'s messages could not reach `to` (from down, or the
   * link from → to cut); with `bothWays`, the link to → from too. Open intervals end at now.
   */
  silences(
    from: NodeId,
    to: NodeId,
    nowMs: number,
    bothWays: boolean,
  ): { fromMs: number; toMs: number }[] {
    const parts = [
      ...(this.down.get(from) ?? []),
      ...(this.cut.get(linkKey(from, to)) ?? []),
      ...(bothWays ? (this.cut.get(linkKey(to, from)) ?? []) : []),
    ].map((i) => ({ fromMs: i.fromMs, toMs: i.toMs ?? nowMs }));
    parts.sort((a, b) => a.fromMs - b.fromMs);
    const merged: { fromMs: number; toMs: number }[] = [];
    for (const p of parts) {
      const last = merged[merged.length - 1];
      if (last !== undefined && p.fromMs <= last.toMs) last.toMs = Math.max(last.toMs, p.toMs);
      else merged.push({ ...p });
    }
    return merged;
  }
}

export function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}

function open<K>(map: Map<K, Interval[]>, key: K, nowMs: number): void {
  let list = map.get(key);
  if (list === undefined) {
    list = [];
    map.set(key, list);
  }
  const last = list[list.length - 1];
  if (last !== undefined && last.toMs === null) return;
  list.push({ fromMs: nowMs, toMs: null });
  if (list.length > OUTAGE_HISTORY_MAX) list.shift();
}

function close<K>(map: Map<K, Interval[]>, key: K, nowMs: number): void {
  const last = map.get(key)?.at(-1);
  if (last !== undefined && last.toMs === null) last.toMs = nowMs;
}

// ---------------------------------------------------------------------------------------------
// The checks where the leader hands a membership change to Raft

/** What the simulator knows at the moment the leader's driver proposes a change. */
export interface ChangeContext {
  readonly leader: NodeId;
  readonly nowMs: number;
  readonly change: ConfChange;
  /** The leader's applied configuration. */
  readonly config: ConfState;
  readonly commit: number;
  /** When this member became leader (its current term). */
  readonly leaderSinceMs: number;
  /** Conf changes this member handed to Raft earlier and not yet resolved. */
  readonly outstanding: number;
  /** A conf change entry in the leader's log above its applied index, or null. */
  readonly unappliedConfIndex: number | null;
  lastIndexOf(id: NodeId): number;
  /** The leader's registry: `id` votes because the policy promoted it. */
  promotedByPolicy(id: NodeId): boolean;
}

export class RedundancyChecker {
  checksCount = 0;
  changesProposed = 0;
  readonly outages = new OutageLog();

  constructor(private readonly r: RedundancyParams) {}

  private get policy(): RedundancyPolicy {
    return this.r.policy;
  }

  /** The invariants on one change, in the order a reader would check them. */
  onChangeProposed(c: ChangeContext): void {
    this.changesProposed++;
    this.checkOneAtATime(c);
    const incoming = votersAfter(c.config.voters, c.change.changes);
    const before = new Set(c.config.voters);
    // Raft's rule: joint unless one simple change that demotes no voter.
    const joint =
      c.change.changes.length > 1 ||
      c.change.transition !== ConfChangeTransition.Auto ||
      c.change.changes.some((s) => s.type !== ConfChangeType.AddNode && before.has(s.nodeId));
    const votersChanged =
      joint || incoming.length !== before.size || incoming.some((id) => !before.has(id));
    if (votersChanged) {
      this.checkQuorum(c, incoming, 'incoming');
      if (joint) this.checkQuorum(c, c.config.voters, 'outgoing');
    }
    let promotes = false;
    for (const s of c.change.changes) {
      if (s.type === ConfChangeType.AddNode && !before.has(s.nodeId)) {
        promotes = true;
        this.checkPromotion(c, s.nodeId);
      }
    }
    for (const id of c.config.voters) {
      if (incoming.includes(id)) continue;
      // A voter demoted with nobody promoted is a trim: a healthy surplus voter goes, by design.
      if (promotes) this.checkDemotion(c, id);
      else this.checkTrim(c, id);
    }
  }

  private checkTrim(c: ChangeContext, id: NodeId): void {
    this.checksCount++;
    const voters = c.config.voters.length;
    if (voters <= this.policy.voters || !c.promotedByPolicy(id)) {
      throw new InvariantViolation(
        'trim-surplus',
        `leader n${c.leader} demoted n${id} with nobody promoted, at ${voters} voters of ` +
          `${this.policy.voters}${c.promotedByPolicy(id) ? '' : ', and the policy did not promote it'}`,
      );
    }
  }

  private checkOneAtATime(c: ChangeContext): void {
    this.checksCount++;
    const why =
      c.outstanding > 0
        ? `${c.outstanding} change(s) it handed to Raft earlier are unresolved`
        : c.unappliedConfIndex !== null
          ? `conf change entry ${c.unappliedConfIndex} in its log is not applied`
          : c.config.votersOutgoing.length > 0
            ? 'its configuration is joint'
            : null;
    if (why !== null) {
      throw new InvariantViolation(
        'one-change-at-a-time',
        `leader n${c.leader} proposed ${describe(c.change)} while ${why}`,
      );
    }
  }

  /**
   * A voter counts as live if the leader could have heard from it within the detector's window
   * (it was up and its link to the leader open at some moment then) and its durable log is not
   * lagging (per lagEntriesMax: the leader's match index is never ahead of it).
   */
  private checkQuorum(c: ChangeContext, voters: readonly NodeId[], which: string): void {
    this.checksCount++;
    const windowMs = this.r.knowledgeWindowMs;
    const live = voters.filter(
      (id) =>
        id === c.leader ||
        (!this.silentThroughout(id, c.leader, c.nowMs - windowMs, c.nowMs) &&
          c.lastIndexOf(id) >= c.commit - this.policy.lagEntriesMax),
    );
    if (voters.length === 0 || live.length < quorumOf(voters.length)) {
      throw new InvariantViolation(
        'quorum-at-change',
        `leader n${c.leader} proposed ${describe(c.change)}: the ${which} voters ` +
          `[${voters.join(',')}] have ${live.length} live (${live.join(',') || 'none'}), a ` +
          `quorum needs ${quorumOf(voters.length)}`,
      );
    }
  }

  private silentThroughout(id: NodeId, leader: NodeId, fromMs: number, toMs: number): boolean {
    return this.outages
      .silences(id, leader, toMs, false)
      .some((s) => s.fromMs <= fromMs && s.toMs >= toMs);
  }

  private checkPromotion(c: ChangeContext, id: NodeId): void {
    this.checksCount++;
    const last = c.lastIndexOf(id);
    if (last < c.commit - this.policy.catchUpEntriesMax) {
      throw new InvariantViolation(
        'promote-caught-up',
        `leader n${c.leader} promoted n${id} whose log ends at ${last}, but the commit index ` +
          `is ${c.commit} (at most ${this.policy.catchUpEntriesMax} behind to promote)`,
      );
    }
    // Hysteresis: after a silence the detector noticed, the member is trusted again only once
    // it was heard for stabilityMs. Noticed: the silence, as seen by this leader's detector
    // (from its first round on), outlasts the window plus one policy round.
    const noticeMs = this.r.knowledgeWindowMs + POLICY_INTERVAL_MS;
    const observedFromMs = c.leaderSinceMs + POLICY_INTERVAL_MS;
    for (const s of this.outages.silences(id, c.leader, c.nowMs, false)) {
      const from = Math.max(s.fromMs, observedFromMs);
      if (s.toMs - POLICY_INTERVAL_MS < from + noticeMs) continue;
      if (c.nowMs < s.toMs - POLICY_INTERVAL_MS + this.policy.stabilityMs) {
        const ago = c.nowMs - s.toMs;
        throw new InvariantViolation(
          'flapping-churn',
          `leader n${c.leader} promoted n${id} ${ago === 0 ? 'while it is silent' : `${ago.toFixed(0)}ms after`} ` +
            `a ${(s.toMs - s.fromMs).toFixed(0)}ms silence (trusted again only after ` +
            `${this.policy.stabilityMs}ms heard)`,
        );
      }
    }
  }

  /**
   * A member whose outages were all far shorter than silentAfterMs never looked failed: it
   * must not be demoted. (An outage here is the member down, or any link with it cut.)
   */
  private checkDemotion(c: ChangeContext, id: NodeId): void {
    this.checksCount++;
    const needMs = this.policy.silentAfterMs / 2;
    let longestMs = 0;
    for (const f of this.r.founders) {
      if (f.id === id) continue;
      for (const s of this.outages.silences(id, f.id, c.nowMs, true)) {
        longestMs = Math.max(longestMs, s.toMs - s.fromMs);
      }
    }
    if (longestMs < needMs) {
      throw new InvariantViolation(
        'flapping-churn',
        `leader n${c.leader} demoted n${id}, whose longest outage was ${longestMs.toFixed(0)}ms ` +
          `(silentAfter ${this.policy.silentAfterMs}ms)`,
      );
    }
  }

  /**
   * factor-restored, at the end of the liveness phase: the leader's configuration has `voters`
   * voters, all up, and is not joint — given a standby existed to take the dead voter's place.
   */
  factorRestored(
    config: ConfState,
    isUp: (id: NodeId) => boolean,
    standbys: number,
    operatorVoters: number,
  ): string | null {
    this.checksCount++;
    if (standbys === 0) return null; // nothing could replace a dead voter (honest: no spare)
    if (config.votersOutgoing.length > 0) return 'the configuration is still joint';
    // An operator's voters (founders, member add) are never trimmed: they alone may outnumber.
    const expected = Math.max(this.policy.voters, operatorVoters);
    if (config.voters.length !== expected) {
      return `${config.voters.length} voters of ${expected} (policy ${this.policy.voters}, ${operatorVoters} the operator's)`;
    }
    const down = config.voters.filter((id) => !isUp(id));
    return down.length === 0 ? null : `voter(s) ${down.map((id) => `n${id}`).join(',')} down`;
  }
}

export function describe(change: ConfChange): string {
  const names = ['add', 'remove', 'add-learner'];
  const parts = change.changes.map((s) => `${names[s.type] ?? s.type} n${s.nodeId}`);
  return parts.length === 0 ? 'leave-joint' : `[${parts.join(', ')}]`;
}

// ---------------------------------------------------------------------------------------------
// The nemesis of redundancy mode

/** What the nemesis may do to the cluster (implemented by the member simulation). */
export interface NemesisWorld {
  readonly rng: Prng;
  nowMs(): number;
  after(delayMs: number, fn: () => void): void;
  ids(): readonly NodeId[];
  isUp(id: NodeId): boolean;
  leader(): NodeId | null;
  /** Every voter set that must keep a live majority (applied configurations, pending changes). */
  voterSets(): (readonly NodeId[])[];
  crash(id: NodeId): void;
  start(id: NodeId): void;
  /** The directed links cut from now on (`linkKey` form). */
  setCuts(links: ReadonlySet<string>): void;
  transfer(from: NodeId, to: NodeId): void;
  trace(text: string, code: number, a?: number, b?: number): void;
}

const NEMESIS_FAULTS = [
  'long-failure',
  'medium-failure',
  'leader-crash',
  'flash-crash',
  'one-way',
  'transfer',
] as const;
type NemesisFault = (typeof NEMESIS_FAULTS)[number];
/** Weights of the faults above (out of their sum). */
const NEMESIS_WEIGHTS: Readonly<Record<NemesisFault, number>> = {
  'long-failure': 3,
  'medium-failure': 3,
  'leader-crash': 2,
  'flash-crash': 2,
  'one-way': 2,
  transfer: 1,
};
/** Long failures at once, at most (each lasts longer than replaceAfter). */
const LONG_FAILURES_MAX = 2;

/**
 * Only faults a quorum survives last: before impairing a node (down, cut off, flapping), every
 * voter set it belongs to must keep a majority of unimpaired members. Flash crashes (shorter than
 * half an election timeout) may hit anyone, as in member mode.
 */
export class RedundancyNemesis {
  /** Per node: how many faults impair it now (a node can be down and cut off at once). */
  private readonly impaired = new Map<NodeId, number>();
  private readonly partitions = new Set<readonly string[]>();
  private longFailures = 0;
  private stopped = false;
  faults = 0;

  constructor(
    private readonly w: NemesisWorld,
    private readonly r: RedundancyParams,
  ) {}

  /** One nemesis round: a fault drawn by weight (skipped when no victim fits the budget). */
  act(): void {
    if (this.stopped) return;
    let total = 0;
    for (const f of NEMESIS_FAULTS) total += NEMESIS_WEIGHTS[f];
    let x = this.w.rng.int(total);
    for (const f of NEMESIS_FAULTS) {
      if (x < NEMESIS_WEIGHTS[f]) {
        this.fault(f);
        return;
      }
      x -= NEMESIS_WEIGHTS[f];
    }
  }

  /** The flapping member's schedule: starts at `atMs`, flaps for `forMs`. */
  scheduleFlapper(atMs: number, forMs: number): void {
    const id = this.r.flapperId;
    if (id === null) return;
    this.w.after(atMs, () => {
      if (this.stopped || !this.fits([id])) return;
      this.w.trace(`flapping n${id} (${this.r.flapKind}) for ${forMs}ms`, 20, id);
      this.hold(id);
      // A standby flapping while a voter needs replacing: it must not be trusted meanwhile.
      if (!this.w.voterSets().some((set) => set.includes(id))) this.fault('long-failure');
      const endMs = this.w.nowMs() + forMs;
      const p = this.r.policy;
      const flap = (): void => {
        if (this.stopped || this.w.nowMs() >= endMs) {
          this.release(id);
          return;
        }
        const outMs =
          this.r.flapKind === 'short'
            ? this.w.rng.range(5, Math.floor(p.silentAfterMs / 4))
            : this.r.knowledgeWindowMs + 2 * POLICY_INTERVAL_MS + this.w.rng.range(50, 500);
        const upMs = this.w.rng.range(50, Math.max(50, p.stabilityMs - 2 * POLICY_INTERVAL_MS));
        this.outage(id, outMs, this.w.rng.chance(0.5), () => this.w.after(upMs, flap));
      };
      flap();
    });
  }

  /**
   * The leader's driver handed a membership change to Raft: now and then the leader crashes
   * before the change applies (see crashAfterChangeRate).
   */
  onChangeProposed(leader: NodeId): void {
    if (this.stopped || this.r.crashAfterChangeRate === 0) return;
    if (!this.w.rng.chance(this.r.crashAfterChangeRate)) return;
    if (this.isImpaired(leader) || !this.fits([leader])) return;
    const electionMs = this.r.electionMs;
    this.w.after(this.w.rng.range(0, 10), () => {
      if (this.stopped || !this.w.isUp(leader) || this.isImpaired(leader)) return;
      if (!this.fits([leader])) return;
      this.outage(leader, this.w.rng.range(electionMs, 1_500), true, () => {});
    });
  }

  /** The liveness phase: no new faults, partitions healed (the caller restarts the nodes). */
  stop(): void {
    this.stopped = true;
    this.partitions.clear();
    this.w.setCuts(new Set());
  }

  private fault(kind: NemesisFault): void {
    const w = this.w;
    const ids = w.ids();
    const leader = w.leader();
    const p = this.r.policy;
    const electionMs = this.r.electionMs;
    const free = (pool: readonly NodeId[]) =>
      pool.filter((id) => w.isUp(id) && !this.isImpaired(id) && this.fits([id]));
    switch (kind) {
      case 'long-failure': {
        if (this.longFailures >= LONG_FAILURES_MAX) return;
        const voters = free([...new Set(w.voterSets().flat())]);
        if (voters.length === 0) return;
        const id =
          leader !== null && voters.includes(leader) && w.rng.chance(0.3)
            ? leader
            : w.rng.pick(voters);
        const ms = p.replaceAfterMs + p.silentAfterMs + w.rng.range(300, 2_500);
        this.longFailures++;
        this.outage(id, ms, w.rng.chance(0.7), () => this.longFailures--);
        return;
      }
      case 'medium-failure': {
        const pool = free(ids);
        if (pool.length === 0) return;
        const ms = w.rng.range(electionMs, Math.floor(p.replaceAfterMs * 0.7));
        this.outage(w.rng.pick(pool), ms, w.rng.chance(0.5), () => {});
        return;
      }
      case 'leader-crash': {
        if (leader === null || this.isImpaired(leader) || !this.fits([leader])) return;
        this.outage(leader, w.rng.range(electionMs, 1_500), true, () => {});
        return;
      }
      case 'flash-crash': {
        const up = ids.filter((id) => w.isUp(id) && !this.isImpaired(id));
        if (up.length === 0) return;
        const id = w.rng.pick(up);
        const ms = Math.max(1, Math.floor((w.rng.float() * electionMs) / 2));
        this.faults++;
        w.trace(`flash-crash n${id} for ${ms}ms`, 21, id, ms);
        w.crash(id);
        w.after(ms, () => {
          if (!w.isUp(id) && !this.stopped) w.start(id);
        });
        return;
      }
      case 'one-way': {
        const a = w.rng.pick(ids);
        const b = w.rng.pick(ids);
        if (a === b || this.isImpaired(a) || this.isImpaired(b) || !this.fits([a, b])) return;
        const links = [linkKey(a, b)];
        const ms = w.rng.range(electionMs, 2 * p.replaceAfterMs);
        this.faults++;
        w.trace(`cut n${a}→n${b} for ${ms}ms`, 22, a, b);
        this.hold(a);
        this.hold(b);
        this.cut(links);
        w.after(ms, () => {
          this.uncut(links);
          this.release(a);
          this.release(b);
        });
        return;
      }
      case 'transfer': {
        if (leader === null) return;
        const voters = [...new Set(w.voterSets().flat())].filter((id) => id !== leader);
        if (voters.length === 0) return;
        const to = w.rng.pick(voters);
        w.trace(`transfer leadership n${leader}→n${to}`, 23, leader, to);
        w.transfer(leader, to);
        return;
      }
    }
  }

  /** `id` is down (crash) or cut off (isolation) for `ms`, then back; `done` after. */
  private outage(id: NodeId, ms: number, crash: boolean, done: () => void): void {
    const w = this.w;
    this.faults++;
    w.trace(`${crash ? 'crash' : 'isolate'} n${id} for ${ms}ms`, crash ? 24 : 25, id, ms);
    this.hold(id);
    let links: string[] = [];
    if (crash) {
      w.crash(id);
    } else {
      for (const x of w.ids()) if (x !== id) links.push(linkKey(id, x), linkKey(x, id));
      this.cut(links);
    }
    w.after(ms, () => {
      if (crash) {
        if (!this.stopped && !w.isUp(id)) w.start(id);
      } else {
        this.uncut(links);
        links = [];
      }
      this.release(id);
      done();
    });
  }

  private cut(links: readonly string[]): void {
    this.partitions.add(links);
    this.applyCuts();
  }

  private uncut(links: readonly string[]): void {
    this.partitions.delete(links);
    this.applyCuts();
  }

  private applyCuts(): void {
    if (this.stopped) return;
    const all = new Set<string>();
    for (const links of this.partitions) for (const l of links) all.add(l);
    this.w.setCuts(all);
  }

  private hold(id: NodeId): void {
    this.impaired.set(id, (this.impaired.get(id) ?? 0) + 1);
  }

  private release(id: NodeId): void {
    const n = this.impaired.get(id) ?? 0;
    assert(n > 0, `n${id} released more often than impaired`);
    if (n === 1) this.impaired.delete(id);
    else this.impaired.set(id, n - 1);
  }

  isImpaired(id: NodeId): boolean {
    return this.impaired.has(id);
  }

  /**
   * etcd's strict reconfiguration check, on ground truth: adding voter `id` (down) leaves every
   * voter set with a majority of up, unimpaired members.
   */
  admitsVoter(id: NodeId): boolean {
    for (const set of this.w.voterSets()) {
      const good = set.filter((x) => x !== id && this.w.isUp(x) && !this.isImpaired(x)).length;
      if (good < quorumOf(set.length + (set.includes(id) ? 0 : 1))) return false;
    }
    return true;
  }

  /** Impairing `victims` too still leaves a majority of every voter set unimpaired and up. */
  private fits(victims: readonly NodeId[]): boolean {
    for (const set of this.w.voterSets()) {
      let bad = 0;
      for (const id of set) {
        if (victims.includes(id) || this.isImpaired(id) || !this.w.isUp(id)) bad++;
      }
      if (set.length - bad < quorumOf(set.length)) return false;
    }
    return true;
  }
}
