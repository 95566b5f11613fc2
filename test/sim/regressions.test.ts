/**
 * Seeds that once failed, kept as regression tests (STYLE: a failing seed becomes a test). Each
 * names what it found; all must pass now.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeed } from '../../src/sim/runner.js';

const REGRESSIONS: readonly {
  seed: number;
  why: string;
  options?: { stepsDuringReady?: boolean; voters?: number };
}[] = [
  {
    seed: 717,
    why: 'a snapshot stepped during a Ready switched the configuration early (FINDINGS.md #6)',
    options: { stepsDuringReady: true },
  },
  { seed: 1, why: 'a learner added after bootstrap never caught up (FINDINGS.md #2)' },
  {
    seed: 8032,
    why: 'removed members with stale configurations kept a lagging voter away for ever',
  },
  {
    seed: 10573,
    why: 'checker false alarm: a stale leader may truncate a committed copy beyond a learner commit',
  },
  { seed: 8573, why: 'a learner refused a second pre-addition snapshot (FINDINGS.md #2)' },
  {
    seed: 19358,
    why: 'a learner refused a second pre-addition snapshot (FINDINGS.md #2)',
    options: { stepsDuringReady: true },
  },
  {
    seed: 14,
    why: 'a replaced sole voter stepped down before its successor could win (FINDINGS.md #3)',
    options: { voters: 1 },
  },
  {
    seed: 537,
    why: 'the simulator stopped a removed leader its still-joint successor needed (FINDINGS.md #3)',
    options: { voters: 1 },
  },
  {
    seed: 567,
    why: "an earlier change's grace timer stopped a member removed moments before (FINDINGS.md #3)",
    options: { voters: 1 },
  },
  {
    seed: 2079,
    why: 'checker false alarm: a sole voter led a term in memory only, then crashed before its disk had it',
    options: { voters: 1 },
  },
  {
    seed: 11872,
    why: 'a lagging member whose configuration excluded the leader stayed at a higher term (FINDINGS.md #5)',
    options: { stepsDuringReady: true },
  },
];

function flags(options: { stepsDuringReady?: boolean; voters?: number } = {}): string {
  let out = options.stepsDuringReady === true ? ' --steps-during-ready' : '';
  if (options.voters !== undefined) out += ` --nodes ${options.voters}`;
  return out;
}

for (const { seed, why, options } of REGRESSIONS) {
  test(`seed ${seed}: ${why}`, async () => {
    const r = await runSeed({ seed, ...options });
    assert.equal(
      r.failure,
      null,
      `${r.failure?.message}\n  replay: npm run sim -- --seed ${seed} --trace${flags(options)}`,
    );
  });
}
