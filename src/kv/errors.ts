import { TandemError } from '../util/errors.js';

/**
 * Errors of the key-value layer. Each code maps one-to-one to a gRPC status and etcd's exact
 * client-visible message (server/etcdserver/api/v3rpc/rpctypes/error.go), so that etcd clients
 * that match on messages (etcdctl, clientv3's ErrCompacted checks) behave unchanged.
 */
export type KvErrorCode =
  | 'EMPTY_KEY'
  | 'KEY_NOT_FOUND'
  | 'VALUE_PROVIDED'
  | 'LEASE_PROVIDED'
  | 'TOO_MANY_OPS'
  | 'DUPLICATE_KEY'
  | 'INVALID_SORT_OPTION'
  | 'REQUEST_TOO_LARGE'
  | 'COMPACTED'
  | 'FUTURE_REV'
  | 'LEASE_NOT_FOUND'
  | 'INVALID_REQUEST'
  | 'SNAPSHOT_CORRUPT'
  /** A NOSPACE alarm is active (or the quota is reached): writes that grow the store refused. */
  | 'NO_SPACE'
  /** A request id (src/server/dedupe.ts) already applied with a different request. */
  | 'REQUEST_ID_REUSED'
  /** A request id already applied whose answer was too large to keep for its retries. */
  | 'REQUEST_ID_ANSWER_DROPPED';

/** gRPC status names as in google.golang.org/grpc/codes. */
export type GrpcStatusName =
  | 'INVALID_ARGUMENT'
  | 'OUT_OF_RANGE'
  | 'NOT_FOUND'
  | 'DATA_LOSS'
  | 'FAILED_PRECONDITION'
  | 'RESOURCE_EXHAUSTED';

export interface KvErrorInfo {
  readonly grpc: GrpcStatusName;
  /** The message an etcd client sees (the `desc` of the gRPC status). */
  readonly message: string;
}

export const KV_ERRORS: Readonly<Record<KvErrorCode, KvErrorInfo>> = {
  EMPTY_KEY: { grpc: 'INVALID_ARGUMENT', message: 'etcdserver: key is not provided' },
  KEY_NOT_FOUND: { grpc: 'INVALID_ARGUMENT', message: 'etcdserver: key not found' },
  VALUE_PROVIDED: { grpc: 'INVALID_ARGUMENT', message: 'etcdserver: value is provided' },
  LEASE_PROVIDED: { grpc: 'INVALID_ARGUMENT', message: 'etcdserver: lease is provided' },
  TOO_MANY_OPS: {
    grpc: 'INVALID_ARGUMENT',
    message: 'etcdserver: too many operations in txn request',
  },
  DUPLICATE_KEY: {
    grpc: 'INVALID_ARGUMENT',
    message: 'etcdserver: duplicate key given in txn request',
  },
  INVALID_SORT_OPTION: { grpc: 'INVALID_ARGUMENT', message: 'etcdserver: invalid sort option' },
  REQUEST_TOO_LARGE: { grpc: 'INVALID_ARGUMENT', message: 'etcdserver: request is too large' },
  COMPACTED: {
    grpc: 'OUT_OF_RANGE',
    message: 'etcdserver: mvcc: required revision has been compacted',
  },
  FUTURE_REV: {
    grpc: 'OUT_OF_RANGE',
    message: 'etcdserver: mvcc: required revision is a future revision',
  },
  LEASE_NOT_FOUND: { grpc: 'NOT_FOUND', message: 'etcdserver: requested lease not found' },
  // Not etcd errors: a command that does not decode to a request (a bug or corruption upstream),
  // and a snapshot that fails its checksums.
  INVALID_REQUEST: { grpc: 'INVALID_ARGUMENT', message: 'tandem: malformed kv request' },
  SNAPSHOT_CORRUPT: { grpc: 'DATA_LOSS', message: 'tandem: kv snapshot is corrupt' },
  NO_SPACE: {
    grpc: 'RESOURCE_EXHAUSTED',
    message: 'etcdserver: mvcc: database space exceeded',
  },
  // Not etcd errors: a retried write whose request id does not answer it (src/server/dedupe.ts).
  REQUEST_ID_REUSED: {
    grpc: 'INVALID_ARGUMENT',
    message: 'tandem: the request id was already used for a different request',
  },
  REQUEST_ID_ANSWER_DROPPED: {
    grpc: 'FAILED_PRECONDITION',
    message: 'tandem: the request was applied; its answer was too large to keep for a retry',
  },
};

export class KvError extends TandemError<KvErrorCode> {
  /** The gRPC status the API edge must answer with. */
  readonly grpc: GrpcStatusName;

  constructor(code: KvErrorCode, detail?: string, options?: { cause?: unknown }) {
    const info = KV_ERRORS[code];
    super(code, detail === undefined ? info.message : `${info.message}: ${detail}`, options);
    this.grpc = info.grpc;
  }

  /** etcd's message, without any tandem detail appended (what goes on the wire). */
  get etcdMessage(): string {
    return KV_ERRORS[this.code].message;
  }
}

export function isKvError(e: unknown, code?: KvErrorCode): e is KvError {
  return e instanceof KvError && (code === undefined || e.code === code);
}
