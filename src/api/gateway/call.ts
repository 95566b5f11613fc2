/**
 * The call objects a service handler gets when its request came through the gateway: the same
 * interfaces as a gRPC call (../grpc/handlers.ts), with responses written as JSON. A streaming
 * call writes one `{"result":{...}}` line per message (grpc-gateway's newline-delimited
 * stream); a failure before anything was written takes the HTTP status of its code, one after
 * it is an `{"error":{...}}` line. The request side of a bidirectional call is the body's JSON
 * values, delivered in order, then 'end' (the client's half-close).
 */
import { EventEmitter } from 'node:events';
import type { Type } from 'protobufjs';
import type { CallContext } from '../grpc/handlers.js';
import type { Metadata, MetadataValue } from '../grpc/metadata.js';
import { CallCancellation } from '../grpc/signal.js';
import type { CallStatus } from '../grpc/status.js';
import type { HttpExchange } from './exchange.js';
import type { ProtoJson } from './json.js';
import { httpStatusOf, streamErrorLine } from './status.js';

export const JSON_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'application/json',
});

/** The prefix of request headers grpc-gateway passes to the service as metadata. */
const METADATA_PREFIX = 'grpc-metadata-';

/**
 * grpc-gateway's incoming header matching: `Grpc-Metadata-<key>` is metadata `<key>`, and
 * `Authorization` passes as `authorization`.
 */
export class HttpHeaderMetadata implements Metadata {
  constructor(private readonly raw: readonly string[]) {}

  get(key: string): MetadataValue[] {
    const name = key.toLowerCase();
    const values: MetadataValue[] = [];
    for (let i = 0; i + 1 < this.raw.length; i += 2) {
      const header = this.raw[i]!;
      const matches =
        header === `${METADATA_PREFIX}${name}` ||
        (name === 'authorization' && header === 'authorization');
      if (!matches) continue;
      const value = this.raw[i + 1]!;
      values.push(name.endsWith('-bin') ? Buffer.from(value, 'base64') : value);
    }
    return values;
  }
}

export interface GatewayCallOptions {
  readonly exchange: HttpExchange;
  readonly json: ProtoJson;
  readonly responseType: Type;
  /** Bytes a stream may hold unsent for a client that does not read; past it, torn down. */
  readonly writeBufferBytesMax: number;
  /** Called once, when the call is over (ended, failed or cancelled). */
  readonly onDone: () => void;
}

export class GatewayCall extends EventEmitter implements CallContext {
  readonly metadata: Metadata;
  private readonly cancellation = new CallCancellation();
  private finished = false;
  private requestValue: unknown = undefined;
  private paused = false;
  private pending: unknown[] = [];
  private endPending = false;
  private ended = false;

  constructor(private readonly o: GatewayCallOptions) {
    super();
    this.metadata = new HttpHeaderMetadata(o.exchange.rawHeaders);
    o.exchange.onAbort(() => this.cancel());
    o.exchange.onDrain(() => this.emit('drain'));
  }

  get signal(): AbortSignal {
    return this.cancellation.signal;
  }

  get cancelled(): boolean {
    return this.cancellation.cancelled;
  }

  /** The request of a server-streaming call. */
  get request(): unknown {
    return this.requestValue;
  }

  setRequest(request: unknown): void {
    this.requestValue = request;
  }

  get readableEnded(): boolean {
    return this.ended;
  }

  write(message: unknown): boolean {
    if (this.finished) return true;
    const exchange = this.o.exchange;
    if (exchange.writableLength > this.o.writeBufferBytesMax) {
      // A handler writing past write() === false to a client that does not read: a bug,
      // bounded here as the gRPC server bounds it.
      this.finish();
      this.cancel();
      exchange.destroy();
      return true;
    }
    const line = `${JSON.stringify({ result: this.o.json.toJson(this.o.responseType, message) })}\n`;
    if (!exchange.headersSent) exchange.respond(200, JSON_HEADERS);
    return exchange.write(line);
  }

  end(): void {
    if (this.finished) return;
    this.finish();
    const exchange = this.o.exchange;
    if (exchange.done) return;
    if (!exchange.headersSent) exchange.respond(200, JSON_HEADERS);
    exchange.end();
  }

  fail(status: CallStatus): void {
    if (this.finished) return;
    this.finish();
    const exchange = this.o.exchange;
    if (exchange.done) return;
    if (!exchange.headersSent) exchange.respond(httpStatusOf(status.code), JSON_HEADERS);
    exchange.end(streamErrorLine(status));
  }

  // Bidirectional calls: the requests, each delivered as 'data', then 'end'.

  /** Delivers `requests` in order (honouring pause()), then 'end'. */
  deliver(requests: readonly unknown[], guard: (run: () => void) => void): void {
    this.pending = requests.slice();
    this.endPending = true;
    this.guard = guard;
    this.flush();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    // Resumed from inside a handler: deliver after it returns, as a stream would.
    queueMicrotask(() => this.flush());
  }

  private guard: (run: () => void) => void = (run) => run();

  private flush(): void {
    while (!this.paused && !this.finished && this.pending.length > 0) {
      const request = this.pending.shift();
      this.guard(() => this.emit('data', request));
    }
    if (this.paused || this.finished || !this.endPending || this.pending.length > 0) return;
    this.endPending = false;
    this.ended = true;
    this.guard(() => this.emit('end'));
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.o.onDone();
  }

  private cancel(): void {
    if (!this.cancellation.cancel()) return;
    this.finish();
    process.nextTick(() => this.emit('cancelled'));
  }
}
