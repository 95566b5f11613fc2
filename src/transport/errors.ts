import { TandemError } from '../util/errors.js';

/**
 * Stable codes of transport failures. Most of them close one connection and are logged; none of
 * them escapes `send()` (the Network contract) and none stops the listener.
 */
export type TransportErrorCode =
  /** A frame's length field is above the limit (or below the header size). */
  | 'TRANSPORT_FRAME_SIZE'
  /** A frame header carries an unknown wire format version. */
  | 'TRANSPORT_FRAME_VERSION'
  /** A frame type is unknown or not allowed at this point of the connection. */
  | 'TRANSPORT_FRAME_TYPE'
  /** A frame payload does not decode to what its type promises. */
  | 'TRANSPORT_FRAME_MALFORMED'
  /** The handshake was refused: another cluster, a wrong node id, or a bad certificate. */
  | 'TRANSPORT_HANDSHAKE_REFUSED'
  /** No handshake within the time limit. */
  | 'TRANSPORT_HANDSHAKE_TIMEOUT'
  /** A snapshot stream broke its contract (size over the limit, out-of-order chunk, stall). */
  | 'TRANSPORT_SNAPSHOT'
  /** A peer address or an option is invalid (a configuration error, thrown synchronously). */
  | 'TRANSPORT_CONFIG'
  /** The transport is closed. */
  | 'TRANSPORT_CLOSED';

export class TransportError extends TandemError<TransportErrorCode> {}
