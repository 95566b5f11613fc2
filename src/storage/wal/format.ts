/**
 * The WAL's on-disk format: record frames and their payloads. All integers little-endian.
 *
 * A segment is a sequence of records, each starting at a multiple of 8 bytes (so no header word
 * ever straddles a sector: a torn write never tears the length word), followed by zeros
 * (preallocated space). Frame:
 *
 *   0   u32  crc32c of bytes [4, 16 + length), seeded with the record's position (below)
 *   4   u32  payload length in bytes, 1 ..= RECORD_PAYLOAD_BYTES_MAX
 *   8   u8   record type (RecordType)
 *   9   u8   flags: bit 0 = BATCH_END, the last record of one save() (one group commit)
 *   10  u16  zero
 *   12  u32  zero
 *   16  payload, then zeros up to the next multiple of 8
 *
 * A CRC per record, not etcd's chained one: each record verifies on its own, so a damaged record
 * can be replaced by its mirror copy record by record, and damage is reported at the exact
 * record. What chaining buys (a record out of place, a stale record from an older life of the
 * file) comes instead from seeding each CRC with the record's position (segment sequence and
 * byte offset): the same bytes at another offset or in another segment fail the check. That also
 * makes it safe to scan for valid records past damage: an entry whose data happens to contain a
 * frame does not verify at that frame's position.
 */
import { crc32c } from '@node-rs/crc32';
import type { Entry, EntryType, HardState } from '../../raft/types.js';
import { assert, assertUint } from '../../util/assert.js';
import { RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX } from '../limits.js';

export const RecordType = {
  /** First record of every segment: identity and position (SegmentHeader). */
  SegmentHeader: 1,
  Entry: 2,
  HardState: 3,
  /** "A snapshot at (index, term) exists": entries up to index are covered by it. */
  Snapshot: 4,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

export const FLAG_BATCH_END = 1;

export const SEGMENT_MAGIC = 0x57444e54; // "TNDW"
export const SEGMENT_VERSION = 1;

/** Payload sizes of the fixed-size records. */
export const SEGMENT_HEADER_PAYLOAD_BYTES = 56;
export const ENTRY_PAYLOAD_HEADER_BYTES = 24;
export const HARD_STATE_PAYLOAD_BYTES = 24;
export const SNAPSHOT_PAYLOAD_BYTES = 16;
/** The largest entry data that fits one record. */
export const ENTRY_DATA_BYTES_MAX = RECORD_PAYLOAD_BYTES_MAX - ENTRY_PAYLOAD_HEADER_BYTES;

export interface SnapshotMarker {
  readonly index: number;
  readonly term: number;
}

export interface SegmentHeader {
  readonly clusterId: number;
  readonly memberId: number;
  readonly seq: number;
  /** Index of the first entry expected in this segment (the log's last index + 1 at creation). */
  readonly firstIndex: number;
  /**
   * Where the records of the previous segment end (its last BATCH_END). Recovery checks it, so a
   * previous segment that lost whole batches at its end is caught, not silently shortened.
   */
  readonly prevEndOffset: number;
}

export function alignUp(n: number): number {
  return Math.ceil(n / RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
}

export function frameBytes(payloadBytes: number): number {
  return alignUp(RECORD_HEADER_BYTES + payloadBytes);
}

/** The CRC seed of a record at `offset` in segment `seq`. */
export function positionSeed(seq: number, offset: number): number {
  return (Math.imul((seq + 1) >>> 0, 0x9e3779b1) ^ offset) >>> 0;
}

const TWO_32 = 2 ** 32;

export function setU64(view: DataView, at: number, n: number): void {
  assertUint(n, 'u64 field');
  view.setUint32(at, n % TWO_32, true);
  view.setUint32(at + 4, Math.floor(n / TWO_32), true);
}

/** Returns -1 when the value is not a safe integer (damage the CRC somehow missed). */
export function getU64(view: DataView, at: number): number {
  const hi = view.getUint32(at + 4, true);
  if (hi >= 2 ** 21) return -1;
  return hi * TWO_32 + view.getUint32(at, true);
}

// ---------------------------------------------------------------------------------------------
// Encoding (into the caller's reused buffer)

/**
 * Writes a frame header at `at` for a payload of `payloadBytes` that the caller writes at
 * `at + RECORD_HEADER_BYTES`; then `seal` pads and checksums it. Returns the payload offset.
 */
export function beginFrame(
  buf: Uint8Array,
  view: DataView,
  at: number,
  type: RecordType,
  payloadBytes: number,
): number {
  assert(at % RECORD_ALIGN_BYTES === 0, 'frames start aligned');
  assert(payloadBytes > 0 && payloadBytes <= RECORD_PAYLOAD_BYTES_MAX, 'payload within limits');
  assert(at + frameBytes(payloadBytes) <= buf.length, 'frame fits the buffer');
  view.setUint32(at + 4, payloadBytes, true);
  view.setUint32(at + 8, type, true); // type, zero flags, zero u16
  view.setUint32(at + 12, 0, true);
  return at + RECORD_HEADER_BYTES;
}

/**
 * Pads with zeros (the buffer is reused: old bytes must not leak into padding), sets the flags
 * and stores the CRC. `position` is where the frame will live in its segment file.
 */
export function sealFrame(
  buf: Uint8Array,
  view: DataView,
  at: number,
  flags: number,
  seq: number,
  position: number,
): number {
  const payloadBytes = view.getUint32(at + 4, true);
  const end = at + RECORD_HEADER_BYTES + payloadBytes;
  const next = alignUp(end);
  buf.fill(0, end, next);
  buf[at + 9] = flags;
  view.setUint32(at, crc32c(buf.subarray(at + 4, end), positionSeed(seq, position)), true);
  return next;
}

export function encodeSegmentHeader(view: DataView, at: number, h: SegmentHeader): void {
  view.setUint32(at, SEGMENT_MAGIC, true);
  view.setUint32(at + 4, SEGMENT_VERSION, true);
  setU64(view, at + 8, h.clusterId);
  setU64(view, at + 16, h.memberId);
  setU64(view, at + 24, h.seq);
  setU64(view, at + 32, h.firstIndex);
  setU64(view, at + 40, h.prevEndOffset);
  setU64(view, at + 48, 0);
}

export function encodeEntryHeader(view: DataView, at: number, e: Entry): void {
  setU64(view, at, e.index);
  setU64(view, at + 8, e.term);
  view.setUint32(at + 16, e.type, true);
  view.setUint32(at + 20, 0, true);
}

export function encodeHardState(view: DataView, at: number, h: HardState): void {
  setU64(view, at, h.term);
  setU64(view, at + 8, h.vote);
  setU64(view, at + 16, h.commit);
}

export function encodeSnapshot(view: DataView, at: number, s: SnapshotMarker): void {
  setU64(view, at, s.index);
  setU64(view, at + 8, s.term);
}

// ---------------------------------------------------------------------------------------------
// Decoding

export type Frame =
  | {
      readonly ok: true;
      readonly type: RecordType;
      readonly flags: number;
      readonly payloadAt: number;
      readonly payloadBytes: number;
      /** Offset of the next frame. */
      readonly next: number;
    }
  | { readonly ok: false; readonly reason: string; readonly zero: boolean };

const ZERO_HEADER: Frame = { ok: false, reason: 'zeroed space', zero: true };

/** Decodes and verifies the frame at `at` (a multiple of 8) of a segment image `buf`. */
export function decodeFrame(buf: Uint8Array, view: DataView, at: number, seq: number): Frame {
  if (at + RECORD_HEADER_BYTES > buf.length) {
    return { ok: false, reason: 'end of file inside a header', zero: at >= buf.length };
  }
  const crc = view.getUint32(at, true);
  const payloadBytes = view.getUint32(at + 4, true);
  const typeWord = view.getUint32(at + 8, true);
  const reserved = view.getUint32(at + 12, true);
  if ((crc | payloadBytes | typeWord | reserved) === 0) return ZERO_HEADER;
  const type = typeWord & 0xff;
  const flags = (typeWord >>> 8) & 0xff;
  if (payloadBytes === 0 || payloadBytes > RECORD_PAYLOAD_BYTES_MAX) {
    return { ok: false, reason: `bad payload length ${payloadBytes}`, zero: false };
  }
  if (type < RecordType.SegmentHeader || type > RecordType.Snapshot) {
    return { ok: false, reason: `unknown record type ${type}`, zero: false };
  }
  if ((flags & ~FLAG_BATCH_END) !== 0 || typeWord >>> 16 !== 0 || reserved !== 0) {
    return { ok: false, reason: 'reserved header bits set', zero: false };
  }
  const end = at + RECORD_HEADER_BYTES + payloadBytes;
  if (end > buf.length) return { ok: false, reason: 'end of file inside a record', zero: false };
  if (crc32c(buf.subarray(at + 4, end), positionSeed(seq, at)) !== crc) {
    return { ok: false, reason: 'checksum mismatch', zero: false };
  }
  return {
    ok: true,
    type: type as RecordType,
    flags,
    payloadAt: at + RECORD_HEADER_BYTES,
    payloadBytes,
    next: alignUp(end),
  };
}

/** Payload decoders return null when the payload does not decode (wrong size, unsafe ints). */

export function decodeSegmentHeader(
  view: DataView,
  at: number,
  bytes: number,
): SegmentHeader | null {
  if (bytes !== SEGMENT_HEADER_PAYLOAD_BYTES) return null;
  if (view.getUint32(at, true) !== SEGMENT_MAGIC) return null;
  if (view.getUint32(at + 4, true) !== SEGMENT_VERSION) return null;
  const h = {
    clusterId: getU64(view, at + 8),
    memberId: getU64(view, at + 16),
    seq: getU64(view, at + 24),
    firstIndex: getU64(view, at + 32),
    prevEndOffset: getU64(view, at + 40),
  };
  return Object.values(h).some((n) => n < 0) ? null : h;
}

export function decodeEntry(
  buf: Uint8Array,
  view: DataView,
  at: number,
  bytes: number,
): Entry | null {
  if (bytes < ENTRY_PAYLOAD_HEADER_BYTES) return null;
  const index = getU64(view, at);
  const term = getU64(view, at + 8);
  const type = view.getUint32(at + 16, true);
  if (index < 1 || term < 0 || type > 1 || view.getUint32(at + 20, true) !== 0) return null;
  // A copy: the segment image buffer is reused, and entries outlive it (shared, never mutated).
  const data = buf.slice(at + ENTRY_PAYLOAD_HEADER_BYTES, at + bytes);
  return { index, term, type: type as EntryType, data };
}

export function decodeHardState(view: DataView, at: number, bytes: number): HardState | null {
  if (bytes !== HARD_STATE_PAYLOAD_BYTES) return null;
  const h = { term: getU64(view, at), vote: getU64(view, at + 8), commit: getU64(view, at + 16) };
  return h.term < 0 || h.vote < 0 || h.commit < 0 ? null : h;
}

export function decodeSnapshot(view: DataView, at: number, bytes: number): SnapshotMarker | null {
  if (bytes !== SNAPSHOT_PAYLOAD_BYTES) return null;
  const s = { index: getU64(view, at), term: getU64(view, at + 8) };
  return s.index < 0 || s.term < 0 ? null : s;
}

/** Segment file names sort by sequence: `<seq:16 hex>-<firstIndex:16 hex>.wal` (etcd style). */
export function segmentName(seq: number, firstIndex: number): string {
  return `${hex16(seq)}-${hex16(firstIndex)}.wal`;
}

const SEGMENT_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;

export function parseSegmentName(name: string): { seq: number; firstIndex: number } | null {
  const m = SEGMENT_NAME.exec(name);
  if (m === null) return null;
  const seq = Number.parseInt(m[1]!, 16);
  const firstIndex = Number.parseInt(m[2]!, 16);
  return Number.isSafeInteger(seq) && Number.isSafeInteger(firstIndex) ? { seq, firstIndex } : null;
}

function hex16(n: number): string {
  assertUint(n, 'segment name field');
  return n.toString(16).padStart(16, '0');
}
