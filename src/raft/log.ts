/**
 * The Raft log as the core sees it: stable storage plus the unstable tail
 * (etcd-io/raft log.go). Invariant: applied <= committed <= lastIndex.
 */
import { assert } from '../util/assert.js';
import { LogLostError } from './errors.js';
import { Unstable } from './log-unstable.js';
import { limitSize } from './storage.js';
import type { Entry, LogStorage, Snapshot } from './types.js';

export class RaftLog {
  readonly storage: LogStorage;
  readonly unstable: Unstable;
  /** Highest index known replicated on a quorum. */
  committed: number;
  /** Highest index the application has applied (reported through advance). */
  applied: number;
  /** Highest index handed out for applying (applied <= applying <= committed). */
  applying: number;
  /** Bytes of entry data handed out per Ready as committed entries. */
  readonly maxCommittedBytesPerReady: number;

  constructor(storage: LogStorage, maxCommittedBytesPerReady: number) {
    this.storage = storage;
    this.maxCommittedBytesPerReady = maxCommittedBytesPerReady;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    // Everything up to the snapshot (first - 1) is committed and applied by definition.
    this.committed = first - 1;
    this.applied = first - 1;
    this.applying = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /**
   * Term of entry `i`; 0 beyond the last index; undefined when `i` was compacted (the caller
   * must fall back to a snapshot).
   */
  term(i: number): number | undefined {
    const dummyIndex = this.firstIndex() - 1;
    if (i < dummyIndex) return undefined;
    if (i > this.lastIndex()) return 0;
    const unstableTerm = this.unstable.maybeTerm(i);
    if (unstableTerm !== undefined) return unstableTerm;
    if (i < this.storage.firstIndex() - 1) return undefined;
    return this.storage.term(i);
  }

  matchTerm(i: number, term: number): boolean {
    const t = this.term(i);
    return t !== undefined && t === term;
  }

  /** Raft paper §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Follower side of AppendEntries (paper §5.3): if the entry at `index` has term `logTerm`,
   * append `ents` (dropping those we already have, truncating at the first conflict) and commit
   * up to min(commit, last new index). Returns the last new index, or -1 on a mismatch.
   * `skipLogCheck` is the 'skip-log-check' injected bug.
   */
  maybeAppend(
    index: number,
    logTerm: number,
    commit: number,
    ents: readonly Entry[],
    skipLogCheck: boolean,
  ): number {
    const matches = this.matchTerm(index, logTerm) || (skipLogCheck && index <= this.lastIndex());
    if (!matches) return -1;
    const lastNewIndex = index + ents.length;
    const conflictIndex = this.findConflict(ents);
    if (conflictIndex !== 0) {
      assert(
        conflictIndex > this.committed,
        `entry ${conflictIndex} conflicts with committed ${this.committed}`,
      );
      this.append(ents.slice(conflictIndex - (index + 1)));
    }
    this.commitTo(Math.min(commit, lastNewIndex));
    return lastNewIndex;
  }

  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    assert(
      after >= this.committed,
      `append after ${after} would overwrite committed ${this.committed}`,
    );
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** The index of the first entry of `ents` that is new or conflicts with ours; 0 if none. */
  findConflict(ents: readonly Entry[]): number {
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i]!;
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term` (etcd's findConflictByTerm): every entry
   * in between has a larger term, so it cannot match the other log and a probe may skip it.
   */
  findConflictByTerm(index: number, term: number): number {
    if (index > this.lastIndex()) return index;
    for (;;) {
      const t = this.term(index);
      if (t === undefined || t <= term) return index;
      index--;
    }
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries.length === 0 ? [] : this.unstable.entries.slice();
  }

  /** Committed entries not yet applied, up to maxCommittedBytesPerReady. */
  nextCommittedEntries(): readonly Entry[] {
    const lo = Math.max(this.applying + 1, this.firstIndex());
    if (this.committed + 1 <= lo) return [];
    return this.slice(lo, this.committed + 1, this.maxCommittedBytesPerReady);
  }

  hasNextCommittedEntries(): boolean {
    return this.committed + 1 > Math.max(this.applying + 1, this.firstIndex());
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== null;
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  commitTo(toCommit: number): void {
    if (this.committed >= toCommit) return; // never decrease commit
    if (toCommit > this.lastIndex()) throw new LogLostError(toCommit, this.lastIndex());
    this.committed = toCommit;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    assert(
      this.applied <= i && i <= this.committed,
      `applied(${i}) must be in [${this.applied}, ${this.committed}]`,
    );
    this.applied = i;
    if (this.applying < i) this.applying = i;
  }

  /** Entries up to `i` were handed out in a Ready; do not hand them out again. */
  applyingTo(i: number): void {
    assert(i <= this.committed, `applying(${i}) beyond committed ${this.committed}`);
    if (this.applying < i) this.applying = i;
  }

  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /**
   * Leader commit rule (paper §5.4.2): commit `maxIndex` only if its entry is of the current
   * term. `commitOldTerm` is the 'commit-old-term' injected bug that skips the term check.
   */
  maybeCommit(maxIndex: number, term: number, commitOldTerm: boolean): boolean {
    if (maxIndex <= this.committed) return false;
    if (!commitOldTerm && this.term(maxIndex) !== term) return false;
    this.commitTo(maxIndex);
    return true;
  }

  restore(snap: Snapshot): void {
    this.committed = snap.metadata.index;
    this.unstable.restore(snap);
  }

  /** Entries from `i` on, at most `maxBytes`; undefined if `i` was compacted. */
  entriesFrom(i: number, maxBytes: number): readonly Entry[] | undefined {
    const last = this.lastIndex();
    if (i > last) return [];
    if (i < this.firstIndex()) return undefined;
    return this.slice(i, last + 1, maxBytes);
  }

  /** Entries [lo, hi), at most maxBytes (at least one); lo must not be compacted. */
  slice(lo: number, hi: number, maxBytes: number): readonly Entry[] {
    assert(
      lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo <= hi,
      `slice [${lo}, ${hi}) out of bounds`,
    );
    if (lo === hi) return [];
    const unstableOffset = this.unstable.offset;
    let ents: readonly Entry[] = [];
    if (lo < unstableOffset) {
      ents = this.storage.entries(lo, Math.min(hi, unstableOffset), maxBytes);
      // Storage cut the range short (size limit): do not look at the unstable part.
      if (ents.length < Math.min(hi, unstableOffset) - lo) return ents;
    }
    if (hi > unstableOffset) {
      const tail = this.unstable.slice(Math.max(lo, unstableOffset), hi);
      ents = ents.length > 0 ? ents.concat(tail) : tail;
    }
    return limitSize(ents, 0, ents.length, maxBytes);
  }

  checkInvariants(): void {
    assert(
      this.applied <= this.committed && this.committed <= this.lastIndex(),
      `log invariant applied ${this.applied} <= committed ${this.committed} <= last ${this.lastIndex()}`,
    );
  }
}
