import { TandemError } from '../../util/errors.js';

/**
 * Errors of the auth store, one per etcd auth error (server/auth/store.go); the API edge maps each
 * to etcd's gRPC status and message (rpctypes/error.go).
 */
export type AuthErrorCode =
  | 'ROOT_USER_NOT_EXIST'
  | 'ROOT_ROLE_NOT_EXIST'
  | 'USER_ALREADY_EXIST'
  | 'USER_EMPTY'
  | 'USER_NOT_FOUND'
  | 'ROLE_ALREADY_EXIST'
  | 'ROLE_NOT_FOUND'
  | 'ROLE_EMPTY'
  | 'AUTH_FAILED'
  | 'NO_PASSWORD_USER'
  | 'PERMISSION_NOT_GIVEN'
  | 'PERMISSION_DENIED'
  | 'ROLE_NOT_GRANTED'
  | 'PERMISSION_NOT_GRANTED'
  | 'AUTH_NOT_ENABLED'
  | 'INVALID_AUTH_TOKEN'
  | 'INVALID_AUTH_MGMT'
  | 'AUTH_OLD_REVISION';

/** etcd's server-side texts (auth.Err*), for logs; clients see rpctypes' texts. */
const AUTH_TEXT: Readonly<Record<AuthErrorCode, string>> = {
  ROOT_USER_NOT_EXIST: 'auth: root user does not exist',
  ROOT_ROLE_NOT_EXIST: 'auth: root user does not have root role',
  USER_ALREADY_EXIST: 'auth: user already exists',
  USER_EMPTY: 'auth: user name is empty',
  USER_NOT_FOUND: 'auth: user not found',
  ROLE_ALREADY_EXIST: 'auth: role already exists',
  ROLE_NOT_FOUND: 'auth: role not found',
  ROLE_EMPTY: 'auth: role name is empty',
  AUTH_FAILED: 'auth: authentication failed, invalid user ID or password',
  NO_PASSWORD_USER: 'auth: authentication failed, password was given for no password user',
  PERMISSION_NOT_GIVEN: 'auth: permission not given',
  PERMISSION_DENIED: 'auth: permission denied',
  ROLE_NOT_GRANTED: 'auth: role is not granted to the user',
  PERMISSION_NOT_GRANTED: 'auth: permission is not granted to the role',
  AUTH_NOT_ENABLED: 'auth: authentication is not enabled',
  INVALID_AUTH_TOKEN: 'auth: invalid auth token',
  INVALID_AUTH_MGMT: 'auth: invalid auth management',
  AUTH_OLD_REVISION: 'auth: revision in header is old',
};

export class AuthError extends TandemError<AuthErrorCode> {
  constructor(code: AuthErrorCode) {
    super(code, AUTH_TEXT[code]);
  }
}
