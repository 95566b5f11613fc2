/**
 * Bounded chaos runs against a real 3-member cluster (processes on 127.0.0.1): clients record a
 * history while members are killed, paused, partitioned, slowed, restarted and made to fail a
 * WAL fsync, and a lease holder lets leases expire; each run must pass every check with a
 * history of a sane size and the report folder complete. Three seeds of 20 s, one after the other (each run is a whole
 * cluster: in parallel they would starve each other on a 2-core CI machine). The 3 runs
 * of 45 s are longer than `npm test` can afford: 20 runs of 60 s are in VERIFICATION.md.
 *
 * TANDEM_CHAOS_KEEP=1 keeps the report folder and prints where it is.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseHistory } from '../../src/chaos/history.js';
import { FAULT_KINDS, planFaults } from '../../src/chaos/plan.js';
import { runChaos } from '../../src/chaos/run.js';

/** Chosen so that each 20 s plan has a disk fault and together they have every kind. */
const SEEDS = [144, 151, 293] as const;
const TIME_MS = 20_000;
const FAULTS = FAULT_KINDS;

test('chaos: the seeds below plan every fault kind, a disk fault in each run', () => {
  const planned = SEEDS.map((seed) =>
    planFaults({ seed, voters: 3, durationMs: TIME_MS, kinds: FAULTS }).map((s) => s.kind),
  );
  for (const kinds of planned) assert.ok(kinds.includes('disk'), kinds.join(','));
  assert.deepEqual(new Set(planned.flat()), new Set(FAULT_KINDS));
});

for (const SEED of SEEDS) {
  test(`chaos: 3 voters, ${TIME_MS / 1000} s, ${FAULTS.join('+')}, seed ${SEED}`, {
    timeout: 120_000,
  }, async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'tandem-chaos-test-'));
    const notes: string[] = [];
    try {
      const outcome = await runChaos({
        voters: 3,
        timeMs: TIME_MS,
        clients: 8,
        keys: 4,
        faults: FAULTS,
        seed: SEED,
        outDir,
        onNote: (text) => notes.push(text),
      });
      const context = `${outcome.line}\n${notes.join('\n')}\nreport: ${outDir}`;
      assert.equal(outcome.verdict, 'pass', context);
      assert.equal(outcome.exitCode, 0);
      // Sane: clients did work, and not absurdly much (a runaway loop would show here).
      assert.ok(outcome.opsCount >= 200, `only ${outcome.opsCount} operations\n${context}`);
      assert.ok(outcome.opsCount <= 100_000, `${outcome.opsCount} operations\n${context}`);
      assert.ok((outcome.nemesis?.applied.length ?? 0) >= 1, `no fault was applied\n${context}`);
      const checks = outcome.report!.checks;
      assert.equal(checks.linearizability?.verdict, 'ok');
      assert.equal(checks.lostWrites?.verdict, 'ok');
      assert.equal(checks.watches?.verdict, 'ok');
      assert.equal(checks.leases?.verdict, 'ok');
      assert.ok((checks.leases?.leasesChecked ?? 0) >= 2, context);
      assert.ok((checks.lostWrites?.acknowledgedWrites ?? 0) > 50, context);
      for (const file of [
        'history.jsonl',
        'faults.json',
        'plan.json',
        'result.json',
        'timeline.html',
        'leases.json',
      ]) {
        assert.ok(existsSync(join(outDir, file)), `${file} missing`);
      }
      for (const name of ['n1', 'n2', 'n3'])
        assert.ok(existsSync(join(outDir, 'logs', `${name}.log`)));
      // A disk fault was not vacuous: the member's WAL fsync failed and it stopped.
      if (outcome.nemesis?.applied.some((f) => f.kind === 'disk')) {
        const logs = ['n1', 'n2', 'n3'].map((n) =>
          readFileSync(join(outDir, 'logs', `${n}.log`), 'utf8'),
        );
        assert.ok(
          logs.some((l) => l.includes('member stopped on a storage failure')),
          `a disk fault stopped no member\n${context}`,
        );
      }
      const events = parseHistory(readFileSync(join(outDir, 'history.jsonl'), 'utf8'));
      assert.equal(events.filter((e) => e.type === 'invoke').length, outcome.opsCount);
      // The final reads are in the history: one ok read per key after the fault phase.
      const finals = new Set(
        events.filter((e) => e.f === 'read' && e.type === 'ok').map((e) => e.key),
      );
      assert.equal(finals.size, 4);
    } finally {
      if (process.env.TANDEM_CHAOS_KEEP === '1')
        process.stderr.write(`chaos report kept: ${outDir}\n`);
      else rmSync(outDir, { recursive: true, force: true });
    }
  });
}
