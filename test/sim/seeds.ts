/** Shared by the seed-range tests: run a range and fail with every violation's replay line. */
import assert from 'node:assert/strict';
import { runSeeds } from '../../src/sim/runner.js';

export async function assertSeedsPass(
  start: number,
  seeds: number,
  options: { readonly member?: boolean } = {},
): Promise<void> {
  const summary = await runSeeds({ seeds, start, ...options });
  const flag = options.member === true ? ' --member' : '';
  assert.equal(summary.seedsRun, seeds);
  const report = summary.failures
    .map(
      (r) =>
        `seed ${r.seed}: ${r.failure!.kind} ${r.failure!.message}\n  replay: npm run sim -- --seed ${r.seed} --trace${flag}`,
    )
    .join('\n');
  assert.equal(summary.failures.length, 0, `violations:\n${report}`);
  assert.ok(summary.messagesSent > seeds * 1000, 'the seeds sent too few messages to mean much');
}
