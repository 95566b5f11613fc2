/**
 * A tandem cluster on loopback, the twin of etcd-cluster.ts: N member processes running the
 * compiled build (`node bin/tandem.js start --config mN.yaml`, never tsx), each on free
 * 127.0.0.1 ports (client, peer, admin), data and logs in a fresh temp directory, stopped by PID
 * (SIGTERM, then SIGKILL after a timeout). Nothing is left behind: not processes, not data.
 *
 *   buildTandem();                                    // npx tsc -p tsconfig.json, once per run
 *   const cluster = await startTandemCluster();       // 3 members
 *   ... cluster.endpoints: ['127.0.0.1:p1', ...] (etcd v3 gRPC, plaintext)
 *   await cluster.stop();
 *
 * Members run under `setpriv --pdeathsig KILL` where it exists (see procs.ts). Raft timing is
 * the config defaults, which are etcd's (heartbeat 100 ms, election 1000 ms).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import {
  type BenchCluster,
  type BenchMember,
  CATCH_UP_ENTRIES_MAX,
  fetchJson,
  readyOrStopped,
  waitUntilReady,
} from './cluster.js';
import { ProbeClient } from './probe.js';
import { freePorts, MemberProcess } from './procs.js';

export const MEMBERS_MAX = 7;
export const START_TIMEOUT_MS_DEFAULT = 30_000;
export const STOP_TIMEOUT_MS_DEFAULT = 5000;
const BUILD_TIMEOUT_MS = 180_000;
/** tsc's exit status for "diagnostics present, outputs generated". */
const TSC_ERRORS_OUTPUT_WRITTEN = 2;
const READY_PUT_TIMEOUT_MS = 2000;

const repoDir = dirname(dirname(fileURLToPath(import.meta.url)));
const TANDEM_BIN = join(repoDir, 'bin', 'tandem.js');
const DIST_MAIN = join(repoDir, 'dist', 'cli', 'main.js');

export interface TandemMember extends BenchMember {
  readonly clientPort: number;
  readonly peerPort: number;
  readonly adminPort: number;
  readonly configFile: string;
}

export interface TandemCluster extends BenchCluster {
  readonly members: readonly TandemMember[];
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
}

/**
 * Compiles src/ to dist/ (`npx tsc -p tsconfig.json`), so members run the JavaScript users run
 * and numbers never reflect tsx or a stale build. Type errors with the output still written (tsc
 * exit status 2: work in progress elsewhere in src/) come back as a warning to print; no output
 * at all throws with tsc's messages.
 */
export function buildTandem(): string | null {
  const result = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], {
    cwd: repoDir,
    encoding: 'utf8',
    timeout: BUILD_TIMEOUT_MS,
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim();
  if (result.status === 0) return null;
  if (result.status === TSC_ERRORS_OUTPUT_WRITTEN && existsSync(DIST_MAIN)) {
    return `the build has type errors (output written, members run it):\n${output}`;
  }
  throw new Error(`build failed (npx tsc -p tsconfig.json, status ${result.status}):\n${output}`);
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

/** The admin endpoint's GET /status (src/cli/node.ts). */
interface TandemStatus {
  memberId?: string;
  leader?: string;
  isLeader?: boolean;
  commitIndex?: number;
  appliedIndex?: number;
}

function memberStatus(m: TandemMember): Promise<TandemStatus | null> {
  return fetchJson(`http://127.0.0.1:${m.adminPort}/status`) as Promise<TandemStatus | null>;
}

/** The parent's environment without TANDEM_* (a stray one would change or break the config). */
function memberEnv(logLevel: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('TANDEM_')) env[name] = value;
  }
  env.TANDEM_LOG_LEVEL = logLevel;
  return env;
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
  const rootDir = mkdtempSync(join(tmpdir(), 'tandem-bench-tandem-'));
  const ports = await freePorts(3 * size);
  const token = `tandem-bench-${process.pid}-${Date.now()}`;
  const names = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  const address = (port: number): string => `127.0.0.1:${port}`;
  const env = memberEnv(options.logLevel ?? 'info');

  const members: TandemMember[] = names.map((name, i) => {
    const [clientPort, peerPort, adminPort] = [ports[3 * i]!, ports[3 * i + 1]!, ports[3 * i + 2]!];
    const dataDir = join(rootDir, name);
    mkdirSync(dataDir, { mode: 0o700 });
    const configFile = join(rootDir, `${name}.yaml`);
    const config = {
      name,
      dataDir,
      listen: { client: address(clientPort), peer: address(peerPort), admin: address(adminPort) },
      peers: names
        .map((peer, j) => ({ name: peer, addresses: [address(ports[3 * j + 1]!)] }))
        .filter((peer) => peer.name !== name),
      cluster: { state: 'new', token },
    };
    writeFileSync(configFile, stringify(config));
    const logFile = join(rootDir, `${name}.log`);
    const process = new MemberProcess({
      binary: globalThis.process.execPath,
      args: [...(options.nodeArgs ?? []), TANDEM_BIN, 'start', '--config', configFile],
      logFile,
      env,
      cwd: rootDir,
    });
    process.start();
    return {
      name,
      clientEndpoint: address(clientPort),
      clientPort,
      peerPort,
      adminPort,
      configFile,
      dataDir,
      logFile,
      process,
    };
  });
  const endpoints = members.map((m) => m.clientEndpoint);
  const probe = new ProbeClient(endpoints);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    probe.close();
    // One at a time, like the etcd launcher: each stop is then an ordinary member departure.
    for (const m of members) await m.process.stop(stopTimeoutMs);
    if (!options.keepData) rmSync(rootDir, { recursive: true, force: true });
  };

  const leader = async (): Promise<TandemMember | null> => {
    const statuses = await Promise.all(members.map(memberStatus));
    const leaders = members.filter((_, i) => statuses[i]?.isLeader === true);
    return leaders.length === 1 ? leaders[0]! : null;
  };

  let readyProbes = 0;
  const readyOnce = async (): Promise<boolean> => {
    const statuses = await Promise.all(members.map(memberStatus));
    if (statuses.some((s) => s === null)) return false;
    const leaderIds = new Set(statuses.map((s) => s!.leader));
    if (leaderIds.size !== 1 || leaderIds.has('0') || leaderIds.has(undefined)) return false;
    const leaderStatus = statuses.find((s) => s!.isLeader === true);
    if (leaderStatus === undefined) return false;
    const commit = leaderStatus!.commitIndex ?? 0;
    if (statuses.some((s) => (s!.appliedIndex ?? 0) + CATCH_UP_ENTRIES_MAX < commit)) return false;
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
    rootDir,
    leader,
    kill: (m) => m.process.kill(),
    restart: async (m) => m.process.start(),
    waitReady,
    stop,
  };
  return readyOrStopped(cluster, startTimeoutMs);
}
