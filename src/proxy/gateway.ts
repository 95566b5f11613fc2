/**
 * `tandem gateway`: a process that speaks the etcd v3 gRPC API to clients (etcdctl, the etcd3
 * npm client, clientv3) and routes each call to the member that should answer it, learning the
 * cluster from its members (GET /status on their client ports):
 *
 *   writes, linearizable reads, lease and membership calls → the leader (moved at once when it
 *     fails or a member says the leader changed)
 *   serializable and bounded-staleness reads → the best member (src/routing/router.ts), hedged
 *   watches → shared upstream watches, resumed exactly once on another member (watch.ts)
 *   lease keep-alives → once per lease upstream (lease.ts)
 *
 * The same port answers GET /metrics, /status and /health over HTTP (our gRPC server's HTTP
 * side). Its own gRPC server is src/api/grpc/ with the proto's codecs for every method.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Gauge, Registry } from 'prom-client';
import {
  bidiHandler,
  type CallContext,
  describeService,
  type MethodHandler,
  type ServerStreamingCall,
  type ServiceHandlers,
  serverStreamHandler,
  unaryHandler,
} from '../api/grpc/handlers.js';
import { KEEPALIVE_ENFORCEMENT_DEFAULT } from '../api/grpc/keepalive.js';
import type { Metadata } from '../api/grpc/metadata.js';
import {
  GrpcServer,
  type GrpcTlsOptions,
  STREAM_WRITE_BUFFER_BYTES_MAX,
} from '../api/grpc/server.js';
import { type CallStatus, Status } from '../api/grpc/status.js';
import {
  CONCURRENT_STREAMS_MAX_DEFAULT,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  RECEIVE_MESSAGE_BYTES_MAX_DEFAULT,
  SEND_MESSAGE_BYTES_MAX,
  SHUTDOWN_GRACE_MS,
} from '../api/limits.js';
import { loadEtcdProto, type ServiceKey, serviceDefinition } from '../api/proto.js';
import { METADATA_KEYS, REQUIRE_LEADER_KEY } from '../api/request-options.js';
import { type Decision, Router, type RouterOptions } from '../routing/router.js';
import { Dispatcher, type Route, startProbes } from './dispatch.js';
import { KeepAliveHub } from './lease.js';
import { PASSTHROUGH_CODEC, RawUpstreams } from './passthrough.js';
import { hasRequestId, routeOfBytes, staleReadAllowed } from './raw-route.js';
import { TopologyPoller } from './topology.js';
import { GrpcMetadata, type UpstreamError, Upstreams, type UpstreamTls } from './upstream.js';
import { WatchHub } from './watch.js';

/** The metadata a routed call keeps: what changes how the member answers. */
export const FORWARDED_METADATA_KEYS = [
  REQUIRE_LEADER_KEY,
  METADATA_KEYS.consistency,
  METADATA_KEYS.maxStalenessMs,
  METADATA_KEYS.ack,
  METADATA_KEYS.requestId,
  'token',
  'authorization',
] as const;

export const TOPOLOGY_START_TIMEOUT_MS = 30_000;

const SERVICES: readonly ServiceKey[] = [
  'kv',
  'watch',
  'lease',
  'cluster',
  'maintenance',
  'auth',
  'health',
];

export interface GatewayLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface GatewayOptions {
  /** Members' client endpoints (host:port or URLs): where the topology is first asked. */
  readonly endpoints: readonly string[];
  /** host:port to listen on (port 0: any free port). */
  readonly listen: string;
  /** The gateway's zone: serializable reads prefer members of it. */
  readonly zone?: string | null;
  readonly router?: Partial<RouterOptions>;
  readonly logger: GatewayLogger;
  /** TLS to members whose client URLs are https:// (their CA, a client certificate). */
  readonly upstreamTls?: UpstreamTls;
  /** TLS to the gateway's own clients (with `ca`: they must present a certificate it signed). */
  readonly tls?: GrpcTlsOptions;
  /**
   * Unary calls passed through as bytes (passthrough.ts; the default), or decoded and encoded
   * again with the proto's codecs (false: the way before, kept for the overhead bench).
   */
  readonly passthrough?: boolean;
}

export interface RoutingGateway {
  readonly port: number;
  readonly router: Router;
  status(): unknown;
  close(): Promise<void>;
}

/** Where a unary call goes, and whether it may be sent twice. */
export function routeOf(
  service: ServiceKey,
  method: string,
  request: unknown,
  metadata: Metadata,
): { route: Route; idempotent: boolean } {
  if (service === 'kv' && (method === 'Range' || method === 'Txn')) {
    const staleOk = staleReadAllowed(metadata);
    if (method === 'Range') {
      const serializable = (request as { serializable?: boolean }).serializable === true;
      return { route: serializable || staleOk ? 'read' : 'leader', idempotent: true };
    }
    const ranges = txnRanges(request);
    if (ranges === null) return { route: 'leader', idempotent: hasRequestId(metadata) };
    const serializable = ranges.length > 0 && ranges.every((r) => r.serializable === true);
    return { route: serializable || staleOk ? 'read' : 'leader', idempotent: true };
  }
  const idempotent =
    // A write with a request id is applied once however often it is sent (server/dedupe.ts).
    (service === 'kv' &&
      (method === 'Put' || method === 'DeleteRange') &&
      hasRequestId(metadata)) ||
    (service === 'lease' && (method === 'LeaseTimeToLive' || method === 'LeaseLeases')) ||
    (service === 'cluster' && method === 'MemberList') ||
    (service === 'maintenance' && ['Status', 'Hash', 'HashKV'].includes(method)) ||
    (service === 'maintenance' &&
      method === 'Alarm' &&
      (request as { action?: number }).action === 0) ||
    service === 'health';
  return { route: 'leader', idempotent };
}

interface PbOp {
  readonly requestRange?: { serializable?: boolean };
  readonly requestPut?: unknown;
  readonly requestDeleteRange?: unknown;
  readonly requestTxn?: unknown;
}

/** The ranges of a read-only txn (nested ones included), or null when it writes. */
function txnRanges(request: unknown, depth = 0): { serializable?: boolean }[] | null {
  const t = request as { success?: PbOp[]; failure?: PbOp[] };
  const ranges: { serializable?: boolean }[] = [];
  for (const op of [...(t.success ?? []), ...(t.failure ?? [])]) {
    if (op.requestRange != null) ranges.push(op.requestRange);
    else if (op.requestTxn != null && depth < 8) {
      const inner = txnRanges(op.requestTxn, depth + 1);
      if (inner === null) return null;
      ranges.push(...inner);
    } else return null;
  }
  return ranges;
}

function forwardedMetadata(from: Metadata): GrpcMetadata {
  const to = new GrpcMetadata();
  for (const key of FORWARDED_METADATA_KEYS) {
    for (const value of from.get(key)) if (typeof value === 'string') to.add(key, value);
  }
  return to;
}

function isUpstreamError(e: unknown): e is UpstreamError {
  return typeof e === 'object' && e !== null && 'code' in e && 'kind' in e && 'details' in e;
}

export async function startGateway(o: GatewayOptions): Promise<RoutingGateway> {
  loadEtcdProto();
  const router = new Router({ ...o.router, zone: o.zone ?? null });
  const upstreamTls = o.upstreamTls === undefined ? {} : { tls: o.upstreamTls };
  const upstreams = new Upstreams(upstreamTls);
  const poller = new TopologyPoller({
    seeds: o.endpoints,
    router,
    ...upstreamTls,
    onError: (err) => o.logger.debug({ err: err.message }, 'gateway: status not answered'),
  });
  await poller.start(TOPOLOGY_START_TIMEOUT_MS);
  const dispatcher = new Dispatcher(router, upstreams, poller);
  const passthrough = o.passthrough ?? true;
  const rawUpstreams = new RawUpstreams(upstreamTls);
  const rawDispatcher = new Dispatcher(router, rawUpstreams, poller);
  const watches = new WatchHub({ router, upstreams, poller });
  const keepAlives = new KeepAliveHub(router, upstreams, poller);
  const counts = { requests: new Map<string, number>(), errors: 0 };

  const unary = (service: ServiceKey, method: string): MethodHandler =>
    unaryHandler(async (request: unknown, call: CallContext) => {
      const { route, idempotent } = passthrough
        ? routeOfBytes(service, method, request as Buffer, call.metadata)
        : routeOf(service, method, request, call.metadata);
      const label = `${route}:${service}.${method}`;
      counts.requests.set(label, (counts.requests.get(label) ?? 0) + 1);
      return (passthrough ? rawDispatcher : dispatcher).call({
        service,
        method,
        request,
        metadata: forwardedMetadata(call.metadata),
        route,
        idempotent,
        signal: call.signal,
      });
    });

  const relayServerStream = (service: ServiceKey, method: string): MethodHandler =>
    serverStreamHandler((call: ServerStreamingCall<unknown, unknown>) => {
      const leader = router.pickLeader(performance.now());
      if (leader === null) {
        call.fail({ code: Status.UNAVAILABLE, details: 'tandem gateway: no leader known' });
        return;
      }
      const up = upstreams.serverStream(
        leader.clientUrl,
        service,
        method,
        call.request,
        forwardedMetadata(call.metadata),
      );
      up.on('data', (m: unknown) => {
        if (!call.write(m)) {
          up.pause();
          call.once('drain', () => up.resume());
        }
      });
      up.on('error', (e: { code: number; details: string }) =>
        call.fail({ code: e.code as CallStatus['code'], details: e.details }),
      );
      up.on('end', () => call.end());
      call.on('cancelled', () => up.cancel());
    });

  const server = new GrpcServer({
    receiveMessageBytesMax: RECEIVE_MESSAGE_BYTES_MAX_DEFAULT,
    sendMessageBytesMax: SEND_MESSAGE_BYTES_MAX,
    concurrentStreamsMax: CONCURRENT_STREAMS_MAX_DEFAULT,
    keepaliveTimeMs: KEEPALIVE_TIME_MS,
    keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
    // etcd's grpc-proxy enforces the same policy (its --grpc-keepalive-min-time, 5 s).
    keepaliveEnforcement: KEEPALIVE_ENFORCEMENT_DEFAULT,
    writeBufferBytesMax: STREAM_WRITE_BUFFER_BYTES_MAX,
    ...(o.tls === undefined ? {} : { tls: o.tls }),
    http: {
      http1: (req, res) => serveHttp(req, res),
      http2: (stream) => {
        stream.respond({ ':status': 404 });
        stream.end('use HTTP/1.1 for /metrics, /status, /health');
      },
    },
    statusOf: (err: unknown): CallStatus => {
      if (isUpstreamError(err)) {
        counts.errors++;
        return { code: err.code as CallStatus['code'], details: err.details };
      }
      o.logger.warn({ err }, 'gateway: internal error');
      return { code: Status.INTERNAL, details: 'tandem gateway: internal error' };
    },
    logger: o.logger,
  });
  for (const key of SERVICES) {
    const definition = serviceDefinition(key);
    const handlers: Record<string, MethodHandler> = {};
    const rawCodecs: Record<string, typeof PASSTHROUGH_CODEC> = {};
    for (const [name, def] of Object.entries(definition)) {
      if (passthrough && !def.requestStream && !def.responseStream)
        rawCodecs[name] = PASSTHROUGH_CODEC;
      if (key === 'watch' && name === 'Watch')
        handlers[name] = bidiHandler((c) => watches.serve(c));
      else if (key === 'lease' && name === 'LeaseKeepAlive') {
        handlers[name] = bidiHandler((c) => keepAlives.serve(c));
      } else if (def.responseStream && !def.requestStream)
        handlers[name] = relayServerStream(key, name);
      else if (!def.requestStream) handlers[name] = unary(key, name);
    }
    server.addService(describeService(definition, rawCodecs), handlers as ServiceHandlers);
  }

  const status = () => {
    const report = router.report(performance.now());
    return {
      gateway: {
        zone: o.zone ?? null,
        endpoints: o.endpoints,
        topologyRefreshes: poller.refreshes,
      },
      ...report,
      requests: Object.fromEntries(counts.requests),
      upstreamErrors: counts.errors,
      watches: {
        clientWatches: watches.clientWatches,
        upstreamWatches: watches.upstreamWatches,
        shared: watches.sharedWatches,
        resumes: watches.resumes,
        members: watches.upstreamMembers(),
      },
      leases: {
        tracked: keepAlives.trackedLeases,
        clientKeepAlives: keepAlives.clientRequests,
        upstreamKeepAlives: keepAlives.upstreamRequests,
        upstreamReopens: keepAlives.reopens,
      },
    };
  };
  const metrics = gatewayMetrics(router, watches, keepAlives);

  function serveHttp(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405).end('Method Not Allowed');
      return;
    }
    if (path === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status()));
    } else if (path === '/metrics') {
      metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        () => res.writeHead(500).end('Internal Server Error'),
      );
    } else if (path === '/health') {
      const ok = router.leader !== null;
      res
        .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
        .end(JSON.stringify({ health: String(ok), reason: ok ? '' : 'no leader known' }));
    } else res.writeHead(404).end('404 page not found');
  }

  const stopProbes = startProbes(router, upstreams);

  const port = await server.listen(o.listen);
  o.logger.info(
    { listen: o.listen, port, members: router.memberIds().length },
    'gateway: listening',
  );
  let closing: Promise<void> | null = null;
  return {
    port,
    router,
    status,
    close: () => {
      closing ??= (async () => {
        stopProbes();
        poller.close();
        watches.close();
        keepAlives.close();
        await server.close(SHUTDOWN_GRACE_MS);
        upstreams.close();
        rawUpstreams.close();
      })();
      return closing;
    },
  };
}

const DECISIONS: readonly Decision[] = [
  'leader',
  'leader-fallback',
  'read-zone',
  'read-other-zone',
  'read-ejected-fallback',
  'none',
];

function gatewayMetrics(router: Router, watches: WatchHub, keepAlives: KeepAliveHub): Registry {
  const registry = new Registry();
  const p = 'tandem_gateway_';
  const report = () => router.report(performance.now());
  new Gauge({
    name: `${p}member_latency_ewma_ms`,
    help: 'Peak EWMA latency per member, as routing sees it.',
    labelNames: ['member', 'zone', 'role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of report().members) {
        if (m.ewmaMs !== null) this.set({ member: m.name, zone: m.zone, role: m.role }, m.ewmaMs);
      }
    },
  });
  new Gauge({
    name: `${p}member_ejected`,
    help: '1 while a member is ejected or probing (reads avoid it).',
    labelNames: ['member'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of report().members) this.set({ member: m.name }, m.health === 'ok' ? 0 : 1);
    },
  });
  new Gauge({
    name: `${p}ejections_total`,
    help: 'Ejections of members (counter).',
    registers: [registry],
    collect() {
      this.set(report().ejections);
    },
  });
  new Gauge({
    name: `${p}routing_decisions_total`,
    help: 'Requests by where routing sent them (counter).',
    labelNames: ['decision'],
    registers: [registry],
    collect() {
      const d = report().decisions;
      for (const name of DECISIONS) this.set({ decision: name }, d[name]);
    },
  });
  new Gauge({
    name: `${p}hedges_total`,
    help: 'Hedged requests: sent, won (answered first), refused (budget out) (counter).',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      const h = report().hedges;
      this.set({ result: 'sent' }, h.sent);
      this.set({ result: 'won' }, h.won);
      this.set({ result: 'refused' }, h.refused);
    },
  });
  new Gauge({
    name: `${p}watches`,
    help: 'Client watches and the upstream watches they share.',
    labelNames: ['side'],
    registers: [registry],
    collect() {
      this.set({ side: 'client' }, watches.clientWatches);
      this.set({ side: 'upstream' }, watches.upstreamWatches);
    },
  });
  new Gauge({
    name: `${p}watch_resumes_total`,
    help: 'Upstream watches resumed on another member (counter).',
    registers: [registry],
    collect() {
      this.set(watches.resumes);
    },
  });
  new Gauge({
    name: `${p}keepalives_total`,
    help: 'Lease keep-alives from clients and sent upstream (counter).',
    labelNames: ['side'],
    registers: [registry],
    collect() {
      this.set({ side: 'client' }, keepAlives.clientRequests);
      this.set({ side: 'upstream' }, keepAlives.upstreamRequests);
    },
  });
  return registry;
}
