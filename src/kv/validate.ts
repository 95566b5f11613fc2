/**
 * Request validation as etcd's gRPC KV server does it before proposing
 * (server/etcdserver/api/v3rpc/key.go: checkRangeRequest, checkPutRequest, checkTxnRequest,
 * checkIntervals) and its request size limit (etcdserver: request is too large).
 *
 * Validation is a pure function of the request, so it can run before proposal and again at
 * apply; it never consults state. State-dependent errors (COMPACTED, FUTURE_REV, KEY_NOT_FOUND
 * for ignore_*, LEASE_NOT_FOUND) are found at apply.
 */
import { assert } from '../util/assert.js';
import type {
  DeleteRangeRequest,
  KvRequest,
  PutRequest,
  RangeRequest,
  RequestOp,
  TxnRequest,
} from './api-types.js';
import { KvError } from './errors.js';
import { bytesToKey } from './mvcc/bytes.js';
import { NO_LEASE } from './types.js';

export interface KvLimits {
  /** etcd's --max-request-bytes: the encoded request, as proposed (default 1.5 MiB). */
  readonly requestBytesMax: number;
  /** etcd's --max-txn-ops (default 128). */
  readonly txnOpsMax: number;
}

/** Hard ceilings for configured limits: a Raft entry far above this would stall heartbeats. */
export const REQUEST_BYTES_CEILING = 64 * 1024 * 1024;
export const TXN_OPS_CEILING = 1_000_000;

export const KV_LIMITS_DEFAULT: KvLimits = {
  requestBytesMax: 1.5 * 1024 * 1024,
  txnOpsMax: 128,
};

assert(KV_LIMITS_DEFAULT.requestBytesMax <= REQUEST_BYTES_CEILING, 'default request limit');
assert(KV_LIMITS_DEFAULT.txnOpsMax <= TXN_OPS_CEILING, 'default txn ops limit');

export function kvLimits(overrides: Partial<KvLimits> = {}): KvLimits {
  const limits = { ...KV_LIMITS_DEFAULT, ...overrides };
  const bytesOk = Number.isSafeInteger(limits.requestBytesMax) && limits.requestBytesMax > 0;
  if (!bytesOk || limits.requestBytesMax > REQUEST_BYTES_CEILING) {
    throw new RangeError(`requestBytesMax must be in [1, ${REQUEST_BYTES_CEILING}]`);
  }
  if (!Number.isSafeInteger(limits.txnOpsMax) || limits.txnOpsMax < 1) {
    throw new RangeError(`txnOpsMax must be in [1, ${TXN_OPS_CEILING}]`);
  }
  if (limits.txnOpsMax > TXN_OPS_CEILING) {
    throw new RangeError(`txnOpsMax must be in [1, ${TXN_OPS_CEILING}]`);
  }
  return limits;
}

/** Throws the KvError etcd's server would answer with, or returns if the request is valid. */
export function validateRequest(req: KvRequest, limits: KvLimits = KV_LIMITS_DEFAULT): void {
  switch (req.type) {
    case 'range':
      checkRange(req.request);
      return;
    case 'put':
      checkPut(req.request);
      return;
    case 'deleteRange':
      checkDelete(req.request);
      return;
    case 'txn':
      checkTxn(req.request, limits.txnOpsMax);
      // After the per-op checks, as etcd does, to avoid quadratic work on bad input.
      checkIntervals(req.request.success);
      checkIntervals(req.request.failure);
      return;
    case 'compaction':
      return;
  }
}

export function checkRequestSize(encodedBytes: number, limits: KvLimits = KV_LIMITS_DEFAULT) {
  if (encodedBytes > limits.requestBytesMax) {
    throw new KvError('REQUEST_TOO_LARGE', `${encodedBytes} > ${limits.requestBytesMax} bytes`);
  }
}

function checkRange(r: RangeRequest): void {
  if (r.key.length === 0) throw new KvError('EMPTY_KEY');
  if (![0, 1, 2].includes(r.sortOrder)) throw new KvError('INVALID_SORT_OPTION');
  if (![0, 1, 2, 3, 4].includes(r.sortTarget)) throw new KvError('INVALID_SORT_OPTION');
}

function checkPut(r: PutRequest): void {
  if (r.key.length === 0) throw new KvError('EMPTY_KEY');
  if (r.ignoreValue && r.value.length !== 0) throw new KvError('VALUE_PROVIDED');
  if (r.ignoreLease && r.lease !== NO_LEASE) throw new KvError('LEASE_PROVIDED');
}

function checkDelete(r: DeleteRangeRequest): void {
  if (r.key.length === 0) throw new KvError('EMPTY_KEY');
}

/** etcd's checkTxnRequest: nested txns share what is left of the ops budget. */
function checkTxn(r: TxnRequest, txnOpsMax: number): void {
  const opc = Math.max(r.compare.length, r.success.length, r.failure.length);
  if (opc > txnOpsMax) throw new KvError('TOO_MANY_OPS');
  for (const c of r.compare) if (c.key.length === 0) throw new KvError('EMPTY_KEY');
  for (const u of r.success) checkOp(u, txnOpsMax - opc);
  for (const u of r.failure) checkOp(u, txnOpsMax - opc);
}

function checkOp(u: RequestOp, txnOpsMax: number): void {
  switch (u.request) {
    case 'requestRange':
      checkRange(u.requestRange);
      return;
    case 'requestPut':
      checkPut(u.requestPut);
      return;
    case 'requestDeleteRange':
      checkDelete(u.requestDeleteRange);
      return;
    case 'requestTxn':
      checkTxn(u.requestTxn, txnOpsMax);
      return;
  }
}

/**
 * A deleted key interval as etcd's adt.StringAffineInterval: [begin, end), or a point when the
 * request has no range end. etcd does not translate a "\0" range end here, so a
 * delete-from-key interval is [key, "\0"), which is empty: it conflicts with no put. We keep
 * that quirk; clients see the same answers as from etcd.
 */
interface Interval {
  readonly begin: string;
  readonly end: string;
}

/**
 * etcd's checkIntervals: no key may be put twice, or both put and deleted, in one txn — across
 * nested txns too, except that the success and failure branches of one nested txn may put the
 * same key (only one of them runs). Returns the puts and deletes for the level above.
 */
export function checkIntervals(reqs: readonly RequestOp[]): {
  puts: Set<string>;
  dels: Interval[];
} {
  const dels: Interval[] = [];
  for (const req of reqs) {
    if (req.request !== 'requestDeleteRange') continue;
    const d = req.requestDeleteRange;
    const begin = bytesToKey(d.key);
    dels.push({ begin, end: d.rangeEnd.length === 0 ? `${begin}\0` : bytesToKey(d.rangeEnd) });
  }
  const puts = new Set<string>();
  for (const req of reqs) {
    if (req.request !== 'requestTxn') continue;
    const then = checkIntervals(req.requestTxn.success);
    const otherwise = checkIntervals(req.requestTxn.failure);
    for (const k of then.puts) {
      if (puts.has(k) || intersects(dels, k)) throw new KvError('DUPLICATE_KEY');
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      if (puts.has(k) && !then.puts.has(k)) throw new KvError('DUPLICATE_KEY');
      if (intersects(dels, k)) throw new KvError('DUPLICATE_KEY');
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const req of reqs) {
    if (req.request !== 'requestPut') continue;
    const k = bytesToKey(req.requestPut.key);
    if (puts.has(k) || intersects(dels, k)) throw new KvError('DUPLICATE_KEY');
    puts.add(k);
  }
  return { puts, dels };
}

/** Whether the point [k, k+"\0") overlaps an interval (etcd's Interval.Compare == 0). */
function intersects(intervals: readonly Interval[], k: string): boolean {
  for (const iv of intervals) if (k >= iv.begin && k < iv.end) return true;
  return false;
}
