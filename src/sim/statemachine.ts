/**
 * The simulator's state machine: the sequence of applied entries, summarized as an applied index
 * and a chained hash of every entry applied so far (so two members' histories compare in O(1)),
 * plus the membership the applied conf changes produced. Its snapshot image is those numbers.
 */
import type { ConfState, Entry } from '../raft/types.js';
import { assert } from '../util/assert.js';

export const EMPTY_CONF_STATE: ConfState = Object.freeze({
  voters: [],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});

/** The chain value before any entry. */
export const CHAIN_INITIAL = 0x6a09e667;

export class AppliedLog {
  appliedIndex = 0;
  /** Chained hash of every applied entry (index, term, type, data). */
  chain = CHAIN_INITIAL;
  /** Entries applied by this state machine instance (not restored from a snapshot). */
  appliedCount = 0;
  confState: ConfState = EMPTY_CONF_STATE;

  apply(entry: Entry): void {
    assert(
      entry.index === this.appliedIndex + 1,
      `state machine at ${this.appliedIndex} applies entry ${entry.index}`,
    );
    this.chain = chainNext(this.chain, entry);
    this.appliedIndex = entry.index;
    this.appliedCount++;
  }

  /** Replaces the state with a snapshot's image. */
  restore(index: number, data: Uint8Array, confState: ConfState): void {
    const image = decodeImage(data, index);
    assert(image.index === index, `snapshot image at ${image.index} labelled ${index}`);
    this.appliedIndex = index;
    this.chain = image.chain;
    this.confState = confState;
  }

  image(): Uint8Array {
    return encodeImage(this.appliedIndex, this.chain);
  }

  clone(): AppliedLog {
    const copy = new AppliedLog();
    copy.appliedIndex = this.appliedIndex;
    copy.chain = this.chain;
    copy.confState = this.confState;
    return copy;
  }
}

export function chainNext(chain: number, entry: Entry): number {
  let h = Math.imul(chain ^ entry.index, 0x01000193);
  h = Math.imul(h ^ entry.term, 0x01000193);
  h = Math.imul(h ^ entry.type, 0x01000193);
  const data = entry.data;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  h = Math.imul(h ^ data.length, 0x9e3779b1);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Hash of an entry's identity and content, for the committed-entries map. */
export function entryHash(entry: Entry): number {
  return chainNext(0, entry);
}

const IMAGE_MAGIC = 0x53494d31; // "SIM1"

export function encodeImage(index: number, chain: number): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, IMAGE_MAGIC);
  view.setUint32(4, chain >>> 0);
  view.setFloat64(8, index);
  return bytes;
}

/**
 * Decodes a snapshot image. A snapshot without data (the bootstrap's, or an empty storage's)
 * stands for the initial state as of `index`; every member sees the same one.
 */
export function decodeImage(data: Uint8Array, index: number): { index: number; chain: number } {
  if (data.length === 0) {
    return {
      index,
      chain: index === 0 ? CHAIN_INITIAL : Math.imul(CHAIN_INITIAL ^ index, 0x01000193) >>> 0,
    };
  }
  assert(data.length === 16, `state machine image of ${data.length} bytes`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  assert(view.getUint32(0) === IMAGE_MAGIC, 'state machine image has a bad magic');
  return { index: view.getFloat64(8), chain: view.getUint32(4) };
}
