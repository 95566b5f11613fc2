/**
 * The redundancy policy on a member: the driver of src/cluster/round.ts, which makes every
 * decision (pure: the planner of policy.ts, the failure detector of health.ts, the policy memory
 * of memory.ts). Every `tick()` (the server calls it every POLICY_INTERVAL_MS):
 *
 *   observe   raft status, the registry, the member's per-peer last-heard times, its clocks,
 *             whether a membership change is pending and whether an act of ours is in flight;
 *   plan      planRound (on a follower it only takes note of the registry);
 *   act       what it returns: a conf change -> member.proposeConfChange (its context carries
 *             the role records; a warm refresh is one: the standby staged as a learner), a
 *             registry command -> a registry entry (CommandKind.Registry), a leader-zone
 *             transfer -> member.transferLeader (members outside the configuration are probed by
 *             the leader's role truth, role.ts, so their answers land in lastHeardMs);
 *   report    each act's outcome as a PolicyEvent.
 *
 * At most one act in flight: a proposal not yet applied or failed (`acting`, observed).
 */
import { PolicyMemory } from '../cluster/memory.js';
import type { ManualOp, RedundancyPolicy } from '../cluster/policy.js';
import type { MemberRecord } from '../cluster/registry.js';
import {
  type Act,
  manualAct,
  type Observed,
  observeRound,
  planRound,
  type RoundSettings,
} from '../cluster/round.js';
import type { Clock } from '../io/clock.js';
import type { NodeId } from '../raft/types.js';
import { ServerError } from './errors.js';

import {
  encodeRegistryEntry,
  type TandemMember,
  type TandemStateMachine,
} from './tandem-state-machine.js';

/** How often the leader runs the policy (issue 5: every 200-500 ms). */
export const POLICY_INTERVAL_MS = 250;
export { WARM_REFRESH_TIMEOUT_MS } from '../cluster/memory.js';

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
  private readonly settings: RoundSettings;
  /** What the rounds remember from one to the next (src/cluster/memory.ts). */
  private readonly memory = new PolicyMemory();
  /** One act in flight at a time (a proposal not yet applied or failed). */
  private acting = false;

  constructor(options: RedundancyDriverOptions) {
    this.o = options;
    this.settings = {
      policy: options.policy,
      electionTimeoutMs: options.electionTimeoutMs,
      preferLeaderZone: options.preferLeaderZone ?? null,
    };
  }

  /** The leader's live health view (null on a follower). */
  health(id: NodeId): { state: string; sinceMs: number } | null {
    const h = this.memory.health(id);
    return h === undefined ? null : { state: h.state, sinceMs: h.sinceMs };
  }

  /** One policy round; acts only on the leader. */
  tick(): void {
    const round = planRound(this.memory, this.settings, this.observed());
    if (round.act !== null) this.carryOut(round.act).catch(() => {}); // reported through onEvent
  }

  /**
   * An operator's request (`tandem member promote|demote|standby NAME`): resolves with the
   * action's reason once applied; a PolicyError says why not, a ServerError NOT_LEADER when
   * this member does not lead.
   */
  async manual(op: ManualOp, name: string): Promise<string> {
    const observed = this.observed();
    const seen = observeRound(this.memory, this.settings, observed);
    if (seen.view === null) {
      throw new ServerError('NOT_LEADER', 'tandem: not the leader: send the request to the leader');
    }
    const act = manualAct(seen.view, this.settings, observed, op, name);
    await this.carryOut(act);
    return act.reason;
  }

  private observed(): Observed {
    const m = this.o.member;
    const nowMs = this.o.clock.now();
    return {
      nowMs,
      wallNowMs: this.o.wallClockMs === undefined ? nowMs : this.o.wallClockMs(),
      isLeader: m.isLeader,
      status: m.status(),
      members: this.o.state.allMembers(),
      lastHeardMs: m.lastHeardMs,
      pendingConfChange: m.confChangePending,
      actInFlight: this.acting,
    };
  }

  private carryOut(act: Act): Promise<void> {
    switch (act.kind) {
      case 'conf-change':
        return this.track(act.event, act.reason, (cb) =>
          this.o.member.proposeConfChange(act.change, cb),
        );
      case 'registry':
        return this.track(act.event, act.reason, (cb) =>
          this.o.member.propose(encodeRegistryEntry(act.command), cb),
        );
      case 'transfer-leader':
        this.o.member.transferLeader(act.to);
        this.o.onEvent?.({ action: act.event, reason: act.reason });
        return Promise.resolve();
    }
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
