/**
 * A stranger on the peer port, for the tests: a raw TCP socket that writes frames by hand and
 * records what comes back (frames, and when the other side closes). Every wait is bounded.
 */
import net from 'node:net';
import { newMessage } from '../../src/raft/raft.js';
import { MessageType, type NodeId } from '../../src/raft/types.js';
import { unpackPayload } from '../../src/transport/codec.js';
import { FrameDecoder, FrameType } from '../../src/transport/frame.js';
import {
  type ClusterSecret,
  decodeChallenge,
  encodeAuth,
  encodeHello,
  type HandshakeTranscript,
  handshakeProof,
  newNonce,
} from '../../src/transport/handshake.js';
import { FRAME_BYTES_MAX } from '../../src/transport/limits.js';
import { encodeMessagesFrame } from '../../src/transport/message-codec.js';
import { sleep } from './helpers.js';

export interface ReceivedFrame {
  readonly type: FrameType;
  readonly payload: Buffer;
}

export class RawPeer {
  readonly frames: ReceivedFrame[] = [];
  closed = false;
  closedAtMs = 0;
  readonly openedAtMs = performance.now();
  private readonly decoder: FrameDecoder;

  private constructor(readonly socket: net.Socket) {
    this.decoder = new FrameDecoder(
      { onFrame: (type, payload) => this.frames.push({ type, payload }) },
      FRAME_BYTES_MAX,
    );
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      this.closed = true;
      this.closedAtMs = performance.now();
    });
  }

  /** Connects to `address` (host:port), from `localAddress` when given (e.g. 127.0.0.2). */
  static connect(address: string, localAddress?: string): Promise<RawPeer> {
    const at = address.lastIndexOf(':');
    const host = address.slice(0, at);
    const port = Number(address.slice(at + 1));
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, ...(localAddress && { localAddress }) });
      const peer = new RawPeer(socket);
      socket.once('connect', () => resolve(peer));
      socket.once('error', reject);
    });
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** Resolves with the first frame of `type` (null when closed first or after `timeoutMs`). */
  async frame(type: FrameType, timeoutMs = 3_000): Promise<ReceivedFrame | null> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find((f) => f.type === type);
      if (found !== undefined) return found;
      if (this.closed || performance.now() > deadline) return null;
      await sleep(5);
    }
  }

  /** True once the other side closed the connection within `timeoutMs`. */
  async waitClosed(timeoutMs = 3_000): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.closed && performance.now() < deadline) await sleep(5);
    return this.closed;
  }

  /** The reasons of the REFUSE frames received. */
  refusals(): string[] {
    return this.frames
      .filter((f) => f.type === FrameType.Refuse)
      .map((f) => String((unpackPayload(f.payload) as unknown[])[0]));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface HandshakeAttempt {
  readonly hello: Buffer;
  readonly auth: Buffer | null;
  /** HELLO_OK arrived: the acceptor took us for an authenticated peer. */
  readonly accepted: boolean;
  readonly peer: RawPeer;
}

/**
 * Plays the dialer's side by hand: HELLO as `from` to `to`, then AUTH made with `secret` (or the
 * given `auth` frame, e.g. a replayed one) once the CHALLENGE arrives. Does not check the
 * acceptor's proof (a stranger would not care); returns what was sent and whether it got in.
 */
export async function attemptHandshake(
  peer: RawPeer,
  o: {
    clusterId: string;
    from: NodeId;
    to: NodeId;
    secret: ClusterSecret;
    hello?: Buffer;
    auth?: Buffer;
  },
): Promise<HandshakeAttempt> {
  const nonce = newNonce();
  const hello = o.hello ?? encodeHello({ clusterId: o.clusterId, from: o.from, to: o.to, nonce });
  peer.write(hello);
  const challenge = await peer.frame(FrameType.Challenge);
  if (challenge === null) return { hello, auth: null, accepted: false, peer };
  const c = decodeChallenge(challenge.payload);
  const transcript: HandshakeTranscript = {
    clusterId: o.clusterId,
    dialerId: o.from,
    acceptorId: o.to,
    dialerNonce: nonce,
    acceptorNonce: c.nonce,
  };
  const auth = o.auth ?? encodeAuth(handshakeProof(o.secret, 'dialer', transcript));
  peer.write(auth);
  const ok = await peer.frame(FrameType.HelloOk);
  return { hello, auth, accepted: ok !== null, peer };
}

/** A MESSAGES frame of one heartbeat at `term` (what a forger would send to disrupt). */
export function forgedHeartbeat(from: NodeId, to: NodeId, term: number): Buffer {
  return encodeMessagesFrame([newMessage({ type: MessageType.Heartbeat, to, from, term })]);
}

/** A frame header announcing `length` bytes (version byte as given), and nothing after it. */
export function frameHeader(type: FrameType, length: number, version: number): Buffer {
  const header = Buffer.alloc(6);
  header.writeUInt32BE(length, 0);
  header[4] = version;
  header[5] = type;
  return header;
}
