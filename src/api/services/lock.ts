/**
 * etcd's Lock service (server/etcdserver/api/v3lock): Lock is concurrency.Mutex.Lock over a
 * session on the request's lease (a new 60 s lease without one), Unlock deletes the key.
 */

import { concatBytes } from '../../util/bytes.js';
import { plainOptions, type ServiceContext, unary, withLeaderCheck } from '../context.js';
import { headerToPb, leaseIdField } from '../convert.js';
import { ApiError } from '../errors.js';
import type { ServiceHandlers } from '../grpc/handlers.js';
import {
  bytesOf,
  createRevisionIs,
  firstCreated,
  putOp,
  rangeAt,
  rangeOp,
  rangeRequest,
  sessionKey,
  sessionLease,
  waitDeletes,
} from './concurrency.js';

interface PbLockRequest {
  readonly name: Buffer;
  readonly lease: string;
}
interface PbUnlockRequest {
  readonly key: Buffer;
}

const SLASH = bytesOf('/');

export function lockService(ctx: ServiceContext): ServiceHandlers {
  const { backend } = ctx;
  return withLeaderCheck(ctx, {
    Lock: unary(async (pb: PbLockRequest, call) => {
      const opts = plainOptions(ctx, call);
      const lease = await sessionLease(ctx, leaseIdField(pb.lease, 'LockRequest.lease'), opts);
      const prefix = concatBytes(pb.name, SLASH);
      const key = sessionKey(prefix, lease);
      // Mutex.tryAcquire: join the waiters (or find this session's key), and read the owner.
      const { response: tried } = await backend.txn(
        {
          compare: [createRevisionIs(key, 0)],
          success: [putOp(key, new Uint8Array(0), lease), rangeOp(firstCreated(prefix))],
          failure: [rangeOp(rangeRequest(key)), rangeOp(firstCreated(prefix))],
        },
        opts,
      );
      const myRevision = tried.succeeded
        ? tried.header.revision
        : rangeAt(tried, 0).kvs[0]!.createRevision;
      const owner = rangeAt(tried, 1).kvs[0];
      let revision = tried.header.revision;
      if (owner !== undefined && owner.createRevision !== myRevision) {
        try {
          await waitDeletes(ctx, prefix, myRevision - 1, opts);
        } catch (err) {
          // Mutex.Lock releases its key when the wait fails (the client went away, a deadline).
          await backend.deleteRange(
            { key, rangeEnd: new Uint8Array(0), prevKv: false },
            { ...opts, signal: undefined },
          );
          throw err;
        }
        const { response: mine } = await backend.range(rangeRequest(key), opts);
        if (mine.kvs.length === 0) throw new ApiError('SESSION_EXPIRED');
        revision = mine.header.revision;
      }
      return { header: headerToPb(backend.header(), revision), key };
    }),

    Unlock: unary(async (pb: PbUnlockRequest, call) => {
      const { response } = await backend.deleteRange(
        { key: pb.key, rangeEnd: new Uint8Array(0), prevKv: false },
        plainOptions(ctx, call),
      );
      return { header: headerToPb(backend.header(), response.header.revision) };
    }),
  });
}
