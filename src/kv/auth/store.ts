/**
 * etcd's auth store (server/auth/store.go) as pure replicated state: users, roles, the enabled
 * flag and the auth revision, changed only by applying AuthOps (a log entry each), so every
 * member holds the same store. Passwords arrive already hashed (the API edge hashes before
 * proposing); tokens are not here (they are per member, see simple-tokens.ts).
 *
 * Semantics follow etcd 3.4: every change bumps the revision except AuthEnable (etcd does not
 * commit a revision there); the root user holding the root role may do everything; AuthEnable
 * needs them; root may not be deleted or lose root while auth is on. Management ops need root
 * once auth is on (etcd's needAdminPermission, checked at apply); UserGet and RoleGet are also
 * allowed for the user itself or a holder of the role.
 */
import { pack, unpack } from 'msgpackr';
import { assert } from '../../util/assert.js';
import { bytesEqual, compareBytes } from '../../util/bytes.js';
import { KvError } from '../errors.js';
import { AuthError } from './errors.js';
import {
  isValidPermissionRange,
  type KeyPermission,
  PermType,
  UserPermissions,
} from './perm-ranges.js';

export const ROOT_USER = 'root';
export const ROOT_ROLE = 'root';
/** Users and roles at most, each (a store past this refuses adds with INVALID_AUTH_MGMT). */
export const AUTH_ENTRIES_MAX = 10_000;
/** Permissions of one role at most. */
export const ROLE_PERMISSIONS_MAX = 10_000;

export interface AuthUser {
  readonly name: string;
  /** The slow hash (src/api/auth-password.ts's format); empty for a no-password user. */
  readonly passwordHash: string;
  /** Sorted (etcd keeps them sorted and binary-searches for root). */
  readonly roles: readonly string[];
  readonly noPassword: boolean;
}

export interface AuthRole {
  readonly name: string;
  /** Sorted by key (etcd's permSlice). */
  readonly perms: readonly KeyPermission[];
}

/** The store as data: what etcd's auth, authUsers and authRoles buckets hold. */
export interface AuthState {
  readonly enabled: boolean;
  readonly revision: number;
  /** By name (Go's byte order). */
  readonly users: readonly AuthUser[];
  readonly roles: readonly AuthRole[];
}

/** Who asks: a request header's username and the auth revision it was checked under. */
export interface AuthHeader {
  readonly username: string;
  /** 0: no credentials. */
  readonly revision: number;
}

export const NO_CREDENTIALS: AuthHeader = Object.freeze({ username: '', revision: 0 });

export type AuthOp =
  | { readonly op: 'authEnable' }
  | { readonly op: 'authDisable' }
  | {
      readonly op: 'userAdd';
      readonly name: string;
      readonly passwordHash: string;
      readonly noPassword: boolean;
    }
  | { readonly op: 'userDelete'; readonly name: string }
  | { readonly op: 'userChangePassword'; readonly name: string; readonly passwordHash: string }
  | { readonly op: 'userGrantRole'; readonly user: string; readonly role: string }
  | { readonly op: 'userRevokeRole'; readonly name: string; readonly role: string }
  | { readonly op: 'userGet'; readonly name: string }
  | { readonly op: 'userList' }
  | { readonly op: 'roleAdd'; readonly name: string }
  | { readonly op: 'roleDelete'; readonly role: string }
  | { readonly op: 'roleGet'; readonly role: string }
  | { readonly op: 'roleList' }
  | {
      readonly op: 'roleGrantPermission';
      readonly name: string;
      readonly perm: KeyPermission | null;
    }
  | {
      readonly op: 'roleRevokePermission';
      readonly role: string;
      readonly key: Uint8Array;
      readonly rangeEnd: Uint8Array;
    };

/** What an applied op answers (gets and lists carry data; the rest nothing). */
export type AuthOpResult =
  | { readonly kind: 'ok' }
  | { readonly kind: 'userGet'; readonly roles: readonly string[] }
  | { readonly kind: 'names'; readonly names: readonly string[] }
  | { readonly kind: 'roleGet'; readonly perms: readonly KeyPermission[] };

/** What the management ops need (etcd's needAdminPermission). */
const ADMIN_OPS: ReadonlySet<AuthOp['op']> = new Set([
  'authEnable',
  'authDisable',
  'userAdd',
  'userDelete',
  'userChangePassword',
  'userGrantRole',
  'userRevokeRole',
  'roleAdd',
  'roleGrantPermission',
  'roleRevokePermission',
  'roleDelete',
  'userList',
  'roleList',
]);

/** Whether an op changes the store (the others are reads that go through the log, as etcd's). */
export function isAuthWrite(op: AuthOp): boolean {
  return !(
    op.op === 'userGet' ||
    op.op === 'userList' ||
    op.op === 'roleGet' ||
    op.op === 'roleList'
  );
}

export class AuthStore {
  private enabledFlag = false;
  /** etcd starts at 1 (a fresh store commits one revision). */
  private rev = 1;
  private readonly users = new Map<string, AuthUser>();
  private readonly roles = new Map<string, AuthRole>();
  /** etcd's rangePermCache, rebuilt on every change. */
  private permCache = new Map<string, UserPermissions>();
  /** Runs after an applied op with the users whose tokens must go (deleted, new password). */
  onUserInvalidated: ((name: string) => void) | null = null;

  get enabled(): boolean {
    return this.enabledFlag;
  }

  get revision(): number {
    return this.rev;
  }

  user(name: string): AuthUser | undefined {
    return this.users.get(name);
  }

  role(name: string): AuthRole | undefined {
    return this.roles.get(name);
  }

  /** Applies one op as the user in `header`; throws AuthError with the store unchanged. */
  apply(op: AuthOp, header: AuthHeader): AuthOpResult {
    if (ADMIN_OPS.has(op.op)) this.checkAdmin(header);
    const result = this.run(op, header);
    if (isAuthWrite(op)) this.permCache = this.buildPermCache();
    return result;
  }

  private run(op: AuthOp, header: AuthHeader): AuthOpResult {
    switch (op.op) {
      case 'authEnable':
        return this.enable();
      case 'authDisable':
        if (this.enabledFlag) {
          this.enabledFlag = false;
          this.rev++;
        }
        return OK;
      case 'userAdd':
        return this.userAdd(op.name, op.passwordHash, op.noPassword);
      case 'userDelete': {
        if (this.enabledFlag && op.name === ROOT_USER) throw new AuthError('INVALID_AUTH_MGMT');
        this.mustUser(op.name);
        this.users.delete(op.name);
        this.rev++;
        this.onUserInvalidated?.(op.name);
        return OK;
      }
      case 'userChangePassword': {
        const user = this.mustUser(op.name);
        this.users.set(op.name, { ...user, passwordHash: op.passwordHash });
        this.rev++;
        this.onUserInvalidated?.(op.name);
        return OK;
      }
      case 'userGrantRole':
        return this.userGrantRole(op.user, op.role);
      case 'userRevokeRole':
        return this.userRevokeRole(op.name, op.role);
      case 'userGet': {
        this.checkSelfOrAdmin(header, () => header.username === op.name);
        return { kind: 'userGet', roles: this.mustUser(op.name).roles };
      }
      case 'userList':
        return { kind: 'names', names: sortedKeys(this.users) };
      case 'roleAdd': {
        if (op.name.length === 0) throw new AuthError('ROLE_EMPTY');
        if (this.roles.has(op.name)) throw new AuthError('ROLE_ALREADY_EXIST');
        if (this.roles.size >= AUTH_ENTRIES_MAX) throw new AuthError('INVALID_AUTH_MGMT');
        this.roles.set(op.name, { name: op.name, perms: [] });
        this.rev++;
        return OK;
      }
      case 'roleDelete':
        return this.roleDelete(op.role);
      case 'roleGet': {
        this.checkSelfOrAdmin(
          header,
          () => this.users.get(header.username)?.roles.includes(op.role) === true,
        );
        const role = this.roles.get(op.role);
        if (role === undefined) throw new AuthError('ROLE_NOT_FOUND');
        return { kind: 'roleGet', perms: role.perms };
      }
      case 'roleList':
        return { kind: 'names', names: sortedKeys(this.roles) };
      case 'roleGrantPermission':
        return this.roleGrantPermission(op.name, op.perm);
      case 'roleRevokePermission': {
        const role = this.roles.get(op.role);
        if (role === undefined) throw new AuthError('ROLE_NOT_FOUND');
        const kept = role.perms.filter(
          (p) => !(bytesEqual(p.key, op.key) && bytesEqual(p.rangeEnd, op.rangeEnd)),
        );
        if (kept.length === role.perms.length) throw new AuthError('PERMISSION_NOT_GRANTED');
        this.roles.set(op.role, { name: op.role, perms: kept });
        this.rev++;
        return OK;
      }
      default:
        return assertNever(op);
    }
  }

  private enable(): AuthOpResult {
    if (this.enabledFlag) return OK;
    const root = this.users.get(ROOT_USER);
    if (root === undefined) throw new AuthError('ROOT_USER_NOT_EXIST');
    if (!root.roles.includes(ROOT_ROLE)) throw new AuthError('ROOT_ROLE_NOT_EXIST');
    this.enabledFlag = true; // etcd commits no revision here
    return OK;
  }

  private userAdd(name: string, passwordHash: string, noPassword: boolean): AuthOpResult {
    if (name.length === 0) throw new AuthError('USER_EMPTY');
    if (this.users.has(name)) throw new AuthError('USER_ALREADY_EXIST');
    if (this.users.size >= AUTH_ENTRIES_MAX) throw new AuthError('INVALID_AUTH_MGMT');
    this.users.set(name, {
      name,
      passwordHash: noPassword ? '' : passwordHash,
      roles: [],
      noPassword,
    });
    this.rev++;
    return OK;
  }

  private userGrantRole(name: string, role: string): AuthOpResult {
    const user = this.mustUser(name);
    if (role !== ROOT_ROLE && !this.roles.has(role)) throw new AuthError('ROLE_NOT_FOUND');
    if (user.roles.includes(role)) return OK; // etcd ignores a repeated grant, no revision
    this.users.set(name, { ...user, roles: [...user.roles, role].sort(compareStrings) });
    this.rev++;
    return OK;
  }

  private userRevokeRole(name: string, role: string): AuthOpResult {
    if (this.enabledFlag && name === ROOT_USER && role === ROOT_ROLE) {
      throw new AuthError('INVALID_AUTH_MGMT');
    }
    const user = this.mustUser(name);
    const roles = user.roles.filter((r) => r !== role);
    if (roles.length === user.roles.length) throw new AuthError('ROLE_NOT_GRANTED');
    this.users.set(name, { ...user, roles });
    this.rev++;
    return OK;
  }

  private roleDelete(name: string): AuthOpResult {
    if (this.enabledFlag && name === ROOT_ROLE) throw new AuthError('INVALID_AUTH_MGMT');
    if (!this.roles.has(name)) throw new AuthError('ROLE_NOT_FOUND');
    this.roles.delete(name);
    for (const user of [...this.users.values()]) {
      if (user.roles.includes(name)) {
        this.users.set(user.name, { ...user, roles: user.roles.filter((r) => r !== name) });
      }
    }
    this.rev++;
    return OK;
  }

  private roleGrantPermission(name: string, perm: KeyPermission | null): AuthOpResult {
    if (perm === null) throw new AuthError('PERMISSION_NOT_GIVEN');
    if (!isValidPermissionRange(perm.key, perm.rangeEnd)) throw new AuthError('INVALID_AUTH_MGMT');
    const role = this.roles.get(name);
    if (role === undefined) throw new AuthError('ROLE_NOT_FOUND');
    const same = role.perms.findIndex(
      (p) => bytesEqual(p.key, perm.key) && bytesEqual(p.rangeEnd, perm.rangeEnd),
    );
    let perms: KeyPermission[];
    if (same >= 0) {
      perms = role.perms.map((p, i) => (i === same ? { ...p, permType: perm.permType } : p));
    } else {
      if (role.perms.length >= ROLE_PERMISSIONS_MAX) throw new AuthError('INVALID_AUTH_MGMT');
      // Go's sort.Sort is not stable; a stable sort by key is one of its possible orders.
      perms = [...role.perms, perm].sort((a, b) => compareBytes(a.key, b.key));
    }
    this.roles.set(name, { name, perms });
    this.rev++;
    return OK;
  }

  private mustUser(name: string): AuthUser {
    const user = this.users.get(name);
    if (user === undefined) throw new AuthError('USER_NOT_FOUND');
    return user;
  }

  // --- checks (etcd's IsAdminPermitted, isOpPermitted) ---------------------------------------

  /** etcd's IsAdminPermitted. */
  checkAdmin(header: AuthHeader): void {
    if (!this.enabledFlag) return;
    if (header.username === '') throw new AuthError('USER_EMPTY');
    const user = this.users.get(header.username);
    if (user === undefined) throw new AuthError('USER_NOT_FOUND');
    if (!user.roles.includes(ROOT_ROLE)) throw new AuthError('PERMISSION_DENIED');
  }

  private checkSelfOrAdmin(header: AuthHeader, allowed: () => boolean): void {
    try {
      this.checkAdmin(header);
    } catch (error) {
      if (!allowed()) throw error;
    }
  }

  /** etcd's isOpPermitted: read or write of a key (empty end) or a range, as `header`'s user. */
  checkOp(
    header: AuthHeader,
    type: typeof PermType.Read | typeof PermType.Write,
    key: Uint8Array,
    rangeEnd: Uint8Array,
  ): void {
    if (!this.enabledFlag) return;
    if (header.revision === 0) throw new AuthError('USER_EMPTY');
    if (header.revision < this.rev) throw new AuthError('AUTH_OLD_REVISION');
    const user = this.users.get(header.username);
    if (user === undefined) throw new AuthError('PERMISSION_DENIED');
    if (user.roles.includes(ROOT_ROLE)) return;
    const perms = this.permCache.get(header.username);
    if (perms === undefined || !perms.permits(type, key, rangeEnd)) {
      throw new AuthError('PERMISSION_DENIED');
    }
  }

  isAdmin(username: string): boolean {
    return this.users.get(username)?.roles.includes(ROOT_ROLE) === true;
  }

  private buildPermCache(): Map<string, UserPermissions> {
    const cache = new Map<string, UserPermissions>();
    for (const user of this.users.values()) {
      const perms: KeyPermission[] = [];
      for (const name of user.roles) perms.push(...(this.roles.get(name)?.perms ?? []));
      cache.set(user.name, UserPermissions.of(perms));
    }
    return cache;
  }

  // --- persistence ----------------------------------------------------------------------------

  /** The whole store as plain data, users and roles by name (etcd's snapshot buckets). */
  state(): AuthState {
    return {
      enabled: this.enabledFlag,
      revision: this.rev,
      users: sortedKeys(this.users).map((n) => this.users.get(n)!),
      roles: sortedKeys(this.roles).map((n) => this.roles.get(n)!),
    };
  }

  /**
   * A store holding `state` (what a snapshot carried). Throws KvError SNAPSHOT_CORRUPT on a
   * state this store could not have reached: duplicate or empty names, more than the limits,
   * auth on without root holding the root role, a revision below 1.
   */
  static fromState(state: AuthState): AuthStore {
    const bad = (why: string): KvError => new KvError('SNAPSHOT_CORRUPT', `auth state: ${why}`);
    if (state.users.length > AUTH_ENTRIES_MAX || state.roles.length > AUTH_ENTRIES_MAX) {
      throw bad(`more than ${AUTH_ENTRIES_MAX} users or roles`);
    }
    if (!Number.isSafeInteger(state.revision) || state.revision < 1) {
      throw bad(`revision ${state.revision}`);
    }
    const store = new AuthStore();
    store.rev = state.revision;
    for (const role of state.roles) {
      if (role.name.length === 0 || store.roles.has(role.name)) throw bad(`role "${role.name}"`);
      if (role.perms.length > ROLE_PERMISSIONS_MAX) throw bad(`role ${role.name}: permissions`);
      const perms = [...role.perms].sort((a, b) => compareBytes(a.key, b.key));
      store.roles.set(role.name, { name: role.name, perms });
    }
    for (const user of state.users) {
      if (user.name.length === 0 || store.users.has(user.name)) throw bad(`user "${user.name}"`);
      const roles = [...new Set(user.roles)].sort(compareStrings);
      store.users.set(user.name, { ...user, roles });
    }
    if (state.enabled) {
      const root = store.users.get(ROOT_USER);
      if (root === undefined || !root.roles.includes(ROOT_ROLE)) {
        throw bad('enabled without a root user holding the root role');
      }
      store.enabledFlag = true;
    }
    store.permCache = store.buildPermCache();
    return store;
  }

  encode(): Uint8Array {
    return pack([
      1,
      this.enabledFlag,
      this.rev,
      [...this.users.values()].map((u) => [u.name, u.passwordHash, u.roles, u.noPassword]),
      [...this.roles.values()].map((r) => [
        r.name,
        r.perms.map((p) => [p.permType, p.key, p.rangeEnd]),
      ]),
    ]);
  }

  static decode(bytes: Uint8Array | undefined): AuthStore {
    const store = new AuthStore();
    if (bytes === undefined) return store;
    const [version, enabled, rev, users, roles] = unpack(bytes) as [
      number,
      boolean,
      number,
      [string, string, string[], boolean][],
      [string, [PermType, Uint8Array, Uint8Array][]][],
    ];
    assert(version === 1, `auth store format ${version} is not known`);
    store.enabledFlag = enabled;
    store.rev = rev;
    for (const [name, passwordHash, userRoles, noPassword] of users) {
      store.users.set(name, { name, passwordHash, roles: userRoles, noPassword });
    }
    for (const [name, perms] of roles) {
      store.roles.set(name, {
        name,
        perms: perms.map(([permType, key, rangeEnd]) => ({
          permType,
          key: Uint8Array.from(key),
          rangeEnd: Uint8Array.from(rangeEnd),
        })),
      });
    }
    store.permCache = store.buildPermCache();
    return store;
  }
}

const OK: AuthOpResult = Object.freeze({ kind: 'ok' });

function sortedKeys(map: ReadonlyMap<string, unknown>): string[] {
  return [...map.keys()].sort(compareStrings);
}

/** Go's string order (bytes), not the locale's. */
function compareStrings(a: string, b: string): number {
  return compareBytes(utf8.encode(a), utf8.encode(b));
}

const utf8 = new TextEncoder();

function assertNever(op: never): never {
  throw new Error(`unknown auth op ${JSON.stringify(op)}`);
}

export { PermType };
