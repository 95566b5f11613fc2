/**
 * A real etcd cluster on loopback, for benchmarks and (later) side-by-side comparison tests:
 * Debian's `etcd-server` package (`apt-get install etcd-server etcd-client`), N members on free
 * 127.0.0.1 ports, data in a fresh temp directory, started, health-checked, and stopped by PID
 * (SIGTERM, then SIGKILL after a timeout). Nothing is left behind: not processes, not data.
 *
 *   const cluster = await startEtcdCluster();        // 3 members
 *   ... cluster.endpoints: ['127.0.0.1:p1', ...] (gRPC, plaintext)
 *   await cluster.stop();
 *
 * Members run under `setpriv --pdeathsig KILL` where it exists (src/cli/local-process.ts). A killed member
 * restarts with the same flags: etcd ignores the --initial-* ones once its data dir exists.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../src/cli/local-net.js';
import { LocalProcess } from '../src/cli/local-process.js';
import {
  type BenchCluster,
  type BenchMember,
  CATCH_UP_ENTRIES_MAX,
  fetchJson,
  readyOrStopped,
  waitUntilReady,
} from './cluster.js';
import { ProbeClient } from './probe.js';

export const ETCD_BINARY_DEFAULT = 'etcd';
export const MEMBERS_MAX = 7;
export const START_TIMEOUT_MS_DEFAULT = 30_000;
export const STOP_TIMEOUT_MS_DEFAULT = 5000;
const READY_PUT_TIMEOUT_MS = 2000;

export interface EtcdMember extends BenchMember {
  readonly peerUrl: string;
  readonly clientPort: number;
}

export interface EtcdCluster extends BenchCluster {
  readonly version: string;
  readonly members: readonly EtcdMember[];
  /**
   * A member that joins the running cluster (`--initial-cluster-state=existing`, its
   * --initial-cluster every member so far and itself), on free ports, not started: add it first
   * (etcdctl member add <name> --peer-urls=<peerUrl>), then `process.spawn()`. It is one of
   * `members` from now on, so stop() stops it.
   */
  addMember(name: string): Promise<EtcdMember>;
}

export interface EtcdClusterOptions {
  readonly size?: number;
  readonly binary?: string;
  readonly startTimeoutMs?: number;
  readonly stopTimeoutMs?: number;
  /** Keep the data directory (and logs) after stop, for inspection. */
  readonly keepData?: boolean;
  /** Extra flags for every member, e.g. ['--snapshot-count=10000']. */
  readonly extraArgs?: readonly string[];
}

/** `etcd --version`'s first line's version, e.g. `3.4.23`; a clear error if etcd is missing. */
export function etcdVersion(binary = ETCD_BINARY_DEFAULT): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, ['--version'], { timeout: 10_000 }, (error, stdout) => {
      if (error) {
        const hint =
          (error as NodeJS.ErrnoException).code === 'ENOENT'
            ? ' (install it: apt-get install -y etcd-server etcd-client)'
            : '';
        reject(new Error(`cannot run '${binary} --version'${hint}: ${error.message}`));
        return;
      }
      const match = /etcd Version:\s*(\S+)/.exec(stdout);
      if (match === null) reject(new Error(`unexpected '${binary} --version' output: ${stdout}`));
      else resolve(match[1]!);
    });
  });
}

async function isHealthy(clientPort: number): Promise<boolean> {
  const body = (await fetchJson(`127.0.0.1:${clientPort}`, '/health')) as {
    health?: string;
  } | null;
  return body?.health === 'true';
}

/** The gRPC gateway's Maintenance.Status: uint64 fields arrive as decimal strings. */
interface EtcdStatus {
  header?: { member_id?: string };
  leader?: string;
  raftIndex?: string;
}

function memberStatus(m: EtcdMember): Promise<EtcdStatus | null> {
  return fetchJson(m.clientEndpoint, '/v3/maintenance/status', {}) as Promise<EtcdStatus | null>;
}

export async function startEtcdCluster(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const size = options.size ?? 3;
  const binary = options.binary ?? ETCD_BINARY_DEFAULT;
  const startTimeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS_DEFAULT;
  const stopTimeoutMs = options.stopTimeoutMs ?? STOP_TIMEOUT_MS_DEFAULT;
  if (!(Number.isInteger(size) && size >= 1 && size <= MEMBERS_MAX)) {
    throw new Error(`cluster size must be 1..${MEMBERS_MAX}, got ${size}`);
  }
  const version = await etcdVersion(binary);
  const rootDir = mkdtempSync(join(tmpdir(), 'tandem-bench-etcd-'));
  const ports = await freePorts(2 * size);
  const token = `tandem-bench-${process.pid}-${Date.now()}`;
  const names = Array.from({ length: size }, (_, i) => `m${i + 1}`);
  const peerUrl = (i: number): string => `http://127.0.0.1:${ports[2 * i + 1]}`;
  const initialCluster = names.map((name, i) => `${name}=${peerUrl(i)}`).join(',');

  const newMember = (
    name: string,
    clientPort: number,
    peer: string,
    cluster: string,
    state: 'new' | 'existing',
  ): EtcdMember => {
    const dataDir = join(rootDir, name);
    mkdirSync(dataDir, { mode: 0o700 });
    const logFile = join(rootDir, `${name}.log`);
    const args = [
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=http://127.0.0.1:${clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${clientPort}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${cluster}`,
      `--initial-cluster-token=${token}`,
      `--initial-cluster-state=${state}`,
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
      ...(options.extraArgs ?? []),
    ];
    const process = new LocalProcess({ label: `etcd ${name}`, argv: [binary, ...args], logFile });
    return {
      name,
      clientEndpoint: `127.0.0.1:${clientPort}`,
      metricsEndpoint: null,
      clientPort,
      peerUrl: peer,
      dataDir,
      logFile,
      process,
    };
  };
  const members: EtcdMember[] = names.map((name, i) =>
    newMember(name, ports[2 * i]!, peerUrl(i), initialCluster, 'new'),
  );
  for (const m of members) m.process.spawn();
  const endpoints = members.map((m) => m.clientEndpoint);
  const probe = new ProbeClient(endpoints);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    probe.close();
    // One at a time: a leader told to stop hands leadership to a live peer first, which hangs
    // (until SIGKILL) when every peer is stopping at the same moment.
    for (const m of members) await m.process.stop(stopTimeoutMs);
    if (!options.keepData) rmSync(rootDir, { recursive: true, force: true });
  };

  const leader = async (): Promise<EtcdMember | null> => {
    const statuses = await Promise.all(members.map(memberStatus));
    const leaders = members.filter((_, i) => {
      const s = statuses[i];
      return s?.leader !== undefined && s.leader !== '0' && s.leader === s.header?.member_id;
    });
    return leaders.length === 1 ? leaders[0]! : null;
  };

  let readyProbes = 0;
  const readyOnce = async (): Promise<boolean> => {
    if (!members.every((m) => m.process.running)) return false;
    const health = await Promise.all(members.map((m) => isHealthy(m.clientPort)));
    if (!health.every(Boolean)) return false;
    const statuses = await Promise.all(members.map(memberStatus));
    if (statuses.some((s) => s === null)) return false;
    const leaderIds = new Set(statuses.map((s) => s!.leader));
    if (leaderIds.size !== 1 || leaderIds.has('0') || leaderIds.has(undefined)) return false;
    const indexes = statuses.map((s) => Number(s!.raftIndex ?? 0));
    if (Math.max(...indexes) - Math.min(...indexes) > CATCH_UP_ENTRIES_MAX) return false;
    const key = Buffer.from(`bench/ready/${readyProbes++}`);
    return (await probe.putAny(key, Buffer.from('ok'), READY_PUT_TIMEOUT_MS)) === null;
  };

  const waitReady = (timeoutMs: number): Promise<void> =>
    waitUntilReady('etcd', members, readyOnce, timeoutMs);

  const cluster: EtcdCluster = {
    kind: 'etcd',
    label: `etcd ${version}`,
    version,
    members,
    endpoints,
    rootDir,
    leader,
    kill: async (m) => {
      await m.process.kill();
    },
    restart: async (m) => m.process.spawn(),
    waitReady,
    stop,
    addMember: async (name) => {
      if (members.some((m) => m.name === name)) throw new Error(`member ${name} exists`);
      if (members.length >= MEMBERS_MAX) throw new Error(`at most ${MEMBERS_MAX} members`);
      const [clientPort, peerPort] = await freePorts(2);
      const peer = `http://127.0.0.1:${peerPort}`;
      const cluster = [...members.map((m) => `${m.name}=${m.peerUrl}`), `${name}=${peer}`];
      const joiner = newMember(name, clientPort!, peer, cluster.join(','), 'existing');
      members.push(joiner);
      return joiner;
    },
  };
  return readyOrStopped(cluster, startTimeoutMs);
}
