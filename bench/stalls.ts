/**
 * Large operations a client can ask for, and how long each holds a member's event loop (issue
 * 11: "nothing a client can ask for blocks the loop for long"). In a 3-member cluster holding
 * --keys keys of 256 bytes, each written twice (so a compaction has a revision of every key to
 * drop), one at a time:
 *   1. a linearizable Range of every key;
 *   2. a compaction at the current revision;
 *   3. a DeleteRange of every key.
 * For each: the time to its answer, on tandem and etcd side by side (the same raw gRPC client),
 * and on tandem the longest event-loop delay of every member meanwhile (the
 * tandem_event_loop_delay_max_seconds window, read before and after) and the leader changes
 * (etcd runs Raft on goroutines apart from its apply loop; it has no such figure).
 *
 *   node --import tsx bench/stalls.ts [--keys 100000] [--suites etcd,tandem] [--no-build]
 *                                     [--cpu-prof DIR: tandem's members write CPU profiles there]
 *
 * Bounded: the load has a deadline, each operation a gRPC deadline; every process is stopped by
 * PID at the end. Also written to bench/out/stalls-latest.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { sleep } from '../src/cli/local-net.js';
import { prefixEnd } from '../src/util/bytes.js';
import type { BenchCluster } from './cluster.js';
import { startEtcdCluster } from './etcd-cluster.js';
import { countRangeKvs, GrpcKvClient } from './load.js';
import { buildTandem, firstLines, startTandemCluster } from './tandem-cluster.js';

const KEYS_DEFAULT = 100_000;
const KEYS_MAX = 2_000_000;
const VALUE_BYTES = 256;
/** etcd's default --max-txn-ops. */
const PUTS_PER_TXN = 128;
const LOAD_IN_FLIGHT = 16;
/** A load slower than this fails (bounds its duration). */
const LOAD_KEYS_PER_S_MIN = 1_000;
const OP_DEADLINE_MS = 120_000;
/** Before an operation: the loops settle and the delay window starts afresh. */
const SETTLE_MS = 1_500;
/** After it: followers apply it too (their stall comes after the leader's answer). */
const AFTER_MS = 3_000;
const READY_TIMEOUT_MS = 60_000;
const SUITES = ['etcd', 'tandem'] as const;
type Suite = (typeof SUITES)[number];
const PREFIX = Buffer.from('stall/');

const benchDir = dirname(fileURLToPath(import.meta.url));
const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** Protobuf: a bytes field (wire type 2) with a one- to three-byte length. */
function bytesField(field: number, value: Uint8Array): Buffer {
  const length: number[] = [];
  let n = value.length;
  do {
    length.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
    n >>>= 7;
  } while (n > 0);
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...length]), value]);
}

function varintField(field: number, value: number): Buffer {
  const bytes: number[] = [field << 3];
  let n = value;
  while (n > 0x7f) {
    bytes.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

const identity = (b: Buffer): Buffer => b;

function unary(channel: grpc.Client, method: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    channel.makeUnaryRequest(
      method,
      identity,
      identity,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + OP_DEADLINE_MS },
      (error, response) => (error || response === undefined ? reject(error) : resolve(response)),
    );
  });
}

/** The header's revision of a Range/DeleteRange/Compaction response (field 1, then field 3). */
function headerRevision(response: Buffer): number {
  // ResponseHeader is field 1; inside it revision is field 3 (varint).
  assertField(response[0] === 0x0a, 'response header');
  const end = 2 + response[1]!;
  let at = 2;
  while (at < end) {
    const tag = response[at++]!;
    let value = 0;
    let scale = 1;
    for (;;) {
      const b = response[at++]!;
      value += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) break;
    }
    if (tag === 0x18) return value;
  }
  throw new Error('no revision in the response header');
}

function assertField(ok: boolean, what: string): void {
  if (!ok) throw new Error(`unexpected response: ${what}`);
}

async function load(cluster: BenchCluster, keys: number, round: number): Promise<number> {
  const kv = new GrpcKvClient(cluster.endpoints);
  try {
    await kv.ready(READY_TIMEOUT_MS);
    const value = Buffer.alloc(VALUE_BYTES, 0x61 + round);
    const startMs = performance.now();
    const deadlineMs = startMs + (keys / LOAD_KEYS_PER_S_MIN) * 1000;
    let next = 0;
    let inFlight = 0;
    await new Promise<void>((resolve, reject) => {
      const pump = (): void => {
        if (performance.now() > deadlineMs) {
          reject(new Error(`loading slower than ${LOAD_KEYS_PER_S_MIN} keys/s`));
          return;
        }
        while (inFlight < LOAD_IN_FLIGHT && next < keys) {
          const batch: Uint8Array[] = [];
          for (let i = 0; i < PUTS_PER_TXN && next < keys; i++, next++) {
            batch.push(Buffer.concat([PREFIX, Buffer.from(String(next).padStart(9, '0'))]));
          }
          inFlight++;
          kv.txnPuts(batch, value, (error) => {
            inFlight--;
            if (error) reject(error);
            else if (next >= keys && inFlight === 0) resolve();
            else pump();
          });
        }
      };
      pump();
    });
    return performance.now() - startMs;
  } finally {
    kv.close();
  }
}

async function metricsText(endpoint: string): Promise<string> {
  const response = await fetch(`http://${endpoint}/metrics`, { signal: AbortSignal.timeout(5000) });
  return response.text();
}

function metricValue(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

interface StepResult {
  readonly ms: number;
  /** tandem: each member's longest loop delay meanwhile, ms; null for etcd. */
  readonly loopMaxMs: readonly number[] | null;
  readonly leaderChanges: number | null;
  readonly detail: string;
}

async function step(cluster: BenchCluster, op: () => Promise<string>): Promise<StepResult> {
  const endpoints = cluster.members
    .map((m) => m.metricsEndpoint)
    .filter((e): e is string => e !== null);
  await sleep(SETTLE_MS);
  // Reading the metrics starts each member's delay window afresh.
  const before = await Promise.all(endpoints.map(metricsText));
  const startMs = performance.now();
  const detail = await op();
  const ms = performance.now() - startMs;
  await sleep(AFTER_MS);
  const after = await Promise.all(endpoints.map(metricsText));
  if (endpoints.length === 0) return { ms, loopMaxMs: null, leaderChanges: null, detail };
  const changes = after.map(
    (text, i) =>
      metricValue(text, 'tandem_raft_leader_changes_total') -
      metricValue(before[i]!, 'tandem_raft_leader_changes_total'),
  );
  return {
    ms,
    loopMaxMs: after.map((text) => metricValue(text, 'tandem_event_loop_delay_max_seconds') * 1000),
    leaderChanges: Math.max(...changes),
    detail,
  };
}

const STEPS = [
  'Range of every key',
  'compaction at the current revision',
  'DeleteRange of every key',
] as const;

async function runSuite(
  suite: Suite,
  keys: number,
  profDir: string | null,
): Promise<Map<string, StepResult>> {
  const cluster =
    suite === 'etcd'
      ? await startEtcdCluster({ size: 3 })
      : await startTandemCluster(
          profDir === null ? {} : { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] },
        );
  const stopOnSignal = (): void => void cluster.stop().then(() => process.exit(130));
  process.once('SIGINT', stopOnSignal);
  const results = new Map<string, StepResult>();
  try {
    await cluster.waitReady(READY_TIMEOUT_MS);
    for (const round of [0, 1]) {
      const ms = await load(cluster, keys, round);
      log(
        `  ${cluster.label}: wrote ${keys.toLocaleString('en-US')} keys in ${(ms / 1000).toFixed(1)} s (round ${round + 1} of 2)`,
      );
    }
    const leader = (await cluster.leader()) ?? cluster.members[0]!;
    const channel = new grpc.Client(leader.clientEndpoint, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 1024 * 1024 * 1024,
    });
    try {
      const range = Buffer.concat([bytesField(1, PREFIX), bytesField(2, prefixEnd(PREFIX))]);
      const ops: Record<(typeof STEPS)[number], () => Promise<string>> = {
        'Range of every key': async () => {
          const response = await unary(channel, '/etcdserverpb.KV/Range', range);
          const found = countRangeKvs(response);
          if (found !== keys) throw new Error(`the Range found ${found} keys, not ${keys}`);
          return `${found} kvs, ${(response.length / 1e6).toFixed(1)} MB`;
        },
        'compaction at the current revision': async () => {
          const current = headerRevision(
            await unary(channel, '/etcdserverpb.KV/Range', bytesField(1, Buffer.from('none'))),
          );
          await unary(channel, '/etcdserverpb.KV/Compact', varintField(1, current));
          return `at revision ${current}`;
        },
        'DeleteRange of every key': async () => {
          const response = await unary(channel, '/etcdserverpb.KV/DeleteRange', range);
          return `revision ${headerRevision(response)}`;
        },
      };
      for (const name of STEPS) {
        const result = await step(cluster, ops[name]);
        results.set(name, result);
        log(
          `  ${cluster.label}: ${name}: ${result.ms.toFixed(0)} ms (${result.detail})` +
            (result.loopMaxMs === null
              ? ''
              : `; longest loop delay per member ${result.loopMaxMs.map((v) => v.toFixed(0)).join(' / ')} ms; leader changes ${result.leaderChanges}`),
        );
      }
    } finally {
      channel.close();
    }
    return results;
  } finally {
    process.removeListener('SIGINT', stopOnSignal);
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      keys: { type: 'string', default: String(KEYS_DEFAULT) },
      suites: { type: 'string', default: SUITES.join(',') },
      'no-build': { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
    },
  });
  const keys = Number(values.keys);
  if (!(Number.isInteger(keys) && keys >= PUTS_PER_TXN && keys <= KEYS_MAX)) {
    throw new Error(`--keys must be ${PUTS_PER_TXN}..${KEYS_MAX}`);
  }
  const suites = values.suites.split(',').map((s) => s.trim()) as Suite[];
  for (const s of suites) {
    if (!SUITES.includes(s)) throw new Error(`unknown suite ${s} (${SUITES.join(', ')})`);
  }
  if (suites.includes('tandem') && !values['no-build']) {
    log('build: npx tsc -p tsconfig.json, then tools/bundle-cli.mjs…');
    const warning = buildTandem();
    if (warning !== null) log(firstLines(warning));
  }
  const load0 = loadavg()[0]!;
  const bySuite = new Map<Suite, Map<string, StepResult>>();
  for (const suite of suites) {
    log(`${suite}: ${keys.toLocaleString('en-US')} keys, written twice…`);
    bySuite.set(suite, await runSuite(suite, keys, values['cpu-prof'] ?? null));
  }
  const lines = [
    `# Large operations and the event loop — ${new Date().toISOString()}`,
    '',
    `${keys.toLocaleString('en-US')} keys of ${VALUE_BYTES} bytes, each written twice, in a 3-member cluster; Node ${process.version}; load average (1 min) ${load0.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end. Time to the answer from the leader; tandem's longest event-loop delay on each member from the operation until ${AFTER_MS / 1000} s after its answer.`,
    '',
    '| operation | etcd ms | tandem ms | tandem / etcd | tandem longest loop delay per member, ms | leader changes |',
    '|---|--:|--:|--:|---|--:|',
  ];
  for (const name of STEPS) {
    const e = bySuite.get('etcd')?.get(name);
    const t = bySuite.get('tandem')?.get(name);
    lines.push(
      `| ${name} | ${e?.ms.toFixed(0) ?? '—'} | ${t?.ms.toFixed(0) ?? '—'} | ${e !== undefined && t !== undefined ? `${(t.ms / e.ms).toFixed(2)}×` : '—'} | ${t?.loopMaxMs?.map((v) => v.toFixed(0)).join(' / ') ?? '—'} | ${t?.leaderChanges ?? '—'} |`,
    );
  }
  const report = `${lines.join('\n')}\n`;
  process.stdout.write(report);
  const outDir = join(benchDir, 'out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'stalls-latest.md'), report);
  log(`written to ${join(outDir, 'stalls-latest.md')}`);
}

await main();
