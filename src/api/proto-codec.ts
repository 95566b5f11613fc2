/**
 * Hand-written protobuf codecs for the hot KV methods (Put, Range, DeleteRange, Txn), beside the
 * proto-loader ones every other method uses (proto.ts).
 *
 * Requests decode to exactly the objects proto-loader gives with PROTO_LOADER_OPTIONS (int64 as
 * decimal strings, bytes as Buffer views of the message, every scalar present, oneofs named),
 * read the way protobufjs reads them: the wire type of a known field is not checked, the last
 * of a repeated singular field wins, a sub-message must end exactly at its length, nesting past
 * 100 levels is refused. Where protobufjs is lenient about a truncated varint this is strict;
 * whatever this accepts, protobufjs reads the same way (test/api/proto-codec.test.ts).
 *
 * Responses are encoded in one buffer, gRPC prefix included: sizes first, then the bytes.
 * Default values (0, false, empty) are left out, as proto3 encoders do.
 */
import { MESSAGE_PREFIX_BYTES } from './grpc/framing.js';
import type { MethodCodec } from './grpc/handlers.js';
import type {
  PbCompare,
  PbDeleteRangeRequest,
  PbInt64Out,
  PbKeyValue,
  PbPutRequest,
  PbRangeRequest,
  PbRequestOp,
  PbResponseHeader,
  PbTxnRequest,
} from './proto.js';

/** protobufjs's Reader.recursionLimit (protoc's default): deeper messages are refused. */
const NESTING_MAX = 100;

// =============================================================================================
// Reading

class Reader {
  pos = 0;
  /** The end of the message being read (a sub-message narrows it). */
  len: number;

  constructor(readonly buf: Buffer) {
    this.len = buf.length;
  }
}

function outOfRange(r: Reader): RangeError {
  return new RangeError(`index out of range: ${r.pos} > ${r.len}`);
}

/** A varint's low 32 bits, as protobufjs reads tags, lengths, bools and enums. */
function uint32(r: Reader): number {
  const buf = r.buf;
  let value = 0;
  for (let i = 0; i < 5; i++) {
    if (r.pos >= r.len) throw outOfRange(r);
    const b = buf[r.pos++]!;
    value = (value | ((b & 127) << (i * 7))) >>> 0;
    if (b < 128) return value;
  }
  // A 10-byte varint (a negative int32): protobufjs skips the last five bytes unread.
  r.pos += 5;
  if (r.pos > r.len) throw outOfRange(r);
  return value;
}

function bool(r: Reader): boolean {
  return uint32(r) !== 0;
}

function int32(r: Reader): number {
  return uint32(r) | 0;
}

const TWO_POW_32 = 2 ** 32;

/** An int64 varint as the signed decimal string protobufjs (longs: String) gives. */
function int64(r: Reader): string {
  const buf = r.buf;
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < 10; i++) {
    if (r.pos >= r.len) throw outOfRange(r);
    const b = buf[r.pos++]!;
    if (i < 4) lo = (lo | ((b & 127) << (i * 7))) >>> 0;
    else if (i === 4) {
      lo = (lo | ((b & 127) << 28)) >>> 0;
      hi = (hi | ((b & 127) >> 4)) >>> 0;
    } else hi = (hi | ((b & 127) << ((i - 5) * 7 + 3))) >>> 0;
    if (b < 128) return int64Text(lo, hi);
  }
  throw new Error('invalid varint encoding');
}

function int64Text(lo: number, hi: number): string {
  if (hi === 0) return String(lo);
  if (hi < 0x200000) return String(hi * TWO_POW_32 + lo);
  return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString();
}

function bytes(r: Reader): Buffer {
  const length = uint32(r);
  const start = r.pos;
  const end = start + length;
  if (end > r.len) throw outOfRange(r);
  r.pos = end;
  return r.buf.subarray(start, end);
}

function skip(r: Reader, n: number): void {
  if (r.pos + n > r.len) throw outOfRange(r);
  r.pos += n;
}

/** protobufjs's Reader.skipType: unknown fields, groups included. */
function skipType(r: Reader, wireType: number, depth: number): void {
  if (depth > NESTING_MAX) throw new Error('maximum nesting depth exceeded');
  switch (wireType) {
    case 0:
      do {
        if (r.pos >= r.len) throw outOfRange(r);
      } while (r.buf[r.pos++]! & 128);
      return;
    case 1:
      skip(r, 8);
      return;
    case 2:
      skip(r, uint32(r));
      return;
    case 3:
      for (;;) {
        const next = uint32(r) & 7;
        if (next === 4) return;
        skipType(r, next, depth + 1);
      }
    case 5:
      skip(r, 4);
      return;
    default:
      throw new Error(`invalid wire type ${wireType} at offset ${r.pos}`);
  }
}

/** Reads one length-delimited sub-message with `read`, which reads fields until r.len. */
function sub<T>(r: Reader, depth: number, read: (r: Reader, depth: number) => T): T {
  if (depth > NESTING_MAX) throw new Error('maximum nesting depth exceeded');
  const length = uint32(r);
  const end = r.pos + length;
  if (end > r.len) throw new RangeError('index out of range');
  const outer = r.len;
  r.len = end;
  const value = read(r, depth);
  if (r.pos !== end) throw new RangeError('index out of range');
  r.len = outer;
  return value;
}

const EMPTY: Buffer = Buffer.alloc(0);

function readPutRequest(r: Reader, depth: number): PbPutRequest {
  let key = EMPTY;
  let value = EMPTY;
  let lease = '0';
  let prevKv = false;
  let ignoreValue = false;
  let ignoreLease = false;
  while (r.pos < r.len) {
    const tag = uint32(r);
    switch (tag >>> 3) {
      case 1:
        key = bytes(r);
        break;
      case 2:
        value = bytes(r);
        break;
      case 3:
        lease = int64(r);
        break;
      case 4:
        prevKv = bool(r);
        break;
      case 5:
        ignoreValue = bool(r);
        break;
      case 6:
        ignoreLease = bool(r);
        break;
      default:
        skipType(r, tag & 7, depth);
    }
  }
  return { key, value, lease, prevKv, ignoreValue, ignoreLease };
}

function readRangeRequest(r: Reader, depth: number): PbRangeRequest {
  let key = EMPTY;
  let rangeEnd = EMPTY;
  let limit = '0';
  let revision = '0';
  let sortOrder = 0;
  let sortTarget = 0;
  let serializable = false;
  let keysOnly = false;
  let countOnly = false;
  let minModRevision = '0';
  let maxModRevision = '0';
  let minCreateRevision = '0';
  let maxCreateRevision = '0';
  while (r.pos < r.len) {
    const tag = uint32(r);
    switch (tag >>> 3) {
      case 1:
        key = bytes(r);
        break;
      case 2:
        rangeEnd = bytes(r);
        break;
      case 3:
        limit = int64(r);
        break;
      case 4:
        revision = int64(r);
        break;
      case 5:
        sortOrder = int32(r);
        break;
      case 6:
        sortTarget = int32(r);
        break;
      case 7:
        serializable = bool(r);
        break;
      case 8:
        keysOnly = bool(r);
        break;
      case 9:
        countOnly = bool(r);
        break;
      case 10:
        minModRevision = int64(r);
        break;
      case 11:
        maxModRevision = int64(r);
        break;
      case 12:
        minCreateRevision = int64(r);
        break;
      case 13:
        maxCreateRevision = int64(r);
        break;
      default:
        skipType(r, tag & 7, depth);
    }
  }
  return {
    key,
    rangeEnd,
    limit,
    revision,
    sortOrder,
    sortTarget,
    serializable,
    keysOnly,
    countOnly,
    minModRevision,
    maxModRevision,
    minCreateRevision,
    maxCreateRevision,
  };
}

function readDeleteRangeRequest(r: Reader, depth: number): PbDeleteRangeRequest {
  let key = EMPTY;
  let rangeEnd = EMPTY;
  let prevKv = false;
  while (r.pos < r.len) {
    const tag = uint32(r);
    switch (tag >>> 3) {
      case 1:
        key = bytes(r);
        break;
      case 2:
        rangeEnd = bytes(r);
        break;
      case 3:
        prevKv = bool(r);
        break;
      default:
        skipType(r, tag & 7, depth);
    }
  }
  return { key, rangeEnd, prevKv };
}

type CompareTarget = 'version' | 'createRevision' | 'modRevision' | 'value' | 'lease';
/** Oneof members in declaration order: with several set, protobufjs names the last. */
const COMPARE_TARGETS: readonly CompareTarget[] = [
  'version',
  'createRevision',
  'modRevision',
  'value',
  'lease',
];

function readCompare(r: Reader, depth: number): PbCompare {
  let result = 0;
  let target = 0;
  let key = EMPTY;
  let rangeEnd = EMPTY;
  const union: {
    version?: string;
    createRevision?: string;
    modRevision?: string;
    value?: Buffer;
    lease?: string;
  } = {};
  while (r.pos < r.len) {
    const tag = uint32(r);
    switch (tag >>> 3) {
      case 1:
        result = int32(r);
        break;
      case 2:
        target = int32(r);
        break;
      case 3:
        key = bytes(r);
        break;
      case 4:
        union.version = int64(r);
        break;
      case 5:
        union.createRevision = int64(r);
        break;
      case 6:
        union.modRevision = int64(r);
        break;
      case 7:
        union.value = bytes(r);
        break;
      case 8:
        union.lease = int64(r);
        break;
      case 64:
        rangeEnd = bytes(r);
        break;
      default:
        skipType(r, tag & 7, depth);
    }
  }
  let targetUnion: CompareTarget | undefined;
  for (const name of COMPARE_TARGETS) if (union[name] !== undefined) targetUnion = name;
  return targetUnion === undefined
    ? { result, target, key, rangeEnd }
    : { result, target, key, rangeEnd, ...union, targetUnion };
}

type RequestOpMember = 'requestRange' | 'requestPut' | 'requestDeleteRange' | 'requestTxn';
const REQUEST_OP_MEMBERS: readonly RequestOpMember[] = [
  'requestRange',
  'requestPut',
  'requestDeleteRange',
  'requestTxn',
];

function readRequestOp(r: Reader, depth: number): PbRequestOp {
  const op: {
    requestRange?: PbRangeRequest;
    requestPut?: PbPutRequest;
    requestDeleteRange?: PbDeleteRangeRequest;
    requestTxn?: PbTxnRequest;
    request?: RequestOpMember;
  } = {};
  while (r.pos < r.len) {
    const tag = uint32(r);
    switch (tag >>> 3) {
      case 1:
        op.requestRange = sub(r, depth + 1, readRangeRequest);
        break;
      case 2:
        op.requestPut = sub(r, depth + 1, readPutRequest);
        break;
      case 3:
        op.requestDeleteRange = sub(r, depth + 1, readDeleteRangeRequest);
        break;
      case 4:
        op.requestTxn = sub(r, depth + 1, readTxnRequest);
        break;
      default:
        skipType(r, tag & 7, depth);
    }
  }
  for (const name of REQUEST_OP_MEMBERS) if (op[name] !== undefined) op.request = name;
  return op;
}

function readTxnRequest(r: Reader, depth: number): PbTxnRequest {
  const compare: PbCompare[] = [];
  const success: PbRequestOp[] = [];
  const failure: PbRequestOp[] = [];
  while (r.pos < r.len) {
    const tag = uint32(r);
    switch (tag >>> 3) {
      case 1:
        compare.push(sub(r, depth + 1, readCompare));
        break;
      case 2:
        success.push(sub(r, depth + 1, readRequestOp));
        break;
      case 3:
        failure.push(sub(r, depth + 1, readRequestOp));
        break;
      default:
        skipType(r, tag & 7, depth);
    }
  }
  return { compare, success, failure };
}

function decoder<T>(read: (r: Reader, depth: number) => T): (message: Buffer) => T {
  return (message) => read(new Reader(message), 0);
}

export const decodePutRequest = decoder(readPutRequest);
export const decodeRangeRequest = decoder(readRangeRequest);
export const decodeDeleteRangeRequest = decoder(readDeleteRangeRequest);
export const decodeTxnRequest = decoder(readTxnRequest);

// =============================================================================================
// Writing: every message as size*() then write*(); write* returns the next position.

function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 4;
  for (let v = Math.floor(n / 0x10000000); v > 0; v = Math.floor(v / 0x80)) size++;
  return size;
}

/** A non-negative safe integer as a varint. */
function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80000000) {
    buf[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
  return pos;
}

/**
 * The varint of an int64/uint64 given as a negative number or a decimal string (member ids are
 * above 2^53). The few distinct ones (cluster and member ids) are kept, bounded.
 */
const wideVarints = new Map<string, Uint8Array>();
const WIDE_VARINTS_MAX = 64;

function wideVarint(value: number | string): Uint8Array {
  const text = String(value);
  let encoded = wideVarints.get(text);
  if (encoded !== undefined) return encoded;
  let n = BigInt.asUintN(64, BigInt(text));
  const out: number[] = [];
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  encoded = Uint8Array.from(out);
  if (wideVarints.size >= WIDE_VARINTS_MAX) wideVarints.clear();
  wideVarints.set(text, encoded);
  return encoded;
}

function isSmall(value: PbInt64Out): value is number {
  return typeof value === 'number' && value >= 0 && Number.isSafeInteger(value);
}

/** Size of an int64 field with a one-byte tag; 0 when it is zero (left out). */
function int64FieldSize(value: PbInt64Out): number {
  if (isSmall(value)) return value === 0 ? 0 : 1 + varintSize(value);
  if (value === '0') return 0;
  return 1 + wideVarint(value).length;
}

function writeInt64Field(buf: Buffer, pos: number, tag: number, value: PbInt64Out): number {
  if (isSmall(value)) {
    if (value === 0) return pos;
    buf[pos++] = tag;
    return writeVarint(buf, pos, value);
  }
  if (value === '0') return pos;
  buf[pos++] = tag;
  const encoded = wideVarint(value);
  buf.set(encoded, pos);
  return pos + encoded.length;
}

function bytesFieldSize(value: Uint8Array): number {
  return value.length === 0 ? 0 : 1 + varintSize(value.length) + value.length;
}

function writeBytesField(buf: Buffer, pos: number, tag: number, value: Uint8Array): number {
  if (value.length === 0) return pos;
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, value.length);
  buf.set(value, pos);
  return pos + value.length;
}

/** A length-delimited field holding a message of `size` bytes (always written). */
function messageFieldSize(size: number): number {
  return 1 + varintSize(size) + size;
}

function writeMessageHead(buf: Buffer, pos: number, tag: number, size: number): number {
  buf[pos++] = tag;
  return writeVarint(buf, pos, size);
}

// --- ResponseHeader { cluster_id = 1, member_id = 2, revision = 3, raft_term = 4 }

function headerSize(h: PbResponseHeader): number {
  return (
    int64FieldSize(h.clusterId) +
    int64FieldSize(h.memberId) +
    int64FieldSize(h.revision) +
    int64FieldSize(h.raftTerm)
  );
}

function writeHeader(buf: Buffer, pos: number, h: PbResponseHeader): number {
  pos = writeInt64Field(buf, pos, 0x08, h.clusterId);
  pos = writeInt64Field(buf, pos, 0x10, h.memberId);
  pos = writeInt64Field(buf, pos, 0x18, h.revision);
  return writeInt64Field(buf, pos, 0x20, h.raftTerm);
}

function headerFieldSize(h: PbResponseHeader | null | undefined): number {
  return h == null ? 0 : messageFieldSize(headerSize(h));
}

function writeHeaderField(buf: Buffer, pos: number, h: PbResponseHeader | null | undefined) {
  if (h == null) return pos;
  pos = writeMessageHead(buf, pos, 0x0a, headerSize(h));
  return writeHeader(buf, pos, h);
}

// --- KeyValue { key = 1, create_revision = 2, mod_revision = 3, version = 4, value = 5, lease = 6 }

function keyValueSize(kv: PbKeyValue): number {
  return (
    bytesFieldSize(kv.key) +
    int64FieldSize(kv.createRevision) +
    int64FieldSize(kv.modRevision) +
    int64FieldSize(kv.version) +
    bytesFieldSize(kv.value) +
    int64FieldSize(kv.lease)
  );
}

function writeKeyValueField(buf: Buffer, pos: number, tag: number, kv: PbKeyValue): number {
  pos = writeMessageHead(buf, pos, tag, keyValueSize(kv));
  pos = writeBytesField(buf, pos, 0x0a, kv.key);
  pos = writeInt64Field(buf, pos, 0x10, kv.createRevision);
  pos = writeInt64Field(buf, pos, 0x18, kv.modRevision);
  pos = writeInt64Field(buf, pos, 0x20, kv.version);
  pos = writeBytesField(buf, pos, 0x2a, kv.value);
  return writeInt64Field(buf, pos, 0x30, kv.lease);
}

function keyValuesSize(kvs: readonly PbKeyValue[]): number {
  let size = 0;
  for (const kv of kvs) size += messageFieldSize(keyValueSize(kv));
  return size;
}

// --- The four responses; `header` is field 1 of each.

export interface PbPutResponse {
  readonly header?: PbResponseHeader | null;
  readonly prevKv?: PbKeyValue | null;
}

export interface PbRangeResponse {
  readonly header?: PbResponseHeader | null;
  readonly kvs?: readonly PbKeyValue[];
  readonly more?: boolean;
  readonly count?: PbInt64Out;
}

export interface PbDeleteRangeResponse {
  readonly header?: PbResponseHeader | null;
  readonly deleted?: PbInt64Out;
  readonly prevKvs?: readonly PbKeyValue[];
}

export interface PbResponseOp {
  readonly responseRange?: PbRangeResponse | null;
  readonly responsePut?: PbPutResponse | null;
  readonly responseDeleteRange?: PbDeleteRangeResponse | null;
  readonly responseTxn?: PbTxnResponse | null;
}

export interface PbTxnResponse {
  readonly header?: PbResponseHeader | null;
  readonly succeeded?: boolean;
  readonly responses?: readonly PbResponseOp[];
}

// PutResponse { header = 1, prev_kv = 2 }
function putResponseSize(m: PbPutResponse): number {
  return (
    headerFieldSize(m.header) + (m.prevKv == null ? 0 : messageFieldSize(keyValueSize(m.prevKv)))
  );
}

function writePutResponse(buf: Buffer, pos: number, m: PbPutResponse): number {
  pos = writeHeaderField(buf, pos, m.header);
  return m.prevKv == null ? pos : writeKeyValueField(buf, pos, 0x12, m.prevKv);
}

// RangeResponse { header = 1, kvs = 2, more = 3, count = 4 }
function rangeResponseSize(m: PbRangeResponse): number {
  return (
    headerFieldSize(m.header) +
    keyValuesSize(m.kvs ?? []) +
    (m.more === true ? 2 : 0) +
    int64FieldSize(m.count ?? 0)
  );
}

function writeRangeResponse(buf: Buffer, pos: number, m: PbRangeResponse): number {
  pos = writeHeaderField(buf, pos, m.header);
  for (const kv of m.kvs ?? []) pos = writeKeyValueField(buf, pos, 0x12, kv);
  if (m.more === true) {
    buf[pos++] = 0x18;
    buf[pos++] = 1;
  }
  return writeInt64Field(buf, pos, 0x20, m.count ?? 0);
}

// DeleteRangeResponse { header = 1, deleted = 2, prev_kvs = 3 }
function deleteRangeResponseSize(m: PbDeleteRangeResponse): number {
  return (
    headerFieldSize(m.header) + int64FieldSize(m.deleted ?? 0) + keyValuesSize(m.prevKvs ?? [])
  );
}

function writeDeleteRangeResponse(buf: Buffer, pos: number, m: PbDeleteRangeResponse): number {
  pos = writeHeaderField(buf, pos, m.header);
  pos = writeInt64Field(buf, pos, 0x10, m.deleted ?? 0);
  for (const kv of m.prevKvs ?? []) pos = writeKeyValueField(buf, pos, 0x1a, kv);
  return pos;
}

// ResponseOp { oneof response: range = 1, put = 2, delete_range = 3, txn = 4 }
function responseOpSize(op: PbResponseOp): number {
  let size = 0;
  if (op.responseRange != null) size += messageFieldSize(rangeResponseSize(op.responseRange));
  if (op.responsePut != null) size += messageFieldSize(putResponseSize(op.responsePut));
  if (op.responseDeleteRange != null) {
    size += messageFieldSize(deleteRangeResponseSize(op.responseDeleteRange));
  }
  if (op.responseTxn != null) size += messageFieldSize(txnResponseSize(op.responseTxn));
  return size;
}

function writeResponseOp(buf: Buffer, pos: number, op: PbResponseOp): number {
  if (op.responseRange != null) {
    pos = writeMessageHead(buf, pos, 0x0a, rangeResponseSize(op.responseRange));
    pos = writeRangeResponse(buf, pos, op.responseRange);
  }
  if (op.responsePut != null) {
    pos = writeMessageHead(buf, pos, 0x12, putResponseSize(op.responsePut));
    pos = writePutResponse(buf, pos, op.responsePut);
  }
  if (op.responseDeleteRange != null) {
    pos = writeMessageHead(buf, pos, 0x1a, deleteRangeResponseSize(op.responseDeleteRange));
    pos = writeDeleteRangeResponse(buf, pos, op.responseDeleteRange);
  }
  if (op.responseTxn != null) {
    pos = writeMessageHead(buf, pos, 0x22, txnResponseSize(op.responseTxn));
    pos = writeTxnResponse(buf, pos, op.responseTxn);
  }
  return pos;
}

// TxnResponse { header = 1, succeeded = 2, responses = 3 }
function txnResponseSize(m: PbTxnResponse): number {
  let size = headerFieldSize(m.header) + (m.succeeded === true ? 2 : 0);
  for (const op of m.responses ?? []) size += messageFieldSize(responseOpSize(op));
  return size;
}

function writeTxnResponse(buf: Buffer, pos: number, m: PbTxnResponse): number {
  pos = writeHeaderField(buf, pos, m.header);
  if (m.succeeded === true) {
    buf[pos++] = 0x10;
    buf[pos++] = 1;
  }
  for (const op of m.responses ?? []) {
    pos = writeMessageHead(buf, pos, 0x1a, responseOpSize(op));
    pos = writeResponseOp(buf, pos, op);
  }
  return pos;
}

/** An encoder of whole gRPC messages: the 5-byte prefix, then the message. */
function framedEncoder<T>(
  size: (m: T) => number,
  write: (buf: Buffer, pos: number, m: T) => number,
): (message: T) => Buffer {
  return (message) => {
    const length = size(message);
    const buf = Buffer.allocUnsafe(MESSAGE_PREFIX_BYTES + length);
    buf[0] = 0;
    buf.writeUInt32BE(length, 1);
    const end = write(buf, MESSAGE_PREFIX_BYTES, message);
    if (end !== buf.length) throw new Error(`proto-codec: wrote ${end} of ${buf.length} bytes`);
    return buf;
  };
}

/**
 * A RangeResponse's protobuf bytes without the gRPC prefix: what FramedResponse joins when a
 * large answer is encoded in slices (fields may come in any order and repeated ones append, so
 * the header, count and more, then each slice's kvs, make one valid message).
 */
export function encodeRangeResponseBody(message: PbRangeResponse): Buffer {
  const buf = Buffer.allocUnsafe(rangeResponseSize(message));
  const end = writeRangeResponse(buf, 0, message);
  if (end !== buf.length) throw new Error(`proto-codec: wrote ${end} of ${buf.length} bytes`);
  return buf;
}

export const encodePutResponse = framedEncoder(putResponseSize, writePutResponse);
export const encodeRangeResponse = framedEncoder(rangeResponseSize, writeRangeResponse);
export const encodeDeleteRangeResponse = framedEncoder(
  deleteRangeResponseSize,
  writeDeleteRangeResponse,
);
export const encodeTxnResponse = framedEncoder(txnResponseSize, writeTxnResponse);

function codec<Req, Res>(
  decode: (message: Buffer) => Req,
  encode: (response: Res) => Buffer,
): MethodCodec {
  return {
    decodeRequest: decode,
    encodeResponse: (response) => encode(response as Res),
  };
}

export const PUT_CODEC = codec(decodePutRequest, encodePutResponse);
export const RANGE_CODEC = codec(decodeRangeRequest, encodeRangeResponse);
export const DELETE_RANGE_CODEC = codec(decodeDeleteRangeRequest, encodeDeleteRangeResponse);
export const TXN_CODEC = codec(decodeTxnRequest, encodeTxnResponse);

/** The KV methods served with these codecs (describeService's `codecs`). */
export const KV_CODECS: Readonly<Record<string, MethodCodec>> = {
  Put: PUT_CODEC,
  Range: RANGE_CODEC,
  DeleteRange: DELETE_RANGE_CODEC,
  Txn: TXN_CODEC,
};
