/**
 * One remote member as seen by the sender: its bounded outbound queue, its links (one per
 * address, in preference order), the connection in use, and at most one snapshot stream.
 *
 * Links. Addresses are tried in order; the first that completes a handshake carries traffic.
 * When it fails the next one is tried at once (failover); when every address failed, the next
 * round starts at the preferred address after an exponential backoff with jitter. While traffic
 * runs on a fallback address, the more preferred ones are probed every `probeIntervalMs`; a probe
 * that completes a handshake becomes the connection in use (return to the preferred link), unless
 * a snapshot is streaming on the current one.
 *
 * Queue. `send` appends to a ring of at most `queueMessagesMax` messages / `queueBytesMax`
 * (estimated) bytes. When full, the OLDEST message is dropped: a peer that comes back should
 * first see the newest terms, commits and heartbeats; older messages would mostly be rejected as
 * stale, and Raft repairs any gap by probing (we report the peer unreachable so it does).
 *
 * Writes. One flush per event-loop turn per peer: the socket is corked, queued messages are
 * packed into MESSAGES frames of up to BATCH_BYTES_TARGET each, then snapshot chunks are added
 * if the receiver's window and the socket's buffer allow; uncork writes it all with one writev.
 * Messages stop moving out of the ring while the socket buffers more than
 * `socketBufferedBytesMax`, so a slow peer fills the bounded ring, not Node's unbounded buffer.
 *
 * Round trips. The connection in use sends a PING every `pingIntervalMs` (the first at once),
 * one outstanding at a time; the PONG comes back on the same connection, behind whatever the
 * peer had to read first, so the time includes the link's queueing (as etcd's prober does).
 */
import type { Socket } from 'node:net';
import type { PeerAddress } from '../io/network.js';
import { type Message, MessageType, type NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { type HostPort, parseAddress } from './address.js';
import {
  expectArray,
  expectBool,
  expectString,
  expectUint,
  packFrame,
  unpackPayload,
} from './codec.js';
import type { PeerTraffic, TransportContext } from './context.js';
import { TransportError } from './errors.js';
import {
  FrameDecoder,
  type FrameSink,
  FrameType,
  PING_PAYLOAD_BYTES,
  pingFrame,
  SNAP_CHUNK_HEADER_BYTES,
  writeFrameHeader,
} from './frame.js';
import { DialerHandshake } from './handshake.js';
import {
  BATCH_BYTES_TARGET,
  BATCH_MESSAGES_MAX,
  FRAME_HEADER_BYTES,
  FRAME_OVERHEAD_BYTES,
  HANDSHAKE_FRAME_BYTES_MAX,
  PEER_ADDRESSES_MAX,
} from './limits.js';
import { encodeMessagesFrame, encodeSnapBeginFrame, messageBytes } from './message-codec.js';
import { FixedRing } from './ring.js';
import type { TimerHandle } from './timers.js';

/** TCP keepalive on peer sockets: detects a silently dead link long before the OS default. */
const KEEPALIVE_INITIAL_DELAY_MS = 10_000;

export type LinkState =
  /** Not in use, not known to be broken (never tried, or replaced by a more preferred link). */
  | 'idle'
  | 'connecting'
  | 'connected'
  /** The last attempt on this link failed; see `lastError`. */
  | 'down';

export interface LinkStatus {
  readonly address: PeerAddress;
  readonly state: LinkState;
  readonly connects: number;
  readonly failures: number;
  readonly lastError: string | null;
}

export interface PeerDrops {
  /** Dropped (oldest first) because the queue was full. */
  queueFull: number;
  /** A single message larger than a frame. */
  oversized: number;
  /** A MsgSnap while another snapshot to the same peer was streaming. */
  snapshotBusy: number;
}

export interface PeerStatus {
  readonly id: NodeId;
  readonly activeAddress: PeerAddress | null;
  readonly links: readonly LinkStatus[];
  readonly queuedMessages: number;
  readonly queuedBytes: number;
  readonly sentMessages: number;
  readonly sentFrames: number;
  readonly sentBytes: number;
  readonly dropped: Readonly<PeerDrops>;
  readonly failedRounds: number;
  readonly snapshot: {
    readonly id: number;
    readonly bytesTotal: number;
    readonly bytesSent: number;
    readonly bytesAcked: number;
  } | null;
}

class Link {
  state: LinkState = 'idle';
  connects = 0;
  failures = 0;
  lastError: string | null = null;
  constructor(
    readonly address: PeerAddress,
    readonly target: HostPort,
  ) {}
}

interface SnapshotSend {
  readonly id: number;
  readonly message: Message;
  readonly data: Uint8Array;
  /** The connection the stream began on; null until SNAP_BEGIN is written. */
  conn: OutboundConnection | null;
  sent: number;
  acked: number;
  stallTimer: TimerHandle | null;
}

export class Peer {
  private links: readonly Link[];
  /** The connection carrying traffic (handshake done). */
  private active: OutboundConnection | null = null;
  /** A dial in progress: part of a connect round, or a probe of a more preferred link. */
  private pending: OutboundConnection | null = null;
  private readonly queue: FixedRing<Message>;
  private snapshot: SnapshotSend | null = null;
  private roundStart = 0;
  private roundAttempts = 0;
  private failedRounds = 0;
  /** An established link was lost and no connection has succeeded since (a `down` candidate). */
  private linkLost = false;
  /** Dials of the current round refused outright (ECONNREFUSED): nothing listens there. */
  private refusedInRound = 0;
  /** Every address refused after a lost link, but the peer's own connection to us was open. */
  private downAwaitingInbound = false;
  private probeIndex = 0;
  private retryTimer: TimerHandle | null = null;
  private probeTimer: TimerHandle | null = null;
  private pingTimer: TimerHandle | null = null;
  /** The connection whose PING awaits its PONG (null: none), its number and when it left. */
  private pingConn: OutboundConnection | null = null;
  private pingSeq = 0;
  private pingSentAtMs = 0;
  private flushScheduled = false;
  /** Set once unreachable is reported for dropped messages; cleared by a successful flush. */
  private unreachableNoted = false;
  private closed = false;
  private readonly batchBytesTarget: number;
  /** The messages of the frame being encoded (reused: no array per frame). */
  private readonly batch: Message[] = [];
  private sentMessages = 0;
  private sentFrames = 0;
  private sentBytes = 0;
  readonly dropped: PeerDrops = { queueFull: 0, oversized: 0, snapshotBusy: 0 };
  /** The transport's byte counters of this peer (shared with inbound connections from it). */
  private readonly traffic: PeerTraffic;

  // Bound once: the hot path schedules these without allocating closures.
  private readonly flushBound = (): void => {
    if (this.flushScheduled) this.flush(); // else flushNow wrote it already
  };
  private readonly retryBound = (): void => this.onRetryTimer();
  private readonly probeBound = (): void => this.onProbeTimer();
  private readonly pingBound = (): void => this.onPingTimer();

  constructor(
    readonly ctx: TransportContext,
    readonly id: NodeId,
    addresses: readonly PeerAddress[],
  ) {
    this.links = Peer.makeLinks(addresses);
    this.traffic = ctx.trafficOf(id);
    this.queue = new FixedRing<Message>(ctx.limits.queueMessagesMax);
    this.batchBytesTarget = Math.min(
      BATCH_BYTES_TARGET,
      ctx.limits.frameBytesMax - FRAME_OVERHEAD_BYTES,
    );
    this.startRound(0);
  }

  private static makeLinks(addresses: readonly PeerAddress[]): Link[] {
    if (addresses.length === 0 || addresses.length > PEER_ADDRESSES_MAX) {
      throw new TransportError(
        'TRANSPORT_CONFIG',
        `a peer needs 1..${PEER_ADDRESSES_MAX} addresses, got ${addresses.length}`,
      );
    }
    return addresses.map((a) => new Link(a, parseAddress(a)));
  }

  /** Replaces the addresses; a change drops the current connections and redials. */
  setAddresses(addresses: readonly PeerAddress[]): void {
    const same =
      addresses.length === this.links.length &&
      addresses.every((a, i) => a === this.links[i]!.address);
    if (same) return;
    const links = Peer.makeLinks(addresses);
    this.dropConnections();
    this.links = links;
    this.failedRounds = 0;
    this.startRound(0);
  }

  close(): void {
    this.closed = true;
    this.dropConnections();
    this.queue.clear();
    if (this.snapshot !== null) this.clearSnapshot();
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  /** Queues one message (already past any fault rule). Never throws, never blocks. */
  enqueue(m: Message): void {
    if (this.closed) return;
    if (m.type === MessageType.Snap && m.snapshot !== null) {
      this.startSnapshot(m);
      return;
    }
    const bytes = messageBytes(m);
    if (bytes + FRAME_OVERHEAD_BYTES > this.ctx.limits.frameBytesMax) {
      this.dropped.oversized += 1;
      this.ctx.logger.error(
        { peer: this.id, type: m.type, bytes },
        'message larger than a frame dropped',
      );
      this.noteUnreachable();
      return;
    }
    const limits = this.ctx.limits;
    while (
      this.queue.length > 0 &&
      (this.queue.isFull() || this.queue.bytes + bytes > limits.queueBytesMax)
    ) {
      this.queue.shift();
      this.dropped.queueFull += 1;
      this.noteUnreachable();
    }
    this.queue.push(m, bytes);
    if (this.active !== null) this.scheduleFlush();
  }

  private noteUnreachable(): void {
    if (this.unreachableNoted) return;
    this.unreachableNoted = true;
    this.ctx.report({ kind: 'unreachable', peer: this.id });
  }

  scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(this.flushBound);
  }

  /** Writes a flush that is due now instead of at the end of the turn (Network.flush). */
  flushNow(): void {
    if (this.flushScheduled) this.flush();
  }

  private flush(): void {
    this.flushScheduled = false;
    const conn = this.active;
    if (conn === null || this.closed || conn.socket.destroyed) return;
    const socket = conn.socket;
    const bufferedMax = this.ctx.limits.socketBufferedBytesMax;
    if (socket.writableLength >= bufferedMax) return; // 'drain' schedules the next flush
    socket.cork();
    try {
      while (this.queue.length > 0 && socket.writableLength < bufferedMax) {
        this.writeBatch(socket);
      }
      if (this.snapshot !== null) this.writeSnapshot(conn);
    } finally {
      socket.uncork();
    }
    if (this.queue.length === 0) this.unreachableNoted = false;
  }

  private writeBatch(socket: Socket): void {
    const batch = this.batch;
    let bytes = 0;
    while (this.queue.length > 0 && batch.length < BATCH_MESSAGES_MAX) {
      const size = this.queue.peekSize();
      if (batch.length > 0 && bytes + size > this.batchBytesTarget) break;
      bytes += size;
      batch.push(this.queue.shift());
    }
    const count = batch.length;
    assert(count > 0);
    let frame: Buffer;
    try {
      frame = encodeMessagesFrame(batch);
    } finally {
      batch.length = 0; // the queue no longer holds them: neither should we
    }
    socket.write(frame);
    this.sentMessages += count;
    this.sentFrames += 1;
    this.sentBytes += frame.length;
    this.traffic.sentBytes += frame.length;
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots

  private startSnapshot(m: Message): void {
    const limits = this.ctx.limits;
    const data = m.snapshot!.data;
    let refusal: string | null = null;
    if (this.snapshot !== null) {
      this.dropped.snapshotBusy += 1;
      refusal = 'another snapshot to this peer is streaming';
    } else if (data.length > limits.snapshotBytesMax) {
      refusal = `snapshot of ${data.length} bytes over the limit ${limits.snapshotBytesMax}`;
    } else if (messageBytes(m, false) + FRAME_OVERHEAD_BYTES > limits.frameBytesMax) {
      refusal = 'snapshot metadata larger than a frame';
    }
    if (refusal !== null) {
      this.ctx.logger.warn({ peer: this.id, bytes: data.length }, `snapshot not sent: ${refusal}`);
      this.ctx.report({ kind: 'snapshot', peer: this.id, ok: false });
      return;
    }
    const id = this.ctx.nextSnapshotId();
    this.snapshot = { id, message: m, data, conn: null, sent: 0, acked: 0, stallTimer: null };
    this.ctx.logger.info({ peer: this.id, id, bytes: data.length }, 'snapshot stream queued');
    if (this.active !== null) this.scheduleFlush();
  }

  private writeSnapshot(conn: OutboundConnection): void {
    const s = this.snapshot!;
    const limits = this.ctx.limits;
    const socket = conn.socket;
    if (s.conn === null) {
      s.conn = conn;
      socket.write(encodeSnapBeginFrame(s.id, s.data.length, s.message));
      this.armStallTimer(s);
    } else if (s.conn !== conn) {
      return; // the stream's connection is gone: onConnectionClosed fails it
    }
    // At most one chunk sits in Node's buffer at a time, so a heartbeat queued now waits behind
    // one chunk, not the whole window.
    while (
      s.sent < s.data.length &&
      s.sent - s.acked < limits.snapshotWindowBytes &&
      socket.writableLength < limits.snapshotChunkBytes
    ) {
      const length = Math.min(limits.snapshotChunkBytes, s.data.length - s.sent);
      const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES + SNAP_CHUNK_HEADER_BYTES);
      writeFrameHeader(header, 0, FrameType.SnapChunk, SNAP_CHUNK_HEADER_BYTES + length);
      header.writeUInt32BE(s.id, FRAME_HEADER_BYTES);
      header.writeUIntBE(s.sent, FRAME_HEADER_BYTES + 4, 6);
      socket.write(header);
      socket.write(s.data.subarray(s.sent, s.sent + length)); // a view: no copy of the image
      s.sent += length;
      this.sentFrames += 1;
      this.sentBytes += header.length + length;
      this.traffic.sentBytes += header.length + length;
    }
  }

  private armStallTimer(s: SnapshotSend): void {
    const timers = this.ctx.timers;
    if (s.stallTimer !== null) timers.clearTimeout(s.stallTimer);
    s.stallTimer = timers.setTimeout(() => {
      s.stallTimer = null;
      if (this.snapshot !== s) return;
      this.ctx.logger.warn({ peer: this.id, id: s.id }, 'snapshot stream stalled; aborting');
      const conn = s.conn;
      this.finishSnapshot(false);
      // A stalled stream means a stuck connection: start over on a fresh one.
      conn?.destroy('snapshot stream stalled');
    }, this.ctx.limits.snapshotStallTimeoutMs);
  }

  onSnapAck(conn: OutboundConnection, id: number, received: number): void {
    const s = this.snapshot;
    if (s === null || s.id !== id || s.conn !== conn) return; // a stream we already gave up
    if (received < s.acked || received > s.sent) {
      throw new TransportError('TRANSPORT_SNAPSHOT', `ack of ${received} bytes out of range`);
    }
    s.acked = received;
    this.armStallTimer(s);
    this.scheduleFlush();
  }

  onSnapStatus(conn: OutboundConnection, id: number, ok: boolean, reason: string): void {
    const s = this.snapshot;
    if (s === null || s.id !== id || s.conn !== conn) return;
    if (ok && s.sent !== s.data.length) {
      throw new TransportError('TRANSPORT_SNAPSHOT', 'snapshot acknowledged before it was sent');
    }
    if (ok) this.ctx.logger.info({ peer: this.id, id }, 'snapshot delivered');
    else this.ctx.logger.warn({ peer: this.id, id, reason }, 'snapshot refused by peer');
    this.finishSnapshot(ok);
    this.scheduleFlush();
  }

  private finishSnapshot(ok: boolean): void {
    this.clearSnapshot();
    this.ctx.report({ kind: 'snapshot', peer: this.id, ok });
  }

  private clearSnapshot(): void {
    const s = this.snapshot!;
    if (s.stallTimer !== null) this.ctx.timers.clearTimeout(s.stallTimer);
    this.snapshot = null;
  }

  // -------------------------------------------------------------------------------------------
  // Links: rounds, backoff, failover, probes

  private startRound(start: number): void {
    assert(this.active === null && this.pending === null);
    this.roundStart = start;
    this.roundAttempts = 0;
    this.refusedInRound = 0;
    this.dialNextInRound();
  }

  private dialNextInRound(): void {
    if (this.roundAttempts >= this.links.length) {
      this.onRoundFailed();
      return;
    }
    const index = (this.roundStart + this.roundAttempts) % this.links.length;
    this.pending = new OutboundConnection(this, this.links, index, false);
  }

  private onRoundFailed(): void {
    this.failedRounds += 1;
    if (this.linkLost && this.refusedInRound === this.links.length) {
      // A refused TCP connection means no process listens on that port: the peer is gone, not
      // merely slow or cut off (those time out). A connection the peer opened to us that is
      // still open says otherwise (a live process behind a firewall that rejects): then wait
      // for it to close too (onInboundGone).
      if (this.ctx.inboundFrom(this.id) === 0) this.reportDown();
      else this.downAwaitingInbound = true;
    }
    const delayMs = this.backoffMs();
    const log = this.failedRounds === 1 ? this.ctx.logger.warn : this.ctx.logger.debug;
    log.call(
      this.ctx.logger,
      { peer: this.id, rounds: this.failedRounds, retryMs: delayMs },
      'peer unreachable on every address',
    );
    this.ctx.report({ kind: 'unreachable', peer: this.id });
    // A snapshot cannot wait for a link that may never return: Raft retries it later.
    if (this.snapshot !== null) this.finishSnapshot(false);
    this.retryTimer = this.ctx.timers.setTimeout(this.retryBound, delayMs);
  }

  /** Said once per lost link: the peer's process is gone (see onRoundFailed). */
  private reportDown(): void {
    this.linkLost = false;
    this.downAwaitingInbound = false;
    this.ctx.logger.warn({ peer: this.id }, 'peer process gone: every address refuses');
    this.ctx.report({ kind: 'down', peer: this.id });
  }

  /** The transport's last inbound connection from this peer closed. */
  onInboundGone(): void {
    if (this.downAwaitingInbound && this.linkLost && this.active === null) this.reportDown();
  }

  /**
   * The peer just opened a connection to us: its process is back (a restart, a healed link). A
   * link waiting out its backoff dials now instead, so a restarted member hears from us (the
   * leader's heartbeats, its role check) within a round trip, not after up to a backoff cap.
   */
  onInboundOpened(): void {
    if (this.retryTimer === null || this.closed) return;
    this.ctx.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.onRetryTimer();
  }

  /** Exponential in the failed rounds, capped, with "equal jitter": in [d/2, d]. */
  private backoffMs(): number {
    const { backoffMinMs, backoffMaxMs } = this.ctx.limits;
    const exponent = Math.min(this.failedRounds - 1, 30);
    const capped = Math.min(backoffMaxMs, backoffMinMs * 2 ** exponent);
    const half = Math.floor(capped / 2);
    return capped - half + this.ctx.random.int(half + 1);
  }

  private onRetryTimer(): void {
    this.retryTimer = null;
    if (this.closed || this.active !== null || this.pending !== null) return;
    this.startRound(0);
  }

  private armProbe(): void {
    if (this.probeTimer !== null || this.closed) return;
    this.probeTimer = this.ctx.timers.setTimeout(this.probeBound, this.ctx.limits.probeIntervalMs);
  }

  private onProbeTimer(): void {
    this.probeTimer = null;
    const active = this.active;
    if (this.closed || active === null || active.linkIndex === 0) return;
    if (this.pending !== null) {
      this.armProbe();
      return;
    }
    this.probeIndex = 0;
    this.dialProbe();
  }

  private dialProbe(): void {
    const active = this.active;
    if (active === null) return;
    if (this.probeIndex >= active.linkIndex) {
      this.armProbe(); // every more preferred link is still down
      return;
    }
    this.pending = new OutboundConnection(this, this.links, this.probeIndex, true);
  }

  /** Sends a PING on the connection in use unless one is outstanding there; re-arms. */
  private onPingTimer(): void {
    this.pingTimer = null;
    const conn = this.active;
    if (this.closed || conn === null) return; // onEstablished starts again
    if (this.pingConn !== conn) {
      this.pingSeq = (this.pingSeq + 1) >>> 0;
      this.pingConn = conn;
      this.pingSentAtMs = performance.now();
      conn.socket.write(pingFrame(FrameType.RoundTripPing, this.pingSeq));
      this.traffic.sentBytes += FRAME_HEADER_BYTES + PING_PAYLOAD_BYTES;
    }
    this.pingTimer = this.ctx.timers.setTimeout(this.pingBound, this.ctx.limits.pingIntervalMs);
  }

  onPong(conn: OutboundConnection, seq: number): void {
    if (conn !== this.pingConn || seq !== this.pingSeq) return; // an answer to an older PING
    this.pingConn = null;
    this.ctx.roundTrip(this.id, Math.max(0, performance.now() - this.pingSentAtMs) / 1000);
  }

  onEstablished(conn: OutboundConnection): void {
    assert(conn === this.pending, 'only the pending dial can complete a handshake');
    this.pending = null;
    const link = this.links[conn.linkIndex]!;
    if (conn.probe) {
      if (this.snapshot?.conn != null) {
        // Moving now would break the stream; the next probe tries again.
        conn.close();
        link.state = 'idle';
        this.armProbe();
        return;
      }
      const old = this.active;
      if (old !== null) {
        this.links[old.linkIndex]!.state = 'idle';
        old.close(); // end(): what it already buffered is still delivered
      }
      this.ctx.logger.info(
        { peer: this.id, address: link.address },
        'returned to a more preferred link',
      );
    }
    this.active = conn;
    this.failedRounds = 0;
    this.linkLost = false;
    this.downAwaitingInbound = false;
    link.state = 'connected';
    link.connects += 1;
    link.lastError = null;
    this.ctx.logger.debug({ peer: this.id, address: link.address }, 'peer link connected');
    if (conn.linkIndex > 0) {
      this.armProbe();
    } else if (this.probeTimer !== null) {
      this.ctx.timers.clearTimeout(this.probeTimer);
      this.probeTimer = null;
    }
    if (this.pingTimer !== null) this.ctx.timers.clearTimeout(this.pingTimer);
    this.onPingTimer(); // a first round trip at once
    this.scheduleFlush();
  }

  onConnectionClosed(conn: OutboundConnection, reason: string): void {
    if (conn.links !== this.links || this.closed) return; // addresses replaced meanwhile
    const link = this.links[conn.linkIndex]!;
    if (conn === this.pending) {
      this.pending = null;
      this.markDown(link, reason);
      if (!conn.probe && conn.refused) this.refusedInRound += 1;
      if (conn.probe) {
        this.probeIndex += 1;
        this.dialProbe();
      } else {
        this.roundAttempts += 1;
        this.dialNextInRound();
      }
    } else if (conn === this.active) {
      this.active = null;
      this.markDown(link, reason);
      this.ctx.logger.warn({ peer: this.id, address: link.address, reason }, 'peer link lost');
      this.linkLost = true;
      this.ctx.report({ kind: 'unreachable', peer: this.id });
      if (this.snapshot?.conn === conn) this.finishSnapshot(false);
      const probe = this.pending;
      if (probe !== null) {
        this.pending = null;
        probe.close();
      }
      // Fail over to the next address at once; probes bring traffic back to the preferred one.
      this.startRound((conn.linkIndex + 1) % this.links.length);
    }
    // Otherwise: a connection retired by a probe finished closing; its link stays 'idle'.
  }

  private markDown(link: Link, reason: string): void {
    link.state = 'down';
    link.failures += 1;
    link.lastError = reason;
  }

  onDrain(conn: OutboundConnection): void {
    if (conn === this.active) this.scheduleFlush();
  }

  private dropConnections(): void {
    const timers = this.ctx.timers;
    if (this.retryTimer !== null) timers.clearTimeout(this.retryTimer);
    if (this.probeTimer !== null) timers.clearTimeout(this.probeTimer);
    if (this.pingTimer !== null) timers.clearTimeout(this.pingTimer);
    this.retryTimer = null;
    this.probeTimer = null;
    this.pingTimer = null;
    const { active, pending } = this;
    this.active = null;
    this.pending = null;
    active?.destroy('peer closed or readdressed');
    pending?.destroy('peer closed or readdressed');
    if (this.snapshot?.conn != null) this.finishSnapshot(false);
  }

  status(): PeerStatus {
    const s = this.snapshot;
    return {
      id: this.id,
      activeAddress: this.active === null ? null : this.links[this.active.linkIndex]!.address,
      links: this.links.map((l) => ({
        address: l.address,
        state: l.state,
        connects: l.connects,
        failures: l.failures,
        lastError: l.lastError,
      })),
      queuedMessages: this.queue.length,
      queuedBytes: this.queue.bytes,
      sentMessages: this.sentMessages,
      sentFrames: this.sentFrames,
      sentBytes: this.sentBytes,
      dropped: { ...this.dropped },
      failedRounds: this.failedRounds,
      snapshot:
        s === null
          ? null
          : { id: s.id, bytesTotal: s.data.length, bytesSent: s.sent, bytesAcked: s.acked },
    };
  }
}

/** An empty PING frame, written on an idle link (its bytes never change). */
const PING_FRAME = packFrame(FrameType.Ping, []);

/**
 * One dialed socket: connect, the authenticated handshake (handshake.ts), all within
 * `dialTimeoutMs`, then carry the peer's traffic, read back snapshot acknowledgements, and PING
 * when nothing was written for `keepaliveIntervalMs` (the acceptor closes silent links).
 * Closures here are per connection.
 */
export class OutboundConnection implements FrameSink {
  readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private dialTimer: TimerHandle | null;
  private keepaliveTimer: TimerHandle | null = null;
  private bytesWrittenAtKeepalive = 0;
  private readonly handshake: DialerHandshake;
  established = false;
  private error: string | null = null;
  /** The dial was refused outright (ECONNREFUSED) before any handshake. */
  refused = false;

  constructor(
    private readonly peer: Peer,
    /** The link list this connection belongs to (a readdressed peer ignores old ones). */
    readonly links: readonly Link[],
    readonly linkIndex: number,
    readonly probe: boolean,
  ) {
    const ctx = peer.ctx;
    const link = links[linkIndex]!;
    link.state = 'connecting';
    this.decoder = new FrameDecoder(this, HANDSHAKE_FRAME_BYTES_MAX);
    this.handshake = new DialerHandshake(ctx.secret, ctx.clusterId, ctx.localId, peer.id);
    const socket = ctx.dial(link.target, peer.id);
    this.socket = socket;
    socket.setNoDelay(true); // we batch per turn ourselves; Nagle would only add latency
    socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    socket.once(ctx.connectEvent, () => {
      socket.write(this.handshake.hello());
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => peer.onDrain(this));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error ??= err.message;
      if (!this.established && err.code === 'ECONNREFUSED') this.refused = true;
    });
    socket.once('close', () => this.onClose());
    this.dialTimer = ctx.timers.setTimeout(
      () => this.destroy('connect and handshake timed out'),
      ctx.limits.dialTimeoutMs,
    );
  }

  private onData(chunk: Buffer): void {
    try {
      this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof TransportError)) throw err; // a bug, not a bad peer: crash loudly
      const link = this.links[this.linkIndex]!;
      this.peer.ctx.logger.error(
        { peer: this.peer.id, address: link.address, code: err.code },
        `closing peer link: ${err.message}`,
      );
      this.destroy(err.message);
    }
  }

  onFrame(type: FrameType, payload: Buffer): void {
    if (!this.established) {
      this.onHandshakeFrame(type, payload);
      return;
    }
    if (type === FrameType.SnapAck) {
      const t = expectArray(unpackPayload(payload), 2, 'snapshot ack');
      this.peer.onSnapAck(this, expectUint(t[0], 'ack.id'), expectUint(t[1], 'ack.bytes'));
    } else if (type === FrameType.RoundTripPong) {
      if (payload.length !== PING_PAYLOAD_BYTES) {
        throw new TransportError('TRANSPORT_FRAME_MALFORMED', 'ROUND_TRIP_PONG of the wrong size');
      }
      this.peer.onPong(this, payload.readUInt32BE(0));
    } else if (type === FrameType.SnapStatus) {
      const t = expectArray(unpackPayload(payload), 3, 'snapshot status');
      this.peer.onSnapStatus(
        this,
        expectUint(t[0], 'status.id'),
        expectBool(t[1], 'status.ok'),
        expectString(t[2], 'status.reason'),
      );
    } else {
      throw new TransportError('TRANSPORT_FRAME_TYPE', `unexpected frame type ${type} from peer`);
    }
  }

  private onHandshakeFrame(type: FrameType, payload: Buffer): void {
    const reply = this.handshake.onFrame(type, payload);
    if (reply !== null) this.socket.write(reply);
    if (!this.handshake.established) return;
    this.established = true;
    this.clearDialTimer();
    this.armKeepalive();
    this.peer.onEstablished(this);
  }

  /** One timer per connection: a PING when the socket wrote nothing since the last check. */
  private armKeepalive(): void {
    const ctx = this.peer.ctx;
    this.bytesWrittenAtKeepalive = this.socket.bytesWritten;
    this.keepaliveTimer = ctx.timers.setTimeout(() => {
      this.keepaliveTimer = null;
      if (this.socket.destroyed) return;
      if (this.socket.bytesWritten === this.bytesWrittenAtKeepalive) this.socket.write(PING_FRAME);
      this.armKeepalive();
    }, ctx.limits.keepaliveIntervalMs);
  }

  private clearKeepalive(): void {
    if (this.keepaliveTimer === null) return;
    this.peer.ctx.timers.clearTimeout(this.keepaliveTimer);
    this.keepaliveTimer = null;
  }

  /**
   * Graceful: buffered frames are still written, then FIN. A peer that never closes its side
   * is cut off after `dialTimeoutMs` (the dial timer is reused for that).
   */
  close(): void {
    this.clearDialTimer();
    this.clearKeepalive();
    this.decoder.stop();
    this.socket.end();
    const socket = this.socket;
    this.dialTimer = this.peer.ctx.timers.setTimeout(
      () => socket.destroy(),
      this.peer.ctx.limits.dialTimeoutMs,
    );
  }

  /** Immediate; `reason` is what the link status reports. */
  destroy(reason: string): void {
    this.error ??= reason;
    this.clearDialTimer();
    this.clearKeepalive();
    this.decoder.stop();
    this.socket.destroy();
  }

  private clearDialTimer(): void {
    if (this.dialTimer === null) return;
    this.peer.ctx.timers.clearTimeout(this.dialTimer);
    this.dialTimer = null;
  }

  private onClose(): void {
    this.clearDialTimer();
    this.clearKeepalive();
    this.decoder.stop();
    this.peer.onConnectionClosed(this, this.error ?? 'connection closed by peer');
  }
}
