/**
 * The gateway's calls to members: one grpc-js channel per member client URL, unary calls with
 * cancellation, bidirectional streams, and the classification of a failure (did the request
 * certainly not reach the member, so that even a write may be sent elsewhere?).
 */
import {
  type Client,
  type ClientDuplexStream,
  credentials,
  Client as GrpcClient,
  Metadata as GrpcMetadata,
  status as grpcStatus,
  type ServiceError,
} from '@grpc/grpc-js';
import { hostPort } from '../api/grpc-client.js';
import { type ServiceKey, serviceDefinition } from '../api/proto.js';

/**
 * TLS to members whose client URLs are https:// (PEM contents). Without `ca` the system's
 * authorities are trusted; `cert` and `key` are presented to members that ask for a client
 * certificate (etcd's --client-cert-auth).
 */
export interface UpstreamTls {
  /** PEM of the authority that signed the members' certificates (default: the system's). */
  readonly ca?: string | Buffer;
  /** PEM of a client certificate, for members that ask for one. */
  readonly cert?: string | Buffer;
  /** PEM of the client certificate's private key. */
  readonly key?: string | Buffer;
  /** The name members' certificates must carry (default: each URL's host). */
  readonly servername?: string;
}

export interface UpstreamsOptions {
  readonly tls?: UpstreamTls;
}

/** Channels kept at most (members come and go; the oldest is closed past this). */
export const UPSTREAM_CHANNELS_MAX = 64;

/** How a failed attempt failed. */
export type FailureKind =
  /** No connection to the member: the request was never sent (safe to send a write elsewhere). */
  | 'unsent'
  /** The member failed or went away while the request was out: it may have applied. */
  | 'lost'
  /** The member answered with an error status: an answer, passed to the client. */
  | 'answer';

export interface UpstreamError {
  readonly code: number;
  readonly details: string;
  readonly kind: FailureKind;
}

export function classify(error: ServiceError): UpstreamError {
  const details = error.details ?? error.message;
  let kind: FailureKind = 'answer';
  if (error.code === grpcStatus.UNAVAILABLE) {
    // grpc-js fails a call fast with these when no connection could be made.
    kind = /No connection established|ECONNREFUSED|connect E|Name resolution failed/.test(details)
      ? 'unsent'
      : 'lost';
  } else if (error.code === grpcStatus.DEADLINE_EXCEEDED || error.code === grpcStatus.CANCELLED) {
    kind = 'lost';
  } else if (error.code === grpcStatus.INTERNAL && /RST_STREAM|Received RST/.test(details)) {
    kind = 'lost';
  }
  return { code: error.code, details, kind };
}

export interface PendingCall {
  readonly done: Promise<unknown>;
  cancel(): void;
}

const pem = (v: string | Buffer | undefined): Buffer | null =>
  v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(v);

export class Upstreams {
  private readonly channels = new Map<string, Client>();
  /** An etcd auth token added to every call that carries none (the client's own login). */
  private token: string | null = null;

  constructor(private readonly options: UpstreamsOptions = {}) {}

  /** The token every later call carries (null: none). */
  setToken(token: string | null): void {
    this.token = token;
  }

  private withToken(metadata: GrpcMetadata): GrpcMetadata {
    if (this.token === null || metadata.get('token').length > 0) return metadata;
    const md = metadata.clone();
    md.set('token', this.token);
    return md;
  }

  /** One unary call; rejects with an UpstreamError. */
  unary(
    url: string,
    service: ServiceKey,
    method: string,
    request: unknown,
    metadata: GrpcMetadata,
    timeoutMs: number,
  ): PendingCall {
    const definition = serviceDefinition(service)[method];
    if (definition === undefined) throw new Error(`no method ${method} in ${service}`);
    let cancel: () => void = () => {};
    const done = new Promise<unknown>((resolve, reject) => {
      const call = this.channel(url).makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        request,
        // Authenticate is how a token is obtained: never with the one it replaces.
        service === 'auth' && method === 'Authenticate' ? metadata : this.withToken(metadata),
        { deadline: Date.now() + timeoutMs },
        (error: ServiceError | null, response?: unknown) => {
          if (error === null) resolve(response);
          else reject(classify(error));
        },
      );
      cancel = () => call.cancel();
    });
    return { done, cancel: () => cancel() };
  }

  bidi(
    url: string,
    service: ServiceKey,
    method: string,
    metadata: GrpcMetadata,
  ): ClientDuplexStream<unknown, unknown> {
    const definition = serviceDefinition(service)[method];
    if (definition === undefined) throw new Error(`no method ${method} in ${service}`);
    return this.channel(url).makeBidiStreamRequest(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize,
      this.withToken(metadata),
      {},
    );
  }

  serverStream(
    url: string,
    service: ServiceKey,
    method: string,
    request: unknown,
    metadata: GrpcMetadata,
  ): import('@grpc/grpc-js').ClientReadableStream<unknown> {
    const definition = serviceDefinition(service)[method];
    if (definition === undefined) throw new Error(`no method ${method} in ${service}`);
    return this.channel(url).makeServerStreamRequest(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize,
      request,
      this.withToken(metadata),
      {},
    );
  }

  close(): void {
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }

  private channel(url: string): Client {
    let c = this.channels.get(url);
    if (c === undefined) {
      if (this.channels.size >= UPSTREAM_CHANNELS_MAX) {
        const [oldest, channel] = this.channels.entries().next().value as [string, Client];
        channel.close();
        this.channels.delete(oldest);
      }
      const tls = this.options.tls;
      const secure = url.startsWith('https://');
      c = new GrpcClient(
        hostPort(url),
        secure
          ? credentials.createSsl(pem(tls?.ca), pem(tls?.key), pem(tls?.cert))
          : credentials.createInsecure(),
        {
          ...(secure && tls?.servername !== undefined
            ? {
                'grpc.ssl_target_name_override': tls.servername,
                'grpc.default_authority': tls.servername,
              }
            : {}),
          'grpc.max_receive_message_length': -1,
          'grpc.max_send_message_length': -1,
          // Reconnect soon after a member comes back (grpc-js backs off up to 120 s otherwise).
          'grpc.initial_reconnect_backoff_ms': 100,
          'grpc.max_reconnect_backoff_ms': 1000,
        },
      );
      this.channels.set(url, c);
    }
    return c;
  }
}

export { GrpcMetadata };
