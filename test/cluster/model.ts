/**
 * A small model cluster for the policy's property tests: the real registry, the real failure
 * detector, the real planner and raft's real confchange, over a virtual clock, with members
 * going down, coming back and flapping on a schedule. The leader (member 1) never fails: leader
 * failover is Raft's business, tested there.
 *
 * Every tick: replicate (commit advances while a quorum is up; members in the configuration catch
 * up), apply a pending membership change once its delay is over, the operator's etcd-style
 * changes (`additions`: member add of a voter, started late or never, maybe member remove),
 * observe, plan, check. Each check that fails is recorded under the property it belongs to, so
 * one run serves them all.
 */
import type { Role, StandbyMode } from '../../src/cluster/commands.js';
import { FailureDetector, type PolicyBugName } from '../../src/cluster/health.js';
import {
  failedVoters,
  makePolicy,
  planRedundancy,
  quorumOf,
  type RedundancyAction,
  type RedundancyPolicy,
  type RedundancyView,
} from '../../src/cluster/policy.js';
import { encodeAttributes, MemberRegistry, wasDemoted } from '../../src/cluster/registry.js';
import { LEAVE_JOINT_CONF_CHANGE } from '../../src/raft/codec.js';
import { applyChange, type ChangeBase, restore } from '../../src/raft/confchange/confchange.js';
import type { Progress } from '../../src/raft/tracker/progress.js';
import {
  EMPTY_TRACKER_CONFIG,
  isJoint,
  type TrackerConfig,
  toConfState,
} from '../../src/raft/tracker/tracker.js';
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  type NodeId,
} from '../../src/raft/types.js';

export const TICK_MS = 250;
const COMMIT_PER_TICK = 5;
const CATCH_UP_PER_TICK = 60;
const LEADER: NodeId = 1;

/** Fast timings so a run of a few hundred ticks sees several replacements. */
export function modelPolicy(voters: number, bugs: PolicyBugName[] = []): RedundancyPolicy {
  return makePolicy({
    voters,
    replaceAfterMs: 20 * TICK_MS,
    silentAfterMs: 3 * TICK_MS,
    stabilityMs: 8 * TICK_MS,
    lagEntriesMax: 200,
    catchUpEntriesMax: 20,
    preferSameZone: true,
    bugs: new Set(bugs),
  });
}

export interface MemberPlan {
  readonly id: NodeId;
  readonly role: Role;
  readonly mode: StandbyMode;
  readonly zone: string;
}

/** Down during [fromTick, toTick). */
export interface Outage {
  readonly id: NodeId;
  readonly fromTick: number;
  readonly toTick: number;
}

/** Up for `upTicks`, down for `downTicks`, repeating (up runs shorter than stabilityMs). */
export interface Flapper {
  readonly id: NodeId;
  readonly upTicks: number;
  readonly downTicks: number;
  readonly phase: number;
}

/**
 * An operator's `etcdctl member add` of a voter at `atTick` (retried each tick until etcd's
 * strict reconfiguration check and a free change slot allow it); its process starts at
 * `startTick` (null: never) and `member remove` at `removeTick` (null: never).
 */
export interface Addition {
  readonly id: NodeId;
  readonly atTick: number;
  readonly startTick: number | null;
  readonly removeTick: number | null;
}

/** The policy's own surplus voters may outlive all-healthy rounds by at most this many. */
export const TRIM_ROUNDS_MAX = 2;

export interface ModelSpec {
  readonly target: number;
  readonly members: readonly MemberPlan[];
  readonly outages: readonly Outage[];
  readonly flappers: readonly Flapper[];
  /** Ticks of the eventful phase. */
  readonly ticks: number;
  /** Then a quiet phase: everyone up except `dead`, no flapping. */
  readonly quietTicks: number;
  readonly dead: NodeId | null;
  /** Ticks a proposed change takes to apply (cycled). */
  readonly applyDelays: readonly number[];
  readonly bugs: readonly PolicyBugName[];
  /** Voters an operator adds the etcd way (ids above the members'); none if absent. */
  readonly additions?: readonly Addition[];
}

export type PropertyName =
  | 'healthy-quorum'
  | 'one-change-at-a-time'
  | 'factor-restored'
  | 'no-flapping-churn'
  | 'promote-caught-up'
  | 'raft-accepts'
  | 'voters-trimmed'
  | 'liveness';

export interface Violation {
  readonly property: PropertyName;
  readonly tick: number;
  readonly detail: string;
}

export class ClusterModel {
  readonly policy: RedundancyPolicy;
  readonly registry: MemberRegistry;
  readonly violations: Violation[] = [];
  readonly actions: { tick: number; action: RedundancyAction }[] = [];
  livenessChecked = false;
  private tick = 0;
  private commit = 0;
  private config: TrackerConfig = EMPTY_TRACKER_CONFIG;
  private progress: Map<NodeId, Progress> = new Map();
  private readonly match = new Map<NodeId, number>();
  private readonly lastHeardMs = new Map<NodeId, number>();
  private readonly snapshotIndex = new Map<NodeId, number>();
  private readonly lastSnapshotSentMs = new Map<NodeId, number>();
  private readonly detector: FailureDetector;
  private pending: { change: ConfChange; applyAt: number } | null = null;
  private proposals = 0;
  /** Flapping members the detector has seen go silent: known flappers from then on. */
  private readonly flappersSeenDown = new Set<NodeId>();
  private readonly flapperDemotions = new Map<NodeId, number>();
  /** The operator's additions and removals carried out (each once). */
  private readonly added = new Set<NodeId>();
  private readonly removed = new Set<NodeId>();
  /** Consecutive all-healthy rounds with a surplus the policy could trim. */
  private surplusRounds = 0;

  constructor(private readonly spec: ModelSpec) {
    this.policy = modelPolicy(spec.target, [...spec.bugs]);
    this.detector = new FailureDetector(this.policy);
    this.registry = this.bootstrap();
    // As a leader does (memory.ts lead): members added later are silent only since they appear.
    this.detector.seed(this.registry.all(), 0);
  }

  private bootstrap(): MemberRegistry {
    const attrs = (id: NodeId) => ({ id, name: `n${id}`, peerUrls: [`p${id}`], clientUrls: [] });
    const voters = this.spec.members.filter((m) => m.role === 'voter').map((m) => m.id);
    const registry = MemberRegistry.bootstrap(voters.map(attrs));
    const learners = this.spec.members
      .filter((m) => m.role === 'replica' || (m.role === 'standby' && m.mode === 'hot'))
      .map((m) => m.id);
    const cs = { ...toConfState(EMPTY_TRACKER_CONFIG), voters, learners };
    registry.applyConfState(cs, null, null);
    for (const id of learners) registry.updateAttributes(id, attrs(id));
    const r = restore(this.base(), cs);
    [this.config, this.progress] = [r.config, r.progress];
    for (const m of this.spec.members) {
      const { id, mode } = m;
      if (m.role === 'standby' && mode !== 'hot') {
        registry.applyCommand({
          kind: 'register',
          ...attrs(id),
          zone: m.zone,
          mode,
          snapshotEveryMs: 2_000,
        });
      }
      registry.applyCommand({ kind: 'set-zone', id, zone: m.zone });
      registry.applyCommand({ kind: 'set-standby', id, mode, snapshotEveryMs: 2_000 });
      if (m.role === 'replica') registry.applyCommand({ kind: 'set-role', id, role: 'replica' });
      if (learners.includes(id) || voters.includes(id)) this.match.set(id, 0);
    }
    return registry;
  }

  private base(): ChangeBase {
    return {
      config: this.config,
      progress: this.progress,
      lastIndex: this.commit,
      maxInflightMsgs: 16,
    };
  }

  private flapper(id: NodeId): Flapper | undefined {
    return this.spec.flappers.find((f) => f.id === id);
  }

  private addition(id: NodeId): Addition | undefined {
    return this.spec.additions?.find((a) => a.id === id);
  }

  isUp(id: NodeId, tick = this.tick): boolean {
    if (id === LEADER) return true;
    const a = this.addition(id);
    if (a !== undefined) return a.startTick !== null && tick >= a.startTick;
    if (tick >= this.spec.ticks) return id !== this.spec.dead;
    if (this.spec.outages.some((o) => o.id === id && o.fromTick <= tick && tick < o.toTick)) {
      return false;
    }
    const f = this.flapper(id);
    return f === undefined || (tick + f.phase) % (f.upTicks + f.downTicks) < f.upTicks;
  }

  private nowMs(): number {
    return this.tick * TICK_MS;
  }

  private voterSets(): (readonly NodeId[])[] {
    return isJoint(this.config)
      ? [this.config.voters, this.config.votersOutgoing]
      : [this.config.voters];
  }

  private inConfig(): NodeId[] {
    const c = this.config;
    return [...new Set([...c.voters, ...c.votersOutgoing, ...c.learners, ...c.learnersNext])];
  }

  run(): this {
    const total = this.spec.ticks + this.spec.quietTicks;
    while (this.tick < total) this.step();
    this.checkLiveness();
    return this;
  }

  private step(): void {
    this.tick++;
    const quorumUp = this.voterSets().every(
      (s) => s.filter((id) => this.isUp(id)).length >= quorumOf(s.length),
    );
    if (quorumUp) this.commit += COMMIT_PER_TICK;
    for (const id of this.inConfig()) {
      if (!this.isUp(id)) continue;
      const m = id === LEADER ? this.commit : (this.match.get(id) ?? 0) + CATCH_UP_PER_TICK;
      this.match.set(id, Math.min(this.commit, m));
    }
    for (const m of this.registry.all()) {
      if (this.isUp(m.id)) this.lastHeardMs.set(m.id, this.nowMs());
    }
    if (this.pending !== null && this.tick >= this.pending.applyAt && quorumUp) this.applyPending();
    this.operator();
    this.observe();
    const view = this.view();
    this.checkTrimmed(view);
    const action = planRedundancy(view, this.policy, this.nowMs());
    if (action === null) {
      this.checkProgress(view, null);
      return;
    }
    this.actions.push({ tick: this.tick, action });
    this.check(view, action);
    this.carryOut(action);
  }

  private applyPending(): void {
    const { change } = this.pending!;
    const r = applyChange(this.base(), change);
    [this.config, this.progress] = [r.config, r.progress];
    this.registry.applyConfChange(toConfState(this.config), change);
    const present = new Set(this.inConfig());
    for (const id of present) {
      // A staged warm standby starts from its last snapshot, a cold one from nothing.
      if (!this.match.has(id)) this.match.set(id, this.snapshotIndex.get(id) ?? 0);
    }
    for (const id of [...this.match.keys()]) if (!present.has(id)) this.match.delete(id);
    this.pending =
      isJoint(this.config) && this.config.autoLeave
        ? { change: LEAVE_JOINT_CONF_CHANGE, applyAt: this.tick + this.delay() }
        : null;
  }

  /**
   * etcd's MemberAdd and MemberRemove, as src/server/facade.ts proposes them: one at a time, only
   * when the strict reconfiguration check passes (the up voters of the result, the added one
   * counting as down, make a quorum).
   */
  private operator(): void {
    if (this.pending !== null || isJoint(this.config)) return;
    for (const a of this.spec.additions ?? []) {
      if (!this.added.has(a.id) && this.tick >= a.atTick) {
        const voters = [...this.config.voters, a.id];
        if (!this.reconfigAllowed(voters, a.id)) return;
        this.added.add(a.id);
        const context = encodeAttributes({
          name: `n${a.id}`,
          peerUrls: [`p${a.id}`],
          clientUrls: [],
        });
        this.propose({ type: ConfChangeType.AddNode, nodeId: a.id }, context);
        return;
      }
      const known = this.registry.get(a.id) !== undefined;
      if (a.removeTick !== null && this.tick >= a.removeTick && known && !this.removed.has(a.id)) {
        const voters = this.config.voters.filter((id) => id !== a.id);
        if (!this.reconfigAllowed(voters, null)) return;
        this.removed.add(a.id);
        this.propose({ type: ConfChangeType.RemoveNode, nodeId: a.id }, new Uint8Array(0));
        return;
      }
    }
  }

  private reconfigAllowed(voters: readonly NodeId[], adding: NodeId | null): boolean {
    const up = voters.filter((id) => id !== adding && this.isUp(id)).length;
    return up >= quorumOf(voters.length);
  }

  private propose(change: ConfChange['changes'][number], context: Uint8Array): void {
    const c: ConfChange = { transition: ConfChangeTransition.Auto, changes: [change], context };
    this.pending = { change: c, applyAt: this.tick + this.delay() };
  }

  /**
   * voters-trimmed: more voters than the policy wants, all healthy, nothing pending, and a voter
   * the policy promoted (not the leader) to return: trimmed within TRIM_ROUNDS_MAX rounds.
   */
  private checkTrimmed(view: RedundancyView): void {
    const { config } = view;
    const surplus =
      !view.pendingConfChange &&
      config.votersOutgoing.length === 0 &&
      config.voters.length > this.policy.voters &&
      config.voters.every((id) => this.healthy(view, id)) &&
      view.members.some(
        (m) => m.placement === 'voter' && m.promotedByPolicy && m.id !== view.leaderId,
      );
    this.surplusRounds = surplus ? this.surplusRounds + 1 : 0;
    if (this.surplusRounds > TRIM_ROUNDS_MAX) {
      this.violate(
        'voters-trimmed',
        `${config.voters.length} voters of ${this.policy.voters}, all healthy, for ${this.surplusRounds} rounds`,
      );
    }
  }

  /** Voters now (the applied configuration's incoming set). */
  voters(): readonly NodeId[] {
    return this.config.voters;
  }

  private delay(): number {
    const d = this.spec.applyDelays;
    return d[this.proposals++ % d.length]!;
  }

  private observe(): void {
    const observations = this.registry.all().map((m) => ({
      id: m.id,
      lastHeardMs: this.lastHeardMs.get(m.id) ?? null,
      match: this.match.get(m.id) ?? null,
    }));
    this.detector.observe(this.nowMs(), this.commit, observations);
    for (const f of this.spec.flappers) {
      if (this.detector.get(f.id)?.state === 'unreachable') this.flappersSeenDown.add(f.id);
    }
  }

  view(): RedundancyView {
    const heardRecently = (id: NodeId) =>
      this.nowMs() - (this.lastHeardMs.get(id) ?? Number.NEGATIVE_INFINITY) <=
      this.policy.silentAfterMs;
    const quorumActive = this.voterSets().every(
      (s) => s.filter(heardRecently).length >= quorumOf(s.length),
    );
    const progress = new Map([...this.match].map(([id, match]) => [id, { match }]));
    return {
      leaderId: LEADER,
      members: this.registry.all(),
      config: toConfState(this.config),
      commit: this.commit,
      progress,
      pendingConfChange: this.pending !== null,
      quorumActive,
      health: this.detector.view(),
      lastSnapshotSentMs: new Map(this.lastSnapshotSentMs),
    };
  }

  private carryOut(action: RedundancyAction): void {
    if (action.kind === 'send-snapshot') {
      this.lastSnapshotSentMs.set(action.to, this.nowMs());
      if (this.isUp(action.to)) this.snapshotIndex.set(action.to, this.commit);
      return;
    }
    if (action.kind === 'registry') {
      this.registry.applyCommand(action.command);
      return;
    }
    // Raft refuses a second change while one is pending: the bug's extra change goes nowhere.
    if (this.pending !== null) return;
    this.checkChurn(action.promote, action.demote);
    this.pending = { change: action.change, applyAt: this.tick + this.delay() };
  }

  /**
   * While flapping (the eventful phase), a member seen going silent is never promoted, and is
   * replaced at most once. Before its first silence it is indistinguishable from a healthy one.
   */
  private checkChurn(promote: NodeId | null, demote: NodeId | null): void {
    if (this.tick >= this.spec.ticks) return;
    if (promote !== null && this.flappersSeenDown.has(promote)) {
      this.violate('no-flapping-churn', `flapping member ${promote} promoted`);
    }
    if (demote !== null && this.flapper(demote) !== undefined) {
      const n = (this.flapperDemotions.get(demote) ?? 0) + 1;
      this.flapperDemotions.set(demote, n);
      if (n > 1) this.violate('no-flapping-churn', `flapping member ${demote} replaced ${n} times`);
    }
  }

  private violate(property: PropertyName, detail: string): void {
    this.violations.push({ property, tick: this.tick, detail });
  }

  private healthy(view: RedundancyView, id: NodeId): boolean {
    return id === view.leaderId || view.health.get(id)?.state === 'healthy';
  }

  /** The checks on one planned action, each against an independent computation. */
  private check(view: RedundancyView, action: RedundancyAction): void {
    this.checkProgress(view, action);
    if (action.kind !== 'conf-change') return;
    if (view.pendingConfChange) {
      this.violate('one-change-at-a-time', `${action.step} planned while a change is pending`);
      return;
    }
    let result: TrackerConfig;
    try {
      result = applyChange(this.base(), action.change).config;
    } catch (e) {
      this.violate('raft-accepts', `${action.step}: ${String(e)}`);
      return;
    }
    for (const voters of [result.voters, result.votersOutgoing]) {
      if (voters.length === 0) continue;
      const healthy = voters.filter((id) => this.healthy(view, id)).length;
      if (healthy < quorumOf(voters.length)) {
        this.violate('healthy-quorum', `${action.step} leaves ${healthy} healthy of [${voters}]`);
      }
    }
    if (action.promote !== null) {
      const lag = view.commit - (view.progress.get(action.promote)?.match ?? 0);
      if (!this.healthy(view, action.promote) || lag > this.policy.catchUpEntriesMax) {
        this.violate('promote-caught-up', `promoted ${action.promote} with lag ${lag}`);
      }
    }
  }

  /** A promotion must be planned whenever one is needed, possible and safe. */
  private checkProgress(view: RedundancyView, action: RedundancyAction | null): void {
    const { config } = view;
    if (view.pendingConfChange || config.votersOutgoing.length > 0 || !view.quorumActive) return;
    const healthyVoters = config.voters.filter((id) => this.healthy(view, id)).length;
    if (healthyVoters < quorumOf(config.voters.length)) return;
    const failed = failedVoters(view, this.policy, this.nowMs()).length > 0;
    const short = config.voters.length < this.policy.voters;
    if (!failed && !short) return;
    const ready = view.members.filter(
      (m) =>
        m.role === 'standby' &&
        m.placement === 'learner' &&
        this.healthy(view, m.id) &&
        view.commit - (view.progress.get(m.id)?.match ?? 0) <= this.policy.catchUpEntriesMax &&
        (failed || !wasDemoted(m)),
    );
    if (ready.length === 0) return;
    if (action?.kind !== 'conf-change' || action.promote === null) {
      this.violate('factor-restored', `standby ${ready[0]!.id} ready but nothing promoted`);
    }
  }

  /** After the quiet phase: no voter down while a standby could replace it; factor restored. */
  private checkLiveness(): void {
    const dead = this.spec.dead;
    // A spare is a standby that runs (not the dead voter, nor an added member never started).
    const standbys = this.registry.all().filter((m) => m.role === 'standby' && this.isUp(m.id));
    const voters = this.config.voters;
    // No quorum up (the dead voter, or voters an operator added and never started): stuck, as
    // any Raft cluster would be.
    const stuck = this.voterSets().some(
      (set) => set.filter((id) => this.isUp(id)).length < quorumOf(set.length),
    );
    if (stuck) return;
    this.livenessChecked = true;
    if (dead !== null && voters.includes(dead) && standbys.length > 0) {
      this.violate(
        'liveness',
        `dead voter ${dead} still a voter; standbys [${standbys.map((m) => m.id)}]`,
      );
    }
    if (voters.length < this.spec.target && standbys.some((m) => !wasDemoted(m))) {
      this.violate(
        'liveness',
        `${voters.length} voters of ${this.spec.target} with a spare standby`,
      );
    }
  }
}
