import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Prng } from '../../src/util/prng.js';

test('the same seed gives the same stream', () => {
  const a = new Prng(42);
  const b = new Prng(42);
  for (let i = 0; i < 1000; i++) assert.equal(a.u32(), b.u32());
});

test('different seeds give different streams', () => {
  const a = new Prng(1);
  const b = new Prng(2);
  let same = 0;
  for (let i = 0; i < 100; i++) if (a.u32() === b.u32()) same++;
  assert.ok(same < 3, `streams of seeds 1 and 2 agree on ${same} of 100 draws`);
});

test('int(bound) stays in range and covers it', () => {
  const rng = new Prng(7);
  const seen = new Array<number>(10).fill(0);
  for (let i = 0; i < 10_000; i++) {
    const v = rng.int(10);
    assert.ok(Number.isInteger(v) && v >= 0 && v < 10);
    seen[v]! += 1;
  }
  for (const count of seen) assert.ok(count > 800 && count < 1200, `bucket count ${count}`);
  assert.throws(() => rng.int(0), RangeError);
});
