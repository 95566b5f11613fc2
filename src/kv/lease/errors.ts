import { TandemError } from '../../util/errors.js';

/**
 * Lease error codes. Messages are etcd's own (rpctypes/error.go, lease/lessor.go), so that the API
 * edge can hand them to clients unchanged and etcd clients recognise them.
 */
export const LeaseErrorCode = {
  /** The lease does not exist (never granted, revoked, or expired and revoked). */
  NotFound: 'LEASE_NOT_FOUND',
  /** grant() with an id that is already in use. */
  Exists: 'LEASE_EXISTS',
  /** grant() with a TTL above `LEASE_TTL_SECONDS_MAX`. */
  TtlTooLarge: 'LEASE_TTL_TOO_LARGE',
  /** A keep-alive reached a lessor that is not the leader's (etcd's ErrNotPrimary). */
  NotPrimary: 'LEASE_NOT_PRIMARY',
  /**
   * A keep-alive for a lease whose deadline passed but whose revoke has not been applied yet.
   * etcd waits for the revoke and then answers "lease not found"; the API edge may do the same.
   */
  Expired: 'LEASE_EXPIRED',
  /** A client-chosen id outside (0, 2^63). */
  IdOutOfRange: 'LEASE_ID_OUT_OF_RANGE',
  /** grant() with as many leases alive as the proposer's limits.leasesMax allows. */
  TooMany: 'LEASE_TOO_MANY',
} as const;
export type LeaseErrorCode = (typeof LeaseErrorCode)[keyof typeof LeaseErrorCode];

const MESSAGES: Readonly<Record<LeaseErrorCode, string>> = {
  [LeaseErrorCode.NotFound]: 'etcdserver: requested lease not found',
  [LeaseErrorCode.Exists]: 'etcdserver: lease already exists',
  [LeaseErrorCode.TtlTooLarge]: 'etcdserver: too large lease TTL',
  [LeaseErrorCode.NotPrimary]: 'not a primary lessor',
  [LeaseErrorCode.Expired]: 'etcdserver: requested lease not found',
  [LeaseErrorCode.IdOutOfRange]: 'tandem: lease id must be in (0, 2^63)',
  [LeaseErrorCode.TooMany]: 'tandem: too many leases',
};

export class LeaseError extends TandemError<LeaseErrorCode> {
  /** The lease the error is about, when there is one. */
  readonly leaseId: bigint | null;
  /** `detail`, when given, follows the message (tandem's own errors only: etcd's stay exact). */
  constructor(code: LeaseErrorCode, leaseId: bigint | null = null, detail?: string) {
    super(code, detail === undefined ? MESSAGES[code] : `${MESSAGES[code]} (${detail})`);
    this.leaseId = leaseId;
  }
}
