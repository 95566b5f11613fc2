/**
 * One gRPC call on one HTTP/2 stream (doc/PROTOCOL-HTTP2.md):
 *
 *   request:  HEADERS, DATA* (length-prefixed messages, cut anywhere), END_STREAM
 *   response: HEADERS (:status 200), DATA*, HEADERS (grpc-status, END_STREAM) = the trailers
 *             or, for an error before any message, one HEADERS frame: Trailers-Only
 *
 * A call ends exactly once, by sending its status (`statusSent`). It is *cancelled* when it ends
 * before its handler ended it: the client reset the stream or went away, the deadline passed,
 * its input was refused, or the server was destroyed. Cancelling aborts the handler's signal
 * and, for streaming calls, emits 'cancelled' (on the next tick: never inside a handler's own
 * write()).
 */
import { EventEmitter } from 'node:events';
import { constants, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { assert } from '../../util/assert.js';
import { FramingError, MESSAGE_PREFIX_BYTES, MessageDecoder } from './framing.js';
import {
  type BidiCall,
  type CallContext,
  FramedResponse,
  type MethodDescriptor,
  type MethodHandler,
  type ServerStreamingCall,
} from './handlers.js';
import { type Metadata, RawHeaderMetadata } from './metadata.js';
import { CallCancellation } from './signal.js';
import { type CallStatus, encodeStatusMessage, Status } from './status.js';

/** What calls need from their server. */
export interface CallEnvironment {
  readonly receiveMessageBytesMax: number;
  readonly sendMessageBytesMax: number;
  /** Bytes a streaming call may have queued for a client that does not read (see write()). */
  readonly writeBufferBytesMax: number;
  /** The status for a handler's rejection or throw (and logs it as it sees fit). */
  statusOf(err: unknown, path: string): CallStatus;
  /** Every call's end: its method, kind, status code and how long it ran (metrics). */
  onCallEnd?(path: string, kind: MethodHandler['kind'], code: number, seconds: number): void;
  /** The call is sending response HEADERS or DATA (keep-alive enforcement, keepalive.ts). */
  noteSent?(stream: ServerHttp2Stream): void;
}

/** A method with its handler, as the server routes it. */
export interface RoutedMethod {
  readonly descriptor: MethodDescriptor;
  readonly handler: MethodHandler;
}

/** Response headers. grpc-accept-encoding tells clients this server takes no compression. */
export const RESPONSE_HEADERS: OutgoingHttpHeaders = Object.freeze({
  ':status': 200,
  'content-type': 'application/grpc',
  'grpc-accept-encoding': 'identity',
});

const OK_TRAILERS: OutgoingHttpHeaders = Object.freeze({ 'grpc-status': '0' });
const WAIT_FOR_TRAILERS = Object.freeze({ waitForTrailers: true, sendDate: false });
const TRAILERS_ONLY = Object.freeze({ endStream: true, sendDate: false });

export function statusTrailers(status: CallStatus): OutgoingHttpHeaders {
  if (status.code === Status.OK && status.details === '') return OK_TRAILERS;
  return {
    'grpc-status': String(status.code),
    'grpc-message': encodeStatusMessage(status.details),
  };
}

/** Answers a call with its status alone, in one HEADERS frame (an immediate error). */
export function sendTrailersOnly(stream: ServerHttp2Stream, status: CallStatus, httpStatus = 200) {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    { ...RESPONSE_HEADERS, ':status': httpStatus, ...statusTrailers(status) },
    TRAILERS_ONLY,
  );
  dropRequest(stream);
  // Node sends this RST_STREAM only once the response is flushed ('finish').
  if (!stream.readableEnded) stream.close(constants.NGHTTP2_NO_ERROR);
}

/**
 * After the status the request half may still be open (an early error, a server-ended stream):
 * its remaining DATA is read and dropped, so flow control never stalls the client before it
 * sees the status. The spec's "Early Server Closure": RST_STREAM NO_ERROR after the status
 * frees the stream even if the client never ends it (callers send it).
 */
function dropRequest(stream: ServerHttp2Stream): void {
  if (stream.readableEnded) return;
  stream.removeAllListeners('data');
  stream.resume();
}

/** Sends `trailers` when Node asks (the data side flushed), then resets an open request side. */
function sendTrailersWhenWanted(stream: ServerHttp2Stream, trailers: () => OutgoingHttpHeaders) {
  stream.once('wantTrailers', () => {
    if (stream.destroyed || stream.closed) return;
    stream.sendTrailers(trailers());
    // sendTrailers submits on the next setImmediate; the reset is queued after it.
    if (!stream.readableEnded) {
      setImmediate(() => {
        if (!stream.readableEnded && !stream.closed) stream.close(constants.NGHTTP2_NO_ERROR);
      });
    }
  });
}

/** Shared by every kind of call: status, cancellation, deadline, metadata. */
abstract class BaseCall extends EventEmitter implements CallContext {
  /** The status went out (or the stream is gone): nothing more is sent. */
  protected statusSent = false;
  private readonly cancellation = new CallCancellation();
  private deadlineTimer: NodeJS.Timeout | null = null;
  private metadataView: Metadata | null = null;
  /** The request of a unary or server-streaming call, until its end arrives. */
  private singleMessage: Buffer | null = null;
  private readonly startedMs = performance.now();
  /** Trailers to send once the data side is flushed (streams; unary sends OK). */
  private trailers: OutgoingHttpHeaders = OK_TRAILERS;
  protected readonly decoder: MessageDecoder;

  constructor(
    protected readonly env: CallEnvironment,
    protected readonly method: RoutedMethod,
    protected readonly stream: ServerHttp2Stream,
    private readonly rawHeaders: string[],
    timeoutMs: number | null,
  ) {
    super();
    this.decoder = new MessageDecoder(env.receiveMessageBytesMax, (message) =>
      this.onMessage(message),
    );
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onEnd());
    stream.on('close', () => this.onClose());
    if (timeoutMs !== null) {
      this.deadlineTimer = setTimeout(() => this.onDeadline(), timeoutMs);
      this.deadlineTimer.unref();
    }
  }

  /**
   * The CN of the client's certificate when it was verified against the server's CA (TLS with
   * client-cert auth); undefined otherwise. Read only when auth needs it.
   */
  get peerCommonName(): string | undefined {
    const socket = this.stream.session?.socket as
      | (import('node:tls').TLSSocket & { authorized?: boolean })
      | undefined;
    if (socket === undefined || socket.authorized !== true) return undefined;
    const cn = socket.getPeerCertificate?.()?.subject?.CN;
    return typeof cn === 'string' ? cn : undefined;
  }

  get metadata(): Metadata {
    this.metadataView ??= new RawHeaderMetadata(this.rawHeaders);
    return this.metadataView;
  }

  /** Created on first use (see signal.ts for why it is not a Node AbortSignal). */
  get signal(): AbortSignal {
    return this.cancellation.signal;
  }

  get cancelled(): boolean {
    return this.cancellation.cancelled;
  }

  protected get path(): string {
    return this.method.descriptor.path;
  }

  protected abstract onMessage(message: Buffer): void;
  protected abstract onEnd(): void;

  private onData(chunk: Buffer): void {
    if (this.statusSent) return;
    try {
      this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof FramingError)) throw err;
      this.abort(err.status);
    }
  }

  private onClose(): void {
    this.clearDeadline();
    if (!this.statusSent) {
      this.statusSent = true;
      this.reportEnd(Status.CANCELLED);
      this.cancel();
    }
  }

  /** Reports the call's end once (statusSent has just become true). */
  private reportEnd(code: number): void {
    this.env.onCallEnd?.(
      this.method.descriptor.path,
      this.method.handler.kind,
      code,
      (performance.now() - this.startedMs) / 1000,
    );
  }

  private onDeadline(): void {
    this.deadlineTimer = null;
    this.abort({ code: Status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' });
  }

  private clearDeadline(): void {
    if (this.deadlineTimer === null) return;
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
  }

  /** The server ends the call itself (bad input, deadline): cancel, then send `status`. */
  protected abort(status: CallStatus): void {
    if (this.statusSent) return;
    this.cancel();
    this.sendStatus(status);
  }

  protected cancel(): void {
    if (!this.cancellation.cancel()) return;
    this.clearDeadline();
    process.nextTick(() => this.emit('cancelled'));
  }

  /** Decodes one request; a malformed one ends the call, and null is returned. */
  protected decode(message: Buffer): { readonly request: unknown } | null {
    try {
      return { request: this.method.descriptor.codec.decodeRequest(message) };
    } catch {
      // grpc-js's words, which clients have always had (no internals of the parser).
      this.abort({ code: Status.INTERNAL, details: 'Error deserializing request' });
      return null;
    }
  }

  /** The message framed for the wire, or null when it cannot go (the call then fails). */
  protected encode(response: unknown): Buffer | FramedResponse | null {
    let framed: Buffer | FramedResponse;
    try {
      framed =
        response instanceof FramedResponse
          ? response
          : this.method.descriptor.codec.encodeResponse(response);
    } catch (err) {
      this.abort(this.env.statusOf(err, this.path));
      return null;
    }
    const bytes =
      framed instanceof FramedResponse ? framed.messageBytes : framed.length - MESSAGE_PREFIX_BYTES;
    if (bytes > this.env.sendMessageBytesMax) {
      this.abort({
        code: Status.RESOURCE_EXHAUSTED,
        details: `Sent message larger than max (${bytes} vs. ${this.env.sendMessageBytesMax})`,
      });
      return null;
    }
    return framed;
  }

  /** Sends the response headers, once; the trailers follow when the data side ends. */
  protected sendHeaders(): void {
    const stream = this.stream;
    if (stream.headersSent) return;
    this.env.noteSent?.(stream);
    stream.respond(RESPONSE_HEADERS, WAIT_FOR_TRAILERS);
    sendTrailersWhenWanted(stream, () => this.trailers);
  }

  /** Ends the call with `status`: in the trailers, or Trailers-Only when nothing was sent. */
  protected sendStatus(status: CallStatus): void {
    if (this.statusSent) return;
    this.statusSent = true;
    this.reportEnd(status.code);
    this.clearDeadline();
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    this.env.noteSent?.(stream);
    if (!stream.headersSent) {
      sendTrailersOnly(stream, status);
      return;
    }
    this.trailers = statusTrailers(status);
    stream.end();
    dropRequest(stream);
  }

  /** Ends a unary call with its one response message and status OK. */
  protected sendResponse(response: unknown): void {
    if (this.statusSent) return;
    const framed = this.encode(response);
    if (framed === null) return;
    this.statusSent = true;
    this.reportEnd(Status.OK);
    this.clearDeadline();
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    this.sendHeaders();
    if (framed instanceof FramedResponse) {
      const last = framed.pieces.length - 1;
      for (let i = 0; i < last; i++) stream.write(framed.pieces[i]);
      stream.end(framed.pieces[last]);
    } else stream.end(framed);
  }

  /** Unary and server-streaming calls: keeps the one request message. */
  protected keepSingle(message: Buffer): void {
    if (this.statusSent) return;
    if (this.singleMessage !== null) {
      this.abort({
        code: Status.UNIMPLEMENTED,
        details: `Received a second request message for method ${this.path}`,
      });
      return;
    }
    this.singleMessage = message;
  }

  /** At the end of the request: the one request, decoded; null when the call was ended. */
  protected takeSingle(): { readonly request: unknown } | null {
    if (this.statusSent) return null;
    const message = this.singleMessage;
    this.singleMessage = null;
    if (!this.decoder.idle) {
      this.abort({ code: Status.INTERNAL, details: 'Received an incomplete request message' });
      return null;
    }
    if (message === null) {
      this.abort({
        code: Status.UNIMPLEMENTED,
        details: `Received no request message for method ${this.path}`,
      });
      return null;
    }
    return this.decode(message);
  }

  /**
   * Gives up on the stream: RST_STREAM with `code` (clients map it to a status; no trailers
   * could reach a client that does not read), and the call is cancelled.
   */
  protected reset(code: number): void {
    if (this.statusSent) return;
    this.statusSent = true;
    this.reportEnd(Status.CANCELLED);
    this.cancel();
    if (!this.stream.destroyed && !this.stream.closed) this.stream.close(code);
  }

  /** Runs a handler's synchronous code; a throw ends the call with its status. */
  protected guard(run: () => void): void {
    try {
      run();
    } catch (err) {
      this.abort(this.env.statusOf(err, this.path));
    }
  }
}

export class UnaryCall extends BaseCall {
  protected onMessage(message: Buffer): void {
    this.keepSingle(message);
  }

  protected onEnd(): void {
    const decoded = this.takeSingle();
    if (decoded !== null) this.run(decoded.request);
  }

  private run(request: unknown): void {
    const handler = this.method.handler;
    assert(handler.kind === 'unary');
    let promise: Promise<unknown>;
    try {
      promise = handler.handle(request, this);
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.then(
      (response) => this.sendResponse(response),
      (err: unknown) => {
        if (!this.statusSent) this.sendStatus(this.env.statusOf(err, this.path));
      },
    );
  }
}

/** What server-streaming and bidirectional calls share: writing, ending, 'drain'. */
abstract class StreamingCall extends BaseCall {
  constructor(
    env: CallEnvironment,
    method: RoutedMethod,
    stream: ServerHttp2Stream,
    rawHeaders: string[],
    timeoutMs: number | null,
  ) {
    super(env, method, stream, rawHeaders, timeoutMs);
    stream.on('drain', () => this.emit('drain'));
  }

  write(message: unknown): boolean {
    // After the end (a cancel racing the handler) messages are dropped; 'cancelled' follows.
    if (this.statusSent) return true;
    if (this.stream.writableLength > this.env.writeBufferBytesMax) {
      // The handler kept writing past write() === false to a client that does not read: a
      // bug, bounded here. ENHANCE_YOUR_CALM reaches gRPC clients as RESOURCE_EXHAUSTED.
      this.reset(constants.NGHTTP2_ENHANCE_YOUR_CALM);
      return true;
    }
    const framed = this.encode(message);
    if (framed === null) return true;
    assert(!(framed instanceof FramedResponse), 'pre-framed responses are unary');
    this.sendHeaders();
    this.env.noteSent?.(this.stream);
    return this.stream.write(framed);
  }

  end(): void {
    this.sendStatus({ code: Status.OK, details: '' });
  }

  fail(status: CallStatus): void {
    this.sendStatus(status);
  }
}

export class ServerStreamCall
  extends StreamingCall
  implements ServerStreamingCall<unknown, unknown>
{
  private requestValue: unknown;

  get request(): unknown {
    return this.requestValue;
  }

  protected onMessage(message: Buffer): void {
    this.keepSingle(message);
  }

  protected onEnd(): void {
    const decoded = this.takeSingle();
    if (decoded === null) return;
    const handler = this.method.handler;
    assert(handler.kind === 'serverStream');
    this.requestValue = decoded.request;
    this.guard(() => handler.handle(this));
  }
}

export class BidiStreamCall extends StreamingCall implements BidiCall<unknown, unknown> {
  private paused = false;
  /** Requests decoded while paused (at most one DATA chunk's worth: the stream is paused). */
  private readonly pending: unknown[] = [];
  private endPending = false;
  private ended = false;

  get readableEnded(): boolean {
    return this.ended;
  }

  /** Runs the handler at once: requests arrive as 'data' events. */
  start(): void {
    const handler = this.method.handler;
    assert(handler.kind === 'bidi');
    this.guard(() => handler.handle(this));
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.stream.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    while (this.pending.length > 0 && !this.paused && !this.statusSent) {
      this.deliver(this.pending.shift());
    }
    if (this.paused || this.statusSent) return;
    if (this.endPending) {
      this.endPending = false;
      this.emitEnd();
    }
    this.stream.resume();
  }

  protected onMessage(message: Buffer): void {
    if (this.statusSent) return;
    const decoded = this.decode(message);
    if (decoded === null) return;
    if (this.paused) this.pending.push(decoded.request);
    else this.deliver(decoded.request);
  }

  protected onEnd(): void {
    if (this.statusSent) return;
    if (!this.decoder.idle) {
      this.abort({ code: Status.INTERNAL, details: 'Received an incomplete request message' });
      return;
    }
    if (this.paused || this.pending.length > 0) this.endPending = true;
    else this.emitEnd();
  }

  private deliver(request: unknown): void {
    this.guard(() => this.emit('data', request));
  }

  private emitEnd(): void {
    this.ended = true;
    this.guard(() => this.emit('end'));
  }
}
