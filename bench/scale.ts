/**
 * `npm run bench:scale`: tandem at scale, beside real etcd (Debian etcd-server 3.4) where etcd can
 * do the same, in one run (issue 11, "Scale"). Three phases:
 *
 * keys (3 members each, both clusters up together, steps interleaved with the order alternating
 *   step by step):
 *   1. resident memory of every member, empty;
 *   2. put throughput on the empty store (a put cell: 64 in flight, unique keys, 256-byte values);
 *   3. load --keys keys of 256 bytes: Txns of 128 puts (etcd's default --max-txn-ops) from
 *      several generator processes, in chunks of ≤ LOAD_CHUNK_MS, a progress line on stderr each;
 *   4. resident memory again: per key = (after − empty) / keys, for every member;
 *   5. the same put cell on the loaded store: the ratio loaded/empty;
 *   6. restart to serving: kill -9 a follower, start it again, time from the start until it
 *      answers a serializable Range of a loaded key;
 *   7. a new member by snapshot: puts until the leader's log is past --snapshot-entries (so its
 *      log was compacted and a joiner cannot replay it from the start), `etcdctl member add
 *      --learner`, start it, time from its start until it has applied the leader's commit index
 *      at the add; MB/s = the snapshot's bytes / that time. Whether a snapshot really arrived
 *      is checked (tandem: the joiner's "snapshot received" log line; etcd: its
 *      etcd_network_snapshot_receive_success metric) and printed.
 * watch (fresh 3-member clusters): --watchers watchers on one key, one Watch stream each, over
 *   HTTP/2 connections of STREAMS_PER_CONNECTION streams spread over the members; one put to the
 *   key every 1000/--watch-rate ms for --watch-ms (one at a time: a put answered late delays the
 *   next, so the offered rate drops when the server cannot keep up); events delivered per second over all watchers,
 *   the lag (arrival − the put's send time) p50/p99 over all events and the slowest watcher's
 *   largest, and how long after the last put its event reached the last watcher.
 * voters: the put cell at 64 in flight on 3 voters (the watch phase's clusters, before their
 *   watchers) and on 5 voters (fresh clusters).
 *
 *   npm run bench:scale [-- --keys 1000000 --watchers 10000 --watch-rate 5 --watch-ms 10000
 *                          --cell-ms 5000 --snapshot-entries 10000
 *                          --suites etcd,tandem --phases keys,watch,voters
 *                          --generators 2 --out bench/out --keep]
 *
 * Both snapshot and compact their logs every --snapshot-entries entries (default 10,000: tandem's
 * default raft.snapshotEntries, given to etcd as --snapshot-count, whose own default is 100,000);
 * otherwise defaults for both. Bounded: every cell and wait has a limit, the whole run a deadline
 * (runDeadlineMs), and every process is stopped by PID at the end, on error and on a signal.
 * Output: a markdown report on stdout and in <out>/scale-<time>.md, the figures as JSON in
 * <out>/scale-<time>.json (and scale-latest.md/.json).
 */
import { execFile } from 'node:child_process';
import {
  type Dirent,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { FatalWait, sleep, waitFor } from '../src/cli/local-net.js';
import { type BenchCluster, type BenchMember, fetchJson } from './cluster.js';
import { type EtcdCluster, startEtcdCluster } from './etcd-cluster.js';
import { GENERATORS_MAX, GeneratorPool, type PoolCellOptions } from './generators.js';
import {
  type CellResult,
  countRangeKvs,
  encodePut,
  encodeRange,
  PUTS_PER_TXN_MAX,
} from './load.js';
import { processesCpuMs } from './procs.js';
import {
  buildTandem,
  firstLines,
  startTandemCluster,
  type TandemCluster,
} from './tandem-cluster.js';
import {
  responseRevision,
  STREAMS_PER_CONNECTION_DEFAULT,
  stampValue,
  WATCHERS_MAX,
  WatcherPool,
  type WatchReport,
  wallMs,
} from './watchers.js';

const KEYS_DEFAULT = 1_000_000;
const KEYS_MAX = 10_000_000;
const WATCHERS_DEFAULT = 10_000;
const VALUE_BYTES = 256;
const PUT_IN_FLIGHT = 64;
const CELL_MS_DEFAULT = 5000;
const CELL_MS_MAX = 20_000;
const CELL_OPS_MAX = 100_000;
const PUT_ROUNDS_DEFAULT = 3;
const PUT_ROUNDS_MAX = 9;
const WARMUP_OPS = 500;
/** Txns of puts in flight while loading, over all generators (each Txn PUTS_PER_TXN_MAX puts). */
const LOAD_IN_FLIGHT = 16;
/** A load chunk: one cell, then a progress line. */
const LOAD_CHUNK_MS = 5000;
/** A load slower than this many keys per second fails (bounds the load's duration). */
const LOAD_KEYS_PER_S_MIN = 200;
/** tandem's default raft.snapshotEntries; etcd gets the same as --snapshot-count. */
const SNAPSHOT_ENTRIES_DEFAULT = 10_000;
/** tandem's smallest raft.snapshotEntries (src/cli/config.ts SNAPSHOT_ENTRIES_MIN). */
const SNAPSHOT_ENTRIES_MIN = 100;
/** Entries past --snapshot-entries before a member joins, so the snapshot has surely been taken. */
const SNAPSHOT_MARGIN_ENTRIES = 1000;
const TOP_UP_MS_MAX = 120_000;
const RESTART_SERVING_MS_MAX = 300_000;
const JOIN_CATCH_UP_MS_MAX = 600_000;
const READY_MS_MAX = 300_000;
const PROBE_INTERVAL_MS = 20;
const PROBE_TIMEOUT_MS = 1000;
const STATUS_POLL_MS = 100;
const ETCDCTL_TIMEOUT_MS = 30_000;
const MEMBER_ADD_MS_MAX = 60_000;
const WATCH_RATE_DEFAULT = 5;
const WATCH_RATE_MAX = 1000;
const WATCH_MS_DEFAULT = 10_000;
const WATCH_MS_MAX = 120_000;
const WATCH_DRAIN_MS_MAX = 60_000;
const WATCH_REPORT_POLL_MS = 500;
const WATCHER_PROCESSES = 2;
const STREAMS_PER_CONNECTION = STREAMS_PER_CONNECTION_DEFAULT;
/** A watch-phase put's deadline: long, so that a slow put is still acknowledged, not lost. */
const PUT_TIMEOUT_MS = 30_000;
/** The watch phase's puts stop this long after --watch-ms even if fewer than planned were sent. */
const WATCH_PUT_OVERRUN_MS = 30_000;
const WATCH_PUT_ERRORS_MAX = 3;
const JOINER_NAME = 'joiner';
/** Build, cluster starts and stops, warm-ups: the part of a run that does not grow with keys. */
const RUN_FIXED_MS = 15 * 60_000;

const benchDir = dirname(fileURLToPath(import.meta.url));
const SUITES = ['etcd', 'tandem'] as const;
type Suite = (typeof SUITES)[number];
const PHASES = ['keys', 'watch', 'voters'] as const;
type Phase = (typeof PHASES)[number];

interface Plan {
  readonly keys: number;
  readonly watchers: number;
  readonly watchRate: number;
  readonly watchMs: number;
  readonly cellMs: number;
  /** Put cells per figure, interleaved between the systems; the median is reported. */
  readonly putRounds: number;
  /** Both systems snapshot (and compact their logs) every this many entries. */
  readonly snapshotEntries: number;
  readonly suites: readonly Suite[];
  readonly phases: readonly Phase[];
  readonly generators: number;
  readonly outDir: string;
  /** Keep the clusters' data directories and logs (their paths are printed). */
  readonly keep: boolean;
}

// ---------------------------------------------------------------------------------------------
// Results (the JSON written next to the report)

interface PutCell {
  /** The median round's figures (by puts/s); every round's puts/s in `opsPerSecRounds`. */
  readonly opsPerSec: number;
  readonly opsPerSecRounds: readonly number[];
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly serverCpuUsPerOp: number | null;
}

interface MemberMemory {
  readonly name: string;
  readonly rssEmptyKiB: number;
  readonly rssLoadedKiB: number;
  readonly anonEmptyKiB: number;
  readonly anonLoadedKiB: number;
  readonly rssBytesPerKey: number;
  readonly anonBytesPerKey: number;
}

interface KeysResult {
  readonly system: Suite;
  readonly label: string;
  readonly keysLoaded: number;
  readonly loadMs: number;
  readonly loadKeysPerSec: number;
  /** Txns of the load that failed (not retried: their keys are not counted). */
  readonly loadErrors: number;
  readonly loadFirstError: string | null;
  readonly loadLeaderChanges: number | null;
  readonly putEmpty: PutCell;
  readonly putLoaded: PutCell;
  readonly putLoadedOverEmpty: number;
  readonly memory: readonly MemberMemory[];
  readonly dataDirBytes: readonly number[];
  readonly restartMember: string;
  /** From the restart's spawn to the first serializable Range of a loaded key it answers. */
  readonly restartToServingMs: number;
  readonly join: JoinResult;
}

interface JoinResult {
  /** The leader's commit index when the member was added (the joiner must apply it). */
  readonly targetIndex: number;
  readonly catchUpMs: number;
  /** Whether the joiner received a snapshot (else it replayed the log). */
  readonly bySnapshot: boolean;
  readonly snapshotBytes: number | null;
  readonly mbPerSec: number | null;
  readonly how: string;
}

interface WatchResult {
  readonly system: Suite;
  readonly label: string;
  readonly watchers: number;
  readonly connections: number;
  readonly puts: number;
  /** Puts acknowledged per second over the put window (below --watch-rate when puts lag). */
  readonly putsPerSec: number;
  readonly putErrors: number;
  readonly eventsExpected: number;
  readonly events: number;
  readonly eventsPerSec: number;
  readonly lagP50Ms: number;
  readonly lagP99Ms: number;
  readonly slowestWatcherLagMs: number;
  /** From the last put's send to its event reaching the last watcher; null if it never did. */
  readonly lastPutToLastWatcherMs: number | null;
  /** The fewest events any one watcher received (= puts when none missed one). */
  readonly eventsMinPerWatcher: number;
  readonly failedWatchers: number;
  readonly firstFailure: string | null;
  readonly watcherCpuUsPerEvent: number | null;
}

interface VotersResult {
  readonly system: Suite;
  readonly label: string;
  readonly voters: number;
  readonly put: PutCell;
}

interface ScaleResults {
  readonly startedAt: string;
  readonly plan: Plan;
  readonly loadAvgStart: number;
  loadAvgEnd: number;
  readonly keys: KeysResult[];
  readonly watch: WatchResult[];
  readonly voters: VotersResult[];
  readonly failures: string[];
  readonly notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Everything to stop on an abort

const active = new Set<{ stop(): Promise<void> } | { close(): Promise<void> }>();

const stopActive = (): Promise<PromiseSettledResult<void>[]> =>
  Promise.allSettled([...active].map((x) => ('stop' in x ? x.stop() : x.close())));

async function release(x: { stop(): Promise<void> } | { close(): Promise<void> }): Promise<void> {
  active.delete(x);
  await ('stop' in x ? x.stop() : x.close());
}

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

// ---------------------------------------------------------------------------------------------
// Clusters

interface Target {
  readonly system: Suite;
  readonly cluster: BenchCluster;
  readonly pool: GeneratorPool;
  readonly runId: string;
}

async function startCluster(plan: Plan, system: Suite, size: number): Promise<BenchCluster> {
  const entries = plan.snapshotEntries;
  const cluster =
    system === 'etcd'
      ? await startEtcdCluster({
          size,
          extraArgs: [`--snapshot-count=${entries}`],
          keepData: plan.keep,
        })
      : await startTandemCluster({
          size,
          config: { raft: { snapshotEntries: entries } },
          keepData: plan.keep,
        });
  active.add(cluster);
  if (plan.keep) log(`  ${cluster.label}: data and logs kept in ${cluster.rootDir}`);
  return cluster;
}

async function openTargets(plan: Plan, size: number): Promise<Target[]> {
  const targets: Target[] = [];
  for (const system of plan.suites) {
    log(`starting ${system} (${size} members)…`);
    const cluster = await startCluster(plan, system, size);
    const pool = await GeneratorPool.start(cluster.endpoints, plan.generators);
    active.add(pool);
    const runId = `scale/${Date.now().toString(36)}`;
    // Warm-up (not reported): connections, JIT, the servers' first allocations.
    await pool.runCell(putCell(`${runId}/warm`, 16, WARMUP_OPS, 30_000), plan.generators);
    targets.push({ system, cluster, pool, runId });
  }
  return targets;
}

async function closeTargets(targets: readonly Target[]): Promise<void> {
  for (const t of targets) {
    await release(t.pool);
    await release(t.cluster);
  }
}

/** Step `step`'s order: the targets as given on even steps, reversed on odd ones. */
const inOrder = (targets: readonly Target[], step: number): Target[] =>
  step % 2 === 0 ? [...targets] : [...targets].reverse();

function putCell(
  keyPrefix: string,
  inFlight: number,
  opsMax: number,
  durationMs: number,
): PoolCellOptions {
  return { workload: 'put', inFlight, opsMax, durationMs, valueBytes: VALUE_BYTES, keyPrefix };
}

/** The put cell (PUT_IN_FLIGHT in flight), with the members' CPU time around it. */
async function measurePut(target: Target, plan: Plan, name: string): Promise<PutCell> {
  const pids = target.cluster.members.map((m) => m.process.pid);
  const cpuBeforeMs = processesCpuMs(pids);
  const result = await target.pool.runCell(
    putCell(`${target.runId}/${name}`, PUT_IN_FLIGHT, CELL_OPS_MAX, plan.cellMs),
    plan.generators,
  );
  const cpuMs = processesCpuMs(pids) - cpuBeforeMs;
  const completed = result.ops + result.errors;
  const cell: PutCell = {
    opsPerSec: result.opsPerSec,
    opsPerSecRounds: [result.opsPerSec],
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    errors: result.errors,
    firstError: result.firstError,
    serverCpuUsPerOp: completed === 0 ? null : (cpuMs * 1000) / completed,
  };
  log(
    `  ${target.cluster.label} ${name}: ${cell.opsPerSec.toFixed(0)} puts/s, p99 ${cell.p99Ms.toFixed(1)} ms` +
      (cell.errors > 0 ? `, ${cell.errors} errors (${cell.firstError})` : ''),
  );
  return cell;
}

/**
 * The put cell on every target, `plan.putRounds` rounds interleaved (A B, B A, …: the order
 * alternating per round from `step`); per target the median round, with every round's puts/s.
 */
async function measurePutRounds(
  targets: readonly Target[],
  plan: Plan,
  name: string,
  step: number,
): Promise<Map<Target, PutCell>> {
  const cells = new Map<Target, PutCell[]>(targets.map((t) => [t, []]));
  for (let round = 0; round < plan.putRounds; round++) {
    for (const t of inOrder(targets, step + round)) {
      cells.get(t)!.push(await measurePut(t, plan, `${name}/${round}`));
    }
  }
  const out = new Map<Target, PutCell>();
  for (const [t, rounds] of cells) {
    const sorted = [...rounds].sort((a, b) => a.opsPerSec - b.opsPerSec);
    const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
    out.set(t, {
      ...median,
      opsPerSecRounds: rounds.map((r) => r.opsPerSec),
      errors: rounds.reduce((a, r) => a + r.errors, 0),
      firstError: rounds.find((r) => r.firstError !== null)?.firstError ?? null,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// /proc and the file system

/** VmRSS and RssAnon of a process, KiB (0 when it is gone). */
export function memoryKiB(pid: number | null): { rss: number; anon: number } {
  if (pid === null) return { rss: 0, anon: 0 };
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): number =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
    return { rss: field('VmRSS'), anon: field('RssAnon') };
  } catch {
    return { rss: 0, anon: 0 };
  }
}

/** Bytes of the files under `dir` (bounded depth and count); 0 for what cannot be read. */
export function directoryBytes(dir: string, depth = 0): number {
  if (depth > 6) return 0;
  let total = 0;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true }).slice(0, 10_000);
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    try {
      total += entry.isDirectory() ? directoryBytes(path, depth + 1) : statSync(path).size;
    } catch {
      // a file that went away while walking
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Phase keys

/** Loads `plan.keys` keys in Txns of PUTS_PER_TXN_MAX puts; returns keys written and ms. */
interface LoadOutcome {
  readonly keys: number;
  readonly ms: number;
  readonly errors: number;
  readonly firstError: string | null;
  /** Leader changes any member saw during the load (etcd_server_leader_changes_seen_total). */
  readonly leaderChanges: number | null;
}

async function load(target: Target, plan: Plan): Promise<LoadOutcome> {
  const txnsNeeded = Math.ceil(plan.keys / PUTS_PER_TXN_MAX);
  let errors = 0;
  let firstError: string | null = null;
  const changesBefore = await leaderChangesSeen(target.cluster);
  const startMs = performance.now();
  const deadlineMs = startMs + (plan.keys / LOAD_KEYS_PER_S_MIN) * 1000;
  let txns = 0;
  for (let chunk = 0; txns < txnsNeeded; chunk++) {
    if (performance.now() > deadlineMs) {
      throw new Error(
        `${target.cluster.label}: loading slower than ${LOAD_KEYS_PER_S_MIN} keys/s (${txns * PUTS_PER_TXN_MAX} of ${plan.keys} keys)`,
      );
    }
    const result: CellResult = await target.pool.runCell(
      {
        ...putCell(
          loadPrefix(target, chunk),
          LOAD_IN_FLIGHT,
          Math.max(plan.generators, txnsNeeded - txns),
          LOAD_CHUNK_MS,
        ),
        putsPerTxn: PUTS_PER_TXN_MAX,
      },
      plan.generators,
    );
    // A failed Txn is counted, not retried (its keys may or may not be there): keys loaded
    // counts acknowledged Txns only. A chunk without one acknowledged Txn ends the load.
    errors += result.errors;
    firstError ??= result.firstError;
    if (result.ops === 0) {
      throw new Error(`${target.cluster.label}: load failed: ${result.firstError}`);
    }
    txns += result.ops;
    const elapsedS = (performance.now() - startMs) / 1000;
    const keys = txns * PUTS_PER_TXN_MAX;
    log(
      `  ${target.cluster.label} load: ${keys.toLocaleString('en-US')} / ${plan.keys.toLocaleString('en-US')} keys, ` +
        `${(keys / elapsedS).toFixed(0)} keys/s, ${elapsedS.toFixed(0)} s` +
        (errors > 0 ? `, ${errors} failed Txns (${firstError})` : ''),
    );
  }
  const ms = performance.now() - startMs;
  const changesAfter = await leaderChangesSeen(target.cluster);
  const leaderChanges = changesAfter.reduce<number | null>((most, after, i) => {
    const before = changesBefore[i];
    if (after === null || before == null) return most;
    return Math.max(most ?? 0, after - before);
  }, null);
  return { keys: txns * PUTS_PER_TXN_MAX, ms, errors, firstError, leaderChanges };
}

/** Every member's etcd_server_leader_changes_seen_total (null where it does not answer). */
async function leaderChangesSeen(cluster: BenchCluster): Promise<(number | null)[]> {
  return Promise.all(
    cluster.members.map(async (m) => {
      const text = await fetchText(m.metricsEndpoint ?? m.clientEndpoint, '/metrics');
      return text === null ? null : metricSum(text, 'etcd_server_leader_changes_seen_total');
    }),
  );
}

const loadPrefix = (target: Target, chunk: number): string => `${target.runId}/load/c${chunk}`;

/** A key the load wrote: chunk 0's first Txn's first put (generator 0's when several). */
const loadedKey = (target: Target, plan: Plan): string =>
  `${loadPrefix(target, 0)}${plan.generators > 1 ? '/g0' : ''}/0/0`;

/** One serializable Range of `key` at `endpoint`, on a fresh channel: kvs found, or an error. */
function rangeOnce(endpoint: string, key: string): Promise<number | Error> {
  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
  });
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/etcdserverpb.KV/Range',
      (b: Buffer) => b,
      (b: Buffer) => b,
      encodeRange(Buffer.from(key), true),
      new grpc.Metadata(),
      { deadline: Date.now() + PROBE_TIMEOUT_MS },
      (error, response) => {
        client.close();
        if (error || response === undefined) resolve(error ?? new Error('empty response'));
        else resolve(countRangeKvs(response));
      },
    );
  });
}

/** kill -9 a follower, start it again; ms from the start until it serves a loaded key. */
async function restartToServing(
  target: Target,
  plan: Plan,
): Promise<{ member: string; ms: number }> {
  const cluster = target.cluster;
  const leader = await waitFor('a leader', 30_000, () => cluster.leader());
  const follower = cluster.members.find((m) => m !== leader && m.name !== JOINER_NAME)!;
  const key = loadedKey(target, plan);
  const before = await rangeOnce(follower.clientEndpoint, key);
  if (before !== 1) throw new Error(`${follower.name} does not serve ${key} before: ${before}`);
  await cluster.kill(follower);
  await cluster.restart(follower);
  const startMs = performance.now();
  await waitFor(
    `${cluster.label} ${follower.name} to serve a serializable Range after its restart`,
    RESTART_SERVING_MS_MAX,
    async () => {
      if (!follower.process.running) {
        throw new Error(`${follower.name} exited: ${follower.process.tail(10)}`);
      }
      return (await rangeOnce(follower.clientEndpoint, key)) === 1 ? true : null;
    },
    { intervalMs: PROBE_INTERVAL_MS, detail: () => follower.process.tail(10) },
  );
  const ms = performance.now() - startMs;
  log(`  ${cluster.label} restart of ${follower.name} (kill -9) to serving: ${ms.toFixed(0)} ms`);
  return { member: follower.name, ms };
}

/** The leader's commit (tandem) or Raft (etcd) index. */
async function leaderIndex(cluster: BenchCluster): Promise<number> {
  const leader = await waitFor('a leader', 30_000, () => cluster.leader());
  return memberIndex(cluster, leader, 'commit');
}

/** A member's commit or applied index; -1 when it does not answer. */
async function memberIndex(
  cluster: BenchCluster,
  m: BenchMember,
  which: 'commit' | 'applied',
): Promise<number> {
  if (cluster.kind === 'tandem') {
    const s = await (cluster as TandemCluster).local.member(m.name).tryStatus();
    if (s === null) return -1;
    return which === 'commit' ? s.commitIndex : s.appliedIndex;
  }
  const s = (await fetchJson(m.clientEndpoint, '/v3/maintenance/status', {})) as {
    raftIndex?: string;
    raftAppliedIndex?: string;
  } | null;
  if (s === null) return -1;
  const index = which === 'applied' ? (s.raftAppliedIndex ?? s.raftIndex) : s.raftIndex;
  return Number(index ?? -1);
}

function etcdctl(endpoints: readonly string[], args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'etcdctl',
      [`--endpoints=${endpoints.join(',')}`, ...args],
      { timeout: ETCDCTL_TIMEOUT_MS, env: { ...process.env, ETCDCTL_API: '3' } },
      (error, stdout, stderr) => {
        if (error !== null) {
          const hint =
            (error as NodeJS.ErrnoException).code === 'ENOENT'
              ? ' (install it: apt-get install -y etcd-client)'
              : '';
          reject(new Error(`etcdctl ${args.join(' ')}${hint}: ${stderr || error.message}`));
        } else resolve(stdout);
      },
    );
  });
}

/** Puts until the leader's index is past --snapshot-entries + margin (bounded). */
async function pastSnapshot(target: Target, plan: Plan): Promise<void> {
  const goal = plan.snapshotEntries + SNAPSHOT_MARGIN_ENTRIES;
  const startMs = performance.now();
  for (let round = 0; round < 100; round++) {
    const index = await leaderIndex(target.cluster);
    if (index >= goal) return;
    if (performance.now() - startMs > TOP_UP_MS_MAX) {
      throw new Error(`${target.cluster.label}: index ${index} still below ${goal}`);
    }
    const result = await target.pool.runCell(
      putCell(`${target.runId}/top-up/${round}`, PUT_IN_FLIGHT, goal - index, TOP_UP_MS_MAX),
      plan.generators,
    );
    // Filler puts: a few timing out on a loaded machine is no failure, no progress at all is.
    if (result.ops === 0) throw new Error(`top-up puts failed: ${result.firstError}`);
  }
}

/** The joiner's snapshot: tandem's "snapshot received" log line (bytes), summed. */
function tandemSnapshotBytes(logFile: string): number | null {
  let text: string;
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return null;
  }
  let bytes: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.includes('"snapshot received"')) continue;
    try {
      const record = JSON.parse(line) as { bytes?: number };
      if (typeof record.bytes === 'number') bytes = (bytes ?? 0) + record.bytes;
    } catch {
      // not a JSON line
    }
  }
  return bytes;
}

/** A Prometheus counter's value summed over its label sets, from /metrics text; null if absent. */
export function metricSum(text: string, name: string): number | null {
  let sum: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

async function fetchText(address: string, path: string): Promise<string | null> {
  try {
    const res = await fetch(`http://${address}${path}`, { signal: AbortSignal.timeout(5000) });
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}

/** Adds a learner (etcdctl member add), starts it, times its catch-up. */
async function joinBySnapshot(target: Target, plan: Plan): Promise<JoinResult> {
  await pastSnapshot(target, plan);
  const cluster = target.cluster;
  let joiner: BenchMember;
  if (cluster.kind === 'tandem') {
    const local = (cluster as TandemCluster).local;
    const member = await local.addMember({
      name: JOINER_NAME,
      config: { cluster: { state: 'existing' } },
    });
    joiner = {
      name: member.name,
      clientEndpoint: member.spec.client,
      metricsEndpoint: member.spec.admin,
      dataDir: member.spec.dataDir,
      logFile: member.spec.logFile!,
      process: member,
    };
  } else {
    joiner = await (cluster as EtcdCluster).addMember(JOINER_NAME);
  }
  const peerUrl =
    cluster.kind === 'tandem'
      ? `http://${(cluster as TandemCluster).local.member(JOINER_NAME).spec.peer}`
      : (joiner as { peerUrl: string } & BenchMember).peerUrl;
  // etcd refuses a member add for a while after a member restarted ("unhealthy cluster": every
  // voter must have been connected for 5 s); nothing was added then, so it is retried.
  const added = await waitFor(
    `${cluster.label}: member add`,
    MEMBER_ADD_MS_MAX,
    async () => {
      try {
        return await etcdctl(cluster.endpoints, [
          'member',
          'add',
          JOINER_NAME,
          '--learner',
          `--peer-urls=${peerUrl}`,
        ]);
      } catch (error) {
        if (/unhealthy cluster/.test((error as Error).message)) return null;
        throw new FatalWait((error as Error).message);
      }
    },
    { intervalMs: 1000 },
  );
  if (!/added to cluster/.test(added)) throw new Error(`member add: ${added}`);
  const targetIndex = await leaderIndex(cluster);
  joiner.process.spawn();
  const startMs = performance.now();
  await waitFor(
    `${cluster.label} joiner to apply index ${targetIndex}`,
    JOIN_CATCH_UP_MS_MAX,
    async () => {
      if (!joiner.process.running) {
        throw new Error(`the joiner exited: ${joiner.process.tail(10)}`);
      }
      return (await memberIndex(cluster, joiner, 'applied')) >= targetIndex ? true : null;
    },
    { intervalMs: STATUS_POLL_MS, detail: () => joiner.process.tail(10) },
  );
  const catchUpMs = performance.now() - startMs;
  let snapshotBytes: number | null;
  let bySnapshot: boolean;
  let how: string;
  if (cluster.kind === 'tandem') {
    snapshotBytes = tandemSnapshotBytes(joiner.logFile);
    bySnapshot = snapshotBytes !== null;
    how = "bytes from the joiner's 'snapshot received' log line";
  } else {
    const metrics = (await fetchText(joiner.clientEndpoint, '/metrics')) ?? '';
    const received = metricSum(metrics, 'etcd_network_snapshot_receive_success');
    bySnapshot = received !== null && received > 0;
    const dbBytes = metricSum(metrics, 'etcd_mvcc_db_total_size_in_bytes');
    snapshotBytes = bySnapshot ? dbBytes : null;
    how = `etcd_network_snapshot_receive_success ${received ?? 'absent'}; bytes: the joiner's etcd_mvcc_db_total_size_in_bytes after catch-up (etcd sends its bbolt file whole)`;
  }
  const mbPerSec = snapshotBytes === null ? null : snapshotBytes / 1024 / 1024 / (catchUpMs / 1000);
  log(
    `  ${cluster.label} joiner caught up (index ${targetIndex}) in ${catchUpMs.toFixed(0)} ms, ` +
      `${bySnapshot ? `snapshot ${((snapshotBytes ?? 0) / 1024 / 1024).toFixed(1)} MiB, ${mbPerSec?.toFixed(1)} MiB/s` : 'no snapshot (log replay)'}`,
  );
  return { targetIndex, catchUpMs, bySnapshot, snapshotBytes, mbPerSec, how };
}

async function keysPhase(plan: Plan, results: ScaleResults): Promise<void> {
  const targets = await openTargets(plan, 3);
  try {
    type Partial = {
      memEmpty: { rss: number; anon: number }[];
      putEmpty?: PutCell;
      loaded?: LoadOutcome;
      memLoaded?: { rss: number; anon: number }[];
      putLoaded?: PutCell;
      restart?: { member: string; ms: number };
      join?: JoinResult;
    };
    const parts = new Map<Target, Partial>();
    let step = 0;
    const each = async (f: (t: Target, p: Partial) => Promise<void>): Promise<void> => {
      for (const t of inOrder(targets, step)) await f(t, parts.get(t)!);
      step++;
    };
    for (const t of targets) {
      parts.set(t, { memEmpty: t.cluster.members.map((m) => memoryKiB(m.process.pid)) });
    }
    log('keys: put cell on the empty store');
    for (const [t, cell] of await measurePutRounds(targets, plan, 'put-empty', step++)) {
      parts.get(t)!.putEmpty = cell;
    }
    log(`keys: loading ${plan.keys} keys`);
    await each(async (t, p) => {
      p.loaded = await load(t, plan);
      await t.cluster.waitReady(READY_MS_MAX);
      p.memLoaded = t.cluster.members.map((m) => memoryKiB(m.process.pid));
    });
    log('keys: put cell on the loaded store');
    for (const [t, cell] of await measurePutRounds(targets, plan, 'put-loaded', step++)) {
      parts.get(t)!.putLoaded = cell;
    }
    log('keys: restart to serving');
    await each(async (t, p) => {
      p.restart = await restartToServing(t, plan);
      await t.cluster.waitReady(READY_MS_MAX);
    });
    log('keys: a new member by snapshot');
    await each(async (t, p) => {
      p.join = await joinBySnapshot(t, plan);
    });
    for (const t of targets) {
      const p = parts.get(t)!;
      const keys = p.loaded!.keys;
      results.keys.push({
        system: t.system,
        label: t.cluster.label,
        keysLoaded: keys,
        loadMs: p.loaded!.ms,
        loadKeysPerSec: (keys * 1000) / p.loaded!.ms,
        loadErrors: p.loaded!.errors,
        loadFirstError: p.loaded!.firstError,
        loadLeaderChanges: p.loaded!.leaderChanges,
        putEmpty: p.putEmpty!,
        putLoaded: p.putLoaded!,
        putLoadedOverEmpty: p.putLoaded!.opsPerSec / p.putEmpty!.opsPerSec,
        memory: t.cluster.members
          .filter((m) => m.name !== JOINER_NAME)
          .map((m, i) => {
            const e = p.memEmpty[i]!;
            const l = p.memLoaded![i]!;
            return {
              name: m.name,
              rssEmptyKiB: e.rss,
              rssLoadedKiB: l.rss,
              anonEmptyKiB: e.anon,
              anonLoadedKiB: l.anon,
              rssBytesPerKey: ((l.rss - e.rss) * 1024) / keys,
              anonBytesPerKey: ((l.anon - e.anon) * 1024) / keys,
            };
          }),
        dataDirBytes: t.cluster.members
          .filter((m) => m.name !== JOINER_NAME)
          .map((m) => directoryBytes(m.dataDir)),
        restartMember: p.restart!.member,
        restartToServingMs: p.restart!.ms,
        join: p.join!,
      });
    }
  } finally {
    await closeTargets(targets);
  }
}

// ---------------------------------------------------------------------------------------------
// Phase watch (and the 3-voter put cell)

/** One put of a stamped value to `key` through `client`: the revision, or an error. */
function stampedPut(client: grpc.Client, key: Buffer): Promise<number | Error> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/etcdserverpb.KV/Put',
      (b: Buffer) => b,
      (b: Buffer) => b,
      encodePut(key, stampValue(VALUE_BYTES)),
      new grpc.Metadata(),
      { deadline: Date.now() + PUT_TIMEOUT_MS },
      (error, response) => {
        if (error || response === undefined) resolve(error ?? new Error('empty response'));
        else resolve(responseRevision(response));
      },
    );
  });
}

async function watchOne(target: Target, plan: Plan): Promise<WatchResult> {
  const key = `${target.runId}/watched`;
  const label = target.cluster.label;
  log(`  ${label}: opening ${plan.watchers} watchers…`);
  const pool = await WatcherPool.start(target.cluster.endpoints, key, plan.watchers, {
    processes: Math.min(WATCHER_PROCESSES, plan.watchers),
    streamsPerConnection: STREAMS_PER_CONNECTION,
  });
  active.add(pool);
  const client = new grpc.Client(target.cluster.endpoints[0]!, grpc.credentials.createInsecure());
  try {
    const putsPlanned = Math.max(1, Math.floor((plan.watchRate * plan.watchMs) / 1000));
    const intervalMs = 1000 / plan.watchRate;
    const keyBytes = Buffer.from(key);
    const firstPutMs = wallMs();
    let lastPutMs = firstPutMs;
    let lastRevision = 0;
    let puts = 0;
    let putErrors = 0;
    let firstPutError: string | null = null;
    // One put at a time, each at its due time or when the previous one is answered if that is
    // later: every sent put is acknowledged (or failed), so the events due are exactly known.
    const stopPutsMs = firstPutMs + plan.watchMs + WATCH_PUT_OVERRUN_MS;
    for (let i = 0; i < putsPlanned && wallMs() < stopPutsMs; i++) {
      const waitMs = firstPutMs + i * intervalMs - wallMs();
      if (waitMs > 0) await sleep(waitMs);
      lastPutMs = wallMs();
      const r = await stampedPut(client, keyBytes);
      if (r instanceof Error) {
        putErrors++;
        firstPutError ??= r.message;
        if (putErrors >= WATCH_PUT_ERRORS_MAX) break;
      } else {
        puts++;
        lastRevision = Math.max(lastRevision, r);
      }
    }
    let report: WatchReport = await pool.report();
    const drainEndMs = performance.now() + WATCH_DRAIN_MS_MAX;
    while (report.lastRevisionMin < lastRevision && performance.now() < drainEndMs) {
      await sleep(WATCH_REPORT_POLL_MS);
      report = await pool.report();
    }
    const caughtUp = report.lastRevisionMin >= lastRevision;
    const spanMs = (report.lastEventMs ?? firstPutMs) - firstPutMs;
    const result: WatchResult = {
      system: target.system,
      label,
      watchers: plan.watchers,
      connections: Math.ceil(plan.watchers / STREAMS_PER_CONNECTION),
      puts,
      putsPerSec: lastPutMs > firstPutMs ? (puts * 1000) / (lastPutMs - firstPutMs) : 0,
      putErrors,
      eventsExpected: puts * plan.watchers,
      events: report.events,
      eventsPerSec: spanMs > 0 ? (report.events * 1000) / spanMs : 0,
      lagP50Ms: report.lagP50Ms,
      lagP99Ms: report.lagP99Ms,
      slowestWatcherLagMs: report.lagMaxMs,
      lastPutToLastWatcherMs: caughtUp ? (report.lastEventMs ?? lastPutMs) - lastPutMs : null,
      eventsMinPerWatcher: report.eventsMin,
      failedWatchers: report.failed,
      firstFailure: report.firstFailure ?? firstPutError,
      watcherCpuUsPerEvent: report.events === 0 ? null : report.clientCpuUs / report.events,
    };
    const missing = result.eventsExpected - result.events;
    log(
      `  ${label}: ${result.events}/${result.eventsExpected} events, ${result.eventsPerSec.toFixed(0)} events/s, ` +
        `lag p99 ${result.lagP99Ms.toFixed(1)} ms, slowest ${result.slowestWatcherLagMs.toFixed(1)} ms` +
        (missing !== 0 ? `, ${missing} events missing` : ''),
    );
    return result;
  } finally {
    client.close();
    await release(pool);
  }
}

async function watchPhase(plan: Plan, results: ScaleResults): Promise<void> {
  const targets = await openTargets(plan, 3);
  try {
    if (plan.phases.includes('voters')) {
      log('voters: put cell on 3 voters');
      for (const [t, put] of await measurePutRounds(targets, plan, 'put-3-voters', 0)) {
        results.voters.push({ system: t.system, label: t.cluster.label, voters: 3, put });
      }
    }
    if (plan.phases.includes('watch')) {
      log(`watch: ${plan.watchers} watchers on one key`);
      for (const t of inOrder(targets, 1)) results.watch.push(await watchOne(t, plan));
    }
  } finally {
    await closeTargets(targets);
  }
}

async function fiveVotersPhase(plan: Plan, results: ScaleResults): Promise<void> {
  const targets = await openTargets(plan, 5);
  try {
    log('voters: put cell on 5 voters');
    for (const [t, put] of await measurePutRounds(targets, plan, 'put-5-voters', 1)) {
      results.voters.push({ system: t.system, label: t.cluster.label, voters: 5, put });
    }
  } finally {
    await closeTargets(targets);
  }
}

// ---------------------------------------------------------------------------------------------
// The report

const n0 = (n: number | null | undefined): string =>
  n == null ? '—' : Math.round(n).toLocaleString('en-US');
const n1 = (n: number | null | undefined): string => (n == null ? '—' : n.toFixed(1));
const n2 = (n: number | null | undefined): string => (n == null ? '—' : n.toFixed(2));
const ratio = (a: number | null | undefined, b: number | null | undefined): string =>
  a != null && b != null && b > 0 ? `${(a / b).toFixed(2)}×` : '—';
const rounds = (c: PutCell | undefined): string =>
  c === undefined ? '—' : c.opsPerSecRounds.map((x) => x.toFixed(0)).join(' / ');
const bySystem = <T extends { system: Suite }>(rows: readonly T[], system: Suite): T | undefined =>
  rows.find((r) => r.system === system);

function keysTable(results: ScaleResults): string[] {
  if (results.keys.length === 0) return [];
  const e = bySystem(results.keys, 'etcd');
  const t = bySystem(results.keys, 'tandem');
  const row = (
    name: string,
    f: (r: KeysResult) => number | null,
    fmt: (n: number | null) => string,
    better: 'higher' | 'lower',
  ): string => {
    const ev = e === undefined ? null : f(e);
    const tv = t === undefined ? null : f(t);
    return `| ${name} | ${fmt(ev)} | ${fmt(tv)} | ${ratio(tv, ev)} (${better} is better) |`;
  };
  const avg = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const keys = (t ?? e)!.keysLoaded;
  return [
    `## ${n0(keys)} keys of ${VALUE_BYTES} bytes (3 members)`,
    '',
    '| figure | etcd | tandem | tandem/etcd |',
    '|---|--:|--:|--:|',
    row('load (Txns of 128 puts), keys/s', (r) => r.loadKeysPerSec, n0, 'higher'),
    row('load: failed Txns', (r) => r.loadErrors, n0, 'lower'),
    row('load: leader changes (most any member saw)', (r) => r.loadLeaderChanges, n0, 'lower'),
    row(`puts/s @${PUT_IN_FLIGHT}, empty store`, (r) => r.putEmpty.opsPerSec, n0, 'higher'),
    row(`puts/s @${PUT_IN_FLIGHT}, loaded store`, (r) => r.putLoaded.opsPerSec, n0, 'higher'),
    row('loaded / empty puts/s', (r) => r.putLoadedOverEmpty, n2, 'higher'),
    row('put p99 ms, empty store', (r) => r.putEmpty.p99Ms, n1, 'lower'),
    row('put p99 ms, loaded store', (r) => r.putLoaded.p99Ms, n1, 'lower'),
    row(
      'RSS per key, bytes (mean of members)',
      (r) => avg(r.memory.map((m) => m.rssBytesPerKey)),
      n0,
      'lower',
    ),
    row(
      'anonymous RSS per key, bytes (mean)',
      (r) => avg(r.memory.map((m) => m.anonBytesPerKey)),
      n0,
      'lower',
    ),
    row(
      'RSS loaded, MiB (largest member)',
      (r) => Math.max(...r.memory.map((m) => m.rssLoadedKiB)) / 1024,
      n0,
      'lower',
    ),
    row(
      'data directory, MiB (largest member)',
      (r) => Math.max(...r.dataDirBytes) / 1024 / 1024,
      n0,
      'lower',
    ),
    row('restart (kill -9) to serving, ms', (r) => r.restartToServingMs, n0, 'lower'),
    row('new member caught up, ms', (r) => r.join.catchUpMs, n0, 'lower'),
    row(
      'snapshot, MiB',
      (r) => (r.join.snapshotBytes === null ? null : r.join.snapshotBytes / 1024 / 1024),
      n1,
      'lower',
    ),
    row('snapshot MiB/s (bytes / catch-up time)', (r) => r.join.mbPerSec, n1, 'higher'),
    '',
    ...results.keys.map(
      (r) =>
        `- ${r.label}: members' RSS empty → loaded (MiB): ${r.memory
          .map((m) => `${m.name} ${n0(m.rssEmptyKiB / 1024)} → ${n0(m.rssLoadedKiB / 1024)}`)
          .join(', ')}; ` +
        `put rounds, puts/s: empty ${rounds(r.putEmpty)}, loaded ${rounds(r.putLoaded)}; ` +
        `restarted ${r.restartMember}; joiner by snapshot: ${r.join.bySnapshot ? 'yes' : 'NO (log replay)'} (${r.join.how}), target index ${r.join.targetIndex}` +
        (r.loadFirstError !== null ? `; first failed load Txn: ${r.loadFirstError}` : '') +
        (r.putEmpty.errors + r.putLoaded.errors > 0
          ? `; put errors: ${r.putEmpty.firstError ?? r.putLoaded.firstError}`
          : ''),
    ),
    '',
  ];
}

function watchTable(results: ScaleResults): string[] {
  if (results.watch.length === 0) return [];
  const lines = [
    `## ${n0(results.plan.watchers)} watchers on one key (3 members)`,
    '',
    '| system | connections | puts (per s) | events / expected | events/s | lag p50 ms | lag p99 ms | slowest watcher lag ms | last put → last watcher ms | failed watchers | watcher CPU µs/event |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of results.watch) {
    lines.push(
      `| ${r.label} | ${r.connections} | ${r.puts} (${n1(r.putsPerSec)}) | ${n0(r.events)} / ${n0(r.eventsExpected)} | ${n0(r.eventsPerSec)} | ` +
        `${n1(r.lagP50Ms)} | ${n1(r.lagP99Ms)} | ${n1(r.slowestWatcherLagMs)} | ${n0(r.lastPutToLastWatcherMs)} | ${r.failedWatchers} | ${n1(r.watcherCpuUsPerEvent)} |`,
    );
  }
  for (const r of results.watch) {
    if (r.firstFailure !== null) lines.push('', `- ${r.label}: first failure: ${r.firstFailure}`);
  }
  lines.push('');
  return lines;
}

function votersTable(results: ScaleResults): string[] {
  if (results.voters.length === 0) return [];
  const lines = [
    `## 5 voters against 3 (puts @${PUT_IN_FLIGHT} in flight, empty store)`,
    '',
    '| system | 3 voters puts/s | 5 voters puts/s | 5/3 | p99 ms 3 / 5 | server CPU µs/put 3 / 5 | rounds 3 voters | rounds 5 voters |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const system of SUITES) {
    const three = results.voters.find((r) => r.system === system && r.voters === 3);
    const five = results.voters.find((r) => r.system === system && r.voters === 5);
    if (three === undefined && five === undefined) continue;
    lines.push(
      `| ${(three ?? five)!.label} | ${n0(three?.put.opsPerSec)} | ${n0(five?.put.opsPerSec)} | ${ratio(five?.put.opsPerSec, three?.put.opsPerSec)} | ` +
        `${n1(three?.put.p99Ms)} / ${n1(five?.put.p99Ms)} | ${n0(three?.put.serverCpuUsPerOp)} / ${n0(five?.put.serverCpuUsPerOp)} | ` +
        `${rounds(three?.put)} | ${rounds(five?.put)} |`,
    );
  }
  const e5 = results.voters.find((r) => r.system === 'etcd' && r.voters === 5);
  const t5 = results.voters.find((r) => r.system === 'tandem' && r.voters === 5);
  if (e5 !== undefined && t5 !== undefined) {
    lines.push('', `- 5 voters, tandem/etcd puts/s: ${ratio(t5.put.opsPerSec, e5.put.opsPerSec)}`);
  }
  lines.push('');
  return lines;
}

function report(results: ScaleResults, elapsedS: number): string {
  const cpu = cpus();
  const plan = results.plan;
  return [
    `# tandem scale bench — ${results.startedAt}`,
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, Node ${process.version}. ` +
      `Phases: ${plan.phases.join(', ')}; systems: ${plan.suites.join(', ')}; --keys ${plan.keys}, --watchers ${plan.watchers}, ` +
      `watch puts ${plan.watchRate}/s for ${plan.watchMs} ms, put cells ${plan.cellMs} ms at ${PUT_IN_FLIGHT} in flight on ${plan.generators} generator process(es), ` +
      `${plan.putRounds} rounds per figure interleaved between the systems (the order alternating per round), the median round reported. ` +
      `Both systems on 127.0.0.1, fsync on, snapshots every ${plan.snapshotEntries} entries (tandem raft.snapshotEntries, etcd --snapshot-count), otherwise defaults. ` +
      `Run took ${elapsedS.toFixed(0)} s; load average (1 min) ${results.loadAvgStart.toFixed(1)} at the start, ${results.loadAvgEnd.toFixed(1)} at the end.`,
    '',
    ...keysTable(results),
    ...watchTable(results),
    ...votersTable(results),
    ...results.notes.map((n) => `- ${n}`),
    ...results.failures.map((f) => `- **failed:** ${f}`),
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Flags, deadline, main

function listFlag(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function intFlag(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!(Number.isInteger(n) && n >= min && n <= max)) {
    throw new Error(`--${name} must be an integer ${min}..${max}, got ${text}`);
  }
  return n;
}

export function parsePlan(args: readonly string[]): Plan {
  const { values } = parseArgs({
    args: [...args],
    options: {
      keys: { type: 'string', default: String(KEYS_DEFAULT) },
      watchers: { type: 'string', default: String(WATCHERS_DEFAULT) },
      'watch-rate': { type: 'string', default: String(WATCH_RATE_DEFAULT) },
      'watch-ms': { type: 'string', default: String(WATCH_MS_DEFAULT) },
      'cell-ms': { type: 'string', default: String(CELL_MS_DEFAULT) },
      'put-rounds': { type: 'string', default: String(PUT_ROUNDS_DEFAULT) },
      'snapshot-entries': { type: 'string', default: String(SNAPSHOT_ENTRIES_DEFAULT) },
      suites: { type: 'string', default: SUITES.join(',') },
      phases: { type: 'string', default: PHASES.join(',') },
      generators: { type: 'string', default: '2' },
      out: { type: 'string', default: join(benchDir, 'out') },
      keep: { type: 'boolean', default: false },
    },
  });
  const suites = listFlag(values.suites);
  for (const s of suites) {
    if (!(SUITES as readonly string[]).includes(s)) throw new Error(`unknown suite '${s}'`);
  }
  const phases = listFlag(values.phases);
  for (const p of phases) {
    if (!(PHASES as readonly string[]).includes(p)) throw new Error(`unknown phase '${p}'`);
  }
  if (suites.length === 0 || phases.length === 0)
    throw new Error('--suites and --phases: one at least');
  return {
    keys: intFlag('keys', values.keys, PUTS_PER_TXN_MAX, KEYS_MAX),
    watchers: intFlag('watchers', values.watchers, 1, WATCHERS_MAX),
    watchRate: intFlag('watch-rate', values['watch-rate'], 1, WATCH_RATE_MAX),
    watchMs: intFlag('watch-ms', values['watch-ms'], 100, WATCH_MS_MAX),
    cellMs: intFlag('cell-ms', values['cell-ms'], 100, CELL_MS_MAX),
    putRounds: intFlag('put-rounds', values['put-rounds'], 1, PUT_ROUNDS_MAX),
    snapshotEntries: intFlag(
      'snapshot-entries',
      values['snapshot-entries'],
      SNAPSHOT_ENTRIES_MIN,
      SNAPSHOT_ENTRIES_DEFAULT * 10,
    ),
    suites: SUITES.filter((s) => suites.includes(s)),
    phases: PHASES.filter((p) => phases.includes(p)),
    generators: intFlag('generators', values.generators, 1, GENERATORS_MAX),
    outDir: values.out,
    keep: values.keep,
  };
}

/** The whole run's bound: the fixed part, the load at its slowest allowed rate, the cells. */
export function runDeadlineMs(plan: Plan): number {
  const loadMs = plan.phases.includes('keys')
    ? plan.suites.length * ((plan.keys / LOAD_KEYS_PER_S_MIN) * 1000 + 2 * RESTART_SERVING_MS_MAX)
    : 0;
  const watchMs = plan.phases.includes('watch')
    ? plan.suites.length * (plan.watchMs + WATCH_PUT_OVERRUN_MS + WATCH_DRAIN_MS_MAX + 120_000)
    : 0;
  const putCells = 4 * plan.putRounds * plan.suites.length;
  return RUN_FIXED_MS + loadMs + watchMs + putCells * (plan.cellMs + 5000);
}

async function main(plan: Plan): Promise<number> {
  const startedAt = new Date();
  const results: ScaleResults = {
    startedAt: startedAt.toISOString(),
    plan,
    loadAvgStart: loadavg()[0]!,
    loadAvgEnd: 0,
    keys: [],
    watch: [],
    voters: [],
    failures: [],
    notes: [],
  };
  log(
    `scale plan: phases ${plan.phases.join(', ')} on ${plan.suites.join(' + ')}; ${plan.keys} keys, ` +
      `${plan.watchers} watchers; deadline ${Math.round(runDeadlineMs(plan) / 1000)} s; load average ${results.loadAvgStart.toFixed(1)}`,
  );
  if (plan.suites.includes('tandem')) {
    log('build: npx tsc -p tsconfig.json, then tools/bundle-cli.mjs…');
    const warning = buildTandem();
    if (warning !== null) {
      log(`  warning: ${firstLines(warning)}`);
      results.notes.push(`build: ${warning.split('\n')[0]}`);
    }
  }
  const phase = async (name: string, body: () => Promise<void>): Promise<void> => {
    try {
      await body();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log(`phase ${name} failed: ${message}`);
      results.failures.push(`${name}: ${firstLines(message, 12)}`);
      await stopActive();
      active.clear();
    }
  };
  if (plan.phases.includes('keys')) await phase('keys', () => keysPhase(plan, results));
  if (plan.phases.includes('watch') || plan.phases.includes('voters')) {
    await phase('watch', () => watchPhase(plan, results));
  }
  if (plan.phases.includes('voters')) await phase('voters', () => fiveVotersPhase(plan, results));
  results.loadAvgEnd = loadavg()[0]!;
  const text = report(results, (Date.now() - startedAt.getTime()) / 1000);
  mkdirSync(plan.outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  for (const name of [`scale-${stamp}`, 'scale-latest']) {
    writeFileSync(join(plan.outDir, `${name}.md`), text);
    writeFileSync(join(plan.outDir, `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  }
  process.stdout.write(
    `${text}\nwritten to ${join(plan.outDir, `scale-${stamp}.md`)} (and .json)\n`,
  );
  const putErrors = [
    ...results.keys.flatMap((r) => [r.putEmpty, r.putLoaded]),
    ...results.voters.map((r) => r.put),
  ].some((c) => c.errors > 0);
  const watchFailed = results.watch.some(
    (r) => r.failedWatchers > 0 || r.putErrors > 0 || r.events !== r.eventsExpected,
  );
  const loadFailed = results.keys.some((r) => r.loadErrors > 0);
  return results.failures.length > 0 || putErrors || watchFailed || loadFailed ? 1 : 0;
}

let aborting = false;

async function abort(why: string, code: number): Promise<never> {
  aborting = true;
  log(`bench:scale: ${why}; stopping clusters`);
  await stopActive();
  process.exit(code);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.once('SIGINT', () => void abort('interrupted', 130));
  process.once('SIGTERM', () => void abort('terminated', 143));
  try {
    const plan = parsePlan(process.argv.slice(2));
    const deadlineMs = runDeadlineMs(plan);
    const deadline = setTimeout(() => void abort(`run exceeded ${deadlineMs} ms`, 3), deadlineMs);
    deadline.unref();
    process.exitCode = await main(plan);
  } catch (error) {
    if (!aborting) {
      log(
        `bench:scale: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      );
      await stopActive();
      process.exitCode = 2;
    }
  }
}
