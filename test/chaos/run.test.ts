/**
 * A bounded chaos run against a real 3-member cluster (processes on 127.0.0.1): clients record a
 * history while members are killed, paused and partitioned; the run must pass every check with
 * a history of a sane size and the report folder complete. (The target of 3 runs of
 * 45 s with different seeds in `npm test` is a later step: this one keeps `npm test` short.)
 *
 * TANDEM_CHAOS_KEEP=1 keeps the report folder and prints where it is.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseHistory } from '../../src/chaos/history.js';
import { runChaos } from '../../src/chaos/run.js';

const SEED = 20_240_611;
const TIME_MS = 15_000;

test(`chaos: 3 voters, ${TIME_MS / 1000} s, kill+pause+partition, seed ${SEED}`, {
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
      faults: ['kill', 'pause', 'partition'],
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
    assert.ok((checks.lostWrites?.acknowledgedWrites ?? 0) > 50, context);
    for (const file of [
      'history.jsonl',
      'faults.json',
      'plan.json',
      'result.json',
      'timeline.html',
    ]) {
      assert.ok(existsSync(join(outDir, file)), `${file} missing`);
    }
    for (const name of ['n1', 'n2', 'n3'])
      assert.ok(existsSync(join(outDir, 'logs', `${name}.log`)));
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
