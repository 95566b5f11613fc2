/**
 * Where a put's latency goes at 1 in flight, stage by stage across the members: a cluster of the
 * compiled build with entry traces on (TANDEM_TRACE_DIR, src/cli/entry-trace.ts), puts one at a
 * time first to the leader and then to a follower, each matched to its log entry and timed from
 * the client's send through the leader's append, the follower's write, the acknowledgement, the
 * commit and the apply to the client's receipt (bench/put-trace-analysis.ts). A CPU profile says
 * what runs; this says what a put waits for.
 *
 *   npm run bench:put-trace -- [--puts 2000] [--members 3] [--value-bytes 256] [--keep]
 *
 * Figures are medians and 90th percentiles in µs over the puts; the client is the bench's grpc-js
 * client in this process (its own time falls in the first and last stages).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { monotonicUs, parseTrace } from '../src/cli/entry-trace.js';
import { GrpcKvClient, intIn, putOnce, VALUE_BYTES_MAX } from './load.js';
import { mainThreadSched, processesCpuMs, type SchedTimes } from './procs.js';
import {
  analyzePuts,
  type ClientPut,
  MemberMarks,
  type PutTraceResult,
  quantile,
} from './put-trace-analysis.js';
import {
  buildTandem,
  MEMBERS_MAX,
  startTandemCluster,
  type TandemMember,
} from './tandem-cluster.js';

const PUTS_MAX = 100_000;
const WARMUP_PUTS = 200;
const CONNECT_TIMEOUT_MS = 10_000;
const PUT_TIMEOUT_MS = 5000;

/** `count` puts one at a time to `endpoint`; the client's send and receipt times of each. */
async function putsAtOneInFlight(
  endpoint: string,
  memberId: number,
  count: number,
  valueBytes: number,
  prefix: string,
): Promise<ClientPut[]> {
  const client = new GrpcKvClient([endpoint]);
  const value = Buffer.alloc(valueBytes, 0x61);
  const put = (key: string) => putOnce(client, key, value, PUT_TIMEOUT_MS);
  try {
    await client.ready(CONNECT_TIMEOUT_MS);
    for (let i = 0; i < WARMUP_PUTS; i++) await put(`${prefix}/warm/${i}`);
    const puts: ClientPut[] = [];
    for (let i = 0; i < count; i++) {
      const sentUs = monotonicUs();
      await put(`${prefix}/${i}`);
      puts.push({ member: memberId, sentUs, doneUs: monotonicUs() });
    }
    return puts;
  } finally {
    client.close();
  }
}

function printResult(title: string, r: PutTraceResult): void {
  console.log(`\n${title}: ${r.matched} puts matched to their entries, ${r.unmatched} not`);
  if (r.matched === 0) return;
  const rows = [...r.stages].map(([name, us]) => [
    name,
    quantile(us, 0.5).toFixed(0),
    quantile(us, 0.9).toFixed(0),
    `${us.length}`,
  ]);
  const header = ['stage', 'p50 µs', 'p90 µs', 'puts'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  const share = ((100 * r.leaderWriteLast) / r.matched).toFixed(0);
  console.log(
    `the leader's own write finished after the first follower's ack for ${share} % of puts`,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      puts: { type: 'string', default: '2000' },
      members: { type: 'string', default: '3' },
      'value-bytes': { type: 'string', default: '256' },
      keep: { type: 'boolean', default: false },
    },
  });
  const count = intIn('--puts', values.puts, PUTS_MAX);
  const size = intIn('--members', values.members, MEMBERS_MAX);
  const valueBytes = intIn('--value-bytes', values['value-bytes'], VALUE_BYTES_MAX);
  const keep = values.keep;
  const warning = buildTandem();
  if (warning !== null) console.log(`build: ${warning}`);
  const traceDir = mkdtempSync(join(tmpdir(), 'tandem-put-trace-'));
  const cluster = await startTandemCluster({ size, env: { TANDEM_TRACE_DIR: traceDir } });
  const ids = new Map<TandemMember, number>();
  let leader: TandemMember | null = null;
  const runs: { title: string; puts: ClientPut[]; threads: string[] }[] = [];
  try {
    for (const m of cluster.members) {
      const status = await m.process.tryStatus();
      if (status === null) throw new Error(`${m.name} gave no status`);
      ids.set(m, Number.parseInt(status.memberId, 16));
      if (status.isLeader) leader = m;
    }
    if (leader === null) throw new Error('no leader');
    const follower = cluster.members.find((m) => m !== leader) ?? null;
    // Processes whose threads are sampled: the members, then this one (the client).
    const pids = [...cluster.members.map((m) => m.process.pid), process.pid];
    const names = [...cluster.members.map((m) => (m === leader ? `${m.name}*` : m.name)), 'client'];
    console.log(`${count} puts of ${valueBytes} bytes at 1 in flight, ${size} members`);
    const targets: [string, TandemMember][] = [[`served by the leader (${leader.name})`, leader]];
    if (follower !== null) targets.push([`served by a follower (${follower.name})`, follower]);
    for (const [title, target] of targets) {
      const prefix = `trace/${runs.length}`;
      const schedBefore = pids.map((pid) => mainThreadSched(pid));
      const cpuBefore = pids.map((pid) => processesCpuMs([pid]));
      const puts = await putsAtOneInFlight(
        target.clientEndpoint,
        ids.get(target)!,
        count,
        valueBytes,
        prefix,
      );
      const schedAfter = pids.map((pid) => mainThreadSched(pid));
      const cpuAfter = pids.map((pid) => processesCpuMs([pid]));
      const perPut = (ms: number) => ((ms * 1000) / count).toFixed(0);
      const threads = names.map((name, i) => {
        const [b, a] = [schedBefore[i], schedAfter[i]] as [SchedTimes | null, SchedTimes | null];
        const loop =
          a === null || b === null
            ? 'main thread n/a'
            : `main thread ${perPut(a.runMs - b.runMs)} on a core, ${perPut(a.waitMs - b.waitMs)} waiting for one`;
        return `  ${name}: process ${perPut(cpuAfter[i]! - cpuBefore[i]!)} µs/put CPU; ${loop} (µs/put)`;
      });
      runs.push({ title, puts, threads });
    }
  } finally {
    await cluster.stop();
  }
  try {
    const members = new Map<number, MemberMarks>();
    for (const id of ids.values()) {
      const text = readFileSync(join(traceDir, `${id.toString(16)}.trace`), 'utf8');
      members.set(id, new MemberMarks(parseTrace(text)));
    }
    for (const run of runs) {
      printResult(
        run.title,
        analyzePuts(run.puts, members, { leader: ids.get(leader!)!, minEntryBytes: valueBytes }),
      );
      for (const line of run.threads) console.log(line);
    }
  } finally {
    if (keep) console.log(`\ntraces kept in ${traceDir}`);
    else rmSync(traceDir, { recursive: true, force: true });
  }
}

await main();
