/**
 * The tail of the log not yet known durable (etcd-io/raft log_unstable.go): an incoming snapshot
 * and/or entries starting at `offset`. Handed out in Ready, dropped by `stableTo` on advance.
 */
import { assert } from '../util/assert.js';
import type { Entry, Snapshot } from './types.js';

export class Unstable {
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];
  /** Index of entries[0] (or where it would be). */
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  /** The first index of the log if a snapshot is pending, else undefined. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot === null ? undefined : this.snapshot.metadata.index + 1;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot === null ? undefined : this.snapshot.metadata.index;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot !== null && this.snapshot.metadata.index === i) {
        return this.snapshot.metadata.term;
      }
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  /** Entries up to (i, t) reached stable storage. Ignored if the entry was since replaced. */
  stableTo(i: number, t: number): void {
    const term = this.maybeTerm(i);
    if (term === undefined || term !== t || i < this.offset) return;
    this.entries = this.entries.slice(i + 1 - this.offset);
    this.offset = i + 1;
  }

  stableSnapTo(i: number): void {
    if (this.snapshot !== null && this.snapshot.metadata.index === i) this.snapshot = null;
  }

  restore(snap: Snapshot): void {
    this.offset = snap.metadata.index + 1;
    this.entries = [];
    this.snapshot = snap;
  }

  /** Appends `ents`, replacing any suffix from ents[0].index on. */
  truncateAndAppend(ents: readonly Entry[]): void {
    const after = ents[0]!.index;
    const end = this.offset + this.entries.length;
    if (after === end) {
      for (const e of ents) this.entries.push(e);
    } else if (after <= this.offset) {
      // Replaces everything unstable (the stable part is overwritten by the caller's append).
      this.offset = after;
      this.entries = ents.slice();
    } else {
      assert(after < end, `unstable append gap at ${after}, end ${end}`);
      this.entries = this.entries.slice(0, after - this.offset);
      for (const e of ents) this.entries.push(e);
    }
  }

  /** Entries [lo, hi) of the unstable part. */
  slice(lo: number, hi: number): Entry[] {
    assert(
      lo <= hi && lo >= this.offset && hi <= this.offset + this.entries.length,
      `unstable slice [${lo}, ${hi}) out of [${this.offset}, ${this.offset + this.entries.length})`,
    );
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
