/**
 * MemoryStorage: the reference LogStorage, an in-memory log (etcd-io/raft storage.go).
 *
 * Layout: `ents[0]` is a dummy entry holding the index and term of the last compacted entry (or
 * of the snapshot), so `term(firstIndex() - 1)` is always answerable. Entries handed out are
 * shared references and are never mutated.
 */
import { assert } from '../util/assert.js';
import { RaftError } from './errors.js';
import {
  type ConfState,
  EMPTY_HARD_STATE,
  type Entry,
  EntryType,
  type HardState,
  type LogStorage,
  type Snapshot,
} from './types.js';

const EMPTY_BYTES = new Uint8Array(0);

export const EMPTY_CONF_STATE: ConfState = Object.freeze({
  voters: [],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});

export const EMPTY_SNAPSHOT: Snapshot = Object.freeze({
  metadata: Object.freeze({ index: 0, term: 0, confState: EMPTY_CONF_STATE }),
  data: EMPTY_BYTES,
});

function dummyEntry(index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: EMPTY_BYTES };
}

export class MemoryStorage implements LogStorage {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot = EMPTY_SNAPSHOT;
  /** ents[i] has index ents[0].index + i; ents[0] is the dummy. */
  private ents: Entry[] = [dummyEntry(0, 0)];

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.snap.metadata.confState };
  }

  setHardState(hs: HardState): void {
    this.hardState = hs;
  }

  entries(lo: number, hi: number, maxBytes: number): readonly Entry[] {
    const offset = this.ents[0]!.index;
    if (lo <= offset) throw new RaftError('COMPACTED', `entries(${lo}): compacted at ${offset}`);
    if (hi > this.lastIndex() + 1) {
      throw new RaftError('UNAVAILABLE', `entries(.., ${hi}): last index is ${this.lastIndex()}`);
    }
    return limitSize(this.ents, lo - offset, hi - offset, maxBytes);
  }

  term(i: number): number {
    const offset = this.ents[0]!.index;
    if (i < offset) throw new RaftError('COMPACTED', `term(${i}): compacted at ${offset}`);
    if (i - offset >= this.ents.length) {
      throw new RaftError('UNAVAILABLE', `term(${i}): last index is ${this.lastIndex()}`);
    }
    return this.ents[i - offset]!.term;
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces the whole log with `snap` (a follower installing a leader's snapshot). */
  applySnapshot(snap: Snapshot): void {
    const index = snap.metadata.index;
    if (index <= this.snap.metadata.index) {
      throw new RaftError(
        'SNAP_OUT_OF_DATE',
        `snapshot ${index} is not newer than ${this.snap.metadata.index}`,
      );
    }
    this.snap = snap;
    this.ents = [dummyEntry(index, snap.metadata.term)];
  }

  /**
   * Records a snapshot of the application state at `index` (<= the applied index, which the
   * caller knows). The log is not compacted: call `compact` for that.
   */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) {
      throw new RaftError(
        'SNAP_OUT_OF_DATE',
        `snapshot ${index} is not newer than ${this.snap.metadata.index}`,
      );
    }
    assert(index <= this.lastIndex(), `snapshot ${index} beyond last index ${this.lastIndex()}`);
    const offset = this.ents[0]!.index;
    const term = this.ents[index - offset]!.term;
    this.snap = { metadata: { index, term, confState }, data };
    return this.snap;
  }

  /** Discards entries before `index`; the entry at `index` stays as the dummy. */
  compact(index: number): void {
    const offset = this.ents[0]!.index;
    if (index <= offset)
      throw new RaftError('COMPACTED', `compact(${index}): already at ${offset}`);
    assert(index <= this.lastIndex(), `compact ${index} beyond last index ${this.lastIndex()}`);
    const kept = this.ents.slice(index - offset);
    kept[0] = dummyEntry(index, kept[0]!.term);
    this.ents = kept;
  }

  /** Appends `entries`, truncating any conflicting suffix; contiguous with the log. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return; // everything already compacted
    // Skip the prefix that is already compacted.
    const skip = first > entries[0]!.index ? first - entries[0]!.index : 0;
    const offset = entries[skip]!.index - this.ents[0]!.index;
    assert(
      offset <= this.ents.length,
      `append gap: entry ${entries[skip]!.index} after ${this.lastIndex()}`,
    );
    if (offset < this.ents.length) this.ents.length = offset; // truncate the conflicting suffix
    for (let i = skip; i < entries.length; i++) this.ents.push(entries[i]!);
  }

  /** An independent copy (entries are shared: they are immutable). */
  clone(): MemoryStorage {
    const copy = new MemoryStorage();
    copy.hardState = this.hardState;
    copy.snap = this.snap;
    copy.ents = this.ents.slice();
    return copy;
  }
}

/**
 * Entries `source[lo..hi)` keeping at most `maxBytes` of data, but at least one entry.
 */
export function limitSize(
  source: readonly Entry[],
  lo: number,
  hi: number,
  maxBytes: number,
): readonly Entry[] {
  if (hi <= lo) return [];
  let bytes = source[lo]!.data.length;
  let end = lo + 1;
  while (end < hi) {
    bytes += source[end]!.data.length;
    if (bytes > maxBytes) break;
    end++;
  }
  return source.slice(lo, end);
}
