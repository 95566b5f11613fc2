/**
 * A seed is a pure function of itself: the same seed replays the same run (trace hash, counters,
 * outcome), with or without readable tracing, and different seeds differ.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeed, runSeeds } from '../../src/sim/runner.js';

test('the same seed gives the same trace hash and the same run', async () => {
  for (const seed of [0, 1, 2, 31337]) {
    const a = await runSeed({ seed });
    const b = await runSeed({ seed });
    assert.equal(a.failure, null, `seed ${seed}: ${a.failure?.message}`);
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} replayed differently`);
    assert.deepEqual(
      [a.steps, a.messagesSent, a.virtualMs, a.writesAcked, a.readsServed, a.crashes, a.checks],
      [b.steps, b.messagesSent, b.virtualMs, b.writesAcked, b.readsServed, b.crashes, b.checks],
    );
    assert.ok(a.steps > 1000, `seed ${seed} ran only ${a.steps} events`);
    assert.ok(a.writesAcked > 0, `seed ${seed} acknowledged no write`);
  }
});

test('different seeds give different traces', async () => {
  const hashes = new Set<string>();
  for (let seed = 100; seed < 120; seed++) hashes.add((await runSeed({ seed })).traceHash);
  assert.equal(hashes.size, 20);
});

test('readable tracing does not change the run', async () => {
  const plain = await runSeed({ seed: 7 });
  const traced = await runSeed({ seed: 7, trace: true });
  assert.equal(traced.traceHash, plain.traceHash);
  assert.ok(traced.traceLines !== null && traced.traceLines.length > 100);
  assert.equal(plain.traceLines, null);
  assert.match(traced.traceLines.join('\n'), /leader term=/);
  const sunk: string[] = [];
  const viaSink = await runSeed({ seed: 7, trace: (line) => sunk.push(line) });
  assert.equal(viaSink.traceHash, plain.traceHash);
  assert.deepEqual(sunk, traced.traceLines);
});

test('a failing seed replays to the same violation', async () => {
  const found = (await runSeeds({ seeds: 100, bug: 'stale-read', stopAtFirst: true })).failures[0];
  assert.ok(found !== undefined, 'stale-read survived 100 seeds');
  const a = await runSeed({ seed: found.seed, bug: 'stale-read' });
  const b = await runSeed({ seed: found.seed, bug: 'stale-read', trace: true });
  assert.notEqual(a.failure, null);
  assert.deepEqual(a.failure, found.failure);
  assert.deepEqual(a.failure, b.failure);
  assert.equal(a.traceHash, b.traceHash);
});

test('--nodes fixes the voter count; max-steps bounds the safety phase', async () => {
  for (const voters of [3, 5, 7]) {
    const r = await runSeed({ seed: 5, voters });
    assert.equal(r.params.voters, voters);
    assert.equal(r.failure, null, r.failure?.message);
  }
  const short = await runSeed({ seed: 5, maxSteps: 500 });
  assert.equal(short.failure, null, short.failure?.message);
  assert.ok(short.virtualMs < (await runSeed({ seed: 5 })).virtualMs);
});
