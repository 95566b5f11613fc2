/**
 * The auth store in etcd 3.4's buckets (server/auth/store.go), so that a snapshot carries users,
 * roles and the auth state between etcd and tandem:
 *
 *   auth       authRevision -> the store's revision, u64 big-endian (etcd's commitRevision);
 *              authEnabled -> [1] while auth is on. etcd writes [1] at AuthEnable and [0] at
 *              AuthDisable and nothing before either; both systems treat anything but [1] as
 *              off, and tandem does not remember whether auth was ever on, so it writes the key
 *              only while auth is on (a store never enabled has none, as on etcd)
 *   authUsers  name -> authpb.User {1 name bytes | 2 password bytes | 3 roles repeated string |
 *                                   4 options UserAddOptions {1 no_password bool}}
 *   authRoles  name -> authpb.Role {1 name bytes | 2 keyPermission repeated Permission
 *                                   {1 permType enum READ=0 WRITE=1 READWRITE=2 | 2 key bytes |
 *                                    3 range_end bytes}}
 *
 * `password` holds the stored hash's bytes verbatim: tandem's scrypt record
 * (src/api/auth-password.ts) or etcd's bcrypt hash. Neither system checks the other's, so a
 * migrated user authenticates with a password only after it is set again (`tandem restore`
 * names them); a snapshot back into the system that wrote it keeps every password. Carrying
 * the hash rather than dropping it keeps a round trip (tandem → etcd → tandem) lossless, and a
 * foreign hash can never match a password, so it opens nothing. `options` is always written,
 * as etcd 3.4's UserAdd always sets it.
 */
import { KvError } from '../errors.js';
import { PbWriter, readFields } from '../mvcc/etcd-codec.js';
import { type KeyPermission, PermType } from './perm-ranges.js';
import type { AuthRole, AuthUser } from './store.js';

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** etcd's revBytesLen for authRevision. */
export const ETCD_AUTH_REVISION_BYTES = 8;
export const ETCD_AUTH_KEYS = {
  revision: utf8.encode('authRevision'),
  enabled: utf8.encode('authEnabled'),
} as const;
/** etcd's authEnabled value ([0] is authDisabled). */
export const ETCD_AUTH_ENABLED = Uint8Array.of(1);

export function encodeEtcdAuthRevision(revision: number): Uint8Array {
  const out = new Uint8Array(ETCD_AUTH_REVISION_BYTES);
  new DataView(out.buffer).setBigUint64(0, BigInt(revision));
  return out;
}

export function decodeEtcdAuthRevision(bytes: Uint8Array): number {
  if (bytes.length !== ETCD_AUTH_REVISION_BYTES) {
    throw corrupt('auth', `authRevision of ${bytes.length} bytes`);
  }
  const rev = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0);
  if (rev > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt('auth', `authRevision ${rev}`);
  return Number(rev);
}

export function encodeEtcdUser(user: AuthUser): Uint8Array {
  const w = new PbWriter();
  w.bytes(1, utf8.encode(user.name));
  w.bytes(2, Buffer.from(user.passwordHash, 'latin1'));
  for (const role of user.roles) w.always(3, utf8.encode(role));
  const options = new PbWriter();
  options.varint(1, user.noPassword ? 1n : 0n);
  w.always(4, options.finish());
  return w.finish();
}

export function decodeEtcdUser(bytes: Uint8Array): AuthUser {
  const what = 'authpb.User';
  let name = '';
  let passwordHash = '';
  const roles: string[] = [];
  let noPassword = false;
  readFields(bytes, what, (field, v) => {
    if (!(v instanceof Uint8Array)) return;
    if (field === 1) name = text(v, what, 'name');
    // Bytes verbatim (latin1 maps each byte to one char and back).
    else if (field === 2) passwordHash = Buffer.from(v).toString('latin1');
    else if (field === 3) roles.push(text(v, what, 'roles'));
    else if (field === 4) {
      readFields(v, 'authpb.UserAddOptions', (f, o) => {
        if (f === 1 && typeof o === 'bigint') noPassword = o !== 0n;
      });
    }
  });
  if (name.length === 0) throw corrupt(what, 'empty name');
  return { name, passwordHash: noPassword ? '' : passwordHash, roles, noPassword };
}

export function encodeEtcdRole(role: AuthRole): Uint8Array {
  const w = new PbWriter();
  w.bytes(1, utf8.encode(role.name));
  for (const perm of role.perms) {
    const p = new PbWriter();
    p.varint(1, BigInt(perm.permType));
    p.bytes(2, perm.key);
    p.bytes(3, perm.rangeEnd);
    w.always(2, p.finish());
  }
  return w.finish();
}

export function decodeEtcdRole(bytes: Uint8Array): AuthRole {
  const what = 'authpb.Role';
  let name = '';
  const perms: KeyPermission[] = [];
  readFields(bytes, what, (field, v) => {
    if (!(v instanceof Uint8Array)) return;
    if (field === 1) name = text(v, what, 'name');
    else if (field === 2) perms.push(decodePermission(v));
  });
  if (name.length === 0) throw corrupt(what, 'empty name');
  return { name, perms };
}

function decodePermission(bytes: Uint8Array): KeyPermission {
  const what = 'authpb.Permission';
  let permType: PermType = PermType.Read;
  let key = new Uint8Array(0);
  let rangeEnd = new Uint8Array(0);
  readFields(bytes, what, (field, v) => {
    if (field === 1 && typeof v === 'bigint') {
      if (v > 2n) throw corrupt(what, `permType ${v}`);
      permType = Number(v) as PermType;
    } else if (field === 2 && v instanceof Uint8Array) key = Uint8Array.from(v);
    else if (field === 3 && v instanceof Uint8Array) rangeEnd = Uint8Array.from(v);
  });
  return { permType, key, rangeEnd };
}

function text(bytes: Uint8Array, what: string, field: string): string {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    throw corrupt(what, `${field} is not UTF-8`);
  }
}

function corrupt(what: string, detail: string): KvError {
  return new KvError('SNAPSHOT_CORRUPT', `${what}: ${detail}`);
}
