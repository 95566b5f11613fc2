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
 */
import type { Entry, HardState } from '../../raft/types.js';
import { EMPTY_HARD_STATE } from '../../raft/types.js';
import { assert } from '../../util/assert.js';
import { StorageError, type StorageErrorLocation } from '../errors.js';
import type { SnapshotMarker } from './format.js';

export class LogBuilder {
  hardState: HardState = EMPTY_HARD_STATE;
  snapshot: SnapshotMarker = { index: 0, term: 0 };
  /** Contiguous; entries[0].index > snapshot.index. */
  entries: Entry[] = [];
  private firstLocation: StorageErrorLocation | null = null;

  entry(e: Entry, where: StorageErrorLocation): void {
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
      this.entries =
        at !== undefined && at.term === s.term ? this.entries.slice(s.index - first + 1) : [];
    }
    this.snapshot = s;
  }

  hard(h: HardState): void {
    this.hardState = h;
  }

  lastIndex(): number {
    return this.entries.length === 0
      ? this.snapshot.index
      : this.entries[this.entries.length - 1]!.index;
  }

  /** Checks what must hold once every record is in. */
  finish(): void {
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
