/**
 * Rebuilds the log raft expects from the WAL's records, in write order. Later records win:
 *
 * - an entry at index i (not above last + 1) drops every entry at or after i, then is appended
 *   (raft overwrote a conflicting suffix);
 * - a snapshot marker (i, t) drops entries up to i when the log holds (i, t) (a local snapshot:
 *   the log continues past it), and drops all of them otherwise (a snapshot from the leader
 *   replaced a log that disagreed);
 * - a hard state replaces the previous one.
 *
 * The log may start with a gap after the marker while records are still coming (the first kept
 * segment after `releaseTo` starts past its carried marker; a later marker closes the gap), but
 * not when the WAL ends: that is a lost segment, so corruption.
 *
 * Damage in every copy (protocol-aware recovery, after Alagappan et al., FAST'18). The scan steps
 * over a damaged span and reports it here (`damage`). What the span held is unknown: entries,
 * hard states, snapshot markers, in any number. What is known:
 *   - entries at or below the commit index of the last hard state before the span (`c0`) are
 *     committed, and Raft never rewrites a committed entry: the span cannot have changed them;
 *   - the first intact entry record after the span, at index s, truncates every entry from s on;
 *   - so exactly the entries (c0, s-1] are unknown: the span may have appended them, or rewritten
 *     local ones there with a newer leader's (a conflicting suffix), or, through a lost snapshot
 *     marker, dropped them. Entries below the snapshot do not matter.
 * Those become MISSING placeholders. At the end (`finish`) recovery may go on only if
 *   - an intact hard state follows every span (a lost hard state is superseded: otherwise term,
 *     vote or commit could go back, and a member could vote twice in a term);
 *   - an intact entry record follows every span (otherwise the span may have held any number of
 *     entries this member acknowledged);
 *   - every missing entry is at or below the final commit index: committed entries are the same
 *     on every member (Log Matching), so a peer's copy is the right one. A missing entry above it
 *     may have been acknowledged without being known committed; losing it could let a leader
 *     count a stale match, so recovery refuses.
 * A lost snapshot marker is harmless: the log keeps the entries it would have dropped (committed
 * ones, since a marker's index is at most the commit index written with or after it) and starts
 * from the older marker, whose snapshot file the caller must still find.
 */
import type { Entry, HardState } from '../../raft/types.js';
import { EMPTY_HARD_STATE } from '../../raft/types.js';
import { assert } from '../../util/assert.js';
import { StorageError, type StorageErrorLocation } from '../errors.js';
import { MISSING_ENTRIES_MAX } from '../limits.js';
import type { SnapshotMarker } from './format.js';

/** The term of a placeholder for a missing entry: no real entry has a negative term. */
const MISSING_TERM = -1;
const NO_DATA = new Uint8Array(0);

export function isMissing(e: Entry): boolean {
  return e.term === MISSING_TERM;
}

function missingEntry(index: number): Entry {
  return { index, term: MISSING_TERM, type: 0, data: NO_DATA };
}

/** A damaged span as the builder saw it. */
export interface DamageRecord {
  readonly where: StorageErrorLocation;
  readonly bytes: number;
  /** Counts of intact hard states and entry records seen before the span. */
  readonly hardStatesBefore: number;
  readonly entryRecordsBefore: number;
}

/** A run of missing entries, and the terms around it (null when nothing follows it). */
export interface MissingRange {
  readonly firstIndex: number;
  readonly lastIndex: number;
  /** The term of the entry at firstIndex - 1 (or of the snapshot when that is its index). */
  readonly prevTerm: number;
  readonly nextTerm: number | null;
}

export class LogBuilder {
  hardState: HardState = EMPTY_HARD_STATE;
  snapshot: SnapshotMarker = { index: 0, term: 0 };
  /** Contiguous; entries[0].index > snapshot.index. May hold placeholders (`isMissing`). */
  entries: Entry[] = [];
  readonly damage: DamageRecord[] = [];
  private firstLocation: StorageErrorLocation | null = null;
  private hardStates = 0;
  private entryRecords = 0;
  /** Damage not yet followed by an entry record: entries above `knownThrough` are in doubt. */
  private pending: { knownThrough: number; where: StorageErrorLocation } | null = null;
  /** Which damage put each run of placeholders in doubt (for the refusal's location). */
  private readonly origins: {
    firstIndex: number;
    lastIndex: number;
    where: StorageErrorLocation;
  }[] = [];

  /** A span damaged in every copy, between the records before it and those after it. */
  damaged(where: StorageErrorLocation, bytes: number): void {
    this.damage.push({
      where,
      bytes,
      hardStatesBefore: this.hardStates,
      entryRecordsBefore: this.entryRecords,
    });
    // Committed before the damage, so untouched by it (Raft never rewrites a committed entry).
    const known = Math.min(this.hardState.commit, this.lastIndex());
    this.pending = {
      knownThrough: Math.min(known, this.pending?.knownThrough ?? known),
      where: this.pending?.where ?? where,
    };
  }

  entry(e: Entry, where: StorageErrorLocation): void {
    assert(e.term >= 0, 'a decoded entry has a real term');
    this.entryRecords++;
    if (this.pending !== null) this.resolveDamage(e.index);
    if (e.index <= this.snapshot.index) {
      throw corrupt(where, `entry ${e.index} at or below the snapshot at ${this.snapshot.index}`);
    }
    const first = this.entries[0]?.index ?? 0;
    const last = this.lastIndex();
    if (this.entries.length > 0 && e.index > last + 1) {
      throw corrupt(where, `gap in the log: entry ${e.index} follows entry ${last}`);
    }
    if (this.entries.length > 0 && e.index >= first) {
      this.entries.length = e.index - first; // truncate the conflicting suffix
    } else {
      this.entries.length = 0;
    }
    if (this.entries.length === 0) this.firstLocation = where;
    this.entries.push(e);
  }

  marker(s: SnapshotMarker, where: StorageErrorLocation): void {
    if (s.index < this.snapshot.index) {
      throw corrupt(where, `snapshot ${s.index} goes back from ${this.snapshot.index}`);
    }
    const first = this.entries[0]?.index ?? 0;
    if (this.entries.length > 0 && s.index >= first) {
      const at = this.entries[s.index - first];
      if (at !== undefined && isMissing(at)) {
        // Whether the log held (index, term) is unknown: a local snapshot keeps what follows, a
        // leader's replaced it. Keep the positions, with what they hold in doubt (missing).
        this.entries = this.entries.slice(s.index - first + 1).map((e) => missingEntry(e.index));
      } else {
        this.entries =
          at !== undefined && at.term === s.term ? this.entries.slice(s.index - first + 1) : [];
      }
    }
    this.snapshot = s;
  }

  hard(h: HardState): void {
    this.hardState = h;
    this.hardStates++;
  }

  /**
   * The first entry record after damage, at index `s`: the entries (known, s-1] become
   * placeholders (see the module comment), where `known` is the commit index before the damage.
   */
  private resolveDamage(s: number): void {
    const { knownThrough, where } = this.pending!;
    this.pending = null;
    const lo = Math.max(knownThrough + 1, this.snapshot.index + 1);
    if (s <= lo) return; // nothing in doubt below s: the entry at s truncates the rest
    if (s - lo > MISSING_ENTRIES_MAX) {
      throw corrupt(where, `${s - lo} entries in doubt after the damage > ${MISSING_ENTRIES_MAX}`);
    }
    if (this.entries.length > 0) {
      const first = this.entries[0]!.index;
      this.entries.length = Math.max(0, Math.min(this.entries.length, lo - first));
    }
    if (this.entries.length === 0) this.firstLocation = where;
    const from = this.entries.length > 0 ? this.lastIndex() + 1 : lo;
    for (let i = from; i < s; i++) this.entries.push(missingEntry(i));
    this.origins.push({ firstIndex: from, lastIndex: s - 1, where });
  }

  /** Runs of missing entries, in order (empty when the log is whole). */
  missing(): MissingRange[] {
    const ranges: MissingRange[] = [];
    const entries = this.entries;
    for (let i = 0; i < entries.length; i++) {
      if (!isMissing(entries[i]!)) continue;
      let j = i;
      while (j + 1 < entries.length && isMissing(entries[j + 1]!)) j++;
      const prev = i === 0 ? this.snapshot.term : entries[i - 1]!.term;
      const next = j + 1 < entries.length ? entries[j + 1]!.term : null;
      ranges.push({
        firstIndex: entries[i]!.index,
        lastIndex: entries[j]!.index,
        prevTerm: prev,
        nextTerm: next,
      });
      i = j;
    }
    return ranges;
  }

  /** Replaces the placeholders of `range` with `fetched` (checked by the caller). */
  fill(range: MissingRange, fetched: readonly Entry[]): void {
    const first = this.entries[0]!.index;
    assert(fetched.length === range.lastIndex - range.firstIndex + 1, 'fill covers the range');
    for (let i = 0; i < fetched.length; i++) {
      const at = range.firstIndex - first + i;
      assert(isMissing(this.entries[at]!), 'fill only replaces placeholders');
      assert(fetched[i]!.index === range.firstIndex + i, 'fill keeps indexes');
      this.entries[at] = fetched[i]!;
    }
  }

  lastIndex(): number {
    return this.entries.length === 0
      ? this.snapshot.index
      : this.entries[this.entries.length - 1]!.index;
  }

  /**
   * Checks what must hold once every record is in; throws WAL_CORRUPT (naming the damage and
   * why protocol-aware recovery cannot apply) when a damaged span cannot be recovered.
   */
  finish(): void {
    const refuse = (where: StorageErrorLocation, why: string): StorageError =>
      corrupt(where, `damaged in every copy, and protocol-aware recovery cannot apply: ${why}`);
    for (const d of this.damage) {
      if (d.hardStatesBefore === this.hardStates) {
        throw refuse(
          d.where,
          'no intact hard state follows the damage, so it may have held the latest term, vote or commit',
        );
      }
      if (d.entryRecordsBefore === this.entryRecords) {
        throw refuse(
          d.where,
          'no intact entry record follows the damage, so the entries it may have held (possibly acknowledged) cannot be bounded',
        );
      }
    }
    const commit = this.hardState.commit;
    for (const range of this.missing()) {
      if (range.lastIndex <= commit) continue;
      const origin = this.origins.find(
        (o) => o.firstIndex <= range.lastIndex && o.lastIndex > commit,
      );
      throw refuse(
        (origin ?? this.origins[0] ?? this.damage[0]!).where,
        `entries ${Math.max(range.firstIndex, commit + 1)}..${range.lastIndex} are unknown and above the commit index ${commit}: this member may have acknowledged them`,
      );
    }
    const first = this.entries[0];
    if (first !== undefined && first.index !== this.snapshot.index + 1) {
      assert(this.firstLocation !== null, 'first entry has a location');
      throw corrupt(
        this.firstLocation,
        `gap in the log: the snapshot ends at ${this.snapshot.index}, entries start at ${first.index}`,
      );
    }
  }
}

export function corrupt(where: StorageErrorLocation, reason: string): StorageError {
  return new StorageError(
    'WAL_CORRUPT',
    `WAL corrupt: ${where.file} at byte ${where.offset}: ${reason}`,
    {
      location: where,
    },
  );
}
