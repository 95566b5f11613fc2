/**
 * The wire form of a KV request in the Raft log: msgpack of `KvRequest`. Decoding checks the
 * shape field by field and rebuilds plain objects, so what the state machine applies has exactly
 * the declared types whatever a peer or an old log holds (a bad entry becomes INVALID_REQUEST on
 * every member alike, never a crash or a divergence).
 */
import { Packr } from 'msgpackr';
import type {
  CompactionRequest,
  Compare,
  DeleteRangeRequest,
  KvRequest,
  PutRequest,
  RangeRequest,
  RequestOp,
  TxnRequest,
} from '../api-types.js';
import { KvError } from '../errors.js';
import type { LeaseId } from '../types.js';

/**
 * Nesting deeper than this is refused while decoding, before validation, to bound recursion.
 * Validation bounds depth by the ops budget anyway (each level uses at least one op), so this
 * only bites when txnOpsMax is configured above it.
 */
export const TXN_DEPTH_MAX = 1024;

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });

export function encodeCommand(req: KvRequest): Uint8Array {
  return packr.pack(req);
}

export function decodeCommand(bytes: Uint8Array): KvRequest {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (e) {
    throw new KvError('INVALID_REQUEST', 'not msgpack', { cause: e });
  }
  const o = obj(raw, 'command');
  switch (o.type) {
    case 'range':
      return { type: 'range', request: range(o.request) };
    case 'put':
      return { type: 'put', request: put(o.request) };
    case 'deleteRange':
      return { type: 'deleteRange', request: deleteRange(o.request) };
    case 'txn':
      return { type: 'txn', request: txn(o.request, 0) };
    case 'compaction':
      return { type: 'compaction', request: compaction(o.request) };
    default:
      throw bad('type');
  }
}

function range(x: unknown): RangeRequest {
  const o = obj(x, 'range');
  return {
    key: bytes(o.key, 'key'),
    rangeEnd: bytes(o.rangeEnd, 'rangeEnd'),
    limit: int(o.limit, 'limit'),
    revision: int(o.revision, 'revision'),
    sortOrder: int(o.sortOrder, 'sortOrder') as RangeRequest['sortOrder'],
    sortTarget: int(o.sortTarget, 'sortTarget') as RangeRequest['sortTarget'],
    serializable: bool(o.serializable, 'serializable'),
    keysOnly: bool(o.keysOnly, 'keysOnly'),
    countOnly: bool(o.countOnly, 'countOnly'),
    minModRevision: int(o.minModRevision, 'minModRevision'),
    maxModRevision: int(o.maxModRevision, 'maxModRevision'),
    minCreateRevision: int(o.minCreateRevision, 'minCreateRevision'),
    maxCreateRevision: int(o.maxCreateRevision, 'maxCreateRevision'),
  };
}

function put(x: unknown): PutRequest {
  const o = obj(x, 'put');
  return {
    key: bytes(o.key, 'key'),
    value: bytes(o.value, 'value'),
    lease: lease(o.lease),
    prevKv: bool(o.prevKv, 'prevKv'),
    ignoreValue: bool(o.ignoreValue, 'ignoreValue'),
    ignoreLease: bool(o.ignoreLease, 'ignoreLease'),
  };
}

function deleteRange(x: unknown): DeleteRangeRequest {
  const o = obj(x, 'deleteRange');
  return {
    key: bytes(o.key, 'key'),
    rangeEnd: bytes(o.rangeEnd, 'rangeEnd'),
    prevKv: bool(o.prevKv, 'prevKv'),
  };
}

function compare(x: unknown): Compare {
  const o = obj(x, 'compare');
  return {
    result: int(o.result, 'result') as Compare['result'],
    target: int(o.target, 'target') as Compare['target'],
    key: bytes(o.key, 'key'),
    rangeEnd: bytes(o.rangeEnd, 'rangeEnd'),
    version: int(o.version, 'version'),
    createRevision: int(o.createRevision, 'createRevision'),
    modRevision: int(o.modRevision, 'modRevision'),
    value: bytes(o.value, 'value'),
    lease: lease(o.lease),
  };
}

function txn(x: unknown, depth: number): TxnRequest {
  if (depth > TXN_DEPTH_MAX) throw bad('txn nesting');
  const o = obj(x, 'txn');
  return {
    compare: arr(o.compare, 'compare').map(compare),
    success: arr(o.success, 'success').map((u) => requestOp(u, depth)),
    failure: arr(o.failure, 'failure').map((u) => requestOp(u, depth)),
  };
}

function requestOp(x: unknown, depth: number): RequestOp {
  const o = obj(x, 'op');
  switch (o.request) {
    case 'requestRange':
      return { request: 'requestRange', requestRange: range(o.requestRange) };
    case 'requestPut':
      return { request: 'requestPut', requestPut: put(o.requestPut) };
    case 'requestDeleteRange':
      return {
        request: 'requestDeleteRange',
        requestDeleteRange: deleteRange(o.requestDeleteRange),
      };
    case 'requestTxn':
      return { request: 'requestTxn', requestTxn: txn(o.requestTxn, depth + 1) };
    default:
      throw bad('op.request');
  }
}

function compaction(x: unknown): CompactionRequest {
  const o = obj(x, 'compaction');
  return { revision: int(o.revision, 'revision'), physical: bool(o.physical, 'physical') };
}

function obj(x: unknown, what: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw bad(what);
  return x as Record<string, unknown>;
}

function arr(x: unknown, what: string): unknown[] {
  if (!Array.isArray(x)) throw bad(what);
  return x;
}

function bytes(x: unknown, what: string): Uint8Array {
  if (!(x instanceof Uint8Array)) throw bad(what);
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

/** Any safe integer: etcd accepts negative limits and revisions and gives them meaning. */
function int(x: unknown, what: string): number {
  const n = typeof x === 'bigint' ? Number(x) : x;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw bad(what);
  return n;
}

function bool(x: unknown, what: string): boolean {
  if (typeof x !== 'boolean') throw bad(what);
  return x;
}

/** Leases are int64; msgpack gives small ones back as numbers. */
function lease(x: unknown): LeaseId {
  if (typeof x === 'bigint') return x;
  if (typeof x === 'number' && Number.isSafeInteger(x)) return BigInt(x);
  throw bad('lease');
}

function bad(what: string): KvError {
  return new KvError('INVALID_REQUEST', `bad ${what}`);
}
