/**
 * tandem's TypeScript client (`import { Client } from 'tandem/client'`): the gateway's routing
 * in-process. It learns the cluster from its members (GET /status on their client ports), sends
 * writes and linearizable reads to the leader and serializable or bounded reads to the best
 * member (same zone first, lowest recent latency, outliers ejected, hedged), and retries only
 * what is safe:
 *
 *   reads        on another member after a failure, with jittered backoff, until the deadline
 *   writes       only when the request certainly never reached a member (no connection), or,
 *                with an idempotency key (`idempotencyKey: true`, or a key per call), as reads:
 *                the key travels as `tandem-request-id` and the cluster applies the write once
 *                per key, answering a retry with the first result (src/server/dedupe.ts: the
 *                key is remembered for the latest 65,536 keyed writes, 1,000,000 log entries
 *                and 64 MiB of kept answers)
 *
 *   const client = await Client.connect({ endpoints: ['127.0.0.1:2379'], zone: 'a' });
 *   await client.put('k', 'v');
 *   const kv = await client.get('k', { consistency: 'serializable' });
 *   for await (const ev of client.watch('k', { prefix: true })) { … }
 */
import { randomBytes } from 'node:crypto';
import { status as grpcStatus } from '@grpc/grpc-js';
import { loadEtcdProto, type ServiceKey } from '../api/proto.js';
import {
  Dispatcher,
  REQUEST_TIMEOUT_MS_DEFAULT,
  type Route,
  startProbes,
} from '../proxy/dispatch.js';
import { KeepAliveHub } from '../proxy/lease.js';
import { TopologyPoller } from '../proxy/topology.js';
import {
  type FailureKind,
  GrpcMetadata,
  type UpstreamError,
  Upstreams,
  type UpstreamTls,
} from '../proxy/upstream.js';
import { type PbEventIn, type PbHeader, ResumableWatch } from '../proxy/watch.js';
import { Router, type RouterOptions, type RouterReport } from '../routing/router.js';
import { prefixEnd as prefixEndBytes } from '../util/bytes.js';
import { clientError, TandemClientError } from './errors.js';

export { type ClientErrorCode, TandemClientError } from './errors.js';

/** How fresh a read must be (tandem's `tandem-consistency` / `tandem-max-staleness-ms`). */
export type Consistency =
  | 'linearizable'
  | 'lease'
  | 'serializable'
  | {
      /** Any member may answer if it is at most this far behind the leader (ms). */
      readonly maxStalenessMs: number;
    };

/**
 * When a write is acknowledged (tandem's `tandem-ack`): `quorum` once a majority of voters hold
 * it (etcd's rule), `all` once every voter does.
 */
export type WriteAck = 'quorum' | 'all';

/** What {@link Client.connect} takes. Only `endpoints` is required. */
export interface ClientOptions {
  /** Members' client endpoints (host:port or URLs); the rest are learned. */
  readonly endpoints: readonly string[];
  /** This client's zone: reads prefer members of it. */
  readonly zone?: string;
  /** Reads' default (default linearizable, as etcd). */
  readonly consistency?: Consistency;
  /** Writes' default (default the cluster's). */
  readonly ack?: WriteAck;
  /** A call's overall deadline, retries included (default 10 s). */
  readonly requestTimeoutMs?: number;
  /** How long connect() waits for a member to answer (default 10 s). */
  readonly connectTimeoutMs?: number;
  /** Routing's tuning (EWMA decay, ejection, hedging); the defaults suit most clusters. */
  readonly router?: Partial<RouterOptions>;
  /**
   * Give every put, delete and writing txn a fresh random key (128 bits) so that it is retried
   * after a member failure and still applied once (default false; a call may say otherwise).
   */
  readonly idempotencyKey?: boolean;
  /**
   * TLS to members whose client URLs are https:// (bare host:port endpoints mean https): PEM
   * contents of the authority to trust (default the system's), of a client certificate and key
   * for members that ask for one, and the name their certificates carry (default the host).
   */
  readonly tls?: UpstreamTls;
  /**
   * etcd auth: the client authenticates once connected and sends the token with every call;
   * a call refused for an invalid or expired token re-authenticates and is sent again once.
   */
  readonly auth?: ClientAuth;
}

/** etcd auth credentials ({@link ClientOptions.auth}). */
export interface ClientAuth {
  /** The etcd user name. */
  readonly username: string;
  /** Its password (sent to the member in Authenticate only; use TLS). */
  readonly password: string;
}

/** TLS to members ({@link ClientOptions.tls}). */
export type { UpstreamTls as ClientTls };

/**
 * A write's idempotency key: true, a fresh random one; a string (1 to 64 printable ASCII
 * characters), that one (to retry across processes); false, none. Default: the client's.
 */
export type IdempotencyKey = boolean | string;

/** A key or value: a string (UTF-8) or bytes. */
export type Bytes = string | Uint8Array;

/** A key and its value, as a read or a watch event gives it (etcd's mvccpb.KeyValue). */
export interface KeyValue {
  /** The key's bytes. */
  readonly key: Buffer;
  /** The value's bytes (empty with `keysOnly`). */
  readonly value: Buffer;
  /** The revision that created the key (since its last deletion). */
  readonly createRevision: number;
  /** The revision of the key's last change. */
  readonly modRevision: number;
  /** Changes since the key was created (1 after the first put; a delete resets it). */
  readonly version: number;
  /** The lease id (decimal), '0' for none. */
  readonly lease: string;
}

/** Options of every read. */
export interface ReadOptions {
  /** How fresh the read must be (default: the client's, else linearizable). */
  readonly consistency?: Consistency;
  /** A read at this revision (0: latest). */
  readonly revision?: number;
  /** Aborts the call (it rejects with CANCELLED). */
  readonly signal?: AbortSignal;
}

/** Options of {@link Client.range}: which keys, and how much of them. */
export interface RangeOptions extends ReadOptions {
  /** Every key with `key` as prefix. */
  readonly prefix?: boolean;
  /** [key, end) (ignored with prefix). */
  readonly end?: Bytes;
  /** Keys returned at most (0: no limit); `more` says whether some were left out. */
  readonly limit?: number;
  /** Keys without their values. */
  readonly keysOnly?: boolean;
  /** Only the number of keys (`count`), no keys. */
  readonly countOnly?: boolean;
}

/** What {@link Client.range} gives. */
export interface RangeResult {
  /** The keys found, in key order (none with `countOnly`). */
  readonly kvs: readonly KeyValue[];
  /** How many keys the range holds (the limit not applied). */
  readonly count: number;
  /** True when `limit` left keys out. */
  readonly more: boolean;
  /** The store's revision the read saw. */
  readonly revision: number;
}

/** Options of {@link Client.put}. */
export interface PutOptions {
  /** Lease id (decimal string or bigint). */
  readonly lease?: string | bigint;
  /** Return the key's previous value (`prevKv`). */
  readonly prevKv?: boolean;
  /** When the write is acknowledged (default: the client's, else the cluster's). */
  readonly ack?: WriteAck;
  /** Aborts the wait (the write may still apply: a put is not undone). */
  readonly signal?: AbortSignal;
  /** Makes the put safe to retry (default: the client's `idempotencyKey`). */
  readonly idempotencyKey?: IdempotencyKey;
}

/** What {@link Client.put} gives. */
export interface PutResult {
  /** The revision of the write. */
  readonly revision: number;
  /** The key's value before, when `prevKv` was asked and the key existed. */
  readonly prevKv: KeyValue | null;
}

/** Options of {@link Client.delete}: which keys. */
export interface DeleteOptions {
  /** Every key with the key as prefix. */
  readonly prefix?: boolean;
  /** [key, end) (ignored with prefix). */
  readonly end?: Bytes;
  /** Return the deleted keys' values (`prevKvs`). */
  readonly prevKv?: boolean;
  /** When the delete is acknowledged (default: the client's, else the cluster's). */
  readonly ack?: WriteAck;
  /** Aborts the wait (the delete may still apply). */
  readonly signal?: AbortSignal;
  /** Makes the delete safe to retry (default: the client's `idempotencyKey`). */
  readonly idempotencyKey?: IdempotencyKey;
}

/** What {@link Client.delete} gives. */
export interface DeleteResult {
  /** How many keys were deleted. */
  readonly deleted: number;
  /** The deleted keys, when `prevKv` was asked. */
  readonly prevKvs: readonly KeyValue[];
  /** The revision of the delete (the store's, when nothing was deleted). */
  readonly revision: number;
}

/** Options of {@link Client.watch}: which keys, from when. */
export interface WatchOptions {
  /** Every key with the key as prefix. */
  readonly prefix?: boolean;
  /** [key, end) (ignored with prefix). */
  readonly end?: Bytes;
  /** The first revision to deliver (0: from now). */
  readonly startRevision?: number;
  /** Each event carries the key's value before it (`prevKv`). */
  readonly prevKv?: boolean;
  /** Ends the iteration. */
  readonly signal?: AbortSignal;
}

/** One change a watch delivers. */
export interface WatchEvent {
  /** A put (created or changed) or a delete. */
  readonly type: 'put' | 'delete';
  /** The key after the change (for a delete: the key, its value empty, the delete's revision). */
  readonly kv: KeyValue;
  /** The key before the change, with `prevKv` (null without it, or for a new key). */
  readonly prevKv: KeyValue | null;
}

// ---------------------------------------------------------------------------------------------
// Txn builder.

/** What a txn condition compares of a key (etcd's Compare.target). */
export type CompareTarget = 'value' | 'version' | 'createRevision' | 'modRevision' | 'lease';
/** How a txn condition compares (etcd's Compare.result). */
export type CompareOp = '=' | '!=' | '>' | '<';

/** One operation of a txn branch; made with {@link op}. */
export type Op =
  | {
      /** A read. */
      readonly kind: 'get';
      /** The key (or the start of the range). */
      readonly key: Bytes;
      /** Which keys, as for {@link Client.range}. */
      readonly options: RangeOptions;
    }
  | {
      /** A write. */
      readonly kind: 'put';
      /** The key. */
      readonly key: Bytes;
      /** The value. */
      readonly value: Bytes;
      /** As for {@link Client.put}. */
      readonly options: PutOptions;
    }
  | {
      /** A delete. */
      readonly kind: 'delete';
      /** The key (or the start of the range). */
      readonly key: Bytes;
      /** Which keys, as for {@link Client.delete}. */
      readonly options: DeleteOptions;
    };

/** Operations for a txn's branches. */
export const op = {
  /** A read of `key` (or a range), as {@link Client.range}. */
  get: (key: Bytes, options: RangeOptions = {}): Op => ({ kind: 'get', key, options }),
  /** A write of `value` at `key`, as {@link Client.put}. */
  put: (key: Bytes, value: Bytes, options: PutOptions = {}): Op => ({
    kind: 'put',
    key,
    value,
    options,
  }),
  /** A delete of `key` (or a range), as {@link Client.delete}. */
  delete: (key: Bytes, options: DeleteOptions = {}): Op => ({ kind: 'delete', key, options }),
};

/** One operation's result in a txn, in the order of the branch that ran. */
export type TxnResponse = RangeResult | PutResult | DeleteResult;

/** What {@link TxnBuilder.commit} gives. */
export interface TxnResult {
  /** True when every condition held (the `do` branch ran), false for `else`. */
  readonly succeeded: boolean;
  /** The store's revision after the txn. */
  readonly revision: number;
  /** The results of the branch that ran, one per operation. */
  readonly responses: readonly TxnResponse[];
}

const COMPARE_RESULT: Record<CompareOp, number> = { '=': 0, '>': 1, '<': 2, '!=': 3 };
const COMPARE_TARGET: Record<CompareTarget, number> = {
  version: 0,
  createRevision: 1,
  modRevision: 2,
  value: 3,
  lease: 4,
};
/** Operations in one txn at most (etcd's --max-txn-ops default). */
export const TXN_OPS_MAX = 128;

/** Options of {@link TxnBuilder.commit}. */
export interface TxnCommitOptions {
  /** Aborts the wait (a txn that writes may still apply). */
  readonly signal?: AbortSignal;
  /** When a txn that writes is acknowledged (default: the client's, else the cluster's). */
  readonly ack?: WriteAck;
  /** For a txn that writes (a read-only txn is retried anyway). */
  readonly idempotencyKey?: IdempotencyKey;
}

/**
 * A txn being built ({@link Client.txn}): conditions (`if`), the operations when all hold
 * (`do`), the operations otherwise (`else`), then `commit()`. A txn with only reads is routed
 * as a read and retried like one; a txn that writes goes to the leader, and is retried only with
 * an idempotency key.
 */
export class TxnBuilder {
  private readonly compares: object[] = [];
  private success: Op[] = [];
  private failure: Op[] = [];

  /** @internal Made by {@link Client.txn}. */
  constructor(private readonly client: Client) {}

  /** A condition; all must hold for the `do` branch. */
  if(key: Bytes, target: CompareTarget, cmp: CompareOp, value: Bytes | number | bigint): this {
    const field = target === 'value' ? bytes(value as Bytes) : String(value);
    this.compares.push({
      key: bytes(key),
      target: COMPARE_TARGET[target],
      result: COMPARE_RESULT[cmp],
      [target]: field,
    });
    return this;
  }

  /** The operations when every condition holds (`then` would make the builder a thenable). */
  do(...ops: Op[]): this {
    this.success = ops;
    return this;
  }

  /** The operations when some condition does not hold. */
  else(...ops: Op[]): this {
    this.failure = ops;
    return this;
  }

  /** Sends the txn (at most {@link TXN_OPS_MAX} conditions and operations in all). */
  commit(options: TxnCommitOptions = {}): Promise<TxnResult> {
    if (this.compares.length + this.success.length + this.failure.length > TXN_OPS_MAX) {
      return Promise.reject(
        new TandemClientError('INVALID_ARGUMENT', `a txn has at most ${TXN_OPS_MAX} operations`),
      );
    }
    return this.client.commitTxn(this.compares, this.success, this.failure, options);
  }
}

// ---------------------------------------------------------------------------------------------

/** Events a watch buffers for a consumer that does not keep up; past it the watch fails. */
export const WATCH_BUFFER_EVENTS_MAX = 100_000;
/** A retry's backoff: a random wait up to this times 2^(retries so far), at most the max. */
export const RETRY_BACKOFF_BASE_MS = 20;
/** The longest backoff before a retry. */
export const RETRY_BACKOFF_MAX_MS = 1_000;

interface PbKv {
  key: Buffer;
  value: Buffer;
  createRevision: string;
  modRevision: string;
  version: string;
  lease: string;
}

function bytes(v: Bytes): Buffer {
  return typeof v === 'string' ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** The end of the range of every key with `prefix` (etcd's GetPrefixRangeEnd). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = prefixEndBytes(prefix);
  return Buffer.from(end.buffer, end.byteOffset, end.byteLength);
}

function rangeEnd(key: Buffer, o: { prefix?: boolean; end?: Bytes }): Buffer {
  if (o.prefix === true) return prefixEnd(key);
  return o.end === undefined ? Buffer.alloc(0) : bytes(o.end);
}

function toKv(kv: PbKv): KeyValue {
  return {
    key: kv.key,
    value: kv.value,
    createRevision: Number(kv.createRevision),
    modRevision: Number(kv.modRevision),
    version: Number(kv.version),
    lease: String(kv.lease),
  };
}

function consistencyValue(c: Consistency): string {
  return typeof c === 'string' ? c : `bounded:${Math.max(0, Math.floor(c.maxStalenessMs))}`;
}

function isUpstreamError(e: unknown): e is UpstreamError {
  return typeof e === 'object' && e !== null && 'kind' in e && 'code' in e;
}

/** The gRPC metadata key of a write's idempotency key (src/api/request-options.ts). */
export const REQUEST_ID_METADATA_KEY = 'tandem-request-id';
const REQUEST_ID_PATTERN = /^[\x21-\x7e]{1,64}$/;

/** A fresh random idempotency key: 128 bits, base64url (22 characters). */
export function newIdempotencyKey(): string {
  return randomBytes(16).toString('base64url');
}

/** etcd's refusals of a token that is no longer valid (a member restarted, the TTL passed). */
const TOKEN_REFUSED = /invalid auth token|auth token is expired|token.*expired/;

/**
 * @internal
 * Whether a call that failed so may be sent again: a request that certainly never reached a
 * member always; one that may have (the member failed with it, or answered UNAVAILABLE: no
 * leader, leader changed, stopping) only when applying it twice is harmless (reads) or
 * impossible (writes with an idempotency key).
 */
export function mayRetry(kind: FailureKind, grpcCode: number, idempotent: boolean): boolean {
  if (kind === 'unsent') return true;
  if (!idempotent) return false;
  return kind === 'lost' || grpcCode === grpcStatus.UNAVAILABLE;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

/**
 * A connection to a tandem cluster (any etcd v3 cluster answers the calls; routing needs
 * tandem's /status). Made with {@link Client.connect}; end it with {@link Client.close}.
 * Calls reject with {@link TandemClientError}.
 */
export class Client {
  private readonly router: Router;
  private readonly upstreams: Upstreams;
  /** The authentication under way (one for all the calls that found their token refused). */
  private authenticating: Promise<void> | null = null;
  private readonly poller: TopologyPoller;
  private readonly dispatcher: Dispatcher;
  private readonly keepAlives: KeepAliveHub;
  private readonly stopProbes: () => void;
  private readonly leases = new Set<Lease>();
  private readonly watches = new Set<ResumableWatch>();
  private closed = false;
  /** Calls retried on another member (for status and tests). */
  retries = 0;

  private constructor(private readonly o: ClientOptions) {
    loadEtcdProto();
    this.router = new Router({ ...o.router, zone: o.zone ?? null });
    this.upstreams = new Upstreams(o.tls === undefined ? {} : { tls: o.tls });
    this.poller = new TopologyPoller({
      seeds: o.endpoints,
      router: this.router,
      ...(o.tls === undefined ? {} : { tls: o.tls }),
    });
    this.dispatcher = new Dispatcher(this.router, this.upstreams, this.poller);
    this.keepAlives = new KeepAliveHub(this.router, this.upstreams, this.poller);
    this.stopProbes = startProbes(this.router, this.upstreams);
  }

  /** A client once some member answered (rejects after connectTimeoutMs). */
  static async connect(options: ClientOptions): Promise<Client> {
    if (options.endpoints.length === 0) {
      throw new TandemClientError('INVALID_ARGUMENT', 'no endpoints given');
    }
    const client = new Client(options);
    try {
      await client.poller.start(options.connectTimeoutMs ?? 10_000);
    } catch (error) {
      client.close();
      throw new TandemClientError('UNAVAILABLE', (error as Error).message, grpcStatus.UNAVAILABLE);
    }
    if (options.auth !== undefined) {
      try {
        await client.authenticate();
      } catch (error) {
        client.close();
        throw error;
      }
    }
    return client;
  }

  /** etcd's Authenticate with the client's credentials; later calls carry the new token. */
  private authenticate(): Promise<void> {
    const auth = this.o.auth;
    if (auth === undefined) return Promise.resolve();
    this.authenticating ??= (async () => {
      const r = (await this.call(
        'auth',
        'Authenticate',
        { name: auth.username, password: auth.password },
        new GrpcMetadata(),
        'leader',
        true,
      )) as { token: string };
      this.upstreams.setToken(r.token);
    })().finally(() => {
      this.authenticating = null;
    });
    return this.authenticating;
  }

  /** The key's value, or null when it does not exist. */
  async get(key: Bytes, options: ReadOptions = {}): Promise<KeyValue | null> {
    const r = await this.range(key, { ...options, limit: 1 });
    return r.kvs[0] ?? null;
  }

  /** The keys of a range: `key` alone, every key with it as prefix, or [key, end). */
  async range(key: Bytes, options: RangeOptions = {}): Promise<RangeResult> {
    const k = bytes(key);
    const consistency = options.consistency ?? this.o.consistency ?? 'linearizable';
    const r = (await this.call(
      'kv',
      'Range',
      rangeRequest(k, options),
      this.readMetadata(consistency),
      routeOfConsistency(consistency),
      true,
      options.signal,
    )) as { header: PbHeader; kvs: PbKv[]; count: string; more: boolean };
    return {
      kvs: r.kvs.map(toKv),
      count: Number(r.count),
      more: r.more,
      revision: Number(r.header.revision),
    };
  }

  /**
   * Writes `value` at `key`, on the leader. Not retried once it may have reached a member (a
   * put that failed with UNAVAILABLE or TIMEOUT may have applied).
   */
  async put(key: Bytes, value: Bytes, options: PutOptions = {}): Promise<PutResult> {
    const id = this.requestId(options.idempotencyKey);
    const r = (await this.call(
      'kv',
      'Put',
      putRequest(bytes(key), bytes(value), options),
      this.writeMetadata(options.ack, id),
      'leader',
      id !== null,
      options.signal,
    )) as { header: PbHeader; prevKv: PbKv | null };
    return { revision: Number(r.header.revision), prevKv: r.prevKv ? toKv(r.prevKv) : null };
  }

  /** Deletes `key`, or a range; on the leader, retried as a put is. */
  async delete(key: Bytes, options: DeleteOptions = {}): Promise<DeleteResult> {
    const id = this.requestId(options.idempotencyKey);
    const r = (await this.call(
      'kv',
      'DeleteRange',
      deleteRequest(bytes(key), options),
      this.writeMetadata(options.ack, id),
      'leader',
      id !== null,
      options.signal,
    )) as { header: PbHeader; deleted: string; prevKvs: PbKv[] };
    return {
      deleted: Number(r.deleted),
      prevKvs: r.prevKvs.map(toKv),
      revision: Number(r.header.revision),
    };
  }

  /** A transaction: `client.txn().if(…).do(…).else(…).commit()`. */
  txn(): TxnBuilder {
    return new TxnBuilder(this);
  }

  /** @internal The builder's commit. */
  async commitTxn(
    compare: readonly object[],
    success: readonly Op[],
    failure: readonly Op[],
    options: TxnCommitOptions,
  ): Promise<TxnResult> {
    const all = [...success, ...failure];
    const readOnly = all.every((o) => o.kind === 'get');
    const id = readOnly ? null : this.requestId(options.idempotencyKey);
    const r = (await this.call(
      'kv',
      'Txn',
      { compare, success: success.map(requestOp), failure: failure.map(requestOp) },
      readOnly ? new GrpcMetadata() : this.writeMetadata(options.ack, id),
      'leader',
      readOnly || id !== null,
      options.signal,
    )) as { header: PbHeader; succeeded: boolean; responses: Record<string, unknown>[] };
    const revision = Number(r.header.revision);
    return {
      succeeded: r.succeeded,
      revision,
      responses: r.responses.map((x): TxnResponse => {
        const range = x.responseRange as { kvs: PbKv[]; count: string; more: boolean } | null;
        if (range) {
          return {
            kvs: range.kvs.map(toKv),
            count: Number(range.count),
            more: range.more,
            revision,
          };
        }
        const put = x.responsePut as { prevKv: PbKv | null } | null;
        if (put) return { revision, prevKv: put.prevKv ? toKv(put.prevKv) : null };
        const del = x.responseDeleteRange as { deleted: string; prevKvs: PbKv[] };
        return { deleted: Number(del.deleted), prevKvs: del.prevKvs.map(toKv), revision };
      }),
    };
  }

  /**
   * Events on a key (or range) as an async iterator, from now or from `startRevision`. The
   * stream survives its member: it is resumed on another from the first revision not yet
   * delivered, and nothing is delivered twice. A compaction past the watch ends it with a
   * COMPACTED error; `signal` or break ends it quietly.
   */
  watch(key: Bytes, options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    return {
      [Symbol.asyncIterator]: () => this.watchIterator(key, options),
    };
  }

  /** A lease of `ttlSeconds`, kept alive until revoked or closed. */
  async grant(ttlSeconds: number, options: { keepAlive?: boolean } = {}): Promise<Lease> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new TandemClientError('INVALID_ARGUMENT', 'ttlSeconds must be a positive integer');
    }
    const r = (await this.call(
      'lease',
      'LeaseGrant',
      { TTL: String(ttlSeconds), ID: '0' },
      new GrpcMetadata(),
      'leader',
      false,
    )) as { ID: string; TTL: string; error: string };
    if (r.error !== '') throw new TandemClientError('INTERNAL', r.error);
    const lease = new Lease(this, r.ID, Number(r.TTL), this.keepAlives);
    this.leases.add(lease);
    if (options.keepAlive !== false) lease.startKeepAlive();
    return lease;
  }

  /** @internal */
  async revokeLease(lease: Lease): Promise<void> {
    this.leases.delete(lease);
    await this.call('lease', 'LeaseRevoke', { ID: lease.id }, new GrpcMetadata(), 'leader', false);
  }

  /** @internal */
  forgetLease(lease: Lease): void {
    this.leases.delete(lease);
  }

  /**
   * A distributed lock on txn + lease (etcd's concurrency.Mutex): a key `<name>/<lease id>`
   * under our lease, created in a txn only if absent; the lock is ours once no key under
   * `<name>/` was created before ours; until then we wait for the deletion of the one created
   * just before ours (each waiter watches one other, no herd). The lease expires the lock if
   * this process dies. Rejects with TIMEOUT after `timeoutMs` (the key is removed).
   */
  async lock(
    name: string,
    options: { ttlSeconds?: number; timeoutMs?: number; value?: Bytes } = {},
  ): Promise<LockHandle> {
    if (name === '' || name.length > 1024) {
      throw new TandemClientError('INVALID_ARGUMENT', 'a lock name is 1 to 1024 characters');
    }
    const lease = await this.grant(options.ttlSeconds ?? 10);
    const prefix = `${name}/`;
    const key = `${prefix}${BigInt(lease.id).toString(16)}`;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), options.timeoutMs ?? 60_000);
    try {
      const t = await this.txn()
        .if(key, 'createRevision', '=', 0)
        .do(op.put(key, options.value ?? '', { lease: lease.id }))
        .else(op.get(key))
        .commit();
      const mine = t.succeeded
        ? t.revision
        : (t.responses[0] as RangeResult).kvs[0]!.createRevision;
      for (let round = 0; round < LOCK_WAIT_ROUNDS_MAX; round++) {
        const held = await this.range(prefix, { prefix: true, limit: LOCK_WAITERS_MAX });
        let before: KeyValue | null = null;
        for (const kv of held.kvs) {
          if (
            kv.createRevision < mine &&
            (before === null || kv.createRevision > before.createRevision)
          ) {
            before = kv;
          }
        }
        if (before === null) return new LockHandle(this, key, lease);
        await this.waitDeleted(before.key, held.revision + 1, abort.signal);
        if (abort.signal.aborted) throw new TandemClientError('TIMEOUT', `lock ${name}: timed out`);
      }
      throw new TandemClientError('TIMEOUT', `lock ${name}: too many waits`);
    } catch (error) {
      await lease.revoke().catch(() => {});
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Leader election on the same scheme (etcd's concurrency.Election): resolves once this
   * candidate, with `value`, is the oldest under `<name>/`; resign() by unlock().
   */
  campaign(
    name: string,
    value: Bytes,
    options: { ttlSeconds?: number; timeoutMs?: number } = {},
  ): Promise<LockHandle> {
    return this.lock(name, { ...options, value });
  }

  /** The current leader's value of election `name` (the oldest candidate), or null. */
  async electionLeader(name: string): Promise<Buffer | null> {
    const held = await this.range(`${name}/`, { prefix: true, limit: LOCK_WAITERS_MAX });
    let first: KeyValue | null = null;
    for (const kv of held.kvs) {
      if (first === null || kv.createRevision < first.createRevision) first = kv;
    }
    return first?.value ?? null;
  }

  private async waitDeleted(key: Buffer, fromRevision: number, signal: AbortSignal): Promise<void> {
    for await (const ev of this.watch(key, { startRevision: fromRevision, signal })) {
      if (ev.type === 'delete') return;
    }
  }

  /** What routing knows: members (latency, ejections), the leader, decisions, hedges. */
  status(): RouterReport & {
    /** Calls retried on another member so far. */
    readonly retries: number;
    /** The members the client's watches are on. */
    readonly watchMembers: string[];
  } {
    const watchMembers = [...this.watches].map((w) => w.member).filter((m) => m !== null);
    return { ...this.router.report(performance.now()), retries: this.retries, watchMembers };
  }

  /**
   * Ends the client: watches end, leases stop being kept alive (they expire after their TTL),
   * connections close; later calls reject with CLOSED.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const lease of this.leases) lease.close();
    for (const w of this.watches) w.close();
    this.stopProbes();
    this.poller.close();
    this.keepAlives.close();
    this.upstreams.close();
  }

  // -------------------------------------------------------------------------------------------

  private readMetadata(consistency: Consistency): GrpcMetadata {
    const md = new GrpcMetadata();
    md.set('tandem-consistency', consistencyValue(consistency));
    return md;
  }

  private writeMetadata(ack: WriteAck | undefined, requestId: string | null): GrpcMetadata {
    const md = new GrpcMetadata();
    const a = ack ?? this.o.ack;
    if (a !== undefined) md.set('tandem-ack', a);
    if (requestId !== null) md.set(REQUEST_ID_METADATA_KEY, requestId);
    return md;
  }

  /** The request id of one write (the same for all its attempts), or null for none. */
  private requestId(key: IdempotencyKey | undefined): string | null {
    const k = key ?? this.o.idempotencyKey ?? false;
    if (k === false) return null;
    if (k === true) return newIdempotencyKey();
    if (!REQUEST_ID_PATTERN.test(k)) {
      throw new TandemClientError(
        'INVALID_ARGUMENT',
        'an idempotency key is 1 to 64 printable ASCII characters without spaces',
      );
    }
    return k;
  }

  /**
   * One call, retried while safe: after a failure that certainly did not reach a member, or,
   * when idempotent, any member failure; jittered exponential backoff; one overall deadline.
   */
  private async call(
    service: ServiceKey,
    method: string,
    request: unknown,
    metadata: GrpcMetadata,
    route: Route,
    idempotent: boolean,
    signal?: AbortSignal,
  ): Promise<unknown> {
    if (this.closed) throw new TandemClientError('CLOSED', 'the client is closed');
    const timeoutMs = this.o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    const deadline = performance.now() + timeoutMs;
    let reauthenticated = false;
    for (let round = 0; ; round++) {
      try {
        return await this.dispatcher.call({
          service,
          method,
          request,
          metadata,
          route,
          idempotent,
          timeoutMs: Math.max(1, deadline - performance.now()),
          ...(signal === undefined ? {} : { signal }),
        });
      } catch (error) {
        if (!isUpstreamError(error)) throw error;
        if (
          this.o.auth !== undefined &&
          !reauthenticated &&
          method !== 'Authenticate' &&
          error.kind === 'answer' &&
          TOKEN_REFUSED.test(error.details)
        ) {
          // Refused before it ran: safe to send again, once, with a fresh token.
          reauthenticated = true;
          await this.authenticate();
          continue;
        }
        const safe = mayRetry(error.kind, error.code, idempotent);
        const backoffMs =
          Math.random() * Math.min(RETRY_BACKOFF_MAX_MS, RETRY_BACKOFF_BASE_MS * 2 ** round);
        if (!safe || signal?.aborted || this.closed || performance.now() + backoffMs >= deadline) {
          throw signal?.aborted
            ? new TandemClientError('CANCELLED', 'cancelled', grpcStatus.CANCELLED)
            : clientError(error.code, error.details);
        }
        this.retries++;
        await sleep(backoffMs, signal);
      }
    }
  }

  private watchIterator(key: Bytes, options: WatchOptions): AsyncIterator<WatchEvent> {
    const k = bytes(key);
    const queue: WatchEvent[] = [];
    let failure: TandemClientError | null = null;
    let done = false;
    let wake: (() => void) | null = null;
    const notify = (): void => {
      const w = wake;
      wake = null;
      w?.();
    };
    const watch = new ResumableWatch(
      {
        key: k,
        rangeEnd: rangeEnd(k, options),
        startRevision: options.startRevision ?? 0,
        prevKv: options.prevKv === true,
        filters: [],
        progressNotify: false,
      },
      { router: this.router, upstreams: this.upstreams, poller: this.poller },
      {
        created: () => {},
        progress: () => {},
        events: (_header, events: readonly PbEventIn[]) => {
          for (const ev of events) {
            const e = ev as unknown as { type: number; kv: PbKv; prevKv: PbKv | null };
            queue.push({
              type: e.type === 1 ? 'delete' : 'put',
              kv: toKv(e.kv),
              prevKv: e.prevKv ? toKv(e.prevKv) : null,
            });
          }
          if (queue.length > WATCH_BUFFER_EVENTS_MAX) {
            failure = new TandemClientError(
              'WATCH_OVERFLOW',
              `more than ${WATCH_BUFFER_EVENTS_MAX} events not consumed`,
            );
            stop();
          }
          notify();
        },
        canceled: (_header, reason, compactRevision) => {
          failure =
            compactRevision > 0
              ? new TandemClientError(
                  'COMPACTED',
                  'mvcc: required revision has been compacted',
                  grpcStatus.OUT_OF_RANGE,
                  compactRevision,
                )
              : new TandemClientError('UNAVAILABLE', reason, grpcStatus.UNAVAILABLE);
          stop();
        },
      },
    );
    const stop = (): void => {
      if (done) return;
      done = true;
      watch.close();
      this.watches.delete(watch);
      notify();
    };
    options.signal?.addEventListener('abort', stop, { once: true });
    this.watches.add(watch);
    watch.start();
    return {
      next: async (): Promise<IteratorResult<WatchEvent>> => {
        for (;;) {
          const ev = queue.shift();
          if (ev !== undefined) return { value: ev, done: false };
          if (failure !== null) {
            const f = failure;
            failure = null;
            throw f;
          }
          if (done || this.closed) return { value: undefined, done: true };
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      },
      return: async (): Promise<IteratorResult<WatchEvent>> => {
        stop();
        return { value: undefined, done: true };
      },
    };
  }
}

/** Rounds of waiting for a predecessor a lock() makes at most. */
export const LOCK_WAIT_ROUNDS_MAX = 10_000;
/** Waiters a lock() or electionLeader() reads at most. */
export const LOCK_WAITERS_MAX = 10_000;

/** A held lock: unlock() releases it (deletes its key, revokes its lease). */
export class LockHandle {
  /** @internal Made by {@link Client.lock} and {@link Client.campaign}. */
  constructor(
    private readonly client: Client,
    /** The lock's key (`<name>/<lease id hex>`). */
    readonly key: string,
    /** The lease the key is under: it expires the lock if this process dies. */
    readonly lease: Lease,
  ) {}

  /** Releases the lock (or resigns the election). */
  async unlock(): Promise<void> {
    await this.client.delete(this.key);
    await this.lease.revoke();
  }
}

/** A granted lease; kept alive (every third of its TTL) until revoke() or close(). */
export class Lease {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  /** Set when the lease expired or was revoked elsewhere (keep-alive answered TTL 0). */
  lost = false;
  /** Keep-alives answered. */
  keepAlives = 0;

  /** @internal Made by {@link Client.grant}. */
  constructor(
    private readonly client: Client,
    /** The lease id, decimal. */
    readonly id: string,
    /** The TTL the leader granted. */
    readonly ttlSeconds: number,
    private readonly hub: KeepAliveHub,
  ) {}

  /** @internal */
  startKeepAlive(): void {
    const every = Math.max(100, (this.ttlSeconds * 1000) / 3);
    const tick = (): void => {
      if (this.closed) return;
      this.hub.keepAlive(this.id).then((r) => {
        if (this.closed) return;
        this.keepAlives++;
        if (Number(r.TTL) <= 0) {
          this.lost = true;
          this.close();
          return;
        }
        this.timer = setTimeout(tick, every);
        this.timer.unref();
      });
    };
    tick();
  }

  /** Revokes the lease: every key under it is deleted. */
  async revoke(): Promise<void> {
    this.close();
    await this.client.revokeLease(this);
  }

  /** Stops keeping it alive (it then expires after its TTL). */
  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.client.forgetLease(this);
  }
}

function routeOfConsistency(c: Consistency): Route {
  return c === 'linearizable' || c === 'lease' ? 'leader' : 'read';
}

function rangeRequest(key: Buffer, o: RangeOptions): object {
  return {
    key,
    rangeEnd: rangeEnd(key, o),
    limit: String(o.limit ?? 0),
    revision: String(o.revision ?? 0),
    keysOnly: o.keysOnly === true,
    countOnly: o.countOnly === true,
    serializable: false,
  };
}

function putRequest(key: Buffer, value: Buffer, o: PutOptions): object {
  return { key, value, lease: String(o.lease ?? 0), prevKv: o.prevKv === true };
}

function deleteRequest(key: Buffer, o: DeleteOptions): object {
  return { key, rangeEnd: rangeEnd(key, o), prevKv: o.prevKv === true };
}

function requestOp(o: Op): object {
  switch (o.kind) {
    case 'get':
      return { requestRange: rangeRequest(bytes(o.key), o.options) };
    case 'put':
      return { requestPut: putRequest(bytes(o.key), bytes(o.value), o.options) };
    case 'delete':
      return { requestDeleteRange: deleteRequest(bytes(o.key), o.options) };
  }
}
