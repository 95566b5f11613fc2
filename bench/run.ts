/**
 * `npm run bench`: the side-by-side benchmark. Builds tandem (tsc, then the bundled CLI), then
 * runs the load generators' own ceiling (null server), then real etcd (3 members) and tandem
 * (3 members, the compiled build) with the same generators and workloads, and prints one
 * markdown report (every cell, then tandem/etcd ratios per cell, then read-only Txn against
 * Range on each system), also written to bench/out/.
 *
 *   npm run bench [-- --cell-ms 5000 --suites ceiling,etcd,tandem
 *                     --workloads put,get,get-serializable,txn-read --in-flight 1,16,64,256
 *                     --generators 1]
 *
 * Cells: every workload (load.ts WORKLOADS) at every in-flight count, in that order (puts
 * first). Read workloads read SEED_KEYS keys written before the first cell. `--generators N`:
 * each cell runs on N load-generator processes at once (bench/generators.ts; in flight split
 * between them, results merged), so one saturated client does not cap the servers.
 *
 * Per cell, besides throughput and latency: the CPU time of all three members per request
 * (/proc), and for tandem each member's event-loop delay p99 (tandem_event_loop_delay_seconds
 * scraped from its admin /metrics before and after the cell; etcd: n/a), with the share of the
 * cell its event-loop thread waited for a core (runq, /proc schedstat: starvation, not work).
 *
 * Fairness: etcd and tandem run at the same time (both clusters up, one idle while the other is
 * measured) and are interleaved per cell, the order alternating cell by cell (etcd first on even
 * cells, tandem first on odd ones), so neither always gets the warmer or the quieter machine.
 * Bounded: every cell stops at its op count or its duration; the whole run has a deadline
 * (runDeadlineMs: grows with the cells chosen) after which clusters are stopped and the run
 * fails. About 4 minutes by default (32 cells of 5 s, the ceiling, build and cluster start).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchCluster } from './cluster.js';
import { startEtcdCluster } from './etcd-cluster.js';
import {
  GENERATORS_MAX,
  GeneratorPool,
  type PoolCellOptions,
  type ReadKeySet,
} from './generators.js';
import {
  IN_FLIGHT_MAX,
  isReadWorkload,
  markdownTable,
  READ_KEYS_MAX,
  type Row,
  WORKLOADS,
  type Workload,
} from './load.js';
import { loopDelayQuantile, type MemberScrape, scrapeMember } from './member-metrics.js';
import { startNullServer } from './null-server.js';
import { mainThreadSched, processesCpuMs } from './procs.js';
import { buildTandem, firstLines, startTandemCluster } from './tandem-cluster.js';

const IN_FLIGHT_DEFAULT: readonly number[] = [1, 16, 64, 256];
const VALUE_BYTES = 256;
const CELL_MS_DEFAULT = 5000;
const CELL_MS_MAX = 20_000;
const CELL_OPS_MAX = 100_000;
const CEILING_CELL_MS = 1000;
const CEILING_WARMUP_MS = 1000;
/**
 * Warm-up before the first cell, not reported: V8 is still compiling tandem's hot paths for the
 * first seconds of load (with 500 warm-up puts, its compiler threads cost 200-350 µs per put in
 * the early cells, bench:profile's thread table), which etcd, compiled Go, never pays. Both
 * systems get the same warm-up.
 */
const WARMUP_MS = 8000;
const WARMUP_IN_FLIGHT = 64;
const WARMUP_OPS_MAX = 200_000;
/** Keys written before the first cell for the read workloads to read. */
const SEED_KEYS = 1000;
const SEED_IN_FLIGHT = 64;
const SEED_MS_MAX = 30_000;
/** The event-loop delay quantile printed per member. */
const LOOP_QUANTILE = 0.99;
/** Build, cluster starts and stops, warm-up and seeding: the part of a run that is not cells. */
const RUN_FIXED_MS = 200_000;
/** Per measured cell beyond its duration: scrapes, /proc, the generators' replies. */
const CELL_OVERHEAD_MS = 3000;

const benchDir = dirname(fileURLToPath(import.meta.url));

interface Plan {
  readonly cellMs: number;
  readonly suites: readonly string[];
  readonly workloads: readonly Workload[];
  readonly inFlight: readonly number[];
  readonly generators: number;
}

interface SuiteOutcome {
  readonly name: string;
  readonly rows: readonly Row[];
  /** Why the suite did not run (printed, never hidden). */
  readonly skipped: string | null;
  readonly notes: readonly string[];
}

/** Everything to stop on an abort: clusters, generator pools, the null server. */
const active = new Set<{ stop(): Promise<void> } | { close(): Promise<void> }>();

const stopActive = (): Promise<PromiseSettledResult<void>[]> =>
  Promise.allSettled([...active].map((x) => ('stop' in x ? x.stop() : x.close())));

/** The generators' ceiling: the same pool and cells against a server that answers at once. */
async function ceilingSuite(plan: Plan): Promise<SuiteOutcome> {
  const server = await startNullServer();
  active.add(server);
  const rows: Row[] = [];
  let pool: GeneratorPool | null = null;
  try {
    pool = await GeneratorPool.start([server.endpoint], plan.generators);
    active.add(pool);
    const readKeys: ReadKeySet = { prefix: 'bench/key', count: 1 };
    const cell = (workload: Workload, inFlight: number, durationMs: number) =>
      pool!.runCell(
        {
          workload,
          inFlight,
          durationMs,
          opsMax: 1_000_000,
          valueBytes: VALUE_BYTES,
          keyPrefix: 'bench/ceiling',
          readKeys,
        },
        plan.generators,
      );
    // Warm-up: connections, JIT (a generator's first second runs at about half its speed).
    await cell('put', 16, CEILING_WARMUP_MS);
    for (const workload of plan.workloads) {
      for (const inFlight of plan.inFlight) {
        const result = await cell(workload, inFlight, CEILING_CELL_MS);
        rows.push({ target: 'null server', ...result });
      }
    }
  } finally {
    if (pool !== null) {
      await pool.close();
      active.delete(pool);
    }
    await server.stop();
    active.delete(server);
  }
  return {
    name: 'generator ceiling',
    rows,
    skipped: null,
    notes: [
      `null server: a gRPC server in its own process answering at once, driven by the same ${plan.generators} generator process(es) as the clusters; its rows are the most the generators can offer on this machine (all processes share the same cores). The etcd3 npm client is compared with the generator in bench/overhead.ts.`,
    ],
  };
}

/** One cluster under measurement: its generators and rows. */
interface Target {
  readonly cluster: BenchCluster;
  readonly pool: GeneratorPool;
  readonly runId: string;
  readonly readKeys: ReadKeySet;
  readonly rows: Row[];
}

async function openTarget(cluster: BenchCluster, plan: Plan): Promise<Target> {
  const pool = await GeneratorPool.start(cluster.endpoints, plan.generators);
  active.add(pool);
  try {
    return await warmAndSeed(cluster, pool, plan);
  } catch (error) {
    await pool.close();
    active.delete(pool);
    throw error;
  }
}

async function warmAndSeed(
  cluster: BenchCluster,
  pool: GeneratorPool,
  plan: Plan,
): Promise<Target> {
  const runId = `bench/${Date.now().toString(36)}`;
  const readKeys: ReadKeySet = { prefix: `${runId}/seed`, count: SEED_KEYS };
  const put = (keyPrefix: string, inFlight: number, opsMax: number): PoolCellOptions => ({
    workload: 'put',
    inFlight,
    opsMax,
    durationMs: SEED_MS_MAX,
    valueBytes: VALUE_BYTES,
    keyPrefix,
  });
  // Warm-up (not reported): every generator's connections, JIT, the server's first allocations.
  await pool.runCell(
    { ...put(`${runId}/warm`, WARMUP_IN_FLIGHT, WARMUP_OPS_MAX), durationMs: WARMUP_MS },
    plan.generators,
  );
  if (plan.workloads.some(isReadWorkload)) {
    // One generator, so the keys are exactly `${prefix}/0` … `${prefix}/${SEED_KEYS - 1}`.
    const seed = await pool.runCell(put(readKeys.prefix, SEED_IN_FLIGHT, SEED_KEYS), 1);
    if (seed.ops !== SEED_KEYS) {
      throw new Error(`seeding wrote ${seed.ops} of ${SEED_KEYS} keys (${seed.firstError})`);
    }
  }
  return { cluster, pool, runId, readKeys, rows: [] };
}

/** Every member's scrape, or null for a member without tandem metrics (etcd). */
function scrapeAll(cluster: BenchCluster): Promise<(MemberScrape | null)[]> {
  return Promise.all(
    cluster.members.map((m) =>
      m.metricsEndpoint === null ? Promise.resolve(null) : scrapeMember(m.metricsEndpoint),
    ),
  );
}

/**
 * `n1* 3.20 (runq 12%), n2 1.05 (runq 9%), …` (* leads at the cell's end); n/a where not
 * measured. runq: the share of the cell its event-loop thread was runnable but waiting for a
 * core (starvation, which the delay includes; not work on the loop).
 */
function loopDelayText(
  cluster: BenchCluster,
  before: readonly (MemberScrape | null)[],
  after: readonly (MemberScrape | null)[],
  runqueuePct: readonly (number | null)[],
): string {
  const parts: string[] = [];
  cluster.members.forEach((m, i) => {
    const a = before[i];
    const b = after[i];
    if (a == null || b == null) return;
    const d = loopDelayQuantile(a, b, LOOP_QUANTILE);
    const value =
      d.quantileMs === null
        ? 'no samples'
        : `${d.beyondLastBound ? '>' : ''}${d.quantileMs.toFixed(2)}`;
    const runq = runqueuePct[i];
    const wait = runq == null ? '' : ` (runq ${runq.toFixed(0)}%)`;
    parts.push(`${m.name}${b.isLeader ? '*' : ''} ${value}${wait}`);
  });
  return parts.length === 0 ? 'n/a' : parts.join(', ');
}

/**
 * One cell on one target: members' CPU time read around it from /proc, tandem members' metrics
 * scraped around that (so the scrapes cost no measured CPU).
 */
async function measureCell(
  target: Target,
  workload: Workload,
  inFlight: number,
  plan: Plan,
): Promise<void> {
  const options: PoolCellOptions = {
    workload,
    inFlight,
    opsMax: CELL_OPS_MAX,
    durationMs: plan.cellMs,
    valueBytes: VALUE_BYTES,
    keyPrefix: `${target.runId}/${workload}/${inFlight}`,
    ...(isReadWorkload(workload) && { readKeys: target.readKeys }),
  };
  const pids = target.cluster.members.map((m) => m.process.pid);
  const scrapesBefore = await scrapeAll(target.cluster);
  const cpuBeforeMs = processesCpuMs(pids);
  const schedBefore = pids.map(mainThreadSched);
  const startMs = performance.now();
  const result = await target.pool.runCell(options, plan.generators);
  const serverCpuMs = processesCpuMs(pids) - cpuBeforeMs;
  const cellMs = performance.now() - startMs;
  const runqueuePct = pids.map((pid, i) => {
    const a = schedBefore[i];
    const b = mainThreadSched(pid);
    return a == null || b == null || cellMs <= 0 ? null : (100 * (b.waitMs - a.waitMs)) / cellMs;
  });
  const scrapesAfter = await scrapeAll(target.cluster);
  const completed = result.ops + result.errors;
  const row: Row = {
    target: target.cluster.label,
    ...result,
    serverCpuUsPerOp: completed === 0 ? null : (serverCpuMs * 1000) / completed,
    eventLoopP99: loopDelayText(target.cluster, scrapesBefore, scrapesAfter, runqueuePct),
  };
  target.rows.push(row);
  process.stdout.write(
    `  ${target.cluster.label} ${workload} @${inFlight}: ${result.opsPerSec.toFixed(0)} ops/s, ` +
      `p99 ${result.p99Ms.toFixed(2)} ms, event loop p99 ${row.eventLoopP99}` +
      `${result.errors > 0 ? `, ${result.errors} errors (${result.firstError})` : ''}\n`,
  );
}

/**
 * etcd and/or tandem: both clusters up together, cells interleaved, the order alternating per
 * cell. A cluster that fails to start is reported as skipped; the other still runs.
 */
async function clusterSuites(names: readonly string[], plan: Plan): Promise<SuiteOutcome[]> {
  const outcomes: SuiteOutcome[] = [];
  const targets: Target[] = [];
  const notes = new Map<string, string[]>();
  try {
    for (const name of names) {
      let cluster: BenchCluster | null = null;
      try {
        cluster =
          name === 'etcd' ? await startEtcdCluster({ size: 3 }) : await startTandemCluster();
        active.add(cluster);
        targets.push(await openTarget(cluster, plan));
        notes.set(name, [
          name === 'etcd'
            ? `${cluster.label} (Debian etcd-server), 3 members on 127.0.0.1, default settings (fsync on, heartbeat 100 ms, election 1000 ms)`
            : `${cluster.label}, 3 members on 127.0.0.1 from the compiled build (node bin/tandem.js), default config (fsync on, heartbeat 100 ms, election 1000 ms, linearizable reads, ack quorum)`,
        ]);
      } catch (error) {
        if (cluster !== null) {
          await cluster.stop();
          active.delete(cluster);
        }
        const message = error instanceof Error ? error.message : String(error);
        outcomes.push({ name, rows: [], skipped: `could not start: ${message}`, notes: [] });
      }
    }
    let cellNo = 0;
    for (const workload of plan.workloads) {
      for (const inFlight of plan.inFlight) {
        const order = cellNo % 2 === 0 ? targets : [...targets].reverse();
        for (const target of order) await measureCell(target, workload, inFlight, plan);
        cellNo++;
      }
    }
  } finally {
    for (const target of targets) {
      await target.pool.close();
      active.delete(target.pool);
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

const ratio = (a: number | null | undefined, b: number | null | undefined): string =>
  a != null && b != null && b > 0 ? `${(a / b).toFixed(2)}×` : '—';
const num = (n: number | null | undefined, digits: number): string =>
  n == null ? '—' : n.toFixed(digits);

function findRow(
  rows: readonly Row[],
  system: 'etcd' | 'tandem',
  workload: Workload,
  inFlight: number,
): Row | undefined {
  return rows.find(
    (r) => r.target.startsWith(`${system} `) && r.workload === workload && r.inFlight === inFlight,
  );
}

/**
 * tandem/etcd per cell: throughput (higher is better for tandem), p50, p99 and server CPU per
 * request (lower is better).
 */
function ratioTable(rows: readonly Row[], plan: Plan): string | null {
  const lines = [
    '| workload | in flight | etcd ops/s | tandem ops/s | ops/s tandem/etcd | etcd p50 ms | tandem p50 ms | p50 tandem/etcd | etcd p99 ms | tandem p99 ms | p99 tandem/etcd | etcd CPU µs/op | tandem CPU µs/op | CPU/op tandem/etcd |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  let cells = 0;
  for (const workload of plan.workloads) {
    for (const inFlight of plan.inFlight) {
      const e = findRow(rows, 'etcd', workload, inFlight);
      const t = findRow(rows, 'tandem', workload, inFlight);
      if (e === undefined || t === undefined) continue;
      cells++;
      lines.push(
        `| ${workload} | ${inFlight} | ${num(e.opsPerSec, 0)} | ${num(t.opsPerSec, 0)} | ${ratio(t.opsPerSec, e.opsPerSec)} | ` +
          `${num(e.p50Ms, 2)} | ${num(t.p50Ms, 2)} | ${ratio(t.p50Ms, e.p50Ms)} | ` +
          `${num(e.p99Ms, 2)} | ${num(t.p99Ms, 2)} | ${ratio(t.p99Ms, e.p99Ms)} | ` +
          `${num(e.serverCpuUsPerOp, 0)} | ${num(t.serverCpuUsPerOp, 0)} | ${ratio(t.serverCpuUsPerOp, e.serverCpuUsPerOp)} |`,
      );
    }
  }
  return cells === 0 ? null : lines.join('\n');
}

/** What a read-only Txn costs against a plain (linearizable) Range, on each system. */
function txnTable(rows: readonly Row[], plan: Plan): string | null {
  const lines = [
    '| system | in flight | get ops/s | txn-read ops/s | txn/get ops/s | get p99 ms | txn-read p99 ms | txn/get p99 | get CPU µs/op | txn-read CPU µs/op | txn/get CPU/op |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  let cells = 0;
  for (const system of ['etcd', 'tandem'] as const) {
    for (const inFlight of plan.inFlight) {
      const g = findRow(rows, system, 'get', inFlight);
      const t = findRow(rows, system, 'txn-read', inFlight);
      if (g === undefined || t === undefined) continue;
      cells++;
      lines.push(
        `| ${system} | ${inFlight} | ${num(g.opsPerSec, 0)} | ${num(t.opsPerSec, 0)} | ${ratio(t.opsPerSec, g.opsPerSec)} | ` +
          `${num(g.p99Ms, 2)} | ${num(t.p99Ms, 2)} | ${ratio(t.p99Ms, g.p99Ms)} | ` +
          `${num(g.serverCpuUsPerOp, 0)} | ${num(t.serverCpuUsPerOp, 0)} | ${ratio(t.serverCpuUsPerOp, g.serverCpuUsPerOp)} |`,
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
  plan: Plan,
  buildWarning: string | null,
): string {
  const cpu = cpus();
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;
  const rows = outcomes.flatMap((o) => o.rows);
  const lines = [
    `# tandem bench — ${startedAt.toISOString()}`,
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, Node ${process.version}. ` +
      `Workloads: ${plan.workloads.join(', ')} (put: unique keys, ${VALUE_BYTES}-byte values; get: linearizable single-key Range; ` +
      "get-serializable: the same Range, serializable; txn-read: a Txn comparing the key's mod_revision > 0 whose success branch is a linearizable Range of it; " +
      `reads over ${SEED_KEYS} keys written before the first cell), ` +
      `closed loop at ${plan.inFlight.join(', ')} requests in flight (in total, split over ${plan.generators} load-generator process(es)), each cell ≤ ${plan.cellMs} ms and ≤ ${CELL_OPS_MAX} ops. ` +
      'Client: @grpc/grpc-js with hand-written protobuf, one HTTP/2 connection per endpoint per generator, requests round-robin over endpoints. ' +
      '"client CPU µs/op" is the generators\' own CPU time per request; "server CPU µs/op" is the CPU time of all three members per request (from /proc). ' +
      `"event-loop delay p99 ms" is each tandem member's p${LOOP_QUANTILE * 100} event-loop delay during the cell (tandem_event_loop_delay_seconds from its /metrics before and after the cell, interpolated within buckets; * marks the leader at the cell's end; etcd: n/a); "runq" beside it is the share of the cell that member's event-loop thread was runnable but waiting for a core (/proc schedstat: CPU starvation, which the delay includes, not work on the loop). ` +
      'etcd and tandem run side by side, cells interleaved with the order alternating per cell (etcd first on even cells, tandem first on odd ones); ' +
      `the cluster not being measured sits idle. Run took ${elapsedS.toFixed(0)} s. ` +
      `Load average (1 min) at the start ${loadAtStart.toFixed(1)}, at the end ${loadavg()[0]!.toFixed(1)}: other work on the machine competes for the same cores.`,
    '',
    markdownTable(rows),
    '',
  ];
  const ratios = ratioTable(rows, plan);
  if (ratios !== null) lines.push('## tandem / etcd', '', ratios, '');
  const txn = txnTable(rows, plan);
  if (txn !== null) lines.push('## read-only Txn / Range, each system', '', txn, '');
  for (const outcome of outcomes) {
    if (outcome.skipped !== null) lines.push(`- **${outcome.name}: skipped** — ${outcome.skipped}`);
    for (const note of outcome.notes) lines.push(`- ${outcome.name}: ${note}`);
  }
  if (buildWarning !== null) lines.push(`- build: ${buildWarning.split('\n')[0]}`);
  return `${lines.join('\n')}\n`;
}

const SUITES = ['ceiling', 'etcd', 'tandem'] as const;

function listFlag(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function parsePlan(): Plan {
  const { values } = parseArgs({
    options: {
      'cell-ms': { type: 'string', default: String(CELL_MS_DEFAULT) },
      suites: { type: 'string', default: SUITES.join(',') },
      workloads: { type: 'string', default: WORKLOADS.join(',') },
      'in-flight': { type: 'string', default: IN_FLIGHT_DEFAULT.join(',') },
      generators: { type: 'string', default: '1' },
    },
  });
  const cellMs = Number(values['cell-ms']);
  if (!(Number.isInteger(cellMs) && cellMs >= 100 && cellMs <= CELL_MS_MAX)) {
    throw new Error(`--cell-ms must be an integer 100..${CELL_MS_MAX}, got ${values['cell-ms']}`);
  }
  const suites = listFlag(values.suites);
  for (const name of suites) {
    if (!(SUITES as readonly string[]).includes(name)) {
      throw new Error(`unknown suite '${name}' (known: ${SUITES.join(', ')})`);
    }
  }
  const workloads = listFlag(values.workloads);
  for (const name of workloads) {
    if (!(WORKLOADS as readonly string[]).includes(name)) {
      throw new Error(`unknown workload '${name}' (known: ${WORKLOADS.join(', ')})`);
    }
  }
  const inFlight = listFlag(values['in-flight']).map(Number);
  for (const n of inFlight) {
    if (!(Number.isInteger(n) && n >= 1 && n <= IN_FLIGHT_MAX)) {
      throw new Error(
        `--in-flight: each must be an integer 1..${IN_FLIGHT_MAX}, got ${values['in-flight']}`,
      );
    }
  }
  const generators = Number(values.generators);
  if (!(Number.isInteger(generators) && generators >= 1 && generators <= GENERATORS_MAX)) {
    throw new Error(`--generators must be 1..${GENERATORS_MAX}, got ${values.generators}`);
  }
  if (suites.length === 0 || workloads.length === 0 || inFlight.length === 0) {
    throw new Error('--suites, --workloads and --in-flight each need at least one value');
  }
  if (SEED_KEYS > READ_KEYS_MAX) throw new Error('SEED_KEYS above READ_KEYS_MAX');
  return {
    cellMs,
    suites: SUITES.filter((s) => suites.includes(s)),
    workloads: WORKLOADS.filter((w) => workloads.includes(w)),
    inFlight: [...new Set(inFlight)].sort((a, b) => a - b),
    generators,
  };
}

/** The whole run's bound: the fixed part plus every planned cell with its overhead. */
function runDeadlineMs(plan: Plan): number {
  const clusters = plan.suites.filter((s) => s !== 'ceiling').length;
  const cells = plan.workloads.length * plan.inFlight.length;
  const ceilingMs = plan.suites.includes('ceiling')
    ? cells * (CEILING_CELL_MS + CELL_OVERHEAD_MS)
    : 0;
  return RUN_FIXED_MS + ceilingMs + cells * clusters * (plan.cellMs + CELL_OVERHEAD_MS);
}

async function main(plan: Plan): Promise<number> {
  const startedAt = new Date();
  const clusters = plan.suites.filter((name) => name !== 'ceiling');
  const cells = plan.workloads.length * plan.inFlight.length;
  process.stdout.write(
    `plan: ${cells} cells (${plan.workloads.join(', ')} × ${plan.inFlight.join(', ')} in flight) on ${clusters.join(' + ') || 'no cluster'}, ` +
      `${plan.cellMs} ms each, ${plan.generators} generator(s); about ${Math.round((cells * (clusters.length * plan.cellMs + (plan.suites.includes('ceiling') ? CEILING_CELL_MS : 0))) / 1000)} s of cells; ` +
      `deadline ${Math.round(runDeadlineMs(plan) / 1000)} s\n`,
  );
  let buildWarning: string | null = null;
  if (plan.suites.includes('tandem')) {
    process.stdout.write('build: npx tsc -p tsconfig.json, then tools/bundle-cli.mjs…\n');
    buildWarning = buildTandem();
    if (buildWarning !== null) process.stdout.write(`  warning: ${firstLines(buildWarning)}\n`);
  }
  const outcomes: SuiteOutcome[] = [];
  if (plan.suites.includes('ceiling')) {
    process.stdout.write('suite ceiling…\n');
    outcomes.push(await ceilingSuite(plan));
  }
  if (clusters.length > 0) {
    process.stdout.write(`suites ${clusters.join(' + ')} (interleaved per cell)…\n`);
    for (const outcome of await clusterSuites(clusters, plan)) {
      if (outcome.skipped !== null)
        process.stdout.write(`  ${outcome.name} skipped: ${outcome.skipped}\n`);
      outcomes.push(outcome);
    }
  }
  const text = report(outcomes, startedAt, plan, buildWarning);
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

/** Stop everything still running (clusters, generators, null server), then exit. */
let aborting = false;

async function abort(why: string, code: number): Promise<never> {
  aborting = true;
  process.stderr.write(`bench: ${why}; stopping clusters\n`);
  await stopActive();
  process.exit(code);
}

process.once('SIGINT', () => void abort('interrupted', 130));
process.once('SIGTERM', () => void abort('terminated', 143));

try {
  const plan = parsePlan();
  const deadlineMs = runDeadlineMs(plan);
  const deadline = setTimeout(() => void abort(`run exceeded ${deadlineMs} ms`, 3), deadlineMs);
  deadline.unref();
  process.exitCode = await main(plan);
} catch (error) {
  // During an abort the cell in progress fails (its generators are gone): abort() reports.
  if (!aborting) {
    process.stderr.write(
      `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    await stopActive();
    process.exitCode = 2;
  }
}
