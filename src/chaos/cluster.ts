/**
 * A local cluster of real tandem members for `tandem chaos`: one process per member on
 * 127.0.0.1 (free ports picked at start), each with its own YAML config and data directory in a
 * temp directory, started with test-mode fault injection on. The member is the same CLI a user
 * runs: `<node> [--import tsx] <cli>/bin.{ts,js} start --config <file>`.
 *
 * Process safety: every child is tracked by PID; signals go to those PIDs only. `destroy()` —
 * and, as a last resort, this process's `exit` — sends SIGCONT to a paused member and SIGKILL to
 * every member still running. Every wait is bounded in time.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { assert } from '../util/assert.js';

/** A member's start-up (tsx may compile on the fly) on a loaded 2-core machine. */
export const MEMBER_START_TIMEOUT_MS = 30_000;
export const LEADER_WAIT_TIMEOUT_MS = 20_000;
const ADMIN_HTTP_TIMEOUT_MS = 1_000;
const MEMBER_STOP_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 100;
/** Polls of one wait, whatever its timeout (bounds the loop by count as well as by time). */
const POLL_ROUNDS_MAX = 10_000;

export interface MemberStatus {
  readonly name: string;
  readonly memberId: string;
  readonly leader: string;
  readonly isLeader: boolean;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly revision: number;
}

export interface LinkRule {
  /** A member name. */
  readonly peer: string;
  readonly dropRate?: number;
  readonly delayMs?: number;
}

export type MemberState = 'running' | 'paused' | 'down';

/** Processes alive across all clusters of this process: killed on exit whatever happens. */
const LIVE = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of LIVE) killQuietly(child, 'SIGCONT');
    for (const child of LIVE) killQuietly(child, 'SIGKILL');
  });
}

/**
 * The environment of a member: this process's, less its TANDEM_* variables. A member reads
 * TANDEM_* as settings and rejects unknown ones, so the runner's own (TANDEM_CHAOS_KEEP) or a
 * user's settings for another cluster must not reach it; the member's settings are its config.
 */
export function memberEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env))
    if (!name.startsWith('TANDEM_')) out[name] = value;
  return out;
}

function killQuietly(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, signal);
  } catch {
    // already gone
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** A port that was free a moment ago: listen on 0, read it, close. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

/** One HTTP request to an admin endpoint, bounded; resolves with the JSON body. */
export function adminRequest<T>(
  address: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<T> {
  return new Promise((resolveRequest, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      `http://${address}${path}`,
      {
        method,
        timeout: ADMIN_HTTP_TIMEOUT_MS,
        headers: payload === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => {
          if ((res.statusCode ?? 500) >= 300) {
            reject(new Error(`${method} ${path}: HTTP ${res.statusCode}: ${text}`));
            return;
          }
          try {
            resolveRequest(JSON.parse(text) as T);
          } catch (error) {
            reject(error as Error);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${address}${path} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** How to run the tandem CLI: from source under tsx, or compiled. */
function cliCommand(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const fromSource = extname(fileURLToPath(import.meta.url)) === '.ts';
  const bin = join(here, '..', 'cli', fromSource ? 'bin.ts' : 'bin.js');
  return fromSource ? ['--import', 'tsx', bin] : [bin];
}

export interface ChaosMember {
  readonly index: number;
  readonly name: string;
  readonly client: string;
  readonly peer: string;
  readonly admin: string;
  readonly dataDir: string;
  readonly configFile: string;
  readonly logFile: string;
}

export interface LocalClusterOptions {
  readonly voters: number;
  /** Where member logs go (kept); data directories go to a temp directory (removed). */
  readonly logDir: string;
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  readonly snapshotEntries?: number;
  readonly logLevel?: string;
}

export class LocalCluster {
  readonly members: readonly ChaosMember[];
  private readonly children: (ChildProcess | null)[];
  private readonly exits: Promise<void>[];
  private readonly states: MemberState[];
  private destroyed = false;

  private constructor(
    readonly dataRoot: string,
    members: ChaosMember[],
    private readonly logLevel: string,
  ) {
    this.members = members;
    this.children = members.map(() => null);
    this.exits = members.map(() => Promise.resolve());
    this.states = members.map(() => 'down');
  }

  /** Writes the configs (ports picked now) and starts every member; waits for a leader. */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    installExitHook();
    assert(options.voters >= 1 && options.voters % 2 === 1, 'an odd number of voters');
    const dataRoot = mkdtempSync(join(tmpdir(), 'tandem-chaos-'));
    mkdirSync(options.logDir, { recursive: true });
    const token = `chaos-${randomBytes(6).toString('hex')}`;
    const members: ChaosMember[] = [];
    for (let i = 0; i < options.voters; i++) {
      const name = `n${i + 1}`;
      members.push({
        index: i,
        name,
        client: `127.0.0.1:${await freePort()}`,
        peer: `127.0.0.1:${await freePort()}`,
        admin: `127.0.0.1:${await freePort()}`,
        dataDir: join(dataRoot, name),
        configFile: join(dataRoot, `${name}.yaml`),
        logFile: join(options.logDir, `${name}.log`),
      });
    }
    for (const m of members) {
      const config = {
        name: m.name,
        dataDir: m.dataDir,
        listen: { client: m.client, peer: m.peer, admin: m.admin },
        peers: members.filter((p) => p !== m).map((p) => ({ name: p.name, addresses: [p.peer] })),
        cluster: { state: 'new', token },
        replication: { voters: options.voters, readDefault: 'linearizable' },
        raft: {
          heartbeatMs: options.heartbeatMs ?? 100,
          electionMs: options.electionMs ?? 1000,
          snapshotEntries: options.snapshotEntries ?? 1000,
        },
        testMode: { faultInjection: true },
      };
      writeFileSync(m.configFile, stringify(config));
    }
    const cluster = new LocalCluster(dataRoot, members, options.logLevel ?? 'info');
    try {
      for (const m of members) cluster.spawn(m.index);
      await cluster.waitForLeader(MEMBER_START_TIMEOUT_MS + LEADER_WAIT_TIMEOUT_MS);
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  state(index: number): MemberState {
    return this.states[index]!;
  }

  pid(index: number): number | null {
    return this.states[index] === 'down' ? null : (this.children[index]?.pid ?? null);
  }

  /** Starts the member's process (it must be down). */
  spawn(index: number): void {
    assert(!this.destroyed, 'cluster destroyed');
    assert(this.states[index] === 'down', `${this.members[index]!.name} is not down`);
    const m = this.members[index]!;
    const log = openSync(m.logFile, 'a');
    const child = spawn(process.execPath, [...cliCommand(), 'start', '--config', m.configFile], {
      stdio: ['ignore', log, log],
      env: { ...memberEnv(process.env), TANDEM_LOG_LEVEL: this.logLevel },
    });
    closeSync(log);
    LIVE.add(child);
    this.children[index] = child;
    this.states[index] = 'running';
    this.exits[index] = new Promise((resolve) => {
      child.once('exit', () => {
        LIVE.delete(child);
        if (this.children[index] === child) this.states[index] = 'down';
        resolve();
      });
    });
  }

  private signal(index: number, signal: NodeJS.Signals): void {
    const child = this.children[index];
    if (child === null || child === undefined || this.states[index] === 'down') return;
    killQuietly(child, signal);
  }

  /** kill -9; resolves once the process has exited. */
  async kill(index: number): Promise<void> {
    if (this.states[index] === 'down') return;
    this.signal(index, 'SIGKILL');
    this.signal(index, 'SIGCONT');
    await this.exits[index];
  }

  /** SIGTERM, SIGKILL after a bound; resolves once the process has exited. */
  async stop(index: number): Promise<void> {
    if (this.states[index] === 'down') return;
    if (this.states[index] === 'paused') this.resume(index);
    this.signal(index, 'SIGTERM');
    const timer = setTimeout(() => this.signal(index, 'SIGKILL'), MEMBER_STOP_TIMEOUT_MS);
    await this.exits[index];
    clearTimeout(timer);
  }

  pause(index: number): void {
    if (this.states[index] !== 'running') return;
    this.signal(index, 'SIGSTOP');
    this.states[index] = 'paused';
  }

  resume(index: number): void {
    if (this.states[index] !== 'paused') return;
    this.signal(index, 'SIGCONT');
    this.states[index] = 'running';
  }

  async status(index: number): Promise<MemberStatus | null> {
    if (this.states[index] !== 'running') return null;
    try {
      return await adminRequest<MemberStatus>(this.members[index]!.admin, 'GET', '/status');
    } catch {
      return null;
    }
  }

  /** Sets link rules on one member (its outbound messages); false if it did not answer. */
  async setLinks(index: number, links: readonly LinkRule[]): Promise<boolean> {
    if (this.states[index] !== 'running') return false;
    try {
      await adminRequest(this.members[index]!.admin, 'POST', '/faults', { links });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Arms the member's next WAL fsync to fail (its test-mode fault file system); false if it did
   * not answer or refused.
   */
  async failNextWalSync(index: number): Promise<boolean> {
    if (this.states[index] !== 'running') return false;
    try {
      await adminRequest(this.members[index]!.admin, 'POST', '/faults', {
        disk: { failNextSync: 'EIO', pathIncludes: 'wal' },
      });
      return true;
    } catch {
      return false;
    }
  }

  /** Heals every link of one member; false if it did not answer. */
  async clearLinks(index: number): Promise<boolean> {
    if (this.states[index] !== 'running') return false;
    try {
      await adminRequest(this.members[index]!.admin, 'DELETE', '/faults');
      return true;
    } catch {
      return false;
    }
  }

  /** Waits (bounded) until the running member answers its admin endpoint. */
  async waitUp(index: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (let round = 0; round < POLL_ROUNDS_MAX && Date.now() < deadline; round++) {
      if (signal?.aborted === true || this.states[index] === 'down') return false;
      if ((await this.status(index)) !== null) return true;
      await sleep(POLL_INTERVAL_MS, signal);
    }
    return false;
  }

  /**
   * Waits until one running member leads and every running member agrees; returns its index.
   * Throws after `timeoutMs`.
   */
  async waitForLeader(timeoutMs = LEADER_WAIT_TIMEOUT_MS, signal?: AbortSignal): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (let round = 0; round < POLL_ROUNDS_MAX && Date.now() < deadline; round++) {
      if (signal?.aborted === true) break;
      const statuses = await Promise.all(this.members.map((m) => this.status(m.index)));
      const running = this.members.filter((m) => this.states[m.index] === 'running');
      const leaders = statuses.filter((s) => s?.isLeader === true);
      if (
        running.length > 0 &&
        leaders.length === 1 &&
        running.every((m) => statuses[m.index]?.leader === leaders[0]!.memberId)
      ) {
        return statuses.indexOf(leaders[0]!);
      }
      await sleep(POLL_INTERVAL_MS, signal);
    }
    throw new Error(`no leader every running member agrees on within ${timeoutMs} ms`);
  }

  /** Resumes paused members, stops every member (SIGTERM, then SIGKILL), removes the data. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const m of this.members) this.resume(m.index);
    await Promise.all(this.members.map((m) => this.stop(m.index)));
    rmSync(this.dataRoot, { recursive: true, force: true });
  }
}
