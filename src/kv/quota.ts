/**
 * etcd's backend quota (server/storage/quota.go), pure: what a request costs against the quota
 * and whether it fits. The member measures its backend's size (the file, as etcd's bbolt Size:
 * free pages count until a defragment gives them back) and refuses a growing request that would
 * reach the quota, raising the NOSPACE alarm (src/server/alarms.ts).
 */
import type { KvRequest, PutRequest, RequestOp, TxnRequest } from './api-types.js';

/** etcd's DefaultQuotaBytes: what `quota.backendBytes: 0` means. */
export const QUOTA_BYTES_DEFAULT = 2 * 1024 * 1024 * 1024;
/** etcd's MaxQuotaBytes: etcd warns above it ("may lead to degraded performance"); we refuse. */
export const QUOTA_BYTES_MAX = 8 * 1024 * 1024 * 1024;
/** etcd's estimates of the bytes a lease and a key's metadata take. */
export const QUOTA_LEASE_OVERHEAD_BYTES = 64;
export const QUOTA_KV_OVERHEAD_BYTES = 256;

/** A request the quota judges: a KV request, or a lease grant. */
export type QuotaRequest = KvRequest | { readonly type: 'leaseGrant' };

/** etcd's Cost: 0 for a request that does not grow the store (a read, a delete, a compaction). */
export function quotaCostBytes(req: QuotaRequest): number {
  switch (req.type) {
    case 'put':
      return putCost(req.request);
    case 'txn':
      return txnCost(req.request);
    case 'leaseGrant':
      return QUOTA_LEASE_OVERHEAD_BYTES;
    default:
      return 0;
  }
}

/**
 * etcd's Available: a request costing nothing always passes; any other passes only while the
 * backend's size plus its cost stays below the quota.
 */
export function quotaAvailable(sizeBytes: number, costBytes: number, quotaBytes: number): boolean {
  return costBytes === 0 || sizeBytes + costBytes < quotaBytes;
}

function putCost(r: PutRequest): number {
  return QUOTA_KV_OVERHEAD_BYTES + r.key.length + r.value.length;
}

/** The larger branch (only one runs); nesting is bounded by validation (TXN_DEPTH_MAX). */
function txnCost(r: TxnRequest): number {
  const branch = (ops: readonly RequestOp[]): number => {
    let sum = 0;
    for (const op of ops) {
      if (op.request === 'requestPut') sum += putCost(op.requestPut);
      else if (op.request === 'requestTxn') sum += txnCost(op.requestTxn);
    }
    return sum;
  };
  return Math.max(branch(r.success), branch(r.failure));
}
