/**
 * The envelope around every command the member proposes: who proposed it and the proposer's
 * sequence number, so the proposer can match the applied entry to the waiting client. Other
 * members ignore the header and apply the command.
 *
 *   byte 0      version (1)
 *   bytes 1-8   proposer member id, float64 big-endian (ids are safe integers)
 *   bytes 9-16  proposer sequence number, float64 big-endian
 *   bytes 17-   the command, opaque to the member
 */
import { assert, assertUint } from '../util/assert.js';

export const ENVELOPE_VERSION = 1;
export const ENVELOPE_HEADER_BYTES = 17;

export interface Envelope {
  readonly proposer: number;
  readonly seq: number;
  /** A view into the entry's data; never mutated. */
  readonly command: Uint8Array;
}

export function encodeEnvelope(proposer: number, seq: number, command: Uint8Array): Uint8Array {
  assertUint(proposer, 'proposer');
  assertUint(seq, 'sequence');
  const bytes = new Uint8Array(ENVELOPE_HEADER_BYTES + command.length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, ENVELOPE_VERSION);
  view.setFloat64(1, proposer);
  view.setFloat64(9, seq);
  bytes.set(command, ENVELOPE_HEADER_BYTES);
  return bytes;
}

/** Decodes an envelope; null when the bytes are not one (a corrupt or foreign entry). */
export function decodeEnvelope(bytes: Uint8Array): Envelope | null {
  if (bytes.length < ENVELOPE_HEADER_BYTES || bytes[0] !== ENVELOPE_VERSION) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const proposer = view.getFloat64(1);
  const seq = view.getFloat64(9);
  if (!Number.isSafeInteger(proposer) || !Number.isSafeInteger(seq)) return null;
  const command = bytes.subarray(ENVELOPE_HEADER_BYTES);
  assert(command.length === bytes.length - ENVELOPE_HEADER_BYTES);
  return { proposer, seq, command };
}
