/**
 * Password hashes (src/api/auth-password.ts): a hash verifies its password only, and a flood of
 * hashing is bounded (etcd's "too many requests" past the queue) instead of taking the thread
 * pool that file I/O shares.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import {
  HASHES_IN_FLIGHT_MAX,
  HASHES_WAITING_MAX,
  hashPassword,
  verifyPassword,
} from '../../src/api/auth-password.js';
import { BCRYPT_COST_MAX } from '../../src/kv/auth/hash-format.js';

describe('password hashes', () => {
  test('a hash verifies its password, not another; salts differ', { timeout: 30_000 }, async () => {
    const [a, b] = await Promise.all([hashPassword('pw'), hashPassword('pw')]);
    assert.notEqual(a, b);
    assert.match(a, /^scrypt\$14\$8\$1\$/);
    assert.equal(await verifyPassword('pw', a), true);
    assert.equal(await verifyPassword('pW', a), false);
    assert.equal(
      await verifyPassword('pw', a.replace('scrypt$14', 'scrypt$20')),
      false,
      'cost not ours',
    );
    assert.equal(await verifyPassword('pw', 'plain'), false);
  });

  test("etcd's bcrypt hashes (a snapshot restored from etcd) verify their password", {
    timeout: 30_000,
  }, async () => {
    // Go's bcrypt writes "$2a$"; other implementations "$2b$" or "$2y$".
    const b = bcrypt.hashSync('secret', 4);
    for (const prefix of ['$2a$', '$2b$', '$2y$']) {
      const stored = prefix + b.slice(4);
      assert.equal(await verifyPassword('secret', stored), true, prefix);
      assert.equal(await verifyPassword('Secret', stored), false, prefix);
    }
    // etcd's default cost.
    assert.equal(await verifyPassword('pw', bcrypt.hashSync('pw', 10)), true);
    // A stored cost past the bound is refused without running it.
    const costly = `$2a$${BCRYPT_COST_MAX + 1}$${b.slice(7)}`;
    const t0 = performance.now();
    assert.equal(await verifyPassword('secret', costly), false);
    assert.ok(performance.now() - t0 < 1_000, 'refused without hashing');
    // Malformed: a short hash, and a password bcrypt would cut at 72 bytes.
    assert.equal(await verifyPassword('secret', b.slice(0, -1)), false);
    const long = 'x'.repeat(80);
    assert.equal(await verifyPassword(long, bcrypt.hashSync(long, 4)), false);
  });

  test('past the in-flight and waiting bounds, hashing is refused at once', {
    timeout: 120_000,
  }, async () => {
    const stored = await hashPassword('pw');
    const extra = 3;
    const total = HASHES_IN_FLIGHT_MAX + HASHES_WAITING_MAX + extra;
    const results = await Promise.allSettled(
      Array.from({ length: total }, () => verifyPassword('wrong', stored)),
    );
    const refused = results.filter(
      (r) => r.status === 'rejected' && /too many requests/.test(String(r.reason)),
    );
    assert.equal(refused.length, extra);
    const answered = results.filter((r) => r.status === 'fulfilled' && r.value === false);
    assert.equal(answered.length, total - extra);
  });
});
