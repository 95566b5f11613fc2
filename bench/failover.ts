/**
 * `npm run bench:failover`: how long writes stop when the leader dies, for etcd and tandem
 * (3 members each, on loopback, default timing: heartbeat 100 ms, election 1000 ms).
 *
 * One trial: wait until the cluster is ready (every member up and caught up, one leader, a put
 * succeeds); run a writer (one put in flight, a short per-request deadline, rotating over all
 * endpoints on any error) until it has written steadily for a while; find the leader from the
 * members' own status (etcd: Maintenance.Status through the gateway, the member whose id is the
 * leader id; tandem: the admin endpoint's /status, isLeader); kill -9 it; measure the time from
 * the kill to the first write both issued and acknowledged after it. Then restart the killed
 * member on the same data and wait until it has caught up, before the next trial.
 *
 *   npm run bench:failover [-- --trials 10 --systems etcd,tandem]
 *
 * Resolution: a put parked on a follower that has no leader fails only at its deadline
 * (PUT_TIMEOUT_MS), so a figure can be up to that much late; the same for both systems.
 * Bounded: every wait has a timeout; the whole run has a deadline (RUN_MS_MAX).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sleep } from '../src/cli/local-net.js';
import type { BenchCluster, BenchMember } from './cluster.js';
import { startEtcdCluster } from './etcd-cluster.js';
import { ProbeClient } from './probe.js';
import { buildTandem, firstLines, startTandemCluster } from './tandem-cluster.js';

const TRIALS_DEFAULT = 10;
const TRIALS_MAX = 100;
/** Trials retried because the cluster was not steady before the kill, at most, per system. */
const NOT_STEADY_RETRIES_MAX = 3;
/** Per put: short, so that a put stuck on a leaderless member gives way to the next one. */
const PUT_TIMEOUT_MS = 250;
/** After an immediate failure (connection refused, "no leader"), before the next endpoint. */
const ERROR_BACKOFF_MS = 10;
const VALUE_BYTES = 64;
/** The writer runs this long (all writes succeeding) before the kill. */
const STEADY_MS = 1000;
/** A trial without a successful write this long after the kill counts as a failure. */
const RECOVERY_MS_MAX = 30_000;
const READY_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
const LEADER_POLL_MS = 50;
const RUN_MS_MAX = 15 * 60_000;

const benchDir = dirname(fileURLToPath(import.meta.url));

interface Trial {
  readonly trial: number;
  readonly killed: string;
  /** Kill to the first write issued and acknowledged after it; null if none came in time. */
  readonly writeGapMs: number | null;
  /** Kill to the first status poll that showed a new leader (resolution LEADER_POLL_MS). */
  readonly newLeaderMs: number | null;
  readonly newLeader: string | null;
  readonly failedPuts: number;
  readonly errorCounts: ReadonlyMap<string, number>;
}

/** A continuous writer: one put in flight; on an error, the next put goes to the next endpoint. */
class Writer {
  private endpoint = 0;
  private seq = 0;
  private stopped = false;
  private readonly value = Buffer.alloc(VALUE_BYTES, 0x61);
  /** performance.now() at each successful put's issue and acknowledgement. */
  readonly successes: { issuedMs: number; ackedMs: number }[] = [];
  failures = 0;
  firstError: string | null = null;
  /** Failed puts by message (addresses and timings stripped), for the report. */
  readonly errorCounts = new Map<string, number>();
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly client: ProbeClient,
    private readonly prefix: string,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const endpoints = this.client.endpoints.length;
    while (!this.stopped) {
      const issuedMs = performance.now();
      const key = Buffer.from(`${this.prefix}/${this.seq++}`);
      const error = await this.client.put(this.endpoint, key, this.value, PUT_TIMEOUT_MS);
      const ackedMs = performance.now();
      if (error === null) {
        this.successes.push({ issuedMs, ackedMs });
        continue;
      }
      this.failures++;
      this.firstError ??= error.message;
      const kind = error.message
        .replace(/,(remote_addr|LB pick|name resolution)[^,]*/g, '')
        .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:port')
        .replace(/\. Resolution note: .*$/, '')
        .replace(/after [\d.]+s/, 'after Ns');
      this.errorCounts.set(kind, (this.errorCounts.get(kind) ?? 0) + 1);
      this.endpoint = (this.endpoint + 1) % endpoints;
      if (ackedMs - issuedMs < ERROR_BACKOFF_MS) {
        await new Promise((resolve) => setTimeout(resolve, ERROR_BACKOFF_MS));
      }
    }
  }

  /** The first success issued at or after `ms`, or null. */
  firstIssuedAfter(ms: number): { issuedMs: number; ackedMs: number } | null {
    return this.successes.find((s) => s.issuedMs >= ms) ?? null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** The cluster was not steady before the kill: the trial is retried, not counted. */
class NotSteady extends Error {}

async function runTrial(cluster: BenchCluster, client: ProbeClient, trial: number): Promise<Trial> {
  await cluster.waitReady(READY_TIMEOUT_MS);
  await client.ready(CONNECT_TIMEOUT_MS);
  const writer = new Writer(client, `failover/${Date.now().toString(36)}/${trial}`);
  writer.start();
  let killed: BenchMember | null = null;
  try {
    await sleep(STEADY_MS);
    if (writer.failures > 0) {
      throw new NotSteady(`${writer.failures} puts failed before the kill: ${writer.firstError}`);
    }
    killed = await cluster.leader();
    if (killed === null) throw new NotSteady('no single leader before the kill');
    const failuresBefore = writer.failures;
    const killMs = performance.now();
    await cluster.kill(killed);
    // Watch for the new leader while the writer waits for its first success.
    let newLeader: BenchMember | null = null;
    let newLeaderMs: number | null = null;
    for (;;) {
      const now = performance.now();
      if (newLeader === null) {
        const seen = await cluster.leader();
        if (seen !== null && seen !== killed) {
          newLeader = seen;
          newLeaderMs = performance.now() - killMs;
        }
      }
      const success = writer.firstIssuedAfter(killMs);
      if ((success !== null && newLeader !== null) || now - killMs > RECOVERY_MS_MAX) break;
      await sleep(LEADER_POLL_MS);
    }
    await writer.stop();
    const success = writer.firstIssuedAfter(killMs);
    return {
      trial,
      killed: killed.name,
      writeGapMs: success === null ? null : success.ackedMs - killMs,
      newLeaderMs,
      newLeader: newLeader?.name ?? null,
      failedPuts: writer.failures - failuresBefore,
      errorCounts: writer.errorCounts,
    };
  } finally {
    await writer.stop();
    if (killed !== null && !killed.process.running) await cluster.restart(killed);
  }
}

/** Nearest-rank percentile of a sorted list (p99 of 10 samples is the largest). */
function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

interface SystemResult {
  readonly label: string;
  readonly trials: readonly Trial[];
  readonly error: string | null;
  readonly notes: readonly string[];
}

async function runSystem(
  start: () => Promise<BenchCluster>,
  name: string,
  trials: number,
  active: Set<BenchCluster>,
): Promise<SystemResult> {
  let cluster: BenchCluster | null = null;
  const done: Trial[] = [];
  const notes: string[] = [];
  try {
    cluster = await start();
    active.add(cluster);
    const client = new ProbeClient(cluster.endpoints);
    try {
      let retries = 0;
      for (let trial = 1; trial <= trials; trial++) {
        let result: Trial;
        try {
          result = await runTrial(cluster, client, trial);
        } catch (error) {
          if (!(error instanceof NotSteady) || ++retries > NOT_STEADY_RETRIES_MAX) throw error;
          process.stdout.write(`  ${cluster.label} trial ${trial}: retried (${error.message})\n`);
          notes.push(`trial ${trial} retried: not steady before the kill (${error.message})`);
          trial--;
          continue;
        }
        done.push(result);
        process.stdout.write(
          `  ${cluster.label} trial ${trial}: killed ${result.killed}, ` +
            `new leader ${result.newLeader ?? '—'} after ${result.newLeaderMs?.toFixed(0) ?? '—'} ms, ` +
            `next write after ${result.writeGapMs?.toFixed(0) ?? 'NONE'} ms (${result.failedPuts} failed puts)\n`,
        );
      }
    } finally {
      client.close();
    }
    return { label: cluster.label, trials: done, error: null, notes };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const logs =
      cluster === null
        ? ''
        : `\n${cluster.members.map((m) => `${m.name} (${m.logFile}):\n${m.process.tail(10)}`).join('\n')}`;
    process.stdout.write(`  ${name}: FAILED: ${message}${logs}\n`);
    return { label: cluster?.label ?? name, trials: done, error: message, notes };
  } finally {
    if (cluster !== null) {
      await cluster.stop();
      active.delete(cluster);
    }
  }
}

function summaryRow(result: SystemResult): string {
  const gaps = result.trials
    .map((t) => t.writeGapMs)
    .filter((g): g is number => g !== null)
    .sort((a, b) => a - b);
  const leaders = result.trials
    .map((t) => t.newLeaderMs)
    .filter((g): g is number => g !== null)
    .sort((a, b) => a - b);
  const ms = (n: number | undefined): string => (n === undefined ? '—' : n.toFixed(0));
  const failed = result.trials.length - gaps.length;
  return (
    `| ${result.label} | ${result.trials.length} | ${failed} | ${ms(gaps.length > 0 ? percentile(gaps, 50) : undefined)} | ` +
    `${ms(gaps.length > 0 ? percentile(gaps, 99) : undefined)} | ${ms(gaps[0])} | ${ms(gaps.at(-1))} | ` +
    `${ms(leaders.length > 0 ? percentile(leaders, 50) : undefined)} |`
  );
}

/** The machine's 1-minute load average when the run began (2 cores: above 2 is contention). */
const loadAtStart = loadavg()[0]!;

function report(results: readonly SystemResult[], startedAt: Date): string {
  const cpu = cpus();
  const lines = [
    `# tandem failover bench — ${startedAt.toISOString()}`,
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, Node ${process.version}. ` +
      "3 members on 127.0.0.1, heartbeat 100 ms, election 1000 ms (both systems' defaults). " +
      `Writer: one put in flight, ${PUT_TIMEOUT_MS} ms deadline per put, next endpoint on any error. ` +
      '"write gap" = kill -9 of the leader to the acknowledgement of the first put issued after the kill; ' +
      `"new leader seen" = kill to the first status poll (every ${LEADER_POLL_MS} ms) that names another leader. ` +
      'p99 is nearest-rank: with 10 trials it is the largest. ' +
      `Load average (1 min) at the start ${loadAtStart.toFixed(1)}, at the end ${loadavg()[0]!.toFixed(1)}.`,
    '',
    '| system | trials | no recovery | write gap p50 ms | p99 ms | min ms | max ms | new leader seen p50 ms |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
    ...results.map(summaryRow),
    '',
    '| system | trial | killed | new leader | new leader seen ms | write gap ms | failed puts |',
    '|---|--:|---|---|--:|--:|--:|',
  ];
  for (const result of results) {
    for (const t of result.trials) {
      lines.push(
        `| ${result.label} | ${t.trial} | ${t.killed} | ${t.newLeader ?? '—'} | ${t.newLeaderMs?.toFixed(0) ?? '—'} | ` +
          `${t.writeGapMs?.toFixed(0) ?? 'none'} | ${t.failedPuts} |`,
      );
    }
  }
  lines.push('');
  for (const result of results) {
    if (result.error !== null) lines.push(`- **${result.label}: stopped early** — ${result.error}`);
    for (const note of result.notes) lines.push(`- ${result.label}: ${note}`);
    const counts = new Map<string, number>();
    for (const t of result.trials) {
      for (const [kind, n] of t.errorCounts) counts.set(kind, (counts.get(kind) ?? 0) + n);
    }
    const kinds = [...counts].sort((a, b) => b[1] - a[1]).map(([kind, n]) => `${n}× \`${kind}\``);
    if (kinds.length > 0)
      lines.push(`- ${result.label}: failed puts, all trials: ${kinds.join('; ')}`);
  }
  return `${lines.join('\n')}\n`;
}

async function main(active: Set<BenchCluster>): Promise<number> {
  const { values } = parseArgs({
    options: {
      trials: { type: 'string', default: String(TRIALS_DEFAULT) },
      systems: { type: 'string', default: 'etcd,tandem' },
    },
  });
  const trials = Number(values.trials);
  if (!(Number.isInteger(trials) && trials >= 1 && trials <= TRIALS_MAX)) {
    throw new Error(`--trials must be 1..${TRIALS_MAX}, got ${values.trials}`);
  }
  const systems = values.systems.split(',').map((s) => s.trim());
  const starters: Record<string, () => Promise<BenchCluster>> = {
    etcd: () => startEtcdCluster({ size: 3 }),
    tandem: () => startTandemCluster(),
  };
  for (const name of systems) {
    if (!(name in starters)) throw new Error(`unknown system '${name}' (known: etcd, tandem)`);
  }
  const startedAt = new Date();
  if (systems.includes('tandem')) {
    process.stdout.write('build: npx tsc -p tsconfig.json, then tools/bundle-cli.mjs…\n');
    const warning = buildTandem();
    if (warning !== null) process.stdout.write(`  warning: ${firstLines(warning)}\n`);
  }
  const results: SystemResult[] = [];
  for (const name of systems) {
    process.stdout.write(`${name}: ${trials} trials…\n`);
    results.push(await runSystem(starters[name]!, name, trials, active));
  }
  const text = report(results, startedAt);
  const outDir = join(benchDir, 'out');
  mkdirSync(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(outDir, `failover-${stamp}.md`), text);
  writeFileSync(join(outDir, 'failover-latest.md'), text);
  process.stdout.write(`\n${text}\nwritten to bench/out/failover-${stamp}.md\n`);
  const failed = results.some(
    (r) => r.error !== null || r.trials.some((t) => t.writeGapMs === null),
  );
  return failed ? 1 : 0;
}

const active = new Set<BenchCluster>();

async function abort(why: string, code: number): Promise<never> {
  process.stderr.write(`bench:failover: ${why}; stopping clusters\n`);
  await Promise.allSettled([...active].map((cluster) => cluster.stop()));
  process.exit(code);
}

const deadline = setTimeout(() => void abort(`run exceeded ${RUN_MS_MAX} ms`, 3), RUN_MS_MAX);
deadline.unref();
process.once('SIGINT', () => void abort('interrupted', 130));
process.once('SIGTERM', () => void abort('terminated', 143));

try {
  process.exitCode = await main(active);
} catch (error) {
  process.stderr.write(
    `bench:failover: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  await Promise.allSettled([...active].map((cluster) => cluster.stop()));
  process.exitCode = 2;
}
