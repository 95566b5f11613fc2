/**
 * The one table from every error code a request can meet (kv, lease, watch, member, and the API
 * edge's own) to the gRPC status and message a client sees.
 *
 * etcd clients decide what to do from code *and* message: clientv3 turns known messages back
 * into typed errors (rpctypes.errStringToError) and retries Unavailable on reads; the etcd3 npm
 * client matches messages to error classes. So where etcd has the error, the status code and
 * message are etcd's exactly (server/etcdserver/api/v3rpc/rpctypes/error.go) and nothing is
 * appended. tandem's own errors say `tandem: ...` and carry their detail.
 */

import type { AuthErrorCode } from '../kv/auth/errors.js';
import { KV_ERRORS, type KvErrorCode } from '../kv/errors.js';
import type { LeaseErrorCode } from '../kv/lease/errors.js';
import type { WatchErrorCode } from '../kv/watch/errors.js';
import type { ServerErrorCode } from '../server/errors.js';
import { TandemError } from '../util/errors.js';
import { ForwardedStatus, Status, type StatusCode, type StatusName } from './grpc/status.js';

/** Errors only the API edge raises. */
export type ApiErrorCode =
  /** A request field no etcd server would accept (named in the message). */
  | 'INVALID_FIELD'
  /** A tandem-* metadata entry that does not parse (named in the message). */
  | 'INVALID_METADATA'
  /** etcd's ErrGRPCMemberBadURLs: peer URLs that are not scheme://host:port. */
  | 'MEMBER_BAD_URLS'
  /** gRPC health Check of a service this server does not have. */
  | 'UNKNOWN_SERVICE'
  /** An etcd RPC tandem does not implement (named in the message). */
  | 'NOT_SUPPORTED'
  /** etcd's concurrency errors, as its v3election and v3lock servers return them (Unknown). */
  | 'ELECTION_NO_LEADER'
  | 'ELECTION_NOT_LEADER'
  | 'ELECTION_MISSING_LEADER_KEY'
  | 'SESSION_EXPIRED'
  /** A bug: anything thrown that is not a typed error. */
  | 'INTERNAL';

export class ApiError extends TandemError<ApiErrorCode> {
  constructor(code: ApiErrorCode, detail?: string) {
    const entry = API_ERRORS[code];
    super(code, detail === undefined ? entry.message : `${entry.message}: ${detail}`);
  }
}

export type ErrorCode =
  | KvErrorCode
  | LeaseErrorCode
  | WatchErrorCode
  | ServerErrorCode
  | AuthErrorCode
  | ApiErrorCode;

export type GrpcStatusName = StatusName;

export interface ErrorEntry {
  readonly grpc: GrpcStatusName;
  readonly message: string;
  /** etcd's own message: sent verbatim, details dropped, so clients recognise it. */
  readonly etcd: boolean;
}

const etcd = (grpc: GrpcStatusName, message: string): ErrorEntry => ({ grpc, message, etcd: true });
const own = (grpc: GrpcStatusName, message: string): ErrorEntry => ({ grpc, message, etcd: false });

/** kv's table already holds etcd's codes and messages; only its two tandem codes are not etcd's. */
function kvEntry(code: KvErrorCode): ErrorEntry {
  const info = KV_ERRORS[code];
  return { grpc: info.grpc, message: info.message, etcd: info.message.startsWith('etcdserver:') };
}

export const API_ERRORS: Readonly<Record<ErrorCode, ErrorEntry>> = {
  // --- kv (src/kv/errors.ts) --------------------------------------------------------------
  EMPTY_KEY: kvEntry('EMPTY_KEY'),
  KEY_NOT_FOUND: kvEntry('KEY_NOT_FOUND'),
  VALUE_PROVIDED: kvEntry('VALUE_PROVIDED'),
  LEASE_PROVIDED: kvEntry('LEASE_PROVIDED'),
  TOO_MANY_OPS: kvEntry('TOO_MANY_OPS'),
  DUPLICATE_KEY: kvEntry('DUPLICATE_KEY'),
  INVALID_SORT_OPTION: kvEntry('INVALID_SORT_OPTION'),
  REQUEST_TOO_LARGE: kvEntry('REQUEST_TOO_LARGE'),
  COMPACTED: kvEntry('COMPACTED'),
  FUTURE_REV: kvEntry('FUTURE_REV'),
  // Shared by kv and lease: both mean etcd's ErrGRPCLeaseNotFound.
  LEASE_NOT_FOUND: kvEntry('LEASE_NOT_FOUND'),
  INVALID_REQUEST: kvEntry('INVALID_REQUEST'),
  SNAPSHOT_CORRUPT: kvEntry('SNAPSHOT_CORRUPT'),
  NO_SPACE: kvEntry('NO_SPACE'),
  REQUEST_ID_REUSED: kvEntry('REQUEST_ID_REUSED'),
  REQUEST_ID_ANSWER_DROPPED: kvEntry('REQUEST_ID_ANSWER_DROPPED'),

  // --- lease (src/kv/lease/errors.ts) -----------------------------------------------------
  LEASE_EXISTS: etcd('FAILED_PRECONDITION', 'etcdserver: lease already exists'),
  LEASE_TTL_TOO_LARGE: etcd('OUT_OF_RANGE', 'etcdserver: too large lease TTL'),
  // The member forwards keep-alives to the leader; this one lost the leadership mid-request.
  // Unavailable + "leader changed" makes clients retry, as they would with etcd.
  LEASE_NOT_PRIMARY: etcd('UNAVAILABLE', 'etcdserver: leader changed'),
  // etcd waits for the revoke of an expired lease and then answers "not found".
  LEASE_EXPIRED: etcd('NOT_FOUND', 'etcdserver: requested lease not found'),
  LEASE_ID_OUT_OF_RANGE: own('INVALID_ARGUMENT', 'tandem: lease id must be in (0, 2^63)'),
  LEASE_TOO_MANY: own('RESOURCE_EXHAUSTED', 'tandem: too many leases'),

  // --- watch (src/kv/watch/errors.ts); creates fail as cancel_reason, these are the rest ---
  WATCH_COMPACTED: etcd('OUT_OF_RANGE', 'etcdserver: mvcc: required revision has been compacted'),
  WATCH_DUPLICATE_ID: own(
    'INVALID_ARGUMENT',
    'mvcc: duplicate watch ID provided on the WatchStream',
  ),
  WATCH_EMPTY_RANGE: own('INVALID_ARGUMENT', 'mvcc: watcher range is empty'),
  WATCH_INVALID_REQUEST: own('INVALID_ARGUMENT', 'tandem: invalid watch request'),
  WATCH_TOO_MANY_WATCHERS: own('RESOURCE_EXHAUSTED', 'tandem: too many watchers on this stream'),
  WATCH_STREAM_BACKLOGGED: own(
    'RESOURCE_EXHAUSTED',
    'tandem: watch stream backlogged: read its responses',
  ),
  // The hub closed the stream (the member is stopping): clients reconnect on Unavailable.
  WATCH_STREAM_CLOSED: own('UNAVAILABLE', 'tandem: watch stream closed'),

  // --- member (src/server/errors.ts) ------------------------------------------------------
  NO_LEADER: etcd('UNAVAILABLE', 'etcdserver: no leader'),
  LEADER_CHANGED: etcd('UNAVAILABLE', 'etcdserver: leader changed'),
  TIMEOUT: etcd('UNAVAILABLE', 'etcdserver: request timed out'),
  TIMEOUT_LEADER_FAIL: etcd(
    'UNAVAILABLE',
    'etcdserver: request timed out, possibly due to previous leader failure',
  ),
  STOPPED: etcd('UNAVAILABLE', 'etcdserver: server stopped'),
  // What grpc-go reports for a cancelled context; the client has usually gone already.
  CANCELED: etcd('CANCELLED', 'context canceled'),
  MEMBER_NOT_FOUND: etcd('NOT_FOUND', 'etcdserver: member not found'),
  MEMBER_EXISTS: etcd('FAILED_PRECONDITION', 'etcdserver: member ID already exist'),
  PEER_URL_EXISTS: etcd('FAILED_PRECONDITION', 'etcdserver: Peer URLs already exists'),
  NOT_LEARNER: etcd('FAILED_PRECONDITION', 'etcdserver: can only promote a learner member'),
  NOT_ENOUGH_STARTED_MEMBERS: etcd(
    'FAILED_PRECONDITION',
    'etcdserver: re-configuration failed due to not enough started members',
  ),
  LEARNER_NOT_READY: etcd(
    'FAILED_PRECONDITION',
    'etcdserver: can only promote a learner member which is in sync with leader',
  ),
  TOO_MANY_LEARNERS: etcd('FAILED_PRECONDITION', 'etcdserver: too many learner members in cluster'),
  UNHEALTHY: etcd('UNAVAILABLE', 'etcdserver: unhealthy cluster'),
  BAD_LEADER_TRANSFEREE: etcd('FAILED_PRECONDITION', 'etcdserver: bad leader transferee'),
  // Forwarding is the member's job; if it still surfaces, etcd's status for it.
  NOT_LEADER: etcd('FAILED_PRECONDITION', 'etcdserver: not leader'),
  // The write is committed (a quorum has it); only the ack=all wait ran out. Unavailable like
  // etcd's ErrTimeout, whose outcome is also "maybe applied": clientv3 never retries a Put on it.
  WRITE_ACK_TIMEOUT: own(
    'UNAVAILABLE',
    'tandem: write committed, but not every voter acknowledged it in time',
  ),
  // etcd refuses a learner's RPCs with Unavailable ("rpc not supported for learner"), so that
  // clients try their next endpoint; a standby does the same, and says what to use instead.
  STANDBY: own('UNAVAILABLE', 'tandem: a standby serves no client traffic'),
  // REQUEST_TOO_LARGE is shared with kv (above): etcd's InvalidArgument, never retried.
  TOO_MANY_REQUESTS: etcd('RESOURCE_EXHAUSTED', 'etcdserver: too many requests'),

  // --- auth (src/kv/auth/errors.ts): etcd's rpctypes, code and text -----------------------
  ROOT_USER_NOT_EXIST: etcd('FAILED_PRECONDITION', 'etcdserver: root user does not exist'),
  ROOT_ROLE_NOT_EXIST: etcd('FAILED_PRECONDITION', 'etcdserver: root user does not have root role'),
  USER_ALREADY_EXIST: etcd('FAILED_PRECONDITION', 'etcdserver: user name already exists'),
  USER_EMPTY: etcd('INVALID_ARGUMENT', 'etcdserver: user name is empty'),
  USER_NOT_FOUND: etcd('FAILED_PRECONDITION', 'etcdserver: user name not found'),
  ROLE_ALREADY_EXIST: etcd('FAILED_PRECONDITION', 'etcdserver: role name already exists'),
  ROLE_NOT_FOUND: etcd('FAILED_PRECONDITION', 'etcdserver: role name not found'),
  ROLE_EMPTY: etcd('INVALID_ARGUMENT', 'etcdserver: role name is empty'),
  AUTH_FAILED: etcd(
    'INVALID_ARGUMENT',
    'etcdserver: authentication failed, invalid user ID or password',
  ),
  // etcd 3.4 has no gRPC status for it: its togRPCError passes the store's text as Unknown.
  NO_PASSWORD_USER: etcd(
    'UNKNOWN',
    'auth: authentication failed, password was given for no password user',
  ),
  PERMISSION_NOT_GIVEN: etcd('INVALID_ARGUMENT', 'etcdserver: permission not given'),
  PERMISSION_DENIED: etcd('PERMISSION_DENIED', 'etcdserver: permission denied'),
  ROLE_NOT_GRANTED: etcd('FAILED_PRECONDITION', 'etcdserver: role is not granted to the user'),
  PERMISSION_NOT_GRANTED: etcd(
    'FAILED_PRECONDITION',
    'etcdserver: permission is not granted to the role',
  ),
  AUTH_NOT_ENABLED: etcd('FAILED_PRECONDITION', 'etcdserver: authentication is not enabled'),
  INVALID_AUTH_TOKEN: etcd('UNAUTHENTICATED', 'etcdserver: invalid auth token'),
  INVALID_AUTH_MGMT: etcd('INVALID_ARGUMENT', 'etcdserver: invalid auth management'),
  AUTH_OLD_REVISION: etcd('INVALID_ARGUMENT', 'etcdserver: revision of auth store is old'),

  // --- API edge ----------------------------------------------------------------------------
  INVALID_FIELD: own('INVALID_ARGUMENT', 'tandem: invalid request field'),
  INVALID_METADATA: own('INVALID_ARGUMENT', 'tandem: invalid request metadata'),
  MEMBER_BAD_URLS: etcd('INVALID_ARGUMENT', 'etcdserver: given member URLs are invalid'),
  // grpc-go's health server answers exactly this.
  UNKNOWN_SERVICE: etcd('NOT_FOUND', 'unknown service'),
  NOT_SUPPORTED: own('UNIMPLEMENTED', 'tandem: not supported'),
  ELECTION_NO_LEADER: etcd('UNKNOWN', 'election: no leader'),
  ELECTION_NOT_LEADER: etcd('UNKNOWN', 'election: not leader'),
  ELECTION_MISSING_LEADER_KEY: etcd('UNKNOWN', '"leader" field must be provided'),
  SESSION_EXPIRED: etcd('UNKNOWN', 'session expired'),
  INTERNAL: own('INTERNAL', 'tandem: internal error'),
};

/** What goes on the wire for one failed call. */
export interface WireStatus {
  readonly code: StatusCode;
  readonly details: string;
  /** False for a bug (logged with its stack by the caller). */
  readonly known: boolean;
}

const INTERNAL_STATUS: WireStatus = {
  code: Status.INTERNAL,
  details: API_ERRORS.INTERNAL.message,
  known: false,
};

function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(API_ERRORS, code);
}

/**
 * The status for any thrown value. A typed error with a known code maps through the table; an
 * aborted request is CANCELLED; anything else is a bug, answered INTERNAL without internals.
 */
export function toWireStatus(err: unknown): WireStatus {
  if (err instanceof TandemError && isErrorCode(err.code)) {
    const entry = API_ERRORS[err.code];
    return {
      code: Status[entry.grpc],
      details: entry.etcd ? entry.message : err.message,
      known: true,
    };
  }
  if (err instanceof ForwardedStatus) {
    return { code: err.status.code, details: err.status.details, known: true };
  }
  if (err instanceof Error && err.name === 'AbortError') {
    return { code: Status.CANCELLED, details: API_ERRORS.CANCELED.message, known: true };
  }
  return INTERNAL_STATUS;
}
