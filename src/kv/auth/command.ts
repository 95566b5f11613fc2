/**
 * AuthOps and Authenticate as log entry payloads (msgpack): [header, op name, ...fields].
 * A payload that does not decode is a no-op on every member.
 */
import { pack, unpack } from 'msgpackr';
import type { PermType } from './perm-ranges.js';
import type { AuthHeader, AuthOp } from './store.js';

export type AuthCommand =
  | { readonly kind: 'op'; readonly header: AuthHeader; readonly op: AuthOp }
  /** etcd's InternalAuthenticateRequest: the password was checked before proposing. */
  | { readonly kind: 'authenticate'; readonly name: string; readonly tokenPrefix: string };

export function encodeAuthCommand(command: AuthCommand): Uint8Array {
  if (command.kind === 'authenticate') {
    return pack(['authenticate', command.name, command.tokenPrefix]);
  }
  const { header, op } = command;
  return pack(['op', header.username, header.revision, op]);
}

export function decodeAuthCommand(payload: Uint8Array): AuthCommand | null {
  let value: unknown;
  try {
    value = unpack(payload);
  } catch {
    return null;
  }
  if (!Array.isArray(value)) return null;
  if (value[0] === 'authenticate' && typeof value[1] === 'string' && typeof value[2] === 'string') {
    return { kind: 'authenticate', name: value[1], tokenPrefix: value[2] };
  }
  if (value[0] !== 'op' || typeof value[1] !== 'string' || typeof value[2] !== 'number')
    return null;
  const op = value[3] as AuthOp | null;
  if (!isWellFormed(op)) return null;
  if (op.op === 'roleGrantPermission' && op.perm !== null) {
    const p = op.perm as { permType: PermType; key: Uint8Array; rangeEnd: Uint8Array };
    return {
      kind: 'op',
      header: { username: value[1], revision: value[2] },
      op: { ...op, perm: { permType: p.permType, key: bytes(p.key), rangeEnd: bytes(p.rangeEnd) } },
    };
  }
  if (op.op === 'roleRevokePermission') {
    return {
      kind: 'op',
      header: { username: value[1], revision: value[2] },
      op: { ...op, key: bytes(op.key), rangeEnd: bytes(op.rangeEnd) },
    };
  }
  return { kind: 'op', header: { username: value[1], revision: value[2] }, op };
}

const STRING_FIELDS: Readonly<Record<AuthOp['op'], readonly string[]>> = {
  authEnable: [],
  authDisable: [],
  userAdd: ['name', 'passwordHash'],
  userDelete: ['name'],
  userChangePassword: ['name', 'passwordHash'],
  userGrantRole: ['user', 'role'],
  userRevokeRole: ['name', 'role'],
  userGet: ['name'],
  userList: [],
  roleAdd: ['name'],
  roleDelete: ['role'],
  roleGet: ['role'],
  roleList: [],
  roleGrantPermission: ['name'],
  roleRevokePermission: ['role'],
};

/** The op's fields have the types the store expects (anything else is a no-op entry). */
function isWellFormed(op: unknown): op is AuthOp {
  if (op === null || typeof op !== 'object') return false;
  const o = op as Record<string, unknown>;
  if (typeof o.op !== 'string' || !Object.hasOwn(STRING_FIELDS, o.op)) return false;
  for (const f of STRING_FIELDS[o.op as AuthOp['op']]) if (typeof o[f] !== 'string') return false;
  if (o.op === 'userAdd' && typeof o.noPassword !== 'boolean') return false;
  if (o.op === 'roleRevokePermission')
    return o.key instanceof Uint8Array && o.rangeEnd instanceof Uint8Array;
  if (o.op === 'roleGrantPermission' && o.perm !== null) {
    const p = o.perm as Record<string, unknown> | undefined;
    if (p === undefined || typeof p !== 'object') return false;
    return (
      (p.permType === 0 || p.permType === 1 || p.permType === 2) &&
      p.key instanceof Uint8Array &&
      p.rangeEnd instanceof Uint8Array
    );
  }
  return true;
}

function bytes(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? Uint8Array.from(v) : new Uint8Array(0);
}
