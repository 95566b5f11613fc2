/**
 * What one put at 1 in flight costs each process in thread wake-ups and CPU, etcd beside tandem:
 * on this kind of VM a sleeping thread woken costs tens of µs of CPU, so at 1 in flight (where
 * every stage sleeps and wakes) the wake-ups, not the work, set the CPU per put. Runs each
 * cluster alone (etcd first, then tandem), puts round-robin over the members as `npm run bench`
 * sends them, and reads every thread's /proc schedstat (CPU time, times run) before and after.
 *
 *   node --import tsx bench/wakeups.ts [--puts 2000] [--rounds 1] [--tandem-only] [--members 3]
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { BenchCluster } from './cluster.js';
import { startEtcdCluster } from './etcd-cluster.js';
import { GrpcKvClient, putOnce } from './load.js';
import { groupThreads, type ThreadGroup } from './procs.js';
import { buildTandem, startTandemCluster } from './tandem-cluster.js';

const CONNECT_TIMEOUT_MS = 10_000;
const PUT_TIMEOUT_MS = 5000;
const WARMUP_PUTS = 200;
const VALUE_BYTES = 256;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const value = i === -1 ? fallback : Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name}: positive integer`);
  return value;
}

interface ThreadSched {
  readonly runNs: number;
  readonly slices: number;
  readonly name: string;
  readonly startTicks: number;
}

/** Every thread of `pid`: its schedstat (ns on a CPU, times it ran) and what groups it. */
function threads(pid: number): Map<number, ThreadSched> {
  const out = new Map<number, ThreadSched>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const [run, , slices] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8')
        .trim()
        .split(' ')
        .map(Number);
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      out.set(Number(tid), { runNs: run!, slices: slices!, name, startTicks: Number(fields[19]) });
    } catch {}
  }
  return out;
}

interface Row {
  readonly label: string;
  readonly cpuUs: number;
  readonly wakeups: number;
  readonly byGroup: Map<string, { cpuUs: number; wakeups: number }>;
}

function delta(pid: number, before: Map<number, ThreadSched>, puts: number, node: boolean): Row {
  const after = threads(pid);
  const groups = node
    ? groupThreads(
        pid,
        [...after].map(([tid, t]) => ({ tid, ...t })),
      )
    : null;
  const byGroup = new Map<string, { cpuUs: number; wakeups: number }>();
  let cpuNs = 0;
  let slices = 0;
  for (const [tid, t] of after) {
    const b = before.get(tid);
    const dNs = t.runNs - (b?.runNs ?? 0);
    const dSlices = t.slices - (b?.slices ?? 0);
    cpuNs += dNs;
    slices += dSlices;
    const group: ThreadGroup | string = groups?.get(tid) ?? (tid === pid ? 'main' : 'other');
    const g = byGroup.get(group) ?? { cpuUs: 0, wakeups: 0 };
    g.cpuUs += dNs / 1000 / puts;
    g.wakeups += dSlices / puts;
    byGroup.set(group, g);
  }
  return { label: '', cpuUs: cpuNs / 1000 / puts, wakeups: slices / puts, byGroup };
}

async function measure(cluster: BenchCluster, puts: number, node: boolean): Promise<Row[]> {
  const client = new GrpcKvClient(cluster.endpoints);
  const value = Buffer.alloc(VALUE_BYTES, 0x61);
  const put = (key: string) => putOnce(client, key, value, PUT_TIMEOUT_MS);
  try {
    await client.ready(CONNECT_TIMEOUT_MS);
    for (let i = 0; i < WARMUP_PUTS; i++) await put(`warm/${i}`);
    const pids = cluster.members.map((m) => m.process.pid!);
    const before = [...pids, process.pid].map((pid) => threads(pid));
    const startMs = performance.now();
    for (let i = 0; i < puts; i++) await put(`k/${i}`);
    const wallMs = performance.now() - startMs;
    const rows = pids.map((pid, i) => ({
      ...delta(pid, before[i]!, puts, node),
      label: cluster.members[i]!.name,
    }));
    rows.push({ ...delta(process.pid, before.at(-1)!, puts, true), label: 'client' });
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
  const puts = arg('--puts', 2000);
  const rounds = arg('--rounds', 1);
  const size = arg('--members', 3);
  const warning = buildTandem();
  if (warning !== null) console.log(`build: ${warning}`);
  const tandemOnly = process.argv.includes('--tandem-only');
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
