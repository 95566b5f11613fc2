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
 * Where util-linux `setpriv` exists, each member runs under `setpriv --pdeathsig KILL`, so the
 * kernel kills it even if this process dies without running any cleanup (SIGKILL, OOM).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ETCD_BINARY_DEFAULT = 'etcd';
export const MEMBERS_MAX = 7;
export const START_TIMEOUT_MS_DEFAULT = 30_000;
export const STOP_TIMEOUT_MS_DEFAULT = 5000;
/** After SIGKILL a process is gone within milliseconds; longer means something is very wrong. */
const KILL_WAIT_MS = 2000;
const HEALTH_POLL_MS = 100;
const HEALTH_REQUEST_TIMEOUT_MS = 1000;
const LOG_TAIL_LINES = 15;
const SETPRIV = '/usr/bin/setpriv';

export interface EtcdMember {
  readonly name: string;
  /** gRPC endpoint `127.0.0.1:port` (plaintext). */
  readonly clientEndpoint: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly process: ChildProcess;
}

export interface EtcdCluster {
  readonly version: string;
  readonly members: readonly EtcdMember[];
  readonly endpoints: readonly string[];
  readonly rootDir: string;
  /** Stops every member (SIGTERM, then SIGKILL) and removes the data. Idempotent. */
  stop(): Promise<void>;
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

/** Free loopback ports: bind port 0 `count` times, then release them all (tiny race, fine). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port bound');
    return address.port;
  });
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** SIGTERM, wait up to `timeoutMs`, then SIGKILL; resolves once the process has exited. */
export async function stopProcess(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitExit = (ms: number): Promise<boolean> =>
    Promise.race([
      exited.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref()),
    ]);
  signal(child.pid, 'SIGTERM');
  if (await waitExit(timeoutMs)) return;
  signal(child.pid, 'SIGKILL');
  if (!(await waitExit(KILL_WAIT_MS))) {
    throw new Error(`process ${child.pid} did not exit ${KILL_WAIT_MS} ms after SIGKILL`);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error; // already gone: fine
  }
}

function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n');
  } catch {
    return '(no log)';
  }
}

async function isHealthy(clientPort: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${clientPort}/health`, {
      signal: AbortSignal.timeout(HEALTH_REQUEST_TIMEOUT_MS),
    });
    const body = (await response.json()) as { health?: string };
    return response.ok && body.health === 'true';
  } catch {
    return false;
  }
}

/** Every member still running, for the last-resort exit hook. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous by necessity ('exit' handlers cannot wait): no SIGTERM grace, just SIGKILL.
  process.on('exit', () => {
    for (const child of running) if (child.pid !== undefined) signal(child.pid, 'SIGKILL');
  });
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
  installExitHook();

  const members: EtcdMember[] = names.map((name, i) => {
    const clientPort = ports[2 * i]!;
    const dataDir = join(rootDir, name);
    mkdirSync(dataDir, { mode: 0o700 });
    const logFile = join(rootDir, `${name}.log`);
    const args = [
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=http://127.0.0.1:${clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${clientPort}`,
      `--listen-peer-urls=${peerUrl(i)}`,
      `--initial-advertise-peer-urls=${peerUrl(i)}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-token=${token}`,
      '--initial-cluster-state=new',
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
      ...(options.extraArgs ?? []),
    ];
    // The log goes straight to a file: a pipe nobody drains would eventually block etcd.
    const logFd = openSync(logFile, 'a');
    const useSetpriv = existsSync(SETPRIV);
    const child = spawn(
      useSetpriv ? SETPRIV : binary,
      useSetpriv ? ['--pdeathsig', 'KILL', binary, ...args] : args,
      { stdio: ['ignore', logFd, logFd] },
    );
    closeSync(logFd);
    running.add(child);
    child.once('exit', () => running.delete(child));
    child.once('error', () => running.delete(child));
    return {
      name,
      clientEndpoint: `127.0.0.1:${clientPort}`,
      peerUrl: peerUrl(i),
      dataDir,
      logFile,
      process: child,
    };
  });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // One at a time: a leader told to stop hands leadership to a live peer first, which hangs
    // (until SIGKILL) when every peer is stopping at the same moment.
    for (const m of members) await stopProcess(m.process, stopTimeoutMs);
    if (!options.keepData) rmSync(rootDir, { recursive: true, force: true });
  };

  try {
    await waitHealthy(members, startTimeoutMs);
  } catch (error) {
    await stop();
    throw error;
  }
  return { version, members, endpoints: members.map((m) => m.clientEndpoint), rootDir, stop };
}

async function waitHealthy(members: readonly EtcdMember[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const m of members) {
      if (m.process.exitCode !== null || m.process.signalCode !== null) {
        throw new Error(
          `etcd member ${m.name} exited during startup (code ${m.process.exitCode}, signal ${m.process.signalCode}); log tail:\n${logTail(m.logFile)}`,
        );
      }
    }
    const health = await Promise.all(
      members.map((m) => isHealthy(Number(m.clientEndpoint.split(':')[1]))),
    );
    if (health.every(Boolean)) return;
    if (Date.now() >= deadline) {
      const sick = members.filter((_, i) => !health[i]);
      throw new Error(
        `etcd cluster not healthy after ${timeoutMs} ms (unhealthy: ${sick.map((m) => m.name).join(', ')}); ` +
          `log tail of ${sick[0]!.name}:\n${logTail(sick[0]!.logFile)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_MS));
  }
}
