/**
 * Payload encoding of the peer protocol's small, infrequent frames (handshake, REFUSE, snapshot
 * acknowledgements and status, WAL fetches, PING): msgpackr over positional arrays (no field
 * names on the wire, no shared record structures that would tie a decoder to one connection's
 * history), and strict field checks, because the bytes come from the network. Raft messages, on
 * every put's path, have their own binary layout (message-codec.ts).
 */
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';
import { TransportError } from './errors.js';
import { type FrameType, writeFrameHeader } from './frame.js';
import { FRAME_HEADER_BYTES } from './limits.js';

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
