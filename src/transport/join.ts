/**
 * How a member joining a running cluster learns who it is. `member add` picks the new member's
 * id (and the cluster's id is a hash of its founders), so the joiner cannot compute them; the
 * leader dials the new member's peer URL as soon as the change is applied, and its HELLO frame
 * carries both: [clusterId, leaderId, newMemberId, nonce]. This listener takes the acceptor's
 * side of the authenticated handshake (handshake.ts) with the ids the HELLO names, and believes
 * them only once the dialer's AUTH proves it holds the cluster secret (the ids are inside the
 * proof): a stranger's HELLO, or a replayed one, names nothing. Then it closes every connection
 * (the leader redials with backoff) so the real transport can take the port — etcd's joiner
 * likewise asks the running cluster for its member id.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { NodeId } from '../raft/types.js';
import type { HostPort } from './address.js';
import { FrameDecoder, FrameType } from './frame.js';
import {
  type ClusterSecret,
  decodeAuth,
  decodeHello,
  encodeChallenge,
  type HandshakeTranscript,
  handshakeProof,
  newNonce,
  proofMatches,
} from './handshake.js';
import { HANDSHAKE_FRAME_BYTES_MAX, HANDSHAKE_TIMEOUT_MS } from './limits.js';
import { SILENT_LOGGER, type TransportLogger } from './logger.js';
import type { TransportTlsOptions } from './tls.js';

/** Connections held open at once while waiting (each holds at most one handshake frame). */
const JOIN_CONNECTIONS_MAX = 64;

export interface DialedIdentity {
  /** The cluster id, as the transport writes it (hex). */
  readonly clusterId: string;
  /** The id the cluster gave this member. */
  readonly localId: NodeId;
  /** The member that dialed (the leader that applied `member add`). */
  readonly from: NodeId;
}

export interface AwaitIdentityOptions {
  readonly listen: HostPort;
  readonly secret: ClusterSecret;
  readonly tls?: TransportTlsOptions;
  readonly logger?: TransportLogger;
  readonly signal?: AbortSignal;
}

/** Listens on the peer address until a peer's HELLO names this member; see the module comment. */
export function awaitDialedIdentity(options: AwaitIdentityOptions): Promise<DialedIdentity> {
  const logger = options.logger ?? SILENT_LOGGER;
  const sockets = new Set<net.Socket>();
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (error: Error | null, identity?: DialedIdentity): void => {
      if (settled) return;
      settled = true;
      for (const s of sockets) s.destroy();
      server.close(() => (error === null ? resolve(identity!) : reject(error)));
    };
    const onSocket = (socket: net.Socket): void => {
      if (sockets.size >= JOIN_CONNECTIONS_MAX) {
        socket.destroy();
        return;
      }
      sockets.add(socket);
      const timer = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS);
      socket.once('close', () => {
        clearTimeout(timer);
        sockets.delete(socket);
      });
      socket.on('error', () => socket.destroy());
      let transcript: HandshakeTranscript | null = null;
      const decoder = new FrameDecoder(
        {
          onFrame(type: FrameType, payload: Buffer): void {
            if (transcript === null) {
              if (type !== FrameType.Hello) throw new Error(`frame type ${type} before HELLO`);
              const hello = decodeHello(payload);
              if (hello.to === 0 || hello.from === 0 || hello.from === hello.to) {
                throw new Error('HELLO with an invalid id');
              }
              transcript = {
                clusterId: hello.clusterId,
                dialerId: hello.from,
                acceptorId: hello.to,
                dialerNonce: hello.nonce,
                acceptorNonce: newNonce(),
              };
              socket.write(
                encodeChallenge({
                  clusterId: hello.clusterId,
                  acceptorId: hello.to,
                  nonce: transcript.acceptorNonce,
                  proof: handshakeProof(options.secret, 'acceptor', transcript),
                }),
              );
              return;
            }
            decoder.stop();
            if (type !== FrameType.Auth) throw new Error(`frame type ${type} instead of AUTH`);
            if (!proofMatches(options.secret, 'dialer', transcript, decodeAuth(payload))) {
              throw new Error('the dialer failed authentication (does its cluster.secret differ?)');
            }
            finish(null, {
              clusterId: transcript.clusterId,
              from: transcript.dialerId,
              localId: transcript.acceptorId,
            });
          },
        },
        HANDSHAKE_FRAME_BYTES_MAX,
      );
      socket.on('data', (chunk: Buffer) => {
        try {
          decoder.push(chunk);
        } catch (error) {
          logger.warn(
            {
              remote: `${socket.remoteAddress}:${socket.remotePort}`,
              err: (error as Error).message,
            },
            'joining: ignored a peer connection',
          );
          socket.destroy();
        }
      });
    };
    const server =
      options.tls === undefined
        ? net.createServer(onSocket)
        : tls.createServer(
            {
              ca: readFileSync(options.tls.caFile),
              cert: readFileSync(options.tls.certFile),
              key: readFileSync(options.tls.keyFile),
              requestCert: true,
              rejectUnauthorized: true,
              minVersion: 'TLSv1.2',
            },
            onSocket,
          );
    server.once('error', (error) => finish(error));
    options.signal?.addEventListener('abort', () => finish(new Error('aborted')), { once: true });
    server.listen(options.listen.port, options.listen.host);
  });
}
