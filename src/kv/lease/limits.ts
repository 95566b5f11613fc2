import { assert } from '../../util/assert.js';

/** etcd's MaxLeaseTTL (lease/lessor.go): 9,000,000,000 seconds, about 285 years. */
export const LEASE_TTL_SECONDS_MAX = 9_000_000_000;

/**
 * etcd's leaseRevokeRate: expired leases revoked per second at most. The member asks
 * `expired(nowMs, limit)` for `LEASE_REVOKE_PER_SECOND_MAX / 2` ids every 500 ms, as etcd's
 * runLoop does, so a pile of expiries never floods the log.
 */
export const LEASE_REVOKE_PER_SECOND_MAX = 1000;

/**
 * Promote spreads expiries so that no one-second window holds more than this many (3/4 of the
 * revoke rate, as etcd: piled-up leases must not use the whole revoke budget).
 */
export const LEASE_PROMOTE_EXPIRIES_PER_SECOND_TARGET = (3 * LEASE_REVOKE_PER_SECOND_MAX) / 4;

/** etcd's expiredLeaseRetryInterval: an expired lease is offered again if still not revoked. */
export const LEASE_EXPIRED_RETRY_MS = 3_000;

/** etcd's defaultLeaseCheckpointInterval. */
export const LEASE_CHECKPOINT_INTERVAL_MS_DEFAULT = 5 * 60_000;

/** etcd's maxLeaseCheckpointBatchSize: checkpoints per proposed LeaseCheckpoint command. */
export const LEASE_CHECKPOINT_BATCH_MAX = 1000;

/**
 * Leases alive at once (`limits.leasesMax`; etcd has none, its quota bounds them): a grant past
 * it is refused at apply, where every member decides it alike (the limit travels in the entry).
 * Each lease costs a map entry and two heap slots; a million is far above any client's need.
 */
export const LEASES_MAX_DEFAULT = 1_000_000;

/** The largest leasesMax accepted: the revoke rate would take a day to expire this many. */
export const LEASES_MAX_LIMIT = 100_000_000;

/** Lease ids are positive int64 values: 0 is "no lease". */
export const LEASE_ID_MAX = (1n << 63n) - 1n;

assert(LEASE_PROMOTE_EXPIRIES_PER_SECOND_TARGET < LEASE_REVOKE_PER_SECOND_MAX);
assert(Number.isSafeInteger(LEASE_TTL_SECONDS_MAX * 1000), 'TTL in ms must stay a safe integer');
assert(LEASE_CHECKPOINT_BATCH_MAX > 0 && LEASE_EXPIRED_RETRY_MS > 0);
assert(LEASES_MAX_DEFAULT <= LEASES_MAX_LIMIT && Number.isSafeInteger(LEASES_MAX_LIMIT));
