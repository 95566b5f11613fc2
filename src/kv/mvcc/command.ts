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
  return decodePutFast(bytes) ?? decodeCommandGeneric(bytes);
}

/** @internal Any command through msgpackr and the shape checks (tests compare the fast path). */
export function decodeCommandGeneric(bytes: Uint8Array): KvRequest {
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

// ---------------------------------------------------------------------------------------------
// The put fast path. A put is most of what a member applies, and msgpackr's generic unpack (a
// map of strings, then the shape checks above rebuilding it) was a tenth of a put's apply CPU
// and a quarter of its allocations. `decodePutFast` reads exactly the msgpack `encodeCommand`
// writes for a put — a map {type: 'put', request: {key, value, lease, prevKv, ignoreValue,
// ignoreLease}}, keys in any order, each once — and gives what the generic path gives for those
// bytes. Anything else (another kind, another encoding, a duplicate or unknown key, trailing
// bytes) returns null and takes the generic path, which decides it exactly as before.

// Names as their bytes, matched without making strings. Indexes into TOP_NAMES / PUT_NAMES.
const ascii = (names: readonly string[]) => names.map((n) => new TextEncoder().encode(n));
const TOP_NAMES = ascii(['type', 'request', 'put']);
const TYPE = 0;
const REQUEST = 1;
const PUT = 2;
const PUT_NAMES = ascii(['key', 'value', 'lease', 'prevKv', 'ignoreValue', 'ignoreLease']);
const [KEY, VALUE, LEASE, PREV_KV, IGNORE_VALUE, IGNORE_LEASE] = [0, 1, 2, 3, 4, 5];

/** A cursor over the command's bytes; `at` = -1 once something does not fit the fast path. */
class FastReader {
  at = 0;
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(n: number): boolean {
    if (this.at < 0 || this.at + n > this.bytes.length) {
      this.at = -1;
      return false;
    }
    return true;
  }

  /** A map header's entry count, or -1. */
  mapLength(): number {
    if (!this.need(1)) return -1;
    const b = this.bytes[this.at]!;
    if (b >= 0x80 && b <= 0x8f) {
      this.at += 1;
      return b & 0x0f;
    }
    if (b === 0xde && this.need(3)) {
      const n = this.view.getUint16(this.at + 1);
      this.at += 3;
      return n;
    }
    this.at = -1;
    return -1;
  }

  /** Which of `names` the next value is, as a fixstr (how msgpackr writes them), or -1. */
  name(names: readonly Uint8Array[]): number {
    if (!this.need(1)) return -1;
    const b = this.bytes[this.at]!;
    const n = b & 0x1f;
    if ((b & 0xe0) === 0xa0 && this.need(1 + n)) {
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        if (name.length !== n) continue;
        let j = 0;
        while (j < n && this.bytes[this.at + 1 + j] === name[j]) j++;
        if (j === n) {
          this.at += 1 + n;
          return i;
        }
      }
    }
    this.at = -1;
    return -1;
  }

  /** A bin 8/16/32 as a view (as msgpackr gives it over a Uint8Array), or null. */
  bin(): Uint8Array | null {
    if (!this.need(1)) return null;
    const b = this.bytes[this.at]!;
    let n: number;
    let head: number;
    if (b === 0xc4 && this.need(2)) {
      n = this.bytes[this.at + 1]!;
      head = 2;
    } else if (b === 0xc5 && this.need(3)) {
      n = this.view.getUint16(this.at + 1);
      head = 3;
    } else if (b === 0xc6 && this.need(5)) {
      n = this.view.getUint32(this.at + 1);
      head = 5;
    } else {
      this.at = -1;
      return null;
    }
    if (!this.need(head + n)) return null;
    const start = this.at + head;
    this.at = start + n;
    return new Uint8Array(this.bytes.buffer, this.bytes.byteOffset + start, n);
  }

  bool(): boolean | null {
    if (!this.need(1)) return null;
    const b = this.bytes[this.at]!;
    if (b !== 0xc2 && b !== 0xc3) {
      this.at = -1;
      return null;
    }
    this.at += 1;
    return b === 0xc3;
  }

  /** A lease as `lease()` makes it: int64/uint64 (bigint) or a small unsigned int. */
  lease(): LeaseId | null {
    if (!this.need(1)) return null;
    const b = this.bytes[this.at]!;
    if (b <= 0x7f) {
      this.at += 1;
      return BigInt(b);
    }
    if ((b === 0xd3 || b === 0xcf) && this.need(9)) {
      const v =
        b === 0xd3 ? this.view.getBigInt64(this.at + 1) : this.view.getBigUint64(this.at + 1);
      this.at += 9;
      return v;
    }
    this.at = -1;
    return null;
  }
}

/** See above: a put decoded without msgpackr, or null for the generic path. */
export function decodePutFast(bytes: Uint8Array): KvRequest | null {
  const r = new FastReader(bytes);
  if (r.mapLength() !== 2) return null;
  let isPut = false;
  let request: PutRequest | null = null;
  for (let i = 0; i < 2; i++) {
    const name = r.name(TOP_NAMES);
    if (name === TYPE && !isPut) {
      if (r.name(TOP_NAMES) !== PUT) return null;
      isPut = true;
    } else if (name === REQUEST && request === null) {
      request = putFast(r);
      if (request === null) return null;
    } else {
      return null;
    }
  }
  if (!isPut || request === null || r.at !== bytes.length) return null;
  return { type: 'put', request };
}

function putFast(r: FastReader): PutRequest | null {
  if (r.mapLength() !== PUT_NAMES.length) return null;
  let key: Uint8Array | null = null;
  let value: Uint8Array | null = null;
  let leaseId: LeaseId | null = null;
  let prevKv: boolean | null = null;
  let ignoreValue: boolean | null = null;
  let ignoreLease: boolean | null = null;
  for (let i = 0; i < PUT_NAMES.length; i++) {
    const name = r.name(PUT_NAMES);
    if (name === KEY && key === null) key = r.bin();
    else if (name === VALUE && value === null) value = r.bin();
    else if (name === LEASE && leaseId === null) leaseId = r.lease();
    else if (name === PREV_KV && prevKv === null) prevKv = r.bool();
    else if (name === IGNORE_VALUE && ignoreValue === null) ignoreValue = r.bool();
    else if (name === IGNORE_LEASE && ignoreLease === null) ignoreLease = r.bool();
    else return null;
    if (r.at < 0) return null;
  }
  // Each of the six names once (a repeat returned null above), so all are set.
  if (
    key === null ||
    value === null ||
    leaseId === null ||
    prevKv === null ||
    ignoreValue === null ||
    ignoreLease === null
  ) {
    return null;
  }
  return { key, value, lease: leaseId, prevKv, ignoreValue, ignoreLease };
}
