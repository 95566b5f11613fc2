/**
 * etcd's JWT tokens (server/auth/jwt.go): `--auth-token jwt,...`, a token signed with the
 * configured key that carries the user and the auth revision it was issued under
 * (claims "username", "revision", "exp"), so any member holding the key verifies it without
 * asking anyone, and a token older than the store gets AUTH_OLD_REVISION (clients then
 * re-authenticate). Signed and verified with node:crypto.
 */
import {
  constants,
  createHmac,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto';

/** The signing methods offered (a subset of etcd's: RS*, PS*, ES*, HS*). */
export const JWT_SIGN_METHODS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'ES256',
  'ES384',
  'HS256',
] as const;
export type JwtSignMethod = (typeof JWT_SIGN_METHODS)[number];

export interface JwtOptions {
  readonly signMethod: JwtSignMethod;
  /** PEM private key (asymmetric methods), or the shared secret (HS256). */
  readonly privateKey: string | Buffer;
  /** PEM public key; derived from the private key when absent. */
  readonly publicKey?: string | Buffer;
  /** Token lifetime (etcd's ttl, default 5 minutes). */
  readonly ttlMs: number;
  /** Wall clock, ms (injected for tests). */
  readonly nowMs?: () => number;
}

export const JWT_TTL_MS_DEFAULT = 5 * 60_000;
/** Bytes of a token this verifier reads at most. */
const TOKEN_BYTES_MAX = 8 * 1024;

interface Claims {
  readonly username: string;
  readonly revision: number;
  readonly exp: number;
}

const HASHES: Record<JwtSignMethod, string> = {
  RS256: 'sha256',
  RS384: 'sha384',
  RS512: 'sha512',
  PS256: 'sha256',
  ES256: 'sha256',
  ES384: 'sha384',
  HS256: 'sha256',
};

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

export class JwtTokens {
  private readonly header: string;
  private readonly privateKey: KeyObject | Buffer;
  private readonly publicKey: KeyObject | Buffer;
  private readonly nowMs: () => number;

  constructor(private readonly o: JwtOptions) {
    if (!JWT_SIGN_METHODS.includes(o.signMethod)) {
      throw new Error(
        `auth.jwt.signMethod: ${o.signMethod} is not one of ${JWT_SIGN_METHODS.join(', ')}`,
      );
    }
    if (!(o.ttlMs > 0)) throw new Error('auth.jwt.ttl must be positive');
    this.header = b64url(JSON.stringify({ alg: o.signMethod, typ: 'JWT' }));
    this.nowMs = o.nowMs ?? Date.now;
    if (o.signMethod === 'HS256') {
      this.privateKey = Buffer.from(o.privateKey);
      if (this.privateKey.length < 32)
        throw new Error('auth.jwt: an HS256 key has at least 32 bytes');
      this.publicKey = this.privateKey;
    } else {
      const priv = createPrivateKey(o.privateKey);
      this.privateKey = priv;
      this.publicKey =
        o.publicKey === undefined ? createPublicKey(priv) : createPublicKey(o.publicKey);
    }
  }

  /** A token for `username` under auth revision `revision`. */
  sign(username: string, revision: number): string {
    const claims: Claims = {
      username,
      revision,
      exp: Math.floor((this.nowMs() + this.o.ttlMs) / 1000),
    };
    const input = `${this.header}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(this.signature(input))}`;
  }

  /** The claims of a valid, unexpired token of ours; null for anything else. */
  verify(token: string): { username: string; revision: number } | null {
    if (token.length > TOKEN_BYTES_MAX) return null;
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== this.header) return null;
    const input = `${parts[0]}.${parts[1]}`;
    const sig = Buffer.from(parts[2]!, 'base64url');
    if (!this.signatureValid(input, sig)) return null;
    let claims: Partial<Claims>;
    try {
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Partial<Claims>;
    } catch {
      return null;
    }
    if (typeof claims.username !== 'string' || !Number.isSafeInteger(claims.revision)) return null;
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= this.nowMs()) return null;
    return { username: claims.username, revision: claims.revision! };
  }

  private signature(input: string): Buffer {
    const hash = HASHES[this.o.signMethod];
    if (this.o.signMethod === 'HS256') {
      return createHmac(hash, this.privateKey as Buffer)
        .update(input)
        .digest();
    }
    return sign(hash, Buffer.from(input), this.keyOptions(this.privateKey as KeyObject));
  }

  private signatureValid(input: string, sig: Buffer): boolean {
    const hash = HASHES[this.o.signMethod];
    if (this.o.signMethod === 'HS256') {
      const want = createHmac(hash, this.publicKey as Buffer)
        .update(input)
        .digest();
      return sig.length === want.length && timingSafeEqual(sig, want);
    }
    try {
      return verify(hash, Buffer.from(input), this.keyOptions(this.publicKey as KeyObject), sig);
    } catch {
      return false;
    }
  }

  /** ES* signatures in JWT's raw r‖s form; PS* with PSS padding. */
  private keyOptions(key: KeyObject) {
    const m = this.o.signMethod;
    if (m.startsWith('ES')) return { key, dsaEncoding: 'ieee-p1363' as const };
    if (m.startsWith('PS'))
      return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
    return key;
  }
}
