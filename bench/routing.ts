/**
 * `node --import tsx bench/routing.ts`: routing around a slow member (issue 14). A 3-member
 * tandem cluster on loopback; 32 requests in flight, 90% serializable gets and 10% puts over
 * 100 keys; p50/p99 of each, for three ways of reaching the cluster:
 *
 *   etcd3-rr   the etcd3 npm client given all three endpoints (its own round robin)
 *   gateway    the etcd3 npm client given only `tandem gateway`'s endpoint
 *   client     tandem's own client (tandem/client, the same routing in-process)
 *
 * each on the healthy cluster, then with one follower slowed: SIGSTOP 150 ms of every 200 ms
 * (SIGCONT for the other 50), for the whole cell. Prints a markdown table; not a test.
 *
 *   node --import tsx bench/routing.ts [--seconds 10]
 *
 * Bounded: every cell runs `--seconds` (at most 120); the run has a deadline (RUN_MS_MAX).
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import {
  LocalCluster,
  type LocalMember,
  memberEnv,
  REPO_DIR,
  tandemArgv,
} from '../src/cli/local-cluster.js';
import { freePort, sleep, waitFor } from '../src/cli/local-net.js';
import { LocalProcess } from '../src/cli/local-process.js';
import { Client } from '../src/client/index.js';

const IN_FLIGHT = 32;
const KEYS = 100;
const VALUE_BYTES = 64;
const PUT_FRACTION = 0.1;
const STOP_MS = 150;
const PERIOD_MS = 200;
const SECONDS_MAX = 120;
const SAMPLES_MAX = 2_000_000;
const RUN_MS_MAX = 20 * 60_000;
const REQUEST_TIMEOUT_MS = 5_000;

type Mode = 'etcd3-rr' | 'gateway' | 'client';
type Scenario = 'healthy' | 'slowed';

interface Ops {
  get(key: string): Promise<unknown>;
  put(key: string, value: string): Promise<unknown>;
  close(): void;
}

interface Cell {
  readonly mode: Mode;
  readonly scenario: Scenario;
  readonly gets: Float64Array;
  readonly puts: Float64Array;
  readonly getCount: number;
  readonly putCount: number;
  readonly errors: number;
  readonly seconds: number;
}

function quantile(sorted: Float64Array, n: number, q: number): number {
  if (n === 0) return Number.NaN;
  return sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
}

async function runCell(ops: Ops, mode: Mode, scenario: Scenario, seconds: number): Promise<Cell> {
  const gets = new Float64Array(SAMPLES_MAX);
  const puts = new Float64Array(SAMPLES_MAX / 4);
  let getCount = 0;
  let putCount = 0;
  let errors = 0;
  let n = 0;
  const value = 'v'.repeat(VALUE_BYTES);
  const endAt = performance.now() + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < endAt && getCount < gets.length && putCount < puts.length) {
      const key = `bench/${n++ % KEYS}`;
      const isPut = Math.random() < PUT_FRACTION;
      const t0 = performance.now();
      try {
        if (isPut) await ops.put(key, value);
        else await ops.get(key);
        const ms = performance.now() - t0;
        if (isPut) puts[putCount++] = ms;
        else gets[getCount++] = ms;
      } catch {
        errors++;
        await sleep(10);
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return { mode, scenario, gets, puts, getCount, putCount, errors, seconds };
}

function row(c: Cell): string {
  const g = c.gets.subarray(0, c.getCount).sort();
  const p = c.puts.subarray(0, c.putCount).sort();
  const f = (x: number) => (Number.isNaN(x) ? '–' : x.toFixed(1));
  const opsPerS = ((c.getCount + c.putCount) / c.seconds).toFixed(0);
  return `| ${c.mode} | ${c.scenario} | ${f(quantile(g, c.getCount, 0.5))} | ${f(quantile(g, c.getCount, 0.99))} | ${f(quantile(p, c.putCount, 0.5))} | ${f(quantile(p, c.putCount, 0.99))} | ${opsPerS} | ${c.errors} |`;
}

function etcd3Ops(hosts: string[]): Ops {
  const client = new Etcd3({ hosts: hosts.map((h) => `http://${h}`) });
  return {
    get: (key) => client.get(key).serializable(true).string(),
    put: (key, value) => client.put(key).value(value).exec(),
    close: () => client.close(),
  };
}

async function clientOps(endpoints: string[]): Promise<Ops> {
  const client = await Client.connect({ endpoints, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  return {
    get: (key) => client.get(key, { consistency: 'serializable' }),
    put: (key, value) => client.put(key, value),
    close: () => client.close(),
  };
}

/** SIGSTOP `m` STOP_MS of every PERIOD_MS until stopped; returns the stopper. */
function slow(m: LocalMember): () => void {
  let running = true;
  const loop = (async () => {
    while (running) {
      m.pause();
      await sleep(STOP_MS);
      m.resume();
      await sleep(PERIOD_MS - STOP_MS);
    }
  })();
  return () => {
    running = false;
    void loop.finally(() => {
      if (m.state === 'paused') m.resume();
    });
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' } } });
  const seconds = Math.min(SECONDS_MAX, Math.max(1, Number(values.seconds)));
  const runDeadline = setTimeout(() => {
    process.stderr.write('bench/routing: run deadline passed\n');
    process.exit(2);
  }, RUN_MS_MAX);
  runDeadline.unref();

  const cluster = await LocalCluster.start({
    members: [{ zone: 'a' }, { zone: 'a' }, { zone: 'a' }],
    label: 'bench-routing',
    command: 'source',
    config: { raft: { heartbeatMs: 100, electionMs: 1000 } },
    ready: 'published',
    readyTimeoutMs: 120_000,
  });
  const gwPort = await freePort();
  const gateway = new LocalProcess({
    label: 'gateway',
    argv: [
      ...tandemArgv('source'),
      'gateway',
      '--endpoints',
      cluster.endpoints().join(','),
      '--listen',
      `127.0.0.1:${gwPort}`,
    ],
    env: { ...memberEnv(process.env), TANDEM_LOG_LEVEL: 'warn' },
    cwd: REPO_DIR,
    logFile: `${cluster.dir}/gateway.log`,
  });
  const cells: Cell[] = [];
  try {
    gateway.spawn();
    await waitFor('the gateway', 30_000, async () => {
      try {
        const res = await fetch(`http://127.0.0.1:${gwPort}/health`);
        return res.ok ? true : null;
      } catch {
        return null;
      }
    });
    const seed = etcd3Ops(cluster.endpoints());
    for (let i = 0; i < KEYS; i++) await seed.put(`bench/${i}`, 'v'.repeat(VALUE_BYTES));
    seed.close();
    const leader = await cluster.waitForLeader();
    const follower = cluster.members.find((m) => m !== leader)!;
    process.stdout.write(
      `bench/routing: 3 members, ${IN_FLIGHT} in flight, ${PUT_FRACTION * 100}% puts, ${seconds} s a cell; slowed: ${follower.name} (a follower) stopped ${STOP_MS} ms of every ${PERIOD_MS} ms\n`,
    );
    for (const scenario of ['healthy', 'slowed'] as const) {
      for (const mode of ['etcd3-rr', 'gateway', 'client'] as const) {
        const ops =
          mode === 'etcd3-rr'
            ? etcd3Ops(cluster.endpoints())
            : mode === 'gateway'
              ? etcd3Ops([`127.0.0.1:${gwPort}`])
              : await clientOps(cluster.endpoints());
        await runCell(ops, mode, scenario, 1); // warm-up (connections, JIT)
        const stop = scenario === 'slowed' ? slow(follower) : null;
        try {
          const cell = await runCell(ops, mode, scenario, seconds);
          cells.push(cell);
          process.stdout.write(`${row(cell)} load ${loadavg()[0]!.toFixed(1)}\n`);
        } finally {
          stop?.();
          ops.close();
        }
        await sleep(2_000); // let the slowed member catch up and the routing forget
      }
    }
  } finally {
    if (gateway.state !== 'down') await gateway.kill();
    await cluster.destroy({ kill: true });
  }
  // The figures mean little on a loaded machine: say how loaded it was.
  process.stdout.write(
    `\n${cpus().length} CPUs, load average at the end ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}\n`,
  );
  process.stdout.write(
    '\n| client | cluster | get p50 ms | get p99 ms | put p50 ms | put p99 ms | ops/s | errors |\n|---|---|---|---|---|---|---|---|\n',
  );
  for (const c of cells) process.stdout.write(`${row(c)}\n`);
}

await main();
