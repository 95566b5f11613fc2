/**
 * The history of one key, as etcd's server/storage/mvcc/key_index.go: a list of generations.
 * A generation runs from a creation to a deletion; every put appends its revision to the last
 * generation, a delete appends the tombstone's revision and opens a new, empty generation.
 *
 * Worked example (revisions written main.sub). Key "foo" is put at 1.0 and 2.0, deleted at 3.0,
 * put again at 4.0 and 5.0 and deleted at 6.0:
 *
 *   generations: {1.0, 2.0, 3.0(t)} {4.0, 5.0, 6.0(t)} {empty}
 *
 * get(atRev=2) -> 2.0;  get(3) -> not found (deleted at 3);  get(5) -> 5.0;  get(0) -> none.
 * Compacting keeps, in the first generation still alive at atRev, the largest revision <= atRev
 * (the value a read at atRev must still see) and drops everything older; generations that ended
 * before atRev are dropped whole. A tombstone exactly at atRev is kept, as etcd (> 3.5.15) keeps
 * it: a watch from the compaction revision must still see that delete (etcd's rule compacts
 * only revisions strictly below it); the next compaction past it drops it:
 *
 *   compact(2): {2.0, 3.0(t)} {4.0, 5.0, 6.0(t)} {empty}
 *   compact(3): {3.0(t)} {4.0, 5.0, 6.0(t)} {empty}  // the delete at 3 stays for watchers
 *   compact(4): {4.0, 5.0, 6.0(t)} {empty}          // 1st generation ended at 3 < 4: gone
 *   compact(5): {5.0, 6.0(t)} {empty}
 *   compact(6): {6.0(t)} {empty}
 *   compact(7): {empty}                              // ended at 6 < 7: gone
 *
 * A key index with one empty generation holds nothing and is removed from the tree. A tombstone
 * kept alone is read back from the backend on open by `restoreTombstone`.
 *
 * Invariants: revisions strictly ascend across all generations; only the last generation may be
 * empty; every non-last generation ends with its tombstone.
 */
import { assert } from '../../util/assert.js';
import { type LeaseId, NO_LEASE } from '../types.js';
import { compareRevision, type Revision } from './revision.js';

interface Generation {
  /** Number of puts in this generation (kept across compaction, like etcd's `ver`). */
  ver: number;
  /** Revision of the put that created this generation (meaningless while empty). */
  created: Revision;
  revs: Revision[];
}

export interface IndexedRevision {
  /** Revision holding the key's value at the read revision. */
  readonly modified: Revision;
  readonly created: Revision;
  readonly version: number;
}

const NO_REVISION: Revision = { main: 0, sub: 0 };

export class KeyIndex {
  readonly key: string;
  private generations: Generation[] = [emptyGeneration()];
  /**
   * The lease of the key's latest put while it is live (NO_LEASE once deleted): a put learns
   * its predecessor's creation, version and lease here without reading the backend.
   */
  private liveLease: LeaseId = NO_LEASE;

  constructor(key: string) {
    this.key = key;
  }

  /** The latest revision of any kind (put or tombstone). */
  modified(): Revision {
    for (let g = this.generations.length - 1; g >= 0; g--) {
      const revs = this.generations[g]!.revs;
      if (revs.length > 0) return revs[revs.length - 1]!;
    }
    return NO_REVISION;
  }

  put(rev: Revision, lease: LeaseId = NO_LEASE): void {
    this.append(rev);
    this.liveLease = lease;
  }

  private append(rev: Revision): void {
    // The messages are built only on failure: this runs for every put and every restored record.
    if (compareRevision(rev, this.modified()) <= 0) {
      assert(false, `put ${rev.main}.${rev.sub} not after last`);
    }
    const g = this.generations[this.generations.length - 1]!;
    if (g.revs.length === 0) g.created = rev;
    g.revs.push(rev);
    g.ver++;
  }

  /** The main revision that created the live generation (the key must be live). */
  liveCreatedMain(): number {
    assert(this.isLive(), 'created revision of a deleted key');
    return this.generations[this.generations.length - 1]!.created.main;
  }

  /** The live key's version: puts since its creation (the key must be live). */
  liveVersion(): number {
    assert(this.isLive(), 'version of a deleted key');
    return this.generations[this.generations.length - 1]!.ver;
  }

  /** The lease of the live key's latest put (NO_LEASE when deleted). */
  lease(): LeaseId {
    return this.liveLease;
  }

  /**
   * A put read back from the backend on open. Compaction may have dropped the generation's first
   * revisions, so creation and version come from the stored KeyValue (as etcd's keyIndex.restore).
   */
  restorePut(rev: Revision, createdMain: number, version: number, lease: LeaseId): void {
    const g = this.generations[this.generations.length - 1]!;
    const first = g.revs.length === 0;
    this.put(rev, lease);
    assert(version >= g.ver, 'restored version behind the index');
    // `put` took `rev` as the creation, right unless compaction dropped the creating put.
    if (first && createdMain !== rev.main) g.created = { main: createdMain, sub: 0 };
    g.ver = version;
  }

  /**
   * A tombstone read back from the backend whose put was compacted away (a delete exactly at the
   * compaction revision, kept for watchers): a generation of that tombstone alone, as etcd's
   * keyIndex.restoreTombstone.
   */
  restoreTombstone(rev: Revision): void {
    if (this.isLive()) assert(false, `restored tombstone of live key ${JSON.stringify(this.key)}`);
    assert(compareRevision(rev, this.modified()) > 0, 'restored tombstone not after last');
    const g = this.generations[this.generations.length - 1]!;
    g.revs.push(rev);
    g.created = NO_REVISION;
    g.ver = 1;
    this.generations.push(emptyGeneration());
    this.liveLease = NO_LEASE;
  }

  /** Records a deletion. The caller checks that the key is live (as etcd's ErrRevisionNotFound). */
  tombstone(rev: Revision): void {
    if (!this.isLive()) assert(false, `tombstone of deleted key ${JSON.stringify(this.key)}`);
    this.append(rev);
    this.generations.push(emptyGeneration());
    this.liveLease = NO_LEASE;
  }

  isLive(): boolean {
    return this.generations[this.generations.length - 1]!.revs.length > 0;
  }

  isEmpty(): boolean {
    return this.generations.length === 1 && this.generations[0]!.revs.length === 0;
  }

  /** Where the key's value lives at `atRev`, or null when the key does not exist then. */
  get(atRev: number): IndexedRevision | null {
    const g = this.findGeneration(atRev);
    if (g === null) return null;
    const n = walkBack(g.revs, atRev);
    if (n < 0) return null;
    return { modified: g.revs[n]!, created: g.created, version: g.ver - (g.revs.length - n - 1) };
  }

  /**
   * Compacts history below `atRev` as described above; adds to `keep` every revision <= atRev
   * that must stay in the backend, and hands `dropped` every revision it removes (with whether
   * it is a tombstone: the last revision of a generation that is not the last one), so that the
   * backend can delete exactly those without a scan of its history.
   */
  compact(
    atRev: number,
    keep: Revision[] | null,
    dropped: ((rev: Revision, tombstone: boolean) => void) | null = null,
  ): void {
    assert(!this.isEmpty(), 'compact of empty key index');
    let genIdx = 0;
    // Skip generations that ended (tombstone) before atRev: nothing in them is visible.
    while (genIdx < this.generations.length - 1) {
      const revs = this.generations[genIdx]!.revs;
      if (revs[revs.length - 1]!.main >= atRev) break;
      if (dropped !== null) {
        for (let i = 0; i < revs.length; i++) dropped(revs[i]!, i === revs.length - 1);
      }
      genIdx++;
    }
    const g = this.generations[genIdx]!;
    const n = walkBack(g.revs, atRev);
    if (n >= 0) {
      // Below n only puts: a generation's tombstone is its last revision, and n is kept.
      if (dropped !== null) for (let i = 0; i < n; i++) dropped(g.revs[i]!, false);
      if (n > 0) g.revs = g.revs.slice(n);
      keep?.push(g.revs[0]!); // a tombstone kept here is exactly at atRev (see the header)
    }
    if (genIdx > 0) this.generations = this.generations.slice(genIdx);
    assert(this.generations.length > 0, 'compaction dropped the open generation');
  }

  /** Revisions with main >= sinceRev, in order (for tests and debugging). */
  revisionsSince(sinceRev: number): Revision[] {
    const out: Revision[] = [];
    for (const g of this.generations) for (const r of g.revs) if (r.main >= sinceRev) out.push(r);
    return out;
  }

  /** Latest generation containing atRev, as etcd's findGeneration; null if deleted or absent. */
  private findGeneration(atRev: number): Generation | null {
    const last = this.generations.length - 1;
    for (let cg = last; cg >= 0; cg--) {
      const g = this.generations[cg]!;
      if (g.revs.length === 0) continue;
      if (cg !== last && g.revs[g.revs.length - 1]!.main <= atRev) return null;
      if (g.revs[0]!.main <= atRev) return g;
    }
    return null;
  }
}

function emptyGeneration(): Generation {
  return { ver: 0, created: NO_REVISION, revs: [] };
}

/** Index of the last revision with main <= atRev, or -1. */
function walkBack(revs: readonly Revision[], atRev: number): number {
  for (let i = revs.length - 1; i >= 0; i--) if (revs[i]!.main <= atRev) return i;
  return -1;
}
