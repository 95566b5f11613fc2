/**
 * gRPC's Length-Prefixed-Message: a compressed flag (1 byte), a big-endian length (4 bytes),
 * the message. DATA frame boundaries have no relation to message boundaries, so the decoder
 * takes chunks cut anywhere:
 *
 *   chunk:   |flag len len len len  m m m m m m|flag len len| len len m m m|
 *   state:    prefix (5 bytes)      body         prefix        ...  body
 *
 * A message whole inside one chunk is handed out as a view of it; one split across chunks is
 * gathered into a buffer of exactly its length, allocated once its length is known (and
 * checked against the limit before anything is allocated).
 */
import { assert } from '../../util/assert.js';
import { type CallStatus, Status } from './status.js';

export const MESSAGE_PREFIX_BYTES = 5;

/** A message the decoder refuses; the call ends with `status`. */
export class FramingError extends Error {
  constructor(readonly status: CallStatus) {
    super(status.details);
    this.name = 'FramingError';
  }
}

/** grpc-js's wording, which clients of tandem have always seen for an oversized request. */
export function tooLargeStatus(bytes: number, bytesMax: number): CallStatus {
  return {
    code: Status.RESOURCE_EXHAUSTED,
    details: `Received message larger than max (${bytes} vs ${bytesMax})`,
  };
}

export class MessageDecoder {
  /** A prefix split across chunks is gathered here (allocated the first time one is). */
  private prefix: Buffer | null = null;
  /** Bytes of the prefix gathered so far; MESSAGE_PREFIX_BYTES once reading a body. */
  private prefixBytes = 0;
  /** The body being gathered across chunks, or null while reading a prefix. */
  private body: Buffer | null = null;
  private bodyBytes = 0;

  constructor(
    private readonly messageBytesMax: number,
    private readonly onMessage: (message: Buffer) => void,
  ) {
    assert(Number.isSafeInteger(messageBytesMax) && messageBytesMax >= 0);
  }

  /** True between messages: an end of stream here loses nothing. */
  get idle(): boolean {
    return this.prefixBytes === 0;
  }

  /** Feeds one chunk; calls onMessage for every message it completes. Throws FramingError. */
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.prefixBytes === 0 && chunk.length - offset >= MESSAGE_PREFIX_BYTES) {
        // Fast path: a whole prefix in this chunk, and perhaps the whole message.
        const length = this.checkPrefix(chunk, offset);
        offset += MESSAGE_PREFIX_BYTES;
        if (chunk.length - offset >= length) {
          this.onMessage(chunk.subarray(offset, offset + length));
          offset += length;
          continue;
        }
        this.startBody(length);
      } else if (this.prefixBytes < MESSAGE_PREFIX_BYTES) {
        this.prefix ??= Buffer.alloc(MESSAGE_PREFIX_BYTES);
        const take = Math.min(MESSAGE_PREFIX_BYTES - this.prefixBytes, chunk.length - offset);
        chunk.copy(this.prefix, this.prefixBytes, offset, offset + take);
        this.prefixBytes += take;
        offset += take;
        if (this.prefixBytes < MESSAGE_PREFIX_BYTES) return;
        const length = this.checkPrefix(this.prefix, 0);
        if (length === 0) {
          this.prefixBytes = 0;
          this.onMessage(Buffer.alloc(0));
          continue;
        }
        this.startBody(length);
      }
      offset = this.gather(chunk, offset);
    }
  }

  /** The message length of a prefix at `at`; refuses compressed and oversized messages. */
  private checkPrefix(bytes: Buffer, at: number): number {
    const flag = bytes[at]!;
    const length = bytes.readUInt32BE(at + 1);
    if (flag === 1) {
      throw new FramingError({
        code: Status.UNIMPLEMENTED,
        details: 'Received a compressed message; this server accepts only identity encoding',
      });
    }
    if (flag !== 0) {
      throw new FramingError({
        code: Status.INTERNAL,
        details: `Received a message with an invalid compressed flag ${flag}`,
      });
    }
    if (length > this.messageBytesMax) {
      throw new FramingError(tooLargeStatus(length, this.messageBytesMax));
    }
    return length;
  }

  private startBody(length: number): void {
    this.prefixBytes = MESSAGE_PREFIX_BYTES;
    this.body = Buffer.allocUnsafe(length);
    this.bodyBytes = 0;
  }

  /** Copies what it can of the split body; hands it out once complete. */
  private gather(chunk: Buffer, offset: number): number {
    const body = this.body;
    if (body === null) return offset;
    const take = Math.min(body.length - this.bodyBytes, chunk.length - offset);
    chunk.copy(body, this.bodyBytes, offset, offset + take);
    this.bodyBytes += take;
    if (this.bodyBytes === body.length) {
      this.body = null;
      this.prefixBytes = 0;
      this.onMessage(body);
    }
    return offset + take;
  }
}

/** A message with its prefix, in one buffer (one DATA write). */
export function frameMessage(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(MESSAGE_PREFIX_BYTES + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, MESSAGE_PREFIX_BYTES);
  return framed;
}
