/**
 * TEST HARNESS for integration tests: real tandem members as separate processes on 127.0.0.1,
 * started from source (`node --import tsx src/cli/bin.ts start --config <file>`), each with its
 * own YAML config, data directory and log file in one temp directory.
 *
 * Every process started here is tracked by PID and killed (SIGKILL) by `destroy()` and, as a
 * last resort, when the test process exits. Every wait is bounded in time.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(REPO_ROOT, 'src', 'cli', 'bin.ts');

/** A member's start-up (tsx compiles on the fly) on a loaded 2-core machine. */
export const START_TIMEOUT_MS = 30_000;
export const LEADER_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 100;
const HTTP_TIMEOUT_MS = 1_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_TAIL_LINES = 40;
export const HEARTBEAT_MS = 100;
export const ELECTION_MS = 1_000;

/** Processes alive across all clusters of this test process: killed on exit whatever happens. */
const LIVE = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of LIVE) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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

/** Polls `check` until it returns a non-null value; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | null | undefined> | T | null | undefined,
  intervalMs = POLL_INTERVAL_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (let round = 0; round < 100_000; round++) {
    try {
      const value = await check();
      if (value !== null && value !== undefined) return value;
    } catch (error) {
      if (error instanceof FatalWait) throw error;
      last = error;
    }
    if (Date.now() > deadline) break;
    await sleep(intervalMs);
  }
  const why = last === null ? '' : `: last error ${(last as Error).message}`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
}

/** GET http://address/path as JSON, bounded. */
export function getJson<T>(address: string, path: string): Promise<T> {
  return new Promise((resolveGet, reject) => {
    const req = request(`http://${address}${path}`, { timeout: HTTP_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => {
        try {
          resolveGet(JSON.parse(body) as T);
        } catch (error) {
          reject(error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${address}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The admin endpoint's GET /status (src/cli/node.ts). Ids are hex strings. */
export interface MemberStatus {
  readonly name: string;
  readonly memberId: string;
  readonly clusterId: string;
  readonly leader: string;
  readonly isLeader: boolean;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly revision: number;
  readonly members: readonly {
    id: string;
    name: string;
    peerUrls: string[];
    clientUrls: string[];
    isLearner: boolean;
  }[];
}

export interface MemberSpec {
  readonly name: string;
  readonly client: string;
  readonly peer: string;
  readonly admin: string;
  readonly dataDir: string;
  readonly configFile: string;
  readonly logFile: string;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class MemberProcess {
  child: ChildProcess | null = null;
  /** Resolves when the current process exits. */
  exited: Promise<Exit> = Promise.resolve({ code: null, signal: null });
  private lastExit: Exit | null = null;

  constructor(readonly spec: MemberSpec) {}

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | null {
    return this.running ? (this.child?.pid ?? null) : null;
  }

  get running(): boolean {
    return this.child !== null && this.lastExit === null;
  }

  /** Spawns the member; its stdout and stderr are appended to its log file. */
  spawn(extraEnv: Record<string, string> = {}): void {
    if (this.running) throw new Error(`${this.name} is already running`);
    const log = openSync(this.spec.logFile, 'a');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', BIN, 'start', '--config', this.spec.configFile],
      {
        cwd: REPO_ROOT,
        stdio: ['ignore', log, log],
        env: { ...process.env, TANDEM_LOG_LEVEL: 'info', ...extraEnv },
      },
    );
    closeSync(log);
    this.child = child;
    this.lastExit = null;
    LIVE.add(child);
    this.exited = new Promise((resolveExit) => {
      child.once('exit', (code, signal) => {
        LIVE.delete(child);
        this.lastExit = { code, signal };
        resolveExit(this.lastExit);
      });
    });
  }

  /** Sends `signal` to the member's PID (never by name). */
  signal(signal: NodeJS.Signals): void {
    const pid = this.pid;
    if (pid === null) return;
    process.kill(pid, signal);
  }

  /** kill -9 and wait for the exit. */
  async kill(): Promise<Exit> {
    this.signal('SIGKILL');
    return this.exited;
  }

  /** SIGTERM; waits (bounded) for the exit, SIGKILL after the bound. */
  async stop(timeoutMs = STOP_TIMEOUT_MS): Promise<Exit> {
    if (!this.running) return this.lastExit ?? { code: null, signal: null };
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async status(): Promise<MemberStatus> {
    return getJson<MemberStatus>(this.spec.admin, '/status');
  }

  log(): string {
    return existsSync(this.spec.logFile) ? readFileSync(this.spec.logFile, 'utf8') : '';
  }

  tail(lines = LOG_TAIL_LINES): string {
    return this.log()
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  }
}

/** A founder's role (test/integration/redundancy.test.ts); voters by default. */
export interface FounderRole {
  readonly role: 'voter' | 'replica' | 'standby';
  readonly standbyMode?: 'hot' | 'warm' | 'cold';
  readonly zone?: string;
}

export interface ClusterOptions {
  /** Number of founding members (default 3), voters unless `roles` says otherwise. */
  readonly size?: number;
  /** Founding roles by member name (n1, n2, ...). */
  readonly roles?: Readonly<Record<string, FounderRole>>;
  /** Extra YAML fields merged into every member's config. */
  readonly extraConfig?: Record<string, unknown>;
  /** A label for the temp dir and the cluster token. */
  readonly label?: string;
  /**
   * The addresses the other founders dial for a member (default: its peer listen address);
   * e.g. TCP proxies the test controls, several for redundant links.
   */
  readonly peerAddresses?: (spec: MemberSpec) => Promise<readonly string[]> | readonly string[];
}

/** A cluster of real member processes in one temp directory. */
export class Cluster {
  readonly dir: string;
  readonly token: string;
  readonly members: MemberProcess[] = [];
  private readonly extraConfig: Record<string, unknown>;
  private destroyed = false;

  private constructor(label: string, extraConfig: Record<string, unknown>) {
    this.dir = mkdtempSync(join(tmpdir(), `tandem-it-${label}-`));
    this.token = `it-${label}-${randomBytes(6).toString('hex')}`;
    this.extraConfig = extraConfig;
  }

  /** Writes configs for `size` founders and starts them; resolves once a leader is known. */
  static async start(options: ClusterOptions = {}): Promise<Cluster> {
    const cluster = new Cluster(options.label ?? 'cluster', options.extraConfig ?? {});
    try {
      const size = options.size ?? 3;
      const specs: MemberSpec[] = [];
      for (let i = 1; i <= size; i++) specs.push(await cluster.newSpec(`n${i}`));
      const dialed = new Map<MemberSpec, readonly string[]>();
      for (const spec of specs) {
        dialed.set(spec, (await options.peerAddresses?.(spec)) ?? [spec.peer]);
      }
      const roles = options.roles ?? {};
      const roleOf = (name: string): FounderRole => roles[name] ?? { role: 'voter' };
      for (const spec of specs) {
        const own = roleOf(spec.name);
        cluster.writeConfig(spec, {
          peers: specs
            .filter((p) => p !== spec)
            .map((p) => ({
              name: p.name,
              addresses: dialed.get(p)!,
              ...(roles[p.name] === undefined
                ? {}
                : { role: roleOf(p.name).role, standbyMode: roleOf(p.name).standbyMode ?? 'hot' }),
            })),
          cluster: { state: 'new', token: cluster.token },
          ...(roles[spec.name] === undefined
            ? {}
            : {
                role: own.role,
                ...(own.zone === undefined ? {} : { zone: own.zone }),
                redundancy: {
                  ...((cluster.extraConfig.redundancy as object | undefined) ?? {}),
                  standby: { mode: own.standbyMode ?? 'hot' },
                },
              }),
        });
        cluster.members.push(new MemberProcess(spec));
      }
      for (const m of cluster.members) m.spawn();
      await cluster.waitForLeader();
      await cluster.waitForPublished();
    } catch (error) {
      cluster.dumpLogs(`cluster start failed: ${(error as Error).message}`);
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  /** Ports and paths for a new member (not started, no config written). */
  async newSpec(name: string): Promise<MemberSpec> {
    const [client, peer, admin] = [await freePort(), await freePort(), await freePort()];
    return {
      name,
      client: `127.0.0.1:${client}`,
      peer: `127.0.0.1:${peer}`,
      admin: `127.0.0.1:${admin}`,
      dataDir: join(this.dir, name),
      configFile: join(this.dir, `${name}.yaml`),
      logFile: join(this.dir, `${name}.log`),
    };
  }

  /** Writes the member's YAML config: its ports and data dir, `fields`, then `extraConfig`. */
  writeConfig(spec: MemberSpec, fields: Record<string, unknown>): void {
    const config = {
      name: spec.name,
      dataDir: spec.dataDir,
      listen: { client: spec.client, peer: spec.peer, admin: spec.admin },
      zone: 'local',
      raft: { heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS },
      ...fields,
      ...this.extraConfig,
      // A founder's standby mode (Cluster.start's roles) merges into extraConfig's redundancy.
      ...(fields.redundancy === undefined ? {} : { redundancy: fields.redundancy }),
    };
    writeFileSync(spec.configFile, stringify(config));
  }

  /** Adds a process for a member that is not a founder (e.g. a learner joining). */
  adopt(spec: MemberSpec): MemberProcess {
    const m = new MemberProcess(spec);
    this.members.push(m);
    return m;
  }

  member(name: string): MemberProcess {
    const m = this.members.find((x) => x.name === name);
    if (m === undefined) throw new Error(`no member ${name}`);
    return m;
  }

  get running(): MemberProcess[] {
    return this.members.filter((m) => m.running);
  }

  /** Client endpoints (host:port) of the given members (default: all founders). */
  endpoints(members: readonly MemberProcess[] = this.members): string[] {
    return members.map((m) => m.spec.client);
  }

  /** Statuses of the running members that answer. */
  async statuses(): Promise<Map<MemberProcess, MemberStatus>> {
    const out = new Map<MemberProcess, MemberStatus>();
    await Promise.all(
      this.running.map(async (m) => {
        try {
          out.set(m, await m.status());
        } catch {
          // not answering (yet)
        }
      }),
    );
    return out;
  }

  /**
   * Waits until a running member says it is the leader and every running member agrees
   * (`among` restricts who must agree); returns the leader.
   */
  async waitForLeader(
    timeoutMs = LEADER_TIMEOUT_MS,
    among: readonly MemberProcess[] = this.running,
  ): Promise<MemberProcess> {
    return waitFor('a leader every running member agrees on', timeoutMs, async () => {
      this.checkAlive(among);
      const statuses = await this.statuses();
      const leaders = [...statuses].filter(([m, s]) => s.isLeader && among.includes(m));
      if (leaders.length !== 1) return null;
      const [leader, ls] = leaders[0]!;
      for (const m of among) {
        const s = statuses.get(m);
        if (s === undefined || s.leader !== ls.memberId) return null;
      }
      return leader;
    });
  }

  /**
   * Waits until every running member's registry has a name and client URL for every member of
   * the Raft configuration. A member outside the configuration (a warm or cold standby) receives
   * no log, so its registry is as of its last snapshot: it is not asked (the leader's policy may
   * stage and unstage it at any moment, which once made this wait time out at random).
   */
  async waitForPublished(timeoutMs = LEADER_TIMEOUT_MS): Promise<void> {
    await waitFor('every member published its client URL', timeoutMs, async () => {
      this.checkAlive(this.running);
      const statuses = await this.statuses();
      if (statuses.size !== this.running.length) return null;
      for (const s of statuses.values()) {
        if (!s.members.some((m) => m.id === s.memberId)) continue; // outside the configuration
        if (s.members.some((m) => m.clientUrls.length === 0 || m.name === '')) return null;
      }
      return true;
    });
  }

  /** The current leader (waits for one). */
  async leader(timeoutMs = LEADER_TIMEOUT_MS): Promise<MemberProcess> {
    return this.waitForLeader(timeoutMs);
  }

  /** The running members other than `leader`. */
  followers(leader: MemberProcess): MemberProcess[] {
    return this.running.filter((m) => m !== leader);
  }

  /**
   * Waits until every running member has applied at least the leader's commit index (read once
   * the leader is known), so serializable reads on each see every acknowledged write.
   */
  async waitForCatchUp(timeoutMs = LEADER_TIMEOUT_MS): Promise<MemberStatus> {
    const leader = await this.waitForLeader(timeoutMs);
    const target = await leader.status();
    await waitFor(`every member applied index ${target.commitIndex}`, timeoutMs, async () => {
      this.checkAlive(this.running);
      const statuses = await this.statuses();
      if (statuses.size !== this.running.length) return null;
      for (const s of statuses.values()) if (s.appliedIndex < target.commitIndex) return null;
      return true;
    });
    return target;
  }

  /** Throws at once when a member expected to run has exited (no point in waiting). */
  checkAlive(members: readonly MemberProcess[]): void {
    for (const m of members) {
      if (!m.running) throw new FatalWait(`${m.name} exited unexpectedly\n${m.tail()}`);
    }
  }

  /** Prints the tail of every member's log to stderr (on failure). */
  dumpLogs(reason: string): void {
    const parts = [`\n===== ${reason} (temp dir ${this.dir}) =====`];
    for (const m of this.members) {
      parts.push(`----- ${m.name} (${m.spec.logFile}) -----`, m.tail());
    }
    process.stderr.write(`${parts.join('\n')}\n`);
  }

  /** Runs a test body; on failure prints the members' log tails, then rethrows. */
  async guard(name: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (error) {
      this.dumpLogs(`test failed: ${name}: ${(error as Error).message.split('\n')[0]}`);
      throw error;
    }
  }

  /** Kills (SIGKILL, by PID) every process still running and deletes the temp dir. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all(this.members.map((m) => (m.running ? m.kill() : null)));
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/** A wait that cannot succeed any more (a member died): `waitFor` does not swallow it. */
class FatalWait extends Error {}
