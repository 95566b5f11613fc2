/**
 * The gateway's raw pass-through for unary calls: the request's protobuf bytes go to the member
 * unchanged on an HTTP/2 stream of our own, and the member's response message comes back to the
 * client unchanged (gRPC prefix included), its status (grpc-status, grpc-message) passed on as
 * it was given. Nothing is decoded but the few fields routing reads (raw-route.ts), so a call
 * costs the gateway two stream hand-offs instead of proto-loader's decode and encode on both
 * sides.
 *
 *   client ──HEADERS, DATA(prefix+bytes)──▶ gateway ──HEADERS, DATA(prefix+bytes)──▶ member
 *   client ◀──DATA(prefix+bytes), status── gateway ◀──DATA(prefix+bytes), trailers── member
 *
 * One HTTP/2 session per member URL. How a failed attempt failed, for the Dispatcher's retry
 * rules (upstream.ts's FailureKind): no session could be made, or the member refused the
 * stream (GOAWAY, REFUSED_STREAM) → 'unsent'; the stream or session broke, or the deadline
 * passed, with the request out → 'lost'; a status the member answered → 'answer' (UNAVAILABLE,
 * DEADLINE_EXCEEDED and CANCELLED answers count as 'lost', as upstream.ts's classify does).
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { type SecureContextOptions, connect as tlsConnect } from 'node:tls';
import { frameMessage, MESSAGE_PREFIX_BYTES } from '../api/grpc/framing.js';
import type { MethodCodec } from '../api/grpc/handlers.js';
import {
  CONNECTION_WINDOW_BYTES,
  SESSION_MEMORY_MIB_MAX,
  STREAM_WINDOW_BYTES,
} from '../api/grpc/server.js';
import { Status } from '../api/grpc/status.js';
import { SEND_MESSAGE_BYTES_MAX } from '../api/limits.js';
import { type ServiceKey, serviceDefinition } from '../api/proto.js';
import { assert } from '../util/assert.js';
import {
  type FailureKind,
  type GrpcMetadata,
  type PendingCall,
  UPSTREAM_CHANNELS_MAX,
  type UpstreamError,
  type UpstreamTls,
} from './upstream.js';

/** A member's response bigger than this fails the call (the gateway could not send it on). */
export const PASSTHROUGH_RESPONSE_BYTES_MAX = SEND_MESSAGE_BYTES_MAX;

/**
 * The server-side codec of a passed-through method: the request stays the bytes it came as, and
 * the "response" is the member's message, already framed.
 */
export const PASSTHROUGH_CODEC: MethodCodec = {
  decodeRequest: (message: Buffer): Buffer => message,
  encodeResponse: (response: unknown): Buffer => {
    assert(Buffer.isBuffer(response), 'a passed-through response is the framed bytes');
    return response;
  },
};

/** What `:status` other than 200 means (gRPC's doc/http-grpc-status-mapping.md). */
function statusOfHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}

/** An answered status's kind, by the rules of upstream.ts's classify. */
function answerKind(code: number): FailureKind {
  return code === Status.UNAVAILABLE ||
    code === Status.DEADLINE_EXCEEDED ||
    code === Status.CANCELLED
    ? 'lost'
    : 'answer';
}

function decodeStatusMessage(value: string): string {
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** One member's HTTP/2 session, and the calls waiting for it to connect. */
interface MemberSession {
  readonly session: ClientHttp2Session;
  connected: boolean;
  readonly waiting: Set<(error: UpstreamError | null) => void>;
}

export interface RawUpstreamsOptions {
  /** TLS to members (https:// URLs): the CA that signed them, a client certificate, a name. */
  readonly tls?: UpstreamTls;
}

function tlsContext(tls: UpstreamTls | undefined): SecureContextOptions {
  if (tls === undefined) return {};
  const { ca, cert, key } = tls;
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
  };
}

/** The name the member's certificate must carry: the configured one, else the URL's host name. */
function servername(configured: string | undefined, host: string): { servername?: string } {
  if (configured !== undefined) return { servername: configured };
  return isIP(host) === 0 ? { servername: host } : {};
}

export class RawUpstreams {
  private readonly sessions = new Map<string, MemberSession>();
  private readonly paths = new Map<string, string>();
  private closed = false;

  constructor(private readonly o: RawUpstreamsOptions = {}) {}

  /**
   * One unary call with the request's bytes (the message, without the gRPC prefix); resolves
   * with the member's response message, gRPC prefix included; rejects with an UpstreamError.
   */
  unary(
    url: string,
    service: ServiceKey,
    method: string,
    request: unknown,
    metadata: GrpcMetadata,
    timeoutMs: number,
  ): PendingCall {
    assert(request instanceof Uint8Array, 'a passed-through request is its bytes');
    const headers: OutgoingHttpHeaders = {
      ...metadata.toHttp2Headers(),
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: this.pathOf(service, method),
      [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [constants.HTTP2_HEADER_TE]: 'trailers',
      'grpc-timeout': `${Math.max(1, Math.ceil(timeoutMs))}m`,
    };
    const call = new RawCall(frameMessage(request), headers, timeoutMs);
    if (this.closed) {
      call.fail({ code: Status.UNAVAILABLE, details: 'tandem gateway: closing', kind: 'unsent' });
      return call;
    }
    const member = this.session(url);
    if (member.connected) call.start(member.session);
    else {
      const onReady = (error: UpstreamError | null): void => {
        if (error !== null) call.fail(error);
        else call.start(member.session);
      };
      member.waiting.add(onReady);
      call.onCancelBeforeStart = () => member.waiting.delete(onReady);
    }
    return call;
  }

  close(): void {
    this.closed = true;
    for (const m of this.sessions.values()) m.session.destroy();
    this.sessions.clear();
  }

  /** Sessions open (connected or connecting); for tests and /status. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** The session's socket, without Nagle's delay (it would hold a small frame for an ACK). */
  private socket(authority: URL): Socket {
    const host = authority.hostname.replace(/^\[|\]$/g, '');
    const secure = authority.protocol === 'https:';
    const port = Number(authority.port) || (secure ? 443 : 80);
    const socket = secure
      ? tlsConnect({
          ...tlsContext(this.o.tls),
          host,
          port,
          ALPNProtocols: ['h2'],
          ...servername(this.o.tls?.servername, host),
        })
      : netConnect({ host, port });
    socket.setNoDelay(true);
    return socket;
  }

  private pathOf(service: ServiceKey, method: string): string {
    const key = `${service}.${method}`;
    let path = this.paths.get(key);
    if (path === undefined) {
      const definition = serviceDefinition(service)[method];
      if (definition === undefined) throw new Error(`no method ${method} in ${service}`);
      path = definition.path;
      this.paths.set(key, path);
    }
    return path;
  }

  private session(url: string): MemberSession {
    const existing = this.sessions.get(url);
    if (existing !== undefined && !existing.session.closed && !existing.session.destroyed) {
      return existing;
    }
    if (existing !== undefined) this.sessions.delete(url);
    if (this.sessions.size >= UPSTREAM_CHANNELS_MAX) {
      const [oldest, m] = this.sessions.entries().next().value as [string, MemberSession];
      m.session.close();
      this.sessions.delete(oldest);
    }
    // The member's windows (server.ts): a big Range answer is not held back by 64 KiB ones.
    const session = connect(url, {
      createConnection: (authority: URL) => this.socket(authority),
      maxSessionMemory: SESSION_MEMORY_MIB_MAX,
      settings: { initialWindowSize: STREAM_WINDOW_BYTES },
    });
    const member: MemberSession = { session, connected: false, waiting: new Set() };
    const settleWaiting = (error: UpstreamError | null): void => {
      const waiting = [...member.waiting];
      member.waiting.clear();
      for (const w of waiting) w(error);
    };
    const forget = (): void => {
      if (this.sessions.get(url) === member) this.sessions.delete(url);
    };
    session.once('connect', () => {
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
      member.connected = true;
      settleWaiting(null);
    });
    session.on('error', (error: Error) => {
      forget();
      if (!member.connected) {
        settleWaiting({
          code: Status.UNAVAILABLE,
          details: `No connection established to ${url}: ${error.message}`,
          kind: 'unsent',
        });
      }
    });
    // A member going away: calls after this get a new session; streams it refused are unsent.
    session.on('goaway', forget);
    session.once('close', () => {
      forget();
      settleWaiting({
        code: Status.UNAVAILABLE,
        details: `No connection established to ${url}`,
        kind: 'unsent',
      });
    });
    this.sessions.set(url, member);
    return member;
  }
}

/** One call on its way: started on a session once one is connected. */
class RawCall implements PendingCall {
  readonly done: Promise<unknown>;
  /** Set while the call waits for its session: takes it off the waiting list. */
  onCancelBeforeStart: (() => void) | null = null;
  private resolve!: (response: Buffer) => void;
  private reject!: (error: UpstreamError) => void;
  private settled = false;
  private stream: ClientHttp2Stream | null = null;
  private readonly timer: ReturnType<typeof setTimeout>;

  constructor(
    private readonly framed: Buffer,
    private readonly headers: OutgoingHttpHeaders,
    timeoutMs: number,
  ) {
    this.done = new Promise<Buffer>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.timer = setTimeout(
      () => this.abandon(Status.DEADLINE_EXCEEDED, 'Deadline exceeded'),
      Math.max(1, timeoutMs),
    );
  }

  cancel(): void {
    this.abandon(Status.CANCELLED, 'Cancelled on client');
  }

  fail(error: UpstreamError): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.onCancelBeforeStart?.();
    this.reject(error);
  }

  start(session: ClientHttp2Session): void {
    this.onCancelBeforeStart = null;
    if (this.settled) return;
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(this.headers);
    } catch (error) {
      // The session closed or went away between its 'connect' and now: nothing was sent.
      this.fail({
        code: Status.UNAVAILABLE,
        details: `No connection established: ${(error as Error).message}`,
        kind: 'unsent',
      });
      return;
    }
    this.stream = stream;
    this.read(stream);
    stream.end(this.framed);
  }

  private read(stream: ClientHttp2Stream): void {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let responseHeaders: IncomingHttpHeaders | null = null;
    let trailers: IncomingHttpHeaders | null = null;
    stream.on('response', (headers) => {
      responseHeaders = headers;
    });
    stream.on('trailers', (headers) => {
      trailers = headers;
    });
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > PASSTHROUGH_RESPONSE_BYTES_MAX + MESSAGE_PREFIX_BYTES) {
        this.abandon(
          Status.RESOURCE_EXHAUSTED,
          `tandem gateway: a member's response is larger than ${PASSTHROUGH_RESPONSE_BYTES_MAX} bytes`,
        );
        return;
      }
      chunks.push(chunk);
    });
    stream.on('error', () => {}); // 'close' says what happened
    stream.on('close', () => {
      if (this.settled) return;
      if (responseHeaders === null) {
        const refused = stream.rstCode === constants.NGHTTP2_REFUSED_STREAM;
        this.fail({
          code: Status.UNAVAILABLE,
          details: refused ? 'the member refused the stream' : 'the member closed the stream',
          kind: refused ? 'unsent' : 'lost',
        });
        return;
      }
      this.finish(responseHeaders, trailers, chunks, bytes);
    });
  }

  /** The call's outcome once the stream closed with response headers received. */
  private finish(
    headers: IncomingHttpHeaders,
    trailers: IncomingHttpHeaders | null,
    chunks: Buffer[],
    bytes: number,
  ): void {
    const httpStatus = Number(headers[constants.HTTP2_HEADER_STATUS]);
    // Trailers-Only: the status is in the headers.
    const statusHeaders = trailers ?? headers;
    const grpcStatus = headerValue(statusHeaders, 'grpc-status');
    if (grpcStatus === undefined) {
      const code = httpStatus !== 200 ? statusOfHttp(httpStatus) : Status.UNAVAILABLE;
      this.fail({
        code,
        details:
          httpStatus !== 200
            ? `the member answered HTTP ${httpStatus}`
            : 'the member closed the stream without a status',
        kind: httpStatus !== 200 ? answerKind(code) : 'lost',
      });
      return;
    }
    const code = Number(grpcStatus);
    if (code !== Status.OK) {
      const details = decodeStatusMessage(headerValue(statusHeaders, 'grpc-message') ?? '');
      this.fail({ code, details, kind: answerKind(code) });
      return;
    }
    const message = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes);
    if (
      message.length < MESSAGE_PREFIX_BYTES ||
      message[0] !== 0 ||
      message.readUInt32BE(1) !== message.length - MESSAGE_PREFIX_BYTES
    ) {
      this.fail({
        code: Status.INTERNAL,
        details: 'tandem gateway: a member answered OK without exactly one uncompressed message',
        kind: 'lost',
      });
      return;
    }
    this.settled = true;
    clearTimeout(this.timer);
    this.resolve(message);
  }

  /** Gives up: the stream is reset (the member stops working on it), the call fails 'lost'. */
  private abandon(code: number, details: string): void {
    if (this.settled) return;
    const started = this.stream !== null;
    this.stream?.close(constants.NGHTTP2_CANCEL);
    this.fail({ code, details, kind: started ? 'lost' : 'unsent' });
  }
}
