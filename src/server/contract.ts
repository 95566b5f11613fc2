/**
 * What the etcd v3 API edge needs from a member: the contract between src/api (gRPC services,
 * which translate protobuf to these types and errors to gRPC statuses) and src/server (the
 * member, which implements it over raft, storage and kv).
 *
 * Every method may throw a TandemError whose `code` is an ErrorCode of src/api/errors.ts (kv, lease,
 * watch and server codes); src/api/errors.ts maps each code to one gRPC status and etcd's message.
 */
import type {
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from '../kv/api-types.js';
import type { AuthHeader, AuthOp, AuthOpResult, AuthStore } from '../kv/auth/index.js';
import type { LeaseId } from '../kv/types.js';
import type { WatchStream } from '../kv/watch/stream.js';
import type { AlarmMember } from './alarms.js';

/** Read consistency of one request (per request: gRPC metadata, or etcd's `serializable`). */
export type ReadConsistency =
  | { readonly kind: 'linearizable' }
  | { readonly kind: 'lease' }
  | { readonly kind: 'serializable' }
  | { readonly kind: 'bounded'; readonly maxStalenessMs: number };

/** When a write is acknowledged: once a quorum of voters has it, or every voter. */
export type WriteAck = 'quorum' | 'all';

export interface RequestOptions {
  readonly consistency: ReadConsistency;
  readonly ack: WriteAck;
  /** Aborted when the client cancels or its deadline passes. */
  readonly signal?: AbortSignal;
  /**
   * The credentials the API edge checked this write's permissions under (auth enabled): the
   * write is refused at apply if the auth store changed since (etcd's header AuthRevision).
   */
  readonly auth?: AuthHeader;
  /**
   * A put, delete or writing txn with an id (gRPC metadata `tandem-request-id`) is applied at
   * most once per id: a retry is answered with the first result (server/dedupe.ts).
   */
  readonly requestId?: string;
}

/** etcd's ResponseHeader; ids are uint64 on the wire. */
export interface Header {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  readonly revision: number;
  readonly raftTerm: number;
}

export interface Member {
  readonly id: bigint;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

export interface MemberStatus {
  readonly version: string;
  readonly dbSize: number;
  readonly dbSizeInUse: number;
  readonly leader: bigint;
  readonly raftIndex: number;
  readonly raftTerm: number;
  readonly raftAppliedIndex: number;
  readonly isLearner: boolean;
  readonly errors: readonly string[];
}

export interface LeaseGrantResult {
  readonly id: LeaseId;
  readonly ttlSeconds: number;
}

export interface LeaseTimeToLiveResult {
  readonly id: LeaseId;
  /** Remaining seconds; -1 when the lease does not exist (etcd answers so, not an error). */
  readonly ttlSeconds: number;
  readonly grantedTtlSeconds: number;
  readonly keys: readonly Uint8Array[];
}

export interface HashKvResult {
  readonly hash: number;
  readonly compactRevision: number;
  /** The revision the hash covers. */
  readonly hashRevision: number;
}

/** etcd's Hash: the whole backend's hash, and the revision it was taken at. */
export interface BackendHashResult {
  readonly hash: number;
  readonly revision: number;
}

/** etcd's AlarmRequest actions (GET lists; the others go through the log). */
export type AlarmOp = 'get' | 'activate' | 'deactivate';

export type { AlarmMember };

/**
 * A point-in-time snapshot being read: the bytes of an etcd database file (bbolt, in etcd's
 * layout: server/etcd-snapshot.ts). The API sends the chunks as etcd does (at most 32 KiB per
 * SnapshotResponse, remaining_bytes counting down), then the SHA-256 of all of them, so that a
 * saved file is `bbolt file ‖ sha256(bbolt file)`, as etcd's. Empty chunks carry nothing (the
 * producer's pause points). Chunks must not be reused after they are yielded (they may wait in
 * the gRPC write buffer).
 */
export interface SnapshotStream {
  /** The header at the snapshot's point in time (its revision is the snapshot's revision). */
  readonly header: Header;
  /**
   * Total bytes of `chunks` when known (read at each message: it may become known once the
   * first chunks are produced), for exact remaining_bytes; null when not (remaining_bytes then
   * counts only what has been read ahead, reaching 0 at the end).
   */
  readonly sizeBytes: number | null;
  /** Iterated once; `return()` (an early exit, e.g. the client went away) releases the view. */
  readonly chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** A response produced by the member, with the header it was produced under. */
export interface WithHeader<T> {
  readonly header: Header;
  readonly response: T;
}

/** etcd's auth store behind a member (src/server/auth.ts); the API edge does the checks. */
export interface AuthBackend {
  /** The replicated store as this member applied it: read it, never change it. */
  store(): AuthStore;
  /** A management op (or a get or list) through the log, applied as `header`'s user. */
  propose(op: AuthOp, header: AuthHeader, opts: RequestOptions): Promise<AuthOpResult>;
  /**
   * Makes a simple token "<tokenPrefix>.<index>" for `name` through the log (its password was
   * checked); the token. The prefix is random, made by the caller (the member draws none).
   */
  authenticate(name: string, tokenPrefix: string, opts: RequestOptions): Promise<string>;
  /** Waits until this member applied everything committed before now (etcd's linearizable read). */
  barrier(signal?: AbortSignal): Promise<void>;
  /**
   * The user a simple token was made for, refreshing it; null when unknown. A token made by an
   * entry this member has not applied yet is waited for (etcd's indexWaiter), within a barrier.
   */
  simpleTokenUser(token: string, signal?: AbortSignal): Promise<string | null>;
  /** Keys attached to a lease as this member knows them (none when it does not exist). */
  leaseKeys(id: LeaseId): readonly Uint8Array[];
}

export interface EtcdBackend {
  /** etcd's auth; absent: the backend has none (answers as an auth-disabled etcd). */
  readonly auth?: AuthBackend;

  /** The header as of now (for responses that carry no revision of their own). */
  header(): Header;

  range(req: RangeRequest, opts: RequestOptions): Promise<WithHeader<RangeResponse>>;
  put(req: PutRequest, opts: RequestOptions): Promise<WithHeader<PutResponse>>;
  deleteRange(
    req: DeleteRangeRequest,
    opts: RequestOptions,
  ): Promise<WithHeader<DeleteRangeResponse>>;
  txn(req: TxnRequest, opts: RequestOptions): Promise<WithHeader<TxnResponse>>;
  compact(req: CompactionRequest, opts: RequestOptions): Promise<WithHeader<CompactionResponse>>;

  /**
   * A new watch stream for one gRPC Watch call (WatchHub.openStream). The API drains it with
   * `next()` at the pace the client reads, and calls `close()` when the call ends.
   * `onReadable` runs when the stream's queue turns non-empty; it only schedules a drain, never
   * calls back into the hub. The member must tick the hub (WatchHub.tick) so that watchers left
   * behind while the client was slow catch up.
   */
  openWatchStream(onReadable: () => void): WatchStream;

  leaseGrant(id: LeaseId, ttlSeconds: number, opts: RequestOptions): Promise<LeaseGrantResult>;
  leaseRevoke(id: LeaseId, opts: RequestOptions): Promise<void>;
  /** Renews on the leader (forwarded when this member is not the leader); remaining TTL. */
  leaseKeepAlive(id: LeaseId, opts: RequestOptions): Promise<number>;
  leaseTimeToLive(
    id: LeaseId,
    withKeys: boolean,
    opts: RequestOptions,
  ): Promise<LeaseTimeToLiveResult>;
  leaseLeases(opts: RequestOptions): Promise<readonly LeaseId[]>;

  memberList(linearizable: boolean, opts: RequestOptions): Promise<readonly Member[]>;
  memberAdd(
    peerUrls: readonly string[],
    isLearner: boolean,
    opts: RequestOptions,
  ): Promise<{ member: Member; members: readonly Member[] }>;
  memberRemove(id: bigint, opts: RequestOptions): Promise<readonly Member[]>;
  memberUpdate(
    id: bigint,
    peerUrls: readonly string[],
    opts: RequestOptions,
  ): Promise<readonly Member[]>;
  memberPromote(id: bigint, opts: RequestOptions): Promise<readonly Member[]>;
  /**
   * The leader's half of an ack=all write sent to a follower: resolves once every voter has
   * persisted `index`, fails with WRITE_ACK_TIMEOUT after the deadline, NOT_LEADER elsewhere.
   * Optional: backends without it refuse (UNIMPLEMENTED).
   */
  awaitAllVoters?(index: number): Promise<void>;

  status(): Promise<MemberStatus>;
  /** etcd's HashKV up to `revision` (0 = current); COMPACTED / FUTURE_REV as etcd. */
  hashKv(revision: number): Promise<HashKvResult>;
  /** etcd's Hash over the whole backend (see MvccStore.hashBackendInSlices). */
  hash(): Promise<BackendHashResult>;
  /**
   * etcd's Alarm: `get` lists the raised alarms of `alarm` (0 = every type) after a
   * linearizable barrier; `activate` / `deactivate` go through the log and answer the alarm
   * raised or cleared (none when nothing changed).
   */
  alarm(
    op: AlarmOp,
    memberId: bigint,
    alarm: number,
    opts: RequestOptions,
  ): Promise<readonly AlarmMember[]>;
  /** etcd's Defragment: gives the backend's free space back to the file system. */
  defragment(): Promise<void>;
  /** False while this member knows no leader (gRPC metadata `hasleader`: etcd's no leader). */
  hasLeader(): boolean;
  /**
   * Client URLs of members that serve clients (voters and replicas), the leader's first; where a
   * member that serves none (a standby) forwards unary calls. Optional: without it, refusals.
   */
  servingClientUrls?(): readonly string[];
  /** The leader's client URLs as the registry knows them (empty while no leader is known). */
  leaderClientUrls?(): readonly string[];
  /** Throws STANDBY (as any client call here would) when this member serves no clients. */
  assertServing?(): void;
  /**
   * While this member, just started, awaits its first role check (and its registry does not say
   * standby): resolves when the check completes, after which it may serve. Null otherwise:
   * waiting would not make it serve.
   */
  roleCheckPending?(): Promise<void> | null;
  /**
   * `listener` runs once, when this member has known no leader for etcd's monitorLeader span
   * (three election timeouts): streams opened with `hasleader` are then cancelled with NO_LEADER.
   * Returns the unsubscribe function.
   */
  onLeaderLost(listener: () => void): () => void;
  moveLeader(targetId: bigint, opts: RequestOptions): Promise<void>;
  /** A consistent point-in-time copy of the state machine, in chunks (etcd's Snapshot RPC). */
  snapshot(): Promise<SnapshotStream>;
}

/**
 * What a follower cannot answer itself, sent to the leader's client endpoint (as etcd forwards
 * lease calls over HTTP): lease deadlines live only in the leader's memory, and only the leader
 * sees every voter's progress (ack=all). The real one speaks gRPC (src/api/forwarder.ts); the
 * simulator's calls the leader's façade over its virtual network.
 */
export interface LeaderForwarder {
  leaseKeepAlive(leaderClientUrls: readonly string[], id: LeaseId): Promise<number>;
  leaseTimeToLive(
    leaderClientUrls: readonly string[],
    id: LeaseId,
    withKeys: boolean,
  ): Promise<LeaseTimeToLiveResult>;
  /**
   * Asks the leader to wait until every voter persisted `index` (ack=all through a follower);
   * rejects with WRITE_ACK_TIMEOUT (the write is committed) after about `timeoutMs`.
   */
  awaitAllVoters?(
    leaderClientUrls: readonly string[],
    index: number,
    timeoutMs: number,
  ): Promise<void>;
}
