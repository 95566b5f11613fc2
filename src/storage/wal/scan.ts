/**
 * Reads one segment from its copies (the primary, and the mirror when configured), record by
 * record: at each offset the first copy whose frame verifies is used, and every other copy that
 * differs there is queued for repair. Records reach the caller one whole batch at a time, so a
 * batch (one save) is recovered all or nothing.
 *
 * Where no copy verifies, records end, unless the caller asks to step over damage (`onDamage`):
 * then the scan resynchronizes at the next 8-byte aligned offset from which a chain of verified
 * records reaches a batch end, reports the damaged span and goes on. CRCs are seeded by position,
 * so bytes that verify where they were not written are a 2^-32 event per candidate, and the chain
 * requirement makes a false resync need several such events. The partial batch before the damage
 * is handed out first: a later batch exists, so it was written whole (saves are serialized, each
 * synced before the next starts), and only its damaged part is unknown.
 */
import { assert } from '../../util/assert.js';
import { RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX } from '../limits.js';
import {
  decodeFrame,
  FLAG_BATCH_END,
  type Frame,
  RecordType,
  SEGMENT_HEADER_PAYLOAD_BYTES,
} from './format.js';

export interface SegmentImage {
  /** Whole file contents, or null when this copy has no such segment. */
  readonly bytes: Uint8Array | null;
  readonly view: DataView | null;
  /**
   * Every byte at or past this offset is zero (absent: `bytes.length`). The reader knows it
   * from the file and never wrote those bytes into `bytes`; the scan never reads them either, so
   * a preallocated tail costs neither page faults nor a pass over it.
   */
  readonly zeroFrom?: number;
}

/** End of the part of a copy that may hold a nonzero byte. */
export function dataEnd(copy: SegmentImage): number {
  const length = copy.bytes?.length ?? 0;
  return copy.zeroFrom === undefined ? length : Math.min(length, copy.zeroFrom);
}

export interface VerifiedRecord {
  readonly type: RecordType;
  readonly offset: number;
  /** The copy it was read from (its bytes stay valid until the next segment is read). */
  readonly copy: number;
  readonly payloadAt: number;
  readonly payloadBytes: number;
}

export interface Repair {
  /** The copy to rewrite, and the copy whose verified bytes it gets. */
  readonly copy: number;
  readonly from: number;
  readonly offset: number;
  readonly bytes: Uint8Array;
}

export interface SegmentScan {
  /** End of the last complete batch: where the next write goes when this segment is the tail. */
  readonly batchEnd: number;
  /** First offset where no copy holds a valid record (records end there). */
  readonly stopOffset: number;
  readonly stopReason: string;
  /** True when records end in zeroed space with no partial batch before (a clean end). */
  readonly cleanEnd: boolean;
  /** Offset of a valid record past stopOffset in some copy, or -1: damage, not a tail. */
  readonly validAfter: number;
  readonly repairs: Repair[];
  readonly records: number;
  /** Spans damaged in every copy that the scan stepped over (only with `onDamage`). */
  readonly damaged: readonly DamagedSpan[];
}

/** Bytes [offset, end) of a segment where no copy holds a verifying record. */
export interface DamagedSpan {
  readonly offset: number;
  readonly end: number;
}

export interface ScanOptions {
  /**
   * Step over damage in every copy (see the module comment): called with each span, in order,
   * after the batches before it and before those after it. Without it, records end at damage.
   */
  readonly onDamage?: (span: DamagedSpan) => void;
  /**
   * Where this segment's records end when known (a sealed segment: the next segment header's
   * `prevEndOffset`), else -1. Damage with no verified chain after it then runs to this end.
   */
  readonly recordsEnd?: number;
}

/**
 * Scans `copies` of segment `seq`, handing each complete batch to `onBatch` in order. Bytes of
 * a copy past `stopOffset` are not interpreted.
 */
export function scanSegment(
  copies: readonly SegmentImage[],
  seq: number,
  onBatch: (records: readonly VerifiedRecord[]) => void,
  options: ScanOptions = {},
): SegmentScan {
  assert(
    copies.some((c) => c.bytes !== null),
    'a segment has at least one copy',
  );
  const recordsEnd = options.recordsEnd ?? -1;
  const onDamage = options.onDamage;
  const repairs: Repair[] = [];
  const pending: VerifiedRecord[] = [];
  const damaged: DamagedSpan[] = [];
  let offset = 0;
  let batchEnd = 0;
  let records = 0;
  let stop: Frame & { ok: false } = { ok: false, reason: 'end of file', zero: true };
  const stepOver = (end: number): void => {
    assert(end > offset, 'a damaged span is not empty');
    if (pending.length > 0) onBatch(pending);
    pending.length = 0;
    const span = { offset, end };
    damaged.push(span);
    onDamage!(span);
    offset = end;
  };
  for (;;) {
    let chosen = -1;
    let frame: Frame | null = null;
    const frames: (Frame | null)[] = [];
    for (let c = 0; c < copies.length; c++) {
      const { bytes, view } = copies[c]!;
      const f = bytes === null ? null : decodeFrame(bytes, view!, offset, seq);
      frames.push(f);
      if (chosen < 0 && f?.ok === true) {
        chosen = c;
        frame = f;
      }
    }
    if (frame === null || !frame.ok) {
      // Prefer the primary's reason, unless the primary merely ran out (a shorter copy).
      const reasons = frames.filter((f): f is Frame & { ok: false } => f !== null && !f.ok);
      stop = reasons.find((f) => !f.zero) ?? reasons[0] ?? stop;
      // The segment header is never stepped over: it carries the identity checks.
      if (onDamage === undefined || offset === 0 || offset === recordsEnd) break;
      const limit = recordsEnd >= 0 ? recordsEnd : longestCopy(copies);
      const at = findResync(copies, seq, offset, limit);
      if (at >= 0) {
        stepOver(at);
        continue;
      }
      if (recordsEnd > offset) {
        // Damage up to where the next segment says these records end.
        stepOver(recordsEnd);
        batchEnd = recordsEnd;
        stop = { ok: false, reason: 'end of records', zero: true };
      }
      break;
    }
    const good = copies[chosen]!.bytes!.subarray(offset, frame.next);
    for (let c = 0; c < copies.length; c++) {
      const bytes = copies[c]!.bytes;
      if (c === chosen || bytes === null) continue;
      if (!sameBytes(bytes, offset, good))
        repairs.push({ copy: c, from: chosen, offset, bytes: good });
    }
    pending.push({
      type: frame.type,
      offset,
      copy: chosen,
      payloadAt: frame.payloadAt,
      payloadBytes: frame.payloadBytes,
    });
    records++;
    offset = frame.next;
    if ((frame.flags & FLAG_BATCH_END) !== 0) {
      onBatch(pending);
      pending.length = 0;
      batchEnd = offset;
    }
  }
  return {
    batchEnd,
    stopOffset: offset,
    stopReason: stop.reason,
    cleanEnd: stop.zero && pending.length === 0,
    validAfter: findValidAfter(copies, seq, offset),
    repairs,
    records,
    damaged,
  };
}

function longestCopy(copies: readonly SegmentImage[]): number {
  let bytes = 0;
  for (const c of copies) bytes = Math.max(bytes, c.bytes?.length ?? 0);
  return bytes;
}

/**
 * The first aligned offset after `from` (and before `limit`) where a chain of verified records,
 * each from any copy, reaches a batch end within `limit`; -1 when there is none. Bounded by the
 * segment: every candidate and every chain stays below `limit`.
 */
function findResync(
  copies: readonly SegmentImage[],
  seq: number,
  from: number,
  limit: number,
): number {
  for (let at = from + RECORD_ALIGN_BYTES; at + RECORD_HEADER_BYTES <= limit; ) {
    let plausible = false;
    // Where the next nonzero length word can start, over the copies whose length here is zero.
    let next = limit;
    for (const copy of copies) {
      const { bytes, view } = copy;
      if (bytes === null || at + RECORD_HEADER_BYTES > bytes.length) continue;
      const length = view!.getUint32(at + LENGTH_WORD_AT, true);
      if (length !== 0 && length <= RECORD_PAYLOAD_BYTES_MAX) plausible = true;
      next = Math.min(
        next,
        length === 0
          ? candidateAfterZeros(bytes, at, Math.min(limit, dataEnd(copy)), limit)
          : at + RECORD_ALIGN_BYTES,
      );
    }
    if (plausible && chainReachesBatchEnd(copies, seq, at, limit)) return at;
    // Zeroed space (a preallocated tail) is stepped over natively, not a word at a time.
    at = Math.max(next, at + RECORD_ALIGN_BYTES);
  }
  return -1;
}

function chainReachesBatchEnd(
  copies: readonly SegmentImage[],
  seq: number,
  start: number,
  limit: number,
): boolean {
  // Each verified frame advances at least one header, so the loop ends below `limit`.
  for (let at = start; at < limit; ) {
    let frame: (Frame & { ok: true }) | null = null;
    for (const { bytes, view } of copies) {
      if (bytes === null) continue;
      const f = decodeFrame(bytes, view!, at, seq);
      if (f.ok) {
        frame = f;
        break;
      }
    }
    if (frame === null || frame.next > limit) return false;
    if ((frame.flags & FLAG_BATCH_END) !== 0) return true;
    at = frame.next;
  }
  return false;
}

/**
 * Looks for any verifying frame past `offset` in any copy. Position-seeded CRCs make a false
 * find (bytes that verify at a position they were not written at) a 2^-32 event.
 */
function findValidAfter(copies: readonly SegmentImage[], seq: number, offset: number): number {
  for (const copy of copies) {
    const { bytes, view } = copy;
    if (bytes === null) continue;
    // A frame starting at or past dataEnd has a zero length word: no valid frame.
    const end = dataEnd(copy);
    for (let at = offset + RECORD_ALIGN_BYTES; at + 16 <= bytes.length && at < end; ) {
      const length = view!.getUint32(at + LENGTH_WORD_AT, true);
      if (length === 0) {
        at = Math.max(candidateAfterZeros(bytes, at, end, end), at + RECORD_ALIGN_BYTES);
        continue;
      }
      if (length <= RECORD_PAYLOAD_BYTES_MAX && decodeFrame(bytes, view!, at, seq).ok) return at;
      at += RECORD_ALIGN_BYTES;
    }
  }
  return -1;
}

/** A frame's length word sits after its 4-byte CRC; it is never zero in a written frame. */
const LENGTH_WORD_AT = 4;
/** Zeroed space is compared against this, a chunk at a time (memcmp, not a loop over bytes). */
const ZERO_CHUNK = new Uint8Array(64 * 1024);

/**
 * The first aligned offset after `at` whose length word may hold a nonzero byte, given that the
 * length word at `at` is zero: every aligned offset before it has a length word wholly in zeros,
 * so no frame starts there. `none` when the bytes up to `end` (past which all are zero) are.
 */
function candidateAfterZeros(bytes: Uint8Array, at: number, end: number, none: number): number {
  const first = firstNonZero(bytes, at + LENGTH_WORD_AT, Math.min(end, bytes.length));
  if (first < 0) return none;
  const aligned = Math.floor((first - LENGTH_WORD_AT) / RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
  return Math.max(aligned, at + RECORD_ALIGN_BYTES);
}

/** Index of the first nonzero byte in [from, end), or -1. */
export function firstNonZero(bytes: Uint8Array, from: number, end: number): number {
  const chunk = ZERO_CHUNK.length;
  let i = from;
  while (i + chunk <= end && Buffer.compare(bytes.subarray(i, i + chunk), ZERO_CHUNK) === 0) {
    i += chunk;
  }
  for (; i < end; i++) if (bytes[i] !== 0) return i;
  return -1;
}

/**
 * Offset just past the last nonzero byte at or after `from`, or `from` when all zero; bytes at
 * or past `zeroFrom` are known zero and not read.
 */
export function nonZeroEnd(bytes: Uint8Array, from: number, zeroFrom = bytes.length): number {
  const chunk = ZERO_CHUNK.length;
  let end = Math.min(bytes.length, zeroFrom);
  while (
    end - chunk >= from &&
    Buffer.compare(bytes.subarray(end - chunk, end), ZERO_CHUNK) === 0
  ) {
    end -= chunk;
  }
  for (let i = end - 1; i >= from; i--) if (bytes[i] !== 0) return i + 1;
  return from;
}

function sameBytes(bytes: Uint8Array, offset: number, good: Uint8Array): boolean {
  if (offset + good.length > bytes.length) return false;
  for (let i = 0; i < good.length; i++) if (bytes[offset + i] !== good[i]) return false;
  return true;
}

/** The first record of every segment must be its header. */
export function isHeaderRecord(r: VerifiedRecord | undefined): boolean {
  return (
    r !== undefined &&
    r.offset === 0 &&
    r.type === RecordType.SegmentHeader &&
    r.payloadBytes === SEGMENT_HEADER_PAYLOAD_BYTES
  );
}
