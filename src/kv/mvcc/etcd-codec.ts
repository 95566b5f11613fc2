/**
 * The protobuf messages etcd stores in its bbolt buckets, encoded as gogoproto encodes them
 * (fields in number order, zero values left out), and decoded leniently (unknown fields
 * skipped), so that tandem writes and reads etcd's own database files:
 *
 *   mvccpb.KeyValue  1 key bytes | 2 create_revision int64 | 3 mod_revision int64 |
 *                    4 version int64 | 5 value bytes | 6 lease int64      ("key" bucket)
 *   leasepb.Lease    1 ID int64 | 2 TTL int64 | 3 RemainingTTL int64     ("lease" bucket)
 *
 * Bad bytes are a KvError SNAPSHOT_CORRUPT naming the message.
 *
 * And etcd's revision keys (mvcc/revision.go revToBytes): 8-byte main, '_', 8-byte sub, plus a
 * 't' mark on a deletion; tandem's own (revision.ts) are the same bytes without the '_'. A key
 * bucket entry in etcd's bytes is what a snapshot file holds and what HashKV hashes.
 */
import { KvError } from '../errors.js';
import type { KeyValue } from '../types.js';
import { MARKED_REVISION_BYTES, REVISION_BYTES, TOMBSTONE_MARK } from './revision.js';

/** etcd's revBytesLen: main, a '_' separator, sub. */
export const ETCD_REVISION_BYTES = 17;
const ETCD_REVISION_SEPARATOR = 0x5f; // '_'

/** etcd's revision key for tandem's (`revisionKey`, marked when it is a deletion). */
export function etcdRevisionKey(revisionKey: Uint8Array): Uint8Array {
  const marked = revisionKey.length === MARKED_REVISION_BYTES;
  const out = new Uint8Array(ETCD_REVISION_BYTES + (marked ? 1 : 0));
  out.set(revisionKey.subarray(0, 8), 0);
  out[8] = ETCD_REVISION_SEPARATOR;
  out.set(revisionKey.subarray(8, REVISION_BYTES), 9);
  if (marked) out[ETCD_REVISION_BYTES] = TOMBSTONE_MARK;
  return out;
}

/** tandem's revision key for etcd's `etcdKey`, or null when it is not a revision key. */
export function tandemRevisionKey(etcdKey: Uint8Array): Uint8Array | null {
  const marked = etcdKey.length === ETCD_REVISION_BYTES + 1;
  if (
    (etcdKey.length !== ETCD_REVISION_BYTES && !marked) ||
    etcdKey[8] !== ETCD_REVISION_SEPARATOR ||
    (marked && etcdKey[ETCD_REVISION_BYTES] !== TOMBSTONE_MARK)
  ) {
    return null;
  }
  const out = new Uint8Array(marked ? MARKED_REVISION_BYTES : REVISION_BYTES);
  out.set(etcdKey.subarray(0, 8), 0);
  out.set(etcdKey.subarray(9, ETCD_REVISION_BYTES), 8);
  if (marked) out[REVISION_BYTES] = TOMBSTONE_MARK;
  return out;
}

/** A key bucket value as etcd stores it: the KeyValue, or the key alone for a deletion. */
export function etcdStoredValue(kv: KeyValue, tombstone: boolean): Uint8Array {
  return tombstone ? encodeEtcdTombstone(kv.key) : encodeEtcdKeyValue(kv);
}

export interface EtcdLease {
  readonly id: bigint;
  readonly ttlSeconds: number;
  readonly remainingTtlSeconds: number;
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;
const U64 = 1n << 64n;
const VARINT_BYTES_MAX = 10;

/** A protobuf message writer in gogoproto's order (also used by kv/auth/etcd-codec.ts). */
export class PbWriter {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  varint(field: number, n: bigint): void {
    if (n === 0n) return;
    this.tag(field, WIRE_VARINT);
    this.rawVarint(n < 0n ? n + U64 : n);
  }

  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.tag(field, WIRE_BYTES);
    this.rawVarint(BigInt(b.length));
    this.push(b);
  }

  /**
   * A length-delimited field written even when empty: an element of a repeated field, or a set
   * sub-message (gogoproto writes a non-nil empty message as its tag and a zero length).
   */
  always(field: number, b: Uint8Array): void {
    this.tag(field, WIRE_BYTES);
    this.rawVarint(BigInt(b.length));
    this.push(b);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  private tag(field: number, wire: number): void {
    this.rawVarint(BigInt((field << 3) | wire));
  }

  private rawVarint(n: bigint): void {
    const out: number[] = [];
    while (n >= 0x80n) {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    out.push(Number(n));
    this.push(Uint8Array.from(out));
  }

  private push(b: Uint8Array): void {
    this.parts.push(b);
    this.size += b.length;
  }
}

/** Visits each field of a message: varints as bigint, length-delimited as a view. */
export function readFields(
  bytes: Uint8Array,
  what: string,
  visit: (field: number, value: bigint | Uint8Array) => void,
): void {
  let at = 0;
  const varint = (): bigint => {
    let n = 0n;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (at >= bytes.length) throw corrupt(what, 'truncated varint');
      const b = bytes[at++]!;
      n |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (b < 0x80) return n;
    }
    throw corrupt(what, 'varint too long');
  };
  while (at < bytes.length) {
    const tag = varint();
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (field === 0) throw corrupt(what, 'field 0');
    if (wire === WIRE_VARINT) visit(field, varint());
    else if (wire === WIRE_BYTES) {
      const length = Number(varint());
      if (at + length > bytes.length) throw corrupt(what, `field ${field} overruns`);
      visit(field, bytes.subarray(at, at + length));
      at += length;
    } else if (wire === WIRE_FIXED64) at += 8;
    else if (wire === WIRE_FIXED32) at += 4;
    else throw corrupt(what, `wire type ${wire}`);
    if (at > bytes.length) throw corrupt(what, 'truncated');
  }
}

function signed(n: bigint): bigint {
  return n >= 1n << 63n ? n - U64 : n;
}

function safeNumber(n: bigint, what: string, field: string): number {
  const s = signed(n);
  if (s < 0n || s > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(what, `${field} = ${s}`);
  return Number(s);
}

export function encodeEtcdKeyValue(kv: KeyValue): Uint8Array {
  const w = new PbWriter();
  w.bytes(1, kv.key);
  w.varint(2, BigInt(kv.createRevision));
  w.varint(3, BigInt(kv.modRevision));
  w.varint(4, BigInt(kv.version));
  w.bytes(5, kv.value);
  w.varint(6, kv.lease);
  return w.finish();
}

/** etcd's tombstone value: the key alone (kvstore_txn.go's delete). */
export function encodeEtcdTombstone(key: Uint8Array): Uint8Array {
  const w = new PbWriter();
  w.bytes(1, key);
  return w.finish();
}

export function decodeEtcdKeyValue(bytes: Uint8Array): KeyValue {
  const what = 'mvccpb.KeyValue';
  let key: Uint8Array = new Uint8Array(0);
  let value: Uint8Array = new Uint8Array(0);
  let createRevision = 0;
  let modRevision = 0;
  let version = 0;
  let lease = 0n;
  readFields(bytes, what, (field, v) => {
    if (field === 1 && v instanceof Uint8Array) key = v;
    else if (field === 5 && v instanceof Uint8Array) value = v;
    else if (typeof v === 'bigint') {
      if (field === 2) createRevision = safeNumber(v, what, 'create_revision');
      else if (field === 3) modRevision = safeNumber(v, what, 'mod_revision');
      else if (field === 4) version = safeNumber(v, what, 'version');
      else if (field === 6) lease = signed(v);
    }
  });
  if (key.length === 0) throw corrupt(what, 'empty key');
  return { key, value, createRevision, modRevision, version, lease };
}

export function encodeEtcdLease(lease: EtcdLease): Uint8Array {
  const w = new PbWriter();
  w.varint(1, lease.id);
  w.varint(2, BigInt(lease.ttlSeconds));
  w.varint(3, BigInt(lease.remainingTtlSeconds));
  return w.finish();
}

export function decodeEtcdLease(bytes: Uint8Array): EtcdLease {
  const what = 'leasepb.Lease';
  let id = 0n;
  let ttlSeconds = 0;
  let remainingTtlSeconds = 0;
  readFields(bytes, what, (field, v) => {
    if (typeof v !== 'bigint') return;
    if (field === 1) id = signed(v);
    else if (field === 2) ttlSeconds = safeNumber(v, what, 'TTL');
    else if (field === 3) remainingTtlSeconds = safeNumber(v, what, 'RemainingTTL');
  });
  if (id <= 0n) throw corrupt(what, `ID ${id}`);
  return { id, ttlSeconds, remainingTtlSeconds };
}

function corrupt(what: string, detail: string): KvError {
  return new KvError('SNAPSHOT_CORRUPT', `${what}: ${detail}`);
}
