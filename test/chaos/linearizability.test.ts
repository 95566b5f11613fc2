/**
 * Hand-made histories with a known verdict: the classic anomalies must be rejected with an
 * explanation that names the culprit; tricky linearizable ones (concurrency, unknown outcomes)
 * must pass. Every verdict is also confirmed by the naive reference.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Operation } from '../../src/chaos/history.js';
import { checkLinearizability, opsToSearch } from '../../src/chaos/linearizability.js';
import { isLinearizableNaive } from '../../src/chaos/reference.js';
import { build, cas, r, w } from './gen.js';

function expectViolation(ops: Operation[], blocking: { f: string; process: number }) {
  assert.equal(isLinearizableNaive(ops), false, 'the reference agrees it is not linearizable');
  const result = checkLinearizability(ops);
  assert.equal(result.verdict, 'violation');
  assert.equal(result.violations.length, 1);
  const v = result.violations[0]!;
  assert.equal(v.blocking.f, blocking.f);
  assert.equal(v.blocking.process, blocking.process);
  assert.match(v.text, /no linearization exists/);
  return v;
}

function expectOk(ops: Operation[]) {
  assert.equal(isLinearizableNaive(ops), true, 'the reference agrees it is linearizable');
  const result = checkLinearizability(ops);
  assert.equal(result.verdict, 'ok', result.violations[0]?.text);
  return result;
}

// --- must be rejected -------------------------------------------------------------------------

test('stale read: a read returns an old value after a newer write completed', () => {
  const v = expectViolation(
    build([w(0, 'x', 1, 0, 10), w(1, 'x', 2, 20, 30), r(2, 'x', 1, 40, 50)]),
    { f: 'read', process: 2 },
  );
  assert.equal(v.key, 'x');
  assert.deepEqual(
    v.prefix.map((op) => op.input),
    [1, 2],
  );
  assert.equal(v.stateAfterPrefix, 2);
  assert.match(v.text, /read x → 1/);
  assert.match(v.text, /register holds 2/);
});

test('stale read by another client after it saw the new value (non-monotonic reads)', () => {
  expectViolation(
    build([
      w(0, 'x', 1, 0, 10),
      w(1, 'x', 2, 15, 100), // concurrent with both reads
      r(2, 'x', 2, 20, 30),
      r(3, 'x', 1, 40, 50),
    ]),
    { f: 'read', process: 3 },
  );
});

test('lost write: an acknowledged write is not visible to a later read', () => {
  const v = expectViolation(build([w(0, 'x', 1, 0, 10), r(1, 'x', null, 20, 30)]), {
    f: 'read',
    process: 1,
  });
  assert.match(v.text, /read x → nil/);
});

test('wrong compare-and-set: cas succeeded though the value differed', () => {
  const v = expectViolation(
    build([
      w(0, 'x', 2, 0, 10),
      w(0, 'x', 1, 12, 18),
      cas(1, 'x', 2, 3, 20, 30),
      r(2, 'x', 3, 40, 50),
    ]),
    { f: 'cas', process: 1 },
  );
  assert.match(v.text, /it expected 2 but the register holds 1/);
  const never = expectViolation(build([w(0, 'x', 1, 0, 10), cas(1, 'x', 2, 3, 20, 30)]), {
    f: 'cas',
    process: 1,
  });
  assert.match(never.text, /it expected 2, a value no operation on the key ever wrote/);
});

test('a read of a value never written', () => {
  const v = expectViolation(build([w(0, 'x', 1, 0, 10), r(1, 'x', 7, 5, 30)]), {
    f: 'read',
    process: 1,
  });
  assert.match(v.text, /a value no operation on the key ever wrote/);
});

test('an unknown write does not excuse a value coming back after it was overwritten', () => {
  expectViolation(
    build([
      w(0, 'x', 1, 0, 10),
      w(1, 'x', 2, 5, 0, 'info'),
      r(2, 'x', 1, 20, 30),
      r(2, 'x', 2, 40, 50),
      r(3, 'x', 1, 60, 70), // 1 cannot come back: its write completed before 2 was seen
    ]),
    { f: 'read', process: 3 },
  );
});

test('a failed write never took effect: reading its value is a violation', () => {
  expectViolation(build([w(0, 'x', 1, 0, 10, 'fail'), r(1, 'x', 1, 20, 30)]), {
    f: 'read',
    process: 1,
  });
});

test('P-compositionality: only the broken key is reported', () => {
  const ops = build([
    w(0, 'a', 1, 0, 10),
    w(1, 'b', 1, 0, 10),
    r(2, 'a', 1, 20, 30),
    r(3, 'b', null, 20, 30),
  ]);
  const result = checkLinearizability(ops);
  assert.equal(result.verdict, 'violation');
  assert.deepEqual(
    result.keys.map((k) => [k.key, k.verdict]),
    [
      ['a', 'ok'],
      ['b', 'violation'],
    ],
  );
});

// --- must pass --------------------------------------------------------------------------------

test('concurrent reads may see the old or the new value of an overlapping write', () => {
  expectOk(
    build([
      w(0, 'x', 1, 0, 10),
      w(1, 'x', 2, 20, 40),
      r(2, 'x', 2, 22, 30),
      r(3, 'x', 1, 25, 35), // linearized before the write, though invoked after the other read
    ]),
  );
});

test('reads in the opposite of invocation order, against two concurrent writes', () => {
  // Both writes overlap both reads; the later-invoked write is linearized first.
  expectOk(
    build([w(0, 'x', 1, 0, 50), w(1, 'x', 2, 5, 50), r(2, 'x', 1, 60, 70), r(3, 'x', 1, 75, 80)]),
  );
});

test('touching operations (one completes as the other is invoked) are concurrent', () => {
  // Equal times carry no order: the read may be linearized before the write.
  expectOk(build([w(0, 'x', 1, 0, 10), r(1, 'x', null, 10, 20)]));
  expectViolation(build([w(0, 'x', 1, 0, 10), r(1, 'x', null, 10.001, 20)]), {
    f: 'read',
    process: 1,
  });
});

test('an unknown-outcome write that is later observed', () => {
  expectOk(
    build([
      w(0, 'x', 1, 0, 10),
      w(1, 'x', 2, 15, 0, 'info'),
      r(2, 'x', 1, 20, 30),
      r(3, 'x', 2, 400, 410), // took effect long after its client gave up
    ]),
  );
});

test('an unknown-outcome write that is never observed', () => {
  const ops = build([
    w(0, 'x', 1, 0, 10),
    w(1, 'x', 2, 15, 0, 'info'),
    r(2, 'x', 1, 20, 30),
    r(3, 'x', 1, 40, 50),
  ]);
  const result = expectOk(ops);
  // It is not even searched: no operation can observe the value 2.
  assert.equal(result.keys[0]!.opsDropped, 1);
});

test('an unknown-outcome cas that took effect, observed through a later cas', () => {
  expectOk(
    build([
      w(0, 'x', 1, 0, 10),
      cas(1, 'x', 1, 5, 20, 0, 'info'),
      cas(2, 'x', 5, 6, 40, 50),
      r(3, 'x', 6, 60, 70),
    ]),
  );
});

test('an unknown cas whose compare cannot hold is simply left out', () => {
  expectOk(build([w(0, 'x', 1, 0, 10), cas(1, 'x', 9, 5, 20, 0, 'info'), r(2, 'x', 1, 30, 40)]));
});

test('failed operations and unknown reads constrain nothing', () => {
  const ops = build([
    w(0, 'x', 1, 0, 10),
    w(1, 'x', 9, 12, 14, 'fail'),
    cas(2, 'x', 1, 7, 15, 18, 'fail'),
    r(3, 'x', 42, 16, 0, 'info'),
    r(4, 'x', 1, 20, 30),
  ]);
  const result = expectOk(ops);
  assert.equal(result.keys[0]!.opsSearched, 2);
  assert.equal(opsToSearch(ops).length, 2);
});

test('a chain of concurrent compare-and-sets', () => {
  expectOk(
    build([
      cas(0, 'x', null, 1, 0, 30),
      cas(1, 'x', 1, 2, 5, 30),
      cas(2, 'x', 2, 3, 10, 30),
      r(3, 'x', 3, 31, 40),
      r(4, 'x', null, 0, 2),
    ]),
  );
});

test('an empty history and a history of only failures are linearizable', () => {
  assert.equal(checkLinearizability([]).verdict, 'ok');
  assert.equal(checkLinearizability(build([w(0, 'x', 1, 0, 1, 'fail')])).verdict, 'ok');
});

// --- budget -----------------------------------------------------------------------------------

test('an exhausted step budget gives unknown, never ok', () => {
  const ops = build([w(0, 'x', 1, 0, 10), w(1, 'x', 2, 0, 10), r(2, 'x', 1, 20, 30)]);
  const tight = checkLinearizability(ops, { stepsPerKeyMax: 2 });
  assert.equal(tight.verdict, 'unknown');
  assert.equal(tight.keys[0]!.unknownReason, 'steps');
  assert.equal(checkLinearizability(ops).verdict, 'ok');
  const broken = build([w(0, 'x', 1, 0, 10), w(1, 'x', 2, 20, 30), r(2, 'x', 1, 40, 50)]);
  assert.equal(checkLinearizability(broken, { stepsPerKeyMax: 3 }).verdict, 'unknown');
});

test('an exhausted cache budget gives unknown', () => {
  const ops = build([w(0, 'x', 1, 0, 10), w(1, 'x', 2, 0, 10), r(2, 'x', 1, 20, 30)]);
  const result = checkLinearizability(ops, { cacheBytesPerKeyMax: 1 });
  assert.equal(result.verdict, 'unknown');
  assert.equal(result.keys[0]!.unknownReason, 'cache');
  assert.throws(() => checkLinearizability(ops, { stepsPerKeyMax: 0 }), {
    code: 'CHECK_INPUT_INVALID',
  });
});
