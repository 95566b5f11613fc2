/**
 * etcd's Election service (server/etcdserver/api/v3election), as concurrency.Election does it:
 * a campaigner puts `<name>/<lease hex>` under its lease and waits until every older key is
 * gone; the leader is the oldest key. Proclaim and Resign act on the LeaderKey Campaign returned,
 * only while that key still has the campaign's create revision.
 */

import { concatBytes, prefixEnd } from '../../util/bytes.js';
import {
  plainOptions,
  type ServiceContext,
  statusFor,
  unary,
  withLeaderCheck,
} from '../context.js';
import { headerToPb, intField, keyValueToPb, leaseIdField } from '../convert.js';
import { ApiError } from '../errors.js';
import {
  type ServerStreamingCall,
  type ServiceHandlers,
  serverStreamHandler,
} from '../grpc/handlers.js';
import {
  bytesOf,
  createRevisionIs,
  deleteOp,
  firstCreated,
  putOp,
  rangeAt,
  rangeOp,
  rangeRequest,
  sessionKey,
  sessionLease,
  waitDeletes,
  watchKey,
} from './concurrency.js';

interface PbLeaderKey {
  readonly name: Buffer;
  readonly key: Buffer;
  readonly rev: string;
  readonly lease: string;
}
interface PbCampaignRequest {
  readonly name: Buffer;
  readonly lease: string;
  readonly value: Buffer;
}
interface PbProclaimRequest {
  readonly leader: PbLeaderKey | null;
  readonly value: Buffer;
}
interface PbLeaderRequest {
  readonly name: Buffer;
}
interface PbResignRequest {
  readonly leader: PbLeaderKey | null;
}

const SLASH = bytesOf('/');

interface LeaderKey {
  readonly key: Uint8Array;
  rev: number;
  readonly lease: bigint;
}

function leaderKeyOf(pb: PbLeaderKey | null): LeaderKey {
  if (pb === null || pb === undefined) throw new ApiError('ELECTION_MISSING_LEADER_KEY');
  return {
    key: pb.key,
    rev: intField(pb.rev, 'LeaderKey.rev'),
    lease: leaseIdField(pb.lease, 'LeaderKey.lease'),
  };
}

export function electionService(ctx: ServiceContext): ServiceHandlers {
  const { backend } = ctx;

  const proclaim = async (
    leader: LeaderKey,
    value: Uint8Array,
    opts: ReturnType<typeof plainOptions>,
  ) => {
    const { response } = await backend.txn(
      {
        compare: [createRevisionIs(leader.key, leader.rev)],
        success: [putOp(leader.key, value, leader.lease)],
        failure: [],
      },
      opts,
    );
    if (!response.succeeded) throw new ApiError('ELECTION_NOT_LEADER');
    return response.header.revision;
  };

  const resign = async (leader: LeaderKey, opts: ReturnType<typeof plainOptions>) => {
    const { response } = await backend.txn(
      {
        compare: [createRevisionIs(leader.key, leader.rev)],
        success: [deleteOp(leader.key)],
        failure: [],
      },
      opts,
    );
    return response.header.revision;
  };

  const unaries = withLeaderCheck(ctx, {
    Campaign: unary(async (pb: PbCampaignRequest, call) => {
      const opts = plainOptions(ctx, call);
      const lease = await sessionLease(ctx, leaseIdField(pb.lease, 'CampaignRequest.lease'), opts);
      const prefix = concatBytes(pb.name, SLASH);
      const key = sessionKey(prefix, lease);
      const { response: tried } = await backend.txn(
        {
          compare: [createRevisionIs(key, 0)],
          success: [putOp(key, pb.value, lease)],
          failure: [rangeOp(rangeRequest(key))],
        },
        opts,
      );
      const leader: LeaderKey = { key, rev: tried.header.revision, lease };
      if (!tried.succeeded) {
        const kv = rangeAt(tried, 0).kvs[0]!;
        leader.rev = kv.createRevision;
        if (Buffer.compare(Buffer.from(kv.value), pb.value) !== 0) {
          try {
            await proclaim(leader, pb.value, opts);
          } catch (err) {
            await resign(leader, { ...opts, signal: undefined });
            throw err;
          }
        }
      }
      try {
        await waitDeletes(ctx, prefix, leader.rev - 1, opts);
      } catch (err) {
        if (call.cancelled) await resign(leader, { ...opts, signal: undefined });
        throw err;
      }
      return {
        header: headerToPb(backend.header(), tried.header.revision),
        leader: { name: pb.name, key, rev: leader.rev, lease: lease.toString() },
      };
    }),

    Proclaim: unary(async (pb: PbProclaimRequest, call) => {
      const leader = leaderKeyOf(pb.leader);
      const revision = await proclaim(leader, pb.value, plainOptions(ctx, call));
      return { header: headerToPb(backend.header(), revision) };
    }),

    Leader: unary(async (pb: PbLeaderRequest, call) => {
      const opts = plainOptions(ctx, call);
      const { response } = await backend.range(firstCreated(concatBytes(pb.name, SLASH)), opts);
      const kv = response.kvs[0];
      if (kv === undefined) throw new ApiError('ELECTION_NO_LEADER');
      return {
        header: headerToPb(backend.header(), response.header.revision),
        kv: keyValueToPb(kv),
      };
    }),

    Resign: unary(async (pb: PbResignRequest, call) => {
      const leader = leaderKeyOf(pb.leader);
      const revision = await resign(leader, plainOptions(ctx, call));
      return { header: headerToPb(backend.header(), revision) };
    }),
  });

  return {
    ...unaries,
    Observe: serverStreamHandler((call: ServerStreamingCall<PbLeaderRequest, unknown>) => {
      observe(ctx, call).then(
        () => call.end(),
        (err) => {
          if (!call.cancelled) call.fail(statusFor(ctx, 'Observe', err));
        },
      );
    }),
  };
}

/** Observes the election leader's proclamations until the call ends (concurrency's observe). */
async function observe(
  ctx: ServiceContext,
  call: ServerStreamingCall<PbLeaderRequest, unknown>,
): Promise<void> {
  const prefix = concatBytes(call.request.name, SLASH);
  const opts = plainOptions(ctx, call);
  const send = (kv: Parameters<typeof keyValueToPb>[0], revision: number) =>
    call.write({ header: headerToPb(ctx.backend.header(), revision), kv: keyValueToPb(kv) });
  while (!call.cancelled) {
    const { response } = await ctx.backend.range(firstCreated(prefix), opts);
    let leader = response.kvs[0];
    let revision = response.header.revision;
    if (leader === undefined) {
      // Wait for the first key put under the prefix (a delete would make this spin).
      await watchKey(
        ctx,
        prefix,
        revision,
        opts.signal,
        (kv, deleted) => {
          if (deleted) return 'more';
          leader = kv;
          revision = kv.modRevision;
          return 'stop';
        },
        prefixEnd(prefix),
      );
    }
    if (leader === undefined) return;
    send(leader, revision);
    await watchKey(ctx, leader.key, revision + 1, opts.signal, (kv, deleted, headerRevision) => {
      if (deleted) return 'stop';
      send(kv, headerRevision);
      return 'more';
    });
  }
}
