/**
 * The redundancy policy on the leader: wires the pure engine of src/cluster (failure detector,
 * planner, manual overrides) to the running member, as policy.ts's header describes.
 *
 * Every `tick()` (the server calls it every POLICY_INTERVAL_MS) on the leader only:
 *   observe  raft progress (recentActive, match) and the member's per-peer last-heard times feed
 *            a FailureDetector, created and seeded from the registry once per leadership term
 *            (silence counts from then on; a recorded failure is confirmed before it is acted
 *            on: health.ts); a leader outside its own voters (handing over) plans nothing;
 *            members outside the configuration (warm, cold standbys) are probed with a
 *            heartbeat every heartbeat interval (Member.setOutsideProbes): their answer is their last-heard time;
 *   plan     planRedundancy over the view; at most ONE action in flight (a conf change, a
 *            registry command, a warm refresh), and none while Raft has a change pending;
 *   act      conf change -> member.proposeConfChange (its context carries the role records);
 *            registry    -> a registry entry (CommandKind.Registry);
 *            send-snapshot (warm refresh) -> the warm standby is added as a learner for a while:
 *            Raft's own catch-up ships it the latest snapshot (or the entries it lacks); once it
 *            trails the commit index by at most catchUpEntriesMax (or after
 *            WARM_REFRESH_TIMEOUT_MS) the planner's "unstage" returns it outside the
 *            configuration. The simplest correct mechanism: no side channel, the snapshot
 *            transfer is Raft's, and a refresh in progress is a standby already staged should a
 *            voter fail meanwhile. Being a membership change, a refresh waits while another is
 *            pending; a new leader finishes the stagings it inherits.
 *   record   health transitions as registry commands, so every member's status shows them; a
 *            warm standby's completed refresh (caught up when unstaged) as a record-refresh
 *            command (wall-clock time), so a new leader, even one restarted since, refreshes it
 *            only when `snapshotEveryMs` has passed since (policy.ts lastRefreshMs).
 *
 * Safety: the planner never plans a membership change without a healthy quorum in the current
 * and the resulting configuration; `act` asserts it again before proposing (assertions stay on).
 */
import { encodeChangeContext } from '../cluster/commands.js';
import { FailureDetector, healthRecords, observationsFrom } from '../cluster/health.js';
import {
  type ConfChangeAction,
  lagOf,
  type ManualOp,
  membershipBlocked,
  planLeaderZone,
  planManual,
  planRedundancy,
  quorumOf,
  quorumRefusal,
  type RedundancyAction,
  type RedundancyPolicy,
  type RedundancyView,
  viewFrom,
  votersAfter,
} from '../cluster/policy.js';
import {
  MEMBERS_MAX,
  type MemberRecord,
  type Placement,
  restingPlacement,
} from '../cluster/registry.js';
import type { Clock } from '../io/clock.js';
import {
  ConfChangeTransition,
  ConfChangeType,
  type NodeId,
  type RaftStatus,
  StateType,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import { ServerError } from './errors.js';
import {
  encodeRegistryEntry,
  type TandemMember,
  type TandemStateMachine,
} from './tandem-state-machine.js';

/** How often the leader runs the policy (issue 5: every 200-500 ms). */
export const POLICY_INTERVAL_MS = 250;
/** A warm standby added as a learner for a refresh goes back outside after this at most. */
export const WARM_REFRESH_TIMEOUT_MS = 30_000;
/** At most one leader-zone transfer per this many election timeouts (no ping-pong). */
const LEADER_TRANSFER_COOLDOWN_ELECTIONS = 5;

export interface PolicyEvent {
  readonly action: string;
  readonly reason: string;
  readonly error?: string;
}

export interface RedundancyDriverOptions {
  readonly member: TandemMember;
  readonly state: TandemStateMachine;
  readonly clock: Clock;
  readonly policy: RedundancyPolicy;
  /** A peer heard within this long counts towards CheckQuorum's view (the election timeout). */
  readonly electionTimeoutMs: number;
  /** `replication.preferLeaderZone`: the leader hands leadership to a voter of this zone. */
  readonly preferLeaderZone?: string | null;
  /**
   * Wall-clock ms since the epoch (Date.now), for the registry's refresh records, which a leader
   * of another process reads; absent: `clock.now` (the simulator's shared virtual time).
   */
  readonly wallClockMs?: () => number;
  readonly onEvent?: (event: PolicyEvent) => void;
}

export class RedundancyDriver {
  private readonly o: RedundancyDriverOptions;
  private detector: FailureDetector | null = null;
  private detectorTerm = 0;
  /** One action in flight at a time (a proposal not yet applied or failed). */
  private acting = false;
  /**
   * When each warm standby last got the log: set where this member, as leader, ends a refresh,
   * and on every member when the registry shows one go back outside (whoever led), so that a
   * new leader does not refresh every warm standby again at once.
   */
  private readonly snapshotSentMs = new Map<NodeId, number>();
  /** Each member's placement as this member's registry last showed it (see noteRefreshes). */
  private readonly placementSeen = new Map<NodeId, Placement>();
  /** Warm standbys added as learners for a refresh, with when it began. */
  private readonly refreshing = new Map<NodeId, number>();
  /** Completed refreshes to record in the registry (wall-clock ms), one entry per round. */
  private readonly refreshesToRecord = new Map<NodeId, number>();
  /** When this member last started a leader-zone transfer (ms; -Infinity: never). */
  private lastTransferMs = Number.NEGATIVE_INFINITY;

  constructor(options: RedundancyDriverOptions) {
    this.o = options;
  }

  /** The leader's live health view (null on a follower). */
  health(id: NodeId): { state: string; sinceMs: number } | null {
    const h = this.detector?.get(id);
    return h === undefined ? null : { state: h.state, sinceMs: h.sinceMs };
  }

  /** One policy round; does nothing on a follower. */
  tick(): void {
    this.noteRefreshes(this.o.state.allMembers(), this.o.clock.now());
    const view = this.observe();
    if (view === null) this.refreshesToRecord.clear(); // the next leader's to find out
    if (view === null || this.acting) return;
    const now = this.o.clock.now();
    const action = planRedundancy(view, this.o.policy, now);
    if (action !== null) {
      if (this.holdRefresh(action, view, now)) return;
      this.noteCaughtUp(action, view);
      // A refresh is a membership change here (the standby joins as a learner): none while
      // another is pending, nor without a quorum, like any other.
      if (action.kind === 'send-snapshot' && membershipBlocked(view, this.o.policy) !== null) {
        return;
      }
      void this.act(action, view).catch(() => {}); // reported through onEvent
      return;
    }
    if (this.preferLeaderZone(view, now)) return;
    if (this.recordRefresh(view)) return;
    const record = healthRecords(view.members, this.detector!.view())[0];
    if (record !== undefined) {
      void this.act({ kind: 'registry', command: record, reason: 'health record' }, view).catch(
        () => {},
      );
    }
  }

  /**
   * An operator's request (`tandem member promote|demote|standby NAME`): resolves with the
   * action's reason once applied; a PolicyError says why not, a ServerError NOT_LEADER when
   * this member does not lead.
   */
  async manual(op: ManualOp, name: string): Promise<string> {
    const view = this.observe();
    if (view === null) {
      throw new ServerError('NOT_LEADER', 'tandem: not the leader: send the request to the leader');
    }
    const now = this.o.clock.now();
    const action = planManual(
      { ...view, pendingConfChange: view.pendingConfChange || this.acting },
      this.o.policy,
      op,
      name,
      now,
    );
    await this.act(action, view);
    return action.reason;
  }

  /** Starts a leader-zone transfer when one is due (rate-limited); true when it did. */
  private preferLeaderZone(view: RedundancyView, now: number): boolean {
    const cooldownMs = LEADER_TRANSFER_COOLDOWN_ELECTIONS * this.o.electionTimeoutMs;
    if (now - this.lastTransferMs < cooldownMs) return false;
    const transfer = planLeaderZone(
      view,
      this.o.preferLeaderZone ?? null,
      this.o.policy.catchUpEntriesMax,
    );
    if (transfer === null) return false;
    this.lastTransferMs = now;
    this.o.member.transferLeader(transfer.to);
    this.o.onEvent?.({ action: 'transfer-leader', reason: transfer.reason });
    return true;
  }

  /** Feeds the detector and returns the leader's view, or null when this member does not lead. */
  private observe(): RedundancyView | null {
    const m = this.o.member;
    if (!m.isLeader) {
      this.detector = null;
      return null;
    }
    const status = m.status();
    if (status.raftState !== StateType.Leader) return null;
    // Removed or demoted by a change it applied, a leader leads on only to hand over (raft's
    // handover to a voter of the new configuration): the configuration is no longer its to plan.
    const { voters, votersOutgoing } = status.config;
    if (!voters.includes(status.id) && !votersOutgoing.includes(status.id)) {
      this.detector = null;
      return null;
    }
    const now = this.o.clock.now();
    const members = this.o.state.allMembers();
    if (this.detector === null || this.detectorTerm !== status.term) {
      // Seeded per leadership term: a new leader continues the recorded clocks.
      this.detector = new FailureDetector(this.o.policy);
      this.detectorTerm = status.term;
      this.detector.seed(members, now);
      this.inheritStaged(members, now);
    }
    // A refresh ends when its learner leaves (unstaged) or is promoted.
    for (const id of this.refreshing.keys()) {
      if (members.find((r) => r.id === id)?.placement !== 'learner') this.refreshing.delete(id);
    }
    // Standbys outside the configuration hear nothing from Raft: the leader probes them every
    // heartbeat interval (role.ts); their answers land in lastHeardMs.
    const heard = m.lastHeardMs;
    this.detector.observe(
      now,
      status.commit,
      observationsFrom(members, status.progress, heard, now),
    );
    return viewFrom(status, members, this.detector.view(), {
      pendingConfChange: m.confChangePending,
      quorumActive: this.quorumActive(status, heard, now),
      lastSnapshotSentMs: this.snapshotSentMs,
      wallNowMs: this.wallNowMs(),
    });
  }

  private wallNowMs(): number {
    return this.o.wallClockMs === undefined ? this.o.clock.now() : this.o.wallClockMs();
  }

  /**
   * A warm standby unstaged while caught up (whether staged for a refresh or for a replacement
   * no longer needed) holds the log as of now: a refresh to record once the unstage is proposed.
   */
  private noteCaughtUp(action: RedundancyAction, view: RedundancyView): void {
    if (action.kind !== 'conf-change' || action.step !== 'unstage') return;
    const id = action.change.changes[0]!.nodeId;
    const m = view.members.find((r) => r.id === id);
    if (m?.standbyMode !== 'warm' || lagOf(view, id) > this.o.policy.catchUpEntriesMax) return;
    this.refreshesToRecord.set(id, this.wallNowMs());
    assert(this.refreshesToRecord.size <= MEMBERS_MAX, 'refresh records bounded by the registry');
  }

  /** Proposes one pending refresh record (a registry entry); true when it did. */
  private recordRefresh(view: RedundancyView): boolean {
    for (const [id, atMs] of this.refreshesToRecord) {
      this.refreshesToRecord.delete(id);
      const m = view.members.find((r) => r.id === id);
      // Gone, or no longer a warm standby outside (promoted, mode changed): nothing to record.
      if (m === undefined || m.standbyMode !== 'warm' || m.role !== 'standby') continue;
      const command = { kind: 'record-refresh', id, atMs } as const;
      void this.act({ kind: 'registry', command, reason: 'warm refresh record' }, view).catch(
        () => {},
      );
      return true;
    }
    return false;
  }

  /**
   * On every member: a warm standby that left the configuration (a learner, now outside) has
   * just caught up with the log, whichever leader staged it: that is its latest refresh.
   */
  private noteRefreshes(members: readonly MemberRecord[], now: number): void {
    assert(members.length <= MEMBERS_MAX, 'registry size');
    for (const m of members) {
      const before = this.placementSeen.get(m.id);
      if (before === 'learner' && m.placement === 'none' && m.standbyMode === 'warm') {
        this.snapshotSentMs.set(m.id, now);
      }
      this.placementSeen.set(m.id, m.placement);
    }
    if (this.placementSeen.size > members.length) {
      for (const id of this.placementSeen.keys()) {
        if (!members.some((m) => m.id === id)) this.placementSeen.delete(id);
      }
    }
  }

  /**
   * Warm and cold standbys a new leader finds staged were being refreshed or made ready for a
   * replacement by the old leader: finish that (unstaged once caught up, see holdRefresh)
   * rather than unstage them at once and stage them again a round later.
   */
  private inheritStaged(members: readonly MemberRecord[], now: number): void {
    for (const m of members) {
      const staged =
        m.placement === 'learner' && restingPlacement(m.role, m.standbyMode) === 'none';
      if (staged && !this.refreshing.has(m.id)) this.refreshing.set(m.id, now);
    }
  }

  /** CheckQuorum's view: the leader heard from a quorum of voters within an election timeout. */
  private quorumActive(status: RaftStatus, heard: ReadonlyMap<NodeId, number>, now: number) {
    const quorum = (voters: readonly NodeId[]): boolean => {
      let active = 0;
      for (const id of voters) {
        const h = heard.get(id);
        if (id === status.id || (h !== undefined && now - h <= this.o.electionTimeoutMs)) active++;
      }
      return voters.length === 0 || active >= quorumOf(voters.length);
    };
    return quorum(status.config.voters) && quorum(status.config.votersOutgoing);
  }

  /** A warm refresh in progress is not undone before the standby caught up (or gave up). */
  private holdRefresh(action: RedundancyAction, view: RedundancyView, now: number): boolean {
    if (action.kind !== 'conf-change' || action.step !== 'unstage') return false;
    const id = action.change.changes[0]!.nodeId;
    const since = this.refreshing.get(id);
    if (since === undefined) return false;
    if (
      lagOf(view, id) > this.o.policy.catchUpEntriesMax &&
      now - since < WARM_REFRESH_TIMEOUT_MS
    ) {
      return true;
    }
    this.refreshing.delete(id);
    this.snapshotSentMs.set(id, now);
    return false;
  }

  private act(action: RedundancyAction, view: RedundancyView): Promise<void> {
    const now = this.o.clock.now();
    switch (action.kind) {
      case 'conf-change':
        this.assertSafe(action, view);
        return this.track(action.step, action.reason, (cb) =>
          this.o.member.proposeConfChange(action.change, cb),
        );
      case 'registry':
        return this.track(action.command.kind, action.reason, (cb) =>
          this.o.member.propose(encodeRegistryEntry(action.command), cb),
        );
      case 'send-snapshot': {
        this.assertSafe(null, view);
        this.refreshing.set(action.to, now);
        this.snapshotSentMs.set(action.to, now);
        const change = {
          transition: ConfChangeTransition.Auto,
          changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: action.to }],
          context: encodeChangeContext({ atMs: now, commands: [] }),
        };
        return this.track('warm-refresh', action.reason, (cb) =>
          this.o.member.proposeConfChange(change, cb),
        );
      }
    }
  }

  /**
   * The planner's guarantee, checked again where it matters: one change, with a quorum (null:
   * a warm refresh, which adds a learner).
   */
  private assertSafe(action: ConfChangeAction | null, view: RedundancyView): void {
    const policy = { ...this.o.policy, bugs: new Set<never>() };
    const reason = action?.reason ?? 'warm refresh';
    assert(!this.acting, 'one policy action at a time');
    assert(membershipBlocked(view, policy) === null, `conf change while blocked: ${reason}`);
    if (action === null) return;
    const after = votersAfter(view.config.voters, action.change.changes);
    assert(
      quorumRefusal(view, view.config.voters, after) === null,
      `conf change without a quorum: ${action.reason}`,
    );
  }

  private track(
    name: string,
    reason: string,
    propose: (cb: (error: Error | null) => void) => void,
  ): Promise<void> {
    let resolve!: () => void;
    let reject!: (error: Error) => void;
    const done = new Promise<void>((res, rej) => {
      [resolve, reject] = [res, rej];
    });
    this.acting = true;
    // Outside the promise: an exception thrown while proposing (an assertion) must reach the
    // caller, not become a rejection nobody sees while `acting` stays set for ever.
    try {
      propose((error) => {
        this.acting = false;
        if (error === null) {
          if (name !== 'record-health') this.o.onEvent?.({ action: name, reason });
          resolve();
        } else {
          this.o.onEvent?.({ action: name, reason, error: error.message });
          reject(error);
        }
      });
    } catch (error) {
      this.acting = false; // never handed over: no callback will come
      throw error;
    }
    return done;
  }
}

/** A member's record with the leader's live health when known (for status views). */
export function withLiveHealth(
  m: MemberRecord,
  driver: RedundancyDriver | null,
): MemberRecord & { readonly liveHealth: string | null } {
  return { ...m, liveHealth: driver?.health(m.id)?.state ?? null };
}
