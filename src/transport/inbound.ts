/**
 * The accepting side of a peer connection: authenticate the dialer (handshake.ts), decode
 * message batches and hand each message to the member, reassemble streamed snapshots and
 * acknowledge them.
 *
 * Until the handshake completes the peer is a stranger: it may send HELLO then AUTH only, each
 * frame at most HANDSHAKE_FRAME_BYTES_MAX, all within `handshakeTimeoutMs`; only then may frames
 * grow to `frameBytesMax`. After it, a connection silent for `idleTimeoutMs` is closed (dialers
 * ping idle links). Any protocol violation closes this connection only, with a logged error; the
 * listener keeps going.
 */
import type { Socket } from 'node:net';
import { type Message, MessageType, NONE, type NodeId } from '../raft/types.js';
import { packFrame, unpackPayload } from './codec.js';
import type { PeerTraffic, TransportContext } from './context.js';
import { TransportError } from './errors.js';
import { decodeFetchRequest, encodeFetchResponse } from './fetch-protocol.js';
import {
  FrameDecoder,
  type FrameSink,
  FrameType,
  PING_PAYLOAD_BYTES,
  pingFrame,
  SNAP_CHUNK_HEADER_BYTES,
} from './frame.js';
import {
  decodeAuth,
  decodeHello,
  encodeChallenge,
  type HandshakeTranscript,
  handshakeProof,
  newNonce,
  proofMatches,
} from './handshake.js';
import { HANDSHAKE_FRAME_BYTES_MAX } from './limits.js';
import { decodeMessages, decodeSnapBegin, withSnapshotData } from './message-codec.js';
import type { TimerHandle } from './timers.js';

interface SnapshotReceive {
  readonly id: number;
  readonly message: Message;
  /** The whole image, allocated once when the stream begins (its size is bounded). */
  readonly buffer: Buffer;
  received: number;
}

const NO_SNAPSHOT = -1;

/** hello: waiting for HELLO; auth: CHALLENGE sent, waiting for AUTH; open: authenticated. */
type Phase = 'hello' | 'auth' | 'open' | 'refused';

export class InboundConnection implements FrameSink {
  /** The authenticated peer; NONE until the handshake completes. */
  peerId: NodeId = NONE;
  private phase: Phase = 'hello';
  /** The id the HELLO claimed (logs only: it is not authenticated before AUTH). */
  private claimedId: NodeId = NONE;
  private transcript: HandshakeTranscript | null = null;
  private readonly decoder: FrameDecoder;
  private handshakeTimer: TimerHandle | null;
  private idleTimer: TimerHandle | null = null;
  private bytesReadAtIdleCheck = 0;
  private snapshot: SnapshotReceive | null = null;
  /** A stream refused at SNAP_BEGIN: its chunks, already in flight, are skipped. */
  private refusedSnapshotId = NO_SNAPSHOT;
  /** The sender's byte counters, once its handshake named it. */
  private traffic: PeerTraffic | null = null;

  constructor(
    private readonly ctx: TransportContext,
    readonly socket: Socket,
    readonly remote: string,
    onClosed: (conn: InboundConnection) => void,
  ) {
    this.decoder = new FrameDecoder(this, HANDSHAKE_FRAME_BYTES_MAX);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => {
      ctx.logger.debug({ remote, peer: this.peerId, err: err.message }, 'inbound peer error');
    });
    socket.once('close', () => {
      this.clearTimers();
      this.decoder.stop();
      this.dropSnapshot();
      onClosed(this);
    });
    this.handshakeTimer = ctx.timers.setTimeout(() => {
      this.handshakeTimer = null;
      ctx.logger.warn({ remote }, 'peer connection without handshake in time; closing');
      this.destroy();
    }, ctx.limits.handshakeTimeoutMs);
  }

  /** Authenticated: the handshake completed. */
  get authenticated(): boolean {
    return this.phase === 'open';
  }

  destroy(): void {
    this.clearTimers();
    this.decoder.stop();
    this.dropSnapshot();
    this.socket.destroy();
  }

  private clearTimers(): void {
    this.clearHandshakeTimer();
    if (this.idleTimer !== null) this.ctx.timers.clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer === null) return;
    this.ctx.timers.clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  /** One timer per connection, no work per frame: compares the bytes read between checks. */
  private armIdleCheck(): void {
    this.bytesReadAtIdleCheck = this.socket.bytesRead;
    this.idleTimer = this.ctx.timers.setTimeout(() => {
      this.idleTimer = null;
      if (this.socket.bytesRead === this.bytesReadAtIdleCheck) {
        this.ctx.logger.warn(
          { remote: this.remote, peer: this.peerId, idleMs: this.ctx.limits.idleTimeoutMs },
          'idle peer connection closed',
        );
        this.destroy();
        return;
      }
      this.armIdleCheck();
    }, this.ctx.limits.idleTimeoutMs);
  }

  private onData(chunk: Buffer): void {
    if (this.traffic !== null) this.traffic.receivedBytes += chunk.length;
    try {
      this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof TransportError)) throw err; // a bug (or the member's handler): crash
      if (err.code === 'TRANSPORT_FRAME_VERSION' && this.phase === 'hello') {
        // Another release dialed: say why in a REFUSE (in our version, which its decoder then
        // refuses naming both versions), so both sides log the mismatch, not a bare close.
        this.refuse(err.message);
        return;
      }
      this.ctx.logger.error(
        { remote: this.remote, peer: this.peerId, claimed: this.claimedId, code: err.code },
        `closing inbound peer connection: ${err.message}`,
      );
      this.destroy();
    }
  }

  onFrame(type: FrameType, payload: Buffer): void {
    if (this.phase !== 'open') {
      if (this.phase === 'hello' && type === FrameType.Hello) this.onHello(payload);
      else if (this.phase === 'auth' && type === FrameType.Auth) this.onAuth(payload);
      else throw new TransportError('TRANSPORT_FRAME_TYPE', `frame type ${type} before handshake`);
      return;
    }
    switch (type) {
      case FrameType.Ping:
        return; // counted in socket.bytesRead: the idle check sees the link alive
      case FrameType.Messages:
        this.onMessages(payload);
        return;
      case FrameType.SnapBegin:
        this.onSnapBegin(payload);
        return;
      case FrameType.SnapChunk:
        this.onSnapChunk(payload);
        return;
      case FrameType.RoundTripPing:
        if (payload.length !== PING_PAYLOAD_BYTES) {
          throw new TransportError(
            'TRANSPORT_FRAME_MALFORMED',
            'ROUND_TRIP_PING of the wrong size',
          );
        }
        this.socket.write(pingFrame(FrameType.RoundTripPong, payload.readUInt32BE(0)));
        return;
      case FrameType.FetchRequest: {
        // Committed entries for a member recovering its WAL (fetch-protocol.ts), answered in place.
        const request = decodeFetchRequest(unpackPayload(payload));
        const response = this.ctx.answerFetch(this.peerId, request);
        this.socket.write(packFrame(FrameType.FetchResponse, encodeFetchResponse(response)));
        return;
      }
      default:
        throw new TransportError('TRANSPORT_FRAME_TYPE', `unexpected frame type ${type}`);
    }
  }

  private onHello(payload: Buffer): void {
    const ctx = this.ctx;
    const hello = decodeHello(payload);
    const from = hello.from;
    this.claimedId = from;
    let refusal: string | null = null;
    if (hello.clusterId !== ctx.clusterId) {
      refusal = `cluster id mismatch: this is '${ctx.clusterId}', the peer is in '${hello.clusterId}'`;
    } else if (hello.to !== ctx.localId) {
      refusal = `the peer dialed node ${hello.to}, this is node ${ctx.localId}`;
    } else if (from === NONE || from === ctx.localId) {
      refusal = `invalid sender id ${from}`;
    } else if (!ctx.admits(from)) {
      refusal = `node ${from} is not a member this node knows`;
    }
    refusal ??= ctx.peerCertificateRefusal(from, this.socket);
    if (refusal !== null) {
      this.refuse(refusal);
      return;
    }
    const transcript: HandshakeTranscript = {
      clusterId: ctx.clusterId,
      dialerId: from,
      acceptorId: ctx.localId,
      dialerNonce: hello.nonce,
      acceptorNonce: newNonce(),
    };
    this.transcript = transcript;
    this.phase = 'auth';
    this.socket.write(
      encodeChallenge({
        clusterId: ctx.clusterId,
        acceptorId: ctx.localId,
        nonce: transcript.acceptorNonce,
        proof: handshakeProof(ctx.secret, 'acceptor', transcript),
      }),
    );
  }

  private onAuth(payload: Buffer): void {
    const ctx = this.ctx;
    const transcript = this.transcript!;
    if (!proofMatches(ctx.secret, 'dialer', transcript, decodeAuth(payload))) {
      this.refuse('authentication failed (does the cluster.secret differ?)');
      return;
    }
    const from = transcript.dialerId;
    this.transcript = null;
    this.clearHandshakeTimer();
    this.phase = 'open';
    this.peerId = from;
    this.traffic = ctx.trafficOf(from);
    this.decoder.frameBytesMax = ctx.limits.frameBytesMax;
    this.socket.write(packFrame(FrameType.HelloOk, [ctx.clusterId, ctx.localId]));
    ctx.logger.debug({ remote: this.remote, peer: from }, 'inbound peer connection open');
    this.armIdleCheck();
    ctx.inboundOpened(from);
  }

  private refuse(reason: string): void {
    this.ctx.logger.error(
      { remote: this.remote, claimed: this.claimedId },
      `refused peer connection: ${reason}`,
    );
    this.phase = 'refused';
    this.transcript = null;
    this.decoder.stop();
    // The handshake timer stays armed: it destroys the socket if the peer never closes.
    this.socket.end(packFrame(FrameType.Refuse, [reason]));
  }

  /** A message must come from the authenticated sender and be addressed to us. */
  private checkRoute(m: Message): void {
    if (m.from !== this.peerId || m.to !== this.ctx.localId) {
      throw new TransportError(
        'TRANSPORT_FRAME_MALFORMED',
        `message ${m.from}->${m.to} on the connection of ${this.peerId}->${this.ctx.localId}`,
      );
    }
  }

  private onMessages(payload: Buffer): void {
    const messages = decodeMessages(payload);
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      this.checkRoute(m);
      this.ctx.deliver(m);
    }
  }

  private onSnapBegin(payload: Buffer): void {
    const { snapshotId: id, totalBytes: total, message } = decodeSnapBegin(payload);
    this.checkRoute(message);
    if (message.type !== MessageType.Snap || message.snapshot === null) {
      throw new TransportError('TRANSPORT_SNAPSHOT', 'snapshot stream without a MsgSnap');
    }
    // A new stream replaces an unfinished one: the sender gave up on it (stall or restart).
    this.dropSnapshot();
    const max = this.ctx.limits.snapshotBytesMax;
    let refusal: string | null = null;
    if (total > max) {
      refusal = `snapshot of ${total} bytes over the limit ${max}`;
    } else if (!this.ctx.reserveSnapshotBytes(total)) {
      refusal = `snapshot of ${total} bytes over the budget of snapshots being received`;
    }
    if (refusal !== null) {
      this.refusedSnapshotId = id;
      this.ctx.logger.warn({ peer: this.peerId, id, bytes: total }, `snapshot refused: ${refusal}`);
      this.sendStatus(id, false, refusal);
      return;
    }
    this.snapshot = { id, message, buffer: Buffer.allocUnsafe(total), received: 0 };
    if (total === 0) this.completeSnapshot();
  }

  private onSnapChunk(payload: Buffer): void {
    if (payload.length < SNAP_CHUNK_HEADER_BYTES) {
      throw new TransportError('TRANSPORT_FRAME_MALFORMED', 'short snapshot chunk');
    }
    const id = payload.readUInt32BE(0);
    const offset = payload.readUIntBE(4, 6);
    const s = this.snapshot;
    if (s === null || s.id !== id) {
      if (id === this.refusedSnapshotId) return;
      throw new TransportError('TRANSPORT_SNAPSHOT', `chunk of unknown snapshot ${id}`);
    }
    const length = payload.length - SNAP_CHUNK_HEADER_BYTES;
    // TCP keeps order, so chunks arrive exactly in sequence; anything else is a broken sender.
    if (offset !== s.received || offset + length > s.buffer.length) {
      throw new TransportError(
        'TRANSPORT_SNAPSHOT',
        `chunk at ${offset}+${length}, expected ${s.received} of ${s.buffer.length}`,
      );
    }
    payload.copy(s.buffer, offset, SNAP_CHUNK_HEADER_BYTES);
    s.received += length;
    if (s.received === s.buffer.length) {
      this.completeSnapshot();
    } else {
      this.socket.write(packFrame(FrameType.SnapAck, [id, s.received]));
    }
  }

  /** Forgets the stream in progress (if any) and returns its bytes to the budget. */
  private dropSnapshot(): void {
    const s = this.snapshot;
    if (s === null) return;
    this.snapshot = null;
    this.ctx.releaseSnapshotBytes(s.buffer.length);
  }

  private completeSnapshot(): void {
    const s = this.snapshot!;
    this.dropSnapshot();
    this.ctx.logger.info({ peer: this.peerId, id: s.id, bytes: s.received }, 'snapshot received');
    this.ctx.deliver(withSnapshotData(s.message, s.buffer));
    this.sendStatus(s.id, true, '');
  }

  private sendStatus(id: number, ok: boolean, reason: string): void {
    this.socket.write(packFrame(FrameType.SnapStatus, [id, ok, reason]));
  }
}
