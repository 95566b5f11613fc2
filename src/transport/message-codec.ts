/**
 * Raft messages on the peer wire (MESSAGES and SNAP_BEGIN payloads): a hand-written binary
 * layout, because every put crosses it three or four times (msgpack over positional arrays cost
 * ~30 µs of CPU per put across a cluster). All integers are little-endian; every u64 holds a
 * safe integer (< 2^53: the decoder refuses a high word above 0x1fffff). Fixed widths rather
 * than varints: the message header is one bounds check, and an encoded size is known from the
 * lengths alone (`messageBytes` is exact, so the encoder allocates once).
 *
 *   MESSAGES   = u32 count (1..BATCH_MESSAGES_MAX), message × count
 *   SNAP_BEGIN = u32 snapshotId, u64 totalBytes, message (a MsgSnap whose snapshot data is empty:
 *                the image follows in SNAP_CHUNK frames)
 *
 *   message  = u8 type, u8 flags (bit 0 reject, bit 1 snapshot follows),
 *              u64 to, from, term, logTerm, index, commit, rejectHint,
 *              u32 contextBytes, u32 entryCount,                           (66 bytes)
 *              context, entry × entryCount, [snapshot]
 *   entry    = u64 term, u64 index, u8 type, u32 dataBytes, data          (21 bytes + data)
 *   snapshot = u64 index, u64 term, u8 autoLeave, u32 × 4 id counts (voters, learners,
 *              votersOutgoing, learnersNext), u64 × ids, u32 dataBytes, data  (37 + 8/id + data)
 *
 * Decoded byte fields (context, entry and snapshot data) are views into the frame payload: the
 * frame decoder never reuses a payload, and storage treats entries as immutable.
 */
import {
  type ConfState,
  type Entry,
  EntryType,
  MESSAGE_TYPE_NAMES,
  type Message,
  type MessageType,
  type NodeId,
  type Snapshot,
} from '../raft/types.js';
import { assert } from '../util/assert.js';
import { TransportError } from './errors.js';
import { FrameType, writeFrameHeader } from './frame.js';
import {
  BATCH_MESSAGES_MAX,
  ENTRY_OVERHEAD_BYTES,
  FRAME_HEADER_BYTES,
  FRAME_OVERHEAD_BYTES,
  MESSAGE_OVERHEAD_BYTES,
  NODE_ID_BYTES,
  SNAPSHOT_OVERHEAD_BYTES,
} from './limits.js';

const U32_BYTES = 4;
const U64_BYTES = 8;
const TWO_POW_32 = 2 ** 32;
/** The largest high word of a safe integer (2^53 - 1 = 0x1fffff_ffffffff). */
const SAFE_HIGH_WORD_MAX = 0x1fffff;

const FLAG_REJECT = 1;
const FLAG_SNAPSHOT = 2;
const FLAGS_KNOWN = FLAG_REJECT | FLAG_SNAPSHOT;

/** Payload bytes before the first message of a MESSAGES frame (its count). */
export const MESSAGES_HEADER_BYTES = U32_BYTES;
/** Payload bytes before the message of a SNAP_BEGIN frame (snapshot id, total bytes). */
export const SNAP_BEGIN_HEADER_BYTES = U32_BYTES + U64_BYTES;

// The layout above, field by field, must be what limits.ts budgets: messageBytes is exact.
assert(MESSAGE_OVERHEAD_BYTES === 2 + 7 * U64_BYTES + 2 * U32_BYTES);
assert(ENTRY_OVERHEAD_BYTES === 2 * U64_BYTES + 1 + U32_BYTES);
assert(SNAPSHOT_OVERHEAD_BYTES === 2 * U64_BYTES + 1 + 4 * U32_BYTES + U32_BYTES);
assert(NODE_ID_BYTES === U64_BYTES);
assert(
  FRAME_HEADER_BYTES + Math.max(MESSAGES_HEADER_BYTES, SNAP_BEGIN_HEADER_BYTES) <=
    FRAME_OVERHEAD_BYTES,
);

/**
 * The encoded size of `m` in bytes, exactly (so an upper bound, as the byte limits need):
 * what the queues account and the frame limit checks. `withSnapshotData: false` for a MsgSnap
 * whose data is streamed in chunks.
 */
export function messageBytes(m: Message, withSnapshotData = true): number {
  let bytes = MESSAGE_OVERHEAD_BYTES + m.context.length;
  const entries = m.entries;
  for (let i = 0; i < entries.length; i++) {
    bytes += ENTRY_OVERHEAD_BYTES + entries[i]!.data.length;
  }
  const snapshot = m.snapshot;
  if (snapshot !== null) {
    const cs = snapshot.metadata.confState;
    const ids =
      cs.voters.length + cs.learners.length + cs.votersOutgoing.length + cs.learnersNext.length;
    bytes += SNAPSHOT_OVERHEAD_BYTES + ids * NODE_ID_BYTES;
    if (withSnapshotData) bytes += snapshot.data.length;
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Encoding: one pass over the lengths, one allocation, then the fields written in place.

function writeU32(b: Buffer, o: number, v: number): number {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
  return o + U32_BYTES;
}

function writeU64(b: Buffer, o: number, v: number): number {
  assert(Number.isSafeInteger(v) && v >= 0, 'a wire integer must be a non-negative safe integer');
  const low = v >>> 0;
  const high = (v - low) / TWO_POW_32;
  writeU32(b, o, low);
  return writeU32(b, o + U32_BYTES, high);
}

function writeBytes(b: Buffer, o: number, bytes: Uint8Array): number {
  o = writeU32(b, o, bytes.length);
  b.set(bytes, o);
  return o + bytes.length;
}

function writeIds(b: Buffer, o: number, ids: readonly NodeId[]): number {
  for (let i = 0; i < ids.length; i++) o = writeU64(b, o, ids[i]!);
  return o;
}

/** Writes `m` at `o`; returns the offset after it. `snapshotData` replaces the snapshot's. */
function writeMessage(b: Buffer, o: number, m: Message, snapshotData?: Uint8Array): number {
  const snapshot = m.snapshot;
  b[o] = m.type;
  b[o + 1] = (m.reject ? FLAG_REJECT : 0) | (snapshot !== null ? FLAG_SNAPSHOT : 0);
  o += 2;
  o = writeU64(b, o, m.to);
  o = writeU64(b, o, m.from);
  o = writeU64(b, o, m.term);
  o = writeU64(b, o, m.logTerm);
  o = writeU64(b, o, m.index);
  o = writeU64(b, o, m.commit);
  o = writeU64(b, o, m.rejectHint);
  const entries = m.entries;
  o = writeU32(b, o, m.context.length);
  o = writeU32(b, o, entries.length);
  b.set(m.context, o);
  o += m.context.length;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    o = writeU64(b, o, e.term);
    o = writeU64(b, o, e.index);
    b[o] = e.type;
    o = writeBytes(b, o + 1, e.data);
  }
  if (snapshot !== null) {
    const { index, term, confState: cs } = snapshot.metadata;
    o = writeU64(b, o, index);
    o = writeU64(b, o, term);
    b[o] = cs.autoLeave ? 1 : 0;
    o = writeU32(b, o + 1, cs.voters.length);
    o = writeU32(b, o, cs.learners.length);
    o = writeU32(b, o, cs.votersOutgoing.length);
    o = writeU32(b, o, cs.learnersNext.length);
    o = writeIds(b, o, cs.voters);
    o = writeIds(b, o, cs.learners);
    o = writeIds(b, o, cs.votersOutgoing);
    o = writeIds(b, o, cs.learnersNext);
    o = writeBytes(b, o, snapshotData ?? snapshot.data);
  }
  return o;
}

/**
 * One MESSAGES frame (header and payload in one buffer) holding `messages[0..count)` in order.
 * Throws TRANSPORT_FRAME_SIZE past the frame limit (the caller's batching keeps under it).
 */
export function encodeMessagesFrame(messages: readonly Message[], count = messages.length): Buffer {
  assert(count > 0 && count <= BATCH_MESSAGES_MAX && count <= messages.length);
  let payloadBytes = MESSAGES_HEADER_BYTES;
  for (let i = 0; i < count; i++) payloadBytes += messageBytes(messages[i]!);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);
  writeFrameHeader(frame, 0, FrameType.Messages, payloadBytes);
  let o = writeU32(frame, FRAME_HEADER_BYTES, count);
  for (let i = 0; i < count; i++) o = writeMessage(frame, o, messages[i]!);
  assert(o === frame.length, 'messageBytes must be the encoded size');
  return frame;
}

const EMPTY = new Uint8Array(0);

/**
 * The SNAP_BEGIN frame of stream `snapshotId` announcing `totalBytes` of image: `m` (a MsgSnap)
 * without its snapshot data.
 */
export function encodeSnapBeginFrame(snapshotId: number, totalBytes: number, m: Message): Buffer {
  assert(m.snapshot !== null, 'SNAP_BEGIN carries a MsgSnap');
  const payloadBytes = SNAP_BEGIN_HEADER_BYTES + messageBytes(m, false);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);
  writeFrameHeader(frame, 0, FrameType.SnapBegin, payloadBytes);
  let o = writeU32(frame, FRAME_HEADER_BYTES, snapshotId);
  o = writeU64(frame, o, totalBytes);
  o = writeMessage(frame, o, m, EMPTY);
  assert(o === frame.length, 'messageBytes must be the encoded size');
  return frame;
}

// ---------------------------------------------------------------------------------------------
// Decoding: every length checked against what is left before it is used, every field against
// its range; any violation is TRANSPORT_FRAME_MALFORMED naming the field.

function malformed(what: string): TransportError {
  return new TransportError('TRANSPORT_FRAME_MALFORMED', `malformed payload: ${what}`);
}

/** A cursor over one payload; reads past its end are refused, never clamped. */
class PayloadReader {
  position = 0;

  constructor(readonly payload: Buffer) {}

  get left(): number {
    return this.payload.length - this.position;
  }

  /** Throws unless `bytes` more bytes are left. */
  need(bytes: number, what: string): void {
    if (bytes > this.payload.length - this.position) {
      throw malformed(`${what} needs ${bytes} bytes, ${this.left} left`);
    }
  }

  u8(): number {
    return this.payload[this.position++]!;
  }

  u32(): number {
    const b = this.payload;
    const o = this.position;
    this.position = o + U32_BYTES;
    return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)) + b[o + 3]! * 0x1000000;
  }

  u64(what: string): number {
    const low = this.u32();
    const high = this.u32();
    if (high > SAFE_HIGH_WORD_MAX) throw malformed(`${what} above 2^53`);
    return high * TWO_POW_32 + low;
  }

  /** A u32 length, then that many bytes as a view of the payload. */
  bytes(what: string): Uint8Array {
    this.need(U32_BYTES, what);
    const length = this.u32();
    if (length === 0) return EMPTY;
    this.need(length, what);
    const start = this.position;
    this.position = start + length;
    return this.payload.subarray(start, start + length);
  }

  ids(count: number, what: string): NodeId[] {
    const ids = new Array<NodeId>(count);
    for (let i = 0; i < count; i++) ids[i] = this.u64(what);
    return ids;
  }

  end(what: string): void {
    if (this.position !== this.payload.length) {
      throw malformed(`${this.left} bytes after the ${what}`);
    }
  }
}

function readEntry(r: PayloadReader): Entry {
  r.need(ENTRY_OVERHEAD_BYTES, 'entry');
  const term = r.u64('entry.term');
  const index = r.u64('entry.index');
  const type = r.u8();
  if (type !== EntryType.Normal && type !== EntryType.ConfChange) {
    throw malformed(`entry.type ${type}`);
  }
  return { term, index, type, data: r.bytes('entry.data') };
}

function readSnapshot(r: PayloadReader): Snapshot {
  r.need(SNAPSHOT_OVERHEAD_BYTES, 'snapshot');
  const index = r.u64('snapshot.index');
  const term = r.u64('snapshot.term');
  const autoLeave = r.u8();
  if (autoLeave > 1) throw malformed(`confState.autoLeave ${autoLeave}`);
  const voters = r.u32();
  const learners = r.u32();
  const votersOutgoing = r.u32();
  const learnersNext = r.u32();
  // Summed as doubles: four u32 counts cannot overflow, and the ids must all be in the payload
  // (before the data length) before any array is allocated.
  const ids = voters + learners + votersOutgoing + learnersNext;
  r.need(ids * NODE_ID_BYTES + U32_BYTES, 'confState ids');
  const confState: ConfState = {
    voters: r.ids(voters, 'confState.voters'),
    learners: r.ids(learners, 'confState.learners'),
    votersOutgoing: r.ids(votersOutgoing, 'confState.votersOutgoing'),
    learnersNext: r.ids(learnersNext, 'confState.learnersNext'),
    autoLeave: autoLeave === 1,
  };
  return { metadata: { index, term, confState }, data: r.bytes('snapshot.data') };
}

function readMessage(r: PayloadReader): Message {
  r.need(MESSAGE_OVERHEAD_BYTES, 'message');
  const type = r.u8();
  if (MESSAGE_TYPE_NAMES[type as MessageType] === undefined) {
    throw malformed(`message.type ${type}`);
  }
  const flags = r.u8();
  if ((flags & ~FLAGS_KNOWN) !== 0) throw malformed(`message.flags ${flags}`);
  const to = r.u64('message.to');
  const from = r.u64('message.from');
  const term = r.u64('message.term');
  const logTerm = r.u64('message.logTerm');
  const index = r.u64('message.index');
  const commit = r.u64('message.commit');
  const rejectHint = r.u64('message.rejectHint');
  const contextBytes = r.u32();
  const entryCount = r.u32();
  r.need(contextBytes, 'message.context');
  const context =
    contextBytes === 0 ? EMPTY : r.payload.subarray(r.position, r.position + contextBytes);
  r.position += contextBytes;
  // Every entry takes at least its fixed part: a count the payload cannot hold allocates nothing.
  r.need(entryCount * ENTRY_OVERHEAD_BYTES, 'message.entries');
  const entries = new Array<Entry>(entryCount);
  for (let i = 0; i < entryCount; i++) entries[i] = readEntry(r);
  const snapshot = (flags & FLAG_SNAPSHOT) !== 0 ? readSnapshot(r) : null;
  // The field order of raft's newMessage: one hidden class for every message.
  return {
    type: type as MessageType,
    to,
    from,
    term,
    logTerm,
    index,
    entries,
    commit,
    snapshot,
    reject: (flags & FLAG_REJECT) !== 0,
    rejectHint,
    context,
  };
}

/** The messages of a MESSAGES payload, in send order. */
export function decodeMessages(payload: Buffer): Message[] {
  const r = new PayloadReader(payload);
  r.need(MESSAGES_HEADER_BYTES, 'message count');
  const count = r.u32();
  if (count === 0 || count > BATCH_MESSAGES_MAX) {
    throw malformed(`message count ${count} outside [1, ${BATCH_MESSAGES_MAX}]`);
  }
  r.need(count * MESSAGE_OVERHEAD_BYTES, 'messages');
  const messages = new Array<Message>(count);
  for (let i = 0; i < count; i++) messages[i] = readMessage(r);
  r.end('messages');
  return messages;
}

export interface SnapBegin {
  readonly snapshotId: number;
  readonly totalBytes: number;
  /** A MsgSnap whose snapshot data is empty (see withSnapshotData). */
  readonly message: Message;
}

export function decodeSnapBegin(payload: Buffer): SnapBegin {
  const r = new PayloadReader(payload);
  r.need(SNAP_BEGIN_HEADER_BYTES, 'snapshot begin');
  const snapshotId = r.u32();
  const totalBytes = r.u64('snapshot.bytes');
  const message = readMessage(r);
  r.end('snapshot begin');
  if (message.snapshot === null || message.snapshot.data.length !== 0) {
    throw malformed('snapshot begin without an empty snapshot header');
  }
  return { snapshotId, totalBytes, message };
}

/** Replaces a decoded MsgSnap's (empty) snapshot data with the reassembled image. */
export function withSnapshotData(m: Message, data: Uint8Array): Message {
  if (m.snapshot === null) throw malformed('snapshot header without snapshot');
  return { ...m, snapshot: { metadata: m.snapshot.metadata, data } };
}
