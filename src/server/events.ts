/**
 * The member loop's hooks, fanned out to every part of an assembled member (assemble.ts), and
 * the one schedule of their periodic duties.
 *
 * `Member` takes one `MemberHooks`; the parts built around it (role truth, publication, ack=all,
 * lease duties, the redundancy driver, metrics, the simulator's observers) each subscribe here
 * after the member exists, so nothing is built half-wired and no part holds a `let x = null`.
 *
 * `TickSchedule` is the only clock of the layers above the loop: each duty runs every N member
 * ticks (N from its interval in ms), so a member has one timer — its tick — and the simulator
 * runs every duty on virtual time.
 */
import type {
  ConfChange,
  ConfState,
  Entry,
  Message,
  NodeId,
  Ready,
  SoftState,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import type { MemberHooks } from './member.js';

/** Listeners per event, at most (a member assembles a handful; more is a leak). */
const LISTENERS_MAX = 16;
/** Periodic duties of one member, at most. */
const DUTIES_MAX = 16;

type SoftStateListener = (soft: SoftState, term: number) => void;
type ConfChangeListener = (change: ConfChange, confState: ConfState, index: number) => void;
type AppliedListener = (entry: Entry, result: unknown) => void;
type FatalListener = (error: Error) => void;
type TickListener = (ticks: number) => void;
type SteppedListener = (message: Message, term: number, lead: NodeId) => void;
type ProposedListener = (change: ConfChange, seq: number) => void;
type SettledListener = (seq: number, error: Error | null) => void;
type InstalledListener = (index: number) => void;
type ReadyListener = (rd: Ready) => void;

export class MemberEvents implements Required<MemberHooks> {
  readonly softState: SoftStateListener[] = [];
  readonly confChange: ConfChangeListener[] = [];
  readonly applied: AppliedListener[] = [];
  readonly fatal: FatalListener[] = [];
  readonly tick: TickListener[] = [];
  readonly stepped: SteppedListener[] = [];
  readonly confChangeProposed: ProposedListener[] = [];
  readonly confChangeSettled: SettledListener[] = [];
  readonly snapshotInstalled: InstalledListener[] = [];
  readonly readyTaken: ReadyListener[] = [];
  readonly readySaved: ReadyListener[] = [];

  /** Adds `listener` to `list` (one of the arrays above). */
  static add<T>(list: T[], listener: T): void {
    assert(list.length < LISTENERS_MAX, 'member event listeners bounded');
    list.push(listener);
  }

  onSoftState(soft: SoftState, term: number): void {
    for (const f of this.softState) f(soft, term);
  }
  onConfChange(change: ConfChange, confState: ConfState, index: number): void {
    for (const f of this.confChange) f(change, confState, index);
  }
  onApplied(entry: Entry, result: unknown): void {
    for (const f of this.applied) f(entry, result);
  }
  onFatal(error: Error): void {
    for (const f of this.fatal) f(error);
  }
  onTick(ticks: number): void {
    for (const f of this.tick) f(ticks);
  }
  onStepped(message: Message, term: number, lead: NodeId): void {
    for (const f of this.stepped) f(message, term, lead);
  }
  onConfChangeProposed(change: ConfChange, seq: number): void {
    for (const f of this.confChangeProposed) f(change, seq);
  }
  onConfChangeSettled(seq: number, error: Error | null): void {
    for (const f of this.confChangeSettled) f(seq, error);
  }
  onSnapshotInstalled(index: number): void {
    for (const f of this.snapshotInstalled) f(index);
  }
  onReadyTaken(rd: Ready): void {
    for (const f of this.readyTaken) f(rd);
  }
  onReadySaved(rd: Ready): void {
    for (const f of this.readySaved) f(rd);
  }
}

interface Duty {
  readonly name: string;
  readonly everyTicks: number;
  readonly run: () => void;
}

/** Periodic duties run by the member's tick (see the header). */
export class TickSchedule {
  private readonly duties: Duty[] = [];

  /**
   * `onDutyError` sees an exception a duty threw (an assertion: a bug) before it propagates;
   * the simulator uses it to tell which part failed.
   */
  constructor(
    readonly tickMs: number,
    private readonly onDutyError?: (duty: string, error: unknown) => void,
  ) {
    assert(Number.isSafeInteger(tickMs) && tickMs > 0, `tick of ${tickMs} ms`);
  }

  /** Ticks in `ms`, at least one: a duty never runs more often than the member ticks. */
  ticksFor(ms: number): number {
    return Math.max(1, Math.round(ms / this.tickMs));
  }

  /** Runs `run` every `intervalMs` (rounded to whole ticks, at least one). */
  every(name: string, intervalMs: number, run: () => void): void {
    assert(this.duties.length < DUTIES_MAX, 'member duties bounded');
    assert(!this.duties.some((d) => d.name === name), `duty ${name} scheduled twice`);
    this.duties.push({ name, everyTicks: this.ticksFor(intervalMs), run });
  }

  /** Subscribes the schedule to the member's ticks. */
  attach(events: MemberEvents): void {
    MemberEvents.add(events.tick, (ticks) => this.tick(ticks));
  }

  tick(ticks: number): void {
    for (const d of this.duties) {
      if (ticks % d.everyTicks !== 0) continue;
      try {
        d.run();
      } catch (error) {
        this.onDutyError?.(d.name, error);
        throw error;
      }
    }
  }
}

interface Waiter {
  readonly until: () => boolean;
  readonly deadlineMs: number;
  readonly timedOut: () => Error;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/** Waiters at once, at most: past it a new one fails (the caller's error says why). */
export const WAITERS_MAX = 16_384;

/**
 * Promises that resolve once a condition holds: checked whenever `check()` is called (on the
 * member events that can make it true) and failed at their deadline by `expire(now)` (on
 * ticks). No polling timers.
 */
export class ConditionWaiters {
  private waiters: Waiter[] = [];

  get size(): number {
    return this.waiters.length;
  }

  /**
   * Resolves once `until()` holds; rejects with `timedOut()` once `nowMs >= deadlineMs` at an
   * `expire`, or with `full` when WAITERS_MAX wait already.
   */
  wait(until: () => boolean, deadlineMs: number, timedOut: () => Error, full: () => Error) {
    if (until()) return Promise.resolve();
    if (this.waiters.length >= WAITERS_MAX) return Promise.reject(full());
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ until, deadlineMs, timedOut, resolve, reject });
    });
  }

  check(): void {
    if (this.waiters.length === 0) return;
    const waiting: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.until()) w.resolve();
      else waiting.push(w);
    }
    this.waiters = waiting;
  }

  expire(nowMs: number): void {
    if (this.waiters.length === 0) return;
    this.check();
    const waiting: Waiter[] = [];
    for (const w of this.waiters) {
      if (nowMs >= w.deadlineMs) w.reject(w.timedOut());
      else waiting.push(w);
    }
    this.waiters = waiting;
  }

  /** Fails every waiter (the member stops). */
  failAll(error: Error): void {
    const all = this.waiters;
    this.waiters = [];
    for (const w of all) w.reject(error);
  }
}
