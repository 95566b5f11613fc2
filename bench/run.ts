/**
 * `npm run bench`: the side-by-side benchmark. Builds tandem (`npx tsc -p tsconfig.json`), then
 * runs the load generator's own ceiling (null server), then real etcd (3 members) and tandem
 * (3 members, the compiled build) with the same generator and workloads, and prints one markdown
 * report (every cell, then tandem/etcd ratios per cell), also written to bench/out/.
 *
 *   npm run bench [-- --cell-ms 8000 --suites ceiling,etcd,tandem]
 *
 * Fairness: etcd and tandem run at the same time (both clusters up, one idle while the other is
 * measured) and are interleaved per cell, the order alternating cell by cell (etcd first on even
 * cells, tandem first on odd ones), so neither always gets the warmer or the quieter machine.
 * Bounded: every cell stops at its op count or its duration; the whole run has a deadline
 * (RUN_MS_MAX) after which clusters are stopped and the run fails. About 2.5 minutes by default
 * (16 cells of 8 s, the ceiling, build and cluster start).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchCluster } from './cluster.js';
import { startEtcdCluster } from './etcd-cluster.js';
import {
  type CellOptions,
  GET_KEYS_MAX,
  GrpcKvClient,
  markdownTable,
  type Row,
  runCell,
  type Workload,
} from './load.js';
import { measureOverhead } from './overhead.js';
import { processesCpuMs } from './procs.js';
import { buildTandem, firstLines, startTandemCluster } from './tandem-cluster.js';

const IN_FLIGHT = [1, 16, 64, 256] as const;
const WORKLOADS: readonly Workload[] = ['put', 'get'];
const VALUE_BYTES = 256;
const CELL_MS_DEFAULT = 8000;
const CELL_OPS_MAX = 100_000;
const CEILING_CELL_MS = 1000;
const WARMUP_OPS = 500;
const CONNECT_TIMEOUT_MS = 10_000;
/** The whole run, build and cluster start and stop included; the brief's budget is ~4 minutes. */
const RUN_MS_MAX = 240_000;

const benchDir = dirname(fileURLToPath(import.meta.url));

interface SuiteOutcome {
  readonly name: string;
  readonly rows: readonly Row[];
  /** Why the suite did not run (printed, never hidden). */
  readonly skipped: string | null;
  readonly notes: readonly string[];
}

const active = new Set<BenchCluster>();

async function ceilingSuite(): Promise<SuiteOutcome> {
  const rows = await measureOverhead({
    inFlight: IN_FLIGHT,
    etcd3InFlight: [64],
    cellMs: CEILING_CELL_MS,
    opsMax: 1_000_000,
  });
  return {
    name: 'generator ceiling',
    rows,
    skipped: null,
    notes: [
      'null server: a gRPC server in its own process answering at once; its rows are the most the generator can offer on this machine (both processes share the same cores).',
    ],
  };
}

/** One cluster under measurement: its client and the keys its put cells wrote. */
interface Target {
  readonly cluster: BenchCluster;
  readonly client: GrpcKvClient;
  readonly runId: string;
  readonly keys: Uint8Array[];
  readonly rows: Row[];
}

async function openTarget(cluster: BenchCluster): Promise<Target> {
  const client = new GrpcKvClient(cluster.endpoints);
  await client.ready(CONNECT_TIMEOUT_MS);
  const runId = `bench/${Date.now().toString(36)}`;
  // Warm-up (not reported): connections, JIT, the server's first allocations.
  await runCell(client, {
    workload: 'put',
    inFlight: 16,
    opsMax: WARMUP_OPS,
    durationMs: CELL_MS_DEFAULT,
    valueBytes: VALUE_BYTES,
    keyPrefix: `${runId}/warm`,
  });
  return { cluster, client, runId, keys: [], rows: [] };
}

/** One cell on one target; the members' CPU time is read around it from /proc. */
async function measureCell(
  target: Target,
  workload: Workload,
  inFlight: number,
  cellMs: number,
): Promise<void> {
  const options: CellOptions = {
    workload,
    inFlight,
    opsMax: CELL_OPS_MAX,
    durationMs: cellMs,
    valueBytes: VALUE_BYTES,
    keyPrefix: workload === 'put' ? `${target.runId}/${inFlight}` : target.runId,
    ...(workload === 'get' ? { getKeys: target.keys } : {}),
  };
  const pids = target.cluster.members.map((m) => m.process.pid);
  const cpuBeforeMs = processesCpuMs(pids);
  const result = await runCell(target.client, options);
  const serverCpuMs = processesCpuMs(pids) - cpuBeforeMs;
  const completed = result.ops + result.errors;
  if (workload === 'put') {
    for (const key of result.keysWritten) {
      if (target.keys.length < GET_KEYS_MAX) target.keys.push(key);
    }
  }
  target.rows.push({
    target: target.cluster.label,
    ...result,
    serverCpuUsPerOp: completed === 0 ? null : (serverCpuMs * 1000) / completed,
  });
  process.stdout.write(
    `  ${target.cluster.label} ${workload} @${inFlight}: ${result.opsPerSec.toFixed(0)} ops/s, ` +
      `p99 ${result.p99Ms.toFixed(2)} ms${result.errors > 0 ? `, ${result.errors} errors (${result.firstError})` : ''}\n`,
  );
}

/**
 * etcd and/or tandem: both clusters up together, cells interleaved, the order alternating per
 * cell. A cluster that fails to start is reported as skipped; the other still runs.
 */
async function clusterSuites(names: readonly string[], cellMs: number): Promise<SuiteOutcome[]> {
  const outcomes: SuiteOutcome[] = [];
  const targets: Target[] = [];
  const notes = new Map<string, string[]>();
  try {
    for (const name of names) {
      try {
        const cluster =
          name === 'etcd' ? await startEtcdCluster({ size: 3 }) : await startTandemCluster();
        active.add(cluster);
        targets.push(await openTarget(cluster));
        notes.set(name, [
          name === 'etcd'
            ? `${cluster.label} (Debian etcd-server), 3 members on 127.0.0.1, default settings (fsync on, heartbeat 100 ms, election 1000 ms)`
            : `${cluster.label}, 3 members on 127.0.0.1 from the compiled build (node bin/tandem.js), default config (fsync on, heartbeat 100 ms, election 1000 ms, linearizable reads, ack quorum)`,
        ]);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        outcomes.push({ name, rows: [], skipped: `could not start: ${message}`, notes: [] });
      }
    }
    let cellNo = 0;
    for (const workload of WORKLOADS) {
      for (const inFlight of IN_FLIGHT) {
        const order = cellNo % 2 === 0 ? targets : [...targets].reverse();
        for (const target of order) {
          if (workload === 'get' && target.keys.length === 0) continue;
          await measureCell(target, workload, inFlight, cellMs);
        }
        cellNo++;
      }
    }
  } finally {
    for (const target of targets) {
      target.client.close();
      await target.cluster.stop();
      active.delete(target.cluster);
    }
  }
  for (const target of targets) {
    const name = target.cluster.kind;
    outcomes.push({ name, rows: target.rows, skipped: null, notes: notes.get(name) ?? [] });
  }
  return outcomes;
}

const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}×` : '—');

/** tandem/etcd per cell: throughput (higher is better for tandem) and p99 (lower is better). */
function ratioTable(rows: readonly Row[]): string | null {
  const find = (prefix: string, workload: Workload, inFlight: number): Row | undefined =>
    rows.find(
      (r) => r.target.startsWith(prefix) && r.workload === workload && r.inFlight === inFlight,
    );
  const lines = [
    '| workload | in flight | etcd ops/s | tandem ops/s | ops/s tandem/etcd | etcd p99 ms | tandem p99 ms | p99 tandem/etcd |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  let cells = 0;
  for (const workload of WORKLOADS) {
    for (const inFlight of IN_FLIGHT) {
      const etcd = find('etcd ', workload, inFlight);
      const tandem = find('tandem ', workload, inFlight);
      if (etcd === undefined || tandem === undefined) continue;
      cells++;
      lines.push(
        `| ${workload} | ${inFlight} | ${etcd.opsPerSec.toFixed(0)} | ${tandem.opsPerSec.toFixed(0)} | ` +
          `${ratio(tandem.opsPerSec, etcd.opsPerSec)} | ${etcd.p99Ms.toFixed(2)} | ${tandem.p99Ms.toFixed(2)} | ` +
          `${ratio(tandem.p99Ms, etcd.p99Ms)} |`,
      );
    }
  }
  return cells === 0 ? null : lines.join('\n');
}

/** The machine's 1-minute load average when the run began (2 cores: above 2 is contention). */
const loadAtStart = loadavg()[0]!;

function report(
  outcomes: readonly SuiteOutcome[],
  startedAt: Date,
  cellMs: number,
  buildWarning: string | null,
): string {
  const cpu = cpus();
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;
  const lines = [
    `# tandem bench — ${startedAt.toISOString()}`,
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, Node ${process.version}. ` +
      `Workloads: put (unique keys, ${VALUE_BYTES}-byte values) then linearizable get (keys written by the puts), ` +
      `closed loop at ${IN_FLIGHT.join(', ')} requests in flight, each cell ≤ ${cellMs} ms and ≤ ${CELL_OPS_MAX} ops. ` +
      'Client: @grpc/grpc-js with hand-written protobuf, one HTTP/2 connection per endpoint, requests round-robin over endpoints. ' +
      '"client CPU µs/op" is the generator process\'s own CPU time per request; "server CPU µs/op" is the CPU time of all three members per request (from /proc). ' +
      'etcd and tandem run side by side, cells interleaved with the order alternating per cell (etcd first on even cells, tandem first on odd ones); ' +
      `the cluster not being measured sits idle. Run took ${elapsedS.toFixed(0)} s. ` +
      `Load average (1 min) at the start ${loadAtStart.toFixed(1)}, at the end ${loadavg()[0]!.toFixed(1)}: other work on the machine competes for the same cores.`,
    '',
    markdownTable(outcomes.flatMap((o) => o.rows)),
    '',
  ];
  const ratios = ratioTable(outcomes.flatMap((o) => o.rows));
  if (ratios !== null) lines.push('## tandem / etcd', '', ratios, '');
  for (const outcome of outcomes) {
    if (outcome.skipped !== null) lines.push(`- **${outcome.name}: skipped** — ${outcome.skipped}`);
    for (const note of outcome.notes) lines.push(`- ${outcome.name}: ${note}`);
  }
  if (buildWarning !== null) lines.push(`- build: ${buildWarning.split('\n')[0]}`);
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'cell-ms': { type: 'string', default: String(CELL_MS_DEFAULT) },
      suites: { type: 'string', default: 'ceiling,etcd,tandem' },
    },
  });
  const cellMs = Number(values['cell-ms']);
  if (!(Number.isInteger(cellMs) && cellMs >= 100 && cellMs <= 20_000)) {
    throw new Error(`--cell-ms must be an integer 100..20000, got ${values['cell-ms']}`);
  }
  const known = ['ceiling', 'etcd', 'tandem'];
  const chosen = values.suites.split(',').map((s) => s.trim());
  for (const name of chosen) {
    if (!known.includes(name))
      throw new Error(`unknown suite '${name}' (known: ${known.join(', ')})`);
  }

  const startedAt = new Date();
  let buildWarning: string | null = null;
  if (chosen.includes('tandem')) {
    process.stdout.write('build: npx tsc -p tsconfig.json…\n');
    buildWarning = buildTandem();
    if (buildWarning !== null) process.stdout.write(`  warning: ${firstLines(buildWarning)}\n`);
  }
  const outcomes: SuiteOutcome[] = [];
  if (chosen.includes('ceiling')) {
    process.stdout.write('suite ceiling…\n');
    outcomes.push(await ceilingSuite());
  }
  const clusters = known.filter((name) => name !== 'ceiling' && chosen.includes(name));
  if (clusters.length > 0) {
    process.stdout.write(`suites ${clusters.join(' + ')} (interleaved per cell)…\n`);
    for (const outcome of await clusterSuites(clusters, cellMs)) {
      if (outcome.skipped !== null)
        process.stdout.write(`  ${outcome.name} skipped: ${outcome.skipped}\n`);
      outcomes.push(outcome);
    }
  }
  const text = report(outcomes, startedAt, cellMs, buildWarning);
  const outDir = join(benchDir, 'out');
  mkdirSync(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(outDir, `bench-${stamp}.md`), text);
  writeFileSync(join(outDir, 'latest.md'), text);
  process.stdout.write(
    `\n${text}\nwritten to bench/out/bench-${stamp}.md and bench/out/latest.md\n`,
  );
  const failed = outcomes.some((o) => o.skipped !== null || o.rows.some((r) => r.errors > 0));
  return failed ? 1 : 0;
}

/** Stop every cluster still running, then exit: used by signals and the run deadline. */
async function abort(why: string, code: number): Promise<never> {
  process.stderr.write(`bench: ${why}; stopping clusters\n`);
  await Promise.allSettled([...active].map((cluster) => cluster.stop()));
  process.exit(code);
}

const deadline = setTimeout(() => void abort(`run exceeded ${RUN_MS_MAX} ms`, 3), RUN_MS_MAX);
deadline.unref();
process.once('SIGINT', () => void abort('interrupted', 130));
process.once('SIGTERM', () => void abort('terminated', 143));

try {
  process.exitCode = await main();
} catch (error) {
  process.stderr.write(
    `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  await Promise.allSettled([...active].map((cluster) => cluster.stop()));
  process.exitCode = 2;
}
