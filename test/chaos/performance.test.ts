/**
 * Behaviour, not timing: a long history of the size a chaos run produces is decided (not
 * `unknown`) within the default search budget, whether it is linearizable or not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Operation } from '../../src/chaos/history.js';
import { checkLinearizability } from '../../src/chaos/linearizability.js';
import { genLinearizable } from './gen.js';

const big = (seed: number) =>
  genLinearizable(seed, {
    ops: 10_000,
    processes: 10,
    keys: 5,
    valuesMax: 0,
    infoRate: 0.02,
    readRate: 0.5,
    casRate: 0.2,
    durationMsMax: 60,
    gapMsMax: 5,
  }).ops;

test('10,000 operations over 5 keys, 10 processes, unknown outcomes: decided ok', () => {
  const ops = big(101);
  assert.equal(ops.length, 10_000);
  assert.ok(ops.filter((op) => op.status === 'info').length >= 100, 'some unknown outcomes');
  assert.equal(new Set(ops.map((op) => op.key)).size, 5);
  const result = checkLinearizability(ops);
  assert.equal(result.verdict, 'ok', result.violations[0]?.text);
  for (const k of result.keys) assert.ok(k.opsSearched > 1000, `${k.key}: ${k.opsSearched}`);
});

test('the same history with one stale read near the end: decided violation, on that key', () => {
  const ops: Operation[] = big(102);
  const reads = ops.filter((op) => op.key === 'k3' && op.f === 'read' && op.status === 'ok');
  const victim = reads[Math.floor(reads.length * 0.9)]!;
  const old = reads[Math.floor(reads.length * 0.5)]!;
  assert.notEqual(victim.output, old.output);
  ops[victim.id] = { ...victim, output: old.output };
  const result = checkLinearizability(ops);
  assert.equal(result.verdict, 'violation');
  assert.deepEqual(
    result.keys.filter((k) => k.verdict !== 'ok').map((k) => [k.key, k.verdict]),
    [['k3', 'violation']],
  );
  assert.equal(result.violations[0]!.blocking.id, victim.id);
});
