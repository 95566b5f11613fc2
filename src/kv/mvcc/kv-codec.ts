/**
 * The backend encoding of a KeyValue (the value under its revision key). Fixed layout, so that
 * the bytes — and therefore hashKv — are identical on every member and backend:
 *
 *   0  createRevision u64 | 8 modRevision u64 | 16 version u64 | 24 lease i64
 *   32 keyLength u32      | 36 key            | valueLength u32 | value
 *
 * A tombstone stores only the key (and its modRevision), as etcd stores KeyValue{Key: key}.
 */
import { Buffer } from 'node:buffer';
import { assert } from '../../util/assert.js';
import { type KeyValue, type LeaseId, NO_LEASE } from '../types.js';
import { readU64, readU64Bytes, writeU64 } from './revision.js';

const FIXED_BYTES = 40;
/** The reused encoding buffer's size; a larger KeyValue gets a buffer of its own. */
const SCRATCH_BYTES = 64 * 1024;

export function encodeKeyValue(kv: KeyValue): Uint8Array {
  const out = new Uint8Array(encodedBytes(kv));
  writeKeyValue(out, new DataView(out.buffer), kv);
  return out;
}

// A Buffer, so that the LMDB backend hands it to lmdb-js without wrapping it again.
const scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
const scratchView = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength);

/**
 * `encodeKeyValue`'s bytes in a reused buffer: valid only until the next call, for a backend
 * put (backends copy what they store). Saves an allocation and a copy per put.
 */
export function encodeKeyValueScratch(kv: KeyValue): Uint8Array {
  const bytes = encodedBytes(kv);
  if (bytes > SCRATCH_BYTES) return encodeKeyValue(kv);
  writeKeyValue(scratch, scratchView, kv);
  return scratch.subarray(0, bytes);
}

function encodedBytes(kv: KeyValue): number {
  return FIXED_BYTES + kv.key.length + kv.value.length;
}

/** The layout above at the start of `out` (`view` over the same bytes). */
function writeKeyValue(out: Uint8Array, view: DataView, kv: KeyValue): void {
  writeU64(view, 0, kv.createRevision);
  writeU64(view, 8, kv.modRevision);
  writeU64(view, 16, kv.version);
  view.setBigInt64(24, kv.lease);
  view.setUint32(32, kv.key.length);
  out.set(kv.key, 36);
  view.setUint32(36 + kv.key.length, kv.value.length);
  out.set(kv.value, FIXED_BYTES + kv.key.length);
}

/** Decodes; `key` and `value` are views into `bytes`, which the caller must not reuse. */
export function decodeKeyValue(bytes: Uint8Array): KeyValue {
  assert(bytes.length >= FIXED_BYTES, 'stored KeyValue too short');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keyLength = view.getUint32(32);
  assert(FIXED_BYTES + keyLength <= bytes.length, 'stored KeyValue key overruns');
  const valueLength = view.getUint32(36 + keyLength);
  assert(FIXED_BYTES + keyLength + valueLength === bytes.length, 'stored KeyValue length');
  return {
    key: bytes.subarray(36, 36 + keyLength),
    createRevision: readU64(view, 0),
    modRevision: readU64(view, 8),
    version: readU64(view, 16),
    lease: view.getBigInt64(24),
    value: bytes.subarray(FIXED_BYTES + keyLength),
  };
}

/**
 * What the key index needs of a stored KeyValue, read in place by `readKeyValueHeader`: the
 * value is never looked at, and the key stays in the stored bytes (`keyStart`..`keyEnd`).
 */
export interface KeyValueHeader {
  createRevision: number;
  modRevision: number;
  version: number;
  lease: LeaseId;
  keyStart: number;
  keyEnd: number;
}

export function newKeyValueHeader(): KeyValueHeader {
  return { createRevision: 0, modRevision: 0, version: 0, lease: NO_LEASE, keyStart: 0, keyEnd: 0 };
}

/**
 * Fills `out` from stored KeyValue `bytes`, with `decodeKeyValue`'s checks, allocating nothing
 * for a key without a lease (a reused `out`, bytes read without a DataView).
 */
export function readKeyValueHeader(bytes: Uint8Array, out: KeyValueHeader): void {
  const length = bytes.length;
  assert(length >= FIXED_BYTES, 'stored KeyValue too short');
  const keyLength = readU32Bytes(bytes, 32);
  assert(FIXED_BYTES + keyLength <= length, 'stored KeyValue key overruns');
  const valueLength = readU32Bytes(bytes, 36 + keyLength);
  assert(FIXED_BYTES + keyLength + valueLength === length, 'stored KeyValue length');
  out.createRevision = readU64Bytes(bytes, 0);
  out.modRevision = readU64Bytes(bytes, 8);
  out.version = readU64Bytes(bytes, 16);
  out.lease = readLease(bytes);
  out.keyStart = 36;
  out.keyEnd = 36 + keyLength;
}

function readU32Bytes(bytes: Uint8Array, offset: number): number {
  return (
    ((bytes[offset]! << 24) |
      (bytes[offset + 1]! << 16) |
      (bytes[offset + 2]! << 8) |
      bytes[offset + 3]!) >>>
    0
  );
}

/** The i64 lease at 24: NO_LEASE without a DataView or BigInt when its bytes are all zero. */
function readLease(bytes: Uint8Array): LeaseId {
  let any = 0;
  for (let i = 24; i < 32; i++) any |= bytes[i]!;
  if (any === 0) return NO_LEASE;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigInt64(24);
}
