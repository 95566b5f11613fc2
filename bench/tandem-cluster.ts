/**
 * A tandem cluster on loopback, the twin of etcd-cluster.ts: N member processes from the
 * launcher (src/cli/local-cluster.ts) running the compiled build (`node bin/tandem.js start
 * --config nN.yaml`, never tsx), each on free 127.0.0.1 ports (client, peer, admin), data and logs
 * in a fresh temp directory, stopped by PID one at a time (SIGTERM, then SIGKILL after a
 * timeout). Nothing is left behind: not processes, not data.
 *
 *   buildTandem();                                    // npx tsc -p tsconfig.json, once per run
 *   const cluster = await startTandemCluster();       // 3 members
 *   ... cluster.endpoints: ['127.0.0.1:p1', ...] (etcd v3 gRPC, plaintext)
 *   await cluster.stop();
 *
 * Members run under `setpriv --pdeathsig KILL` where it exists (local-process.ts). Raft timing is
 * the config defaults, which are etcd's (heartbeat 100 ms, election 1000 ms).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type ConfigFields,
  LocalCluster,
  type LocalMember,
  memberEnv,
  REPO_DIR,
  type TandemCommand,
} from '../src/cli/local-cluster.js';
import {
  type BenchCluster,
  type BenchMember,
  CATCH_UP_ENTRIES_MAX,
  readyOrStopped,
  waitUntilReady,
} from './cluster.js';
import { ProbeClient } from './probe.js';

export const MEMBERS_MAX = 7;
export const START_TIMEOUT_MS_DEFAULT = 30_000;
export const STOP_TIMEOUT_MS_DEFAULT = 5000;
const BUILD_TIMEOUT_MS = 180_000;
/** tsc's exit status for "diagnostics present, outputs generated". */
const TSC_ERRORS_OUTPUT_WRITTEN = 2;
const READY_PUT_TIMEOUT_MS = 2000;

const repoDir = REPO_DIR;
/** What bin/tandem.js runs (tools/bundle-cli.mjs makes it from tsc's dist/cli/). */
const DIST_MAIN = join(repoDir, 'dist', 'bundle', 'main.cjs');
/** The build users run, never tsx: numbers must not reflect on-the-fly compilation. */
const MEMBER_COMMAND: TandemCommand = 'compiled';

export interface TandemMember extends BenchMember {
  /** The launcher's member: its spec (addresses, config file) and its process. */
  readonly process: LocalMember;
}

export interface TandemCluster extends BenchCluster {
  readonly members: readonly TandemMember[];
  /** The launcher's cluster: for members that join later (addMember); stop() stops them too. */
  readonly local: LocalCluster;
}

export interface TandemClusterOptions {
  readonly size?: number;
  readonly startTimeoutMs?: number;
  readonly stopTimeoutMs?: number;
  /** Keep the data directory (and logs) after stop, for inspection. */
  readonly keepData?: boolean;
  /** pino level for the members' logs (default info: role changes, start, stop). */
  readonly logLevel?: string;
  /** Extra `node` flags for every member, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/prof']. */
  readonly nodeArgs?: readonly string[];
  /** Fields for every member's config (src/cli/config.ts), e.g. { raft: { snapshotEntries } }. */
  readonly config?: ConfigFields;
  /** Environment variables for every member, on top of the bench's own (TANDEM_* removed). */
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Compiles src/ to dist/ (`npx tsc -p tsconfig.json`) and bundles the CLI (tools/bundle-cli.mjs),
 * as `npm run build` does, so members run the JavaScript users run and numbers never reflect tsx
 * or a stale build. Type errors with the output still written (tsc exit status 2: work in
 * progress elsewhere in src/) come back as a warning to print; no output at all throws with tsc's
 * messages.
 */
export function buildTandem(): string | null {
  const result = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], {
    cwd: repoDir,
    encoding: 'utf8',
    timeout: BUILD_TIMEOUT_MS,
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim();
  if (result.status !== 0 && result.status !== TSC_ERRORS_OUTPUT_WRITTEN) {
    throw new Error(`build failed (npx tsc -p tsconfig.json, status ${result.status}):\n${output}`);
  }
  const bundle = spawnSync(process.execPath, [join(repoDir, 'tools', 'bundle-cli.mjs')], {
    cwd: repoDir,
    encoding: 'utf8',
    timeout: BUILD_TIMEOUT_MS,
  });
  if (bundle.status !== 0 || !existsSync(DIST_MAIN)) {
    const bundleOutput = `${bundle.stdout ?? ''}${bundle.stderr ?? ''}`.trim();
    throw new Error(
      `bundling failed (tools/bundle-cli.mjs, status ${bundle.status}):\n${bundleOutput}`,
    );
  }
  if (result.status === 0) return null;
  return `the build has type errors (output written, members run it):\n${output}`;
}

/** The first `count` lines of a long message (tsc output), with how many were left out. */
export function firstLines(text: string, count = 6): string {
  const lines = text.split('\n');
  if (lines.length <= count) return text;
  return `${lines.slice(0, count).join('\n')}\n… (${lines.length - count} more lines)`;
}

/** `0.1.0 (ff313da)`: package.json's version and the commit the build was made from. */
export function tandemVersion(): string {
  const pkg = JSON.parse(readFileSync(join(repoDir, 'package.json'), 'utf8')) as {
    version: string;
  };
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: repoDir,
      encoding: 'utf8',
      timeout: 5000,
    }).trim();
    return `${pkg.version} (${commit}+worktree)`;
  } catch {
    return pkg.version;
  }
}

export async function startTandemCluster(
  options: TandemClusterOptions = {},
): Promise<TandemCluster> {
  const size = options.size ?? 3;
  const startTimeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS_DEFAULT;
  const stopTimeoutMs = options.stopTimeoutMs ?? STOP_TIMEOUT_MS_DEFAULT;
  if (!(Number.isInteger(size) && size >= 1 && size <= MEMBERS_MAX && size % 2 === 1)) {
    throw new Error(`cluster size must be odd, 1..${MEMBERS_MAX}, got ${size}`);
  }
  if (!existsSync(DIST_MAIN)) {
    throw new Error(`${DIST_MAIN} is missing: call buildTandem() (or npm run build) first`);
  }
  const version = tandemVersion();
  const local = await LocalCluster.start({
    members: size,
    label: 'bench-tandem',
    token: `tandem-bench-${process.pid}-${Date.now()}`,
    command: MEMBER_COMMAND,
    ...(options.nodeArgs !== undefined && { nodeArgs: options.nodeArgs }),
    ...(options.config !== undefined && { config: options.config }),
    env: { ...memberEnv(process.env), ...options.env },
    logLevel: options.logLevel ?? 'info',
    ...(options.keepData !== undefined && { keepDir: options.keepData }),
    ready: 'spawned',
  });
  const members: TandemMember[] = local.members.map((m) => ({
    name: m.name,
    clientEndpoint: m.spec.client,
    metricsEndpoint: m.spec.admin,
    dataDir: m.spec.dataDir,
    logFile: m.spec.logFile!,
    process: m,
  }));
  const endpoints = members.map((m) => m.clientEndpoint);
  const probe = new ProbeClient(endpoints);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    probe.close();
    // One at a time, like the etcd launcher: each stop is then an ordinary member departure.
    await local.destroy({ timeoutMs: stopTimeoutMs, oneAtATime: true });
  };

  const leader = async (): Promise<TandemMember | null> => {
    const statuses = await Promise.all(members.map((m) => m.process.tryStatus()));
    const leaders = members.filter((_, i) => statuses[i]?.isLeader === true);
    return leaders.length === 1 ? leaders[0]! : null;
  };

  let readyProbes = 0;
  const readyOnce = async (): Promise<boolean> => {
    const statuses = await Promise.all(members.map((m) => m.process.tryStatus()));
    if (statuses.some((s) => s === null)) return false;
    const leaderIds = new Set(statuses.map((s) => s!.leader));
    if (leaderIds.size !== 1 || leaderIds.has('0')) return false;
    const leaderStatus = statuses.find((s) => s!.isLeader === true);
    if (leaderStatus === undefined) return false;
    const commit = leaderStatus!.commitIndex;
    if (statuses.some((s) => s!.appliedIndex + CATCH_UP_ENTRIES_MAX < commit)) return false;
    const key = Buffer.from(`bench/ready/${readyProbes++}`);
    return (await probe.putAny(key, Buffer.from('ok'), READY_PUT_TIMEOUT_MS)) === null;
  };

  const waitReady = (timeoutMs: number): Promise<void> =>
    waitUntilReady('tandem', members, readyOnce, timeoutMs);

  const cluster: TandemCluster = {
    kind: 'tandem',
    label: `tandem ${version}`,
    members,
    endpoints,
    rootDir: local.dir,
    local,
    leader,
    kill: async (m) => {
      await m.process.kill();
    },
    restart: async (m) => m.process.spawn(),
    waitReady,
    stop,
  };
  return readyOrStopped(cluster, startTimeoutMs);
}
