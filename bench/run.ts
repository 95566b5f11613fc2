/**
 * `npm run bench`: the side-by-side benchmark. Runs every suite it knows — the load generator's
 * own ceiling (null server), real etcd (3 members), tandem (3 members, once src/server exists) —
 * with the same generator and workloads, prints one markdown table and writes it to bench/out/.
 *
 *   npm run bench [-- --cell-ms 5000 --suites ceiling,etcd,tandem]
 *
 * Bounded: every cell stops at its op count or its duration; the whole run has a deadline
 * (RUN_MS_MAX) after which clusters are stopped and the run fails. About 80 s with defaults.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type EtcdCluster, startEtcdCluster } from './etcd-cluster.js';
import { GET_KEYS_MAX, GrpcKvClient, markdownTable, type Row, runCell } from './load.js';
import { measureOverhead } from './overhead.js';

const IN_FLIGHT = [1, 16, 64, 256] as const;
const VALUE_BYTES = 256;
const CELL_MS_DEFAULT = 5000;
const CELL_OPS_MAX = 100_000;
const CEILING_CELL_MS = 1000;
const WARMUP_OPS = 500;
const CONNECT_TIMEOUT_MS = 10_000;
/** The whole run, cluster start and stop included; the brief's budget is about 3 minutes. */
const RUN_MS_MAX = 180_000;

const benchDir = dirname(fileURLToPath(import.meta.url));
const repoDir = dirname(benchDir);

interface SuiteOutcome {
  readonly name: string;
  readonly rows: readonly Row[];
  /** Why the suite did not run (printed, never hidden). */
  readonly skipped: string | null;
  readonly notes: readonly string[];
}

/** Put then get cells at every in-flight count, against any etcd-compatible endpoints. */
async function measureEndpoints(
  target: string,
  endpoints: readonly string[],
  cellMs: number,
): Promise<Row[]> {
  const client = new GrpcKvClient(endpoints);
  const rows: Row[] = [];
  try {
    await client.ready(CONNECT_TIMEOUT_MS);
    const runId = `bench/${Date.now().toString(36)}`;
    const cell = { valueBytes: VALUE_BYTES, opsMax: CELL_OPS_MAX, durationMs: cellMs };
    // Warm-up (not reported): connections, JIT, the server's first allocations.
    await runCell(client, {
      ...cell,
      workload: 'put',
      inFlight: 16,
      opsMax: WARMUP_OPS,
      keyPrefix: `${runId}/warm`,
    });
    const keys: Uint8Array[] = [];
    for (const inFlight of IN_FLIGHT) {
      const result = await runCell(client, {
        ...cell,
        workload: 'put',
        inFlight,
        keyPrefix: `${runId}/${inFlight}`,
      });
      for (const key of result.keysWritten) if (keys.length < GET_KEYS_MAX) keys.push(key);
      rows.push({ target, ...result });
      process.stdout.write(`  ${target} put @${inFlight}: ${result.opsPerSec.toFixed(0)} ops/s\n`);
    }
    for (const inFlight of IN_FLIGHT) {
      const result = await runCell(client, {
        ...cell,
        workload: 'get',
        inFlight,
        keyPrefix: runId,
        getKeys: keys,
      });
      rows.push({ target, ...result });
      process.stdout.write(`  ${target} get @${inFlight}: ${result.opsPerSec.toFixed(0)} ops/s\n`);
    }
  } finally {
    client.close();
  }
  return rows;
}

const active = new Set<EtcdCluster>();

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

async function etcdSuite(cellMs: number): Promise<SuiteOutcome> {
  const cluster = await startEtcdCluster({ size: 3 });
  active.add(cluster);
  try {
    const target = `etcd ${cluster.version} ×3`;
    const rows = await measureEndpoints(target, cluster.endpoints, cellMs);
    return {
      name: 'etcd',
      rows,
      skipped: null,
      notes: [
        `etcd ${cluster.version} (Debian etcd-server), 3 members on 127.0.0.1, default settings (fsync on), data in ${cluster.rootDir.replace(/[^/]+$/, '…')}`,
      ],
    };
  } finally {
    await cluster.stop();
    active.delete(cluster);
  }
}

/** tandem's hook: runs once src/server exists and a launcher is written; never silently skipped. */
async function tandemSuite(): Promise<SuiteOutcome> {
  const serverDir = join(repoDir, 'src', 'server');
  const reason = existsSync(serverDir)
    ? 'tandem server not yet available: src/server exists, but bench/run.ts has no tandem cluster launcher yet (write startTandemCluster beside startEtcdCluster)'
    : 'tandem server not yet available (src/server does not exist)';
  return { name: 'tandem', rows: [], skipped: reason, notes: [] };
}

function report(outcomes: readonly SuiteOutcome[], startedAt: Date, cellMs: number): string {
  const cpu = cpus();
  const lines = [
    `# tandem bench — ${startedAt.toISOString()}`,
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, Node ${process.version}. ` +
      `Workloads: put (unique keys, ${VALUE_BYTES}-byte values) then linearizable get (keys written by the puts), ` +
      `closed loop at ${IN_FLIGHT.join(', ')} requests in flight, each cell ≤ ${cellMs} ms and ≤ ${CELL_OPS_MAX} ops. ` +
      'Client: @grpc/grpc-js with hand-written protobuf, one HTTP/2 connection per endpoint, requests round-robin over endpoints. ' +
      '"client CPU µs/op" is the generator process\'s own CPU time per request.',
    '',
    markdownTable(outcomes.flatMap((o) => o.rows)),
    '',
  ];
  for (const outcome of outcomes) {
    if (outcome.skipped !== null) lines.push(`- **${outcome.name}: skipped** — ${outcome.skipped}`);
    for (const note of outcome.notes) lines.push(`- ${outcome.name}: ${note}`);
  }
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
  const suites: Record<string, () => Promise<SuiteOutcome>> = {
    ceiling: ceilingSuite,
    etcd: () => etcdSuite(cellMs),
    tandem: tandemSuite,
  };
  const chosen = values.suites.split(',').map((s) => s.trim());
  for (const name of chosen) {
    if (!(name in suites))
      throw new Error(`unknown suite '${name}' (known: ${Object.keys(suites).join(', ')})`);
  }

  const startedAt = new Date();
  const outcomes: SuiteOutcome[] = [];
  for (const name of chosen) {
    process.stdout.write(`suite ${name}…\n`);
    const outcome = await suites[name]!();
    if (outcome.skipped !== null) process.stdout.write(`  skipped: ${outcome.skipped}\n`);
    outcomes.push(outcome);
  }
  const text = report(outcomes, startedAt, cellMs);
  const outDir = join(benchDir, 'out');
  mkdirSync(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(outDir, `bench-${stamp}.md`), text);
  writeFileSync(join(outDir, 'latest.md'), text);
  process.stdout.write(
    `\n${text}\nwritten to bench/out/bench-${stamp}.md and bench/out/latest.md\n`,
  );
  return outcomes.some((o) => o.rows.some((r) => r.errors > 0)) ? 1 : 0;
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
