/**
 * The in-memory index of all keys (etcd's treeIndex): user key -> KeyIndex, ordered by bytes.
 * Rebuilt from the backend's key bucket on open, so the backend stays the single source of
 * truth and no crash can leave the two disagreeing.
 */
import { assert } from '../../util/assert.js';
import type { LeaseId } from '../types.js';
import { type IndexedRevision, KeyIndex } from './key-index.js';
import type { Revision } from './revision.js';
import { SortedMap } from './sorted-map.js';

export interface KeyRevision {
  readonly key: string;
  readonly rev: IndexedRevision;
}

export class TreeIndex {
  constructor(private readonly keys = new SortedMap<KeyIndex>()) {}

  get size(): number {
    return this.keys.size;
  }

  get(key: string, atRev: number): IndexedRevision | null {
    return this.keys.get(key)?.get(atRev) ?? null;
  }

  /** `known`: the key's index when the caller already looked it up (saves a second search). */
  put(key: string, rev: Revision, lease: LeaseId, known?: KeyIndex): void {
    let ki = known ?? this.keys.get(key);
    if (ki === undefined) {
      ki = new KeyIndex(key);
      this.keys.set(key, ki);
    }
    assert(ki.key === key, 'key index of another key');
    ki.put(rev, lease);
  }

  /** `known`: the key's index entry if the caller has it (no second search of the map). */
  tombstone(key: string, rev: Revision, known?: KeyIndex): void {
    const ki = known ?? this.keys.get(key);
    assert(ki !== undefined, 'tombstone of unknown key');
    assert(ki.key === key, 'key index of another key');
    ki.tombstone(rev);
  }

  /**
   * The index entries of the keys live at `atRev` in the range (end: null = single key, '' =
   * unbounded), in key order: what a DeleteRange deletes, each found once.
   */
  liveKeyIndexes(key: string, end: string | null, atRev: number): KeyIndex[] {
    const found: KeyIndex[] = [];
    if (end === null) {
      const ki = this.keys.get(key);
      if (ki !== undefined && ki.get(atRev) !== null) found.push(ki);
      return found;
    }
    this.keys.scan(key, end === '' ? null : end, (_k, ki) => {
      if (ki.get(atRev) !== null) found.push(ki);
      return true;
    });
    return found;
  }

  /**
   * Keys live at `atRev` in the range (end: null = single key, '' = unbounded), in key order,
   * at most `limit` (0 = all) of them; `total` counts every match, as etcd's Revisions does.
   */
  revisions(
    key: string,
    end: string | null,
    atRev: number,
    limit: number,
  ): { revs: KeyRevision[]; total: number } {
    const revs: KeyRevision[] = [];
    let total = 0;
    this.visit(key, end, atRev, (k, rev) => {
      if (limit <= 0 || revs.length < limit) revs.push({ key: k, rev });
      total++;
    });
    return { revs, total };
  }

  /**
   * One slice of `revisions` over a range with an end (end '' = unbounded): visits at most
   * `visitMax` keys from `start`, appends the live ones to `out` while it holds fewer than `keep`,
   * and counts every live one. `next`: the first key not visited, where the next slice starts
   * (null: the range is done).
   */
  revisionsSlice(
    start: string,
    end: string,
    atRev: number,
    visitMax: number,
    keep: number,
    out: KeyRevision[],
  ): { counted: number; next: string | null } {
    assert(visitMax > 0, 'a slice visits something');
    let visited = 0;
    let counted = 0;
    let next: string | null = null;
    this.keys.scan(start, end === '' ? null : end, (k, ki) => {
      if (visited === visitMax) {
        next = k;
        return false;
      }
      visited++;
      const rev = ki.get(atRev);
      if (rev !== null) {
        counted++;
        if (out.length < keep) out.push({ key: k, rev });
      }
      return true;
    });
    return { counted, next };
  }

  count(key: string, end: string | null, atRev: number): number {
    let total = 0;
    this.visit(key, end, atRev, () => {
      total++;
    });
    return total;
  }

  /**
   * Compacts every key at `atRev`, handing `dropped` each revision removed (KeyIndex.compact):
   * exactly the backend records the compaction deletes.
   */
  compact(atRev: number, dropped: (rev: Revision, tombstone: boolean) => void): void {
    const emptied: string[] = [];
    this.keys.scan('', null, (k, ki) => {
      ki.compact(atRev, null, dropped);
      if (ki.isEmpty()) emptied.push(k);
      return true;
    });
    for (const k of emptied) this.keys.delete(k);
  }

  keyIndex(key: string): KeyIndex | undefined {
    return this.keys.get(key);
  }

  private visit(
    key: string,
    end: string | null,
    atRev: number,
    f: (key: string, rev: IndexedRevision) => void,
  ): void {
    if (end === null) {
      const rev = this.get(key, atRev);
      if (rev !== null) f(key, rev);
      return;
    }
    this.keys.scan(key, end === '' ? null : end, (k, ki) => {
      const rev = ki.get(atRev);
      if (rev !== null) f(k, rev);
      return true;
    });
  }
}

/**
 * Builds the index a store rebuilds on open, from the key bucket in revision order (keys in
 * any order): keys are hashed while loading and sorted once at the end, as n inserts in random
 * order into the sorted map cost several times more (a third of a 200k-key restore).
 */
export class TreeIndexLoader {
  private readonly keys = new Map<string, KeyIndex>();

  keyIndex(key: string): KeyIndex | undefined {
    return this.keys.get(key);
  }

  /** See KeyIndex.restorePut. */
  restorePut(
    key: string,
    rev: Revision,
    createdMain: number,
    version: number,
    lease: LeaseId,
  ): void {
    this.keyIndexOrNew(key).restorePut(rev, createdMain, version, lease);
  }

  /** See KeyIndex.restoreTombstone. */
  restoreTombstone(key: string, rev: Revision): void {
    this.keyIndexOrNew(key).restoreTombstone(rev);
  }

  tombstone(key: string, rev: Revision): void {
    const ki = this.keys.get(key);
    assert(ki !== undefined, 'tombstone of unknown key');
    ki.tombstone(rev);
  }

  /** The index; the loader must not be used after. */
  finish(): TreeIndex {
    // Default sort order is by UTF-16 code unit: byte order for these latin1 keys (bytes.ts).
    const keys = [...this.keys.keys()].sort();
    const values = keys.map((k) => this.keys.get(k)!);
    this.keys.clear();
    return new TreeIndex(SortedMap.fromSorted(keys, values));
  }

  private keyIndexOrNew(key: string): KeyIndex {
    let ki = this.keys.get(key);
    if (ki === undefined) {
      ki = new KeyIndex(key);
      this.keys.set(key, ki);
    }
    return ki;
  }
}
