/**
 * etcd's KV service: Range, Put, DeleteRange, Txn, Compact. Each request is converted and
 * checked at the edge, then handed to the member with the options of its metadata; the answer's
 * header carries the member's cluster id, member id and term, and the kv layer's revision.
 */
import { plainOptions, type ServiceContext, unary, withLeaderCheck } from '../context.js';
import {
  compactionFromPb,
  deleteRangeFromPb,
  deleteRangeResponseToPb,
  headerToPb,
  isReadOnlyTxn,
  isSerializableTxn,
  putFromPb,
  putResponseToPb,
  rangeFromPb,
  rangeResponseToPb,
  txnFromPb,
  txnResponseToPb,
} from '../convert.js';
import type { ServiceHandlers } from '../grpc/handlers.js';
import type {
  PbCompactionRequest,
  PbDeleteRangeRequest,
  PbPutRequest,
  PbRangeRequest,
  PbTxnRequest,
} from '../proto.js';
import { requestOptions } from '../request-options.js';

export function kvService(ctx: ServiceContext): ServiceHandlers {
  const { backend } = ctx;
  return withLeaderCheck(ctx, {
    Range: unary(async (pb: PbRangeRequest, call) => {
      const req = rangeFromPb(pb);
      const opts = requestOptions(call.metadata, ctx.defaults, req.serializable, call.signal);
      const { header, response } = await backend.range(req, opts);
      return rangeResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    Put: unary(async (pb: PbPutRequest, call) => {
      const req = putFromPb(pb);
      const { header, response } = await backend.put(req, plainOptions(ctx, call));
      return putResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    DeleteRange: unary(async (pb: PbDeleteRangeRequest, call) => {
      const req = deleteRangeFromPb(pb);
      const opts = plainOptions(ctx, call);
      const { header, response } = await backend.deleteRange(req, opts);
      return deleteRangeResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    Txn: unary(async (pb: PbTxnRequest, call) => {
      const req = txnFromPb(pb);
      // etcd serves a read-only txn whose ranges are all serializable as a local read.
      const serializable = isReadOnlyTxn(req) && isSerializableTxn(req);
      const opts = requestOptions(call.metadata, ctx.defaults, serializable, call.signal);
      const { header, response } = await backend.txn(req, opts);
      return txnResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    Compact: unary(async (pb: PbCompactionRequest, call) => {
      const req = compactionFromPb(pb);
      const opts = plainOptions(ctx, call);
      const { header, response } = await backend.compact(req, opts);
      return { header: headerToPb(header, response.header.revision) };
    }),
  });
}
