/**
 * The etcd v3 gRPC server: KV, Watch, Lease, Cluster, Maintenance, Auth and gRPC health on one
 * listener, with etcd's message size limits and keep-alive defaults, optionally over TLS.
 */
import { type ChannelOptions, Server, ServerCredentials } from '@grpc/grpc-js';
import type { EtcdBackend } from '../server/contract.js';
import { ServerError } from '../server/errors.js';
import type { ApiLogger, ServiceContext } from './context.js';
import {
  CONCURRENT_STREAMS_MAX_DEFAULT,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  RECEIVE_MESSAGE_BYTES_MAX_DEFAULT,
  SEND_MESSAGE_BYTES_MAX,
  SHUTDOWN_GRACE_MS,
} from './limits.js';
import { loadEtcdProto, serviceDefinition } from './proto.js';
import { REQUEST_DEFAULTS, type RequestDefaults } from './request-options.js';
import { ACK_SERVICE, ackService } from './services/ack.js';
import { authService } from './services/auth.js';
import { clusterService } from './services/cluster.js';
import { healthService, healthState } from './services/health.js';
import { kvService } from './services/kv.js';
import { leaseService } from './services/lease.js';
import { maintenanceService } from './services/maintenance.js';
import { watchService } from './services/watch.js';

export type { ApiLogger } from './context.js';

export interface ApiTlsOptions {
  /** PEM certificate chain of the server. */
  readonly cert: Buffer | string;
  /** PEM private key of the server. */
  readonly key: Buffer | string;
  /** PEM CA bundle; when given, clients must present a certificate it signed (etcd's --client-cert-auth). */
  readonly ca?: Buffer | string;
}

export interface ApiLimits {
  /** gRPC receive limit: etcd's --max-request-bytes plus its 512 KiB gRPC overhead. */
  readonly receiveMessageBytesMax: number;
  /** etcd's --max-concurrent-streams. */
  readonly concurrentStreamsMax: number;
}

export const API_LIMITS_DEFAULT: ApiLimits = Object.freeze({
  receiveMessageBytesMax: RECEIVE_MESSAGE_BYTES_MAX_DEFAULT,
  concurrentStreamsMax: CONCURRENT_STREAMS_MAX_DEFAULT,
});

export interface ApiServerOptions {
  readonly backend: EtcdBackend;
  /** host:port; port 0 picks a free one (see `port` of the result). */
  readonly listen: string;
  readonly tls?: ApiTlsOptions;
  readonly logger: ApiLogger;
  /** Read consistency and write ack of requests whose metadata names none. */
  readonly defaults?: RequestDefaults;
  readonly limits?: Partial<ApiLimits>;
}

export interface ApiServer {
  readonly port: number;
  /** Stops accepting calls, lets running ones finish for a short grace, then cancels the rest. */
  close(): Promise<void>;
}

function channelOptions(limits: ApiLimits): ChannelOptions {
  return {
    'grpc.max_receive_message_length': limits.receiveMessageBytesMax,
    'grpc.max_send_message_length': SEND_MESSAGE_BYTES_MAX,
    'grpc.max_concurrent_streams': limits.concurrentStreamsMax,
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    // etcd also enforces a 5 s minimum between client pings (--grpc-keepalive-min-time);
    // grpc-js servers have no such enforcement, so clients pinging more often are tolerated.
  };
}

function credentials(tls: ApiTlsOptions | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  const ca = tls.ca === undefined ? null : Buffer.from(tls.ca);
  return ServerCredentials.createSsl(
    ca,
    [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }],
    ca !== null,
  );
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const limits: ApiLimits = { ...API_LIMITS_DEFAULT, ...options.limits };
  if (!Number.isSafeInteger(limits.receiveMessageBytesMax) || limits.receiveMessageBytesMax < 1) {
    throw new RangeError('limits.receiveMessageBytesMax must be a positive integer');
  }
  const ctx: ServiceContext = {
    backend: options.backend,
    logger: options.logger,
    defaults: options.defaults ?? REQUEST_DEFAULTS,
    streams: new Set(),
  };
  loadEtcdProto();
  const health = healthState();
  const server = new Server(channelOptions(limits));
  server.addService(serviceDefinition('kv'), kvService(ctx));
  server.addService(serviceDefinition('watch'), watchService(ctx));
  server.addService(serviceDefinition('lease'), leaseService(ctx));
  server.addService(serviceDefinition('cluster'), clusterService(ctx));
  server.addService(serviceDefinition('maintenance'), maintenanceService(ctx));
  server.addService(serviceDefinition('auth'), authService(ctx));
  server.addService(serviceDefinition('health'), healthService(ctx, health));
  server.addService(ACK_SERVICE, ackService(ctx));

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, credentials(options.tls), (err, bound) =>
      err === null ? resolve(bound) : reject(err),
    );
  });
  options.logger.info(
    { listen: options.listen, port, tls: options.tls !== undefined },
    'api: listening',
  );

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      health.serving = false;
      const stopped = new ServerError('STOPPED', 'etcdserver: server stopped');
      for (const end of [...ctx.streams]) end(stopped);
      const force = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
      force.unref();
      server.tryShutdown(() => {
        clearTimeout(force);
        options.logger.info({ port }, 'api: closed');
        resolve();
      });
    });
    return closing;
  };
  return { port, close };
}
