/**
 * What etcd's Lock and Election servers build on (clientv3/concurrency: Session, Mutex,
 * Election), done here over the member's own KV, lease and watch calls instead of a client:
 * ownership keys `<prefix><lease id in hex>` put under a lease, the oldest (lowest create
 * revision) owns, and a waiter watches the next older key until it is deleted. The same keys and
 * transactions as etcd's, so etcd's clients and tandem's servers may contend for one lock.
 */

import {
  type Compare,
  rangeRequest as kvRangeRequest,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  SortOrder,
  SortTarget,
  type TxnResponse,
} from '../../kv/api-types.js';
import { EventType, type KeyValue, type LeaseId } from '../../kv/types.js';
import type { RequestOptions } from '../../server/contract.js';
import { ServerError } from '../../server/errors.js';
import { assert } from '../../util/assert.js';
import { concatBytes, prefixEnd } from '../../util/bytes.js';
import type { ServiceContext } from '../context.js';

/** concurrency.NewSession's default TTL, for Lock and Campaign requests without a lease. */
export const SESSION_TTL_SECONDS = 60;
/** Older keys waited for, one after another, before a waiter gives up (a bound, not etcd's). */
const WAIT_ROUNDS_MAX = 1_000_000;

const encoder = new TextEncoder();

export function bytesOf(text: string): Uint8Array {
  return encoder.encode(text);
}

/** A session key: `prefix` then the lease id in lower-case hex (etcd's "%s%x"). */
export function sessionKey(prefix: Uint8Array, lease: LeaseId): Uint8Array {
  return concatBytes(prefix, bytesOf(BigInt.asUintN(64, lease).toString(16)));
}

export function rangeRequest(key: Uint8Array, fields: Partial<RangeRequest> = {}): RangeRequest {
  return kvRangeRequest({ key, ...fields });
}

/** clientv3's WithFirstCreate: the oldest key under `prefix`. */
export function firstCreated(prefix: Uint8Array): RangeRequest {
  return rangeRequest(prefix, {
    rangeEnd: prefixEnd(prefix),
    limit: 1,
    sortOrder: SortOrder.Ascend,
    sortTarget: SortTarget.Create,
  });
}

export function createRevisionIs(key: Uint8Array, createRevision: number): Compare {
  return {
    result: 0, // EQUAL
    target: 1, // CREATE
    key,
    rangeEnd: new Uint8Array(0),
    version: 0,
    createRevision,
    modRevision: 0,
    value: new Uint8Array(0),
    lease: 0n,
  };
}

export function putOp(key: Uint8Array, value: Uint8Array, lease: LeaseId): RequestOp {
  return {
    request: 'requestPut',
    requestPut: { key, value, lease, prevKv: false, ignoreValue: false, ignoreLease: false },
  };
}

export function rangeOp(req: RangeRequest): RequestOp {
  return { request: 'requestRange', requestRange: req };
}

export function deleteOp(key: Uint8Array): RequestOp {
  return {
    request: 'requestDeleteRange',
    requestDeleteRange: { key, rangeEnd: new Uint8Array(0), prevKv: false },
  };
}

/** The range response of the txn's `i`th operation (asserted to be a range). */
export function rangeAt(res: TxnResponse, i: number): RangeResponse {
  const op = res.responses[i];
  assert(op?.response === 'responseRange', 'txn response is a range');
  return op.responseRange;
}

/** concurrency.NewSession: the given lease, or a new one of SESSION_TTL_SECONDS (orphaned). */
export async function sessionLease(
  ctx: ServiceContext,
  lease: LeaseId,
  opts: RequestOptions,
): Promise<LeaseId> {
  if (lease !== 0n) return lease;
  return (await ctx.backend.leaseGrant(0n, SESSION_TTL_SECONDS, opts)).id;
}

/**
 * concurrency's waitDeletes: until no key under `prefix` created at or before
 * `maxCreateRevision` is left, waits for the newest of them to be deleted.
 */
export async function waitDeletes(
  ctx: ServiceContext,
  prefix: Uint8Array,
  maxCreateRevision: number,
  opts: RequestOptions,
): Promise<void> {
  for (let round = 0; round < WAIT_ROUNDS_MAX; round++) {
    const { response } = await ctx.backend.range(
      rangeRequest(prefix, {
        rangeEnd: prefixEnd(prefix),
        limit: 1,
        sortOrder: SortOrder.Descend,
        sortTarget: SortTarget.Create,
        maxCreateRevision,
      }),
      opts,
    );
    const newest = response.kvs[0];
    if (newest === undefined) return;
    await waitDelete(ctx, newest.key, response.header.revision, opts.signal);
  }
  throw new ServerError('TIMEOUT', 'etcdserver: request timed out');
}

/** concurrency's waitDelete: resolves at the first deletion of `key` from `revision` on. */
export function waitDelete(
  ctx: ServiceContext,
  key: Uint8Array,
  revision: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  return watchKey(ctx, key, revision, signal, (_kv, deleted) => (deleted ? 'stop' : 'more'));
}

/**
 * Watches `key` (and `rangeEnd`, when given) from `revision`; `onEvent` says whether to stop.
 * Rejects when `signal` aborts or the watch is cancelled (compacted history).
 */
export function watchKey(
  ctx: ServiceContext,
  key: Uint8Array,
  revision: number,
  signal: AbortSignal | undefined,
  onEvent: (kv: KeyValue, deleted: boolean, headerRevision: number) => 'stop' | 'more',
  rangeEnd?: Uint8Array,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      stream.close();
      if (err === undefined) resolve();
      else reject(err);
    };
    const onAbort = () => finish(new ServerError('CANCELED', 'context canceled'));
    const drain = () => {
      for (let res = stream.next(); res !== undefined && !done; res = stream.next()) {
        if (res.canceled) {
          finish(new ServerError('CANCELED', res.cancelReason || 'watch canceled'));
          return;
        }
        for (const ev of res.events) {
          if (onEvent(ev.kv, ev.type === EventType.Delete, res.headerRevision) === 'stop') {
            finish();
            return;
          }
        }
      }
    };
    const stream = ctx.backend.openWatchStream(() => queueMicrotask(drain));
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort);
    try {
      stream.watch({ key, startRevision: revision, ...(rangeEnd ? { rangeEnd } : {}) });
    } catch (err) {
      finish(err);
      return;
    }
    drain();
  });
}
