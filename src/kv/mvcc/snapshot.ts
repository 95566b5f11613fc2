/**
 * State-machine snapshots: a point-in-time copy of every backend bucket (the key bucket's full
 * history and the meta bucket, which holds the applied index and compact revision), streamed
 * as self-checking chunks, one frame per chunk:
 *
 *   frame   = magic u32 "TKVS" | kind u8 | 3 zero bytes | payloadLength u32 | crc32c u32 | payload
 *   BEGIN   = formatVersion u32 | appliedIndex u64 | revision u64
 *   RECORDS = { bucket u8 | keyLength u32 | key | valueLength u32 | value }+
 *   END     = records u64 | crc32c over every RECORDS payload, chained
 *
 * Restore checks every frame's CRC, the order BEGIN, RECORDS*, END, the record count and the
 * chained CRC, and writes everything in one backend transaction: a bad snapshot leaves the
 * target backend exactly as it was.
 */
import { crc32c } from '@node-rs/crc32';
import { assert } from '../../util/assert.js';
import { type Backend, BUCKETS, type Bucket, type ReadView } from '../backend/backend.js';
import { KvError } from '../errors.js';
import { readU64, writeU64 } from './revision.js';

const MAGIC = 0x544b5653; // "TKVS"
const FORMAT_VERSION = 1;
const FRAME_HEADER_BYTES = 16;
const RECORD_OVERHEAD_BYTES = 9;
/** A RECORDS frame closes once its payload reaches this; one record may exceed it alone. */
export const SNAPSHOT_CHUNK_BYTES_TARGET = 1024 * 1024;
/** Room past the target in a RECORDS frame's buffer, so the record that crosses it fits. */
const RECORDS_FRAME_SLACK_BYTES = 64 * 1024;

const Kind = { Begin: 1, Records: 2, End: 3 } as const;

export interface SnapshotInfo {
  readonly appliedIndex: number;
  readonly revision: number;
}

/**
 * The chunks of a snapshot of `view`, produced lazily (the view stays pinned while iterating;
 * it is released when the iteration ends or is abandoned through `return`).
 */
export function* snapshotChunks(
  view: ReadView,
  info: SnapshotInfo,
  chunkBytesTarget = SNAPSHOT_CHUNK_BYTES_TARGET,
): Generator<Uint8Array, void, undefined> {
  assert(chunkBytesTarget > 0, 'chunk target');
  try {
    const begin = new Uint8Array(20);
    const bv = new DataView(begin.buffer);
    bv.setUint32(0, FORMAT_VERSION);
    writeU64(bv, 4, info.appliedIndex);
    writeU64(bv, 12, info.revision);
    yield frame(Kind.Begin, begin);
    let records = 0;
    let streamCrc = 0;
    for (const bucket of BUCKETS) {
      let start: Uint8Array | null = new Uint8Array(0);
      while (start !== null) {
        const batch = recordsFrame(view, bucket, start, chunkBytesTarget);
        start = batch.next;
        if (batch.count === 0) continue;
        records += batch.count;
        streamCrc = crc32c(batch.frame.subarray(FRAME_HEADER_BYTES), streamCrc);
        yield batch.frame;
      }
    }
    const end = new Uint8Array(12);
    const ev = new DataView(end.buffer);
    writeU64(ev, 0, records);
    ev.setUint32(8, streamCrc);
    yield frame(Kind.End, end);
  } finally {
    view.release();
  }
}

/**
 * A RECORDS frame of `bucket`'s records from `start` until the payload reaches the target;
 * `next` resumes. Each record is copied once, from the view's own buffers (scanViews) straight
 * into the frame: no buffer per record, no concatenation, no copy of the frame.
 */
function recordsFrame(
  view: ReadView,
  bucket: Bucket,
  start: Uint8Array,
  target: number,
): { frame: Uint8Array; count: number; next: Uint8Array | null } {
  const bucketId = BUCKETS.indexOf(bucket);
  let out = new Uint8Array(FRAME_HEADER_BYTES + target + RECORDS_FRAME_SLACK_BYTES);
  let dv = new DataView(out.buffer);
  let at = FRAME_HEADER_BYTES;
  let count = 0;
  let next: Uint8Array | null = null;
  view.scanViews(bucket, start, null, (key, value) => {
    if (at - FRAME_HEADER_BYTES >= target) {
      next = key.slice(); // the backend's buffer: it may be reused by the next read
      return false;
    }
    const bytes = RECORD_OVERHEAD_BYTES + key.length + value.length;
    if (at + bytes > out.length) {
      // A record larger than the slack: grow (rare; values are bounded by the request limit).
      const grown = new Uint8Array(Math.max(out.length * 2, at + bytes));
      grown.set(out.subarray(0, at));
      out = grown;
      dv = new DataView(out.buffer);
    }
    out[at] = bucketId;
    dv.setUint32(at + 1, key.length);
    out.set(key, at + 5);
    dv.setUint32(at + 5 + key.length, value.length);
    out.set(value, at + RECORD_OVERHEAD_BYTES + key.length);
    at += bytes;
    count++;
    return true;
  });
  const payloadLength = at - FRAME_HEADER_BYTES;
  dv.setUint32(0, MAGIC);
  out[4] = Kind.Records;
  dv.setUint32(8, payloadLength);
  dv.setUint32(12, crc32c(out.subarray(FRAME_HEADER_BYTES, at)));
  return { frame: out.subarray(0, at), count, next };
}

function frame(kind: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC);
  out[4] = kind;
  dv.setUint32(8, payload.length);
  dv.setUint32(12, crc32c(payload));
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Replaces everything in `backend` with the snapshot in `chunks`, atomically. Throws KvError
 * SNAPSHOT_CORRUPT (and changes nothing) on any damage.
 */
export function restoreSnapshot(backend: Backend, chunks: Iterable<Uint8Array>): SnapshotInfo {
  return backend.write((tx) => {
    for (const bucket of BUCKETS) {
      const keys: Uint8Array[] = [];
      tx.scan(bucket, new Uint8Array(0), null, (k) => {
        keys.push(k);
        return true;
      });
      for (const k of keys) tx.delete(bucket, k);
    }
    let info: SnapshotInfo | null = null;
    let records = 0;
    let streamCrc = 0;
    let ended = false;
    for (const chunk of chunks) {
      const { kind, payload } = parseFrame(chunk);
      if (ended) throw corrupt('data after END');
      if (info === null) {
        if (kind !== Kind.Begin) throw corrupt('missing BEGIN');
        info = parseBegin(payload);
      } else if (kind === Kind.Records) {
        records += parseRecords(payload, (bucket, k, v) => tx.put(bucket, k, v));
        streamCrc = crc32c(payload, streamCrc);
      } else if (kind === Kind.End) {
        checkEnd(payload, records, streamCrc);
        ended = true;
      } else {
        throw corrupt(`unexpected frame kind ${kind}`);
      }
    }
    if (info === null || !ended) throw corrupt('truncated');
    return info;
  });
}

function parseFrame(chunk: Uint8Array): { kind: number; payload: Uint8Array } {
  if (chunk.length < FRAME_HEADER_BYTES) throw corrupt('short frame');
  const dv = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (dv.getUint32(0) !== MAGIC) throw corrupt('bad magic');
  if (chunk[5] !== 0 || chunk[6] !== 0 || chunk[7] !== 0) throw corrupt('frame padding');
  const length = dv.getUint32(8);
  if (FRAME_HEADER_BYTES + length !== chunk.length) throw corrupt('frame length');
  const payload = chunk.subarray(FRAME_HEADER_BYTES);
  if (crc32c(payload) !== dv.getUint32(12)) throw corrupt('frame checksum');
  return { kind: chunk[4]!, payload };
}

function parseBegin(payload: Uint8Array): SnapshotInfo {
  if (payload.length !== 20) throw corrupt('BEGIN length');
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (dv.getUint32(0) !== FORMAT_VERSION) throw corrupt(`format ${dv.getUint32(0)}`);
  return { appliedIndex: readU64(dv, 4), revision: readU64(dv, 12) };
}

function parseRecords(
  payload: Uint8Array,
  put: (bucket: Bucket, key: Uint8Array, value: Uint8Array) => void,
): number {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let at = 0;
  let count = 0;
  while (at < payload.length) {
    if (at + RECORD_OVERHEAD_BYTES > payload.length) throw corrupt('record header');
    const bucket = BUCKETS[payload[at]!];
    if (bucket === undefined) throw corrupt('record bucket');
    const keyLength = dv.getUint32(at + 1);
    if (at + RECORD_OVERHEAD_BYTES + keyLength > payload.length) throw corrupt('record key');
    const key = payload.subarray(at + 5, at + 5 + keyLength);
    const valueLength = dv.getUint32(at + 5 + keyLength);
    const valueAt = at + RECORD_OVERHEAD_BYTES + keyLength;
    if (valueAt + valueLength > payload.length) throw corrupt('record value');
    put(bucket, key, payload.subarray(valueAt, valueAt + valueLength));
    at = valueAt + valueLength;
    count++;
  }
  return count;
}

function checkEnd(payload: Uint8Array, records: number, streamCrc: number): void {
  if (payload.length !== 12) throw corrupt('END length');
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (readU64(dv, 0) !== records) throw corrupt('record count');
  if (dv.getUint32(8) !== streamCrc) throw corrupt('stream checksum');
}

function corrupt(detail: string): KvError {
  return new KvError('SNAPSHOT_CORRUPT', detail);
}
