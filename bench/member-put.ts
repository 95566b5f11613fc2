/**
 * Puts through real tandem members: a 3-member cluster of the compiled build (as `npm run
 * bench` starts it), the bench's grpc-js client spread over every member, put cells at 64 and
 * at 1 in flight, the members' CPU per put from /proc. Prints one line per cell and a summary
 * line to compare builds (run it from two checkouts, alternating; it uses only bench/ files that
 * every recent checkout has).
 *
 *   node --import tsx bench/member-put.ts [--cells 3] [--cell-ms 5000] [--members 3]
 *     [--node-arg=FLAG ...]   (a `node` flag for every member, e.g. --node-arg=--single-threaded-gc)
 */
import { GrpcKvClient, runCell } from './load.js';
import { processesCpuMs } from './procs.js';
import { buildTandem, startTandemCluster } from './tandem-cluster.js';

const VALUE_BYTES = 256;
const CONNECT_TIMEOUT_MS = 10_000;

function arg(name: string, fallback: string): number {
  const i = process.argv.indexOf(name);
  return Number(i === -1 ? fallback : process.argv[i + 1]);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const cells = arg('--cells', '3');
  const cellMs = arg('--cell-ms', '5000');
  const size = arg('--members', '3');
  const warning = buildTandem();
  if (warning !== null) console.log(`build: ${warning}`);
  const nodeArgs = process.argv
    .filter((a) => a.startsWith('--node-arg='))
    .map((a) => a.slice('--node-arg='.length));
  if (nodeArgs.length > 0) console.log(`members run with node ${nodeArgs.join(' ')}`);
  const cluster = await startTandemCluster({ size, nodeArgs });
  const client = new GrpcKvClient(cluster.endpoints);
  try {
    await client.ready(CONNECT_TIMEOUT_MS);
    const pids = cluster.members.map((m) => m.process.pid);
    const cell = async (inFlight: number, durationMs: number, prefix: string) => {
      const before = processesCpuMs(pids);
      const r = await runCell(client, {
        workload: 'put',
        inFlight,
        opsMax: 1_000_000,
        durationMs,
        valueBytes: VALUE_BYTES,
        keyPrefix: prefix,
      });
      const cpuUs = ((processesCpuMs(pids) - before) * 1000) / Math.max(1, r.ops + r.errors);
      if (r.errors > 0) throw new Error(`${r.errors} errors: ${r.firstError}`);
      return { opsPerSec: r.opsPerSec, cpuUs, p50Ms: r.p50Ms, p99Ms: r.p99Ms };
    };
    await cell(64, 1000, 'warm');
    const wide: Awaited<ReturnType<typeof cell>>[] = [];
    const narrow: Awaited<ReturnType<typeof cell>>[] = [];
    for (let i = 0; i < cells; i++) {
      const w = await cell(64, cellMs, `w${i}`);
      wide.push(w);
      const n = await cell(1, cellMs / 2, `n${i}`);
      narrow.push(n);
      console.log(
        `cell ${i}: @64 ${w.opsPerSec.toFixed(0)} puts/s, members ${w.cpuUs.toFixed(0)} µs/put, p50 ${w.p50Ms.toFixed(2)} ms | @1 p50 ${n.p50Ms.toFixed(3)} ms p99 ${n.p99Ms.toFixed(3)} ms, ${n.cpuUs.toFixed(0)} µs/put`,
      );
    }
    console.log(
      `summary ${cluster.label}: @64 ${median(wide.map((c) => c.opsPerSec)).toFixed(0)} puts/s, ` +
        `${median(wide.map((c) => c.cpuUs)).toFixed(0)} µs/put (members' CPU); ` +
        `@1 p50 ${median(narrow.map((c) => c.p50Ms)).toFixed(3)} ms, ` +
        `${median(narrow.map((c) => c.cpuUs)).toFixed(0)} µs/put`,
    );
  } finally {
    client.close();
    await cluster.stop();
  }
}

await main();
