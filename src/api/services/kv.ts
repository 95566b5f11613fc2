/**
 * etcd's KV service: Range, Put, DeleteRange, Txn, Compact. Each request is converted and
 * checked at the edge, then handed to the member with the options of its metadata; the answer's
 * header carries the member's cluster id, member id and term, and the kv layer's revision.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { plainOptions, type ServiceContext, unary } from '../context.js';
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
import type {
  PbCompactionRequest,
  PbDeleteRangeRequest,
  PbPutRequest,
  PbRangeRequest,
  PbTxnRequest,
} from '../proto.js';
import { requestOptions } from '../request-options.js';

export function kvService(ctx: ServiceContext): UntypedServiceImplementation {
  const { backend } = ctx;
  return {
    Range: unary(ctx, 'Range', async (pb: PbRangeRequest, call, signal) => {
      const req = rangeFromPb(pb);
      const opts = requestOptions(call.metadata, ctx.defaults, req.serializable, signal);
      const { header, response } = await backend.range(req, opts);
      return rangeResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    Put: unary(ctx, 'Put', async (pb: PbPutRequest, call, signal) => {
      const req = putFromPb(pb);
      const { header, response } = await backend.put(req, plainOptions(ctx, call.metadata, signal));
      return putResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    DeleteRange: unary(ctx, 'DeleteRange', async (pb: PbDeleteRangeRequest, call, signal) => {
      const req = deleteRangeFromPb(pb);
      const opts = plainOptions(ctx, call.metadata, signal);
      const { header, response } = await backend.deleteRange(req, opts);
      return deleteRangeResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    Txn: unary(ctx, 'Txn', async (pb: PbTxnRequest, call, signal) => {
      const req = txnFromPb(pb);
      // etcd serves a read-only txn whose ranges are all serializable as a local read.
      const serializable = isReadOnlyTxn(req) && isSerializableTxn(req);
      const opts = requestOptions(call.metadata, ctx.defaults, serializable, signal);
      const { header, response } = await backend.txn(req, opts);
      return txnResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    Compact: unary(ctx, 'Compact', async (pb: PbCompactionRequest, call, signal) => {
      const req = compactionFromPb(pb);
      const opts = plainOptions(ctx, call.metadata, signal);
      const { header, response } = await backend.compact(req, opts);
      return { header: headerToPb(header, response.header.revision) };
    }),
  };
}
