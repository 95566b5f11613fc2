import { assert } from '../../util/assert.js';
import type { LeaseId } from '../types.js';
import { LeaseError, LeaseErrorCode } from './errors.js';
import { LEASE_ID_MAX } from './limits.js';

const MASK_64 = (1n << 64n) - 1n;
const TIMESTAMP_BITS = 40n;
const COUNTER_BITS = 8n;
const SUFFIX_BITS = TIMESTAMP_BITS + COUNTER_BITS;
const SUFFIX_MASK = (1n << SUFFIX_BITS) - 1n;

/** Throws LEASE_ID_OUT_OF_RANGE unless 0 < id < 2^63 (a client-chosen id is input, not a bug). */
export function checkLeaseId(id: LeaseId): void {
  if (id <= 0n || id > LEASE_ID_MAX) throw new LeaseError(LeaseErrorCode.IdOutOfRange, id);
}

/**
 * etcd's pkg/idutil.Generator, used by the member that *proposes* a LeaseGrant with id 0: it
 * picks the id before the command enters the log, so every member applies the same id.
 *
 *   | 2 bytes   | 5 bytes                    | 1 byte  |
 *   | member id | low 40 bits of unix ms     | counter |   (the low 6 bytes count up together)
 *
 * The top bit is cleared (etcd masks with 2^63 - 1) so the id fits a positive int64.
 */
export class LeaseIdGenerator {
  private readonly prefix: bigint;
  private suffix: bigint;

  constructor(memberId: number, nowMs: number) {
    assert(Number.isSafeInteger(memberId) && memberId >= 0, 'member id');
    assert(Number.isSafeInteger(nowMs) && nowMs >= 0, 'nowMs');
    this.prefix = (BigInt(memberId) & 0xffffn) << SUFFIX_BITS;
    this.suffix = (BigInt(nowMs) & ((1n << TIMESTAMP_BITS) - 1n)) << COUNTER_BITS;
  }

  next(): LeaseId {
    for (;;) {
      this.suffix = (this.suffix + 1n) & SUFFIX_MASK;
      const id = (this.prefix | this.suffix) & LEASE_ID_MAX;
      if (id !== 0n) return id;
    }
  }
}

/**
 * splitmix64: spreads a counter over 64 bits. The lessor uses it when a grant reaches apply with
 * id 0, so every member derives the same id from replicated state (the counter) alone.
 */
export function mix64(x: bigint): bigint {
  let z = (x + 0x9e3779b97f4a7c15n) & MASK_64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  return z ^ (z >> 31n);
}
