/**
 * One voter (`--nodes 1`): the founding voter is replaced, so every change hands the whole
 * quorum over and only the removed leader may know that the change committed. Seeds 0..199
 * violate nothing except the still open raft hole of FINDINGS.md #3 (a removed leader stops
 * leading before its successor learned the change committed), which the simulator names in the
 * failure. Anything else — a safety violation, or a stall without that signature, such as a
 * removed member the simulator stopped too early — fails here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeeds } from '../../src/sim/runner.js';
import { FINDING_3_OPEN_HOLE } from '../../src/sim/simulator.js';

const SEEDS = 200;

test(`seeds 0..${SEEDS - 1} --nodes 1: no violation but the open hole of FINDINGS.md #3`, async () => {
  const summary = await runSeeds({ seeds: SEEDS, start: 0, voters: 1 });
  assert.equal(summary.seedsRun, SEEDS);
  const other = summary.failures.filter(
    (r) => r.failure!.invariant !== 'liveness' || !r.failure!.message.includes(FINDING_3_OPEN_HOLE),
  );
  const report = other
    .map(
      (r) =>
        `seed ${r.seed}: ${r.failure!.invariant} ${r.failure!.message}\n  replay: npm run sim -- --seed ${r.seed} --trace --nodes 1`,
    )
    .join('\n');
  assert.equal(other.length, 0, `violations:\n${report}`);
  // The hole is rare (4 of these 200 seeds, under 1% of 3,000): most seeds must pass outright.
  assert.ok(summary.failures.length <= SEEDS / 20, `${summary.failures.length} seeds stalled`);
  assert.ok(summary.messagesSent > SEEDS * 500, 'the seeds sent too few messages to mean much');
});
