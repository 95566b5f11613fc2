/**
 * Framing: every frame on a peer connection is
 *
 *    0        1        2        3        4         5         6
 *   +--------+--------+--------+--------+---------+---------+=====================+
 *   |      length (u32, big-endian)     | version |  type   | payload ...         |
 *   +--------+--------+--------+--------+---------+---------+=====================+
 *
 * where `length` counts the bytes after the length field (version + type + payload), so it is at
 * least 2 and at most FRAME_BYTES_MAX. MESSAGES and SNAP_BEGIN payloads are Raft messages in a
 * binary layout (message-codec.ts); SNAP_CHUNK's is a 10-byte binary header followed by raw
 * bytes, so that snapshot data is written from the caller's buffer without a copy; the other
 * payloads are msgpackr-encoded positional arrays (codec.ts).
 *
 * A connection is one-directional for Raft traffic: the dialing member authenticates (HELLO,
 * CHALLENGE, AUTH, HELLO_OK: handshake.ts) and then sends MESSAGES, snapshot frames and, when
 * idle, PING; the accepting member answers only the handshake (or REFUSE), the snapshot
 * acknowledgements that drive the sender's flow control, and ROUND_TRIP_PONG to the dialer's
 * ROUND_TRIP_PING (round-trip time). Outside Raft, a member
 * recovering its WAL dials a peer for FETCH_REQUEST / FETCH_RESPONSE pairs (fetch-protocol.ts).
 */

import { TransportError } from './errors.js';
import {
  FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FRAME_LENGTH_BYTES,
  FRAME_VERSION,
} from './limits.js';

export const FrameType = {
  /** Dialer → acceptor, first frame: [clusterId, fromId, toId, nonce] (handshake.ts). */
  Hello: 1,
  /** Acceptor → dialer, once the dialer's AUTH is verified: [clusterId, acceptorId]. */
  HelloOk: 2,
  /** Acceptor → dialer, then close: [reason]. */
  Refuse: 3,
  /** Dialer → acceptor: a count, then that many binary messages in send order (message-codec.ts). */
  Messages: 4,
  /** Dialer → acceptor: snapshotId, totalBytes, the MsgSnap with empty snapshot data (binary). */
  SnapBegin: 5,
  /** Dialer → acceptor: u32 snapshotId, u48 offset, then the chunk's bytes. */
  SnapChunk: 6,
  /** Acceptor → dialer: [snapshotId, bytesReceived]; opens the sender's window. */
  SnapAck: 7,
  /** Acceptor → dialer: [snapshotId, ok, reason]; the outcome reported to Raft. */
  SnapStatus: 8,
  /** Dialer → acceptor: [firstIndex, lastIndex, maxBytes], committed entries wanted. */
  FetchRequest: 9,
  /** Acceptor → dialer: [status, commitIndex, firstIndex, entries] (see fetch-protocol.ts). */
  FetchResponse: 10,
  /** Acceptor → dialer, answering HELLO: [clusterId, acceptorId, nonce, proof] (handshake.ts). */
  Challenge: 11,
  /** Dialer → acceptor, answering CHALLENGE: [proof]. */
  Auth: 12,
  /** Dialer → acceptor on an idle authenticated link: [] (keeps the acceptor's idle timer off). */
  Ping: 13,
  /**
   * Dialer → acceptor: a u32 sequence number (binary), to time the round trip.
   */
  RoundTripPing: 14,
  /** Acceptor → dialer: the ROUND_TRIP_PING's payload, echoed on the same connection. */
  RoundTripPong: 15,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const FRAME_TYPE_MAX = FrameType.RoundTripPong;

/** ROUND_TRIP_PING and ROUND_TRIP_PONG payload: a u32 sequence number. */
export const PING_PAYLOAD_BYTES = 4;

/** SNAP_CHUNK payload header: u32 snapshot id + u48 byte offset. */
export const SNAP_CHUNK_HEADER_BYTES = 10;

/** Writes a frame header for a payload of `payloadBytes` at `target[offset..offset+6)`. */
export function writeFrameHeader(
  target: Buffer,
  offset: number,
  type: FrameType,
  payloadBytes: number,
): void {
  const length = payloadBytes + 2;
  if (length > FRAME_BYTES_MAX) {
    throw new TransportError('TRANSPORT_FRAME_SIZE', `frame of ${length} bytes over the limit`);
  }
  target.writeUInt32BE(length, offset);
  target[offset + FRAME_LENGTH_BYTES] = FRAME_VERSION;
  target[offset + FRAME_LENGTH_BYTES + 1] = type;
}

/** A ROUND_TRIP_PING or ROUND_TRIP_PONG frame carrying the sequence number `seq`. */
export function pingFrame(
  type: typeof FrameType.RoundTripPing | typeof FrameType.RoundTripPong,
  seq: number,
): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + PING_PAYLOAD_BYTES);
  writeFrameHeader(frame, 0, type, PING_PAYLOAD_BYTES);
  frame.writeUInt32BE(seq >>> 0, FRAME_HEADER_BYTES);
  return frame;
}

/** One buffer holding header and payload (one copy of the payload: small frames only). */
export function encodeFrame(type: FrameType, payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(frame, 0, type, payload.length);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

export interface FrameSink {
  /**
   * One complete frame. `payload` is owned by the receiver from now on: the decoder never
   * writes into it again, so decoded messages may keep views into it.
   */
  onFrame(type: FrameType, payload: Buffer): void;
}

/**
 * Splits a byte stream into frames. A frame contained in one socket chunk is handed out as a
 * view of that chunk (no copy); a frame spanning chunks is assembled once into a buffer of its
 * exact size, allocated when its header arrives (the limit bounds it). Only the 6-byte header is
 * kept in a reused scratch buffer.
 *
 * Throws a TransportError on an oversized frame, an unknown version or type: the caller closes
 * the connection. After `stop()` the remaining bytes are ignored.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFilled = 0;
  private frame: Buffer | null = null;
  private frameFilled = 0;
  private frameType: FrameType = FrameType.Hello;
  private stopped = false;

  constructor(
    private readonly sink: FrameSink,
    /** Raised by the owner after the handshake; lowered before it (unauthenticated peer). */
    public frameBytesMax: number,
  ) {}

  stop(): void {
    this.stopped = true;
    this.frame = null;
  }

  push(chunk: Buffer): void {
    let position = 0;
    while (position < chunk.length && !this.stopped) {
      if (this.frame !== null) {
        position = this.fillFrame(chunk, position);
      } else if (this.headerFilled === 0 && chunk.length - position >= FRAME_HEADER_BYTES) {
        // Fast path: the header is contiguous in this chunk.
        const payloadBytes = this.parseHeader(chunk, position);
        position += FRAME_HEADER_BYTES;
        if (chunk.length - position >= payloadBytes) {
          const payload = chunk.subarray(position, position + payloadBytes);
          position += payloadBytes;
          this.sink.onFrame(this.frameType, payload);
        } else {
          this.startFrame(payloadBytes);
        }
      } else {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFilled, chunk.length - position);
        chunk.copy(this.header, this.headerFilled, position, position + take);
        this.headerFilled += take;
        position += take;
        if (this.headerFilled === FRAME_HEADER_BYTES) {
          this.headerFilled = 0;
          this.startFrame(this.parseHeader(this.header, 0));
        }
      }
    }
  }

  private startFrame(payloadBytes: number): void {
    if (payloadBytes === 0) {
      this.sink.onFrame(this.frameType, Buffer.alloc(0));
      return;
    }
    this.frame = Buffer.allocUnsafe(payloadBytes);
    this.frameFilled = 0;
  }

  private fillFrame(chunk: Buffer, position: number): number {
    const frame = this.frame!;
    const take = Math.min(frame.length - this.frameFilled, chunk.length - position);
    chunk.copy(frame, this.frameFilled, position, position + take);
    this.frameFilled += take;
    if (this.frameFilled === frame.length) {
      this.frame = null;
      this.sink.onFrame(this.frameType, frame);
    }
    return position + take;
  }

  /** Validates a header and returns its payload size; sets `frameType`. */
  private parseHeader(source: Buffer, offset: number): number {
    const length = source.readUInt32BE(offset);
    if (length < 2 || length > this.frameBytesMax) {
      throw new TransportError(
        'TRANSPORT_FRAME_SIZE',
        `frame length ${length} outside [2, ${this.frameBytesMax}]`,
      );
    }
    const version = source[offset + FRAME_LENGTH_BYTES]!;
    if (version !== FRAME_VERSION) {
      throw new TransportError(
        'TRANSPORT_FRAME_VERSION',
        `frame version ${version}, expected ${FRAME_VERSION}: the peer runs a tandem release with another wire format`,
      );
    }
    const type = source[offset + FRAME_LENGTH_BYTES + 1]!;
    if (type < FrameType.Hello || type > FRAME_TYPE_MAX) {
      throw new TransportError('TRANSPORT_FRAME_TYPE', `unknown frame type ${type}`);
    }
    this.frameType = type as FrameType;
    return length - 2;
  }
}
