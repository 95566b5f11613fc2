/**
 * One local server process (a tandem member, an etcd member), restartable with the same command
 * line: spawn, SIGSTOP / SIGCONT, kill -9, stop (SIGTERM, then SIGKILL after a timeout), restart.
 * Its output is appended to a log file (restarts marked) or handed to a callback.
 *
 * Process safety: signals go to the PID of a process this module started, never by name. Where
 * util-linux `setpriv` exists, a process runs under `setpriv --pdeathsig KILL`, so the kernel
 * kills it even when this process dies without any cleanup (SIGKILL, OOM); for ordinary exits a
 * last `exit` hook sends SIGCONT and SIGKILL to every process still running. Every wait is bounded.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { assert } from '../util/assert.js';

/** SIGTERM to SIGKILL: a member flushes and closes its stores in well under this. */
export const STOP_TIMEOUT_MS_DEFAULT = 10_000;
/** After SIGKILL a process is gone within moments; longer means something is very wrong. */
export const KILL_WAIT_MS = 10_000;
export const LOG_TAIL_LINES_DEFAULT = 40;
/** Output kept in memory for `tail()` when it goes to a callback instead of a file. */
const OUTPUT_TAIL_CHARS_MAX = 64 * 1024;
const SETPRIV = '/usr/bin/setpriv';

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

const NO_EXIT: Exit = { code: null, signal: null };

/** down: never started, or exited; paused: stopped by SIGSTOP. */
export type ProcessState = 'running' | 'paused' | 'down';

export type OutputSink = (stream: 'stdout' | 'stderr', chunk: Buffer) => void;

export interface ProcessOptions {
  /** For messages: `n1`, `etcd m2`. */
  readonly label: string;
  /** The program and its arguments. */
  readonly argv: readonly string[];
  /** Default: this process's environment. */
  readonly env?: NodeJS.ProcessEnv;
  /** Default: this process's working directory. */
  readonly cwd?: string;
  /** stdout and stderr are appended here (a pipe nobody drains would block the process)... */
  readonly logFile?: string;
  /** ... or handed to this callback (exactly one of the two). */
  readonly onOutput?: OutputSink;
  /**
   * Runs the command line through a wrapper that execs it in place, e.g. `ip netns exec NS …`:
   * the PID stays the program's, so signals reach it.
   */
  readonly wrap?: (argv: readonly string[]) => readonly string[];
  /** Kill the process when this one dies, even without cleanup (setpriv); default true. */
  readonly dieWithParent?: boolean;
}

/** Every process started here and still running: killed when this process exits. */
const LIVE = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous by necessity ('exit' handlers cannot wait): no SIGTERM grace, just SIGKILL.
  process.on('exit', () => {
    for (const child of LIVE) signalChild(child, 'SIGCONT');
    for (const child of LIVE) signalChild(child, 'SIGKILL');
  });
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Sends `signal` to the child's PID; a process already gone is fine. */
export function signalChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || hasExited(child)) return;
  try {
    process.kill(child.pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Resolves true once the child has exited, false after `ms`. */
function waitChildExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (hasExited(child) || child.pid === undefined) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * SIGTERM, SIGKILL after `timeoutMs`; resolves once the child has exited (for a child spawned
 * elsewhere, e.g. forked with IPC). Throws when it outlives SIGKILL by KILL_WAIT_MS.
 */
export async function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  signalChild(child, 'SIGCONT');
  signalChild(child, 'SIGTERM');
  if (await waitChildExit(child, timeoutMs)) return;
  signalChild(child, 'SIGKILL');
  if (!(await waitChildExit(child, KILL_WAIT_MS))) {
    throw new Error(`process ${child.pid} did not exit ${KILL_WAIT_MS} ms after SIGKILL`);
  }
}

/** The command line actually spawned: under setpriv where asked and available, then wrapped. */
function commandLine(options: ProcessOptions): readonly string[] {
  const own =
    options.dieWithParent !== false && existsSync(SETPRIV)
      ? [SETPRIV, '--pdeathsig', 'KILL', ...options.argv]
      : options.argv;
  return options.wrap === undefined ? own : options.wrap(own);
}

/**
 * One process, restartable. After `kill()` or `stop()` it is down and `spawn()` runs a new one
 * with the same command line (appending to the same log).
 */
export class LocalProcess {
  /** Resolves when the current process exits (at once if none ever ran). */
  exited: Promise<Exit> = Promise.resolve(NO_EXIT);
  private current: ChildProcess | null = null;
  private lastExit: Exit | null = null;
  private paused = false;
  /** Starts so far: restarts are marked in the log. */
  private starts = 0;
  /** The last output, when it goes to a callback (`tail()` reads it). */
  private outputTail = '';

  constructor(readonly options: ProcessOptions) {
    assert(options.argv.length > 0, 'a command line');
    assert(
      (options.logFile === undefined) !== (options.onOutput === undefined),
      'output goes to a log file or to a callback',
    );
  }

  get label(): string {
    return this.options.label;
  }

  get logFile(): string | null {
    return this.options.logFile ?? null;
  }

  get state(): ProcessState {
    if (!this.running) return 'down';
    return this.paused ? 'paused' : 'running';
  }

  /** Started and not exited (paused counts). */
  get running(): boolean {
    return this.current !== null && this.lastExit === null;
  }

  get pid(): number | null {
    return this.running ? (this.current!.pid ?? null) : null;
  }

  /** How the last process ended, or null while one runs (or none ever ran). */
  get exit(): Exit | null {
    return this.running ? null : this.lastExit;
  }

  /** `code 0, signal null`, or null while it runs. */
  exitDescription(): string | null {
    const exit = this.exit;
    return exit === null ? null : `code ${exit.code}, signal ${exit.signal}`;
  }

  /** Starts the process (it must be down); `extraEnv` is added to its environment. */
  spawn(extraEnv: NodeJS.ProcessEnv = {}): void {
    assert(!this.running, `${this.label} is already running (pid ${this.pid})`);
    installExitHook();
    const argv = commandLine(this.options);
    const logFd = this.options.logFile === undefined ? null : openSync(this.options.logFile, 'a');
    if (logFd !== null && this.starts > 0) {
      // A marker, so the log reads as one history across kill -9 and restarts.
      writeSync(logFd, `--- launcher: restart ${this.starts} at ${new Date().toISOString()} ---\n`);
    }
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), {
        stdio: logFd === null ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFd, logFd],
        env: { ...(this.options.env ?? process.env), ...extraEnv },
        ...(this.options.cwd === undefined ? {} : { cwd: this.options.cwd }),
      });
    } finally {
      if (logFd !== null) closeSync(logFd);
    }
    if (logFd === null) {
      child.stdout?.on('data', (chunk: Buffer) => this.output('stdout', chunk));
      child.stderr?.on('data', (chunk: Buffer) => this.output('stderr', chunk));
    }
    this.starts++;
    this.current = child;
    this.lastExit = null;
    this.paused = false;
    LIVE.add(child);
    this.exited = new Promise((resolveExit) => {
      const done = (exit: Exit): void => {
        if (!LIVE.delete(child)) return; // already settled ('error' and 'exit' both came)
        if (this.current === child) this.lastExit = exit;
        resolveExit(exit);
      };
      child.once('exit', (code, signal) => done({ code, signal }));
      // A spawn that failed (no such program) emits 'error' and may never emit 'exit'.
      child.once('error', () => {
        if (child.pid === undefined) done(NO_EXIT);
      });
    });
  }

  /** Sends `signal` to the process's PID (never by name); nothing when it is down. */
  signal(signal: NodeJS.Signals): void {
    if (this.running) signalChild(this.current!, signal);
  }

  pause(): void {
    if (this.state !== 'running') return;
    this.signal('SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (this.state !== 'paused') return;
    this.signal('SIGCONT');
    this.paused = false;
  }

  /** kill -9 (a paused process too); resolves once it has exited. */
  async kill(): Promise<Exit> {
    if (!this.running) return this.lastExit ?? NO_EXIT;
    this.signal('SIGKILL');
    this.signal('SIGCONT');
    const exit = await this.waitExit(KILL_WAIT_MS);
    if (exit === null) {
      throw new Error(
        `${this.label} (pid ${this.pid}) did not exit ${KILL_WAIT_MS} ms after SIGKILL; log tail:\n${this.tail()}`,
      );
    }
    return exit;
  }

  /** SIGTERM (resuming a paused process first), SIGKILL after `timeoutMs`; resolves on exit. */
  async stop(timeoutMs = STOP_TIMEOUT_MS_DEFAULT): Promise<Exit> {
    if (!this.running) return this.lastExit ?? NO_EXIT;
    this.resume();
    this.signal('SIGTERM');
    return (await this.waitExit(timeoutMs)) ?? this.kill();
  }

  /** The exit of the current process once it has exited, or null if it runs on past `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<Exit | null> {
    if (!this.running) return this.lastExit ?? NO_EXIT;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Everything logged so far (the log file, or the output kept in memory). */
  log(): string {
    if (this.options.logFile === undefined) return this.outputTail;
    try {
      return readFileSync(this.options.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** The size of the log file now, in bytes (a later search can start there). */
  logBytes(): number {
    if (this.options.logFile === undefined) return 0;
    try {
      return statSync(this.options.logFile).size;
    } catch {
      return 0;
    }
  }

  /** Whether the log, from byte `fromBytes` on, contains `text`. */
  logMentions(text: string, fromBytes = 0): boolean {
    if (this.options.logFile === undefined) return this.outputTail.includes(text);
    try {
      return readFileSync(this.options.logFile).subarray(fromBytes).includes(text);
    } catch {
      return false;
    }
  }

  /** The last `lines` lines of the log. */
  tail(lines = LOG_TAIL_LINES_DEFAULT): string {
    const text = this.log().trimEnd();
    return text === '' ? '(no log)' : text.split('\n').slice(-lines).join('\n');
  }

  private output(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    this.outputTail = (this.outputTail + chunk.toString()).slice(-OUTPUT_TAIL_CHARS_MAX);
    this.options.onOutput?.(stream, chunk);
  }
}
