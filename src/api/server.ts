/**
 * The etcd v3 gRPC server: KV, Watch, Lease, Cluster, Maintenance, Auth and gRPC health on one
 * listener, with etcd's message size limits and keep-alive defaults, optionally over TLS. The
 * gRPC protocol itself is ./grpc/ (node:http2); the hot KV methods use hand-written codecs
 * (./proto-codec.ts), every other method the proto-loader's.
 *
 * The same listener speaks HTTP/1.1 and plain HTTP/2 as etcd's client port does: /version,
 * /health, /metrics and the JSON gateway (./gateway/), which calls these same handlers.
 */
import type { KeyObject } from 'node:crypto';
import type { EtcdBackend } from '../server/contract.js';
import { ServerError } from '../server/errors.js';
import { AuthGate } from './auth-gate.js';
import type { JwtTokens } from './auth-jwt.js';
import { type ApiLogger, type ServiceContext, statusFor } from './context.js';
import { ForwardedIdentity } from './forwarded-identity.js';
import { Http1Exchange, Http2Exchange } from './gateway/exchange.js';
import { Gateway } from './gateway/gateway.js';
import { checkHealth, versions } from './gateway/health.js';
import { ProtoJson } from './gateway/json.js';
import {
  describeService,
  type MethodDescriptor,
  type MethodHandler,
  type ServiceHandlers,
} from './grpc/handlers.js';
import { GrpcServer, STREAM_WRITE_BUFFER_BYTES_MAX } from './grpc/server.js';
import type { MemberCallTls } from './grpc-client.js';
import {
  CLIENT_CONNECTIONS_MAX_DEFAULT,
  CONCURRENT_STREAMS_MAX_DEFAULT,
  CONCURRENT_STREAMS_MAX_LIMIT,
  KEEPALIVE_MIN_TIME_MS_DEFAULT,
  KEEPALIVE_MIN_TIME_MS_MAX,
  KEEPALIVE_PERMIT_WITHOUT_STREAM_DEFAULT,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  RECEIVE_MESSAGE_BYTES_MAX_DEFAULT,
  SEND_MESSAGE_BYTES_MAX,
  SHUTDOWN_GRACE_MS,
} from './limits.js';
import { loadEtcdProto } from './proto.js';
import { KV_CODECS } from './proto-codec.js';
import { REQUEST_DEFAULTS, type RequestDefaults } from './request-options.js';
import { lazyServiceDefinition } from './service-methods.js';
import { ACK_SERVICE, ackService } from './services/ack.js';
import { authService } from './services/auth.js';
import { clusterService } from './services/cluster.js';
import { electionService } from './services/election.js';
import { healthService, healthState } from './services/health.js';
import { kvService } from './services/kv.js';
import { leaseService } from './services/lease.js';
import { lockService } from './services/lock.js';
import { maintenanceService } from './services/maintenance.js';
import { watchService } from './services/watch.js';
import {
  StandbyForwarder,
  withLeaderForwarding,
  withStandbyForwarding,
} from './standby-forward.js';

export type { ApiLogger } from './context.js';

/**
 * The .proto files load this long after the port opens (unless a call needed them sooner): off
 * a restarted member's path to serving, before most clients' first Watch or Lease call.
 */
export const PROTO_WARM_UP_DELAY_MS = 1000;

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
  /** etcd's --max-concurrent-streams: HTTP/2 streams open at once on one connection. */
  readonly concurrentStreamsMax: number;
  /** Client connections open at once (etcd has no such limit; it leaves it to the OS). */
  readonly connectionsMax: number;
  /** etcd's --grpc-keepalive-min-time: clients pinging more often are sent away. */
  readonly keepaliveMinTimeMs: number;
  /** Pings with no stream open are held to keepaliveMinTimeMs only (etcd: false, 2 h). */
  readonly keepalivePermitWithoutStream: boolean;
}

export const API_LIMITS_DEFAULT: ApiLimits = Object.freeze({
  receiveMessageBytesMax: RECEIVE_MESSAGE_BYTES_MAX_DEFAULT,
  concurrentStreamsMax: CONCURRENT_STREAMS_MAX_DEFAULT,
  connectionsMax: CLIENT_CONNECTIONS_MAX_DEFAULT,
  keepaliveMinTimeMs: KEEPALIVE_MIN_TIME_MS_DEFAULT,
  keepalivePermitWithoutStream: KEEPALIVE_PERMIT_WITHOUT_STREAM_DEFAULT,
});

export interface ApiServerOptions {
  readonly backend: EtcdBackend;
  /** This member's name: a call it forwards says who forwarded it. */
  readonly name?: string;
  /** Every gRPC call's end: method path, kind, status code, seconds (for metrics). */
  readonly onCallEnd?: (path: string, kind: string, code: number, seconds: number) => void;
  /** host:port; port 0 picks a free one (see `port` of the result). */
  readonly listen: string;
  readonly tls?: ApiTlsOptions;
  /** What this member presents when it forwards a call to another's `https://` client port. */
  readonly memberTls?: MemberCallTls;
  readonly logger: ApiLogger;
  /** Read consistency and write ack of requests whose metadata names none. */
  readonly defaults?: RequestDefaults;
  readonly limits?: Partial<ApiLimits>;
  /** This member's Prometheus registry, served at GET /metrics on the client port too. */
  readonly metrics?: { readonly contentType: string; scrape(): Promise<string> };
  /** JWT tokens instead of simple ones (etcd's --auth-token jwt,...). */
  readonly jwt?: JwtTokens;
  /**
   * The cluster secret: signs and verifies the user a member states for a certificate-only
   * client's call it forwards (forwarded-identity.ts). Absent: no such statement is made or
   * accepted (a forwarded certificate-only call then runs as the forwarding member's CN).
   */
  readonly clusterSecret?: KeyObject;
  /** Streaming calls (watch, keep-alive, snapshot) open through the JSON gateway at once. */
  readonly gatewayStreamsMax?: number;
  /** The member's status JSON, served at GET /status on the client port too (see Gateway). */
  readonly status?: () => unknown;
  /** When the .proto files load if no call needed them first (default PROTO_WARM_UP_DELAY_MS; null: never). */
  readonly protoWarmUpMs?: number | null;
}

export interface ApiServer {
  readonly port: number;
  /**
   * The admin endpoint's guard: resolves when auth is off or `token` is the root user's; else
   * throws the AuthError (see AuthGate.checkAdminToken).
   */
  authorizeAdmin(token: string | undefined): Promise<void>;
  /** Stops accepting calls, lets running ones finish for a short grace, then cancels the rest. */
  close(): Promise<void>;
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const limits: ApiLimits = { ...API_LIMITS_DEFAULT, ...options.limits };
  if (!Number.isSafeInteger(limits.receiveMessageBytesMax) || limits.receiveMessageBytesMax < 1) {
    throw new RangeError('limits.receiveMessageBytesMax must be a positive integer');
  }
  const streamsMax = limits.concurrentStreamsMax;
  if (
    !Number.isSafeInteger(streamsMax) ||
    streamsMax < 1 ||
    streamsMax > CONCURRENT_STREAMS_MAX_LIMIT
  ) {
    throw new RangeError(
      `limits.concurrentStreamsMax must be an integer in [1, ${CONCURRENT_STREAMS_MAX_LIMIT}]`,
    );
  }
  const minTimeMs = limits.keepaliveMinTimeMs;
  if (!Number.isSafeInteger(minTimeMs) || minTimeMs < 1 || minTimeMs > KEEPALIVE_MIN_TIME_MS_MAX) {
    throw new RangeError(
      `limits.keepaliveMinTimeMs must be an integer in [1, ${KEEPALIVE_MIN_TIME_MS_MAX}]`,
    );
  }
  const auth = new AuthGate(options.backend, {
    clientCertAuth: options.tls?.ca !== undefined,
    ...(options.jwt !== undefined && { jwt: options.jwt }),
    ...(options.clusterSecret !== undefined && {
      forwardedIdentity: new ForwardedIdentity(options.clusterSecret),
    }),
  });
  const ctx: ServiceContext = {
    backend: options.backend,
    auth,
    logger: options.logger,
    defaults: options.defaults ?? REQUEST_DEFAULTS,
    streams: new Set(),
  };
  const standbyForwarder = new StandbyForwarder(
    options.name ?? 'tandem',
    options.memberTls ?? null,
    (call) => auth.forwardedIdentityOf(call),
  );
  const health = healthState();
  const services: Array<[Record<string, MethodDescriptor>, ServiceHandlers]> = [
    [
      describeService(lazyServiceDefinition('kv'), KV_CODECS),
      withStandbyForwarding(ctx, 'kv', kvService(ctx), standbyForwarder),
    ],
    [
      describeService(lazyServiceDefinition('watch')),
      withStandbyForwarding(ctx, 'watch', watchService(ctx), standbyForwarder),
    ],
    [
      describeService(lazyServiceDefinition('lease')),
      withStandbyForwarding(ctx, 'lease', leaseService(ctx), standbyForwarder),
    ],
    [
      describeService(lazyServiceDefinition('cluster')),
      withLeaderForwarding(ctx, 'cluster', clusterService(ctx), standbyForwarder, [
        'MemberPromote',
      ]),
    ],
    [describeService(lazyServiceDefinition('maintenance')), maintenanceService(ctx)],
    [describeService(lazyServiceDefinition('auth')), authService(ctx)],
    [describeService(lazyServiceDefinition('health')), healthService(ctx, health)],
    [describeService(ACK_SERVICE), ackService(ctx)],
    [
      describeService(lazyServiceDefinition('lock')),
      withStandbyForwarding(ctx, 'lock', lockService(ctx), standbyForwarder),
    ],
    [
      describeService(lazyServiceDefinition('election')),
      withStandbyForwarding(ctx, 'election', electionService(ctx), standbyForwarder),
    ],
  ];
  const statusOf = (err: unknown, path: string) => statusFor(ctx, path, err);
  const handlers = new Map<string, MethodHandler>();
  for (const [descriptors, service] of services) {
    for (const [name, descriptor] of Object.entries(descriptors)) {
      const handler = service[name];
      if (handler !== undefined) handlers.set(descriptor.path, handler);
    }
  }
  const gateway = new Gateway({
    json: new ProtoJson(),
    handlers,
    statusOf,
    version: () => versions(options.backend),
    health: (serializable, excluded) => checkHealth(options.backend, serializable, excluded),
    ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    ...(options.status === undefined ? {} : { status: options.status }),
    bodyBytesMax: limits.receiveMessageBytesMax,
    ...(options.gatewayStreamsMax === undefined ? {} : { streamsMax: options.gatewayStreamsMax }),
    writeBufferBytesMax: STREAM_WRITE_BUFFER_BYTES_MAX,
    logger: options.logger,
  });
  const server = new GrpcServer({
    receiveMessageBytesMax: limits.receiveMessageBytesMax,
    sendMessageBytesMax: SEND_MESSAGE_BYTES_MAX,
    concurrentStreamsMax: limits.concurrentStreamsMax,
    connectionsMax: limits.connectionsMax,
    keepaliveTimeMs: KEEPALIVE_TIME_MS,
    keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
    keepaliveEnforcement: {
      minTimeMs: limits.keepaliveMinTimeMs,
      permitWithoutStream: limits.keepalivePermitWithoutStream,
    },
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    http: {
      http1: (req, res) => gateway.handle(new Http1Exchange(req, res)),
      http2: (stream, headers, raw) => gateway.handle(new Http2Exchange(stream, headers, raw)),
    },
    statusOf,
    ...(options.onCallEnd === undefined ? {} : { onCallEnd: options.onCallEnd }),
    logger: options.logger,
  });
  for (const [descriptors, service] of services) server.addService(descriptors, service);

  const port = await server.listen(options.listen);
  const warmUpMs =
    options.protoWarmUpMs === undefined ? PROTO_WARM_UP_DELAY_MS : options.protoWarmUpMs;
  const protoWarmUp = warmUpMs === null ? undefined : setTimeout(loadEtcdProto, warmUpMs);
  protoWarmUp?.unref();
  options.logger.info(
    { listen: options.listen, port, tls: options.tls !== undefined },
    'api: listening',
  );

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearTimeout(protoWarmUp);
      health.serving = false;
      const stopped = new ServerError('STOPPED', 'etcdserver: server stopped');
      for (const end of [...ctx.streams]) end(stopped);
      await server.close(SHUTDOWN_GRACE_MS);
      standbyForwarder.close();
      options.logger.info({ port }, 'api: closed');
    })();
    return closing;
  };
  return { port, close, authorizeAdmin: (token) => ctx.auth.checkAdminToken(token) };
}
