/**
 * `npm run bench:profile`: where a put's CPU goes, stage by stage, on each member of a tandem
 * cluster (3 members unless --members). Starts the cluster from the compiled build with
 * `node --cpu-prof` (the launcher's nodeArgs), runs a closed-loop put load at a chosen in-flight
 * count for a fixed time, stops the members cleanly (SIGTERM: a member writes its profile as it
 * exits), then charges every profile sample taken during the load to a stage (STAGES below)
 * and prints, per member (leader and followers), µs of CPU per put per stage as a markdown
 * table (also written to bench/out/profile-latest.md).
 *
 *   npm run bench:profile [-- --in-flight 64 --members 3 --seconds 10 --warmup-seconds 20
 *                            --interval-us 1000 --node-args='--max-semi-space-size=32' --keep]
 *
 * What the figures are:
 * - The profile samples only the main thread (the event loop): JavaScript, the C++ it calls,
 *   and native work with no JavaScript on the stack ("(program)"). Work on other threads is not
 *   in it; the "thread group" rows split it from /proc/<pid>/task (bench/procs.ts): V8's
 *   platform workers (GC helpers, concurrent compilation), the libuv pool (the WAL's writes and
 *   fdatasyncs), and V8's profiler thread, which exists only under --cpu-prof.
 * - fdatasync runs on the libuv pool: the event loop is idle meanwhile, so its cost is wall
 *   time, not CPU. The "fsync wait" row is that wall time per put (tandem_wal_fsync_seconds
 *   from the member's /metrics, before and after the load), not CPU, and is not in any total.
 * - "idle" is the event loop waiting (not CPU): wall time per put.
 * - Samples are taken only between the load's start and end (profile timestamps and this
 *   process's clock are both CLOCK_MONOTONIC), so start-up and shutdown are left out.
 * - The profiler itself costs some CPU (a signal per sample interval).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { REPO_DIR } from '../src/cli/local-cluster.js';
import { GrpcKvClient, IN_FLIGHT_MAX, runCell } from './load.js';
import { type MemberScrape, scrapeMember } from './member-metrics.js';
import {
  DEFAULT_THREAD_LAYOUT,
  mainThreadCpuMs,
  processesCpuMs,
  THREAD_GROUPS,
  type ThreadCpu,
  type ThreadGroup,
  threadCpuMs,
  threadGroupCpuMs,
} from './procs.js';
import {
  buildTandem,
  firstLines,
  MEMBERS_MAX,
  startTandemCluster,
  type TandemCluster,
} from './tandem-cluster.js';

const VALUE_BYTES = 256;
const WARMUP_OPS = 1000;
/**
 * Long enough by default for V8's optimizing compiler to settle: its concurrent compilation on
 * the platform's worker threads was most of their CPU in a 10 s load that followed only the
 * 1000 warm-up puts (0 s), and kept going for tens of seconds at ~1,000 puts/s.
 */
const WARMUP_SECONDS_DEFAULT = 20;
const WARMUP_SECONDS_MAX = 300;
const SECONDS_MAX = 120;
const CONNECT_TIMEOUT_MS = 10_000;
/** A member writes its profile as it exits: a large one takes a few seconds on a busy machine. */
const STOP_TIMEOUT_MS = 20_000;
/** Frames listed under the stage table, to check the mapping. */
const TOP_FRAMES = 15;

const benchDir = dirname(fileURLToPath(import.meta.url));
const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
/** A tandem source directory or file, compiled (dist/…js, what members run) or not (src/…ts). */
const own = (path: string): RegExp =>
  new RegExp(`${escapeRegExp(REPO_DIR)}/(src|dist)/${path.replace(/\.js$/, '\\.(js|ts)')}`);

/**
 * Stages, first match wins, on a frame's URL (or V8's pseudo-function name). A frame that
 * matches none (Node internals everyone uses: streams, events, buffers, promises, timers) is
 * charged to its nearest caller that matches, and to "other" if none does. So a stream write
 * from src/transport is network, the same write from grpc-js is the gRPC edge. FALLBACK_STAGES
 * apply only when no frame of the stack matches STAGES (a socket read's callback, called from
 * native code with nothing above it).
 */
const STAGES: readonly { readonly stage: string; readonly frames: readonly RegExp[] }[] = [
  { stage: 'GC', frames: [/^\(garbage collector\)$/] },
  { stage: 'native, no JS on the stack (program)', frames: [/^\(program\)$/] },
  { stage: 'metrics', frames: [/\/node_modules\/prom-client\//, own('server/metrics.js')] },
  {
    stage: 'gRPC edge',
    frames: [/\/node_modules\/@grpc\//, own('api/'), /^node:internal\/http2\//, /^node:http2$/],
  },
  { stage: 'msgpack', frames: [/\/node_modules\/msgpackr\//] },
  {
    stage: 'apply (kv, lmdb)',
    frames: [
      /\/node_modules\/lmdb\//,
      own('kv/'),
      own('server/state-machine.js'),
      own('server/tandem-state-machine.js'),
    ],
  },
  { stage: 'WAL encode + write', frames: [own('storage/'), /\/node_modules\/@node-rs\/crc32/] },
  // The member around Raft: proposals, the Ready loop, envelopes, leases, the registry.
  { stage: 'propose/raft', frames: [own('raft/'), own('server/'), own('io/'), own('cluster/')] },
  {
    stage: 'network (transport, sockets)',
    frames: [own('transport/'), /^node:net$/, /^node:internal\/net$/],
  },
  { stage: 'logging', frames: [/\/node_modules\/(pino|sonic-boom|thread-stream)\//] },
];
/**
 * Whole subtrees, checked before STAGES: a sample with any of these frames on its stack (below
 * its own frame, unless that is a pseudo-frame such as GC) is charged here, whatever library it
 * is in. Packing a state-machine snapshot reads the whole store through lmdb (apply's frames),
 * but its cost follows the snapshot rule (Member's snapshotDue), not the puts.
 */
const SUBTREE_STAGES: readonly { readonly stage: string; readonly frames: readonly RegExp[] }[] = [
  { stage: 'snapshots (pack, restore)', frames: [own('kv/mvcc/snapshot.js')] },
];
const FALLBACK_STAGES: readonly { readonly stage: string; readonly frames: readonly RegExp[] }[] = [
  { stage: 'network (transport, sockets)', frames: [/^node:internal\/stream_base_commons$/] },
];
const OTHER = 'other';
const IDLE = '(idle)';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

/** V8's .cpuprofile (what --cpu-prof writes). Times in µs of the monotonic clock. */
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

function matchIn(table: typeof STAGES, frame: CallFrame): string | null {
  const name = frame.url === '' ? frame.functionName : frame.url;
  for (const { stage, frames } of table) {
    if (frames.some((pattern) => pattern.test(name))) return stage;
  }
  return null;
}

/** Per stage, and per self frame, the µs of samples taken within [fromUs, toUs]. */
interface Attribution {
  readonly stageUs: Map<string, number>;
  readonly frameUs: Map<string, { stage: string; us: number }>;
  readonly samples: number;
}

export function attribute(profile: CpuProfile, fromUs: number, toUs: number): Attribution {
  const parent = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const stageCache = new Map<number, string>();
  /** The stage of a sample whose own frame is `id`: see STAGES. */
  const stageOf = (id: number): string => {
    const cached = stageCache.get(id);
    if (cached !== undefined) return cached;
    const self = byId.get(id)!.callFrame;
    let stage = self.url === '' && self.functionName === IDLE ? IDLE : null;
    const pseudo = self.url === '' && self.functionName.startsWith('(');
    if (stage === null && !pseudo) {
      for (
        let at: number | undefined = id;
        stage === null && at !== undefined;
        at = parent.get(at)
      ) {
        stage = matchIn(SUBTREE_STAGES, byId.get(at)!.callFrame);
      }
    }
    let fallback: string | null = null;
    // Up the stack (bounded by the tree's depth) until a frame matches.
    for (let at: number | undefined = id; stage === null && at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      stage = matchIn(STAGES, frame);
      fallback ??= matchIn(FALLBACK_STAGES, frame);
    }
    stage ??= fallback ?? OTHER;
    stageCache.set(id, stage);
    return stage;
  };
  const stageUs = new Map<string, number>();
  const frameUs = new Map<string, { stage: string; us: number }>();
  let samples = 0;
  let timeUs = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    timeUs += profile.timeDeltas[i]!;
    const nextUs =
      i + 1 < profile.samples.length ? timeUs + profile.timeDeltas[i + 1]! : profile.endTime;
    if (timeUs < fromUs || timeUs > toUs) continue;
    const us = Math.max(0, nextUs - timeUs);
    const id = profile.samples[i]!;
    const stage = stageOf(id);
    samples++;
    stageUs.set(stage, (stageUs.get(stage) ?? 0) + us);
    const f = byId.get(id)!.callFrame;
    const where =
      f.url === '' ? '' : ` ${f.url.replace(`file://${REPO_DIR}/`, '')}:${f.lineNumber + 1}`;
    // Stage in the key: a native frame (no URL) such as writeBuffer serves several stages.
    const key = `${stage}\u0000${f.functionName || '(anonymous)'}${where}`;
    const entry = frameUs.get(key) ?? { stage, us: 0 };
    entry.us += us;
    frameUs.set(key, entry);
  }
  return { stageUs, frameUs, samples };
}

interface MemberProfile {
  readonly name: string;
  readonly role: string;
  readonly attribution: Attribution | null;
  readonly processCpuMs: number;
  /** The event loop's thread alone (/proc/<pid>/task/<pid>): what the profile samples. */
  readonly mainThreadCpuMs: number;
  /** CPU per thread group (/proc/<pid>/task/*), over the same interval. */
  readonly threadGroupCpuMs: ReadonlyMap<ThreadGroup, number>;
  readonly fsyncSeconds: number;
  readonly fsyncs: number;
  readonly problem: string | null;
}

function parseFlags() {
  const { values } = parseArgs({
    options: {
      'in-flight': { type: 'string', default: '64' },
      members: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      'warmup-seconds': { type: 'string', default: String(WARMUP_SECONDS_DEFAULT) },
      'interval-us': { type: 'string', default: '1000' },
      keep: { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
      // Extra node flags for every member, e.g. --node-args='--max-semi-space-size=32'.
      'node-args': { type: 'string', default: '' },
    },
  });
  const inFlight = Number(values['in-flight']);
  const seconds = Number(values.seconds);
  const members = Number(values.members);
  if (!(Number.isInteger(members) && members >= 1 && members <= MEMBERS_MAX)) {
    throw new Error(`--members must be 1..${MEMBERS_MAX}`);
  }
  const intervalUs = Number(values['interval-us']);
  if (!(Number.isInteger(inFlight) && inFlight >= 1 && inFlight <= IN_FLIGHT_MAX)) {
    throw new Error(`--in-flight must be 1..${IN_FLIGHT_MAX}`);
  }
  if (!(seconds >= 1 && seconds <= SECONDS_MAX))
    throw new Error(`--seconds must be 1..${SECONDS_MAX}`);
  const warmupSeconds = Number(values['warmup-seconds']);
  if (!(warmupSeconds >= 0 && warmupSeconds <= WARMUP_SECONDS_MAX)) {
    throw new Error(`--warmup-seconds must be 0..${WARMUP_SECONDS_MAX}`);
  }
  if (!(Number.isInteger(intervalUs) && intervalUs >= 50 && intervalUs <= 100_000)) {
    throw new Error('--interval-us must be an integer 50..100000');
  }
  const nodeArgs = values['node-args'].split(/\s+/).filter((a) => a !== '');
  if (nodeArgs.some((a) => !a.startsWith('--'))) throw new Error('--node-args takes node flags');
  return {
    inFlight,
    members,
    seconds,
    warmupSeconds,
    intervalUs,
    nodeArgs,
    keep: values.keep,
    build: !values['no-build'],
  };
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

async function main(): Promise<number> {
  const flags = parseFlags();
  const startedAt = new Date();
  const loadStart = loadavg()[0]!;
  if (flags.build) {
    process.stdout.write('build: npx tsc -p tsconfig.json, then tools/bundle-cli.mjs…\n');
    const warning = buildTandem();
    if (warning !== null) process.stdout.write(`  warning: ${firstLines(warning)}\n`);
  }
  const profDir = mkdtempSync(join(tmpdir(), 'tandem-profile-'));
  process.stdout.write(`profiles in ${profDir}\n`);
  let cluster: TandemCluster | null = null;
  const stopCluster = async (): Promise<void> => {
    await cluster?.stop();
  };
  process.once('SIGINT', () => void stopCluster().then(() => process.exit(130)));
  process.once('SIGTERM', () => void stopCluster().then(() => process.exit(143)));
  try {
    cluster = await startTandemCluster({
      size: flags.members,
      nodeArgs: [
        '--cpu-prof',
        `--cpu-prof-dir=${profDir}`,
        `--cpu-prof-interval=${flags.intervalUs}`,
        ...flags.nodeArgs,
      ],
      stopTimeoutMs: STOP_TIMEOUT_MS,
    });
    const members = cluster.members;
    const pids = members.map((m) => m.process.pid);
    const client = new GrpcKvClient(cluster.endpoints);
    await client.ready(CONNECT_TIMEOUT_MS);
    const runId = `profile/${Date.now().toString(36)}`;
    const cell = (keyPrefix: string, opsMax: number, durationMs: number) =>
      runCell(client, {
        workload: 'put',
        inFlight: flags.inFlight,
        opsMax,
        durationMs,
        valueBytes: VALUE_BYTES,
        keyPrefix,
      });
    process.stdout.write(`warm-up: ${WARMUP_OPS} puts, then puts for ${flags.warmupSeconds} s…\n`);
    await cell(`${runId}/warm`, WARMUP_OPS, 30_000);
    if (flags.warmupSeconds > 0) {
      await cell(`${runId}/warm-jit`, Number.MAX_SAFE_INTEGER, flags.warmupSeconds * 1000);
    }
    const leaderBefore = await cluster.leader();
    const scrape = (): Promise<MemberScrape[]> =>
      Promise.all(members.map((m) => scrapeMember(m.metricsEndpoint!)));
    const before = await scrape();
    const cpuBefore = pids.map((pid) => processesCpuMs([pid]));
    const mainBefore = pids.map(mainThreadCpuMs);
    const layout = threadLayout(flags.nodeArgs);
    const threadsBefore: ThreadCpu[] = pids.map((pid) => threadCpuMs(pid, layout));
    process.stdout.write(`load: puts at ${flags.inFlight} in flight for ${flags.seconds} s…\n`);
    const fromUs = nowUs();
    const result = await cell(`${runId}/load`, Number.MAX_SAFE_INTEGER, flags.seconds * 1000);
    const toUs = nowUs();
    const cpuAfter = pids.map((pid) => processesCpuMs([pid]));
    const mainAfter = pids.map(mainThreadCpuMs);
    const threadsAfter: ThreadCpu[] = pids.map((pid) => threadCpuMs(pid, layout));
    const after = await scrape();
    const leaderAfter = await cluster.leader();
    client.close();
    process.stdout.write(
      `  ${result.ops} puts (${result.opsPerSec.toFixed(0)}/s, p99 ${result.p99Ms.toFixed(2)} ms, ${result.errors} errors); stopping members (profiles are written on exit)…\n`,
    );
    await cluster.stop();
    const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
    const profiles: MemberProfile[] = members.map((m, i) => {
      const file = files.find((f) => f.split('.').includes(String(pids[i])));
      const role = m === leaderAfter ? 'leader' : 'follower';
      const common = {
        name: m.name,
        role,
        processCpuMs: cpuAfter[i]! - cpuBefore[i]!,
        mainThreadCpuMs: mainAfter[i]! - mainBefore[i]!,
        threadGroupCpuMs: threadGroupCpuMs(threadsBefore[i]!, threadsAfter[i]!),
        fsyncSeconds: after[i]!.fsyncSeconds - before[i]!.fsyncSeconds,
        fsyncs: after[i]!.fsyncs - before[i]!.fsyncs,
      };
      if (file === undefined) {
        return { ...common, attribution: null, problem: `no profile for pid ${pids[i]} (killed?)` };
      }
      const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile;
      if (profile.startTime > fromUs || profile.endTime < toUs) {
        return {
          ...common,
          attribution: null,
          problem: `profile [${profile.startTime}, ${profile.endTime}] µs does not cover the load [${fromUs}, ${toUs}]: clocks differ?`,
        };
      }
      return { ...common, attribution: attribute(profile, fromUs, toUs), problem: null };
    });
    const notes = [
      `Run ${startedAt.toISOString()}, ${members.length} members from the compiled build under \`node --cpu-prof --cpu-prof-interval=${flags.intervalUs}${flags.nodeArgs.map((a) => ` ${a}`).join('')}\`, ` +
        `puts of ${VALUE_BYTES} bytes at ${flags.inFlight} in flight for ${flags.seconds} s after ${flags.warmupSeconds} s of warm-up: ${result.ops} puts, ${result.opsPerSec.toFixed(0)}/s, p99 ${result.p99Ms.toFixed(2)} ms, ${result.errors} errors. ` +
        `Load average (1 min) ${loadStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end.`,
    ];
    if (leaderBefore?.name !== leaderAfter?.name) {
      notes.push(
        `**The leader changed during the load** (${leaderBefore?.name ?? 'none'} → ${leaderAfter?.name ?? 'none'}): roles below are at the end.`,
      );
    }
    const text = report(profiles, Math.max(1, result.ops), notes);
    const outDir = join(benchDir, 'out');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'profile-latest.md'), text);
    process.stdout.write(`\n${text}\nwritten to bench/out/profile-latest.md\n`);
    return profiles.some((p) => p.problem !== null) || result.errors > 0 ? 1 : 0;
  } finally {
    await stopCluster();
    if (flags.keep) process.stdout.write(`kept ${profDir}\n`);
    else rmSync(profDir, { recursive: true, force: true });
  }
}

/** The thread counts members run with, from their node flags and UV_THREADPOOL_SIZE. */
function threadLayout(nodeArgs: readonly string[]) {
  const pool = nodeArgs.find((a) => a.startsWith('--v8-pool-size='));
  const uv = Number(process.env.UV_THREADPOOL_SIZE);
  return {
    v8PoolSize: pool === undefined ? DEFAULT_THREAD_LAYOUT.v8PoolSize : Number(pool.split('=')[1]),
    uvThreadpoolSize: Number.isInteger(uv) && uv > 0 ? uv : DEFAULT_THREAD_LAYOUT.uvThreadpoolSize,
  };
}

/**
 * The sampled time of a stage on one member, scaled to CPU: the profiler records wall time
 * between samples, which on a busy machine includes time the thread waited for a core. So a
 * stage's CPU is its share of the busy (non-idle) samples times the main thread's CPU time from
 * /proc.
 */
function cpuScale(p: MemberProfile): number {
  if (p.attribution === null) return 0;
  let busyUs = 0;
  for (const [stage, us] of p.attribution.stageUs) if (stage !== IDLE) busyUs += us;
  return busyUs === 0 ? 0 : (p.mainThreadCpuMs * 1000) / busyUs;
}

function report(
  profiles: readonly MemberProfile[],
  puts: number,
  notes: readonly string[],
): string {
  const perPut = (us: number): string => (us / puts).toFixed(1);
  const stageNames = [
    ...new Set([...STAGES, ...SUBTREE_STAGES, ...FALLBACK_STAGES].map((s) => s.stage)),
    OTHER,
  ];
  const header = `| µs per put | ${profiles.map((p) => `${p.name} (${p.role})`).join(' | ')} | all members |`;
  const rule = `|---|${profiles.map(() => '--:|').join('')}--:|`;
  const row = (label: string, values: readonly number[]): string =>
    `| ${label} | ${values.map(perPut).join(' | ')} | ${perPut(values.reduce((a, b) => a + b, 0))} |`;
  const sampled = (p: MemberProfile, stage: string): number =>
    p.attribution?.stageUs.get(stage) ?? 0;
  const cpu = (p: MemberProfile, stage: string): number => sampled(p, stage) * cpuScale(p);
  const lines = ['# tandem CPU per put, by stage', '', ...notes, '', header, rule];
  for (const stage of stageNames)
    lines.push(
      row(
        stage,
        profiles.map((p) => cpu(p, stage)),
      ),
    );
  lines.push(
    row(
      '**main thread CPU (/proc), the sum of the above**',
      profiles.map((p) => p.mainThreadCpuMs * 1000),
    ),
  );
  lines.push(
    row(
      'other threads CPU (/proc: every thread but the main one)',
      profiles.map((p) => (p.processCpuMs - p.mainThreadCpuMs) * 1000),
    ),
  );
  for (const group of THREAD_GROUPS) {
    lines.push(
      row(
        `- thread group: ${group}`,
        profiles.map((p) => (p.threadGroupCpuMs.get(group) ?? 0) * 1000),
      ),
    );
  }
  lines.push(
    row(
      'process CPU, all threads (/proc)',
      profiles.map((p) => p.processCpuMs * 1000),
    ),
  );
  lines.push(
    row(
      'main thread busy, sampled wall time (before scaling)',
      profiles.map((p) => stageNames.reduce((sum, stage) => sum + sampled(p, stage), 0)),
    ),
  );
  lines.push(
    row(
      'idle event loop (wall, not CPU)',
      profiles.map((p) => sampled(p, IDLE)),
    ),
  );
  lines.push(
    row(
      'fsync wait (wall, off-thread, not CPU)',
      profiles.map((p) => p.fsyncSeconds * 1e6),
    ),
  );
  lines.push(
    `| fdatasyncs per put | ${profiles.map((p) => (p.fsyncs / puts).toFixed(3)).join(' | ')} | ${(profiles.reduce((a, p) => a + p.fsyncs, 0) / puts).toFixed(3)} |`,
  );
  lines.push(
    '',
    'A sample is charged by its own frame (URL, or V8\'s "(program)", "(garbage collector)"); a Node-internal frame by its nearest caller with a stage (see STAGES in bench/profile.ts). ' +
      "Stage figures are CPU: each stage's share of the member's busy samples times its main thread's CPU time from /proc (the profiler's own intervals are wall time, which on a busy machine includes waiting for a core). " +
      "The profile covers the main thread only; other threads appear only in the /proc rows, split by thread group (bench/procs.ts: V8's platform workers run GC helpers and concurrent TurboFan compilation; the libuv pool runs the WAL's writes and fdatasyncs; lmdb commits synchronously on the main thread). " +
      'The "cpu profiler" group is V8\'s sampler thread, present only under this profile: leave it out when comparing with `npm run bench`. fsync wait is wall time from tandem_wal_fsync_seconds, not CPU.',
  );
  for (const p of profiles) if (p.problem !== null) lines.push(`- **${p.name}: ${p.problem}**`);
  const frames = new Map<string, { stage: string; us: number }>();
  for (const p of profiles) {
    const scale = cpuScale(p);
    for (const [key, f] of p.attribution?.frameUs ?? []) {
      if (f.stage === IDLE) continue;
      const entry = frames.get(key) ?? { stage: f.stage, us: 0 };
      entry.us += f.us * scale;
      frames.set(key, entry);
    }
  }
  const top = [...frames].sort((a, b) => b[1].us - a[1].us).slice(0, TOP_FRAMES);
  lines.push(
    '',
    `Top ${TOP_FRAMES} self frames, all members, CPU µs per put (to check the stage mapping):`,
    '',
  );
  lines.push('| frame | stage | µs per put |', '|---|---|--:|');
  for (const [key, f] of top) {
    lines.push(`| \`${key.split('\u0000')[1]}\` | ${f.stage} | ${perPut(f.us)} |`);
  }
  return `${lines.join('\n')}\n`;
}

// Run only as a script: tests import attribute().
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    process.exitCode = await main();
  } catch (error) {
    process.stderr.write(
      `bench:profile: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 2;
  }
}
