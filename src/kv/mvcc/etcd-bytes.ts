/**
 * The bytes etcd keeps in its "key" bucket for a revision (mvcc/revision.go, a marshalled
 * mvccpb.KeyValue), made from tandem's own (revision.ts, kv-codec.ts): etcd's HashKV is a CRC
 * over exactly these, so hashing them gives the hash etcd gives for the same history.
 */
import { assert } from '../../util/assert.js';
import type { KeyValue } from '../types.js';
import { bytesToRevision, isTombstone } from './revision.js';

const ETCD_REVISION_BYTES = 17; // main u64, '_', sub u64
const ETCD_REVISION_SEPARATOR = 0x5f;
const ETCD_TOMBSTONE_MARK = 0x74; // 't'

/** etcd's revision key (revToBytes, plus appendMarkTombstone for a deletion). */
export function etcdRevisionKey(revisionKey: Uint8Array): Uint8Array {
  const rev = bytesToRevision(revisionKey);
  const tombstone = isTombstone(revisionKey);
  const out = new Uint8Array(ETCD_REVISION_BYTES + (tombstone ? 1 : 0));
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(rev.main));
  out[8] = ETCD_REVISION_SEPARATOR;
  view.setBigUint64(9, BigInt(rev.sub));
  if (tombstone) out[ETCD_REVISION_BYTES] = ETCD_TOMBSTONE_MARK;
  return out;
}

/** Protobuf varint of a non-negative safe integer, or of an int64 as two's complement. */
function varint(out: number[], n: bigint): void {
  let v = BigInt.asUintN(64, n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

function bytesField(out: number[], tag: number, bytes: Uint8Array): void {
  if (bytes.length === 0) return;
  out.push(tag);
  varint(out, BigInt(bytes.length));
  for (const b of bytes) out.push(b);
}

function intField(out: number[], tag: number, n: bigint): void {
  if (n === 0n) return;
  out.push(tag);
  varint(out, n);
}

/**
 * mvccpb.KeyValue as etcd marshals it (fields in number order, zero values omitted); a deletion
 * is stored as KeyValue{Key: key} alone.
 */
export function etcdKeyValueBytes(kv: KeyValue, tombstone: boolean): Uint8Array {
  assert(kv.key.length > 0, 'a stored KeyValue has a key');
  const out: number[] = [];
  bytesField(out, 0x0a, kv.key);
  if (!tombstone) {
    intField(out, 0x10, BigInt(kv.createRevision));
    intField(out, 0x18, BigInt(kv.modRevision));
    intField(out, 0x20, BigInt(kv.version));
    bytesField(out, 0x2a, kv.value);
    intField(out, 0x30, kv.lease);
  }
  return Uint8Array.from(out);
}
