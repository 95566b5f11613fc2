/**
 * Who a forwarded call is for, when its client authenticated by certificate alone (etcd's
 * --client-cert-auth, no token). A member that forwards a call to another (standby-forward.ts)
 * connects with its own certificate, so the receiver would see the member's CN, not the
 * client's. So the forwarding member, which verified the client's certificate itself, states
 * the user in `tandem-forwarded-user` and proves it in `tandem-forwarded-proof`: an HMAC under a
 * key derived from the cluster secret, which only members hold, over the user and the time it
 * was made. The receiver accepts the user only with a valid proof no older than
 * FORWARDED_IDENTITY_AGE_MS_MAX; a client cannot set either header (the forwarder copies only
 * the metadata it knows, and without the secret no proof verifies).
 *
 *   proof = issuedAtMs "." base64url(HMAC-SHA256(key, ["tandem-forwarded-user-v1", issuedAtMs, user]))
 *   key   = HKDF-SHA256(cluster secret, info "tandem-forwarded-identity-v1")
 */
import { createHmac, hkdfSync, type KeyObject, timingSafeEqual } from 'node:crypto';
import { assert } from '../util/assert.js';

export const FORWARDED_USER_KEY = 'tandem-forwarded-user';
export const FORWARDED_PROOF_KEY = 'tandem-forwarded-proof';

/**
 * How old a proof may be (and how far in the future, for members' clock skew): a forwarded
 * call is sent as soon as it is signed, so this bounds only replays and skew.
 */
export const FORWARDED_IDENTITY_AGE_MS_MAX = 60_000;

/** A user name longer than this is no user of ours (etcd's names are short). */
const USER_BYTES_MAX = 1024;
const MAC_CONTEXT = 'tandem-forwarded-user-v1';
const KEY_INFO = 'tandem-forwarded-identity-v1';

export class ForwardedIdentity {
  private readonly key: Buffer;

  /** `secret`: the cluster secret every member holds (src/transport/handshake.ts). */
  constructor(
    secret: KeyObject,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.key = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), KEY_INFO, 32));
  }

  /** The two metadata values stating that a call is made for `user`. */
  sign(user: string): { user: string; proof: string } {
    assert(user !== '' && Buffer.byteLength(user) <= USER_BYTES_MAX, 'a user name to sign');
    const issuedAtMs = Math.floor(this.nowMs());
    const encoded = Buffer.from(user, 'utf8').toString('base64url');
    return { user: encoded, proof: `${issuedAtMs}.${this.mac(issuedAtMs, user)}` };
  }

  /** The user the values state, or null when the proof does not hold (or is too old). */
  verify(encodedUser: string, proof: string): string | null {
    if (encodedUser.length > 2 * USER_BYTES_MAX || proof.length > 128) return null;
    const dot = proof.indexOf('.');
    const issuedAtMs = Number(proof.slice(0, dot));
    if (dot < 1 || !Number.isSafeInteger(issuedAtMs)) return null;
    if (Math.abs(this.nowMs() - issuedAtMs) > FORWARDED_IDENTITY_AGE_MS_MAX) return null;
    const user = Buffer.from(encodedUser, 'base64url').toString('utf8');
    if (user === '' || Buffer.from(user, 'utf8').toString('base64url') !== encodedUser) return null;
    const expected = Buffer.from(this.mac(issuedAtMs, user));
    const given = Buffer.from(proof.slice(dot + 1));
    return expected.length === given.length && timingSafeEqual(expected, given) ? user : null;
  }

  private mac(issuedAtMs: number, user: string): string {
    return createHmac('sha256', this.key)
      .update(JSON.stringify([MAC_CONTEXT, issuedAtMs, user]))
      .digest('base64url');
  }
}
