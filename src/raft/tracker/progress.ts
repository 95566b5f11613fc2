/**
 * The leader's view of one follower's log (etcd-io/raft tracker/progress.go, Raft thesis §3.5 and
 * §4.2.1). Invariant: match < next.
 *
 *   Probe:     next is a guess; send one MsgApp at a time until the follower acknowledges.
 *   Replicate: the follower is caught up; stream appends optimistically within the inflights window.
 *   Snapshot:  the entries it needs were compacted; wait for the snapshot to be reported.
 */
import { assert } from '../../util/assert.js';
import { Inflights } from './inflights.js';

export const ProgressState = {
  Probe: 0,
  Replicate: 1,
  Snapshot: 2,
} as const;
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState];

export const PROGRESS_STATE_NAMES: Readonly<Record<ProgressState, string>> = Object.freeze({
  0: 'probe',
  1: 'replicate',
  2: 'snapshot',
});

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** In Snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round; a new follower counts as active. */
  recentActive = true;
  /** In Probe state: a MsgApp is outstanding, so hold further appends until a response. */
  probeSent = false;
  /** Leader's tick when this peer last answered (for the leader lease); -Infinity if never. */
  lastResponseTick = Number.NEGATIVE_INFINITY;
  readonly inflights: Inflights;

  constructor(
    next: number,
    maxInflightMsgs: number,
    public isLearner: boolean,
  ) {
    assert(next > 0, 'progress next must be > 0');
    this.next = next;
    this.inflights = new Inflights(maxInflightMsgs);
  }

  /** Back to a fresh state, as after an election (etcd's reset with a new Progress). */
  resetForTerm(lastIndex: number): void {
    this.match = 0;
    this.next = lastIndex + 1;
    this.resetState(ProgressState.Probe);
    this.recentActive = false;
    this.lastResponseTick = Number.NEGATIVE_INFINITY;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot the follower holds at least the snapshot: probe right after it.
    if (this.state === ProgressState.Snapshot) {
      const pendingSnapshot = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pendingSnapshot + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  /** An acknowledgement up to `index`; returns true when match advanced. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < index + 1) this.next = index + 1;
    return updated;
  }

  /** Replicate state: entries up to `index` were sent, assume they will arrive. */
  optimisticUpdate(index: number): void {
    this.next = index + 1;
  }

  /**
   * A rejection of the MsgApp whose previous index was `rejected`; `matchHint` is the follower's
   * (or the conflict search's) guess of the largest index that may match. Returns false when the
   * rejection is stale (an out-of-order response) and was ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the rejection of the latest probe counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** True when the leader must not send this follower more appends for now. */
  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflights.full();
      default:
        return true;
    }
  }

  checkInvariants(): void {
    assert(this.match < this.next, `progress match ${this.match} must be < next ${this.next}`);
  }
}
