import { TandemError } from '../util/errors.js';

/**
 * Errors of the member. The API edge maps each code to a gRPC status and etcd's message
 * (src/api/errors.ts), so that etcd clients retry exactly where they would with etcd.
 */
export type ServerErrorCode =
  /** No leader is known (election in progress, or this member is cut off). */
  | 'NO_LEADER'
  /** Leadership changed while a linearizable read waited for its read index. */
  | 'LEADER_CHANGED'
  /** The request did not complete within the request timeout; its outcome is unknown. */
  | 'TIMEOUT'
  /** As TIMEOUT, and the leader changed meanwhile (etcd's ErrTimeoutDueToLeaderFail). */
  | 'TIMEOUT_LEADER_FAIL'
  /** The member is stopping or stopped. */
  | 'STOPPED'
  /** The client cancelled the request. */
  | 'CANCELED'
  | 'MEMBER_NOT_FOUND'
  | 'MEMBER_EXISTS'
  | 'PEER_URL_EXISTS'
  | 'NOT_LEARNER'
  | 'LEARNER_NOT_READY'
  | 'TOO_MANY_LEARNERS'
  /** A voter change that would leave the new configuration without a working quorum. */
  | 'NOT_ENOUGH_STARTED_MEMBERS'
  | 'UNHEALTHY'
  | 'BAD_LEADER_TRANSFEREE'
  | 'NOT_LEADER'
  /** A write with ack=all was not persisted by every voter in time (it is committed). */
  | 'WRITE_ACK_TIMEOUT'
  /** This member is a standby: it serves no client traffic (KV, Watch, Lease). */
  | 'STANDBY'
  /** A command larger than the member accepts (etcd's ErrRequestTooLarge). */
  | 'REQUEST_TOO_LARGE'
  /** Too many requests wait already (etcd's ErrTooManyRequests): back off and retry. */
  | 'TOO_MANY_REQUESTS';

export class ServerError extends TandemError<ServerErrorCode> {}
