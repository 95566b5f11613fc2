/**
 * What every service handler shares: the backend, the logger, the request defaults, and the
 * wrapper that turns an async handler into a grpc-js unary handler that never throws past it.
 */

import type { EventEmitter } from 'node:events';
import type {
  handleUnaryCall,
  Metadata,
  ServerUnaryCall,
  ServerWritableStream,
  sendUnaryData,
} from '@grpc/grpc-js';
import type { EtcdBackend, RequestOptions } from '../server/contract.js';
import { toWireStatus } from './errors.js';
import { type RequestDefaults, requestOptions } from './request-options.js';

/** The subset of pino's API the edge uses; inject pino itself or any compatible logger. */
export interface ApiLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ServiceContext {
  readonly backend: EtcdBackend;
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
export function plainOptions(
  ctx: ServiceContext,
  metadata: Metadata,
  signal: AbortSignal,
): RequestOptions {
  return requestOptions(metadata, ctx.defaults, false, signal);
}

/** An AbortSignal that fires when the client cancels or its deadline passes. */
export function callSignal(call: EventEmitter): AbortSignal {
  const controller = new AbortController();
  call.on('cancelled', () => controller.abort());
  return controller.signal;
}

/** Maps any thrown value to a status; bugs are logged with their stack, never rethrown. */
export function statusFor(ctx: ServiceContext, method: string, err: unknown) {
  const status = toWireStatus(err);
  if (!status.known) ctx.logger.error({ err, method }, 'api: unexpected error');
  else ctx.logger.debug({ method, code: status.code, details: status.details }, 'api: refused');
  return { code: status.code, details: status.details };
}

export type UnaryHandler<Req, Res> = (
  request: Req,
  call: ServerUnaryCall<Req, Res>,
  signal: AbortSignal,
) => Promise<Res>;

export function unary<Req, Res>(
  ctx: ServiceContext,
  method: string,
  handler: UnaryHandler<Req, Res>,
): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const signal = callSignal(call);
    let promise: Promise<Res>;
    try {
      promise = handler(call.request, call, signal);
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.then(
      (response) => callback(null, response),
      (err: unknown) => callback(statusFor(ctx, method, err)),
    );
  };
}

/** Ends a server-streaming call with the status for `err`. */
export function failStream(
  ctx: ServiceContext,
  method: string,
  call: Pick<ServerWritableStream<unknown, unknown>, 'emit'>,
  err: unknown,
): void {
  call.emit('error', statusFor(ctx, method, err));
}
