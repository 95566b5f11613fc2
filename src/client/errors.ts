/**
 * The client's typed errors: one class, a stable `code` per failure a caller may act on, mapped
 * from the gRPC status and etcd's message (etcd's rpctypes messages are its stable contract; the
 * client matches them as clientv3 does).
 */
import { status as grpcStatus } from '@grpc/grpc-js';

/**
 * A failure a caller may act on, stable across versions:
 *
 * - `COMPACTED`: the revision asked for was compacted away (see `compactRevision`)
 * - `FUTURE_REVISION`: the revision asked for is not written yet
 * - `LEASE_NOT_FOUND`, `KEY_NOT_FOUND`: what was named does not exist
 * - `NO_LEADER`, `LEADER_CHANGED`, `NOT_LEADER`: the cluster is electing; try again
 * - `TIMEOUT`: the deadline passed (a write may have applied)
 * - `UNAVAILABLE`: no member could be reached (a write may have applied if it was sent)
 * - `TOO_MANY_REQUESTS`, `REQUEST_TOO_LARGE`: the cluster refused the load or the size
 * - `INVALID_ARGUMENT`: the request is malformed (the message says how)
 * - `PERMISSION_DENIED`: auth refused it
 * - `WRITE_ACK_TIMEOUT`: an `ack: 'all'` write applied but not every voter confirmed in time
 * - `CANCELLED`: the caller's signal aborted it; `CLOSED`: the client was closed
 * - `WATCH_OVERFLOW`: a watch's consumer fell too far behind
 * - `INTERNAL`: anything else
 */
export type ClientErrorCode =
  | 'COMPACTED'
  | 'FUTURE_REVISION'
  | 'LEASE_NOT_FOUND'
  | 'KEY_NOT_FOUND'
  | 'NO_LEADER'
  | 'LEADER_CHANGED'
  | 'NOT_LEADER'
  | 'TIMEOUT'
  | 'UNAVAILABLE'
  | 'TOO_MANY_REQUESTS'
  | 'REQUEST_TOO_LARGE'
  | 'INVALID_ARGUMENT'
  | 'PERMISSION_DENIED'
  | 'WRITE_ACK_TIMEOUT'
  | 'CANCELLED'
  | 'CLOSED'
  | 'WATCH_OVERFLOW'
  /** etcd auth: a wrong username or password. */
  | 'AUTH_FAILED'
  /** A write's idempotency key was already used for a different write. */
  | 'REQUEST_ID_REUSED'
  /** A retried write was applied before; its answer was too large for the cluster to keep. */
  | 'REQUEST_ID_ANSWER_DROPPED'
  | 'INTERNAL';

/** etcd's messages (rpctypes) and tandem's, to the client's codes; first match wins. */
const BY_MESSAGE: readonly [RegExp, ClientErrorCode][] = [
  [/required revision has been compacted/, 'COMPACTED'],
  [/required revision is a future revision/, 'FUTURE_REVISION'],
  [/requested lease not found/, 'LEASE_NOT_FOUND'],
  [/key not found/, 'KEY_NOT_FOUND'],
  [/etcdserver: no leader/, 'NO_LEADER'],
  [/etcdserver: leader changed/, 'LEADER_CHANGED'],
  [/etcdserver: not leader/, 'NOT_LEADER'],
  [/request timed out/, 'TIMEOUT'],
  [/too many requests/, 'TOO_MANY_REQUESTS'],
  [/request is too large/, 'REQUEST_TOO_LARGE'],
  [/ack=all/, 'WRITE_ACK_TIMEOUT'],
  [/authentication failed, invalid user ID or password/, 'AUTH_FAILED'],
  [/request id was already used/, 'REQUEST_ID_REUSED'],
  [/answer was too large to keep/, 'REQUEST_ID_ANSWER_DROPPED'],
];

const BY_STATUS: Readonly<Record<number, ClientErrorCode>> = {
  [grpcStatus.CANCELLED]: 'CANCELLED',
  [grpcStatus.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [grpcStatus.OUT_OF_RANGE]: 'INVALID_ARGUMENT',
  [grpcStatus.FAILED_PRECONDITION]: 'INVALID_ARGUMENT',
  [grpcStatus.DEADLINE_EXCEEDED]: 'TIMEOUT',
  [grpcStatus.NOT_FOUND]: 'KEY_NOT_FOUND',
  [grpcStatus.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpcStatus.UNAUTHENTICATED]: 'PERMISSION_DENIED',
  [grpcStatus.RESOURCE_EXHAUSTED]: 'TOO_MANY_REQUESTS',
  [grpcStatus.UNAVAILABLE]: 'UNAVAILABLE',
};

/** Every error the client rejects with: `code` says what failed, `message` etcd's words. */
export class TandemClientError extends Error {
  /** Always 'TandemClientError'. */
  override readonly name = 'TandemClientError';

  /** @internal Made by the client. */
  constructor(
    /** What failed. */
    readonly code: ClientErrorCode,
    message: string,
    /** The gRPC status code the member (or the client itself) gave. */
    readonly grpcCode: number = grpcStatus.UNKNOWN,
    /** For COMPACTED: the revision the watch or read was compacted at, when known. */
    readonly compactRevision = 0,
  ) {
    super(message);
  }
}

/** The client's error for a gRPC status and message. */
export function clientError(grpcCode: number, details: string): TandemClientError {
  for (const [pattern, code] of BY_MESSAGE) {
    if (pattern.test(details)) return new TandemClientError(code, details, grpcCode);
  }
  return new TandemClientError(BY_STATUS[grpcCode] ?? 'INTERNAL', details, grpcCode);
}
