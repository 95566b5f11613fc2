/**
 * Protobuf objects (as proto.ts describes them) to kv/api-types and back, checking at the edge
 * what protobuf cannot: 64-bit fields in range, open enums holding known values, nesting bounded.
 * A bad field is an INVALID_FIELD error naming it (`RangeRequest.limit`), never a crash.
 *
 * Keys and values stay views: an incoming Buffer is already a Uint8Array over the received
 * message, and outgoing Uint8Arrays are encoded straight from the store's buffers.
 *
 * etcd's own request checks (empty key, sort options, txn ops and duplicate keys, request size)
 * are the member's, in kv/validate.ts, run before proposing as etcd does in v3rpc/key.go.
 */
import type {
  CompactionRequest,
  Compare,
  CompareResult,
  CompareTarget,
  DeleteRangeRequest,
  DeleteRangeResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  TxnResponse,
} from '../kv/api-types.js';
import type { KeyValue, KvEvent, LeaseId } from '../kv/types.js';
import type { WatchResponse } from '../kv/watch/response.js';
import type { WatchCreateRequest } from '../kv/watch/stream.js';
import type { Header, Member } from '../server/contract.js';
import { ApiError } from './errors.js';
import {
  PB_ENUMS,
  type PbCompactionRequest,
  type PbCompare,
  type PbDeleteRangeRequest,
  type PbEvent,
  type PbInt64,
  type PbInt64Out,
  type PbKeyValue,
  type PbMember,
  type PbPutRequest,
  type PbRangeRequest,
  type PbRequestOp,
  type PbResponseHeader,
  type PbTxnRequest,
  type PbWatchCreateRequest,
} from './proto.js';

/**
 * Nesting depth of txns inside txns. etcd has no such limit (only --max-txn-ops); a bound keeps
 * conversion, validation and apply off deep recursion. No real client nests more than a level.
 */
export const TXN_NESTING_MAX = 16;

const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

function invalid(field: string, why: string): ApiError {
  return new ApiError('INVALID_FIELD', `${field} ${why}`);
}

// ---------------------------------------------------------------------------------------------
// Scalars.

/** A revision, count or limit: a non-negative safe integer (tandem keeps revisions < 2^53). */
export function uintField(value: PbInt64, field: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw invalid(field, `is out of range: ${value}`);
  if (n < 0) throw invalid(field, `must not be negative: ${value}`);
  return n;
}

/** A signed int64 that must still fit a safe integer (watch start revisions, TTLs). */
export function intField(value: PbInt64, field: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw invalid(field, `is out of range: ${value}`);
  return n;
}

/** A lease id: int64 on the wire, 0 = none; negative ids are refused here. */
export function leaseIdField(value: PbInt64, field: string): LeaseId {
  const id = BigInt(value);
  if (id < 0n || id > INT64_MAX) throw invalid(field, `must be in [0, 2^63): ${value}`);
  return id;
}

/** A member id: uint64 on the wire. */
export function memberIdField(value: PbInt64, field: string): bigint {
  const id = BigInt(value);
  if (id < 0n || id > UINT64_MAX) throw invalid(field, `must be a uint64: ${value}`);
  return id;
}

function enumField(value: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw invalid(field, `has an unknown value: ${value}`);
  }
  return value;
}

/** A 64-bit id to encode: a number while exact, else its decimal string. */
export function int64Out(value: bigint): PbInt64Out {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}

// ---------------------------------------------------------------------------------------------
// KV requests.

export function rangeFromPb(pb: PbRangeRequest, at = 'RangeRequest'): RangeRequest {
  return {
    key: pb.key,
    rangeEnd: pb.rangeEnd,
    limit: uintField(pb.limit, `${at}.limit`),
    revision: uintField(pb.revision, `${at}.revision`),
    // Left as received: kv/validate.ts answers etcd's "invalid sort option" for unknown ones.
    sortOrder: pb.sortOrder as SortOrder,
    sortTarget: pb.sortTarget as SortTarget,
    serializable: pb.serializable,
    keysOnly: pb.keysOnly,
    countOnly: pb.countOnly,
    minModRevision: uintField(pb.minModRevision, `${at}.min_mod_revision`),
    maxModRevision: uintField(pb.maxModRevision, `${at}.max_mod_revision`),
    minCreateRevision: uintField(pb.minCreateRevision, `${at}.min_create_revision`),
    maxCreateRevision: uintField(pb.maxCreateRevision, `${at}.max_create_revision`),
  };
}

export function putFromPb(pb: PbPutRequest, at = 'PutRequest'): PutRequest {
  return {
    key: pb.key,
    value: pb.value,
    lease: leaseIdField(pb.lease, `${at}.lease`),
    prevKv: pb.prevKv,
    ignoreValue: pb.ignoreValue,
    ignoreLease: pb.ignoreLease,
  };
}

export function deleteRangeFromPb(pb: PbDeleteRangeRequest): DeleteRangeRequest {
  return { key: pb.key, rangeEnd: pb.rangeEnd, prevKv: pb.prevKv };
}

export function compactionFromPb(pb: PbCompactionRequest): CompactionRequest {
  return {
    revision: uintField(pb.revision, 'CompactionRequest.revision'),
    physical: pb.physical,
  };
}

export function txnFromPb(pb: PbTxnRequest, at = 'TxnRequest', depth = 0): TxnRequest {
  if (depth > TXN_NESTING_MAX) throw invalid(at, `nests txns deeper than ${TXN_NESTING_MAX}`);
  return {
    compare: pb.compare.map((c, i) => compareFromPb(c, `${at}.compare[${i}]`)),
    success: pb.success.map((op, i) => requestOpFromPb(op, `${at}.success[${i}]`, depth)),
    failure: pb.failure.map((op, i) => requestOpFromPb(op, `${at}.failure[${i}]`, depth)),
  };
}

function requestOpFromPb(pb: PbRequestOp, at: string, depth: number): RequestOp {
  switch (pb.request) {
    case 'requestRange':
      return { request: 'requestRange', requestRange: rangeFromPb(pb.requestRange!, at) };
    case 'requestPut':
      return { request: 'requestPut', requestPut: putFromPb(pb.requestPut!, at) };
    case 'requestDeleteRange':
      return {
        request: 'requestDeleteRange',
        requestDeleteRange: deleteRangeFromPb(pb.requestDeleteRange!),
      };
    case 'requestTxn':
      return { request: 'requestTxn', requestTxn: txnFromPb(pb.requestTxn!, at, depth + 1) };
    default:
      // etcd would panic applying an empty RequestOp; refuse it instead.
      throw invalid(at, 'sets no request');
  }
}

const EMPTY = new Uint8Array(0);

/**
 * etcd reads the oneof member named by `target` (Compare.GetVersion() etc.), which is 0 or empty
 * when the client set another one; so do we, by reading each member with its default.
 */
function compareFromPb(pb: PbCompare, at: string): Compare {
  return {
    result: enumField(pb.result, PB_ENUMS.compareResultMax, `${at}.result`) as CompareResult,
    target: enumField(pb.target, PB_ENUMS.compareTargetMax, `${at}.target`) as CompareTarget,
    key: pb.key,
    rangeEnd: pb.rangeEnd,
    version: pb.version === undefined ? 0 : intField(pb.version, `${at}.version`),
    createRevision:
      pb.createRevision === undefined ? 0 : intField(pb.createRevision, `${at}.create_revision`),
    modRevision: pb.modRevision === undefined ? 0 : intField(pb.modRevision, `${at}.mod_revision`),
    value: pb.value ?? EMPTY,
    lease: pb.lease === undefined ? 0n : leaseIdField(pb.lease, `${at}.lease`),
  };
}

/** Whether every op of a txn (nested too) only reads: etcd serves such a txn as a read. */
export function isReadOnlyTxn(txn: TxnRequest): boolean {
  const ops = (list: readonly RequestOp[]) =>
    list.every((op) =>
      op.request === 'requestRange'
        ? true
        : op.request === 'requestTxn'
          ? isReadOnlyTxn(op.requestTxn)
          : false,
    );
  return ops(txn.success) && ops(txn.failure);
}

/** etcd's isTxnSerializable: every range of the txn asks for a serializable read. */
export function isSerializableTxn(txn: TxnRequest): boolean {
  const ops = (list: readonly RequestOp[]) =>
    list.every((op) =>
      op.request === 'requestRange'
        ? op.requestRange.serializable
        : op.request === 'requestTxn'
          ? isSerializableTxn(op.requestTxn)
          : false,
    );
  return ops(txn.success) && ops(txn.failure);
}

// ---------------------------------------------------------------------------------------------
// KV responses.

/** The full header of a top-level response; `revision` from the kv layer when it has one. */
export function headerToPb(header: Header, revision: number = header.revision): PbResponseHeader {
  return {
    clusterId: int64Out(header.clusterId),
    memberId: int64Out(header.memberId),
    revision,
    raftTerm: header.raftTerm,
  };
}

/** etcd fills only the revision in the headers of a txn's inner responses. */
function innerHeader(revision: number): PbResponseHeader {
  return { clusterId: 0, memberId: 0, revision, raftTerm: 0 };
}

export function keyValueToPb(kv: KeyValue): PbKeyValue {
  return {
    key: kv.key,
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
    value: kv.value,
    lease: int64Out(kv.lease),
  };
}

export function rangeResponseToPb(res: RangeResponse, header: PbResponseHeader) {
  return { header, kvs: res.kvs.map(keyValueToPb), more: res.more, count: res.count };
}

export function putResponseToPb(res: PutResponse, header: PbResponseHeader) {
  return { header, prevKv: res.prevKv === null ? null : keyValueToPb(res.prevKv) };
}

export function deleteRangeResponseToPb(res: DeleteRangeResponse, header: PbResponseHeader) {
  return { header, deleted: res.deleted, prevKvs: res.prevKvs.map(keyValueToPb) };
}

export function txnResponseToPb(res: TxnResponse, header: PbResponseHeader) {
  return {
    header,
    succeeded: res.succeeded,
    responses: res.responses.map(responseOpToPb),
  };
}

function responseOpToPb(op: ResponseOp): Record<string, unknown> {
  switch (op.response) {
    case 'responseRange': {
      const r = op.responseRange;
      return { responseRange: rangeResponseToPb(r, innerHeader(r.header.revision)) };
    }
    case 'responsePut': {
      const r = op.responsePut;
      return { responsePut: putResponseToPb(r, innerHeader(r.header.revision)) };
    }
    case 'responseDeleteRange': {
      const r = op.responseDeleteRange;
      return { responseDeleteRange: deleteRangeResponseToPb(r, innerHeader(r.header.revision)) };
    }
    case 'responseTxn': {
      const r = op.responseTxn;
      return { responseTxn: txnResponseToPb(r, innerHeader(r.header.revision)) };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Watch.

/**
 * etcd's Watch handler normalises the key range before creating the watcher: an empty key is
 * "\0" (the smallest key); range_end "\0" means every key >= key (kept as is: the watch layer
 * reads it the same way). filters: unknown values are ignored, as etcd's FiltersFromRequest
 * does; a refused create would have to cancel, where etcd creates.
 */
export function watchCreateFromPb(pb: PbWatchCreateRequest): WatchCreateRequest {
  return {
    key: pb.key.length === 0 ? ZERO_KEY : pb.key,
    rangeEnd: pb.rangeEnd,
    // Out-of-range numbers pass as NaN: the stream refuses them with a cancel_reason, as it
    // does negative ones, instead of failing the whole stream.
    startRevision: safeOrNaN(pb.startRevision),
    watchId: safeOrNaN(pb.watchId),
    noPut: pb.filters.includes(PB_ENUMS.watchFilterNoPut),
    noDelete: pb.filters.includes(PB_ENUMS.watchFilterNoDelete),
    prevKv: pb.prevKv,
    progressNotify: pb.progressNotify,
    fragment: pb.fragment,
  };
}

const ZERO_KEY = new Uint8Array([0]);

function safeOrNaN(value: PbInt64): number {
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : Number.NaN;
}

export function eventToPb(event: KvEvent): PbEvent {
  return {
    type: event.type,
    kv: keyValueToPb(event.kv),
    prevKv: event.prevKv === null ? null : keyValueToPb(event.prevKv),
  };
}

export function watchResponseToPb(res: WatchResponse, header: Header) {
  return {
    header: headerToPb(header, res.headerRevision),
    watchId: res.watchId,
    created: res.created,
    canceled: res.canceled,
    compactRevision: res.compactRevision,
    cancelReason: res.cancelReason,
    fragment: res.fragment,
    events: res.events.map(eventToPb),
  };
}

// ---------------------------------------------------------------------------------------------
// Cluster.

export function memberToPb(m: Member): PbMember {
  return {
    ID: int64Out(m.id),
    name: m.name,
    peerURLs: m.peerUrls,
    clientURLs: m.clientUrls,
    isLearner: m.isLearner,
  };
}

/** scheme://host:port, host a name, IPv4 or [IPv6]; no path, query or user info. */
const PEER_URL = /^(https?|unixs?):\/\/(\[[0-9A-Fa-f:.]+\]|[^/:?#@\s[\]]+):(\d{1,5})$/;

/**
 * etcd's types.NewURLs: at least one URL, each scheme://host:port with no path, scheme http,
 * https, unix or unixs. Anything else is etcd's "given member URLs are invalid".
 */
export function peerUrlsField(urls: readonly string[]): readonly string[] {
  if (urls.length === 0) throw new ApiError('MEMBER_BAD_URLS', 'no URL given');
  for (const url of urls) {
    const match = PEER_URL.exec(url);
    if (match === null || Number(match[3]) > 65_535) throw new ApiError('MEMBER_BAD_URLS', url);
  }
  return urls;
}
