/**
 * etcd's KV service: Range, Put, DeleteRange, Txn, Compact. Each request is converted and
 * checked at the edge, then handed to the member with the options of its metadata; the answer's
 * header carries the member's cluster id, member id and term, and the kv layer's revision.
 */
import type { RangeResponse } from '../../kv/api-types.js';
import { plainOptions, type ServiceContext, unary, withLeaderCheck } from '../context.js';
import {
  compactionFromPb,
  deleteRangeFromPb,
  deleteRangeResponseToPb,
  headerToPb,
  isReadOnlyTxn,
  isSerializableTxn,
  keyValueToPb,
  putFromPb,
  putResponseToPb,
  rangeFromPb,
  rangeResponseToPb,
  txnFromPb,
  txnResponseToPb,
} from '../convert.js';
import { FramedResponse, type ServiceHandlers } from '../grpc/handlers.js';
import type {
  PbCompactionRequest,
  PbDeleteRangeRequest,
  PbPutRequest,
  PbRangeRequest,
  PbResponseHeader,
  PbTxnRequest,
} from '../proto.js';
import { encodeRangeResponseBody } from '../proto-codec.js';
import { requestOptions } from '../request-options.js';

/**
 * Key-values encoded per event-loop turn when a Range answer is larger: a large answer (a whole
 * store of keys) is encoded a slice per turn, as the store read it, instead of in one go.
 */
export const RANGE_ENCODE_SLICE_KVS = 1024;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The Range answer: as an object for the codec, or, when large, encoded a slice per turn. */
async function rangeAnswer(
  response: RangeResponse,
  header: PbResponseHeader,
): Promise<ReturnType<typeof rangeResponseToPb> | FramedResponse> {
  const kvs = response.kvs;
  if (kvs.length <= RANGE_ENCODE_SLICE_KVS) return rangeResponseToPb(response, header);
  const body = [encodeRangeResponseBody({ header, more: response.more, count: response.count })];
  for (let i = 0; i < kvs.length; i += RANGE_ENCODE_SLICE_KVS) {
    await nextTurn();
    const slice = kvs.slice(i, i + RANGE_ENCODE_SLICE_KVS).map(keyValueToPb);
    body.push(encodeRangeResponseBody({ kvs: slice }));
  }
  return FramedResponse.of(body);
}

export function kvService(ctx: ServiceContext): ServiceHandlers {
  const { backend, auth } = ctx;
  return withLeaderCheck(ctx, {
    Range: unary(async (pb: PbRangeRequest, call) => {
      const req = rangeFromPb(pb);
      const opts = requestOptions(call.metadata, ctx.defaults, req.serializable, call.signal);
      if (!auth.enabled()) {
        const { header, response } = await backend.range(req, opts);
        return rangeAnswer(response, headerToPb(header, response.header.revision));
      }
      // etcd's Range: the barrier, the check, the read, then the store must not have changed.
      const who = await auth.credentials(call);
      auth.checkRange(who, req.key, req.rangeEnd);
      const { header, response } = await backend.range(req, opts);
      auth.checkStillCurrent(who);
      return rangeAnswer(response, headerToPb(header, response.header.revision));
    }),

    Put: unary(async (pb: PbPutRequest, call) => {
      const req = putFromPb(pb);
      let opts = plainOptions(ctx, call);
      if (auth.enabled()) {
        const who = await auth.credentials(call);
        auth.checkPut(who, req.key, req.lease, req.prevKv);
        opts = { ...opts, auth: who };
      }
      const { header, response } = await backend.put(req, opts);
      return putResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    DeleteRange: unary(async (pb: PbDeleteRangeRequest, call) => {
      const req = deleteRangeFromPb(pb);
      let opts = plainOptions(ctx, call);
      if (auth.enabled()) {
        const who = await auth.credentials(call);
        auth.checkDeleteRange(who, req.key, req.rangeEnd, req.prevKv);
        opts = { ...opts, auth: who };
      }
      const { header, response } = await backend.deleteRange(req, opts);
      return deleteRangeResponseToPb(response, headerToPb(header, response.header.revision));
    }),

    Txn: unary(async (pb: PbTxnRequest, call) => {
      const req = txnFromPb(pb);
      // etcd serves a read-only txn whose ranges are all serializable as a local read.
      const readOnly = isReadOnlyTxn(req);
      const serializable = readOnly && isSerializableTxn(req);
      let opts = requestOptions(call.metadata, ctx.defaults, serializable, call.signal);
      if (!auth.enabled()) {
        const { header, response } = await backend.txn(req, opts);
        return txnResponseToPb(response, headerToPb(header, response.header.revision));
      }
      const who = await auth.credentials(call);
      auth.checkTxn(who, req);
      opts = { ...opts, auth: who };
      const { header, response } = await backend.txn(req, opts);
      if (readOnly) auth.checkStillCurrent(who);
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
