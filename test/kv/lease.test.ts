import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LeaseError, LeaseErrorCode } from '../../src/kv/lease/errors.js';
import { Lessor } from '../../src/kv/lease/lessor.js';
import {
  LEASE_ID_MAX,
  LEASE_PROMOTE_EXPIRIES_PER_SECOND_TARGET,
  LEASE_TTL_SECONDS_MAX,
} from '../../src/kv/lease/limits.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

function throwsCode(fn: () => unknown, code: LeaseErrorCode): void {
  assert.throws(fn, (err: unknown) => err instanceof LeaseError && err.code === code);
}

/** A primary lessor with checkpointing every 5 minutes and a 2-second minimum TTL. */
function primaryAt(nowMs: number): Lessor {
  const lessor = new Lessor({ minTtlSeconds: 2, checkpointIntervalMs: 300_000 });
  lessor.promote(nowMs, 0);
  return lessor;
}

describe('grant', () => {
  test('explicit id, duplicate id, and etcd messages', () => {
    const lessor = new Lessor();
    assert.deepEqual(lessor.grant(5n, 10, 0), { id: 5n, ttlSeconds: 10 });
    assert.ok(lessor.exists(5n));
    throwsCode(() => lessor.grant(5n, 10, 0), LeaseErrorCode.Exists);
    assert.throws(() => lessor.grant(5n, 10, 0), { message: 'etcdserver: lease already exists' });
  });

  test('a TTL below the minimum is raised; above the maximum is refused', () => {
    const lessor = new Lessor({ minTtlSeconds: 3 });
    assert.equal(lessor.grant(1n, 1, 0).ttlSeconds, 3);
    assert.equal(lessor.grant(2n, 0, 0).ttlSeconds, 3);
    assert.equal(lessor.grant(3n, 4, 0).ttlSeconds, 4);
    assert.equal(lessor.grant(4n, LEASE_TTL_SECONDS_MAX, 0).ttlSeconds, LEASE_TTL_SECONDS_MAX);
    throwsCode(() => lessor.grant(5n, LEASE_TTL_SECONDS_MAX + 1, 0), LeaseErrorCode.TtlTooLarge);
    assert.throws(() => lessor.grant(6n, 9e9 + 1, 0), {
      message: 'etcdserver: too large lease TTL',
    });
    assert.equal(lessor.exists(5n), false);
  });

  test('ids outside (0, 2^63) are refused', () => {
    const lessor = new Lessor();
    throwsCode(() => lessor.grant(-1n, 10, 0), LeaseErrorCode.IdOutOfRange);
    throwsCode(() => lessor.grant(LEASE_ID_MAX + 1n, 10, 0), LeaseErrorCode.IdOutOfRange);
    assert.equal(lessor.grant(LEASE_ID_MAX, 10, 0).id, LEASE_ID_MAX);
  });

  test('id 0 generates the same positive int64 ids on every member', () => {
    const a = new Lessor();
    const b = new Lessor();
    b.promote(0, 0); // the role does not matter for replicated state
    for (let i = 0; i < 200; i++) {
      const id = a.grant(0n, 10, 0).id;
      assert.ok(id > 0n && id <= LEASE_ID_MAX);
      assert.equal(b.grant(0n, 10, 0).id, id);
    }
    assert.equal(new Set(a.leases()).size, 200);
  });
});

describe('revoke and attachments', () => {
  test('revoke returns the attached keys in byte order and forgets the lease', () => {
    const lessor = new Lessor();
    lessor.grant(7n, 10, 0);
    for (const k of ['b', 'a', 'c\u00ff', 'c']) lessor.attach(7n, enc(k));
    lessor.attach(7n, enc('a')); // idempotent
    lessor.detach(7n, enc('b'));
    assert.deepEqual(lessor.timeToLive(7n, 0, true).keys.map(dec), ['a', 'c', 'c\u00ff']);
    assert.deepEqual(lessor.revoke(7n).map(dec), ['a', 'c', 'c\u00ff']);
    assert.equal(lessor.exists(7n), false);
    throwsCode(() => lessor.revoke(7n), LeaseErrorCode.NotFound);
    assert.throws(() => lessor.revoke(7n), { message: 'etcdserver: requested lease not found' });
    lessor.detach(7n, enc('a')); // the store's detach after a revoke is a no-op
  });

  test('attach to an unknown lease is refused', () => {
    throwsCode(() => new Lessor().attach(9n, enc('k')), LeaseErrorCode.NotFound);
  });

  test('attached keys are copies: the caller may reuse its buffer', () => {
    const lessor = new Lessor();
    lessor.grant(1n, 10, 0);
    const scratch = enc('xy');
    lessor.attach(1n, scratch.subarray(0, 1));
    scratch[0] = 'z'.charCodeAt(0);
    assert.deepEqual(lessor.revoke(1n).map(dec), ['x']);
  });

  test('leases() lists ids in ascending order', () => {
    const lessor = new Lessor();
    for (const id of [30n, 2n, 11n]) lessor.grant(id, 10, 0);
    assert.deepEqual(lessor.leases(), [2n, 11n, 30n]);
  });
});

describe('keep-alive and time to live', () => {
  test('only the primary accepts keep-alives', () => {
    const lessor = new Lessor();
    lessor.grant(1n, 10, 0);
    throwsCode(() => lessor.keepAlive(1n, 0), LeaseErrorCode.NotPrimary);
    lessor.promote(0, 0);
    assert.equal(lessor.keepAlive(1n, 1000).ttlSeconds, 10);
    lessor.demote();
    throwsCode(() => lessor.keepAlive(1n, 2000), LeaseErrorCode.NotPrimary);
  });

  test('keep-alive restarts the TTL; an expired or unknown lease is refused', () => {
    const lessor = primaryAt(0);
    lessor.grant(1n, 10, 0);
    assert.equal(lessor.timeToLive(1n, 0, false).remainingTtlSeconds, 10);
    assert.equal(lessor.timeToLive(1n, 4_500, false).remainingTtlSeconds, 5);
    lessor.keepAlive(1n, 8_000);
    assert.deepEqual(lessor.timeToLive(1n, 8_000, false), {
      id: 1n,
      grantedTtlSeconds: 10,
      remainingTtlSeconds: 10,
      keys: [],
    });
    assert.deepEqual(lessor.expired(17_999), []);
    throwsCode(() => lessor.keepAlive(1n, 18_000), LeaseErrorCode.Expired);
    assert.equal(lessor.timeToLive(1n, 30_000, false).remainingTtlSeconds, 0);
    throwsCode(() => lessor.keepAlive(2n, 0), LeaseErrorCode.NotFound);
    throwsCode(() => lessor.timeToLive(2n, 0, false), LeaseErrorCode.NotFound);
  });
});

describe('expiry', () => {
  test('a follower never expires leases on its own', () => {
    const follower = new Lessor();
    follower.grant(1n, 2, 0);
    assert.deepEqual(follower.expired(Number.MAX_SAFE_INTEGER), []);
    assert.ok(follower.exists(1n));
  });

  test('the primary offers expired ids in deadline order, bounded, and retries them', () => {
    const lessor = new Lessor({ minTtlSeconds: 1, expiredRetryMs: 3_000 });
    lessor.promote(0, 0);
    for (let i = 1; i <= 5; i++) lessor.grant(BigInt(i), 6 - i, 0); // lease 5 expires first
    assert.deepEqual(lessor.expired(999), []);
    assert.deepEqual(lessor.expired(3_000, 2), [5n, 4n]);
    assert.deepEqual(lessor.expired(3_000, 10), [3n]);
    assert.deepEqual(lessor.expired(3_500), []); // already offered; their revokes are in flight
    lessor.revoke(5n); // applied; 4 and 3 were lost with a leader change, say
    // Retried ids come back at their retry deadline, in heap order with the new ones.
    assert.deepEqual(lessor.expired(6_000), [2n, 1n, 3n, 4n]);
  });

  test('a keep-alive before the deadline keeps the lease out of expired()', () => {
    const lessor = primaryAt(0);
    lessor.grant(1n, 5, 0);
    lessor.keepAlive(1n, 4_000);
    assert.deepEqual(lessor.expired(8_999), []);
    assert.deepEqual(lessor.expired(9_000), [1n]);
  });
});

describe('promote and demote', () => {
  test('promote starts deadlines at now + TTL + extend', () => {
    const lessor = new Lessor();
    lessor.grant(1n, 10, 0);
    lessor.grant(2n, 20, 0);
    lessor.promote(50_000, 1_500);
    assert.equal(lessor.timeToLive(1n, 50_000, false).remainingTtlSeconds, 11);
    assert.deepEqual(lessor.expired(61_499), []);
    assert.deepEqual(lessor.expired(61_500), [1n]);
    lessor.revoke(1n);
    assert.deepEqual(lessor.expired(71_500), [2n]);
  });

  test('demote drops every deadline', () => {
    const lessor = primaryAt(0);
    lessor.grant(1n, 5, 0);
    lessor.demote();
    assert.deepEqual(lessor.expired(1e12), []);
    assert.equal(lessor.timeToLive(1n, 1e12, false).remainingTtlSeconds, 5);
  });

  test('promote spreads a pile of simultaneous expiries to the target rate', () => {
    const count = 3_000;
    const lessor = new Lessor();
    for (let i = 1; i <= count; i++) lessor.grant(BigInt(i), 60, 0);
    lessor.promote(0, 2_000);
    const deadlines: number[] = [];
    for (let t = 62_000; deadlines.length < count; t += 100) {
      for (const id of lessor.expired(t, count)) {
        lessor.revoke(id);
        deadlines.push(t);
      }
      assert.ok(t < 62_000 + 10_000, 'spread expiries all come within a few seconds');
    }
    deadlines.sort((a, b) => a - b);
    assert.equal(deadlines[0], 62_000, 'nothing expires before TTL + extend');
    const target = LEASE_PROMOTE_EXPIRIES_PER_SECOND_TARGET;
    for (let i = 0, j = 0; i < deadlines.length; i++) {
      while (j < deadlines.length && deadlines[j]! < deadlines[i]! + 1_000) j++;
      // +1 for the lease that opens a window, +100 for the 100 ms sampling of expired().
      assert.ok(j - i <= target + 101, `${j - i} expiries within one second`);
    }
  });
});

describe('checkpoints', () => {
  const HOUR_S = 3_600;

  test('a long lease is checkpointed each interval; a short one never', () => {
    const lessor = primaryAt(0);
    lessor.grant(1n, HOUR_S, 0);
    lessor.grant(2n, 300, 0); // not longer than the interval
    assert.deepEqual(lessor.checkpoints(299_999), []);
    const due = lessor.checkpoints(300_000);
    assert.deepEqual(due, [{ id: 1n, remainingTtlSeconds: HOUR_S - 300 }]);
    lessor.applyCheckpoint(due[0]!, 300_000); // schedules the next one
    assert.deepEqual(lessor.checkpoints(599_999), []);
    assert.deepEqual(lessor.checkpoints(600_000), [{ id: 1n, remainingTtlSeconds: HOUR_S - 600 }]);
  });

  test('a checkpointed remaining TTL survives a leader change', () => {
    const leader = primaryAt(0);
    const follower = new Lessor({ minTtlSeconds: 2, checkpointIntervalMs: 300_000 });
    for (const member of [leader, follower]) member.grant(1n, HOUR_S, 0);
    const due = leader.checkpoints(300_000);
    for (const member of [leader, follower]) member.applyCheckpoint(due[0]!, 300_000);
    leader.demote();
    follower.promote(310_000, 1_000); // new leader, 10 s later
    const expectedDeadlineMs = 310_000 + 1_000 + (HOUR_S - 300) * 1000;
    assert.deepEqual(follower.expired(expectedDeadlineMs - 1), []);
    assert.deepEqual(follower.expired(expectedDeadlineMs), [1n]);
  });

  test('without the checkpoint the new leader would restart the full TTL', () => {
    const follower = new Lessor({ checkpointingEnabled: false });
    follower.grant(1n, HOUR_S, 0);
    follower.promote(310_000, 1_000);
    assert.deepEqual(follower.expired(310_000 + 1_000 + (HOUR_S - 300) * 1000), []);
  });

  test('a keep-alive clears a checkpoint, locally and through the log', () => {
    const leader = primaryAt(0);
    const follower = new Lessor();
    for (const member of [leader, follower]) member.grant(1n, HOUR_S, 0);
    const due = leader.checkpoints(300_000);
    for (const member of [leader, follower]) member.applyCheckpoint(due[0]!, 300_000);
    const renewal = leader.keepAlive(1n, 400_000);
    assert.deepEqual(renewal, {
      ttlSeconds: HOUR_S,
      checkpoint: { id: 1n, remainingTtlSeconds: 0 },
    });
    assert.equal(leader.timeToLive(1n, 400_000, false).remainingTtlSeconds, HOUR_S);
    follower.applyCheckpoint(renewal.checkpoint!, 400_000);
    assert.equal(follower.timeToLive(1n, 400_000, false).remainingTtlSeconds, HOUR_S);
    assert.equal(leader.keepAlive(1n, 500_000).checkpoint, null, 'one clearing entry only');
  });

  test('a checkpoint for a revoked lease is ignored', () => {
    const lessor = new Lessor();
    lessor.applyCheckpoint({ id: 42n, remainingTtlSeconds: 5 }, 0);
    assert.equal(lessor.exists(42n), false);
  });
});

describe('snapshots', () => {
  test('round trip keeps leases, keys, checkpoints and the id counter', () => {
    const lessor = primaryAt(0);
    lessor.grant(0n, 100, 0);
    lessor.grant(9n, 3_600, 0);
    lessor.attach(9n, enc('k1'));
    lessor.attach(9n, enc('k0'));
    lessor.applyCheckpoint({ id: 9n, remainingTtlSeconds: 1_234 }, 0);
    const snapshot = lessor.toSnapshot();
    const restored = Lessor.fromSnapshot(structuredClone(snapshot));
    assert.deepEqual(restored.toSnapshot(), snapshot);
    assert.equal(restored.isPrimary(), false);
    assert.deepEqual(restored.timeToLive(9n, 0, true).keys.map(dec), ['k0', 'k1']);
    assert.equal(restored.timeToLive(9n, 0, false).remainingTtlSeconds, 1_234);
    assert.equal(restored.grant(0n, 5, 0).id, lessor.grant(0n, 5, 0).id, 'same next id');
  });

  test('restore replaces the table in place', () => {
    const lessor = new Lessor();
    lessor.grant(1n, 10, 0);
    lessor.restore({ version: 1, generatedIds: 0, leases: [] });
    assert.deepEqual(lessor.leases(), []);
  });
});

describe('replication', () => {
  type Op =
    | { kind: 'grant'; id: number; ttl: number }
    | { kind: 'revoke'; id: number }
    | { kind: 'attach'; id: number; key: number }
    | { kind: 'detach'; id: number; key: number }
    | { kind: 'checkpoint'; id: number; remaining: number };
  const id = fc.integer({ min: 0, max: 8 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('grant' as const), id, ttl: fc.integer({ min: 0, max: 100 }) }),
    fc.record({ kind: fc.constant('revoke' as const), id }),
    fc.record({ kind: fc.constant('attach' as const), id, key: fc.integer({ min: 0, max: 5 }) }),
    fc.record({ kind: fc.constant('detach' as const), id, key: fc.integer({ min: 0, max: 5 }) }),
    fc.record({
      kind: fc.constant('checkpoint' as const),
      id,
      remaining: fc.integer({ min: 0, max: 100 }),
    }),
  );

  function apply(lessor: Lessor, o: Op, nowMs: number): string {
    try {
      switch (o.kind) {
        case 'grant':
          return String(lessor.grant(BigInt(o.id), o.ttl, nowMs).id);
        case 'revoke':
          return lessor.revoke(BigInt(o.id)).map(dec).join(',');
        case 'attach':
          lessor.attach(BigInt(o.id), enc(`k${o.key}`));
          return 'ok';
        case 'detach':
          lessor.detach(BigInt(o.id), enc(`k${o.key}`));
          return 'ok';
        case 'checkpoint':
          lessor.applyCheckpoint({ id: BigInt(o.id), remainingTtlSeconds: o.remaining }, nowMs);
          return 'ok';
      }
    } catch (err) {
      if (err instanceof LeaseError) return err.code;
      throw err;
    }
  }

  test('primary and follower applying the same log agree, whatever the roles do', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.integer({ min: 0, max: 60 }), (ops, cut) => {
        const primary = primaryAt(0);
        const follower = new Lessor({ minTtlSeconds: 2, checkpointIntervalMs: 300_000 });
        ops.forEach((o, i) => {
          if (i === cut) follower.restore(structuredClone(follower.toSnapshot()));
          assert.equal(apply(primary, o, i * 1000), apply(follower, o, i * 1000));
          primary.expired(i * 1000); // local decisions must not touch replicated state
          primary.checkpoints(i * 1000);
        });
        assert.deepEqual(primary.toSnapshot(), follower.toSnapshot());
      }),
      { numRuns: 200 },
    );
  });
});
