/**
 * etcd's Auth service as a fresh etcd answers it with authentication disabled and no users or
 * roles: AuthStatus says disabled, AuthDisable succeeds, Authenticate is "authentication is not
 * enabled", AuthEnable is "root user does not exist", lookups of users and roles find none,
 * listings are empty. Creating users or roles is not supported (tandem has no auth store), and
 * says so, rather than pretending to store them.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { type ServiceContext, unary } from '../context.js';
import { headerToPb } from '../convert.js';
import { ApiError, type ApiErrorCode } from '../errors.js';

/** A fresh etcd's auth store revision (etcdctl auth status prints it). */
const AUTH_REVISION = 1;

export function authService(ctx: ServiceContext): UntypedServiceImplementation {
  const header = () => headerToPb(ctx.backend.header());
  const refuse = (method: string, code: ApiErrorCode, detail?: string) =>
    unary(ctx, method, async () => {
      throw new ApiError(code, detail);
    });
  return {
    AuthStatus: unary(ctx, 'AuthStatus', async () => ({
      header: header(),
      enabled: false,
      authRevision: AUTH_REVISION,
    })),
    AuthDisable: unary(ctx, 'AuthDisable', async () => ({ header: header() })),
    UserList: unary(ctx, 'UserList', async () => ({ header: header(), users: [] })),
    RoleList: unary(ctx, 'RoleList', async () => ({ header: header(), roles: [] })),

    AuthEnable: refuse('AuthEnable', 'ROOT_USER_NOT_EXIST'),
    Authenticate: refuse('Authenticate', 'AUTH_NOT_ENABLED'),
    UserGet: refuse('UserGet', 'USER_NOT_FOUND'),
    UserDelete: refuse('UserDelete', 'USER_NOT_FOUND'),
    UserChangePassword: refuse('UserChangePassword', 'USER_NOT_FOUND'),
    UserGrantRole: refuse('UserGrantRole', 'USER_NOT_FOUND'),
    UserRevokeRole: refuse('UserRevokeRole', 'USER_NOT_FOUND'),
    RoleGet: refuse('RoleGet', 'ROLE_NOT_FOUND'),
    RoleDelete: refuse('RoleDelete', 'ROLE_NOT_FOUND'),
    RoleGrantPermission: refuse('RoleGrantPermission', 'ROLE_NOT_FOUND'),
    RoleRevokePermission: refuse('RoleRevokePermission', 'ROLE_NOT_FOUND'),
    UserAdd: refuse('UserAdd', 'NOT_SUPPORTED', 'Auth.UserAdd: tandem has no authentication'),
    RoleAdd: refuse('RoleAdd', 'NOT_SUPPORTED', 'Auth.RoleAdd: tandem has no authentication'),
  };
}
