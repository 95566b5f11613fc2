/** The command line: summary line, replay line, and exit codes (0 ok, 1 violation of safety or liveness, 2 crash, 64 usage). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { BUG_NAMES } from '../../src/raft/types.js';

function sim(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/sim/cli.ts', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

test('passing seeds: exit 0 and one summary line with throughput', () => {
  const r = sim('--seeds', '5', '--start', '10');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^sim: 5 seeds, 0 violations, [\d.]+ seeds\/s, \d+ msgs\/s/m);
});

test('a safety violation: exit 1, with the seed, invariant, message and replay command', () => {
  const r = sim('--seeds', '50', '--bug', 'stale-read', '--stop');
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /FAIL seed=\d+: safety violation/);
  assert.match(r.out, /invariant: linearizable-read/);
  assert.match(r.out, /replay: {4}npm run sim -- --seed \d+ --trace --bug stale-read/);
  assert.match(r.out, /^sim: \d+ seeds, 1 violation,/m);
});

test('a liveness failure: exit 1, named as liveness', () => {
  const r = sim('--seeds', '200', '--bug', BUG_NAMES[BUG_NAMES.length - 1]!, '--stop');
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /FAIL seed=\d+: liveness violation/);
  assert.match(r.out, /invariant: liveness/);
});

test('one seed with --trace prints the parameters and the trace', () => {
  const r = sim('--seed', '3', '--trace', '--nodes', '3');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^seed=3 voters=3 /m);
  assert.match(r.out, /ms n\d+ leader term=\d+/);
  assert.match(r.out, /^seed=3 ok: /m);
});

test('a bad command line: exit 64', () => {
  assert.equal(sim('--bug', 'no-such-bug').code, 64);
  assert.equal(sim('--nodes', '4').code, 64);
  assert.equal(sim('--frobnicate').code, 64);
});
