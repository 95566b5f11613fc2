/**
 * etcd's Auth service as a fresh etcd answers it with authentication disabled and no users or
 * roles: AuthStatus says disabled, AuthDisable succeeds, Authenticate is "authentication is not
 * enabled", AuthEnable is "root user does not exist", lookups of users and roles find none,
 * listings are empty. Creating users or roles is not supported (tandem has no auth store), and
 * says so, rather than pretending to store them.
 */
import { type ServiceContext, unary, withLeaderCheck } from '../context.js';
import { headerToPb } from '../convert.js';
import { ApiError, type ApiErrorCode } from '../errors.js';
import type { ServiceHandlers } from '../grpc/handlers.js';

/** A fresh etcd's auth store revision (etcdctl auth status prints it). */
const AUTH_REVISION = 1;

export function authService(ctx: ServiceContext): ServiceHandlers {
  const header = () => headerToPb(ctx.backend.header());
  const refuse = (code: ApiErrorCode, detail?: string) =>
    unary(async () => {
      throw new ApiError(code, detail);
    });
  return withLeaderCheck(ctx, {
    AuthStatus: unary(async () => ({
      header: header(),
      enabled: false,
      authRevision: AUTH_REVISION,
    })),
    AuthDisable: unary(async () => ({ header: header() })),
    UserList: unary(async () => ({ header: header(), users: [] })),
    RoleList: unary(async () => ({ header: header(), roles: [] })),

    AuthEnable: refuse('ROOT_USER_NOT_EXIST'),
    Authenticate: refuse('AUTH_NOT_ENABLED'),
    UserGet: refuse('USER_NOT_FOUND'),
    UserDelete: refuse('USER_NOT_FOUND'),
    UserChangePassword: refuse('USER_NOT_FOUND'),
    UserGrantRole: refuse('USER_NOT_FOUND'),
    UserRevokeRole: refuse('USER_NOT_FOUND'),
    RoleGet: refuse('ROLE_NOT_FOUND'),
    RoleDelete: refuse('ROLE_NOT_FOUND'),
    RoleGrantPermission: refuse('ROLE_NOT_FOUND'),
    RoleRevokePermission: refuse('ROLE_NOT_FOUND'),
    UserAdd: refuse('NOT_SUPPORTED', 'Auth.UserAdd: tandem has no authentication'),
    RoleAdd: refuse('NOT_SUPPORTED', 'Auth.RoleAdd: tandem has no authentication'),
  });
}
