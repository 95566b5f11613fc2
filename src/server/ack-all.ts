/**
 * ack=all: a write is acknowledged once every voter has persisted it, not only a quorum.
 *
 * Only the leader sees every voter's progress (its match index), so the wait runs there: a
 * write applied on the leader waits here; one applied on a follower asks the leader's Ack
 * service (through the forwarder), which waits here. The wait is event-driven: checked when an
 * append response arrives or this member applies entries, failed at its deadline on a tick.
 * Failing is WRITE_ACK_TIMEOUT: the write is committed by a quorum either way, only the
 * acknowledgement of every voter is missing, and it is NOT rolled back.
 */

import type { Clock } from '../io/clock.js';
import { type ConfState, MessageType, NONE } from '../raft/types.js';
import type { LeaderForwarder } from './contract.js';
import { ServerError } from './errors.js';
import { ConditionWaiters, MemberEvents } from './events.js';
import type { TandemMember, TandemStateMachine } from './tandem-state-machine.js';

/** An ack=all write fails with WRITE_ACK_TIMEOUT after this long by default. */
export const ACK_ALL_TIMEOUT_MS_DEFAULT = 5_000;

/** Bugs the simulator switches on to prove its ack=all check can fail (never in production). */
export type AckAllBugName = 'ack-all-early';

export interface AckAllOptions {
  readonly member: TandemMember;
  readonly state: TandemStateMachine;
  readonly clock: Clock;
  readonly events: MemberEvents;
  readonly forwarder?: LeaderForwarder;
  /** The leader's client URLs, for a follower's request (throws NO_LEADER when unknown). */
  readonly leaderClientUrls: () => readonly string[];
  readonly timeoutMs?: number;
  readonly bugs?: ReadonlySet<string>;
}

export class AckAll {
  private readonly o: AckAllOptions;
  private readonly waiters = new ConditionWaiters();
  private readonly timeoutMs: number;
  private readonly early: boolean;

  constructor(options: AckAllOptions) {
    this.o = options;
    this.timeoutMs = options.timeoutMs ?? ACK_ALL_TIMEOUT_MS_DEFAULT;
    this.early = options.bugs?.has('ack-all-early') ?? false;
    const { events } = options;
    MemberEvents.add(events.stepped, (m) => {
      if (m.type === MessageType.AppResp) this.waiters.check();
    });
    MemberEvents.add(events.applied, () => this.waiters.check());
    MemberEvents.add(events.tick, () => this.waiters.expire(this.o.clock.now()));
  }

  /** ack=all for a write applied at `index` on this member (leader or follower). */
  async awaitWrite(index: number): Promise<void> {
    // INJECTED BUG (simulator only): acknowledged once a quorum has it, like ack=quorum.
    if (this.early) return;
    if (this.o.member.isLeader) return this.awaitHere(index);
    const f = this.o.forwarder;
    if (f?.awaitAllVoters === undefined) {
      throw new ServerError(
        'NOT_LEADER',
        `tandem: write committed at index ${index}, but ack=all cannot be checked here; send it to the leader`,
      );
    }
    await f.awaitAllVoters(this.o.leaderClientUrls(), index, this.timeoutMs);
  }

  /** The leader's half of a follower's ack=all write (the API's Ack service). */
  async awaitAllVoters(index: number): Promise<void> {
    if (!this.o.member.isLeader) throw new ServerError('NOT_LEADER', 'tandem: not the leader');
    await this.awaitHere(index);
  }

  private awaitHere(index: number): Promise<void> {
    const member = this.o.member;
    return this.waiters.wait(
      () => member.votersDurableIndex() >= index,
      this.o.clock.now() + this.timeoutMs,
      () =>
        new ServerError(
          'WRITE_ACK_TIMEOUT',
          `tandem: write committed at index ${index} by a quorum, but voter(s) ${this.votersMissing(index).join(', ') || '(leadership lost)'} did not persist it within ${this.timeoutMs} ms (ack=all); it is NOT rolled back`,
        ),
      () => new ServerError('TOO_MANY_REQUESTS', 'etcdserver: too many requests'),
    );
  }

  /** Names of the voters not known to hold `index` durably (all of them off the leader). */
  private votersMissing(index: number): string[] {
    const member = this.o.member;
    const status = member.status();
    const cs: ConfState = member.configuration;
    const missing: string[] = [];
    for (const id of new Set([...cs.voters, ...cs.votersOutgoing])) {
      const match = id === member.id ? member.durableIndex : status.progress.get(id)?.match;
      if (match === undefined || match < index || status.lead === NONE) {
        missing.push(this.o.state.member(id)?.name || id.toString(16));
      }
    }
    return missing;
  }

  close(): void {
    this.waiters.failAll(new ServerError('STOPPED', 'etcdserver: server stopped'));
  }
}
