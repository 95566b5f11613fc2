/**
 * One HTTP request and its response, whichever protocol carried it: HTTP/1.1 (node:http's
 * request and response) or an HTTP/2 stream that is not a gRPC call. The gateway sees only this.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';

export interface HttpExchange {
  readonly method: string;
  /** The path without its query. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Header names lower case, values as sent: name, value, name, value, ... */
  readonly rawHeaders: readonly string[];
  /**
   * The body, or null once it passes `bytesMax` (nothing more is kept; the request side is
   * then abandoned: the connection closes after the response on HTTP/1.1, the stream is reset
   * after it on HTTP/2).
   */
  readBody(bytesMax: number): Promise<Buffer | null>;
  readonly headersSent: boolean;
  /** True once the response ended or the client went away. */
  readonly done: boolean;
  respond(status: number, headers: Readonly<Record<string, string>>): void;
  /** False when the buffer is over its mark: wait for 'drain' (onDrain). */
  write(chunk: string): boolean;
  end(chunk?: string): void;
  /** Bytes written and not yet sent. */
  readonly writableLength: number;
  onDrain(listener: () => void): void;
  offDrain(listener: () => void): void;
  /** Runs once, when the client goes away before the response ended. */
  onAbort(listener: () => void): void;
  /** Gives up: the connection (HTTP/1.1) or stream (HTTP/2) is torn down. */
  destroy(): void;
}

function splitUrl(url: string): { path: string; query: URLSearchParams } {
  const q = url.indexOf('?');
  return q < 0
    ? { path: url, query: new URLSearchParams() }
    : { path: url.slice(0, q), query: new URLSearchParams(url.slice(q + 1)) };
}

function lowerRaw(raw: readonly string[]): string[] {
  const out = raw.slice();
  for (let i = 0; i < out.length; i += 2) out[i] = out[i]!.toLowerCase();
  return out;
}

/** Reads `body` until its end or until it passes `bytesMax` (then null). */
function readBounded(body: Readable, bytesMax: number, onOver: () => void): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > bytesMax) {
        cleanup();
        chunks.length = 0;
        onOver();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error('the request was aborted'));
    };
    const cleanup = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
  });
}

export class Http1Exchange implements HttpExchange {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly rawHeaders: readonly string[];
  private aborted = false;
  private readonly abortListeners: Array<() => void> = [];

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
  ) {
    this.method = req.method ?? '';
    ({ path: this.path, query: this.query } = splitUrl(req.url ?? ''));
    this.rawHeaders = lowerRaw(req.rawHeaders);
    res.on('close', () => {
      if (res.writableFinished || this.aborted) return;
      this.aborted = true;
      for (const listener of this.abortListeners) listener();
    });
  }

  readBody(bytesMax: number): Promise<Buffer | null> {
    return readBounded(this.req, bytesMax, () => {
      // The rest of the body is not read: the connection cannot be reused.
      this.res.shouldKeepAlive = false;
      this.req.pause();
    });
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  get done(): boolean {
    return this.aborted || this.res.writableEnded || this.res.destroyed;
  }

  get writableLength(): number {
    return this.res.writableLength;
  }

  respond(status: number, headers: Readonly<Record<string, string>>): void {
    this.res.writeHead(status, headers);
  }

  write(chunk: string): boolean {
    return this.res.write(chunk);
  }

  end(chunk?: string): void {
    if (chunk === undefined) this.res.end();
    else this.res.end(chunk);
    if (!this.res.shouldKeepAlive) this.res.once('finish', () => this.req.socket.destroySoon());
  }

  onDrain(listener: () => void): void {
    this.res.on('drain', listener);
  }

  offDrain(listener: () => void): void {
    this.res.off('drain', listener);
  }

  onAbort(listener: () => void): void {
    this.abortListeners.push(listener);
  }

  destroy(): void {
    this.res.destroy();
  }
}

export class Http2Exchange implements HttpExchange {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  private aborted = false;
  private abandoned = false;
  private readonly abortListeners: Array<() => void> = [];

  constructor(
    private readonly stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    readonly rawHeaders: readonly string[],
  ) {
    this.method = headers[':method'] ?? '';
    ({ path: this.path, query: this.query } = splitUrl(headers[':path'] ?? ''));
    stream.on('close', () => {
      if (stream.writableFinished || this.aborted) return;
      this.aborted = true;
      for (const listener of this.abortListeners) listener();
    });
  }

  readBody(bytesMax: number): Promise<Buffer | null> {
    return readBounded(this.stream, bytesMax, () => {
      this.abandoned = true;
      this.stream.pause();
    });
  }

  get headersSent(): boolean {
    return this.stream.headersSent;
  }

  get done(): boolean {
    return this.aborted || this.stream.writableEnded || this.stream.destroyed;
  }

  get writableLength(): number {
    return this.stream.writableLength;
  }

  respond(status: number, headers: Readonly<Record<string, string>>): void {
    if (this.stream.destroyed || this.stream.closed) return;
    this.stream.respond({ ':status': status, ...headers });
  }

  write(chunk: string): boolean {
    return this.stream.write(chunk);
  }

  end(chunk?: string): void {
    if (this.stream.destroyed || this.stream.closed) return;
    if (chunk === undefined) this.stream.end();
    else this.stream.end(chunk);
    // A request side still open (abandoned, or a client that never ends it) is reset once the
    // response is out, so the client stops sending; Node sends the reset after the data.
    if (this.abandoned || !this.stream.readableEnded) {
      this.stream.resume();
      this.stream.close(constants.NGHTTP2_NO_ERROR);
    }
  }

  onDrain(listener: () => void): void {
    this.stream.on('drain', listener);
  }

  offDrain(listener: () => void): void {
    this.stream.off('drain', listener);
  }

  onAbort(listener: () => void): void {
    this.abortListeners.push(listener);
  }

  destroy(): void {
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }
}
