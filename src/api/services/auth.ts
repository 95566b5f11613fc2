/**
 * etcd's Auth service over the member's replicated auth store (src/kv/auth, through
 * EtcdBackend.auth). As in etcd 3.4: every management RPC and every get or list goes through
 * the log, applied as the caller (root is checked at apply); passwords are hashed here before
 * proposing, never written to the log in clear; Authenticate checks the password here, then
 * makes a simple token through the log so every member knows it, and retries when the store
 * changed meanwhile (v3_server.go's Authenticate loop).
 *
 * A backend without auth answers as an auth-disabled etcd with no users or roles.
 */
import { randomInt } from 'node:crypto';
import {
  AuthError,
  type AuthOp,
  type AuthOpResult,
  type KeyPermission,
} from '../../kv/auth/index.js';
import { hashPassword, PASSWORD_BYTES_MAX, verifyPassword } from '../auth-password.js';
import { plainOptions, type ServiceContext, unary, withLeaderCheck } from '../context.js';
import { headerToPb } from '../convert.js';
import { ApiError } from '../errors.js';
import type { CallContext, ServiceHandlers } from '../grpc/handlers.js';

/** A fresh etcd's auth store revision (etcdctl auth status prints it). */
const AUTH_REVISION_FRESH = 1;
/** Authenticate retries when the store changed between the password check and the token. */
const AUTHENTICATE_ATTEMPTS_MAX = 5;
/** etcd's defaultSimpleTokenLength, from its letters. */
const TOKEN_PREFIX_LETTERS = 16;
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
/** Bytes of a user or role name at most. */
const NAME_BYTES_MAX = 1024;

interface PbPermission {
  permType: number;
  key: Buffer;
  rangeEnd: Buffer;
}

export function authService(ctx: ServiceContext): ServiceHandlers {
  const header = () => headerToPb(ctx.backend.header());
  const gate = ctx.auth;
  const backend = ctx.backend.auth;
  if (backend === undefined) return authDisabledService(ctx);

  /** An op through the log as the caller (root checked at apply, as etcd's). */
  const run = async (op: AuthOp, call: CallContext): Promise<AuthOpResult> => {
    const who = await gate.credentials(call);
    return backend.propose(op, who, plainOptions(ctx, call));
  };
  const done = (fn: (req: never, call: CallContext) => Promise<unknown>) =>
    unary(async (req: never, call: CallContext) => {
      await fn(req, call);
      return { header: header() };
    });

  return withLeaderCheck(ctx, {
    AuthStatus: unary(async () => {
      const store = backend.store();
      return { header: header(), enabled: store.enabled, authRevision: store.revision };
    }),
    AuthEnable: done((_req: unknown, call) => run({ op: 'authEnable' }, call)),
    AuthDisable: done((_req: unknown, call) => run({ op: 'authDisable' }, call)),

    Authenticate: unary(async (req: { name: string; password: string }, call) => {
      const opts = plainOptions(ctx, call);
      await backend.barrier(call.signal); // etcd: linearizableReadNotify first
      for (let attempt = 1; ; attempt++) {
        const checkedRevision = await checkPassword(req.name, req.password);
        // A JWT needs no log entry: it carries the user and revision, any member verifies it.
        const token =
          gate.jwt === undefined
            ? await backend.authenticate(req.name, tokenPrefix(), opts)
            : gate.jwt.sign(req.name, checkedRevision);
        if (checkedRevision === backend.store().revision || attempt >= AUTHENTICATE_ATTEMPTS_MAX) {
          return { header: header(), token };
        }
      }
    }),

    UserAdd: done(async (req: PbUserAdd, call) => {
      checkName(req.name);
      const noPassword = req.options?.noPassword === true;
      const passwordHash = noPassword ? '' : await hashPassword(checkPassword_(req.password));
      return run({ op: 'userAdd', name: req.name, passwordHash, noPassword }, call);
    }),
    UserDelete: done((req: { name: string }, call) =>
      run({ op: 'userDelete', name: req.name }, call),
    ),
    UserChangePassword: done(async (req: { name: string; password: string }, call) => {
      const passwordHash = await hashPassword(checkPassword_(req.password));
      return run({ op: 'userChangePassword', name: req.name, passwordHash }, call);
    }),
    UserGrantRole: done((req: { user: string; role: string }, call) =>
      run({ op: 'userGrantRole', user: req.user, role: req.role }, call),
    ),
    UserRevokeRole: done((req: { name: string; role: string }, call) =>
      run({ op: 'userRevokeRole', name: req.name, role: req.role }, call),
    ),
    UserGet: unary(async (req: { name: string }, call) => {
      const r = await run({ op: 'userGet', name: req.name }, call);
      return { header: header(), roles: r.kind === 'userGet' ? r.roles : [] };
    }),
    UserList: unary(async (_req: unknown, call) => {
      const r = await run({ op: 'userList' }, call);
      return { header: header(), users: r.kind === 'names' ? r.names : [] };
    }),

    RoleAdd: done((req: { name: string }, call) => {
      checkName(req.name);
      return run({ op: 'roleAdd', name: req.name }, call);
    }),
    RoleDelete: done((req: { role: string }, call) =>
      run({ op: 'roleDelete', role: req.role }, call),
    ),
    RoleGrantPermission: done((req: { name: string; perm: PbPermission | null }, call) =>
      run({ op: 'roleGrantPermission', name: req.name, perm: permissionFromPb(req.perm) }, call),
    ),
    RoleRevokePermission: done((req: { role: string; key: Buffer; rangeEnd: Buffer }, call) =>
      run(
        {
          op: 'roleRevokePermission',
          role: req.role,
          key: new Uint8Array(req.key),
          rangeEnd: new Uint8Array(req.rangeEnd),
        },
        call,
      ),
    ),
    RoleGet: unary(async (req: { role: string }, call) => {
      const r = await run({ op: 'roleGet', role: req.role }, call);
      const perms = r.kind === 'roleGet' ? r.perms : [];
      return {
        header: header(),
        perm: perms.map((p) => ({
          permType: p.permType,
          key: Buffer.from(p.key),
          rangeEnd: Buffer.from(p.rangeEnd),
        })),
      };
    }),
    RoleList: unary(async (_req: unknown, call) => {
      const r = await run({ op: 'roleList' }, call);
      return { header: header(), roles: r.kind === 'names' ? r.names : [] };
    }),
  });

  /** etcd's CheckPassword: the auth revision the password was checked under. */
  async function checkPassword(name: string, password: string): Promise<number> {
    const store = backend!.store();
    if (!store.enabled) throw new AuthError('AUTH_NOT_ENABLED');
    const user = store.user(name);
    if (user === undefined) throw new AuthError('AUTH_FAILED');
    if (user.noPassword) throw new AuthError('NO_PASSWORD_USER');
    const revision = store.revision;
    if (!(await verifyPassword(password, user.passwordHash))) throw new AuthError('AUTH_FAILED');
    return revision;
  }
}

interface PbUserAdd {
  name: string;
  password: string;
  options: { noPassword: boolean } | null;
}

function checkName(name: string): void {
  if (Buffer.byteLength(name) > NAME_BYTES_MAX) {
    throw new ApiError('INVALID_FIELD', `name longer than ${NAME_BYTES_MAX} bytes`);
  }
}

function checkPassword_(password: string): string {
  if (Buffer.byteLength(password) > PASSWORD_BYTES_MAX) {
    throw new ApiError('INVALID_FIELD', `password longer than ${PASSWORD_BYTES_MAX} bytes`);
  }
  return password;
}

function permissionFromPb(perm: PbPermission | null): KeyPermission | null {
  if (perm === null || perm === undefined) return null;
  if (perm.permType !== 0 && perm.permType !== 1 && perm.permType !== 2) {
    throw new ApiError('INVALID_FIELD', `permission type ${perm.permType}`);
  }
  return {
    permType: perm.permType,
    key: new Uint8Array(perm.key),
    rangeEnd: new Uint8Array(perm.rangeEnd),
  };
}

function tokenPrefix(): string {
  let out = '';
  for (let i = 0; i < TOKEN_PREFIX_LETTERS; i++) out += LETTERS[randomInt(LETTERS.length)];
  return out;
}

/** Without an auth store: a fresh, auth-disabled etcd with no users or roles. */
function authDisabledService(ctx: ServiceContext): ServiceHandlers {
  const header = () => headerToPb(ctx.backend.header());
  const refuse = (error: () => Error) =>
    unary(async () => {
      throw error();
    });
  const unsupported = (what: string) =>
    refuse(() => new ApiError('NOT_SUPPORTED', `${what}: this backend has no auth store`));
  return withLeaderCheck(ctx, {
    AuthStatus: unary(async () => ({
      header: header(),
      enabled: false,
      authRevision: AUTH_REVISION_FRESH,
    })),
    AuthDisable: unary(async () => ({ header: header() })),
    UserList: unary(async () => ({ header: header(), users: [] })),
    RoleList: unary(async () => ({ header: header(), roles: [] })),
    AuthEnable: refuse(() => new AuthError('ROOT_USER_NOT_EXIST')),
    Authenticate: refuse(() => new AuthError('AUTH_NOT_ENABLED')),
    UserGet: refuse(() => new AuthError('USER_NOT_FOUND')),
    UserDelete: refuse(() => new AuthError('USER_NOT_FOUND')),
    UserChangePassword: refuse(() => new AuthError('USER_NOT_FOUND')),
    UserGrantRole: refuse(() => new AuthError('USER_NOT_FOUND')),
    UserRevokeRole: refuse(() => new AuthError('USER_NOT_FOUND')),
    RoleGet: refuse(() => new AuthError('ROLE_NOT_FOUND')),
    RoleDelete: refuse(() => new AuthError('ROLE_NOT_FOUND')),
    RoleGrantPermission: refuse(() => new AuthError('ROLE_NOT_FOUND')),
    RoleRevokePermission: refuse(() => new AuthError('ROLE_NOT_FOUND')),
    UserAdd: unsupported('Auth.UserAdd'),
    RoleAdd: unsupported('Auth.RoleAdd'),
  });
}
