/**
 * Bounded chaos runs against a real cluster: clients record a history while members are
 * killed, paused, partitioned (both ways and one way), slowed, made lossy, restarted, made to
 * fail a WAL fsync, to tear a write, to find a bit flipped in their WAL, and while members are
 * promoted and demoted; a lease holder lets leases expire. Each run must pass every check with a
 * history of a sane size and the report folder complete. Three runs of 45 s, one after the other
 * (each is a whole cluster: in parallel they would starve each other on a 2-core machine):
 *
 *   A  kernel networking (namespaces, nftables) when root, 3 voters + 1 hot standby;
 *   B  kernel networking when root, 3 voters;
 *   C  the transport's test-mode rules, 3 voters + 1 hot standby (the non-root fallback).
 *
 * Kernel networking needs root and the Debian packages iproute2 and nftables; without them A and
 * B run on the transport's rules too, and their names say why.
 *
 * The seeds are chosen so that together the plans draw every fault kind (first test).
 * TANDEM_CHAOS_KEEP=1 keeps the report folders and prints where they are.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseHistory } from '../../src/chaos/history.js';
import { kernelNetUnavailable } from '../../src/chaos/netns.js';
import { FAULT_KINDS, planFaults } from '../../src/chaos/plan.js';
import { runChaos } from '../../src/chaos/run.js';

const TIME_MS = 45_000;
/** Null when namespaces and nftables work here, else why not (not root, a package missing). */
const KERNEL_WHY = await kernelNetUnavailable();
const KERNEL = KERNEL_WHY === null;
const BY_KERNEL = KERNEL ? 'kernel' : 'transport';
const RUNS = [
  { name: 'A', seed: 876, standbys: 1, net: BY_KERNEL },
  { name: 'B', seed: 31, standbys: 0, net: BY_KERNEL },
  { name: 'C', seed: 661, standbys: 1, net: 'transport' },
] as const;

test('chaos: the runs below plan every fault kind between them', () => {
  const planned = RUNS.flatMap((r) =>
    planFaults({
      seed: r.seed,
      voters: 3,
      members: 3 + r.standbys,
      durationMs: TIME_MS,
      kinds: FAULT_KINDS,
    }).map((s) => s.kind),
  );
  assert.deepEqual(new Set(planned), new Set(FAULT_KINDS));
});

function namespacesOfThisProcess(): string[] {
  if (!KERNEL) return [];
  const list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return list.split('\n').filter((l) => l.startsWith(`tdm-${process.pid}-`));
}

for (const RUN of RUNS) {
  const why = RUN.name !== 'C' && !KERNEL ? ` (no kernel networking: ${KERNEL_WHY})` : '';
  test(`chaos ${RUN.name}: net=${RUN.net}${why}, 3 voters + ${RUN.standbys} standby, ${TIME_MS / 1000} s, every kind, seed ${RUN.seed}`, {
    timeout: 240_000,
  }, async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'tandem-chaos-test-'));
    const notes: string[] = [];
    const members = ['n1', 'n2', 'n3', 'n4'].slice(0, 3 + RUN.standbys);
    try {
      const outcome = await runChaos({
        voters: 3,
        standbys: RUN.standbys,
        timeMs: TIME_MS,
        clients: 8,
        keys: 4,
        faults: FAULT_KINDS,
        seed: RUN.seed,
        net: RUN.net,
        outDir,
        onNote: (text) => notes.push(text),
      });
      const context = `${outcome.line}\n${notes.join('\n')}\nreport: ${outDir}`;
      assert.equal(outcome.verdict, 'pass', context);
      assert.equal(outcome.exitCode, 0);
      assert.equal(outcome.net, RUN.net, context);
      assert.match(outcome.line, new RegExp(`\\[net=${RUN.net}`));
      // Sane: clients did work, and not absurdly much (a runaway loop would show here).
      assert.ok(outcome.opsCount >= 300, `only ${outcome.opsCount} operations\n${context}`);
      assert.ok(outcome.opsCount <= 200_000, `${outcome.opsCount} operations\n${context}`);
      const applied = outcome.nemesis?.applied ?? [];
      assert.ok(applied.length >= 4, `only ${applied.length} faults applied\n${context}`);
      assert.deepEqual(outcome.nemesis?.anomalies, []);
      const checks = outcome.report!.checks;
      assert.equal(checks.linearizability?.verdict, 'ok');
      assert.equal(checks.lostWrites?.verdict, 'ok');
      assert.equal(checks.watches?.verdict, 'ok');
      assert.equal(checks.leases?.verdict, 'ok');
      assert.ok((checks.leases?.leasesChecked ?? 0) >= 2, context);
      assert.ok((checks.lostWrites?.acknowledgedWrites ?? 0) > 100, context);
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
      const logs = members.map((n) => readFileSync(join(outDir, 'logs', `${n}.log`), 'utf8'));
      // Link faults went the way the run says: the kernel's nftables, or the transport's rules.
      for (const f of applied.filter((a) => a.kind === 'partition' || a.kind === 'lossy')) {
        assert.equal(f.outcome, RUN.net === 'kernel' ? 'kernel (nftables)' : 'transport rules');
      }
      // Disk faults were not vacuous.
      if (applied.some((f) => f.kind === 'disk')) {
        assert.ok(
          logs.some((l) => l.includes('member stopped on a storage failure')),
          context,
        );
      }
      for (const f of applied.filter((a) => a.kind === 'bitflip')) {
        assert.match(f.outcome ?? '', /repaired from the mirror/, context);
      }
      // With a standby, the redundancy policy acted (an automatic replacement after a long
      // enough kill, or an operator's membership change that the nemesis made).
      if (RUN.standbys > 0) {
        assert.ok(
          logs.some((l) => /"action":"(replace|promote|demote|standby)"/.test(l)),
          `no membership change happened\n${context}`,
        );
      }
      const events = parseHistory(readFileSync(join(outDir, 'history.jsonl'), 'utf8'));
      assert.equal(events.filter((e) => e.type === 'invoke').length, outcome.opsCount);
      const finals = new Set(
        events.filter((e) => e.f === 'read' && e.type === 'ok').map((e) => e.key),
      );
      assert.equal(finals.size, 4);
      // Everything the run created in the kernel is gone.
      assert.deepEqual(namespacesOfThisProcess(), []);
    } finally {
      if (process.env.TANDEM_CHAOS_KEEP === '1')
        process.stderr.write(`chaos report kept: ${outDir}\n`);
      else rmSync(outDir, { recursive: true, force: true });
    }
  });
}
