/**
 * Password hashes (src/api/auth-password.ts): a hash verifies its password only, and a flood of
 * hashing is bounded (etcd's "too many requests" past the queue) instead of taking the thread
 * pool that file I/O shares.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  HASHES_IN_FLIGHT_MAX,
  HASHES_WAITING_MAX,
  hashPassword,
  verifyPassword,
} from '../../src/api/auth-password.js';

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
