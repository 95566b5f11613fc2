/**
 * The smallest etcd v3 client the chaos workload needs, on @grpc/grpc-js and etcd's own protos
 * (src/api/proto.ts): get, put, compare-and-set as a txn, and a watch stream. No retries, no
 * endpoint switching: a chaos client must see every failure to record it (a retrying client
 * hides outcomes the history needs). One connection per client: a local subchannel pool, so
 * two clients never share a socket.
 */
import {
  type Client,
  type ClientDuplexStream,
  credentials,
  Metadata,
  makeGenericClientConstructor,
} from '@grpc/grpc-js';
import { serviceDefinition } from '../api/proto.js';

const CHANNEL_OPTIONS = {
  'grpc.use_local_subchannel_pool': 1,
  // Reconnect quickly after a member restarts (the default backoff grows to minutes).
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
} as const;

export interface GrpcError extends Error {
  code?: number;
  details?: string;
}

/** gRPC status codes the workload tells apart. */
export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_UNAVAILABLE = 14;

type Unary = (
  request: unknown,
  metadata: Metadata,
  options: { deadline: number },
  callback: (error: GrpcError | null, response?: unknown) => void,
) => void;

interface PbHeader {
  readonly revision: string;
}
interface PbKv {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly modRevision: string;
}

export interface GetResult {
  /** null when the key is absent. */
  readonly value: string | null;
  readonly revision: number;
}

export interface WriteResult {
  readonly revision: number;
}

export interface CasResult {
  readonly succeeded: boolean;
  readonly revision: number;
}

export class KvClient {
  private readonly kv: Client;

  constructor(readonly endpoint: string) {
    const Ctor = makeGenericClientConstructor(serviceDefinition('kv'), 'KV');
    this.kv = new Ctor(endpoint, credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  /** A linearizable read (the member's default consistency is set to linearizable). */
  async get(key: string, timeoutMs: number): Promise<GetResult> {
    const r = (await this.unary('Range', { key: Buffer.from(key) }, timeoutMs)) as {
      header: PbHeader;
      kvs: PbKv[];
    };
    const kv = r.kvs[0];
    return {
      value: kv === undefined ? null : kv.value.toString('utf8'),
      revision: Number(r.header.revision),
    };
  }

  /** A put; `leaseId` attaches the key to a lease (the decimal id a grant returned). */
  async put(key: string, value: string, timeoutMs: number, leaseId?: string): Promise<WriteResult> {
    const r = (await this.unary(
      'Put',
      {
        key: Buffer.from(key),
        value: Buffer.from(value),
        ...(leaseId !== undefined && { lease: leaseId }),
      },
      timeoutMs,
    )) as { header: PbHeader };
    return { revision: Number(r.header.revision) };
  }

  /** If the value is `expected` (null: the key is absent), put `next`. */
  async cas(
    key: string,
    expected: string | null,
    next: string,
    timeoutMs: number,
  ): Promise<CasResult> {
    const compare =
      expected === null
        ? { result: 0, target: 0, key: Buffer.from(key), version: 0 }
        : { result: 0, target: 3, key: Buffer.from(key), value: Buffer.from(expected) };
    const r = (await this.unary(
      'Txn',
      {
        compare: [compare],
        success: [{ requestPut: { key: Buffer.from(key), value: Buffer.from(next) } }],
        failure: [],
      },
      timeoutMs,
    )) as { header: PbHeader; succeeded: boolean };
    return { succeeded: r.succeeded, revision: Number(r.header.revision) };
  }

  close(): void {
    this.kv.close();
  }

  private unary(method: string, request: unknown, timeoutMs: number): Promise<unknown> {
    const call = (this.kv as unknown as Record<string, Unary>)[method]!.bind(this.kv);
    return new Promise((resolve, reject) => {
      call(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) =>
        error === null ? resolve(response) : reject(error),
      );
    });
  }
}

export interface WatchEventPb {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value: string;
  readonly revision: number;
}

export interface WatchHandlers {
  onEvents(events: readonly WatchEventPb[], headerRevision: number): void;
  /** A response with no events (created, progress): the header revision it carries. */
  onProgress(headerRevision: number): void;
  /** The stream ended or failed; the watch is over (the caller may open a new one). */
  onEnd(error: GrpcError | null): void;
}

/** One watch of one key on one stream. */
export class KeyWatch {
  private readonly client: Client;
  private readonly call: ClientDuplexStream<unknown, unknown>;
  private ended = false;

  constructor(endpoint: string, key: string, startRevision: number, handlers: WatchHandlers) {
    const Ctor = makeGenericClientConstructor(serviceDefinition('watch'), 'Watch');
    this.client = new Ctor(endpoint, credentials.createInsecure(), CHANNEL_OPTIONS);
    const open = (
      this.client as unknown as Record<string, () => ClientDuplexStream<unknown, unknown>>
    ).Watch!;
    this.call = open.call(this.client);
    const end = (error: GrpcError | null): void => {
      if (this.ended) return;
      this.ended = true;
      handlers.onEnd(error);
    };
    this.call.on('data', (r: unknown) => {
      const response = r as {
        header?: PbHeader;
        created: boolean;
        canceled: boolean;
        compactRevision: string;
        events: { type: number; kv: PbKv }[];
      };
      const headerRevision = Number(response.header?.revision ?? 0);
      if (response.canceled) {
        const compacted = Number(response.compactRevision) > 0;
        end(new Error(compacted ? 'watch compacted' : 'watch canceled') as GrpcError);
        this.close();
        return;
      }
      if (response.events.length === 0) {
        // A creation acknowledgement promises nothing about delivered events; a progress
        // response does (every event up to its header revision was sent before it).
        if (!response.created) handlers.onProgress(headerRevision);
        return;
      }
      handlers.onEvents(
        response.events.map((e) => ({
          type: e.type === 1 ? 'delete' : 'put',
          key: e.kv.key.toString('utf8'),
          value: e.kv.value.toString('utf8'),
          revision: Number(e.kv.modRevision),
        })),
        headerRevision,
      );
    });
    this.call.on('error', (error: GrpcError) => end(error));
    this.call.on('end', () => end(null));
    this.call.write({
      createRequest: { key: Buffer.from(key), startRevision, progressNotify: false },
    });
  }

  /** Asks for a progress response (its header revision: every event up to it was sent). */
  requestProgress(): void {
    if (!this.ended) this.call.write({ progressRequest: {} });
  }

  close(): void {
    this.ended = true;
    this.call.cancel();
    this.client.close();
  }
}

export interface LeaseGrantResult {
  /** The lease id, as the decimal string the proto loader gives int64s. */
  readonly id: string;
  /** The TTL in force (the server raises a short one to its minimum). */
  readonly ttlSeconds: number;
}

/**
 * Lease grant and keep-alives on one member. Keep-alives go one at a time over one stream, as a
 * request and the next response; a keep-alive that errs or times out ends the stream (a late
 * answer could not be told from the next one's), and the next keep-alive opens a new one.
 */
export class LeaseClient {
  private readonly lease: Client;
  private stream: ClientDuplexStream<unknown, unknown> | null = null;
  private waiter: ((error: GrpcError | null, ttlSeconds: number) => void) | null = null;

  constructor(readonly endpoint: string) {
    const Ctor = makeGenericClientConstructor(serviceDefinition('lease'), 'Lease');
    this.lease = new Ctor(endpoint, credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  async grant(ttlSeconds: number, timeoutMs: number): Promise<LeaseGrantResult> {
    const call = (this.lease as unknown as Record<string, Unary>).LeaseGrant!.bind(this.lease);
    const r = await new Promise<unknown>((resolve, reject) => {
      call(
        { TTL: ttlSeconds, ID: 0 },
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (e, v) => (e === null ? resolve(v) : reject(e)),
      );
    });
    const response = r as { ID: string; TTL: string; error: string };
    if (response.error !== '' && response.error !== undefined) {
      throw Object.assign(new Error(response.error), { details: response.error }) as GrpcError;
    }
    return { id: String(response.ID), ttlSeconds: Number(response.TTL) };
  }

  /** One keep-alive: the TTL the member answered (0: the lease is gone). */
  keepAlive(id: string, timeoutMs: number): Promise<number> {
    if (this.waiter !== null) throw new Error('LeaseClient: one keep-alive at a time');
    const stream = this.stream ?? this.openStream();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.endStream();
        settle(Object.assign(new Error('keep-alive timed out'), { code: 4 }) as GrpcError, 0);
      }, timeoutMs);
      const settle = (error: GrpcError | null, ttlSeconds: number): void => {
        clearTimeout(timer);
        this.waiter = null;
        if (error === null) resolve(ttlSeconds);
        else reject(error);
      };
      this.waiter = settle;
      stream.write({ ID: id });
    });
  }

  close(): void {
    this.endStream();
    this.lease.close();
  }

  private openStream(): ClientDuplexStream<unknown, unknown> {
    const open = (
      this.lease as unknown as Record<string, () => ClientDuplexStream<unknown, unknown>>
    ).LeaseKeepAlive!;
    const stream = open.call(this.lease);
    const fail = (error: GrpcError): void => {
      if (this.stream !== stream) return;
      this.stream = null;
      this.waiter?.(error, 0);
    };
    stream.on('data', (r: unknown) => {
      if (this.stream === stream) this.waiter?.(null, Number((r as { TTL: string }).TTL));
    });
    stream.on('error', fail);
    stream.on('end', () => fail(new Error('keep-alive stream ended') as GrpcError));
    this.stream = stream;
    return stream;
  }

  private endStream(): void {
    const stream = this.stream;
    this.stream = null;
    stream?.cancel();
  }
}
