/**
 * Process plumbing shared by the cluster launchers (etcd-cluster.ts, tandem-cluster.ts): free
 * loopback ports, member processes with their output in a log file, stop by PID (SIGTERM, then
 * SIGKILL after a timeout), kill -9 and restart with the same command line (failover trials).
 *
 * Where util-linux `setpriv` exists, each member runs under `setpriv --pdeathsig KILL`, so the
 * kernel kills it even if this process dies without running any cleanup (SIGKILL, OOM). A last
 * 'exit' hook SIGKILLs whatever is still running for the ordinary exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';

/** After SIGKILL a process is gone within milliseconds; longer means something is very wrong. */
export const KILL_WAIT_MS = 2000;
const LOG_TAIL_LINES = 15;
const SETPRIV = '/usr/bin/setpriv';

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

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGTERM, wait up to `timeoutMs`, then SIGKILL; resolves once the process has exited. */
export async function stopProcess(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (hasExited(child) || child.pid === undefined) return;
  signal(child.pid, 'SIGTERM');
  if (await waitExit(child, timeoutMs)) return;
  await killProcess(child);
}

/** SIGKILL (kill -9); resolves once the process has exited. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (hasExited(child) || child.pid === undefined) return;
  signal(child.pid, 'SIGKILL');
  if (!(await waitExit(child, KILL_WAIT_MS))) {
    throw new Error(`process ${child.pid} did not exit ${KILL_WAIT_MS} ms after SIGKILL`);
  }
}

export function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error; // already gone: fine
  }
}

export function logTail(file: string, lines = LOG_TAIL_LINES): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
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

export interface MemberCommand {
  readonly binary: string;
  readonly args: readonly string[];
  /** Output (stdout and stderr) is appended here: a pipe nobody drains would block the member. */
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/**
 * One member's process, restartable with the same command line. `child` is the current process;
 * after `kill()` or `stop()` it has exited and `start()` runs a new one (appending to the log).
 */
export class MemberProcess {
  private current: ChildProcess | null = null;
  /** Starts so far, the first included: restarts are marked in the log. */
  private starts = 0;

  constructor(readonly command: MemberCommand) {}

  get child(): ChildProcess {
    if (this.current === null) throw new Error('member process never started');
    return this.current;
  }

  get running(): boolean {
    return this.current !== null && !hasExited(this.current);
  }

  get pid(): number | undefined {
    return this.running ? this.current!.pid : undefined;
  }

  start(): void {
    if (this.running) throw new Error(`member already running (pid ${this.current!.pid})`);
    installExitHook();
    const { binary, args, logFile } = this.command;
    const logFd = openSync(logFile, 'a');
    if (this.starts > 0) {
      // A marker, so the log reads as one history across kill -9 and restarts.
      writeSync(logFd, `--- bench: restart ${this.starts} at ${new Date().toISOString()} ---\n`);
    }
    const useSetpriv = existsSync(SETPRIV);
    const child = spawn(
      useSetpriv ? SETPRIV : binary,
      useSetpriv ? ['--pdeathsig', 'KILL', binary, ...args] : [...args],
      {
        stdio: ['ignore', logFd, logFd],
        ...(this.command.env === undefined ? {} : { env: this.command.env }),
        ...(this.command.cwd === undefined ? {} : { cwd: this.command.cwd }),
      },
    );
    closeSync(logFd);
    this.starts++;
    running.add(child);
    child.once('exit', () => running.delete(child));
    child.once('error', () => running.delete(child));
    this.current = child;
  }

  /** SIGKILL (kill -9): no shutdown of any kind. Resolves once it has exited. */
  kill(): Promise<void> {
    return this.current === null ? Promise.resolve() : killProcess(this.current);
  }

  stop(timeoutMs: number): Promise<void> {
    return this.current === null ? Promise.resolve() : stopProcess(this.current, timeoutMs);
  }

  /** A description of an exit, or null while it runs. */
  exitDescription(): string | null {
    const child = this.current;
    if (child === null || !hasExited(child)) return null;
    return `code ${child.exitCode}, signal ${child.signalCode}`;
  }
}

/** Polls `check` every `pollMs` until it returns true; throws `describe()` after `timeoutMs`. */
export async function pollUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  pollMs: number,
  describe: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(describe());
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Clock ticks per second for /proc/<pid>/stat (CLK_TCK: 100 on every Linux Node supports). */
const CLOCK_TICKS_PER_S = 100;

/**
 * CPU time (user + system, ms) the processes have used so far, from /proc/<pid>/stat; a process
 * that has gone counts 0. Under `setpriv` the PID is the member's own (setpriv execs it).
 */
export function processesCpuMs(pids: readonly (number | undefined)[]): number {
  let ticks = 0;
  for (const pid of pids) {
    if (pid === undefined) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces): state is [0], utime [11], stime [12].
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone, or not Linux: counts nothing
    }
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}
