/**
 * What one put at 1 in flight costs each process in thread wake-ups and CPU, etcd beside tandem:
 * on this kind of VM a sleeping thread woken costs tens of µs of CPU, so at 1 in flight (where
 * every stage sleeps and wakes) the wake-ups, not the work, set the CPU per put. Runs each
 * cluster alone (etcd first, then tandem), puts round-robin over the members as `npm run bench`
 * sends them, and reads every thread's /proc schedstat (CPU time, times run) before and after.
 *
 *   node --import tsx bench/wakeups.ts [--puts 2000] [--rounds 1] [--tandem-only] [--members 3]
 */
import { parseArgs } from 'node:util';
import type { BenchCluster } from './cluster.js';
import { startEtcdCluster } from './etcd-cluster.js';
import { GrpcKvClient, intIn, putOnce } from './load.js';
import { type ThreadRuns, threadRuns } from './procs.js';
import { buildTandem, MEMBERS_MAX, startTandemCluster } from './tandem-cluster.js';

const CONNECT_TIMEOUT_MS = 10_000;
const PUT_TIMEOUT_MS = 5000;
const WARMUP_PUTS = 200;
const VALUE_BYTES = 256;
const PUTS_MAX = 100_000;
const ROUNDS_MAX = 10;

interface Row {
  readonly label: string;
  readonly cpuUs: number;
  readonly wakeups: number;
  readonly byGroup: Map<string, { cpuUs: number; wakeups: number }>;
}

/** CPU (µs) and wake-ups per put between two readings of one process, in all and by group. */
function delta(before: ThreadRuns, after: ThreadRuns, puts: number): Row {
  const byGroup = new Map<string, { cpuUs: number; wakeups: number }>();
  let cpuNs = 0;
  let runs = 0;
  for (const [tid, t] of after.byTid) {
    const b = before.byTid.get(tid);
    const dNs = t.runNs - (b?.runNs ?? 0);
    const dRuns = t.runs - (b?.runs ?? 0);
    cpuNs += dNs;
    runs += dRuns;
    const g = byGroup.get(t.group) ?? { cpuUs: 0, wakeups: 0 };
    g.cpuUs += dNs / 1000 / puts;
    g.wakeups += dRuns / puts;
    byGroup.set(t.group, g);
  }
  return { label: '', cpuUs: cpuNs / 1000 / puts, wakeups: runs / puts, byGroup };
}

async function measure(cluster: BenchCluster, puts: number, node: boolean): Promise<Row[]> {
  const client = new GrpcKvClient(cluster.endpoints);
  const value = Buffer.alloc(VALUE_BYTES, 0x61);
  const put = (key: string) => putOnce(client, key, value, PUT_TIMEOUT_MS);
  try {
    await client.ready(CONNECT_TIMEOUT_MS);
    for (let i = 0; i < WARMUP_PUTS; i++) await put(`warm/${i}`);
    const pids = cluster.members.map((m) => m.process.pid!);
    const before = [...pids.map((pid) => threadRuns(pid, node)), threadRuns(process.pid)];
    const startMs = performance.now();
    for (let i = 0; i < puts; i++) await put(`k/${i}`);
    const wallMs = performance.now() - startMs;
    const rows = pids.map((pid, i) => ({
      ...delta(before[i]!, threadRuns(pid, node), puts),
      label: cluster.members[i]!.name,
    }));
    rows.push({ ...delta(before.at(-1)!, threadRuns(process.pid), puts), label: 'client' });
    const members = rows.slice(0, -1);
    const sum = (f: (r: Row) => number) => members.reduce((a, r) => a + f(r), 0);
    console.log(
      `${cluster.label}: ${puts} puts, ${((wallMs * 1000) / puts).toFixed(0)} µs per put (wall); ` +
        `members ${sum((r) => r.cpuUs).toFixed(0)} µs CPU, ${sum((r) => r.wakeups).toFixed(1)} wake-ups per put`,
    );
    for (const r of rows) {
      const groups = [...r.byGroup]
        .filter(([, g]) => g.wakeups >= 0.05)
        .map(([name, g]) => `${name} ${g.wakeups.toFixed(1)} / ${g.cpuUs.toFixed(0)} µs`)
        .join('; ');
      console.log(
        `  ${r.label}: ${r.wakeups.toFixed(1)} wake-ups, ${r.cpuUs.toFixed(0)} µs CPU per put (${groups})`,
      );
    }
    return rows;
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      puts: { type: 'string', default: '2000' },
      rounds: { type: 'string', default: '1' },
      members: { type: 'string', default: '3' },
      'tandem-only': { type: 'boolean', default: false },
    },
  });
  const puts = intIn('--puts', values.puts, PUTS_MAX);
  const rounds = intIn('--rounds', values.rounds, ROUNDS_MAX);
  const size = intIn('--members', values.members, MEMBERS_MAX);
  const warning = buildTandem();
  if (warning !== null) console.log(`build: ${warning}`);
  const tandemOnly = values['tandem-only'];
  for (let round = 0; round < rounds; round++) {
    if (!tandemOnly) {
      const etcd = await startEtcdCluster({ size });
      try {
        await etcd.waitReady(30_000);
        await measure(etcd, puts, false);
      } finally {
        await etcd.stop();
      }
    }
    const tandem = await startTandemCluster({ size });
    try {
      await tandem.waitReady(30_000);
      await measure(tandem, puts, true);
    } finally {
      await tandem.stop();
    }
  }
}

await main();
