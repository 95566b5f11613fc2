import type { Socket } from 'node:net';
import type { PeerReport } from '../io/network.js';
import type { Message, NodeId } from '../raft/types.js';
import type { Random } from '../util/prng.js';
import type { HostPort } from './address.js';
import type { FetchRequest, FetchResponse } from './fetch-protocol.js';
import type { ClusterSecret } from './handshake.js';
import type { TransportLimits } from './limits.js';
import type { TransportLogger } from './logger.js';
import type { TransportTimers } from './timers.js';

/**
 * Bytes of Raft traffic to and from one peer since this transport started (frames after the
 * handshake): plain counters the hot path adds to, read at scrape time.
 */
export interface PeerTraffic {
  sentBytes: number;
  receivedBytes: number;
}

/** What peers and inbound connections need from their transport (kept narrow, no cycles). */
export interface TransportContext {
  readonly localId: NodeId;
  readonly clusterId: string;
  /** Authenticates both ends of every connection (handshake.ts); never logged. */
  readonly secret: ClusterSecret;
  readonly limits: TransportLimits;
  readonly logger: TransportLogger;
  readonly timers: TransportTimers;
  readonly random: Random;
  /** Opens a TCP or TLS socket to `peer`; the caller waits for `connectEvent`. */
  dial(target: HostPort, peer: NodeId): Socket;
  /**
   * Why the socket's certificate may not speak as member `from` (tls.ts), or null: always null
   * without TLS or without member names.
   */
  peerCertificateRefusal(from: NodeId, socket: Socket): string | null;
  /** 'connect' for TCP, 'secureConnect' for TLS: when the dialer may write its hello. */
  readonly connectEvent: 'connect' | 'secureConnect';
  /** Hands an inbound message to the member (after fault rules, if any). */
  deliver(message: Message): void;
  /** Queues a report for the next event-loop turn (never emitted synchronously). */
  report(report: PeerReport): void;
  nextSnapshotId(): number;
  /** Inbound connections from `peer` whose handshake completed and that are still open. */
  inboundFrom(peer: NodeId): number;
  /** A connection from `peer` completed its handshake: its process is up and reachable. */
  inboundOpened(peer: NodeId): void;
  /**
   * The counters of `peer`, the same object each time; a shared uncounted one past
   * PEER_TRAFFIC_MAX peers.
   */
  trafficOf(peer: NodeId): PeerTraffic;
  /** A PING to `peer` was answered after `seconds`. */
  roundTrip(peer: NodeId, seconds: number): void;
  /** Whether a HELLO from `peer` may proceed to authentication (unknown ids are refused). */
  admits(peer: NodeId): boolean;
  /** Takes `bytes` from the budget of snapshots being received; false when over it. */
  reserveSnapshotBytes(bytes: number): boolean;
  releaseSnapshotBytes(bytes: number): void;
  /** Answers a peer's request for committed entries (fetch-protocol.ts). */
  answerFetch(from: NodeId, request: FetchRequest): FetchResponse;
}
