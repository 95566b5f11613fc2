/**
 * Proof that the simulator can fail: each known bug in BUG_NAMES, switched on, is caught within
 * 2,000 seeds, and by the kind of invariant it breaks. The last bug is the liveness one (its name
 * is read from BUG_NAMES, the raft engineer chooses it).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUG_NAMES, type BugName } from '../../src/raft/types.js';
import type { InvariantName } from '../../src/sim/checker.js';
import { runSeeds } from '../../src/sim/runner.js';

const SEEDS_MAX = 2000;

const EXPECTED: Readonly<Record<string, readonly InvariantName[]>> = {
  // Figure 8: an old-term entry committed by counting replicas is later lost.
  'commit-old-term': ['leader-completeness', 'committed-stable', 'state-machine-safety'],
  // A restarted node votes twice in a term: two leaders, or a committed entry lost.
  'forget-vote': ['election-safety', 'leader-completeness', 'committed-stable', 'log-matching'],
  'stale-read': ['linearizable-read'],
  // Acknowledgements and votes leave before the write: a commit a crash undoes.
  'ack-before-durable': [
    'acked-entries-kept',
    'leader-completeness',
    'committed-stable',
    'state-machine-safety',
    'election-safety',
    'log-matching',
  ],
  // Appends land on a mismatching prefix: logs diverge.
  'skip-log-check': [
    'log-matching',
    'committed-stable',
    'state-machine-safety',
    'leader-completeness',
  ],
};

function expectedFor(bug: BugName): readonly InvariantName[] {
  if (bug === BUG_NAMES[BUG_NAMES.length - 1]) return ['liveness'];
  const kinds = EXPECTED[bug];
  assert.ok(kinds !== undefined, `no expected invariant listed for bug ${bug}: add it here`);
  return kinds;
}

for (const bug of BUG_NAMES) {
  test(`bug ${bug} is caught within ${SEEDS_MAX} seeds`, async () => {
    const summary = await runSeeds({ seeds: SEEDS_MAX, bug, stopAtFirst: true });
    const failure = summary.failures[0];
    assert.ok(failure !== undefined, `bug ${bug} survived ${SEEDS_MAX} seeds`);
    const f = failure.failure!;
    assert.notEqual(f.kind, 'crash', `seed ${failure.seed} crashed the simulator: ${f.message}`);
    assert.ok(
      expectedFor(bug).includes(f.invariant!),
      `bug ${bug} was caught at seed ${failure.seed} by ${f.invariant}, expected one of ` +
        `${expectedFor(bug).join(', ')}: ${f.message}`,
    );
    // The same seed without the bug passes: the violation is the bug's, not a false alarm.
    const clean = await runSeeds({ seeds: 1, start: failure.seed });
    assert.equal(clean.failures.length, 0, `seed ${failure.seed} fails without bug ${bug} too`);
  });
}
