/**
 * A gRPC server on node:http2 (doc/PROTOCOL-HTTP2.md in grpc/grpc), for the methods etcd's API
 * has: unary, server streaming and bidirectional streaming. It routes each HTTP/2 stream by
 * :path to a call (call.ts); everything around calls lives here: HTTP/2 settings and windows,
 * TLS, the checks of the request headers that end a call before it starts (Trailers-Only),
 * keep-alive pings, and the graceful close.
 *
 * Like etcd's client port, the listener can also serve plain HTTP (`http` in the options):
 * each connection goes to HTTP/2 or HTTP/1.1 by its first bytes (the HTTP/2 client preface, as
 * etcd's cmux) or, over TLS, by ALPN (h2, else http/1.1); HTTP/1.1 requests and HTTP/2 streams
 * whose content-type is not application/grpc (etcd's test) go to the HTTP handlers.
 */
import {
  createServer as createHttp1Server,
  type Server as Http1Server,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import {
  constants,
  createServer,
  getPackedSettings,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
  type ServerOptions,
} from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { assert } from '../../util/assert.js';
import { HTTP2_PREFACE, negotiateHttp2, settingsFrame } from './authority.js';
import {
  BidiStreamCall,
  type CallEnvironment,
  type RoutedMethod,
  ServerStreamCall,
  sendTrailersOnly,
  UnaryCall,
} from './call.js';
import { kindOf, type MethodDescriptor, type ServiceHandlers } from './handlers.js';
import { type KeepaliveEnforcement, PingStrikes, TOO_MANY_PINGS } from './keepalive.js';
import { type CallStatus, DEADLINE_MS_MAX, parseTimeoutMs, Status } from './status.js';

/**
 * Per-stream receive window: what a client may send on one stream before the server reads it,
 * so also what a paused stream may hold unread. Node's default (64 KiB) would take a 1.5 MiB
 * put many round trips of WINDOW_UPDATEs; grpc-go grows its windows to the same order.
 */
export const STREAM_WINDOW_BYTES = 1024 * 1024;

/** Per-connection receive window (all streams together). */
export const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;

/**
 * Node's session memory cap, in MiB (its unit): past it, new streams are refused with
 * ENHANCE_YOUR_CALM (clients see RESOURCE_EXHAUSTED) until memory is released. Node's default
 * (10) is below a handful of maximal requests in flight on one connection.
 */
export const SESSION_MEMORY_MIB_MAX = 256;

/**
 * Bytes a streaming call may have queued, unsent, for a client that does not read. Handlers
 * wait for 'drain' once write() returns false (at 16 KiB), so only a handler bug gets near it;
 * past it the stream is reset rather than memory grown without bound.
 */
export const STREAM_WRITE_BUFFER_BYTES_MAX = 64 * 1024 * 1024;

/** Bytes of request headers (HPACK-decoded, as SETTINGS_MAX_HEADER_LIST_SIZE counts them). */
export const HEADER_LIST_BYTES_MAX = 64 * 1024;

/** A plain connection that sends too little to tell its protocol in this long is closed. */
export const PROTOCOL_SNIFF_TIMEOUT_MS = 10_000;

/** An idle HTTP/1.1 keep-alive connection is closed after this long (Node's and Go's order). */
export const HTTP1_KEEPALIVE_IDLE_MS = 5_000;

/** An HTTP/1.1 request's headers must arrive within this long (slow clients are cut off). */
export const HTTP1_HEADERS_TIMEOUT_MS = 60_000;

assert(STREAM_WINDOW_BYTES <= CONNECTION_WINDOW_BYTES);
assert(HTTP1_KEEPALIVE_IDLE_MS < HTTP1_HEADERS_TIMEOUT_MS);
assert(CONNECTION_WINDOW_BYTES < SESSION_MEMORY_MIB_MAX * 1024 * 1024);
assert(CONNECTION_WINDOW_BYTES <= 2 ** 31 - 1, 'an HTTP/2 window is at most 2^31 - 1');

export interface GrpcLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface GrpcTlsOptions {
  readonly cert: Buffer | string;
  readonly key: Buffer | string;
  /** When given, clients must present a certificate it signed. */
  readonly ca?: Buffer | string;
}

/** Where requests that are not gRPC calls go. */
export interface HttpHandlers {
  /** An HTTP/1.x request (a plain connection without the HTTP/2 preface, or TLS without h2). */
  http1(req: IncomingMessage, res: ServerResponse): void;
  /** An HTTP/2 stream whose content-type is not application/grpc. */
  http2(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void;
}

export interface GrpcServerOptions {
  readonly receiveMessageBytesMax: number;
  readonly sendMessageBytesMax: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls open at once on one connection. */
  readonly concurrentStreamsMax: number;
  /**
   * Connections open at once (HTTP/2 and HTTP/1.1, TLS or not); one more is closed as soon as
   * it is accepted, and said once a second at most. Absent: no limit but the OS's.
   */
  readonly connectionsMax?: number;
  /** How often every connection is pinged; one unanswered for keepaliveTimeoutMs is closed. */
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
  /**
   * How often clients may ping (etcd's --grpc-keepalive-min-time; keepalive.ts): one that pings
   * more often is sent away with GOAWAY ENHANCE_YOUR_CALM "too_many_pings". Absent: any rate.
   */
  readonly keepaliveEnforcement?: KeepaliveEnforcement;
  /** Default STREAM_WRITE_BUFFER_BYTES_MAX. */
  readonly writeBufferBytesMax?: number;
  readonly tls?: GrpcTlsOptions;
  /** Serve HTTP besides gRPC on the same listener (without it, only gRPC is spoken). */
  readonly http?: HttpHandlers;
  /** The status for a handler's error; logs what it must. */
  readonly statusOf: (err: unknown, path: string) => CallStatus;
  /** Every call's end (CallEnvironment.onCallEnd): for metrics. */
  readonly onCallEnd?: CallEnvironment['onCallEnd'];
  readonly logger: GrpcLogger;
}

/** "application/grpc", optionally "+proto" and parameters; other codecs are not served. */
function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined || !value.startsWith('application/grpc')) return false;
  const rest = value.slice('application/grpc'.length);
  return rest === '' || rest.startsWith(';') || rest === '+proto' || rest.startsWith('+proto;');
}

/** One HTTP/2 connection's keep-alive accounting. */
interface SessionPings {
  readonly strikes: PingStrikes;
  /** Streams open on the connection (gRPC and plain HTTP/2 alike, as grpc-go counts them). */
  openStreams: number;
}

function ignoreStreamError(): void {
  // A reset or broken stream also emits 'close', where its call learns it was cancelled.
}

export class GrpcServer {
  private readonly methods = new Map<string, RoutedMethod>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly pings = new WeakMap<Http2Session, SessionPings>();
  /** Connections sent away for pinging too often (GOAWAY too_many_pings). */
  private pingRefusals = 0;
  /** When a send-away was last logged: at most once a second, whatever a flood does. */
  private pingRefusalSaidAtMs = Number.NEGATIVE_INFINITY;
  private readonly env: CallEnvironment;
  /** Accepts connections and hands each to the HTTP/2 or the HTTP/1.1 server. */
  private front: NetServer | null = null;
  private readonly http2: Http2Server;
  private readonly http1: Http1Server | null = null;
  private readonly sockets = new Set<Socket>();
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  /** The SETTINGS frame nghttp2 sends, sent ahead of it by negotiateHttp2. */
  private readonly settingsFrame: Buffer;

  constructor(private readonly options: GrpcServerOptions) {
    assert(Number.isSafeInteger(options.receiveMessageBytesMax));
    assert(options.receiveMessageBytesMax > 0 && options.sendMessageBytesMax > 0);
    assert(options.concurrentStreamsMax >= 1 && options.concurrentStreamsMax <= 2 ** 32 - 1);
    assert(options.keepaliveTimeMs > 0 && options.keepaliveTimeoutMs > 0);
    this.env = {
      receiveMessageBytesMax: options.receiveMessageBytesMax,
      sendMessageBytesMax: options.sendMessageBytesMax,
      writeBufferBytesMax: options.writeBufferBytesMax ?? STREAM_WRITE_BUFFER_BYTES_MAX,
      statusOf: options.statusOf,
      ...(options.onCallEnd === undefined ? {} : { onCallEnd: options.onCallEnd }),
      ...(options.keepaliveEnforcement === undefined
        ? {}
        : { noteSent: (stream) => this.sessionPings(stream.session)?.strikes.noteSent() }),
    };
    const http2Options = this.http2Options();
    this.http2 = createServer(http2Options);
    this.settingsFrame = settingsFrame(getPackedSettings(http2Options.settings ?? {}));
    this.http2.on('session', (session) => this.onSession(session));
    this.http2.on(
      'stream',
      (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]) =>
        this.onStream(stream, headers, raw),
    );
    const http = options.http;
    if (http !== undefined) {
      const http1 = createHttp1Server({ maxHeaderSize: HEADER_LIST_BYTES_MAX }, (req, res) => {
        // Closing: this response is the connection's last.
        if (this.closing !== null) res.shouldKeepAlive = false;
        http.http1(req, res);
      });
      http1.keepAliveTimeout = HTTP1_KEEPALIVE_IDLE_MS;
      http1.headersTimeout = HTTP1_HEADERS_TIMEOUT_MS;
      // A watch is one long response; a request (headers and body) is bounded by headersTimeout
      // and the body limit instead.
      http1.requestTimeout = 0;
      // Node tracks connections (header timeouts, closeIdleConnections) from 'listening'; this
      // server never listens itself, the front hands it connections.
      http1.emit('listening');
      this.http1 = http1;
    }
  }

  /** Routes every method of a service; each must have a handler of its kind, and no other. */
  addService(
    descriptors: Readonly<Record<string, MethodDescriptor>>,
    handlers: ServiceHandlers,
  ): void {
    assert(this.front === null, 'services are added before listen()');
    for (const [name, descriptor] of Object.entries(descriptors)) {
      const handler = handlers[name];
      assert(handler !== undefined, `${descriptor.path}: no handler`);
      assert(handler.kind === kindOf(descriptor), `${descriptor.path}: not a ${handler.kind} rpc`);
      assert(!this.methods.has(descriptor.path), `${descriptor.path}: added twice`);
      this.methods.set(descriptor.path, { descriptor, handler });
    }
    for (const name of Object.keys(handlers)) {
      assert(descriptors[name] !== undefined, `handler ${name} is for no method of the service`);
    }
  }

  /** Listens on host:port (IPv6 as [::1]:port; port 0 picks one); resolves with the port. */
  async listen(address: string): Promise<number> {
    assert(this.front === null, 'listen() once');
    const i = address.lastIndexOf(':');
    const host = address.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(i + 1));
    if (i < 1 || !Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new RangeError(`listen address must be host:port, not "${address}"`);
    }
    const server = this.createFront();
    const connectionsMax = this.options.connectionsMax;
    if (connectionsMax !== undefined) {
      assert(Number.isSafeInteger(connectionsMax) && connectionsMax >= 1, 'connectionsMax >= 1');
      server.maxConnections = connectionsMax;
      let saidAtMs = 0;
      server.on('drop', (drop) => {
        const nowMs = Date.now();
        if (nowMs - saidAtMs < 1_000) return;
        saidAtMs = nowMs;
        this.options.logger.warn(
          { remote: drop?.remoteAddress, connectionsMax },
          'grpc: connection refused: the client port holds its most connections at once',
        );
      });
    }
    this.front = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.options.logger.warn({ err }, 'grpc: server error'));
    this.keepaliveTimer = setInterval(() => this.pingAll(), this.options.keepaliveTimeMs);
    this.keepaliveTimer.unref();
    return (server.address() as { port: number }).port;
  }

  /**
   * Stops accepting connections and calls (GOAWAY), lets running calls finish for `graceMs`,
   * then resets every connection left, which cancels its calls.
   */
  close(graceMs: number): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      const server = this.front;
      if (this.keepaliveTimer !== null) clearInterval(this.keepaliveTimer);
      if (server === null) {
        resolve();
        return;
      }
      const force = setTimeout(() => {
        for (const session of this.sessions) session.destroy(undefined, constants.NGHTTP2_CANCEL);
        this.http1?.closeAllConnections();
        for (const socket of this.sockets) socket.destroy();
      }, graceMs);
      force.unref();
      // Resolves once every connection the front accepted has closed.
      server.close(() => {
        clearTimeout(force);
        resolve();
      });
      for (const session of this.sessions) session.close();
      this.http1?.closeIdleConnections();
    });
    return this.closing;
  }

  private http2Options(): ServerOptions {
    return {
      maxSessionMemory: SESSION_MEMORY_MIB_MAX,
      settings: {
        maxConcurrentStreams: this.options.concurrentStreamsMax,
        initialWindowSize: STREAM_WINDOW_BYTES,
        maxHeaderListSize: HEADER_LIST_BYTES_MAX,
      },
    };
  }

  /**
   * The listener. Plain: HTTP/2 when the connection starts with the client preface, else
   * HTTP/1.1 (only HTTP/2 without `http`). TLS: by ALPN, h2 or (with `http`) http/1.1; a
   * client that negotiates nothing speaks HTTP/1.1, as Node's allowHTTP1 has it.
   */
  private createFront(): NetServer {
    const tls = this.options.tls;
    const http1 = this.http1;
    if (tls === undefined) {
      return createNetServer((socket) => {
        this.track(socket);
        if (http1 === null) this.serveHttp2(socket);
        else this.sniff(socket, http1);
      });
    }
    const server = createTlsServer(
      {
        cert: tls.cert,
        key: tls.key,
        minVersion: 'TLSv1.2',
        ALPNProtocols: http1 === null ? ['h2'] : ['h2', 'http/1.1'],
        ...(tls.ca === undefined
          ? {}
          : { ca: tls.ca, requestCert: true, rejectUnauthorized: true }),
      },
      (socket: TLSSocket) => {
        this.track(socket);
        if (socket.alpnProtocol === 'h2') this.serveHttp2(socket);
        else if (http1 !== null) http1.emit('connection', socket);
        else socket.destroy(); // no HTTP/1.1 without handlers, as createSecureServer refuses it
      },
    );
    server.on('tlsClientError', (err) =>
      this.options.logger.debug({ err }, 'grpc: TLS handshake failed'),
    );
    return server;
  }

  /** An HTTP/2 connection (`initial`: its bytes read so far), served as authority.ts decides. */
  private serveHttp2(socket: Socket, initial: Buffer = Buffer.alloc(0)): void {
    negotiateHttp2(socket, initial, this.settingsFrame, (connection) =>
      this.http2.emit('connection', connection),
    );
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // A reply leaves as two writes (headers and message, then the trailers a turn later). With
    // Nagle's algorithm the trailers wait for the client's ACK of the first write, which a client
    // waiting for those very trailers may delay (40 ms on Linux). Node's HTTP/2 session turns
    // Nagle off on the socket it is given, but a connection served through AuthorityRewriter
    // gives it the rewriter: its lone calls took 44 ms instead of 1 ms. Off here, for every kind.
    socket.setNoDelay(true);
  }

  /**
   * Reads until the first bytes tell the protocol (at most the preface's 24), then hands the
   * socket over with those bytes: HTTP/2 takes them back from the socket's buffer, HTTP/1.1's
   * parser (which reads the socket natively) is given them as a 'data' event.
   */
  private sniff(socket: Socket, http1: Http1Server): void {
    let seen: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), PROTOCOL_SNIFF_TIMEOUT_MS);
    timer.unref();
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, HTTP2_PREFACE.length);
      const http2 = seen.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
      if (http2 && n < HTTP2_PREFACE.length) return; // a prefix of the preface: read on
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      if (http2) {
        this.serveHttp2(socket, seen);
      } else {
        http1.emit('connection', socket);
        socket.emit('data', seen);
      }
    };
    const onError = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.on('data', onData);
    socket.on('error', onError);
  }

  private onSession(session: ServerHttp2Session): void {
    if (this.closing !== null) {
      session.close();
      return;
    }
    this.sessions.add(session);
    session.on('close', () => this.sessions.delete(session));
    session.on('error', (err) => this.options.logger.debug({ err }, 'grpc: connection error'));
    const enforcement = this.options.keepaliveEnforcement;
    if (enforcement !== undefined) {
      const pings: SessionPings = { strikes: new PingStrikes(enforcement), openStreams: 0 };
      this.pings.set(session, pings);
      session.on('ping', () => {
        if (pings.strikes.onPing(performance.now(), pings.openStreams)) this.sendAway(session);
      });
    }
    try {
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    } catch (err) {
      // The connection is already gone; 'close' follows.
      this.options.logger.debug({ err }, 'grpc: connection window not set');
    }
  }

  private onStream(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    rawHeaders: string[],
  ): void {
    stream.on('error', ignoreStreamError);
    const pings = this.sessionPings(stream.session);
    if (pings !== undefined) {
      pings.openStreams++;
      stream.once('close', () => pings.openStreams--);
    }
    const contentType = headers['content-type'];
    const http = this.options.http;
    if (http !== undefined && !(contentType ?? '').includes('application/grpc')) {
      // The gateway answers without telling each write: count its response as sent now.
      pings?.strikes.noteSent();
      http.http2(stream, headers, rawHeaders);
      return;
    }
    const httpMethod = headers[':method'];
    if (httpMethod !== 'POST') {
      const details = `Received a HEADERS frame with :method "${httpMethod}" which should be POST`;
      sendTrailersOnly(stream, { code: Status.INTERNAL, details }, 405);
      return;
    }
    if (!isGrpcContentType(contentType)) {
      const details = `invalid gRPC request content-type "${contentType ?? ''}"`;
      sendTrailersOnly(stream, { code: Status.INVALID_ARGUMENT, details }, 415);
      return;
    }
    const path = headers[':path'] ?? '';
    const method = this.methods.get(path);
    if (method === undefined) {
      const details = `The server does not implement the method ${path}`;
      sendTrailersOnly(stream, { code: Status.UNIMPLEMENTED, details });
      return;
    }
    let timeoutMs: number | null = null;
    const timeout = headers['grpc-timeout'];
    if (timeout !== undefined) {
      timeoutMs = typeof timeout === 'string' ? parseTimeoutMs(timeout) : null;
      if (timeoutMs === null) {
        const details = `Invalid grpc-timeout value "${timeout}"`;
        sendTrailersOnly(stream, { code: Status.INTERNAL, details });
        return;
      }
      if (timeoutMs > DEADLINE_MS_MAX) timeoutMs = null;
    }
    switch (method.handler.kind) {
      case 'unary':
        new UnaryCall(this.env, method, stream, rawHeaders, timeoutMs);
        break;
      case 'serverStream':
        new ServerStreamCall(this.env, method, stream, rawHeaders, timeoutMs);
        break;
      case 'bidi':
        new BidiStreamCall(this.env, method, stream, rawHeaders, timeoutMs).start();
        break;
    }
  }

  private sessionPings(session: Http2Session | undefined): SessionPings | undefined {
    return session === undefined ? undefined : this.pings.get(session);
  }

  /** How many connections were sent away for pinging too often, since the start. */
  get pingRefusalCount(): number {
    return this.pingRefusals;
  }

  /**
   * grpc-go's answer to too many pings: GOAWAY ENHANCE_YOUR_CALM "too_many_pings" naming the
   * last stream it took, then the connection is closed (its calls are cancelled).
   */
  private sendAway(session: ServerHttp2Session): void {
    if (session.closed || session.destroyed) return;
    this.pingRefusals++;
    const nowMs = performance.now();
    if (nowMs - this.pingRefusalSaidAtMs >= 1_000) {
      this.pingRefusalSaidAtMs = nowMs;
      this.options.logger.warn(
        {
          remote: session.socket?.remoteAddress,
          minTimeMs: this.options.keepaliveEnforcement?.minTimeMs,
          sentAway: this.pingRefusals,
        },
        'grpc: a client pinged more often than the keep-alive policy allows; connection closed',
      );
    }
    const lastStreamId = session.state.lastProcStreamID ?? 0;
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM, lastStreamId, Buffer.from(TOO_MANY_PINGS));
    // Let the GOAWAY reach the socket before the session is torn down.
    setImmediate(() => session.destroy());
  }

  /** etcd's server keep-alive: ping every connection; close one that does not answer. */
  private pingAll(): void {
    for (const session of this.sessions) {
      if (session.closed || session.destroyed) continue;
      const timer = setTimeout(() => {
        this.options.logger.debug({}, 'grpc: keep-alive ping unanswered; closing the connection');
        session.destroy();
      }, this.options.keepaliveTimeoutMs);
      timer.unref();
      const sent = session.ping(() => clearTimeout(timer));
      if (!sent) clearTimeout(timer);
    }
  }
}
