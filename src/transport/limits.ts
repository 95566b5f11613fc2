/**
 * Every limit of the peer transport, named, with units, and their relations asserted at load
 * (TigerBeetle style: a limit on everything, and the limits must agree with each other).
 * Options may lower most of them per transport (tests do), never raise them past these maxima.
 */
import { assert } from '../util/assert.js';
import { TransportError } from './errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Wire format version carried in every frame header; a mismatch closes the connection. */
export const FRAME_VERSION = 3; // 2: the authenticated handshake; 3: binary raft messages
/** 4-byte big-endian length, then version and type bytes. */
export const FRAME_LENGTH_BYTES = 4;
export const FRAME_HEADER_BYTES = FRAME_LENGTH_BYTES + 2;

/** The largest frame accepted or produced (length field value, i.e. header bytes after it). */
export const FRAME_BYTES_MAX = 16 * MiB;
/** Before the handshake a peer is unauthenticated: it may not make us allocate more than this. */
export const HANDSHAKE_FRAME_BYTES_MAX = 4 * KiB;

/** A cluster secret shorter than this is refused: `tandem` or a member name is not a secret. */
export const CLUSTER_SECRET_BYTES_MIN = 16;
export const CLUSTER_SECRET_BYTES_MAX = 1024;

/** A MESSAGES frame is closed once its estimated size passes this; keeps heartbeats unstuck. */
export const BATCH_BYTES_TARGET = 1 * MiB;
export const BATCH_MESSAGES_MAX = 1024;

/** Per-peer outbound queue (messages not yet written to the socket). Policy: drop oldest. */
export const QUEUE_MESSAGES_MAX = 4096;
export const QUEUE_BYTES_MAX = 64 * MiB;

/**
 * Bytes we let Node buffer in a socket before we stop moving messages out of our own queue: past
 * this the peer is slow and messages should wait (and be dropped) in the bounded queue instead.
 */
export const SOCKET_BUFFERED_BYTES_MAX = 4 * MiB;

/** Snapshot data is streamed in chunks of this size, each its own frame. */
export const SNAPSHOT_CHUNK_BYTES = 1 * MiB;
/** Unacknowledged snapshot bytes in flight per peer: flow control by the receiver's acks. */
export const SNAPSHOT_WINDOW_BYTES = 4 * MiB;
/** The largest snapshot a receiver accepts (it allocates the whole image once, up front). */
export const SNAPSHOT_BYTES_MAX = 2 * 1024 * MiB;
/** A snapshot stream without progress (no ack, no chunk) for this long is abandoned. */
export const SNAPSHOT_STALL_TIMEOUT_MS = 30_000;

/** Inbound connections accepted at once; each may hold one frame and one snapshot in memory. */
export const INBOUND_CONNECTIONS_MAX = 256;
/**
 * Inbound connections from one source address (authenticated or not). Local clusters put every
 * member on 127.0.0.1: each member holds one link to us plus, briefly, a probe or a WAL fetch.
 */
export const INBOUND_PER_SOURCE_MAX = 64;
/**
 * Connections not yet authenticated, at once: in all and per source address. A stranger can hold
 * these (for at most the handshake timeout each), never the slots authenticated peers use.
 */
export const HANDSHAKES_MAX = 64;
export const HANDSHAKES_PER_SOURCE_MAX = 8;
/** An inbound connection must complete its handshake within this time. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/**
 * An authenticated inbound connection that carries no byte for this long is closed (a dead or
 * stuck dialer). Dialers send a PING after `keepaliveIntervalMs` without writing, so a quiet
 * link (follower to follower carries no Raft traffic) is never cut while its dialer lives.
 */
export const IDLE_TIMEOUT_MS = 60_000;
export const KEEPALIVE_INTERVAL_MS = 10_000;
/**
 * Snapshot bytes being received at once over all inbound connections (each stream allocates its
 * whole image at SNAP_BEGIN): a stream past the budget is refused and Raft retries it later.
 */
export const SNAPSHOT_RECEIVE_BUDGET_BYTES = SNAPSHOT_BYTES_MAX;
/** Connect plus handshake on an outbound link must complete within this time. */
export const DIAL_TIMEOUT_MS = 3_000;

/**
 * Reconnect backoff: doubles per failed round over all addresses, with jitter, capped. The cap
 * stays at the default election timeout: a member that restarts must hear from the leader before
 * it times out and disrupts the cluster (a 5 s cap once left a leader deaf to a restarted peer
 * for 2.8 s in a chaos run, seed 102).
 */
export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 1_000;
/** While on a fallback address, how often to probe the more preferred ones. */
export const PROBE_INTERVAL_MS = 2_000;
/**
 * How often a connected link sends a PING (answered PONG on the same connection) to time the
 * round trip (etcd_network_peer_round_trip_time_seconds); one is outstanding at a time.
 */
export const PING_INTERVAL_MS = 1_000;
/** Peers whose bytes sent and received are counted (the registry's members, with room). */
export const PEER_TRAFFIC_MAX = 256;

/** Addresses per peer (redundant links); a peer's link state array is bounded by it. */
export const PEER_ADDRESSES_MAX = 8;
/**
 * The fixed parts of a Raft message's binary encoding (message-codec.ts, which asserts them
 * field by field): a message's header, an entry's, a snapshot's (without its ids), one id. With
 * them `messageBytes` is a message's encoded size exactly, so the byte limits never undercount.
 */
export const MESSAGE_OVERHEAD_BYTES = 66;
export const ENTRY_OVERHEAD_BYTES = 21;
export const SNAPSHOT_OVERHEAD_BYTES = 37;
export const NODE_ID_BYTES = 8;
/** Room for the frame header and a batch's (or a snapshot stream's) header beside its messages. */
export const FRAME_OVERHEAD_BYTES = 64;
/** Fault injection (test mode): messages held back per delayed link. */
export const FAULT_DELAY_MESSAGES_MAX = QUEUE_MESSAGES_MAX;
/** Reachability reports waiting for the next event-loop turn (they are never emitted inside send). */
export const REPORTS_PENDING_MAX = 1024;

/** The limits one transport runs with; options may lower the defaults (tests use small ones). */
export interface TransportLimits {
  readonly frameBytesMax: number;
  readonly queueMessagesMax: number;
  readonly queueBytesMax: number;
  readonly socketBufferedBytesMax: number;
  readonly snapshotChunkBytes: number;
  readonly snapshotWindowBytes: number;
  readonly snapshotBytesMax: number;
  readonly snapshotStallTimeoutMs: number;
  readonly inboundConnectionsMax: number;
  readonly inboundPerSourceMax: number;
  readonly handshakesMax: number;
  readonly handshakesPerSourceMax: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly snapshotReceiveBudgetBytes: number;
  readonly dialTimeoutMs: number;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  readonly probeIntervalMs: number;
  readonly pingIntervalMs: number;
}

export const DEFAULT_LIMITS: TransportLimits = Object.freeze({
  frameBytesMax: FRAME_BYTES_MAX,
  queueMessagesMax: QUEUE_MESSAGES_MAX,
  queueBytesMax: QUEUE_BYTES_MAX,
  socketBufferedBytesMax: SOCKET_BUFFERED_BYTES_MAX,
  snapshotChunkBytes: SNAPSHOT_CHUNK_BYTES,
  snapshotWindowBytes: SNAPSHOT_WINDOW_BYTES,
  snapshotBytesMax: SNAPSHOT_BYTES_MAX,
  snapshotStallTimeoutMs: SNAPSHOT_STALL_TIMEOUT_MS,
  inboundConnectionsMax: INBOUND_CONNECTIONS_MAX,
  inboundPerSourceMax: INBOUND_PER_SOURCE_MAX,
  handshakesMax: HANDSHAKES_MAX,
  handshakesPerSourceMax: HANDSHAKES_PER_SOURCE_MAX,
  handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  keepaliveIntervalMs: KEEPALIVE_INTERVAL_MS,
  snapshotReceiveBudgetBytes: SNAPSHOT_RECEIVE_BUDGET_BYTES,
  dialTimeoutMs: DIAL_TIMEOUT_MS,
  backoffMinMs: BACKOFF_MIN_MS,
  backoffMaxMs: BACKOFF_MAX_MS,
  probeIntervalMs: PROBE_INTERVAL_MS,
  pingIntervalMs: PING_INTERVAL_MS,
});

/**
 * Merges overrides into the defaults and checks the same relations as the constants, plus that
 * no byte or count limit is raised above its default (the defaults are the maxima).
 */
export function resolveLimits(overrides: Partial<TransportLimits> | undefined): TransportLimits {
  const limits: TransportLimits = { ...DEFAULT_LIMITS, ...overrides };
  const fail = (what: string): never => {
    throw new TransportError('TRANSPORT_CONFIG', `transport limits: ${what}`);
  };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) fail(`${key} must be a positive integer`);
  }
  const countOrBytes: (keyof TransportLimits)[] = [
    'frameBytesMax',
    'queueMessagesMax',
    'queueBytesMax',
    'socketBufferedBytesMax',
    'snapshotChunkBytes',
    'snapshotWindowBytes',
    'snapshotBytesMax',
    'inboundConnectionsMax',
    'inboundPerSourceMax',
    'handshakesMax',
    'handshakesPerSourceMax',
    'snapshotReceiveBudgetBytes',
  ];
  for (const key of countOrBytes) {
    if (limits[key] > DEFAULT_LIMITS[key]) fail(`${key} above its maximum ${DEFAULT_LIMITS[key]}`);
  }
  if (limits.frameBytesMax <= HANDSHAKE_FRAME_BYTES_MAX) fail('frameBytesMax too small');
  if (limits.snapshotChunkBytes + 64 > limits.frameBytesMax) fail('snapshot chunk over a frame');
  if (limits.snapshotWindowBytes < limits.snapshotChunkBytes) fail('window below one chunk');
  if (limits.queueBytesMax < limits.frameBytesMax) fail('queueBytesMax below frameBytesMax');
  if (limits.backoffMinMs > limits.backoffMaxMs) fail('backoffMinMs above backoffMaxMs');
  if (limits.handshakesPerSourceMax > limits.handshakesMax) fail('handshakes per source above all');
  if (limits.handshakesMax > limits.inboundConnectionsMax) fail('handshakes above connections');
  if (limits.inboundPerSourceMax > limits.inboundConnectionsMax) fail('per source above all');
  // Two pings may be lost to timer jitter before the acceptor gives up on a live link.
  if (3 * limits.keepaliveIntervalMs > limits.idleTimeoutMs) fail('keepalive too slow for idle');
  if (limits.snapshotBytesMax > limits.snapshotReceiveBudgetBytes) fail('snapshot over budget');
  return Object.freeze(limits);
}

assert(FRAME_HEADER_BYTES === 6);
assert(HANDSHAKE_FRAME_BYTES_MAX < FRAME_BYTES_MAX);
// A full batch plus one maximal entry-bearing message must still fit one frame.
assert(BATCH_BYTES_TARGET * 2 <= FRAME_BYTES_MAX);
assert(BATCH_MESSAGES_MAX <= QUEUE_MESSAGES_MAX);
// The ring buffer masks indexes: its capacity is a power of two.
assert((QUEUE_MESSAGES_MAX & (QUEUE_MESSAGES_MAX - 1)) === 0);
assert(QUEUE_BYTES_MAX >= FRAME_BYTES_MAX);
// A chunk and its small header are one frame.
assert(SNAPSHOT_CHUNK_BYTES + 64 <= FRAME_BYTES_MAX);
assert(SNAPSHOT_WINDOW_BYTES >= SNAPSHOT_CHUNK_BYTES);
assert(SNAPSHOT_BYTES_MAX >= SNAPSHOT_CHUNK_BYTES);
// Buffer.allocUnsafe and the 6-byte offsets in chunk headers both accept this size.
assert(SNAPSHOT_BYTES_MAX <= 2 ** 32);
assert(BACKOFF_MIN_MS > 0 && BACKOFF_MIN_MS <= BACKOFF_MAX_MS);
assert(DIAL_TIMEOUT_MS > 0 && HANDSHAKE_TIMEOUT_MS > 0);
assert(HANDSHAKES_PER_SOURCE_MAX <= HANDSHAKES_MAX && HANDSHAKES_MAX < INBOUND_CONNECTIONS_MAX);
assert(INBOUND_PER_SOURCE_MAX <= INBOUND_CONNECTIONS_MAX);
assert(3 * KEEPALIVE_INTERVAL_MS <= IDLE_TIMEOUT_MS);
assert(SNAPSHOT_BYTES_MAX <= SNAPSHOT_RECEIVE_BUDGET_BYTES);
assert(PROBE_INTERVAL_MS > 0);
assert(PING_INTERVAL_MS > 0 && PEER_TRAFFIC_MAX > 0);
