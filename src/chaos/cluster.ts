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
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { assert } from '../util/assert.js';
import { KernelNet } from './netns.js';

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
  /** The WAL mirror directory, or null. */
  readonly mirrorDir: string | null;
  readonly configFile: string;
  readonly logFile: string;
  /** The role it was founded with (the registry decides after that). */
  readonly foundingRole: 'voter' | 'standby';
}

/** How members are connected (see netns.ts): kernel namespaces, or loopback + transport rules. */
export type NetMode = 'kernel' | 'transport';
export type ChaosStandbyMode = 'hot' | 'warm' | 'cold';
export const CHAOS_STANDBY_MODES: readonly ChaosStandbyMode[] = ['hot', 'warm', 'cold'];
/** redundancy.standby.snapshotEvery of warm standbys in a chaos run: several per run. */
const WARM_SNAPSHOT_EVERY = '10s';

/** A member's fixed ports in kernel mode (each member has an address of its own). */
const KERNEL_CLIENT_PORT = 2379;
const KERNEL_PEER_PORT = 2380;
const KERNEL_ADMIN_PORT = 2381;

export interface LocalClusterOptions {
  readonly voters: number;
  /** Standbys besides the voters (default 0), with the redundancy policy's replaceAfter. */
  readonly standbys?: number;
  /**
   * Every member's standby mode (default hot): the founding standbys', and the mode a replaced
   * voter is demoted to. Warm standbys are refreshed every WARM_SNAPSHOT_EVERY.
   */
  readonly standbyMode?: ChaosStandbyMode;
  /** `redundancy.replaceAfter` of every member (default: the member's own default). */
  readonly replaceAfterMs?: number;
  /** Give every member a WAL mirror directory (`wal.mirror`, default false). */
  readonly walMirror?: boolean;
  /** Default 'transport'. */
  readonly net?: NetMode;
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
  /** Members given up for the rest of the run (a WAL they refuse to start from): never spawned. */
  private readonly lost = new Set<number>();
  private destroyed = false;

  private constructor(
    readonly dataRoot: string,
    members: ChaosMember[],
    private readonly logLevel: string,
    /** The kernel network, or null in transport mode. */
    readonly net: KernelNet | null,
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
    const standbys = options.standbys ?? 0;
    const count = options.voters + standbys;
    mkdirSync(options.logDir, { recursive: true });
    const net = options.net === 'kernel' ? await KernelNet.create({ members: count }) : null;
    const dataRoot = mkdtempSync(join(tmpdir(), 'tandem-chaos-'));
    const token = `chaos-${randomBytes(6).toString('hex')}`;
    const members: ChaosMember[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const name = `n${i + 1}`;
        const at = async (kernelPort: number): Promise<string> =>
          net === null ? `127.0.0.1:${await freePort()}` : `${net.address(i)}:${kernelPort}`;
        members.push({
          index: i,
          name,
          client: await at(KERNEL_CLIENT_PORT),
          peer: await at(KERNEL_PEER_PORT),
          admin: await at(KERNEL_ADMIN_PORT),
          dataDir: join(dataRoot, name),
          mirrorDir: options.walMirror === true ? join(dataRoot, `${name}-mirror`) : null,
          configFile: join(dataRoot, `${name}.yaml`),
          logFile: join(options.logDir, `${name}.log`),
          foundingRole: i < options.voters ? 'voter' : 'standby',
        });
      }
    } catch (error) {
      await net?.destroy();
      throw error;
    }
    for (const m of members)
      writeFileSync(m.configFile, stringify(memberConfig(m, members, token, options)));
    const cluster = new LocalCluster(dataRoot, members, options.logLevel ?? 'info', net);
    try {
      for (const m of members) cluster.spawn(m.index);
      await cluster.waitForLeader(MEMBER_START_TIMEOUT_MS + LEADER_WAIT_TIMEOUT_MS);
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  /** Whether the member was given up for the rest of the run. */
  isLost(index: number): boolean {
    return this.lost.has(index);
  }

  /** Gives the (down) member up: it is never started again in this run. */
  markLost(index: number): void {
    assert(this.states[index] === 'down', 'only a member that is down is given up');
    this.lost.add(index);
  }

  /** Waits (bounded) for the member's process to exit; its exit code, or null if it did not. */
  async waitExit(index: number, timeoutMs: number): Promise<number | null> {
    const child = this.children[index];
    if (child === null || child === undefined) return null;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), timeoutMs);
    });
    const result = await Promise.race([this.exits[index]!.then(() => 'exited' as const), timeout]);
    clearTimeout(timer);
    return result === 'exited' ? child.exitCode : null;
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
    assert(!this.lost.has(index), `${this.members[index]!.name} was given up`);
    const m = this.members[index]!;
    const log = openSync(m.logFile, 'a');
    const own = [process.execPath, ...cliCommand(), 'start', '--config', m.configFile];
    // `ip netns exec` execs the member in place: the PID is the member's own.
    const argv = this.net === null ? own : this.net.wrap(index, own);
    const child = spawn(argv[0]!, argv.slice(1), {
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

  async status(
    index: number,
  ): Promise<(MemberStatus & { registry?: { name: string; role: string }[] }) | null> {
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

  /**
   * Drops `lossRate` (1: all) of what every member of `from` sends to every member of `to`: a
   * one-way cut (or lossy link); call it both ways for a two-way one. Kernel mode: nftables in
   * the receivers' namespaces; transport mode: the senders' transport rules.
   */
  async dropLinks(from: readonly number[], to: readonly number[], lossRate: number): Promise<void> {
    if (this.net !== null) return this.net.drop(from, to, lossRate);
    await this.transportRules(from, to, { dropRate: lossRate });
  }

  /**
   * Slows what every member of `from` sends to every member of `to`. Returns how: the kernel's
   * netem, or (transport mode, or a kernel without sch_netem) the transport's delay rule, the
   * loss then still the kernel's when in kernel mode.
   */
  async slowLinks(
    from: readonly number[],
    to: readonly number[],
    shape: { delayMs: number; jitterMs: number; lossRate: number },
  ): Promise<'netem' | 'transport' | 'transport delay + nft loss'> {
    if (this.net?.delay === true) {
      await this.net.shape(from, to, shape);
      return 'netem';
    }
    if (this.net !== null && shape.lossRate > 0) {
      await this.net.drop(from, to, shape.lossRate);
      await this.transportRules(from, to, { delayMs: shape.delayMs });
      return 'transport delay + nft loss';
    }
    await this.transportRules(from, to, { delayMs: shape.delayMs, dropRate: shape.lossRate });
    return 'transport';
  }

  /** Heals every link: the kernel's rules (kernel mode) and every member's transport rules. */
  async healNetwork(): Promise<void> {
    await this.net?.heal();
    await Promise.all(this.members.map((m) => this.clearLinks(m.index)));
  }

  private async transportRules(
    from: readonly number[],
    to: readonly number[],
    rule: Omit<LinkRule, 'peer'>,
  ): Promise<void> {
    const bySender = new Map<number, LinkRule[]>();
    for (const x of from) {
      const rules = to
        .filter((y) => y !== x)
        .map((y) => ({ peer: this.members[y]!.name, ...rule }));
      if (rules.length > 0) bySender.set(x, rules);
    }
    await Promise.all([...bySender].map(([sender, rules]) => this.setLinks(sender, rules)));
  }

  /**
   * Arms the member's storage to crash mid-write: the write crossing `bytes` more bytes lands a
   * prefix (a torn write), every later call fails; false if it did not answer or refused.
   */
  async crashStorageAfter(index: number, bytes: number): Promise<boolean> {
    if (this.states[index] !== 'running') return false;
    try {
      await adminRequest(this.members[index]!.admin, 'POST', '/faults', {
        disk: { crashAfterBytes: bytes },
      });
      return true;
    } catch {
      return false;
    }
  }

  /** The member's full /status (registry included), or null when it does not answer. */
  async fullStatus(
    index: number,
  ): Promise<(MemberStatus & { registry?: { name: string; role: string }[] }) | null> {
    return this.status(index);
  }

  /** The size of the member's log file now (a later `logMentions` can start from it). */
  logBytes(index: number): number {
    try {
      return statSync(this.members[index]!.logFile).size;
    } catch {
      return 0;
    }
  }

  /** Whether the member's log, from byte `fromBytes` on, contains `text`. */
  logMentions(index: number, text: string, fromBytes = 0): boolean {
    try {
      return readFileSync(this.members[index]!.logFile).subarray(fromBytes).includes(text);
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
    await this.net?.destroy();
    rmSync(this.dataRoot, { recursive: true, force: true });
  }
}

/** A member's YAML config (see DESIGN.md "Policies"). */
function memberConfig(
  m: ChaosMember,
  members: readonly ChaosMember[],
  token: string,
  options: LocalClusterOptions,
): Record<string, unknown> {
  return {
    name: m.name,
    dataDir: m.dataDir,
    role: m.foundingRole,
    listen: { client: m.client, peer: m.peer, admin: m.admin },
    peers: members
      .filter((p) => p !== m)
      .map((p) => ({
        name: p.name,
        addresses: [p.peer],
        role: p.foundingRole,
        standbyMode: options.standbyMode ?? 'hot',
      })),
    cluster: { state: 'new', token },
    replication: { voters: options.voters, readDefault: 'linearizable' },
    redundancy: {
      ...(options.replaceAfterMs !== undefined && { replaceAfter: `${options.replaceAfterMs}ms` }),
      standby: {
        mode: options.standbyMode ?? 'hot',
        ...(options.standbyMode === 'warm' && { snapshotEvery: WARM_SNAPSHOT_EVERY }),
      },
    },
    ...(m.mirrorDir !== null && { wal: { mirror: m.mirrorDir } }),
    raft: {
      heartbeatMs: options.heartbeatMs ?? 100,
      electionMs: options.electionMs ?? 1000,
      snapshotEntries: options.snapshotEntries ?? 1000,
    },
    testMode: { faultInjection: true },
  };
}
