/**
 * Payload encoding: msgpackr over positional arrays (no field names on the wire, no shared
 * record structures that would tie a decoder to one connection's history), and a strict decoder
 * that validates every field, because the bytes come from the network.
 *
 *   message  = [type, to, from, term, logTerm, index, commit, reject, rejectHint, context,
 *               entries, snapshot]
 *   entry    = [term, index, type, data]
 *   snapshot = null | [index, term, confState, data]
 *   confState= [voters, learners, votersOutgoing, learnersNext, autoLeave]
 *
 * Decoded byte fields are views into the frame payload (msgpackr's subarray); the frame decoder
 * guarantees that payload is never reused, so they stay valid (storage treats them as immutable).
 */
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';
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
import { TransportError } from './errors.js';
import { type FrameType, writeFrameHeader } from './frame.js';
import {
  ENTRY_OVERHEAD_BYTES,
  FRAME_HEADER_BYTES,
  MESSAGE_OVERHEAD_BYTES,
  NODE_ID_BYTES_MAX,
  SNAPSHOT_OVERHEAD_BYTES,
} from './limits.js';

// One packer per process. pack() writes sequentially into a shared arena and hands out views
// that later packs never overwrite, so a frame can go to the socket without a copy; the reserved
// start space is where the frame header goes.
const PACK_WITH_HEADER = RESERVE_START_SPACE | FRAME_HEADER_BYTES;
const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: 'number' });

/** Encodes `value` as one frame: header and payload in one buffer, without copying. */
export function packFrame(type: FrameType, value: unknown): Buffer {
  const frame = packr.pack(value, PACK_WITH_HEADER);
  writeFrameHeader(frame, 0, type, frame.length - FRAME_HEADER_BYTES);
  return frame;
}

export function unpackPayload(payload: Buffer): unknown {
  try {
    return unpackr.unpack(payload);
  } catch (cause) {
    throw new TransportError('TRANSPORT_FRAME_MALFORMED', 'payload is not msgpack', { cause });
  }
}

/**
 * An upper bound of a message's encoded size (never an undercount, see limits.ts): what the
 * byte limits account, without encoding twice. `withSnapshotData: false` for a MsgSnap whose
 * data is streamed in chunks.
 */
export function messageBytes(m: Message, withSnapshotData = true): number {
  let bytes = MESSAGE_OVERHEAD_BYTES + m.context.length;
  for (let i = 0; i < m.entries.length; i++) {
    bytes += ENTRY_OVERHEAD_BYTES + m.entries[i]!.data.length;
  }
  const snapshot = m.snapshot;
  if (snapshot !== null) {
    const cs = snapshot.metadata.confState;
    const ids =
      cs.voters.length + cs.learners.length + cs.votersOutgoing.length + cs.learnersNext.length;
    bytes += SNAPSHOT_OVERHEAD_BYTES + ids * NODE_ID_BYTES_MAX;
    if (withSnapshotData) bytes += snapshot.data.length;
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Encoding

const EMPTY = new Uint8Array(0);

/** The positional form of a message; `snapshotData` replaces the snapshot's data when given. */
export function messageTuple(m: Message, snapshotData?: Uint8Array): unknown[] {
  const entries = new Array<unknown>(m.entries.length);
  for (let i = 0; i < m.entries.length; i++) {
    const e = m.entries[i]!;
    entries[i] = [e.term, e.index, e.type, e.data];
  }
  let snapshot: unknown = null;
  if (m.snapshot !== null) {
    const { metadata } = m.snapshot;
    const cs = metadata.confState;
    snapshot = [
      metadata.index,
      metadata.term,
      [cs.voters, cs.learners, cs.votersOutgoing, cs.learnersNext, cs.autoLeave],
      snapshotData ?? m.snapshot.data,
    ];
  }
  return [
    m.type,
    m.to,
    m.from,
    m.term,
    m.logTerm,
    m.index,
    m.commit,
    m.reject,
    m.rejectHint,
    m.context,
    entries,
    snapshot,
  ];
}

/** A MsgSnap's tuple without its (streamed separately) data. */
export function snapshotHeaderTuple(m: Message): unknown[] {
  return messageTuple(m, EMPTY);
}

// ---------------------------------------------------------------------------------------------
// Decoding: every field checked; any violation is TRANSPORT_FRAME_MALFORMED.

function malformed(what: string): TransportError {
  return new TransportError('TRANSPORT_FRAME_MALFORMED', `malformed payload: ${what}`);
}

export function expectArray(v: unknown, length: number, what: string): unknown[] {
  if (!Array.isArray(v) || (length >= 0 && v.length !== length)) throw malformed(what);
  return v;
}

export function expectUint(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw malformed(what);
  return v;
}

export function expectBool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw malformed(what);
  return v;
}

export function expectString(v: unknown, what: string): string {
  if (typeof v !== 'string') throw malformed(what);
  return v;
}

export function expectBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw malformed(what);
  return v;
}

function expectIds(v: unknown, what: string): NodeId[] {
  const ids = expectArray(v, -1, what);
  for (let i = 0; i < ids.length; i++) expectUint(ids[i], what);
  return ids as NodeId[];
}

function decodeEntry(v: unknown): Entry {
  const t = expectArray(v, 4, 'entry');
  const type = expectUint(t[2], 'entry.type');
  if (type !== EntryType.Normal && type !== EntryType.ConfChange) throw malformed('entry.type');
  return {
    term: expectUint(t[0], 'entry.term'),
    index: expectUint(t[1], 'entry.index'),
    type,
    data: expectBytes(t[3], 'entry.data'),
  };
}

function decodeSnapshot(v: unknown): Snapshot | null {
  if (v === null) return null;
  const t = expectArray(v, 4, 'snapshot');
  const c = expectArray(t[2], 5, 'confState');
  const confState: ConfState = {
    voters: expectIds(c[0], 'confState.voters'),
    learners: expectIds(c[1], 'confState.learners'),
    votersOutgoing: expectIds(c[2], 'confState.votersOutgoing'),
    learnersNext: expectIds(c[3], 'confState.learnersNext'),
    autoLeave: expectBool(c[4], 'confState.autoLeave'),
  };
  return {
    metadata: {
      index: expectUint(t[0], 'snapshot.index'),
      term: expectUint(t[1], 'snapshot.term'),
      confState,
    },
    data: expectBytes(t[3], 'snapshot.data'),
  };
}

export function decodeMessage(v: unknown): Message {
  const t = expectArray(v, 12, 'message');
  const type = expectUint(t[0], 'message.type');
  if (MESSAGE_TYPE_NAMES[type as MessageType] === undefined) throw malformed('message.type');
  const rawEntries = expectArray(t[10], -1, 'message.entries');
  const entries = new Array<Entry>(rawEntries.length);
  for (let i = 0; i < rawEntries.length; i++) entries[i] = decodeEntry(rawEntries[i]);
  return {
    type: type as MessageType,
    to: expectUint(t[1], 'message.to'),
    from: expectUint(t[2], 'message.from'),
    term: expectUint(t[3], 'message.term'),
    logTerm: expectUint(t[4], 'message.logTerm'),
    index: expectUint(t[5], 'message.index'),
    commit: expectUint(t[6], 'message.commit'),
    reject: expectBool(t[7], 'message.reject'),
    rejectHint: expectUint(t[8], 'message.rejectHint'),
    context: expectBytes(t[9], 'message.context'),
    entries,
    snapshot: decodeSnapshot(t[11]),
  };
}

/** Replaces a decoded MsgSnap's (empty) snapshot data with the reassembled image. */
export function withSnapshotData(m: Message, data: Uint8Array): Message {
  if (m.snapshot === null) throw malformed('snapshot header without snapshot');
  return { ...m, snapshot: { metadata: m.snapshot.metadata, data } };
}
