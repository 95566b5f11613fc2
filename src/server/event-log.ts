/**
 * A member's recent events for people (the dashboard's timeline): elections, leader changes with
 * how long this member was without a leader, promotions and demotions, snapshots installed, the
 * leader's redundancy acts (warm standby refreshes among them) and fatal stops.
 *
 * A bounded ring fed by the member's hooks (events.ts): the oldest event is dropped once
 * EVENT_LOG_CAPACITY are kept. Each event has a sequence number that only grows within one
 * process (`since(seq)` reads what came after it); `epochMs` (the wall-clock start of this log)
 * tells a reader that a restarted member began a new sequence.
 */
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  NONE,
  type NodeId,
  type SoftState,
  StateType,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import { MemberEvents } from './events.js';
import type { PolicyEvent } from './redundancy.js';

/** Events kept per member; older ones are dropped. */
export const EVENT_LOG_CAPACITY = 256;
/** One `since()` answer returns at most this many events (the newest). */
export const EVENT_LOG_READ_MAX = EVENT_LOG_CAPACITY;

export type MemberEventKind =
  | 'election'
  | 'leader'
  | 'leader-lost'
  | 'promotion'
  | 'demotion'
  | 'membership'
  | 'snapshot'
  | 'policy'
  | 'fatal';

export interface LoggedEvent {
  readonly seq: number;
  /** Wall-clock ms since the epoch. */
  readonly atMs: number;
  readonly kind: MemberEventKind;
  readonly text: string;
  /** The member the event is about (a promoted member, a new leader), when there is one. */
  readonly subject?: string;
  /** A leader change after a failover: ms from the last word of the old leader to the new one. */
  readonly failoverMs?: number;
  readonly term?: number;
}

export interface EventLogSources {
  /** Monotonic ms (the member's clock) and wall-clock ms. */
  readonly nowMs: () => number;
  readonly wallNowMs: () => number;
  /** A member's name for people (its hex id when unknown). */
  readonly nameOf: (id: NodeId) => string;
  /** When this member last heard from `id` (monotonic ms), if ever. */
  readonly lastHeardMs: (id: NodeId) => number | undefined;
}

export class MemberEventLog {
  readonly epochMs: number;
  private readonly ring: (LoggedEvent | undefined)[] = new Array(EVENT_LOG_CAPACITY);
  private nextSeq = 1;
  private lead: NodeId = NONE;
  /** The leader this member last followed, and when it last heard it, once it lost it. */
  private lost: { readonly leader: NodeId; readonly heardMs: number } | null = null;
  /** The configuration as of the last change seen (null before one: then by change type). */
  private config: { voters: Set<NodeId>; learners: Set<NodeId> } | null = null;

  /** `confState`: the configuration the member starts from (tells a join from a demotion). */
  constructor(
    private readonly s: EventLogSources,
    confState?: ConfState,
  ) {
    this.epochMs = s.wallNowMs();
    if (confState !== undefined) {
      this.config = { voters: new Set(confState.voters), learners: new Set(confState.learners) };
    }
  }

  /** The sequence number of the newest event (0 before any). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Subscribes to the member's hooks. */
  attach(events: MemberEvents): void {
    MemberEvents.add(events.softState, (soft, term) => this.noteSoftState(soft, term));
    MemberEvents.add(events.confChange, (change, confState) =>
      this.noteConfChange(change, confState),
    );
    MemberEvents.add(events.snapshotInstalled, (index) =>
      this.add({ kind: 'snapshot', text: `installed a snapshot at index ${index}` }),
    );
    MemberEvents.add(events.fatal, (error) =>
      this.add({ kind: 'fatal', text: `stopped: ${error.message}` }),
    );
  }

  /** The leader's redundancy acts (redundancy.ts's PolicyEvent). */
  notePolicy(event: PolicyEvent): void {
    const outcome = event.error === undefined ? '' : ` — failed: ${event.error}`;
    this.add({ kind: 'policy', text: `${event.action}: ${event.reason}${outcome}` });
  }

  noteSoftState(soft: SoftState, term: number): void {
    const before = this.lead;
    this.lead = soft.lead;
    if (soft.raftState === StateType.Candidate) {
      this.add({ kind: 'election', text: `campaigning for term ${term}`, term });
    }
    if (soft.lead === before) return;
    if (soft.lead === NONE) {
      const heardMs = this.s.lastHeardMs(before) ?? this.s.nowMs();
      this.lost = { leader: before, heardMs };
      this.add({
        kind: 'leader-lost',
        text: `no leader (was ${this.s.nameOf(before)}), term ${term}`,
        subject: this.s.nameOf(before),
        term,
      });
      return;
    }
    const name = this.s.nameOf(soft.lead);
    const lost = this.lost;
    this.lost = null;
    if (lost !== null && lost.leader !== soft.lead) {
      const failoverMs = Math.max(0, Math.round(this.s.nowMs() - lost.heardMs));
      this.add({
        kind: 'leader',
        text: `${name} leads term ${term}, ${failoverMs} ms after the last word of ${this.s.nameOf(lost.leader)}`,
        subject: name,
        failoverMs,
        term,
      });
      return;
    }
    this.add({ kind: 'leader', text: `${name} leads term ${term}`, subject: name, term });
  }

  /** `confState`: the configuration after the change. */
  noteConfChange(change: ConfChange, confState: ConfState): void {
    const before = this.config;
    this.config = { voters: new Set(confState.voters), learners: new Set(confState.learners) };
    for (const c of change.changes) {
      const name = this.s.nameOf(c.nodeId);
      switch (c.type) {
        case ConfChangeType.AddNode:
          if (before?.voters.has(c.nodeId) === true) break;
          if (before === null || before.learners.has(c.nodeId)) {
            this.add({ kind: 'promotion', text: `${name} promoted to voter`, subject: name });
          } else {
            this.add({ kind: 'membership', text: `${name} joined as a voter`, subject: name });
          }
          break;
        case ConfChangeType.AddLearnerNode:
          if (before?.learners.has(c.nodeId) === true) break;
          if (before === null || before.voters.has(c.nodeId)) {
            this.add({ kind: 'demotion', text: `${name} demoted to learner`, subject: name });
          } else {
            this.add({ kind: 'membership', text: `${name} joined as a learner`, subject: name });
          }
          break;
        case ConfChangeType.RemoveNode:
          this.add({ kind: 'membership', text: `${name} left the configuration`, subject: name });
          break;
      }
    }
  }

  /** Events after `afterSeq`, oldest first (at most EVENT_LOG_READ_MAX, the newest). */
  since(afterSeq: number): LoggedEvent[] {
    const first = Math.max(afterSeq + 1, this.nextSeq - EVENT_LOG_CAPACITY, 1);
    const out: LoggedEvent[] = [];
    for (let seq = first; seq < this.nextSeq; seq++) {
      const e = this.ring[seq % EVENT_LOG_CAPACITY];
      assert(e !== undefined && e.seq === seq, `event ${seq} in the ring`);
      out.push(e);
    }
    return out.slice(-EVENT_LOG_READ_MAX);
  }

  private add(e: Omit<LoggedEvent, 'seq' | 'atMs'>): void {
    const seq = this.nextSeq++;
    this.ring[seq % EVENT_LOG_CAPACITY] = { seq, atMs: this.s.wallNowMs(), ...e };
  }
}
