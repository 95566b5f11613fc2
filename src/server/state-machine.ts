/**
 * What the member applies committed entries to. Deterministic: the same entries in the same order
 * give the same state and results on every member (the simulator checks hashes for that).
 */
import type { ConfChange, ConfState, Snapshot } from '../raft/types.js';

export interface ApplyContext {
  readonly index: number;
  readonly term: number;
}

/** `R`: what applying a command gives its proposer. */
export interface ReplicatedStateMachine<R = unknown> {
  /** The index of the last entry applied (durable with the state in a durable backend). */
  appliedIndex(): number;
  /**
   * Applies one normal entry's command. Returns the result for the proposer; a command that is
   * refused (e.g. a compare that fails validation) returns its error as the result, it never
   * throws: a throw here is a bug and stops the member.
   */
  apply(ctx: ApplyContext, command: Uint8Array): R;
  /** Records an entry that changes nothing (the leader's empty entry, a refused conf change). */
  applyNoop(ctx: ApplyContext): void;
  /** Records an applied membership change and the configuration it produced. */
  applyConfChange(ctx: ApplyContext, change: ConfChange, confState: ConfState): void;
  /**
   * Runs `fn` (several applies: one Ready's committed entries) in one durable transaction, so a
   * durable backend pays one commit per Ready rather than one per entry.
   */
  transaction<T>(fn: () => T): T;
  /** A consistent image of the state at `appliedIndex()`. */
  snapshot(): Uint8Array;
  /**
   * The same image, taken at `appliedIndex()` now but packed in slices: `schedule(next)` must
   * call `next(true)` later (another event-loop turn), or `next(false)` to abandon it (its read
   * view is released); `done(data)` ends it. Optional: without it the member packs at once.
   */
  snapshotInSlices?(
    schedule: (next: (go: boolean) => void) => void,
    done: (data: Uint8Array) => void,
  ): void;
  /** Replaces the whole state with a snapshot's. */
  restore(snapshot: Snapshot): void;
  /**
   * Deferred work of earlier applies (a large compaction's deletes): true while some is left.
   * Optional, with `backgroundStep`.
   */
  backgroundPending?(): boolean;
  /** Does one bounded slice of that work, between applies (never inside `transaction`). */
  backgroundStep?(): void;
}
