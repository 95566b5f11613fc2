/**
 * `npm run bench:replacement`: how long tandem takes to replace a dead voter with a standby
 * (issue 5), on one 4-member cluster on loopback: 3 voters and 1 hot standby, default Raft timing
 * (heartbeat 100 ms, election 1000 ms), `redundancy.replaceAfter` REPLACE_AFTER_MS (short, to
 * keep the run bounded; the default is 10 s and the figure moves with it one for one).
 *
 * One trial: wait until the cluster is steady (every member up, one leader, 3 voters, the
 * standby a caught-up learner the leader calls healthy, a put succeeds); kill -9 a follower
 * voter (not the leader: leader failover is bench/failover.ts); measure from the kill to the
 * first `Cluster.MemberList` (what `etcdctl member list` calls), polled every POLL_MS on the
 * leader, that shows the standby as a voter. Then restart the killed member: it rejoins as a hot
 * standby, and is the one promoted in the next trial.
 *
 *   npm run bench:replacement [-- --trials 10]
 *
 * etcd has no automatic replacement, so there is nothing to compare against.
 * Bounded: every wait has a timeout; the whole run has a deadline (RUN_MS_MAX).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadEtcdProto } from '../src/api/proto.js';
import {
  LocalCluster,
  type LocalMember,
  memberEnv,
  type RegistryStatus,
} from '../src/cli/local-cluster.js';
import { sleep, waitFor } from '../src/cli/local-net.js';
import { ProbeClient } from './probe.js';
import { buildTandem, firstLines, tandemVersion } from './tandem-cluster.js';

const TRIALS_DEFAULT = 10;
const TRIALS_MAX = 50;
const REPLACE_AFTER_MS = 2_000;
const POLL_MS = 50;
const MEMBER_LIST_TIMEOUT_MS = 500;
/** A trial whose standby is not a voter this long after the kill counts as a failure. */
const REPLACE_MS_MAX = 30_000;
const STEADY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;
const RUN_MS_MAX = 6 * 60_000;
const CATCH_UP_ENTRIES_MAX = 10;
const STEADY_POLL_MS = 100;

const benchDir = dirname(fileURLToPath(import.meta.url));

interface Trial {
  readonly trial: number;
  readonly killed: string;
  readonly promoted: string;
  /** Kill to the first MemberList showing the standby as a voter; null if not in time. */
  readonly replacedMs: number | null;
}

type Rpc = Record<
  string,
  (
    req: object,
    md: Metadata,
    opts: { deadline: number },
    cb: (e: Error | null, r: Record<string, unknown>) => void,
  ) => void
> & { close(): void };

/** 3 voters and a hot standby (n4), from the compiled build, on free loopback ports. */
function launch(): Promise<LocalCluster> {
  return LocalCluster.start({
    members: [
      { role: 'voter' },
      { role: 'voter' },
      { role: 'voter' },
      { role: 'standby', standbyMode: 'hot' },
    ],
    label: 'bench-replacement',
    token: `tandem-bench-replacement-${process.pid}-${Date.now()}`,
    config: { redundancy: { replaceAfter: `${REPLACE_AFTER_MS}ms` } },
    command: 'compiled',
    env: memberEnv(process.env),
    logLevel: 'info',
    ready: 'spawned',
  });
}

/** The leader and its registry once the cluster is steady (see the header), else null. */
async function steadyOnce(
  cluster: LocalCluster,
  probe: ProbeClient,
): Promise<{ leader: LocalMember; registry: readonly RegistryStatus[] } | null> {
  const members = cluster.members;
  cluster.checkAlive(members);
  const statuses = await Promise.all(members.map((m) => m.tryStatus()));
  if (statuses.some((s) => s === null)) return null;
  const leaders = members.filter((_, i) => statuses[i]!.isLeader === true);
  if (leaders.length !== 1) return null;
  const registry = statuses[members.indexOf(leaders[0]!)]!.registry ?? [];
  const voters = registry.filter((r) => r.role === 'voter');
  const standbys = registry.filter(
    (r) =>
      r.role === 'standby' &&
      r.placement === 'learner' &&
      r.health === 'healthy' &&
      (r.lag ?? 0) <= CATCH_UP_ENTRIES_MAX,
  );
  if (voters.length !== 3 || standbys.length !== 1) return null;
  if (voters.some((r) => r.health !== 'healthy')) return null;
  if ((await probe.putAny(Buffer.from('bench/ready'), Buffer.from('ok'), 2_000)) !== null) {
    return null;
  }
  return { leader: leaders[0]!, registry };
}

function steady(cluster: LocalCluster, probe: ProbeClient) {
  return waitFor('a steady cluster', STEADY_TIMEOUT_MS, () => steadyOnce(cluster, probe), {
    intervalMs: STEADY_POLL_MS,
    detail: () => `log tails:\n${cluster.logTails(5)}`,
  });
}

function clusterClient(endpoint: string): Rpc {
  const pkg = loadPackageDefinition(loadEtcdProto()) as unknown as {
    etcdserverpb: Record<string, ServiceClientConstructor>;
  };
  return new pkg.etcdserverpb.Cluster!(endpoint, credentials.createInsecure()) as unknown as Rpc;
}

/** True when MemberList through `client` shows `name` as a voter (not a learner). */
function isVoter(client: Rpc, name: string): Promise<boolean> {
  return new Promise((resolve) => {
    client.MemberList!(
      { linearizable: false },
      new Metadata(),
      { deadline: Date.now() + MEMBER_LIST_TIMEOUT_MS },
      (error, res) => {
        if (error !== null) {
          resolve(false);
          return;
        }
        const rows = (res.members ?? []) as { name: string; isLearner?: boolean }[];
        resolve(rows.some((r) => r.name === name && r.isLearner !== true));
      },
    );
  });
}

async function runTrial(cluster: LocalCluster, probe: ProbeClient, trial: number): Promise<Trial> {
  const { leader, registry } = await steady(cluster, probe);
  const standby = registry.find((r) => r.role === 'standby')!.name;
  const victim = cluster.members.find(
    (m) => m !== leader && registry.find((r) => r.name === m.name)?.role === 'voter',
  )!;
  const client = clusterClient(leader.spec.client);
  try {
    const killedAt = performance.now();
    await victim.kill();
    let replacedMs: number | null = null;
    while (performance.now() - killedAt < REPLACE_MS_MAX) {
      if (await isVoter(client, standby)) {
        replacedMs = Math.round(performance.now() - killedAt);
        break;
      }
      await sleep(POLL_MS);
    }
    victim.spawn(); // rejoins as a hot standby: the next trial's candidate
    return { trial, killed: victim.name, promoted: standby, replacedMs };
  } finally {
    client.close();
  }
}

function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

function report(trials: readonly Trial[], startedAt: Date): string {
  const ok = trials.map((t) => t.replacedMs).filter((v): v is number => v !== null);
  const sorted = [...ok].sort((a, b) => a - b);
  const cell = (f: () => number) => (sorted.length === 0 ? '-' : String(f()));
  const lines = [
    `# Voter replacement: kill -9 a follower voter, a hot standby takes its place`,
    '',
    `${startedAt.toISOString()}, tandem ${tandemVersion()}, ${cpus().length} CPUs, load ` +
      `${loadavg()[0]!.toFixed(1)}; 3 voters + 1 hot standby, heartbeat 100 ms, election 1000 ms.`,
    '',
    '| system | replaceAfter | trials | not replaced | p50 ms | p99 ms | min ms | max ms |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
    `| tandem | ${REPLACE_AFTER_MS} ms | ${trials.length} | ${trials.length - ok.length} | ` +
      `${cell(() => percentile(sorted, 50))} | ${cell(() => percentile(sorted, 99))} | ` +
      `${cell(() => sorted[0]!)} | ${cell(() => sorted[sorted.length - 1]!)} |`,
    '| etcd | - | - | - | no automatic replacement | | | |',
    '',
    'Trials (killed -> promoted: ms):',
    '',
    ...trials.map((t) => `- ${t.trial}: ${t.killed} -> ${t.promoted}: ${t.replacedMs ?? 'none'}`),
  ];
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { trials: { type: 'string', default: String(TRIALS_DEFAULT) } },
  });
  const trials = Number(values.trials);
  if (!(Number.isInteger(trials) && trials >= 1 && trials <= TRIALS_MAX)) {
    throw new Error(`--trials must be 1..${TRIALS_MAX}`);
  }
  const warning = buildTandem();
  if (warning !== null) process.stderr.write(`warning: ${firstLines(warning)}\n`);
  const startedAt = new Date();
  const deadline = setTimeout(() => {
    process.stderr.write(`replacement bench: over ${RUN_MS_MAX} ms, aborting\n`);
    process.exit(3);
  }, RUN_MS_MAX);
  deadline.unref();
  const cluster = await launch();
  const probe = new ProbeClient(cluster.endpoints());
  const results: Trial[] = [];
  try {
    for (let i = 1; i <= trials; i++) {
      const t = await runTrial(cluster, probe, i);
      results.push(t);
      process.stderr.write(`trial ${i}: ${t.killed} -> ${t.promoted} in ${t.replacedMs} ms\n`);
    }
  } finally {
    probe.close();
    await cluster.destroy({ timeoutMs: STOP_TIMEOUT_MS, oneAtATime: true });
  }
  const text = report(results, startedAt);
  mkdirSync(join(benchDir, 'out'), { recursive: true });
  writeFileSync(join(benchDir, 'out', 'replacement-latest.md'), text);
  process.stdout.write(text);
  return results.every((t) => t.replacedMs !== null) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`replacement bench failed: ${error.stack ?? error.message}\n`);
    process.exit(2);
  },
);
