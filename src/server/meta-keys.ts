/**
 * Where the state machine keeps its side state in the store's meta bucket (under the store's
 * EXTENSION_META_PREFIX), shared by the state machine and the etcd snapshot converter.
 *
 *   x:registry         msgpack MemberRegistry snapshot
 *   x:lease/<id>       msgpack [ttlSeconds, remainingTtlSeconds]  (id in decimal)
 *   x:lease-generated  msgpack count of generated lease ids
 *   x:alarms           AlarmSet encoding
 *   x:auth             the auth store (AuthStore.encode: users, roles, enabled, revision)
 *   x:dedupe/<user>\0<id>  an applied request id (dedupe.ts): msgpack [index, digest, answer]
 */
import { EXTENSION_META_PREFIX } from '../kv/mvcc/store.js';
import type { LeaseId } from '../kv/types.js';
import { concatBytes } from '../util/bytes.js';

const enc = new TextEncoder();

export const META_REGISTRY = concatBytes(EXTENSION_META_PREFIX, enc.encode('registry'));
export const META_LEASE_PREFIX = concatBytes(EXTENSION_META_PREFIX, enc.encode('lease/'));
export const META_LEASE_IDS = concatBytes(EXTENSION_META_PREFIX, enc.encode('lease-generated'));
export const META_ALARMS = concatBytes(EXTENSION_META_PREFIX, enc.encode('alarms'));
export const META_AUTH = concatBytes(EXTENSION_META_PREFIX, enc.encode('auth'));
export const META_DEDUPE_PREFIX = concatBytes(EXTENSION_META_PREFIX, enc.encode('dedupe/'));

export function leaseKey(id: LeaseId): Uint8Array {
  return concatBytes(META_LEASE_PREFIX, enc.encode(id.toString()));
}

/** The lease id of a `leaseKey`, or null if `key` is not one. */
export function leaseIdOfKey(key: Uint8Array): LeaseId | null {
  const text = new TextDecoder().decode(key.subarray(META_LEASE_PREFIX.length));
  return /^[0-9]{1,19}$/.test(text) ? BigInt(text) : null;
}
