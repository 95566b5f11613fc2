/**
 * The leader's lease duties. Lease deadlines live only in the leader's lessor (they are not
 * replicated); what the leader decides goes through the log:
 *
 *   - the lessor is primary exactly while this member leads (promoted with its deadlines
 *     extended by an election timeout, as etcd's Promote, so no lease expires because of the
 *     election that made this leader);
 *   - every LEASE_DUTY_INTERVAL_MS the leader proposes the revocation of what expired and the
 *     checkpoints of long leases (so a new leader continues their remaining TTL).
 *
 * A follower answers keep-alives and time-to-live by forwarding them to the leader (façade).
 */
import type { Clock } from '../io/clock.js';
import { StateType } from '../raft/types.js';
import { MemberEvents, type TickSchedule } from './events.js';
import {
  encodeLeaseCheckpoints,
  encodeLeaseRevoke,
  type TandemMember,
  type TandemStateMachine,
} from './tandem-state-machine.js';

/** How often the leader looks for expired leases and checkpoints (etcd: 500 ms). */
export const LEASE_DUTY_INTERVAL_MS = 500;

/** Bugs the simulator switches on to prove its lease check can fail (never in production). */
export type LeaseBugName = 'lease-expire-early';

export interface LeaseDutiesOptions {
  readonly member: TandemMember;
  readonly state: TandemStateMachine;
  readonly clock: Clock;
  readonly events: MemberEvents;
  readonly schedule: TickSchedule;
  readonly electionTimeoutMs: number;
  readonly bugs?: ReadonlySet<string>;
}

export class LeaseDuties {
  private readonly o: LeaseDutiesOptions;
  /** How far ahead of their deadline leases are revoked: 0 but with the injected bug. */
  private readonly earlyMs: number;

  constructor(options: LeaseDutiesOptions) {
    this.o = options;
    this.earlyMs = options.bugs?.has('lease-expire-early') ? 1_000 : 0;
    MemberEvents.add(options.events.softState, (soft) => {
      const lessor = options.state.lessor;
      const leads = soft.raftState === StateType.Leader;
      if (leads && !lessor.isPrimary())
        lessor.promote(options.clock.now(), options.electionTimeoutMs);
      if (!leads && lessor.isPrimary()) lessor.demote();
    });
    options.schedule.every('lease-duties', LEASE_DUTY_INTERVAL_MS, () => this.run());
  }

  /** Leader only: revoke what expired, checkpoint what is due (both through the log). */
  private run(): void {
    const { member, state } = this.o;
    if (!member.isLeader || !state.lessor.isPrimary()) return;
    const now = this.o.clock.now();
    // INJECTED BUG (simulator only): earlyMs > 0 revokes leases before their deadline.
    for (const id of state.lessor.expired(now + this.earlyMs)) {
      member.propose(encodeLeaseRevoke(id), () => {});
    }
    const checkpoints = state.lessor.checkpoints(now);
    if (checkpoints.length > 0) member.propose(encodeLeaseCheckpoints(checkpoints), () => {});
  }
}
