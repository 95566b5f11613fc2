/**
 * Where a unary call goes, read from its protobuf bytes without decoding them: the gateway's
 * pass-through (passthrough.ts) forwards the request unchanged, so routing reads only the few
 * fields it needs with a field scan:
 *
 *   KV.Range            serializable (field 7)
 *   KV.Txn              success (2) and failure (3) RequestOps: read-only when every op is a
 *                       request_range (1) or a read-only nested request_txn (4)
 *   Maintenance.Alarm   action (1): GET (0) is idempotent
 *
 * Same answers as gateway.ts's routeOf on the decoded request (test/proxy/raw-route.test.ts
 * checks that on random requests). Bytes that do not scan (truncated, bad wire type) route as
 * a write to the leader, which answers them with the decoding error a member gives.
 */
import type { Metadata } from '../api/grpc/metadata.js';
import type { ServiceKey } from '../api/proto.js';
import { METADATA_KEYS } from '../api/request-options.js';
import type { Route } from './dispatch.js';

/** Txns nested deeper than this are sent to the leader (as routeOf does). */
export const TXN_SCAN_DEPTH_MAX = 8;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

const RANGE_SERIALIZABLE_FIELD = 7;
const TXN_SUCCESS_FIELD = 2;
const TXN_FAILURE_FIELD = 3;
const OP_RANGE_FIELD = 1;
const OP_TXN_FIELD = 4;
const ALARM_ACTION_FIELD = 1;

/** Thrown inside a scan for bytes that are not a protobuf message; never escapes this module. */
class ScanError extends Error {}

/** A cursor over one message (or a sub-message: [pos, end)). */
class Scan {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint's low 32 bits (tags, lengths, bools, enums); 10-byte varints allowed. */
  varint(): number {
    let value = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ScanError();
      const b = this.buf[this.pos++]!;
      if (i < 5) value = (value | ((b & 127) << (i * 7))) >>> 0;
      if (b < 128) return value;
    }
    throw new ScanError();
  }

  /** A length-delimited field's [start, end), the cursor moved past it. */
  span(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (length > this.end - start) throw new ScanError();
    this.pos = start + length;
    return [start, this.pos];
  }

  skip(wireType: number): void {
    if (wireType === WIRE_VARINT) this.varint();
    else if (wireType === WIRE_LENGTH) this.span();
    else if (wireType === WIRE_FIXED64) this.advance(8);
    else if (wireType === WIRE_FIXED32) this.advance(4);
    else throw new ScanError(); // groups (3, 4) and 6, 7: etcd's messages have none
  }

  private advance(bytes: number): void {
    if (bytes > this.end - this.pos) throw new ScanError();
    this.pos += bytes;
  }
}

/** The last value of a varint field (protobuf: the last of a repeated singular field wins). */
function lastVarint(s: Scan, field: number): number {
  let value = 0;
  while (!s.done) {
    const tag = s.varint();
    if (tag >>> 3 === field && (tag & 7) === WIRE_VARINT) value = s.varint();
    else s.skip(tag & 7);
  }
  return value;
}

/** RangeRequest.serializable. */
export function rangeSerializable(body: Uint8Array): boolean {
  return lastVarint(new Scan(body, 0, body.length), RANGE_SERIALIZABLE_FIELD) !== 0;
}

/**
 * The ranges of a read-only txn as counts: how many, how many serializable; null when an op
 * writes (or sets none of its oneof, or nests too deep).
 */
function txnRanges(s: Scan, depth: number): { ranges: number; serializable: number } | null {
  let ranges = 0;
  let serializable = 0;
  while (!s.done) {
    const tag = s.varint();
    const field = tag >>> 3;
    if ((field !== TXN_SUCCESS_FIELD && field !== TXN_FAILURE_FIELD) || (tag & 7) !== WIRE_LENGTH) {
      s.skip(tag & 7);
      continue;
    }
    const [start, end] = s.span();
    const op = requestOp(new Scan(s.buf, start, end), depth);
    if (op === null) return null;
    ranges += op.ranges;
    serializable += op.serializable;
  }
  return { ranges, serializable };
}

/** One RequestOp: its oneof is the last of fields 1-4 set (protobuf's rule for a oneof). */
function requestOp(s: Scan, depth: number): { ranges: number; serializable: number } | null {
  let set = 0;
  let start = 0;
  let end = 0;
  while (!s.done) {
    const tag = s.varint();
    const field = tag >>> 3;
    if (field >= OP_RANGE_FIELD && field <= OP_TXN_FIELD && (tag & 7) === WIRE_LENGTH) {
      set = field;
      [start, end] = s.span();
    } else s.skip(tag & 7);
  }
  if (set === OP_RANGE_FIELD) {
    const isSerializable = lastVarint(new Scan(s.buf, start, end), RANGE_SERIALIZABLE_FIELD);
    return { ranges: 1, serializable: isSerializable !== 0 ? 1 : 0 };
  }
  if (set === OP_TXN_FIELD && depth < TXN_SCAN_DEPTH_MAX) {
    return txnRanges(new Scan(s.buf, start, end), depth + 1);
  }
  return null; // a put, a delete, a txn nested too deep, or no op at all
}

/** The write carries a request id: applied once however often it is sent (server/dedupe.ts). */
export function hasRequestId(metadata: Metadata): boolean {
  return metadata.get(METADATA_KEYS.requestId).length > 0;
}

/** The caller's metadata lets any member answer (serializable, or bounded staleness). */
export function staleReadAllowed(metadata: Metadata): boolean {
  const c = metadata.get(METADATA_KEYS.consistency)[0];
  if (typeof c === 'string') {
    const v = c.trim().toLowerCase();
    return v === 'serializable' || v.startsWith('bounded:');
  }
  return metadata.get(METADATA_KEYS.maxStalenessMs).length > 0;
}

const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set([
  'lease.LeaseTimeToLive',
  'lease.LeaseLeases',
  'cluster.MemberList',
  'maintenance.Status',
  'maintenance.Hash',
  'maintenance.HashKV',
]);

/** Where a unary call goes, and whether it may be sent twice, from its request bytes. */
export function routeOfBytes(
  service: ServiceKey,
  method: string,
  body: Uint8Array,
  metadata: Metadata,
): { route: Route; idempotent: boolean } {
  try {
    if (service === 'kv' && method === 'Range') {
      const read = rangeSerializable(body) || staleReadAllowed(metadata);
      return { route: read ? 'read' : 'leader', idempotent: true };
    }
    if (service === 'kv' && method === 'Txn') {
      const t = txnRanges(new Scan(body, 0, body.length), 0);
      if (t === null) return { route: 'leader', idempotent: hasRequestId(metadata) };
      const serializable = t.ranges > 0 && t.serializable === t.ranges;
      return {
        route: serializable || staleReadAllowed(metadata) ? 'read' : 'leader',
        idempotent: true,
      };
    }
    if (service === 'maintenance' && method === 'Alarm') {
      const action = lastVarint(new Scan(body, 0, body.length), ALARM_ACTION_FIELD);
      return { route: 'leader', idempotent: action === 0 };
    }
  } catch (error) {
    if (!(error instanceof ScanError)) throw error;
    return { route: 'leader', idempotent: false };
  }
  const idempotent =
    service === 'health' ||
    IDEMPOTENT_METHODS.has(`${service}.${method}`) ||
    (service === 'kv' && (method === 'Put' || method === 'DeleteRange') && hasRequestId(metadata));
  return { route: 'leader', idempotent };
}
