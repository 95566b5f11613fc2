/**
 * Executing KV requests against MVCC transactions, as etcd's server/etcdserver/txn package
 * (range.go, put.go, delete.go, txn.go): sorting, filters, limit/more, prev_kv, ignore_*,
 * compares and the txn path. Requests arrive validated (validate.ts).
 *
 * A txn is decided before it writes anything: all compares (nested ones too) are evaluated
 * against the state at the start (etcd's compareToPath), then every op on the chosen path is
 * checked (checkTxn), and only then executed. So a txn either fails with no change or applies
 * completely at one revision.
 */
import { AssertionError, assert, unreachable } from '../../util/assert.js';
import { compareBytes } from '../../util/bytes.js';
import {
  type CompactionResponse,
  type Compare,
  CompareResult,
  CompareTarget,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseOp,
  SortOrder,
  SortTarget,
  type TxnRequest,
  type TxnResponse,
} from '../api-types.js';
import { KvError } from '../errors.js';
import { type KeyValue, type LeaseAttachments, NO_LEASE } from '../types.js';
import type { MvccStore, RangeOptions, RangeResult, TxnRead, TxnWrite } from './store.js';

const EMPTY = new Uint8Array(0);

/** etcd's executeRange. */
export function executeRange(txn: TxnRead, r: RangeRequest): RangeResponse {
  const o = rangeOptionsOf(r);
  return finishRange(r, txn.range(r.key, r.rangeEnd, o));
}

/** What the mvcc-level range must fetch for `r`. */
export function rangeOptionsOf(r: RangeRequest): RangeOptions {
  const filtered =
    r.sortOrder !== SortOrder.None ||
    r.minModRevision !== 0 ||
    r.maxModRevision !== 0 ||
    r.minCreateRevision !== 0 ||
    r.maxCreateRevision !== 0;
  // Fetch everything when results get sorted or filtered; otherwise one extra for `more`.
  const limit = filtered || r.limit <= 0 ? 0 : r.limit + 1;
  return { limit, rev: r.revision, countOnly: r.countOnly };
}

/** `r`'s response from what the mvcc-level range fetched with `rangeOptionsOf(r)`. */
export function finishRange(r: RangeRequest, rr: RangeResult): RangeResponse {
  let kvs = rr.kvs.filter(
    (kv) =>
      (r.maxModRevision === 0 || kv.modRevision <= r.maxModRevision) &&
      (r.minModRevision === 0 || kv.modRevision >= r.minModRevision) &&
      (r.maxCreateRevision === 0 || kv.createRevision <= r.maxCreateRevision) &&
      (r.minCreateRevision === 0 || kv.createRevision >= r.minCreateRevision),
  );
  kvs = sortKvs(kvs, r.sortOrder, r.sortTarget);
  let more = false;
  if (r.limit > 0 && kvs.length > r.limit) {
    kvs = kvs.slice(0, r.limit);
    more = true;
  }
  if (r.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
  return { header: { revision: rr.rev }, kvs, more, count: rr.count };
}

/**
 * Results come from the index in ascending key order, so (as etcd) a KEY/ASCEND sort is a no-op
 * and any other target without an order sorts ascending. Our sort is stable: ties keep key order
 * (etcd's sort.Sort leaves the order of ties unspecified).
 */
function sortKvs(kvs: KeyValue[], order: SortOrder, target: SortTarget): KeyValue[] {
  let effective = order;
  if (target !== SortTarget.Key && order === SortOrder.None) effective = SortOrder.Ascend;
  if (target === SortTarget.Key && order === SortOrder.Ascend) effective = SortOrder.None;
  if (effective === SortOrder.None) return kvs;
  const sign = effective === SortOrder.Descend ? -1 : 1;
  const cmp = sortComparator(target);
  return kvs.slice().sort((a, b) => sign * cmp(a, b));
}

function sortComparator(target: SortTarget): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case SortTarget.Key:
      return (a, b) => compareBytes(a.key, b.key);
    case SortTarget.Version:
      return (a, b) => a.version - b.version;
    case SortTarget.Create:
      return (a, b) => a.createRevision - b.createRevision;
    case SortTarget.Mod:
      return (a, b) => a.modRevision - b.modRevision;
    case SortTarget.Value:
      return (a, b) => compareBytes(a.value, b.value);
    default:
      return unreachable(target);
  }
}

/** A standalone Put (etcd's txn.Put): the lease must exist, then as inside a txn. */
export function applyPut(txn: TxnWrite, r: PutRequest, lessor: LeaseAttachments): PutResponse {
  if (r.lease !== NO_LEASE && !lessor.exists(r.lease)) throw new KvError('LEASE_NOT_FOUND');
  return executePut(txn, r);
}

/** etcd's put: ignore_value / ignore_lease take the current ones; needs the key to exist. */
function executePut(txn: TxnWrite, r: PutRequest): PutResponse {
  let prev: KeyValue | null = null;
  if (r.ignoreValue || r.ignoreLease || r.prevKv) prev = txn.range(r.key, EMPTY).kvs[0] ?? null;
  if ((r.ignoreValue || r.ignoreLease) && prev === null) throw new KvError('KEY_NOT_FOUND');
  const value = r.ignoreValue ? prev!.value : r.value;
  const lease = r.ignoreLease ? prev!.lease : r.lease;
  const revision = txn.put(r.key, value, lease);
  return { header: { revision }, prevKv: r.prevKv ? prev : null };
}

/** etcd's deleteRange. */
export function executeDeleteRange(txn: TxnWrite, r: DeleteRangeRequest): DeleteRangeResponse {
  const prevKvs = r.prevKv ? txn.range(r.key, r.rangeEnd).kvs : [];
  const [deleted, revision] = txn.deleteRange(r.key, r.rangeEnd);
  return { header: { revision }, deleted, prevKvs };
}

/** etcd's Compaction apply: the response carries the current revision. */
export function executeCompaction(
  store: MvccStore,
  txn: TxnWrite,
  revision: number,
): CompactionResponse {
  store.compact(txn, revision);
  return { header: { revision: store.currentRevision() } };
}

/** Which branch each txn on the executed path takes, nested txns in op order. */
export interface TxnPath {
  readonly succeeded: boolean;
  readonly children: readonly TxnPath[];
}

/** etcd's compareToPath: every compare on the path, against the state before any write. */
export function compareToPath(txn: TxnRead, rt: TxnRequest): TxnPath {
  const succeeded = rt.compare.every((c) => applyCompare(txn, c));
  const children: TxnPath[] = [];
  for (const op of succeeded ? rt.success : rt.failure) {
    if (op.request === 'requestTxn') children.push(compareToPath(txn, op.requestTxn));
  }
  return { succeeded, children };
}

/**
 * etcd's applyCompare: every key in the range must satisfy the compare. A missing key compares
 * as a zero KeyValue (version 0, create 0, mod 0, lease 0), except that a VALUE compare against
 * a missing key is always false.
 */
function applyCompare(txn: TxnRead, c: Compare): boolean {
  const { kvs } = txn.range(c.key, c.rangeEnd);
  if (kvs.length === 0) return c.target === CompareTarget.Value ? false : compareKv(c, null);
  return kvs.every((kv) => compareKv(c, kv));
}

function compareKv(c: Compare, kv: KeyValue | null): boolean {
  const result = compareTarget(c, kv);
  switch (c.result) {
    case CompareResult.Equal:
      return result === 0;
    case CompareResult.NotEqual:
      return result !== 0;
    case CompareResult.Greater:
      return result > 0;
    case CompareResult.Less:
      return result < 0;
    default:
      return true; // etcd: an unknown result passes.
  }
}

function compareTarget(c: Compare, kv: KeyValue | null): number {
  switch (c.target) {
    case CompareTarget.Value:
      return compareBytes(kv?.value ?? EMPTY, c.value);
    case CompareTarget.Create:
      return Math.sign((kv?.createRevision ?? 0) - c.createRevision);
    case CompareTarget.Mod:
      return Math.sign((kv?.modRevision ?? 0) - c.modRevision);
    case CompareTarget.Version:
      return Math.sign((kv?.version ?? 0) - c.version);
    case CompareTarget.Lease: {
      const lease = kv?.lease ?? NO_LEASE;
      return lease === c.lease ? 0 : lease < c.lease ? -1 : 1;
    }
    default:
      return 0; // etcd: an unknown target compares equal.
  }
}

/** etcd's checkTxn: errors that would stop an op on the path, found before any write. */
export function checkTxn(
  txn: TxnRead,
  rt: TxnRequest,
  path: TxnPath,
  lessor: LeaseAttachments,
): void {
  let child = 0;
  for (const op of path.succeeded ? rt.success : rt.failure) {
    switch (op.request) {
      case 'requestRange':
        checkRange(txn, op.requestRange);
        break;
      case 'requestPut':
        checkPut(txn, op.requestPut, lessor);
        break;
      case 'requestDeleteRange':
        break;
      case 'requestTxn':
        checkTxn(txn, op.requestTxn, path.children[child++]!, lessor);
        break;
    }
  }
}

function checkRange(txn: TxnRead, r: RangeRequest): void {
  if (r.revision === 0) return;
  if (r.revision > txn.rev()) throw new KvError('FUTURE_REV');
  if (r.revision < txn.firstRev()) throw new KvError('COMPACTED');
}

function checkPut(txn: TxnRead, r: PutRequest, lessor: LeaseAttachments): void {
  if ((r.ignoreValue || r.ignoreLease) && txn.range(r.key, EMPTY).kvs.length === 0) {
    throw new KvError('KEY_NOT_FOUND');
  }
  if (r.lease !== NO_LEASE && !lessor.exists(r.lease)) throw new KvError('LEASE_NOT_FOUND');
}

/** Runs the ops on `path`; the outer header is set by the caller (nested headers stay 0). */
export function executeTxn(txn: TxnWrite, rt: TxnRequest, path: TxnPath): TxnResponse {
  let child = 0;
  const responses: ResponseOp[] = [];
  for (const op of path.succeeded ? rt.success : rt.failure) {
    const sub = op.request === 'requestTxn' ? path.children[child++]! : null;
    responses.push(executeOp(txn, op, sub));
  }
  assert(child === path.children.length, 'txn path not consumed');
  return { header: { revision: 0 }, succeeded: path.succeeded, responses };
}

function executeOp(txn: TxnWrite, op: RequestOp, path: TxnPath | null): ResponseOp {
  switch (op.request) {
    case 'requestRange':
      return { response: 'responseRange', responseRange: executeRange(txn, op.requestRange) };
    case 'requestPut':
      return { response: 'responsePut', responsePut: executePut(txn, op.requestPut) };
    case 'requestDeleteRange':
      return {
        response: 'responseDeleteRange',
        responseDeleteRange: executeDeleteRange(txn, op.requestDeleteRange),
      };
    case 'requestTxn':
      return { response: 'responseTxn', responseTxn: executeTxn(txn, op.requestTxn, path!) };
    default:
      return unreachable(op);
  }
}

/** A txn with no put or delete on any path, nested txns included (etcd's isTxnReadonly). */
export function isReadOnlyTxn(rt: TxnRequest): boolean {
  const readOnly = (ops: readonly RequestOp[]): boolean =>
    ops.every(
      (op) =>
        op.request === 'requestRange' ||
        (op.request === 'requestTxn' && isReadOnlyTxn(op.requestTxn)),
    );
  return readOnly(rt.success) && readOnly(rt.failure);
}

/**
 * A read-only txn against a read view (etcd serves these after a read barrier, never through
 * the log): the same decision and checks as `applyTxn`, then the ranges on the chosen path.
 */
export function readTxn(txn: TxnRead, rt: TxnRequest): TxnResponse {
  assert(isReadOnlyTxn(rt), 'readTxn takes read-only txns');
  const path = compareToPath(txn, rt);
  checkTxn(txn, rt, path, NO_LEASES);
  const run = (rq: TxnRequest, p: TxnPath): TxnResponse => {
    let child = 0;
    const responses: ResponseOp[] = [];
    for (const op of p.succeeded ? rq.success : rq.failure) {
      if (op.request === 'requestRange') {
        responses.push({
          response: 'responseRange',
          responseRange: executeRange(txn, op.requestRange),
        });
      } else if (op.request === 'requestTxn') {
        const sub = run(op.requestTxn, p.children[child++]!);
        responses.push({ response: 'responseTxn', responseTxn: sub });
      } else {
        assert(false, `a read-only txn has a ${op.request}`);
      }
    }
    return { header: { revision: 0 }, succeeded: p.succeeded, responses };
  };
  return { ...run(rt, path), header: { revision: txn.rev() } };
}

/**
 * `readTxn` with its ranges read in slices (MvccStore.rangeInSlices), awaiting `pause()` between
 * slices: every range reads at the revision the compares saw when it began, whatever is written
 * meanwhile, so the answer is the one `readTxn(store.read(), rt)` gave then.
 */
export async function readTxnInSlices(
  store: MvccStore,
  rt: TxnRequest,
  pause: () => Promise<void>,
  sliceKeys?: number,
): Promise<TxnResponse> {
  assert(isReadOnlyTxn(rt), 'readTxn takes read-only txns');
  const txn = store.read();
  const path = compareToPath(txn, rt);
  checkTxn(txn, rt, path, NO_LEASES);
  const txnRev = txn.rev();
  const run = async (rq: TxnRequest, p: TxnPath): Promise<TxnResponse> => {
    let child = 0;
    const responses: ResponseOp[] = [];
    for (const op of p.succeeded ? rq.success : rq.failure) {
      if (op.request === 'requestRange') {
        const r = op.requestRange;
        const rr = await store.rangeInSlices(
          r.key,
          r.rangeEnd,
          rangeOptionsOf(r),
          pause,
          sliceKeys,
          txnRev,
        );
        responses.push({ response: 'responseRange', responseRange: finishRange(r, rr) });
      } else if (op.request === 'requestTxn') {
        const sub = await run(op.requestTxn, p.children[child++]!);
        responses.push({ response: 'responseTxn', responseTxn: sub });
      } else {
        assert(false, `a read-only txn has a ${op.request}`);
      }
    }
    return { header: { revision: 0 }, succeeded: p.succeeded, responses };
  };
  return { ...(await run(rt, path)), header: { revision: txnRev } };
}

/** A read-only txn puts nothing, so no lease is ever looked up. */
const NO_LEASES: LeaseAttachments = {
  exists: () => {
    throw new AssertionError('a read-only txn looks up no lease');
  },
  attach: () => assert(false, 'a read-only txn attaches no lease'),
  detach: () => assert(false, 'a read-only txn detaches no lease'),
};

/** A whole txn request (etcd's txn.Txn): decide, check, execute, then the outer header. */
export function applyTxn(txn: TxnWrite, rt: TxnRequest, lessor: LeaseAttachments): TxnResponse {
  const path = compareToPath(txn, rt);
  checkTxn(txn, rt, path, lessor);
  const resp = executeTxn(txn, rt, path);
  const revision = txn.rev() + (txn.changes() > 0 ? 1 : 0);
  return { ...resp, header: { revision } };
}
