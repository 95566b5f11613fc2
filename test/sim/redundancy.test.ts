/**
 * Redundancy mode (src/sim/redundancy.ts): the production RedundancyDriver on every member of a
 * member-mode cluster with hot, warm and cold standbys, under long failures, flapping members,
 * partitions and leader crashes. Same seed, same run; clean seeds pass every redundancy
 * invariant; each injected policy bug is caught by an invariant (not a simulator crash) within a
 * bounded number of seeds; and the seed that exposed the re-added-member snapshot livelock
 * (fixed in src/server/member.ts) stays fixed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InvariantName } from '../../src/sim/checker.js';
import type { PolicyBugName } from '../../src/sim/redundancy.js';
import { runSeed, runSeeds } from '../../src/sim/runner.js';

/**
 * Policy bugs are caught within this many seeds (first catches today: seeds 27, 15 and 98;
 * double-promote needs a new leader to plan in the short window before it applies the change it
 * inherited, which the targeted crash-after-change fault makes likelier but still rare).
 */
const BUG_SEEDS_MAX: Readonly<Record<PolicyBugName, number>> = {
  'promote-lagging': 60,
  'trust-flapping': 40,
  'double-promote': 150,
  'trim-without-quorum-check': 150,
};
const CLEAN_SEEDS = 12;

test('redundancy mode: the same seed gives the same trace hash and the same run', async () => {
  for (const seed of [3, 17]) {
    const a = await runSeed({ seed, redundancy: true });
    const b = await runSeed({ seed, redundancy: true });
    assert.equal(a.failure, null, `seed ${seed}: ${a.failure?.message}`);
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} replayed differently`);
    assert.deepEqual(
      [a.steps, a.messagesSent, a.virtualMs, a.writesAcked, a.confChanges, a.checks],
      [b.steps, b.messagesSent, b.virtualMs, b.writesAcked, b.confChanges, b.checks],
    );
    assert.match(a.paramsLine, / redundancy=on members=n1:V-/);
    assert.match(a.paramsLine, / restore-bound=\d+ms /);
    assert.notEqual(
      a.traceHash,
      (await runSeed({ seed, member: true })).traceHash,
      'ran plain member mode',
    );
  }
});

test(`redundancy mode: seeds 0..${CLEAN_SEEDS - 1} pass, with replacements and policy changes`, async () => {
  let confChanges = 0;
  let acked = 0;
  const summary = await runSeeds({
    seeds: CLEAN_SEEDS,
    redundancy: true,
    onResult: (r) => {
      confChanges += r.confChanges;
      acked += r.writesAcked;
    },
  });
  const f = summary.failures[0];
  assert.equal(f, undefined, `seed ${f?.seed}: ${f?.failure?.message}`);
  // The driver really acts: several membership changes per seed (stage, replace, refresh...).
  assert.ok(confChanges >= 2 * CLEAN_SEEDS, `only ${confChanges} conf changes`);
  assert.ok(acked > 0, 'no client traffic');
});

test("redundancy mode: a seed with an operator's late voters shows etcd's workflow: added, replaced, trimmed", async () => {
  // Seed 80: member add of n9 at 43% of the safety phase, started 4.0 s later (past replaceAfter).
  const r = await runSeed({ seed: 80, redundancy: true, trace: true });
  assert.equal(r.failure, null, r.failure?.message);
  assert.match(r.paramsLine, / late-voters=n9@/);
  const trace = r.traceLines!.join('\n');
  assert.match(trace, /operator: member add n9/);
  assert.match(trace, /policy replace: voter member 9 unreachable/);
  assert.match(trace, /policy trim: \d voters of \d wanted, all healthy/);
});

test('redundancy mode: a traced seed shows the policy replacing the voter that failed for good', async () => {
  const r = await runSeed({ seed: 3, redundancy: true, trace: true });
  assert.equal(r.failure, null, r.failure?.message);
  const trace = r.traceLines!.join('\n');
  assert.match(trace, /nemesis: n\d fails for good/);
  assert.match(trace, /policy replace: voter n\d unreachable/);
});

// Each by its direct invariant, raised where the driver hands the change to Raft (before the
// driver proposed outside its promise, those were swallowed and only factor-restored, a
// consequence, caught the first two).
const CAUGHT: readonly { bug: PolicyBugName; expected: readonly InvariantName[] }[] = [
  // The least caught-up standby, promoted without waiting: a laggard voter.
  { bug: 'promote-lagging', expected: ['promote-caught-up'] },
  // Trusted as soon as heard: a flapping member is promoted within stabilityMs of a silence.
  { bug: 'trust-flapping', expected: ['flapping-churn'] },
  // A change planned while one is pending (the driver's own assertion stops it from reaching
  // Raft; the simulator confirms that a change was in flight or pending in Raft).
  { bug: 'double-promote', expected: ['one-change-at-a-time'] },
  // A trim with voters down (two late voters, not started, make the count odd): the driver's
  // quorum assertion stops it before Raft, reported as the invariant it protects.
  { bug: 'trim-without-quorum-check', expected: ['quorum-at-change'] },
];

for (const c of CAUGHT) {
  const seeds = BUG_SEEDS_MAX[c.bug];
  test(`redundancy mode: policy bug ${c.bug} is caught within ${seeds} seeds`, async () => {
    const summary = await runSeeds({
      seeds,
      redundancy: true,
      policyBug: c.bug,
      stopAtFirst: true,
    });
    const failure = summary.failures[0];
    assert.ok(failure !== undefined, `${c.bug} survived ${seeds} seeds`);
    const f = failure.failure!;
    assert.notEqual(f.kind, 'crash', `seed ${failure.seed} crashed the simulator: ${f.message}`);
    assert.ok(
      c.expected.includes(f.invariant!),
      `${c.bug} was caught at seed ${failure.seed} by ${f.invariant}: ${f.message}`,
    );
    const clean = await runSeed({ seed: failure.seed, redundancy: true });
    assert.equal(clean.failure, null, `seed ${failure.seed} fails without ${c.bug} too`);
  });
}

/**
 * Seeds that failed before a fix of the driver or the detector (each fails with that fix undone,
 * by the invariant named; see src/sim/README.md "Redundancy mode").
 */
const REGRESSIONS: readonly { seed: number; why: string }[] = [
  {
    seed: 41,
    why: 'a warm refresh (a learner added) proposed while a conf change entry was unapplied (one-change-at-a-time)',
  },
  {
    seed: 280,
    why: "a new leader refreshed a warm standby while its predecessor's change was unapplied (one-change-at-a-time)",
  },
  {
    seed: 213,
    why: 'a new leader demoted a voter it heard, on a stale recorded silence (flapping-churn)',
  },
  // The seeds of the first report (then: factor-restored only, the violation swallowed by the
  // driver, which stayed acting for ever): flapping-churn for 392, one-change-at-a-time for the
  // rest. Other fixes in the tree since moved their runs; they stay as clean seeds.
  { seed: 392, why: 'a new leader replaced a voter on silence heard as a follower' },
  { seed: 427, why: 'a new leader refreshed a warm standby while a change was pending' },
  { seed: 581, why: 'a new leader refreshed a warm standby while a change was pending' },
  { seed: 633, why: 'a new leader refreshed a warm standby while a change was pending' },
  {
    seed: 48,
    why: 'two voters just added (member add, not started) counted healthy (Raft calls a new peer active): a trim lost the quorum (quorum-at-change)',
  },
  {
    seed: 255,
    why: "a leader elected after two voters were added seeded them healthy from the registry's default record: a trim lost the quorum (quorum-at-change)",
  },
];

for (const { seed, why } of REGRESSIONS) {
  test(`regression: seed ${seed}: ${why}`, async () => {
    const r = await runSeed({ seed, redundancy: true });
    assert.equal(
      r.failure,
      null,
      `${r.failure?.message}\n  replay: npm run sim -- --seed ${seed} --trace --member --redundancy`,
    );
  });
}

test('regression: a warm standby re-added after a removal it missed catches up (seed 35)', async () => {
  // It restarted with a configuration listing it; the leader's only snapshot predated its
  // re-addition; raft refused it and an idle leader took no newer one (liveness, before the
  // member snapshots after adding a member its latest snapshot does not list).
  const r = await runSeed({ seed: 35, redundancy: true });
  assert.equal(r.failure, null, r.failure?.message);
});
