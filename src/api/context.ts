/**
 * What every service handler shares: the backend, the logger, the request defaults; the map
 * from thrown errors to statuses; and `unary`, the typed way to declare a unary method.
 */

import { AuthError } from '../kv/auth/errors.js';
import type { EtcdBackend, RequestOptions } from '../server/contract.js';
import { ServerError } from '../server/errors.js';
import type { AuthGate } from './auth-gate.js';
import { toWireStatus } from './errors.js';
import {
  type CallContext,
  type MethodHandler,
  type ServiceHandlers,
  type UnaryHandler,
  unaryHandler,
} from './grpc/handlers.js';
import { type CallStatus, ForwardedStatus, Status } from './grpc/status.js';
import { type RequestDefaults, requestOptions, requiresLeader } from './request-options.js';

/** The subset of pino's API the edge uses; inject pino itself or any compatible logger. */
export interface ApiLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ServiceContext {
  readonly backend: EtcdBackend;
  /** etcd's permission checks (one boolean when auth is disabled). */
  readonly auth: AuthGate;
  readonly logger: ApiLogger;
  readonly defaults: RequestDefaults;
  /**
   * Open streaming calls (watch, keep-alive), each with a function that ends it with a status:
   * closing the server ends them as etcd does (Unavailable, "server stopped"), so that clients
   * reconnect elsewhere at once instead of waiting out the shutdown grace.
   */
  readonly streams: Set<(err: unknown) => void>;
}

/** Options of a request that reads nothing or only writes (no serializable flag). */
export function plainOptions(ctx: ServiceContext, call: CallContext): RequestOptions {
  return requestOptions(call.metadata, ctx.defaults, false, call.signal);
}

/** Maps any thrown value to a status; bugs are logged with their stack, never rethrown. */
export function statusFor(ctx: ServiceContext, method: string, err: unknown): CallStatus {
  const status = toWireStatus(err);
  if (!status.known) ctx.logger.error({ err, method }, 'api: unexpected error');
  else ctx.logger.debug({ method, code: status.code, details: status.details }, 'api: refused');
  return { code: status.code, details: status.details };
}

/**
 * etcd's unary interceptor for `hasleader: true` (clientv3's WithRequireLeader): every unary
 * method of `handlers` is refused with NO_LEADER (Unavailable, "etcdserver: no leader") while
 * this member knows no leader, before the method runs. Streams are left as they are.
 */
export function withLeaderCheck(ctx: ServiceContext, handlers: ServiceHandlers): ServiceHandlers {
  return wrapUnary(handlers, (handle) => (request, call) => {
    if (requiresLeader(call.metadata) && !ctx.backend.hasLeader()) {
      return Promise.reject(new ServerError('NO_LEADER', 'etcdserver: no leader'));
    }
    return handle(request, call);
  });
}

/**
 * etcd's IsAdminPermitted before each unary method named in `names` (the Cluster membership
 * changes, Maintenance's Defragment, Hash and HashKV in etcd 3.4): root only while auth is on.
 */
export function withAdminCheck(
  ctx: ServiceContext,
  handlers: ServiceHandlers,
  names: readonly string[],
  errors: 'etcd' | 'raw' = 'etcd',
): ServiceHandlers {
  return wrapUnary(handlers, (handle, name) => {
    if (!names.includes(name)) return handle;
    return async (request, call) => {
      if (ctx.auth.enabled()) await checkAdmin(ctx, call, errors);
      return handle(request, call);
    };
  });
}

/**
 * The caller must be root. `raw`: refusals as etcd 3.4's authMaintenanceServer sends them, the
 * auth store's own text with status Unknown (it skips the translation to etcd's gRPC errors).
 */
export async function checkAdmin(
  ctx: ServiceContext,
  call: CallContext,
  errors: 'etcd' | 'raw',
): Promise<void> {
  try {
    await ctx.auth.checkAdmin(call);
  } catch (error) {
    if (errors === 'raw' && error instanceof AuthError) {
      throw new ForwardedStatus({ code: Status.UNKNOWN, details: error.message });
    }
    throw error;
  }
}

/** `handlers` with every unary method replaced by `wrap(handle, name)`; streams as they are. */
export function wrapUnary(
  handlers: ServiceHandlers,
  wrap: (handle: UnaryHandler<unknown, unknown>, name: string) => UnaryHandler<unknown, unknown>,
): ServiceHandlers {
  const wrapped: Record<string, MethodHandler> = {};
  for (const [name, handler] of Object.entries(handlers)) {
    wrapped[name] = handler.kind === 'unary' ? unaryHandler(wrap(handler.handle, name)) : handler;
  }
  return wrapped;
}

/**
 * A unary method: the handler resolves with the response or throws; the server answers a throw
 * with `statusFor` (the server is built with it).
 */
export function unary<Req, Res>(
  handler: (request: Req, call: CallContext) => Promise<Res>,
): MethodHandler {
  return unaryHandler(handler);
}
