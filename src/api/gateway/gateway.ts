/**
 * The HTTP side of the client port, as etcd serves it beside gRPC: `GET /version`,
 * `GET /health`, `GET /metrics`, and the grpc-gateway JSON API under `/v3/` (and `/v3beta/`).
 *
 * Every `/v3/` route calls the very handler the gRPC server calls for that method, with the
 * request converted from JSON (json.ts) and a call object that writes JSON (call.ts), so
 * validation, forwarding, errors and metrics stay in the services.
 *
 * Limits: a body larger than the gRPC receive limit is refused (413) unread; streaming calls
 * (watch, keep-alive, snapshot) open at once through the gateway are bounded (429 past it);
 * a stream's unsent output is bounded as a gRPC stream's is.
 */
import type { Type } from 'protobufjs';
import { assert } from '../../util/assert.js';
import type { MethodHandler } from '../grpc/handlers.js';
import { type CallStatus, Status } from '../grpc/status.js';
import { GatewayCall, JSON_HEADERS } from './call.js';
import type { HttpExchange } from './exchange.js';
import type { Health } from './health.js';
import { JsonMappingError, type ProtoJson } from './json.js';
import { canonicalPath, GATEWAY_ROUTES, type GatewayRoute } from './routes.js';
import { httpStatusOf, unaryErrorBody } from './status.js';

/** Streaming calls (watch, keep-alive, snapshot) open through the gateway at once. */
export const GATEWAY_STREAMS_MAX_DEFAULT = 10_000;

const TEXT_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/plain; charset=utf-8',
  'x-content-type-options': 'nosniff',
});

export interface GatewayLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface GatewayOptions {
  readonly json: ProtoJson;
  /** Every service method by its gRPC path ("/etcdserverpb.KV/Range"). */
  readonly handlers: ReadonlyMap<string, MethodHandler>;
  /** The status for a handler's error (the gRPC server's own function). */
  readonly statusOf: (err: unknown, path: string) => CallStatus;
  readonly version: () => Promise<{ etcdserver: string; etcdcluster: string }>;
  readonly health: (serializable: boolean, excludedAlarms: ReadonlySet<string>) => Promise<Health>;
  /** This member's Prometheus registry; without it /metrics is 404. */
  readonly metrics?: { readonly contentType: string; scrape(): Promise<string> };
  /**
   * The member's status JSON (the admin port's /status): how a gateway or client given only
   * client URLs learns roles, zones and the leader. Without it /status is 404.
   */
  readonly status?: () => unknown;
  readonly bodyBytesMax: number;
  readonly streamsMax?: number;
  readonly writeBufferBytesMax: number;
  readonly logger: GatewayLogger;
}

/** A routed method; its message types are resolved on its first call (protobufjs loads then). */
class BoundMethod {
  private types: { readonly request: Type; readonly response: Type } | null = null;

  constructor(
    readonly path: string,
    readonly handler: MethodHandler,
    private readonly json: ProtoJson,
    private readonly route: GatewayRoute,
  ) {}

  get request(): Type {
    return this.resolved().request;
  }

  get response(): Type {
    return this.resolved().response;
  }

  private resolved(): { readonly request: Type; readonly response: Type } {
    this.types ??= this.json.methodTypes(this.route.service, this.route.method);
    return this.types;
  }
}

export class Gateway {
  private readonly methods = new Map<string, BoundMethod>();
  private readonly streamsMax: number;
  private streamsOpen = 0;

  constructor(private readonly o: GatewayOptions) {
    assert(o.bodyBytesMax > 0 && o.writeBufferBytesMax > 0);
    this.streamsMax = o.streamsMax ?? GATEWAY_STREAMS_MAX_DEFAULT;
    assert(this.streamsMax >= 1);
    for (const [httpPath, route] of GATEWAY_ROUTES) {
      const path = `/${route.service}/${route.method}`;
      const handler = o.handlers.get(path);
      if (handler === undefined) continue; // a method tandem does not serve: 404, as unrouted
      this.methods.set(httpPath, new BoundMethod(path, handler, o.json, route));
    }
  }

  /** Streaming calls open now. */
  get openStreams(): number {
    return this.streamsOpen;
  }

  handle(ex: HttpExchange): void {
    const path = canonicalPath(ex.path);
    switch (path) {
      case '/version':
        if (allowOnly(ex, 'GET')) this.serveVersion(ex);
        return;
      case '/health':
        if (allowOnly(ex, 'GET')) this.serveHealth(ex);
        return;
      case '/metrics':
        if (this.o.metrics !== undefined) {
          this.serveMetrics(ex, this.o.metrics);
          return;
        }
        break;
      case '/status':
        if (this.o.status !== undefined) {
          if (allowOnly(ex, 'GET')) reply(ex, 200, JSON_HEADERS, JSON.stringify(this.o.status()));
          return;
        }
        break;
    }
    const method = this.methods.get(path);
    if (method === undefined) {
      // grpc-gateway's answer under /v3/, Go's ServeMux's elsewhere.
      replyText(ex, 404, path.startsWith('/v3/') ? 'Not Found' : '404 page not found');
      return;
    }
    if (ex.method !== 'POST') {
      replyText(ex, 405, 'Method Not Allowed');
      return;
    }
    this.serveMethod(ex, method).catch((err: unknown) => {
      this.o.logger.warn({ err, path }, 'gateway: request failed');
      if (!ex.done && !ex.headersSent) {
        replyStatus(ex, { code: Status.INTERNAL, details: 'internal error' });
      } else if (!ex.done) ex.destroy();
    });
  }

  private serveVersion(ex: HttpExchange): void {
    this.o.version().then(
      (v) => reply(ex, 200, JSON_HEADERS, JSON.stringify(v)),
      (err: unknown) => this.failPlain(ex, err, '/version'),
    );
  }

  private serveHealth(ex: HttpExchange): void {
    const serializable = ex.query.get('serializable') === 'true';
    const excluded = new Set(ex.query.getAll('exclude'));
    this.o.health(serializable, excluded).then(
      (h) => {
        const body = JSON.stringify({ health: h.health, reason: h.reason });
        if (h.health === 'true') reply(ex, 200, TEXT_HEADERS, body);
        else replyText(ex, 503, body);
      },
      (err: unknown) => this.failPlain(ex, err, '/health'),
    );
  }

  private serveMetrics(
    ex: HttpExchange,
    metrics: { readonly contentType: string; scrape(): Promise<string> },
  ): void {
    metrics.scrape().then(
      (text) => reply(ex, 200, { 'content-type': metrics.contentType }, text),
      (err: unknown) => this.failPlain(ex, err, '/metrics'),
    );
  }

  private failPlain(ex: HttpExchange, err: unknown, path: string): void {
    this.o.logger.warn({ err, path }, 'gateway: request failed');
    replyText(ex, 500, 'Internal Server Error');
  }

  private async serveMethod(ex: HttpExchange, method: BoundMethod): Promise<void> {
    let body: Buffer | null;
    try {
      body = await ex.readBody(this.o.bodyBytesMax);
    } catch {
      return; // the client went away mid-request
    }
    if (body === null) {
      const details = `grpc: received message larger than max (more than ${this.o.bodyBytesMax} bytes)`;
      reply(ex, 413, JSON_HEADERS, unaryErrorBody({ code: Status.RESOURCE_EXHAUSTED, details }));
      return;
    }
    const kind = method.handler.kind;
    let requests: unknown[];
    try {
      const values = parseJsonValues(body.toString('utf8'));
      if (kind !== 'bidi' && values.length > 1) {
        throw new JsonMappingError('more than one JSON value in the request body');
      }
      const single = kind === 'bidi' ? values : [values[0] ?? {}];
      requests = single.map((value) => this.o.json.fromJson(method.request, value));
    } catch (err) {
      if (!(err instanceof SyntaxError) && !(err instanceof JsonMappingError)) throw err;
      replyStatus(ex, { code: Status.INVALID_ARGUMENT, details: err.message });
      return;
    }
    if (method.handler.kind === 'unary') {
      await this.serveUnary(ex, method, method.handler.handle, requests[0]);
      return;
    }
    if (this.streamsOpen >= this.streamsMax) {
      const details = `tandem: too many open gateway streams (${this.streamsMax})`;
      replyStatus(ex, { code: Status.RESOURCE_EXHAUSTED, details });
      return;
    }
    this.streamsOpen++;
    const call = new GatewayCall({
      exchange: ex,
      json: this.o.json,
      responseType: method.response,
      writeBufferBytesMax: this.o.writeBufferBytesMax,
      onDone: () => this.streamsOpen--,
    });
    const guard = (run: () => void) => {
      try {
        run();
      } catch (err) {
        call.fail(this.o.statusOf(err, method.path));
      }
    };
    const handler = method.handler;
    if (handler.kind === 'serverStream') {
      call.setRequest(requests[0]);
      guard(() => handler.handle(call as never));
    } else {
      guard(() => handler.handle(call as never));
      call.deliver(requests, guard);
    }
  }

  private async serveUnary(
    ex: HttpExchange,
    method: BoundMethod,
    handle: (request: unknown, call: GatewayCall) => Promise<unknown>,
    request: unknown,
  ): Promise<void> {
    const call = new GatewayCall({
      exchange: ex,
      json: this.o.json,
      responseType: method.response,
      writeBufferBytesMax: this.o.writeBufferBytesMax,
      onDone: () => {},
    });
    let response: unknown;
    try {
      response = await handle(request, call);
    } catch (err) {
      const status = this.o.statusOf(err, method.path);
      if (!ex.done) replyStatus(ex, status);
      return;
    }
    if (ex.done) return;
    let text: string;
    try {
      text = JSON.stringify(this.o.json.toJson(method.response, response));
    } catch (err) {
      replyStatus(ex, this.o.statusOf(err, method.path));
      return;
    }
    reply(ex, 200, JSON_HEADERS, text);
  }
}

function reply(
  ex: HttpExchange,
  status: number,
  headers: Readonly<Record<string, string>>,
  body: string,
): void {
  if (ex.done || ex.headersSent) return;
  ex.respond(status, headers);
  ex.end(body);
}

/** Go's http.Error: the text and a newline, as plain text. */
function replyText(ex: HttpExchange, status: number, text: string): void {
  reply(ex, status, TEXT_HEADERS, `${text}\n`);
}

function replyStatus(ex: HttpExchange, status: CallStatus): void {
  reply(ex, httpStatusOf(status.code), JSON_HEADERS, unaryErrorBody(status));
}

/** etcd's allowMethod: anything else is 405 with the Allow header. */
function allowOnly(ex: HttpExchange, method: string): boolean {
  if (ex.method === method) return true;
  reply(ex, 405, { ...TEXT_HEADERS, allow: method }, 'Method Not Allowed\n');
  return false;
}

/**
 * The JSON values of a body, in order (a streaming request is several, as grpc-gateway's
 * json.Decoder reads them); whitespace around them is allowed. A syntax error throws
 * SyntaxError.
 */
export function parseJsonValues(text: string): unknown[] {
  const values: unknown[] = [];
  let i = skipSpace(text, 0);
  while (i < text.length) {
    const end = valueEnd(text, i);
    values.push(JSON.parse(text.slice(i, end)));
    i = skipSpace(text, end);
  }
  return values;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  return i;
}

/**
 * Where the JSON value starting at `start` ends: at the bracket closing its first one for an
 * object or array, past the closing quote for a string, else at the next space or bracket.
 * Anything malformed inside is JSON.parse's to report.
 */
function valueEnd(text: string, start: number): number {
  const first = text[start]!;
  if (first !== '{' && first !== '[' && first !== '"') {
    let i = start;
    while (i < text.length && !' \t\r\n{["'.includes(text[i]!)) i++;
    return i;
  }
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') {
        inString = false;
        if (depth === 0) return i + 1;
      }
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return text.length; // unterminated: JSON.parse reports it
}
