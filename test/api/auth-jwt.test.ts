/**
 * JWT tokens (src/api/auth-jwt.ts): what one key signs it verifies, with the claims etcd puts in
 * them; a tampered, expired, foreign or malformed token is no token.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { JWT_SIGN_METHODS, JwtTokens } from '../../src/api/auth-jwt.js';

function keysFor(method: (typeof JWT_SIGN_METHODS)[number]): { privateKey: string | Buffer } {
  if (method === 'HS256') return { privateKey: Buffer.alloc(32, 7) };
  const pair = method.startsWith('ES')
    ? generateKeyPairSync('ec', { namedCurve: method === 'ES256' ? 'P-256' : 'P-384' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

describe('JWT tokens', () => {
  for (const signMethod of JWT_SIGN_METHODS) {
    test(`${signMethod}: sign, verify, and refuse what is not ours`, () => {
      let now = 1_000_000;
      const key = keysFor(signMethod);
      const jwt = new JwtTokens({ signMethod, ...key, ttlMs: 60_000, nowMs: () => now });
      const token = jwt.sign('alice', 7);
      const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
      assert.deepEqual(claims, { username: 'alice', revision: 7, exp: 1060 });
      assert.deepEqual(jwt.verify(token), { username: 'alice', revision: 7 });
      const [h, p, s] = token.split('.') as [string, string, string];
      const forged = Buffer.from(JSON.stringify({ ...claims, username: 'root' })).toString(
        'base64url',
      );
      assert.equal(jwt.verify(`${h}.${forged}.${s}`), null, 'claims changed');
      // One byte of the signature flipped. (Rewriting its last characters as text was a no-op
      // about once in 256 RSA runs: the last base64url character carries only 2 bits, so "AA"
      // could decode to the same bytes, and CI saw the token verify.)
      const tampered = Buffer.from(s, 'base64url');
      tampered[0]! ^= 0xff;
      assert.equal(
        jwt.verify(`${h}.${p}.${tampered.toString('base64url')}`),
        null,
        'signature changed',
      );
      assert.equal(jwt.verify(`${h}.${p}`), null);
      assert.equal(jwt.verify('abcdefgh.12'), null);
      const other = new JwtTokens({
        signMethod,
        ...keysFor(signMethod),
        ttlMs: 60_000,
        nowMs: () => now,
      });
      if (signMethod !== 'HS256') assert.equal(other.verify(token), null, 'another key');
      now += 60_000;
      assert.equal(jwt.verify(token), null, 'expired');
    });
  }

  test('a short HS256 secret is refused', () => {
    assert.throws(
      () => new JwtTokens({ signMethod: 'HS256', privateKey: 'short', ttlMs: 1000 }),
      /at least 32 bytes/,
    );
  });
});
