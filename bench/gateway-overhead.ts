/**
 * `node --import tsx bench/gateway-overhead.ts`: what `tandem gateway` adds to a call, with its
 * unary pass-through (src/proxy/passthrough.ts) and with the decode-and-encode it replaced. One
 * tandem member; one grpc-js client (proto-loader's codecs, as etcd3 uses) calling Put and
 * serializable Range on three targets in interleaved rounds (the order shuffled each round):
 *
 *   direct       the member itself
 *   passthrough  a gateway process forwarding the request bytes unchanged
 *   decoded      a gateway process decoding and re-encoding every message (the way before)
 *
 * Per round and target: `--sequential` calls one at a time (latency: p50, p99), then
 * `--loaded` calls 16 in flight (the gateway's CPU per call, from /proc/<pid>/stat less its
 * idle CPU measured before the rounds, and throughput). Prints each round, then medians over rounds with their spread; not a test.
 *
 *   node --import tsx bench/gateway-overhead.ts [--rounds 6] [--sequential 400] [--loaded 4000]
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { credentials, Client as GrpcClient, Metadata } from '@grpc/grpc-js';
import { serviceDefinition } from '../src/api/proto.js';
import { LocalCluster, memberEnv, REPO_DIR } from '../src/cli/local-cluster.js';
import { freePort, waitFor } from '../src/cli/local-net.js';
import { LocalProcess } from '../src/cli/local-process.js';

const LOADED_IN_FLIGHT = 16;
const ROUNDS_MAX = 50;
const CALLS_MAX = 100_000;
const CALL_TIMEOUT_MS = 5_000;
const RUN_MS_MAX = 20 * 60_000;
/** /proc/<pid>/stat counts CPU time in clock ticks of 1/100 s on Linux. */
const CLOCK_TICKS_PER_S = 100;
const IDLE_MEASURE_MS = 5_000;

type Target = 'direct' | 'passthrough' | 'decoded';
const TARGETS: readonly Target[] = ['direct', 'passthrough', 'decoded'];

interface RoundResult {
  readonly putP50: number;
  readonly putP99: number;
  readonly getP50: number;
  readonly getP99: number;
  readonly opsPerS: number;
  /** The gateway's CPU per call under load (µs); null for direct. */
  readonly cpuUsPerCall: number | null;
  readonly errors: number;
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

class KvCaller {
  private readonly client: GrpcClient;
  private readonly kv = serviceDefinition('kv');
  private readonly value = Buffer.alloc(64, 'v');
  constructor(endpoint: string) {
    this.client = new GrpcClient(endpoint, credentials.createInsecure());
  }
  call(method: 'Put' | 'Range', n: number): Promise<void> {
    const def = this.kv[method]!;
    const key = Buffer.from(`bench/${n % 100}`);
    const request = method === 'Put' ? { key, value: this.value } : { key, serializable: true };
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request,
        new Metadata(),
        { deadline: Date.now() + CALL_TIMEOUT_MS },
        (error) => (error === null ? resolve() : reject(error)),
      );
    });
  }
  close(): void {
    this.client.close();
  }
}

/** A gateway's CPU while idle (probes, topology polls), in ticks per second: taken off loads. */
async function idleTicksPerS(pid: number): Promise<number> {
  const t0 = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, IDLE_MEASURE_MS));
  return ((cpuTicks(pid) - t0) * 1000) / IDLE_MEASURE_MS;
}

async function round(
  caller: KvCaller,
  pid: number | null,
  idlePerS: number,
  sequential: number,
  loaded: number,
) {
  const puts: number[] = [];
  const gets: number[] = [];
  let errors = 0;
  for (let i = 0; i < sequential; i++) {
    const method = i % 2 === 0 ? 'Put' : 'Range';
    const t0 = performance.now();
    try {
      await caller.call(method, i);
      (method === 'Put' ? puts : gets).push(performance.now() - t0);
    } catch {
      errors++;
    }
  }
  const ticks0 = pid === null ? 0 : cpuTicks(pid);
  const t0 = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < loaded) {
      const i = next++;
      await caller.call(i % 2 === 0 ? 'Put' : 'Range', i).catch(() => errors++);
    }
  };
  await Promise.all(Array.from({ length: LOADED_IN_FLIGHT }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const busyTicks = pid === null ? 0 : cpuTicks(pid) - ticks0 - idlePerS * seconds;
  const cpuUsPerCall = pid === null ? null : ((busyTicks / CLOCK_TICKS_PER_S) * 1e6) / loaded;
  puts.sort((a, b) => a - b);
  gets.sort((a, b) => a - b);
  return {
    putP50: quantile(puts, 0.5),
    putP99: quantile(puts, 0.99),
    getP50: quantile(gets, 0.5),
    getP99: quantile(gets, 0.99),
    opsPerS: loaded / seconds,
    cpuUsPerCall,
    errors,
  } satisfies RoundResult;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1
    ? s[(s.length - 1) / 2]!
    : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function spread(xs: number[], digits: number): string {
  const f = (x: number) => x.toFixed(digits);
  return `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
}

function shuffled<T>(xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

async function startGatewayProcess(
  cluster: LocalCluster,
  mode: 'passthrough' | 'decoded',
): Promise<{ proc: LocalProcess; endpoint: string }> {
  const port = await freePort();
  const endpoint = `127.0.0.1:${port}`;
  const proc = new LocalProcess({
    label: `gateway-${mode}`,
    argv: [
      process.execPath,
      '--import',
      'tsx',
      'bench/gateway-process.ts',
      cluster.endpoints().join(','),
      endpoint,
      mode,
    ],
    env: memberEnv(process.env),
    cwd: REPO_DIR,
    logFile: `${cluster.dir}/gateway-${mode}.log`,
  });
  proc.spawn();
  await waitFor(`the ${mode} gateway`, 60_000, async () => {
    try {
      return (await fetch(`http://${endpoint}/health`)).ok ? true : null;
    } catch {
      return null;
    }
  });
  return { proc, endpoint };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '6' },
      sequential: { type: 'string', default: '400' },
      loaded: { type: 'string', default: '4000' },
    },
  });
  const rounds = Math.min(ROUNDS_MAX, Math.max(1, Number(values.rounds)));
  const sequential = Math.min(CALLS_MAX, Math.max(2, Number(values.sequential)));
  const loaded = Math.min(CALLS_MAX, Math.max(LOADED_IN_FLIGHT, Number(values.loaded)));
  setTimeout(() => {
    process.stderr.write('bench/gateway-overhead: run deadline passed\n');
    process.exit(2);
  }, RUN_MS_MAX).unref();

  const cluster = await LocalCluster.start({
    members: 1,
    label: 'bench-gw-overhead',
    command: 'source',
    ready: 'published',
    readyTimeoutMs: 120_000,
  });
  const gateways: LocalProcess[] = [];
  try {
    const pass = await startGatewayProcess(cluster, 'passthrough');
    const decoded = await startGatewayProcess(cluster, 'decoded');
    gateways.push(pass.proc, decoded.proc);
    const callers: Record<Target, KvCaller> = {
      direct: new KvCaller(cluster.endpoints()[0]!),
      passthrough: new KvCaller(pass.endpoint),
      decoded: new KvCaller(decoded.endpoint),
    };
    const pids: Record<Target, number | null> = {
      direct: null,
      passthrough: pass.proc.pid,
      decoded: decoded.proc.pid,
    };
    for (const t of TARGETS) await round(callers[t], pids[t], 0, 100, 1000); // warm-up
    const idle: Record<Target, number> = { direct: 0, passthrough: 0, decoded: 0 };
    for (const t of ['passthrough', 'decoded'] as const) idle[t] = await idleTicksPerS(pids[t]!);
    process.stdout.write(
      `idle gateway CPU (taken off the loaded figures): passthrough ${((idle.passthrough * 1000) / CLOCK_TICKS_PER_S).toFixed(1)} ms/s, decoded ${((idle.decoded * 1000) / CLOCK_TICKS_PER_S).toFixed(1)} ms/s\n`,
    );
    const results: Record<Target, RoundResult[]> = { direct: [], passthrough: [], decoded: [] };
    const loads: number[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const t of shuffled(TARGETS)) {
        const res = await round(callers[t], pids[t], idle[t], sequential, loaded);
        results[t].push(res);
        loads.push(loadavg()[0]!);
        process.stdout.write(
          `round ${r + 1} ${t.padEnd(11)} put p50 ${res.putP50.toFixed(2)} ms, get p50 ${res.getP50.toFixed(2)} ms, ${res.opsPerS.toFixed(0)} ops/s loaded, gateway CPU ${res.cpuUsPerCall === null ? '–' : `${res.cpuUsPerCall.toFixed(0)} µs/call`}, errors ${res.errors}, load ${loadavg()[0]!.toFixed(1)}\n`,
        );
      }
    }
    for (const c of Object.values(callers)) c.close();
    process.stdout.write(
      `\n1 member, ${rounds} rounds; latency: ${sequential} calls one at a time (half Put, half serializable Range); CPU and ops/s: ${loaded} calls ${LOADED_IN_FLIGHT} in flight. Load average over the rounds ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}. Median over rounds (min–max):\n\n`,
    );
    process.stdout.write(
      '| target | put p50 ms | get p50 ms | put p99 ms | get p99 ms | ops/s (16 in flight) | gateway CPU µs/call |\n|---|--:|--:|--:|--:|--:|--:|\n',
    );
    for (const t of TARGETS) {
      const rs = results[t];
      const cpu = rs.map((x) => x.cpuUsPerCall).filter((x): x is number => x !== null);
      process.stdout.write(
        `| ${t} | ${spread(
          rs.map((x) => x.putP50),
          2,
        )} | ${spread(
          rs.map((x) => x.getP50),
          2,
        )} | ${spread(
          rs.map((x) => x.putP99),
          2,
        )} | ${spread(
          rs.map((x) => x.getP99),
          2,
        )} | ${spread(
          rs.map((x) => x.opsPerS),
          0,
        )} | ${cpu.length === 0 ? '–' : spread(cpu, 0)} |\n`,
      );
    }
    // Added latency: per round, gateway p50 minus direct p50 of the same round.
    process.stdout.write('\nAdded p50 over direct, per round (median, min–max), ms:\n');
    for (const t of ['passthrough', 'decoded'] as const) {
      const put = results[t].map((x, i) => x.putP50 - results.direct[i]!.putP50);
      const get = results[t].map((x, i) => x.getP50 - results.direct[i]!.getP50);
      process.stdout.write(`  ${t}: put +${spread(put, 2)}, get +${spread(get, 2)}\n`);
    }
  } finally {
    for (const g of gateways) if (g.state !== 'down') await g.kill();
    await cluster.destroy({ kill: true });
  }
}

await main();
