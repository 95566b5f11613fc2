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
 * (SIGCONT for the other 50), for the whole cell. Then two more scenarios:
 *
 *   bounded      the follower slowed, the gets bounded-staleness reads (at most
 *                BOUNDED_STALENESS_MS behind; tandem's `tandem-max-staleness-ms`) through the
 *                gateway (a grpc-js client sending the metadata) and the client
 *   leader-kill  writers only (KILL_WRITERS in flight); the leader kill -9'd after KILL_AFTER_MS;
 *                the write outage each way of reaching the cluster sees: kill → ack of the first
 *                put issued after it (bench/failover.ts's "write gap"), the longest time without
 *                an ack, failed puts; the etcd3 client through the gateway also without its
 *                per-host circuit breaker. The killed member is restarted between modes.
 *
 * Prints markdown tables; not a test.
 *
 *   node --import tsx bench/routing.ts [--seconds 10] [--scenarios healthy,slowed,bounded,leader-kill]
 *
 * Bounded: every cell runs `--seconds` (at most 120); the run has a deadline (RUN_MS_MAX).
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { credentials, Client as GrpcClient, Metadata } from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { serviceDefinition } from '../src/api/proto.js';
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
/** Bounded-staleness reads may be this far behind the leader. */
const BOUNDED_STALENESS_MS = 500;
/** Leader kill: writers in flight, load before the kill, the wait for a write after it. */
const KILL_WRITERS = 8;
const KILL_AFTER_MS = 3_000;
const KILL_RECOVERY_MS_MAX = 30_000;
/** Load kept up after the first write acknowledged after the kill. */
const KILL_TAIL_MS = 2_000;

type Mode = 'etcd3-rr' | 'gateway' | 'client';
const MODES: readonly Mode[] = ['etcd3-rr', 'gateway', 'client'];
type Scenario = 'healthy' | 'slowed' | 'bounded';
const SCENARIOS = ['healthy', 'slowed', 'bounded', 'leader-kill'] as const;

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

/**
 * etcd3's per-host fault handling left out (its default opens a circuit breaker for 5 s after
 * 3 failures in a row: with the gateway as its only host, the writes lost with a killed leader
 * stop every call for 5 s); its global retry policy is kept.
 */
const NO_HOST_BREAKER = {
  execute: <T>(fn: (context: { signal: AbortSignal; attempt: number }) => Promise<T> | T) =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal, attempt: 1 })),
};

function etcd3Ops(hosts: string[], options: { hostBreaker?: boolean } = {}): Ops {
  const client = new Etcd3({
    hosts: hosts.map((h) => `http://${h}`),
    ...(options.hostBreaker === false
      ? { faultHandling: { host: () => NO_HOST_BREAKER as never } }
      : {}),
  });
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

async function boundedClientOps(endpoints: string[]): Promise<Ops> {
  const client = await Client.connect({ endpoints, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  return {
    get: (key) => client.get(key, { consistency: { maxStalenessMs: BOUNDED_STALENESS_MS } }),
    put: (key, value) => client.put(key, value),
    close: () => client.close(),
  };
}

/**
 * KV calls with tandem's metadata through the gateway (the etcd3 client sends no custom
 * metadata): gets bounded by BOUNDED_STALENESS_MS, puts plain.
 */
function boundedGrpcOps(endpoint: string): Ops {
  const client = new GrpcClient(endpoint, credentials.createInsecure());
  const kv = serviceDefinition('kv');
  const call = (method: 'Range' | 'Put', request: object, metadata: Metadata) =>
    new Promise<void>((resolve, reject) => {
      const def = kv[method]!;
      client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request,
        metadata,
        { deadline: Date.now() + REQUEST_TIMEOUT_MS },
        (error) => (error === null ? resolve() : reject(error)),
      );
    });
  return {
    get: (key) => {
      const md = new Metadata();
      md.set('tandem-max-staleness-ms', String(BOUNDED_STALENESS_MS));
      return call('Range', { key: Buffer.from(key) }, md);
    },
    put: (key, value) =>
      call('Put', { key: Buffer.from(key), value: Buffer.from(value) }, new Metadata()),
    close: () => client.close(),
  };
}

/** The ways of reaching the cluster the leader kill compares. */
type KillMode = Mode | 'gateway, no breaker';
const KILL_MODES: readonly KillMode[] = ['etcd3-rr', 'gateway', 'gateway, no breaker', 'client'];

interface KillResult {
  readonly mode: KillMode;
  readonly killed: string;
  /** Kill → ack of the first put issued after it; null: none within KILL_RECOVERY_MS_MAX. */
  readonly writeGapMs: number | null;
  /** The longest time without a put acknowledged, from before the kill to the end. */
  readonly longestSilenceMs: number;
  readonly failed: number;
  readonly acked: number;
  /** The most frequent error and its count. */
  readonly topError: string;
}

/** KILL_WRITERS writers; the leader kill -9'd after KILL_AFTER_MS; see KillResult. */
async function leaderKill(ops: Ops, mode: KillMode, cluster: LocalCluster): Promise<KillResult> {
  const errors = new Map<string, number>();
  const value = 'v'.repeat(VALUE_BYTES);
  const acks: number[] = []; // ack times (ms, performance.now())
  let failed = 0;
  let n = 0;
  let killMs = Number.POSITIVE_INFINITY;
  let firstAfterKill: number | null = null;
  let stopAt = Number.POSITIVE_INFINITY;
  const hardStop = performance.now() + KILL_AFTER_MS + KILL_RECOVERY_MS_MAX + KILL_TAIL_MS;
  const writer = async (): Promise<void> => {
    while (performance.now() < Math.min(stopAt, hardStop) && acks.length < SAMPLES_MAX) {
      const issuedMs = performance.now();
      try {
        await ops.put(`bench/${n++ % KEYS}`, value);
        const ackMs = performance.now();
        acks.push(ackMs);
        if (issuedMs > killMs && firstAfterKill === null) {
          firstAfterKill = ackMs;
          stopAt = ackMs + KILL_TAIL_MS;
        }
      } catch (error) {
        failed++;
        const text = `${(error as Error).name}: ${(error as Error).message}`.slice(0, 80);
        if (errors.size < 100 || errors.has(text)) errors.set(text, (errors.get(text) ?? 0) + 1);
        await sleep(10);
      }
    }
  };
  const writers = Promise.all(Array.from({ length: KILL_WRITERS }, writer));
  await sleep(KILL_AFTER_MS);
  const leader = await cluster.waitForLeader();
  killMs = performance.now();
  await leader.kill();
  await writers;
  acks.sort((a, b) => a - b);
  let longestSilenceMs = 0;
  for (let i = 1; i < acks.length; i++) {
    longestSilenceMs = Math.max(longestSilenceMs, acks[i]! - acks[i - 1]!);
  }
  const last = acks.at(-1);
  if (firstAfterKill === null && last !== undefined) {
    longestSilenceMs = Math.max(longestSilenceMs, performance.now() - last);
  }
  const gap: number | null = firstAfterKill;
  return {
    mode,
    killed: leader.name,
    writeGapMs: gap === null ? null : gap - killMs,
    longestSilenceMs,
    failed,
    acked: acks.length,
    topError: [...errors].sort((a, b) => b[1] - a[1]).map(([e, n]) => `${n}× ${e}`)[0] ?? '',
  };
}

function killRow(k: KillResult): string {
  return `| ${k.mode} | ${k.killed} | ${k.writeGapMs === null ? 'none' : k.writeGapMs.toFixed(0)} | ${k.longestSilenceMs.toFixed(0)} | ${k.failed} | ${k.acked} | ${k.topError} |`;
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
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '10' },
      scenarios: { type: 'string', default: SCENARIOS.join(',') },
    },
  });
  const seconds = Math.min(SECONDS_MAX, Math.max(1, Number(values.seconds)));
  const scenarios = values.scenarios.split(',').map((x) => x.trim());
  for (const x of scenarios) {
    if (!(SCENARIOS as readonly string[]).includes(x)) {
      throw new Error(`--scenarios: ${x} is not one of ${SCENARIOS.join(', ')}`);
    }
  }
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
  const kills: KillResult[] = [];
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
    for (const scenario of ['healthy', 'slowed', 'bounded'] as const) {
      if (!scenarios.includes(scenario)) continue;
      const modes = scenario === 'bounded' ? (['gateway', 'client'] as const) : MODES;
      for (const mode of modes) {
        const ops =
          scenario === 'bounded'
            ? mode === 'gateway'
              ? boundedGrpcOps(`127.0.0.1:${gwPort}`)
              : await boundedClientOps(cluster.endpoints())
            : mode === 'etcd3-rr'
              ? etcd3Ops(cluster.endpoints())
              : mode === 'gateway'
                ? etcd3Ops([`127.0.0.1:${gwPort}`])
                : await clientOps(cluster.endpoints());
        await runCell(ops, mode, scenario, 1); // warm-up (connections, JIT)
        const stop = scenario === 'healthy' ? null : slow(follower);
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
    if (scenarios.includes('leader-kill')) {
      for (const mode of KILL_MODES) {
        const ops =
          mode === 'etcd3-rr'
            ? etcd3Ops(cluster.endpoints())
            : mode === 'gateway'
              ? etcd3Ops([`127.0.0.1:${gwPort}`])
              : mode === 'gateway, no breaker'
                ? etcd3Ops([`127.0.0.1:${gwPort}`], { hostBreaker: false })
                : await clientOps(cluster.endpoints());
        try {
          await runCell(ops, 'client', 'healthy', 1); // warm-up
          const k = await leaderKill(ops, mode, cluster);
          kills.push(k);
          process.stdout.write(`${killRow(k)} load ${loadavg()[0]!.toFixed(1)}\n`);
        } finally {
          ops.close();
        }
        for (const m of cluster.members) if (m.state === 'down') m.spawn();
        await cluster.waitForLeader(120_000);
        await cluster.waitForCatchUp(120_000);
        await sleep(3_000); // the gateway and the next client see the member back
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
  if (kills.length > 0) {
    process.stdout.write(
      `\nLeader kill -9 after ${KILL_AFTER_MS} ms of ${KILL_WRITERS} writers (puts only). "write gap": kill → ack of the first put issued after it; "longest silence": the longest time with no put acknowledged.\n\n| client | killed | write gap ms | longest silence ms | failed puts | acked puts | most frequent error |\n|---|---|--:|--:|--:|--:|---|\n`,
    );
    for (const k of kills) process.stdout.write(`${killRow(k)}\n`);
  }
}

await main();
