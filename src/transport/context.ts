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
  /** Opens a TCP or TLS socket; the caller waits for `connectEvent`. */
  dial(target: HostPort): Socket;
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
  /** Whether a HELLO from `peer` may proceed to authentication (unknown ids are refused). */
  admits(peer: NodeId): boolean;
  /** Takes `bytes` from the budget of snapshots being received; false when over it. */
  reserveSnapshotBytes(bytes: number): boolean;
  releaseSnapshotBytes(bytes: number): void;
  /** Answers a peer's request for committed entries (fetch-protocol.ts). */
  answerFetch(from: NodeId, request: FetchRequest): FetchResponse;
}
