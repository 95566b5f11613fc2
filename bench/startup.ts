/**
 * Start-up times, each repeated and reported as median and p90 (nearest rank):
 * 1. CLI: `node bin/tandem.js --help` against a bare `node -e 0` (runs alternate), so the
 *    difference is what loading tandem's CLI costs.
 * 2. Member restart: in an idle 3-member cluster with a small data directory (KEYS puts), stop
 *    a follower (SIGTERM, a clean stop), then time from spawning it again to its own client
 *    port answering a serializable Range with OK (polled every POLL_MS). The same on etcd
 *    (`--systems tandem,etcd`, the default), side by side, so the figure comes with a ratio.
 *    A tandem member serves clients only once it has confirmed its role with the leader, so
 *    this includes that round.
 *
 *   node --import tsx bench/startup.ts [--repeats 10] [--systems tandem,etcd] [--no-build]
 *
 * Also written to bench/out/startup-latest.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { REPO_DIR, TANDEM_BIN } from '../src/cli/local-cluster.js';
import { sleep } from '../src/cli/local-net.js';
import { STARTUP_TIMELINE_KEYS } from '../src/cli/startup-timeline.js';
import type { BenchCluster, BenchMember } from './cluster.js';
import { startEtcdCluster } from './etcd-cluster.js';
import { countRangeKvs, encodeRange, GrpcKvClient, runCell } from './load.js';
import { buildTandem, firstLines, startTandemCluster } from './tandem-cluster.js';

const REPEATS_DEFAULT = 10;
const REPEATS_MAX = 100;
const SYSTEMS = ['tandem', 'etcd'] as const;
/** Keys in the data directory before the restarts (a small one). */
const KEYS = 200;
const VALUE_BYTES = 256;
const POLL_MS = 5;
const CONNECT_PROBE_TIMEOUT_MS = 200;
const RANGE_DEADLINE_MS = 500;
/** From spawn to an answer; a member that takes longer is a failure, not a figure. */
const RESTART_TIMEOUT_MS = 30_000;
const READY_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 30_000;
const CLUSTER_STOP_TIMEOUT_MS = 10_000;

const benchDir = dirname(fileURLToPath(import.meta.url));
const identity = (buf: Buffer): Buffer => buf;

/** Median and p90 by nearest rank. */
function summary(samplesMs: readonly number[]): { medianMs: number; p90Ms: number } {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const rank = (q: number): number => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
  return { medianMs: rank(0.5), p90Ms: rank(0.9) };
}

/** Wall time of one run of `argv` (must exit 0), in ms. */
function timeRun(argv: readonly string[]): number {
  const startNs = process.hrtime.bigint();
  const result = spawnSync(argv[0]!, argv.slice(1), {
    cwd: REPO_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: CLI_TIMEOUT_MS,
  });
  const ms = Number(process.hrtime.bigint() - startNs) / 1e6;
  if (result.status !== 0) {
    throw new Error(
      `${argv.join(' ')} exited ${result.status}: ${String(result.stderr).slice(0, 400)}`,
    );
  }
  return ms;
}

/** True once something accepts a TCP connection on `endpoint` (host:port). */
function portOpen(endpoint: string): Promise<boolean> {
  const [host, port] = [
    endpoint.slice(0, endpoint.lastIndexOf(':')),
    Number(endpoint.slice(endpoint.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(CONNECT_PROBE_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** A serializable Range of `key` on `client`: null on OK, else the error. */
function serializableRange(client: grpc.Client, key: Buffer): Promise<Error | null> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/etcdserverpb.KV/Range',
      identity,
      identity,
      encodeRange(key, true),
      new grpc.Metadata(),
      { deadline: Date.now() + RANGE_DEADLINE_MS },
      (error, response) => {
        if (error) resolve(error);
        else if (response === undefined || countRangeKvs(response) !== 1) {
          resolve(new Error('the Range did not find the key'));
        } else resolve(null);
      },
    );
  });
}

/**
 * ms from `spawn()` until the member's client port answers a serializable Range with OK. The
 * port is probed over TCP first, so the gRPC channel never starts in its reconnect backoff.
 */
async function timeRestart(
  cluster: BenchCluster,
  member: BenchMember,
  key: Buffer,
): Promise<{ ms: number; portOpenMs: number; refusals: number; lastRefusal: string | null }> {
  const startNs = process.hrtime.bigint();
  await cluster.restart(member);
  const elapsedMs = (): number => Number(process.hrtime.bigint() - startNs) / 1e6;
  while (!(await portOpen(member.clientEndpoint))) {
    if (!member.process.running)
      throw new Error(`${member.name} exited: ${member.process.tail(10)}`);
    if (elapsedMs() > RESTART_TIMEOUT_MS)
      throw new Error(`${member.name}: port closed after ${RESTART_TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
  const portOpenMs = elapsedMs();
  const client = new grpc.Client(member.clientEndpoint, grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.initial_reconnect_backoff_ms': 10,
    'grpc.max_reconnect_backoff_ms': 50,
  });
  try {
    let refusals = 0;
    let lastRefusal: string | null = null;
    for (;;) {
      const refusal = await serializableRange(client, key);
      if (refusal === null) break;
      refusals++;
      lastRefusal = refusal.message;
      if (elapsedMs() > RESTART_TIMEOUT_MS) {
        throw new Error(
          `${member.name}: no OK within ${RESTART_TIMEOUT_MS} ms (last: ${lastRefusal})`,
        );
      }
      await sleep(POLL_MS);
    }
    return { ms: elapsedMs(), portOpenMs, refusals, lastRefusal };
  } finally {
    client.close();
  }
}

interface RestartOutcome {
  readonly label: string;
  readonly samplesMs: readonly number[];
  /** tandem: each restart's start-up timeline from its log (src/cli/startup-timeline.ts). */
  readonly timelines: readonly Record<string, number>[];
}

/** The phases a tandem member logs, in order, then when its role was confirmed. */
const TIMELINE_KEYS = [...STARTUP_TIMELINE_KEYS, 'roleConfirmed', 'cpuMs'] as const;

/**
 * A tandem member's start-up timeline from the log it wrote since `fromByte`: the 'tandem member
 * serving' line's phase ends and the 'role confirmed' line's time (ms since its process
 * started). Null when the lines are missing (an older build).
 */
function readTimeline(logFile: string, fromByte: number): Record<string, number> | null {
  let serving: Record<string, number> | null = null;
  let confirmedMs: number | null = null;
  for (const text of readFileSync(logFile, 'utf8').slice(fromByte).split('\n')) {
    if (!text.startsWith('{')) continue;
    const line = JSON.parse(text) as {
      msg?: string;
      startupMs?: Record<string, number>;
      sinceStartMs?: number;
    };
    if (line.msg === 'tandem member serving' && line.startupMs !== undefined)
      serving = line.startupMs;
    if (line.msg === 'role confirmed with the leader' && line.sinceStartMs !== undefined)
      confirmedMs = line.sinceStartMs;
  }
  if (serving === null || confirmedMs === null) return null;
  return { ...serving, roleConfirmed: confirmedMs };
}

async function restartTrials(system: 'tandem' | 'etcd', repeats: number): Promise<RestartOutcome> {
  const cluster =
    system === 'etcd'
      ? await startEtcdCluster({ size: 3, stopTimeoutMs: CLUSTER_STOP_TIMEOUT_MS })
      : await startTandemCluster({ stopTimeoutMs: CLUSTER_STOP_TIMEOUT_MS });
  const stopOnSignal = (): void => void cluster.stop().then(() => process.exit(130));
  process.once('SIGINT', stopOnSignal);
  try {
    const client = new GrpcKvClient(cluster.endpoints);
    await client.ready(READY_TIMEOUT_MS);
    const prefix = `startup/${Date.now().toString(36)}`;
    const seed = await runCell(client, {
      workload: 'put',
      inFlight: 16,
      opsMax: KEYS,
      durationMs: READY_TIMEOUT_MS,
      valueBytes: VALUE_BYTES,
      keyPrefix: prefix,
    });
    client.close();
    if (seed.ops !== KEYS)
      throw new Error(`${system}: wrote ${seed.ops} of ${KEYS} keys (${seed.firstError})`);
    const key = Buffer.from(`${prefix}/0`);
    const samplesMs: number[] = [];
    const timelines: Record<string, number>[] = [];
    for (let i = 0; i < repeats; i++) {
      await cluster.waitReady(READY_TIMEOUT_MS);
      const leader = await cluster.leader();
      const followers = cluster.members.filter((m) => m !== leader);
      const member = followers[i % followers.length]!;
      await member.process.stop(CLUSTER_STOP_TIMEOUT_MS);
      const logBytes = system === 'tandem' ? statSync(member.logFile).size : 0;
      const t = await timeRestart(cluster, member, key);
      samplesMs.push(t.ms);
      const timeline = system === 'tandem' ? readTimeline(member.logFile, logBytes) : null;
      if (timeline !== null) timelines.push(timeline);
      process.stdout.write(
        `  ${cluster.label} restart ${i + 1}/${repeats} (${member.name}): ${t.ms.toFixed(0)} ms ` +
          `(port open at ${t.portOpenMs.toFixed(0)} ms, then ${t.refusals} refused Ranges` +
          `${t.lastRefusal === null ? '' : `, the last: ${t.lastRefusal}`})\n` +
          (timeline === null
            ? ''
            : `    its own clock, ms since its process started: ${TIMELINE_KEYS.map((k) => `${k} ${timeline[k] ?? '?'}`).join(', ')}\n`),
      );
    }
    return { label: cluster.label, samplesMs, timelines };
  } finally {
    process.off('SIGINT', stopOnSignal);
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      repeats: { type: 'string', default: String(REPEATS_DEFAULT) },
      systems: { type: 'string', default: SYSTEMS.join(',') },
      'no-build': { type: 'boolean', default: false },
    },
  });
  const repeats = Number(values.repeats);
  if (!(Number.isInteger(repeats) && repeats >= 1 && repeats <= REPEATS_MAX)) {
    throw new Error(`--repeats must be 1..${REPEATS_MAX}`);
  }
  const systems = values.systems.split(',').map((s) => s.trim());
  for (const s of systems) {
    if (!(SYSTEMS as readonly string[]).includes(s))
      throw new Error(`unknown system '${s}' (known: ${SYSTEMS.join(', ')})`);
  }
  const startedAt = new Date();
  const loadStart = loadavg()[0]!;
  if (!values['no-build']) {
    process.stdout.write('build: npx tsc -p tsconfig.json, then tools/bundle-cli.mjs…\n');
    const warning = buildTandem();
    if (warning !== null) process.stdout.write(`  warning: ${firstLines(warning)}\n`);
  }

  process.stdout.write(`CLI: ${repeats} × (node -e 0, node bin/tandem.js --help), alternating…\n`);
  const bare: number[] = [];
  const help: number[] = [];
  timeRun([process.execPath, TANDEM_BIN, '--help']); // warm the file cache: not counted
  for (let i = 0; i < repeats; i++) {
    bare.push(timeRun([process.execPath, '-e', '0']));
    help.push(timeRun([process.execPath, TANDEM_BIN, '--help']));
  }
  const restarts: RestartOutcome[] = [];
  for (const system of SYSTEMS.filter((s) => systems.includes(s))) {
    process.stdout.write(`restart: ${system}, ${repeats} follower restarts…\n`);
    restarts.push(await restartTrials(system, repeats));
  }

  const row = (what: string, samplesMs: readonly number[]): string => {
    const s = summary(samplesMs);
    return `| ${what} | ${samplesMs.length} | ${s.medianMs.toFixed(1)} | ${s.p90Ms.toFixed(1)} |`;
  };
  const lines = [
    `# tandem start-up — ${startedAt.toISOString()}`,
    '',
    `Node ${process.version}; load average (1 min) ${loadStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end. ` +
      `Restart: an idle 3-member cluster holding ${KEYS} keys of ${VALUE_BYTES} bytes; a follower stopped with SIGTERM, then timed from spawn to its client port answering a serializable Range with OK (polled every ${POLL_MS} ms).`,
    '',
    '| measure | runs | median ms | p90 ms |',
    '|---|--:|--:|--:|',
    row('`node -e 0`', bare),
    row('`node bin/tandem.js --help`', help),
    ...restarts.map((r) => row(`restart → serializable Range OK: ${r.label}`, r.samplesMs)),
    '',
    `\`--help\` costs ${(summary(help).medianMs - summary(bare).medianMs).toFixed(1)} ms over a bare node at the median (${(summary(help).medianMs / summary(bare).medianMs).toFixed(2)}×).`,
  ];
  const tandem = restarts.find((r) => r.label.startsWith('tandem'));
  const etcd = restarts.find((r) => r.label.startsWith('etcd'));
  if (tandem !== undefined && etcd !== undefined) {
    const t = summary(tandem.samplesMs);
    const e = summary(etcd.samplesMs);
    lines.push(
      `Restart tandem / etcd: ${(t.medianMs / e.medianMs).toFixed(2)}× at the median, ${(t.p90Ms / e.p90Ms).toFixed(2)}× at p90.`,
    );
  }
  for (const r of restarts.filter((o) => o.timelines.length > 0)) {
    lines.push(
      '',
      `${r.label}: where a restart's time went, by its own log (median over ${r.timelines.length} restarts; ms since the process started at the end of each phase, CPU ms used by then):`,
      '',
      `| ${TIMELINE_KEYS.join(' | ')} |`,
      `|${TIMELINE_KEYS.map(() => '--:').join('|')}|`,
      `| ${TIMELINE_KEYS.map((k) => summary(r.timelines.map((t) => t[k] ?? Number.NaN)).medianMs.toFixed(0)).join(' | ')} |`,
    );
  }
  const text = `${lines.join('\n')}\n`;
  const outDir = join(benchDir, 'out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'startup-latest.md'), text);
  process.stdout.write(`\n${text}\nwritten to bench/out/startup-latest.md\n`);
}

try {
  await main();
} catch (error) {
  process.stderr.write(
    `bench/startup: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 2;
}
