/**
 * How a member joining a running cluster learns who it is. `member add` picks the new member's
 * id (and the cluster's id is a hash of its founders), so the joiner cannot compute them; the
 * leader dials the new member's peer URL as soon as the change is applied, and its HELLO frame
 * carries both: [clusterId, leaderId, newMemberId]. This listener reads that first HELLO, then
 * closes every connection (the leader redials with backoff) so the real transport can take the
 * port — etcd's joiner likewise asks the running cluster for its member id.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { NodeId } from '../raft/types.js';
import type { HostPort } from './address.js';
import { expectArray, expectString, expectUint, unpackPayload } from './codec.js';
import { FrameDecoder, FrameType } from './frame.js';
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
      const decoder = new FrameDecoder(
        {
          onFrame(type: FrameType, payload: Buffer): void {
            decoder.stop();
            if (type !== FrameType.Hello) throw new Error(`frame type ${type} before HELLO`);
            const t = expectArray(unpackPayload(payload), 3, 'hello');
            const identity: DialedIdentity = {
              clusterId: expectString(t[0], 'hello.clusterId'),
              from: expectUint(t[1], 'hello.from'),
              localId: expectUint(t[2], 'hello.to'),
            };
            if (identity.localId === 0 || identity.from === 0 || identity.clusterId === '') {
              throw new Error('HELLO with an empty id');
            }
            finish(null, identity);
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
