/**
 * The network as a member sees it: fire-and-forget delivery of Raft messages to peers, plus the
 * reachability reports Raft needs (etcd's `ReportUnreachable` and `ReportSnapshot`).
 *
 * Two implementations: `TcpTransport` (src/transport) in production and the simulator's virtual
 * network (src/sim). Everything here is synchronous on purpose so the member's Ready loop never
 * awaits the network and the simulator can run it step by step; only `close()` is async.
 *
 * Contract for implementations:
 * - `send` never blocks and never throws for a down, slow or unknown peer: messages are queued in
 *   a bounded queue, and dropped (counted, and reported as `unreachable`) when it is full. Raft
 *   tolerates loss, duplication and reordering; it does not tolerate a member stuck on I/O.
 * - A `MsgSnap` is eventually answered by exactly one `snapshot` report for that peer
 *   (`ok: false` on any failure), so Raft can leave the snapshot state and probe again.
 * - Handlers are invoked from the event loop, never re-entrantly from inside `send`.
 */
import type { Message, NodeId } from '../raft/types.js';

/** A peer address, `host:port` (IPv6 as `[::1]:2380`). Several per peer = redundant links. */
export type PeerAddress = string;

export type PeerReport =
  /** Sending to the peer failed (connection lost, refused, or messages dropped). */
  | { readonly kind: 'unreachable'; readonly peer: NodeId }
  /** The outcome of a MsgSnap: `ok` once the peer's transport holds the whole snapshot. */
  | { readonly kind: 'snapshot'; readonly peer: NodeId; readonly ok: boolean }
  /**
   * The peer's process is gone: an established link was lost, then every one of its addresses
   * refused a connection (nothing listens on the port), and no connection the peer opened to us
   * is still open. Stronger than `unreachable`, which a slow or partitioned peer also causes; a
   * member may use it to skip the election timeout. Reported once per lost link.
   * Implementations must not report it on timeouts or drops.
   */
  | { readonly kind: 'down'; readonly peer: NodeId };

export type MessageHandler = (message: Message) => void;
export type PeerReportHandler = (report: PeerReport) => void;

export interface Network {
  /** Queue `messages` for `to`. Never blocks, never throws on a down or unknown peer. */
  send(to: NodeId, messages: readonly Message[]): void;
  /**
   * Optional: hand what `send` queued to the sockets now rather than at the end of the
   * event-loop turn. The member calls it after each Ready's sends, so an append or an
   * acknowledgement leaves before the member's own WAL write and apply, not after them (a put
   * at 1 in flight waits for both). Changes when bytes leave, never their order or contents.
   */
  flush?(): void;
  /** The single handler for inbound messages (a later call replaces the earlier handler). */
  onMessage(handler: MessageHandler): void;
  /** The single handler for reachability and snapshot reports. */
  onReport(handler: PeerReportHandler): void;
  /** Add a peer or replace its addresses; the first address is preferred. */
  setPeer(id: NodeId, addresses: readonly PeerAddress[]): void;
  /** Forget a peer: its queue is dropped and its connections closed. */
  removePeer(id: NodeId): void;
  /** Stop sending and receiving; resolves once every socket and listener is closed. */
  close(): Promise<void>;
}
