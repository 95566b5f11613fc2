/**
 * etcd's permission checks at the API edge (v3_server.go, apply_auth.go, v3rpc's watch and
 * maintenance): who a call is (a token in metadata `token`, or `authorization` from the JSON
 * gateway; else the client certificate's CN when client-cert auth is on), then what it may do,
 * against the auth store this member applied. Writes carry the auth revision they were checked
 * under into the log, where a changed store refuses them (tandem-state-machine.ts, kind 10).
 *
 * With auth disabled every check is one boolean (`enabled()`), nothing else runs.
 */
import type { RequestOp, TxnRequest } from '../kv/api-types.js';
import {
  AuthError,
  type AuthHeader,
  type AuthStore,
  NO_CREDENTIALS,
  PermType,
} from '../kv/auth/index.js';
import type { LeaseId } from '../kv/types.js';
import type { AuthBackend, EtcdBackend } from '../server/contract.js';
import type { JwtTokens } from './auth-jwt.js';
import {
  FORWARDED_PROOF_KEY,
  FORWARDED_USER_KEY,
  type ForwardedIdentity,
} from './forwarded-identity.js';
import type { CallContext } from './grpc/handlers.js';

/** gRPC metadata carrying a token (rpctypes.TokenFieldNameGRPC, TokenFieldNameSwagger). */
export const TOKEN_METADATA_KEY = 'token';
export const AUTHORIZATION_METADATA_KEY = 'authorization';
/** Bytes of a token at most: anything longer is no token of ours. */
const TOKEN_BYTES_MAX = 8 * 1024;

export interface AuthGateOptions {
  /** etcd's --client-cert-auth: a verified client certificate's CN names the user. */
  readonly clientCertAuth?: boolean;
  /** JWT tokens, when the member is configured for them (auth-jwt.ts). */
  readonly jwt?: JwtTokens;
  /**
   * Verifies the user another member states for a call it forwards for a certificate-only
   * client (forwarded-identity.ts); absent: such statements are refused.
   */
  readonly forwardedIdentity?: ForwardedIdentity;
}

export class AuthGate {
  readonly auth: AuthBackend | null;

  constructor(
    backend: EtcdBackend,
    private readonly options: AuthGateOptions = {},
  ) {
    this.auth = backend.auth ?? null;
  }

  /** The hot path's one check. */
  enabled(): boolean {
    return this.auth?.store().enabled === true;
  }

  store(): AuthStore {
    if (this.auth === null) throw new Error('no auth store');
    return this.auth.store();
  }

  /**
   * etcd's AuthInfoFromCtx: the caller's credentials, NO_CREDENTIALS when it gave none;
   * INVALID_AUTH_TOKEN for a token this member does not know.
   */
  async credentials(call: CallContext): Promise<AuthHeader> {
    if (!this.enabled()) return NO_CREDENTIALS;
    const token =
      firstString(call.metadata.get(TOKEN_METADATA_KEY)) ??
      firstString(call.metadata.get(AUTHORIZATION_METADATA_KEY));
    if (token === undefined) {
      const forwarded = this.forwardedUser(call);
      if (forwarded !== null) return { username: forwarded, revision: this.auth!.store().revision };
      const cn = this.options.clientCertAuth === true ? call.peerCommonName : undefined;
      if (cn !== undefined && cn !== '') {
        return { username: cn, revision: this.auth!.store().revision };
      }
      return NO_CREDENTIALS;
    }
    return this.credentialsOfToken(token, call.signal);
  }

  /**
   * The user a forwarding member states for the call, null when it states none; a statement
   * whose proof does not verify (a client forging one, another cluster's member, a stale
   * replay) is INVALID_AUTH_TOKEN, never the forwarding member's own name.
   */
  private forwardedUser(call: CallContext): string | null {
    const user = firstString(call.metadata.get(FORWARDED_USER_KEY));
    if (user === undefined) return null;
    const proof = firstString(call.metadata.get(FORWARDED_PROOF_KEY)) ?? '';
    const verified = this.options.forwardedIdentity?.verify(user, proof) ?? null;
    if (verified === null) throw new AuthError('INVALID_AUTH_TOKEN');
    return verified;
  }

  /**
   * The metadata stating this call's user to the member it is forwarded to: the certificate's
   * CN when that is who the call is (client-cert auth, no token); else none.
   */
  forwardedIdentityOf(call: CallContext): { user: string; proof: string } | null {
    const signer = this.options.forwardedIdentity;
    if (signer === undefined || this.options.clientCertAuth !== true) return null;
    if (call.metadata.get(TOKEN_METADATA_KEY).length > 0) return null;
    if (call.metadata.get(AUTHORIZATION_METADATA_KEY).length > 0) return null;
    const cn = call.peerCommonName;
    return cn === undefined || cn === '' ? null : signer.sign(cn);
  }

  /** The user a token (simple or JWT) stands for; INVALID_AUTH_TOKEN when it is unknown. */
  async credentialsOfToken(token: string, signal?: AbortSignal): Promise<AuthHeader> {
    const auth = this.auth!;
    if (token.length > TOKEN_BYTES_MAX) throw new AuthError('INVALID_AUTH_TOKEN');
    const jwt = this.options.jwt?.verify(token) ?? null;
    if (jwt !== null) return jwt;
    const username = await auth.simpleTokenUser(token, signal);
    if (username === null) throw new AuthError('INVALID_AUTH_TOKEN');
    // A simple token's revision is the store's as of now (etcd's tokenSimple.info).
    return { username, revision: auth.store().revision };
  }

  /**
   * The admin HTTP endpoint's check: with auth enabled, only the root user may act or read
   * keys there (its `Authorization` header carries a token, as the JSON gateway's does).
   * Throws an AuthError (USER_EMPTY without a token, PERMISSION_DENIED for another user).
   */
  async checkAdminToken(token: string | undefined): Promise<void> {
    if (!this.enabled()) return;
    if (token === undefined || token === '') throw new AuthError('USER_EMPTY');
    this.store().checkAdmin(await this.credentialsOfToken(token));
  }

  /** JWT tokens when configured (Authenticate signs one instead of making a simple token). */
  get jwt(): JwtTokens | undefined {
    return this.options.jwt;
  }

  /** etcd's IsAdminPermitted for the caller (Cluster, Maintenance, auth management). */
  async checkAdmin(call: CallContext): Promise<AuthHeader> {
    const who = await this.credentials(call);
    this.store().checkAdmin(who);
    return who;
  }

  checkRange(who: AuthHeader, key: Uint8Array, rangeEnd: Uint8Array): void {
    this.store().checkOp(who, PermType.Read, key, rangeEnd);
  }

  /** etcd's authApplierV3.Put: write on the key, read too for prevKv, the lease's keys. */
  checkPut(who: AuthHeader, key: Uint8Array, lease: LeaseId, prevKv: boolean): void {
    const store = this.store();
    store.checkOp(who, PermType.Write, key, EMPTY);
    if (lease !== 0n) this.checkLeasePuts(who, lease);
    if (prevKv) store.checkOp(who, PermType.Read, key, EMPTY);
  }

  checkDeleteRange(who: AuthHeader, key: Uint8Array, rangeEnd: Uint8Array, prevKv: boolean): void {
    const store = this.store();
    store.checkOp(who, PermType.Write, key, rangeEnd);
    if (prevKv) store.checkOp(who, PermType.Read, key, rangeEnd);
  }

  /** etcd's checkTxnAuth: read on every compare key, each op as its own kind (nested too). */
  checkTxn(who: AuthHeader, txn: TxnRequest): void {
    for (const c of txn.compare) this.checkRange(who, c.key, c.rangeEnd);
    for (const op of [...txn.success, ...txn.failure]) this.checkRequestOp(who, op);
  }

  private checkRequestOp(who: AuthHeader, op: RequestOp): void {
    switch (op.request) {
      case 'requestRange':
        this.checkRange(who, op.requestRange.key, op.requestRange.rangeEnd);
        break;
      case 'requestPut': {
        const p = op.requestPut;
        this.checkPut(who, p.key, p.lease, p.prevKv);
        break;
      }
      case 'requestDeleteRange': {
        const d = op.requestDeleteRange;
        this.checkDeleteRange(who, d.key, d.rangeEnd, d.prevKv);
        break;
      }
      case 'requestTxn':
        this.checkTxn(who, op.requestTxn);
        break;
    }
  }

  /** etcd's checkLeasePuts: root may; others need write on every key attached to the lease. */
  checkLeasePuts(who: AuthHeader, lease: LeaseId): void {
    const store = this.store();
    if (store.isAdmin(who.username) && who.revision !== 0) return;
    for (const key of this.auth!.leaseKeys(lease)) store.checkOp(who, PermType.Write, key, EMPTY);
  }

  /** etcd's checkLeaseTimeToLive (keys asked for): read on every attached key. */
  checkLeaseReads(who: AuthHeader, lease: LeaseId): void {
    if (who.revision === 0) throw new AuthError('USER_EMPTY');
    const store = this.store();
    for (const key of this.auth!.leaseKeys(lease)) store.checkOp(who, PermType.Read, key, EMPTY);
  }

  /** etcd's doSerialize tail: a read answered under a store that changed meanwhile is refused. */
  checkStillCurrent(who: AuthHeader): void {
    if (who.revision !== 0 && this.enabled() && who.revision !== this.store().revision) {
      throw new AuthError('AUTH_OLD_REVISION');
    }
  }
}

const EMPTY = new Uint8Array(0);

function firstString(values: readonly (string | Buffer)[]): string | undefined {
  const v = values[0];
  return typeof v === 'string' ? v : v?.toString('utf8');
}
