/**
 * The local-cluster launcher: N tandem members as separate processes on this machine, each with
 * its own YAML config, data directory and log, started with the same CLI a user runs
 * (`tandem start --config <file>`, compiled or from source). Used by `tandem dev`, `tandem chaos`
 * (src/chaos/cluster.ts), the integration tests and the benchmarks.
 *
 *   const cluster = await LocalCluster.start({ members: 3, label: 'it-restart' });
 *   const leader = await cluster.waitForLeader();
 *   await cluster.members[1]!.kill();        // kill -9; spawn() restarts it
 *   await cluster.destroy();                 // stops every member, removes the temp directory
 *
 * A member's config is layered, later layers merging into earlier ones (objects field by field,
 * anything else replaced): what the launcher writes (name, dataDir, listen, peers, cluster), the
 * member's plan (role, zone, standby mode), `config` (every member), `memberConfig(spec)`.
 *
 * Processes: see local-process.ts (PIDs only, setpriv --pdeathsig, killed on exit, bounded waits).
 * Timeout messages carry the members' log tails.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { assert } from '../util/assert.js';
import { type MemberRole, PEERS_MAX, type StandbyMode } from './config.js';
import { type CertFiles, type DevPki, devPki } from './dev-certs.js';
import {
  ADMIN_REQUEST_TIMEOUT_MS,
  type AdminClientTls,
  adminExchange,
  adminRequest,
  FatalWait,
  FREE_PORTS_MAX,
  freePorts,
  POLL_INTERVAL_MS,
  waitFor,
} from './local-net.js';
import {
  type Exit,
  LocalProcess,
  type ProcessOptions,
  STOP_TIMEOUT_MS_DEFAULT,
} from './local-process.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository (or package) root: src/cli/ and dist/cli/ are both two levels down. */
export const REPO_DIR = resolve(here, '..', '..');
/** The compiled CLI users run (`npm run build` makes dist/). */
export const TANDEM_BIN = join(REPO_DIR, 'bin', 'tandem.js');
const SOURCE_BIN = join(REPO_DIR, 'src', 'cli', 'bin.ts');
const RUNNING_FROM_SOURCE = extname(fileURLToPath(import.meta.url)) === '.ts';

/** A member's start-up (tsx may compile on the fly) on a loaded 2-core machine. */
export const MEMBER_START_TIMEOUT_MS = 30_000;
export const LEADER_TIMEOUT_MS = 20_000;
/** A member and every peer its config may name. */
export const MEMBERS_MAX = PEERS_MAX + 1;
/** Lines of each member's log in a timeout message. */
const TIMEOUT_TAIL_LINES = 10;

assert(3 * MEMBERS_MAX <= FREE_PORTS_MAX, 'free ports for the largest cluster in one call');

/**
 * How members run the CLI: `compiled` (`node bin/tandem.js`, what users run), `source`
 * (`node --import tsx src/cli/bin.ts`), or `same` as this module (source under tsx, else compiled).
 */
export type TandemCommand = 'compiled' | 'source' | 'same';

function fromSource(command: TandemCommand): boolean {
  return command === 'source' || (command === 'same' && RUNNING_FROM_SOURCE);
}

/** The command line that runs the tandem CLI: `[node, ...nodeArgs, <cli>]`, arguments to follow. */
export function tandemArgv(command: TandemCommand, nodeArgs: readonly string[] = []): string[] {
  return fromSource(command)
    ? [process.execPath, ...nodeArgs, '--import', 'tsx', SOURCE_BIN]
    : [process.execPath, ...nodeArgs, TANDEM_BIN];
}

/**
 * A member's environment: `env` less its TANDEM_* variables. A member reads TANDEM_* as settings
 * and rejects unknown ones, so the runner's own (TANDEM_CHAOS_KEEP) or a user's settings for
 * another cluster must not reach it; the member's settings are its config.
 */
export function memberEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('TANDEM_')) out[name] = value;
  }
  return out;
}

/** YAML fields of a member config (src/cli/config.ts). */
export type ConfigFields = { readonly [field: string]: unknown };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `layers` merged in order: objects field by field, anything else (arrays too) replaced. */
export function mergeConfig(...layers: readonly ConfigFields[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const layer of layers) {
    for (const [field, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      const before = out[field];
      out[field] =
        isPlainObject(before) && isPlainObject(value) ? mergeConfig(before, value) : value;
    }
  }
  return out;
}

export interface MemberAddresses {
  readonly client: string;
  readonly peer: string;
  readonly admin: string;
}

/** A founding member. Without a role, no role fields are written (the member's default: voter). */
export interface MemberPlan {
  /** Default `n<index+1>`. */
  readonly name?: string;
  /** Written as its `role` and in its peers' entries (with the standby mode). */
  readonly role?: MemberRole;
  /** With a role: its `redundancy.standby.mode` and its peers' `standbyMode` for it (default hot). */
  readonly standbyMode?: StandbyMode;
  readonly zone?: string;
}

/** Where a member listens and keeps its files. */
export interface MemberSpec extends MemberAddresses {
  readonly index: number;
  readonly name: string;
  readonly role: MemberRole | null;
  readonly standbyMode: StandbyMode | null;
  readonly zone: string | null;
  readonly dataDir: string;
  readonly configFile: string;
  /** Null when the output goes to `onOutput`. */
  readonly logFile: string | null;
}

/** One entry of the admin endpoint's `registry` (tandem's view, standbys included). */
export interface RegistryStatus {
  readonly name: string;
  readonly role: string;
  readonly standbyMode?: string;
  readonly zone?: string;
  readonly placement?: string;
  readonly health?: string;
  readonly lag?: number | null;
}

/** The admin endpoint's GET /status (src/cli/node.ts), the fields launchers read. Ids are hex. */
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
  /** etcd's view: voters and learners. */
  readonly members: readonly {
    id: string;
    name: string;
    peerUrls: string[];
    clientUrls: string[];
    isLearner: boolean;
  }[];
  readonly registry?: readonly RegistryStatus[];
}

/** A tandem member: its spec, its process, its admin endpoint. */
export class LocalMember extends LocalProcess {
  constructor(
    readonly spec: MemberSpec,
    options: ProcessOptions,
    /** How to reach its admin endpoint over HTTPS; null: plain HTTP. */
    readonly adminTls: AdminClientTls | null = null,
  ) {
    super(options);
  }

  get name(): string {
    return this.spec.name;
  }

  get index(): number {
    return this.spec.index;
  }

  /** GET /status; rejects when the member does not answer. */
  status(): Promise<MemberStatus> {
    return this.adminTls === null
      ? adminRequest<MemberStatus>(this.spec.admin, 'GET', '/status')
      : adminRequest<MemberStatus>(
          this.spec.admin,
          'GET',
          '/status',
          undefined,
          undefined,
          this.adminTls,
        );
  }

  /** GET /ready: true when a client request sent to this member now is answered. */
  async ready(): Promise<boolean> {
    const answer = await adminExchange(
      this.spec.admin,
      'GET',
      '/ready',
      undefined,
      ADMIN_REQUEST_TIMEOUT_MS,
      this.adminTls ?? undefined,
    );
    return answer.status === 200;
  }

  /** GET /status, or null when the member is not running (paused, down) or does not answer. */
  async tryStatus(): Promise<MemberStatus | null> {
    if (this.state !== 'running') return null;
    try {
      return await this.status();
    } catch {
      return null;
    }
  }

  /** Waits (bounded) until the member answers its admin endpoint; false if down or aborted. */
  async waitUp(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    try {
      await waitFor(
        `${this.name} to answer`,
        timeoutMs,
        async () => {
          if (this.state === 'down') throw new FatalWait(`${this.name} is down`);
          return (await this.tryStatus()) === null ? null : true;
        },
        signal === undefined ? {} : { signal },
      );
      return true;
    } catch {
      return false;
    }
  }
}

export interface LocalClusterOptions {
  /** The founders: a count (n1…nN, no roles written) or one plan each. */
  readonly members: number | readonly MemberPlan[];
  /** Fields for every member's config. */
  readonly config?: ConfigFields;
  /** Fields for one member, merged last (e.g. its WAL mirror directory). */
  readonly memberConfig?: (spec: MemberSpec) => ConfigFields;
  /** Names the temp directory (`tandem-<label>-…`) and the default token (default `local`). */
  readonly label?: string;
  /** `cluster.token` (default `<label>-<random>`). */
  readonly token?: string;
  /** `cluster.secret` of every member (default: 32 random bytes, hex; new per start()). */
  readonly secret?: string;
  /**
   * Configs and data directories go here (created, never removed). Default: a fresh temp
   * directory, removed by destroy() unless `keepDir`.
   */
  readonly dir?: string;
  readonly keepDir?: boolean;
  /** Where the logs go (default: `dir`). */
  readonly logDir?: string;
  /** A member's listen addresses (default: free ports on 127.0.0.1). */
  readonly addresses?: (index: number) => MemberAddresses;
  /** The addresses the others dial for a member (default: its peer address), e.g. proxies. */
  readonly peerAddresses?: (spec: MemberSpec) => Promise<readonly string[]> | readonly string[];
  /** Default `same`. */
  readonly command?: TandemCommand;
  /** `node` flags of every member, e.g. ['--cpu-prof']. */
  readonly nodeArgs?: readonly string[];
  /** The members' environment (default: this process's less TANDEM_*, see memberEnv). */
  readonly env?: NodeJS.ProcessEnv;
  /** TANDEM_LOG_LEVEL of every member (default info). */
  readonly logLevel?: string;
  /**
   * The members' working directory. Default: the repository when running from source (tsx
   * resolves from there), else the cluster's directory.
   */
  readonly cwd?: string;
  /** Runs a member's command line through a wrapper that execs it in place (netns, …). */
  readonly wrap?: (spec: MemberSpec, argv: readonly string[]) => readonly string[];
  /** The members' output goes here instead of log files. */
  readonly onOutput?: (spec: MemberSpec, stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  /** Members die with this process (setpriv --pdeathsig KILL); default true. */
  readonly dieWithParent?: boolean;
  /**
   * What start() waits for: `spawned` (nothing), `leader` (default: one leader every member
   * agrees on), `published` (and every member's client URL in every member's view).
   */
  readonly ready?: 'spawned' | 'leader' | 'published';
  readonly readyTimeoutMs?: number;
  /**
   * A snapshot file every founder is restored from (`tandem restore --from`) before it first
   * starts: a new cluster holding a backup's or an etcd snapshot's data.
   */
  readonly restoreFrom?: string;
  /**
   * TLS on every port (client with client-certificate auth, peer, admin): a throwaway CA and
   * certificates (dev-certs.ts, needs the openssl command) in `<dir>/tls`; see `tls` of the
   * cluster for a client's files.
   */
  readonly tls?: boolean;
}

/** A TLS cluster's files for clients (etcdctl --cacert/--cert/--key). */
export interface ClientTlsFiles extends CertFiles {
  readonly ca: string;
}

/** How long one `tandem restore` may take in the launcher. */
const RESTORE_TIMEOUT_MS = 120_000;

export interface LeaderWaitOptions {
  /**
   * The members that must agree; they must stay up. Default: those running when the wait begins
   * (or, with `exitsAllowed`, those running at each poll: a member that exits drops out).
   */
  readonly among?: readonly LocalMember[];
  readonly exitsAllowed?: boolean;
  readonly signal?: AbortSignal;
}

export interface ShutdownOptions {
  /** SIGKILL instead of SIGTERM (no graceful stop). */
  readonly kill?: boolean;
  /** SIGTERM to SIGKILL (default STOP_TIMEOUT_MS_DEFAULT). */
  readonly timeoutMs?: number;
  /** One member after the other (each stop an ordinary departure), else all at once. */
  readonly oneAtATime?: boolean;
}

/** Real member processes in one directory. */
export class LocalCluster {
  readonly members: LocalMember[] = [];
  /** The addresses the others dial, per member. */
  private readonly dialed = new Map<LocalMember, readonly string[]>();
  private destroyed = false;
  /** The throwaway PKI of a TLS cluster (`options.tls`), else null. */
  private readonly pki: DevPki | null;

  private constructor(
    private readonly options: LocalClusterOptions,
    readonly dir: string,
    /** A temp directory this cluster made: removed by destroy() unless keepDir. */
    private readonly ownsDir: boolean,
    readonly token: string,
    /** The peer secret written into every member's config (tests use it to speak the protocol). */
    readonly secret: string,
  ) {
    this.pki = options.tls === true ? devPki(join(dir, 'tls')) : null;
  }

  /** A TLS cluster's CA and client certificate (for etcdctl, etcd3, tools); null without TLS. */
  get tls(): ClientTlsFiles | null {
    return this.pki === null ? null : { ca: this.pki.ca, ...this.pki.client };
  }

  /** `http://` or `https://`: what the client ports speak. */
  get scheme(): 'http' | 'https' {
    return this.pki === null ? 'http' : 'https';
  }

  /**
   * Writes every founder's config (ports picked now) and starts them; waits as `ready` says.
   * On failure, kills what it started (and removes its temp directory) before rethrowing.
   */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const plans =
      typeof options.members === 'number'
        ? Array.from({ length: options.members }, (): MemberPlan => ({}))
        : options.members;
    assert(plans.length >= 1 && plans.length <= MEMBERS_MAX, `1 to ${MEMBERS_MAX} members`);
    const label = options.label ?? 'local';
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), `tandem-${label}-`));
    mkdirSync(dir, { recursive: true });
    if (options.logDir !== undefined) mkdirSync(options.logDir, { recursive: true });
    const token = options.token ?? `${label}-${randomBytes(6).toString('hex')}`;
    const secret = options.secret ?? randomBytes(32).toString('hex');
    const cluster = new LocalCluster(options, dir, ownsDir, token, secret);
    try {
      // All ports at once, so they differ.
      const ports = options.addresses === undefined ? await freePorts(3 * plans.length) : [];
      const specs = plans.map((plan, index) =>
        cluster.newSpec(index, plan, loopback(ports.slice(3 * index, 3 * index + 3))),
      );
      for (const spec of specs) {
        const member = cluster.newMember(spec);
        cluster.dialed.set(member, (await options.peerAddresses?.(spec)) ?? [spec.peer]);
      }
      for (const member of cluster.members) cluster.writeConfig(member, {});
      if (options.restoreFrom !== undefined) {
        // One at a time: each reads the whole file.
        for (const member of cluster.members) await cluster.restore(member, options.restoreFrom);
      }
      for (const member of cluster.members) member.spawn();
      const timeoutMs = options.readyTimeoutMs ?? MEMBER_START_TIMEOUT_MS + LEADER_TIMEOUT_MS;
      const startedMs = Date.now();
      if (options.ready !== 'spawned') await cluster.waitForLeader(timeoutMs);
      if (options.ready === 'published') {
        await cluster.waitForPublished(Math.max(0, timeoutMs - (Date.now() - startedMs)));
      }
    } catch (error) {
      await cluster.destroy({ kill: true }).catch(() => {});
      throw error;
    }
    return cluster;
  }

  /**
   * A member that is not a founder (e.g. one joining through `member add`): ports picked and
   * config written (its peers: every member so far), not started. `config` is merged last.
   */
  async addMember(
    plan: MemberPlan & { readonly name: string; readonly config?: ConfigFields },
  ): Promise<LocalMember> {
    assert(this.member(plan.name, false) === null, `member ${plan.name} exists`);
    assert(this.members.length < MEMBERS_MAX, 'room for a member');
    const free = this.options.addresses === undefined ? loopback(await freePorts(3)) : null;
    const member = this.newMember(this.newSpec(this.members.length, plan, free));
    this.dialed.set(member, [member.spec.peer]);
    this.writeConfig(member, plan.config ?? {});
    return member;
  }

  /** The member named `name` (throws when there is none, or null when `required` is false). */
  member(name: string): LocalMember;
  member(name: string, required: false): LocalMember | null;
  member(name: string, required = true): LocalMember | null {
    const found = this.members.find((m) => m.name === name) ?? null;
    if (found === null && required) throw new Error(`no member ${name}`);
    return found;
  }

  /** The members whose process is up (paused included). */
  get running(): LocalMember[] {
    return this.members.filter((m) => m.running);
  }

  /** Client endpoints (host:port) of `members` (default: all). */
  endpoints(members: readonly LocalMember[] = this.members): string[] {
    return members.map((m) => m.spec.client);
  }

  /** The running members other than `leader`. */
  followers(leader: LocalMember): LocalMember[] {
    return this.running.filter((m) => m !== leader);
  }

  /** Statuses of those of `members` (default: the running ones) that answer. */
  async statuses(
    members: readonly LocalMember[] = this.running,
  ): Promise<Map<LocalMember, MemberStatus>> {
    const answers = await Promise.all(members.map((m) => m.tryStatus()));
    const out = new Map<LocalMember, MemberStatus>();
    members.forEach((m, i) => {
      if (answers[i] !== null) out.set(m, answers[i]!);
    });
    return out;
  }

  /** Throws (a FatalWait: no point in waiting) when one of `members` has exited. */
  checkAlive(members: readonly LocalMember[]): void {
    for (const m of members) {
      if (!m.running) {
        throw new FatalWait(`${m.name} exited unexpectedly (${m.exitDescription()})\n${m.tail()}`);
      }
    }
  }

  /** waitFor (local-net.ts) with every member's log tail in the timeout message. */
  waitUntil<T>(
    what: string,
    timeoutMs: number,
    check: () => Promise<T | null | undefined> | T | null | undefined,
    signal?: AbortSignal,
  ): Promise<T> {
    return waitFor(what, timeoutMs, check, {
      intervalMs: POLL_INTERVAL_MS,
      detail: () => this.logTails(TIMEOUT_TAIL_LINES),
      ...(signal === undefined ? {} : { signal }),
    });
  }

  /** Waits until one member leads and every member of `among` agrees; returns the leader. */
  waitForLeader(
    timeoutMs = LEADER_TIMEOUT_MS,
    options: LeaderWaitOptions = {},
  ): Promise<LocalMember> {
    const fixed = options.among ?? (options.exitsAllowed === true ? null : this.running);
    return this.waitUntil(
      'a leader every running member agrees on',
      timeoutMs,
      async () => {
        if (fixed !== null && options.exitsAllowed !== true) this.checkAlive(fixed);
        const among = fixed ?? this.members.filter((m) => m.state === 'running');
        const statuses = await this.statuses(among);
        const leaders = [...statuses].filter(([, s]) => s.isLeader);
        if (leaders.length !== 1) return null;
        const [leader, ls] = leaders[0]!;
        return among.every((m) => statuses.get(m)?.leader === ls.memberId) ? leader : null;
      },
      options.signal,
    );
  }

  /** The current leader (waits for one, as waitForLeader). */
  leader(timeoutMs = LEADER_TIMEOUT_MS): Promise<LocalMember> {
    return this.waitForLeader(timeoutMs);
  }

  /**
   * Waits until every running member's view has a name and client URL for every member of the
   * Raft configuration. A member outside the configuration (a warm or cold standby) receives no
   * log, so its view is as of its last snapshot: it is not asked (the leader's policy may stage
   * and unstage it at any moment, which once made this wait time out at random).
   */
  async waitForPublished(timeoutMs = LEADER_TIMEOUT_MS): Promise<void> {
    await this.waitUntil('every member published its client URL', timeoutMs, async () => {
      const running = this.running;
      this.checkAlive(running);
      const statuses = await this.statuses(running);
      if (statuses.size !== running.length) return null;
      for (const s of statuses.values()) {
        if (!s.members.some((m) => m.id === s.memberId)) continue; // outside the configuration
        if (s.members.some((m) => m.clientUrls.length === 0 || m.name === '')) return null;
      }
      return true;
    });
  }

  /**
   * Waits until every running member has applied at least the leader's commit index (read once
   * the leader is known), so serializable reads on each see every acknowledged write.
   */
  async waitForCatchUp(timeoutMs = LEADER_TIMEOUT_MS): Promise<MemberStatus> {
    const leader = await this.waitForLeader(timeoutMs);
    const target = await leader.status();
    await this.waitUntil(
      `every member applied index ${target.commitIndex}`,
      timeoutMs,
      async () => {
        const running = this.running;
        this.checkAlive(running);
        const statuses = await this.statuses(running);
        if (statuses.size !== running.length) return null;
        for (const s of statuses.values()) if (s.appliedIndex < target.commitIndex) return null;
        return true;
      },
    );
    return target;
  }

  /** The last `lines` lines of every member's log, each under its name and file. */
  logTails(lines?: number): string {
    return this.members
      .map((m) => `----- ${m.name} (${m.spec.logFile ?? 'output'}) -----\n${m.tail(lines)}`)
      .join('\n');
  }

  /** Prints every member's log tail to stderr, under `reason` (on failure). */
  dumpLogs(reason: string): void {
    process.stderr.write(`\n===== ${reason} (directory ${this.dir}) =====\n${this.logTails()}\n`);
  }

  /** Runs `body`; when it throws, prints the members' log tails, then rethrows. */
  async guard(name: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (error) {
      this.dumpLogs(`failed: ${name}: ${(error as Error).message.split('\n')[0]}`);
      throw error;
    }
  }

  /** Stops every running member (paused ones resumed first); resolves once all have exited. */
  async stopAll(options: ShutdownOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? STOP_TIMEOUT_MS_DEFAULT;
    const stop = (m: LocalMember): Promise<Exit> =>
      options.kill === true ? m.kill() : m.stop(timeoutMs);
    if (options.oneAtATime === true) {
      for (const m of this.members) await stop(m);
      return;
    }
    const results = await Promise.allSettled(this.members.map(stop));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }

  /** Stops every member, then removes the temp directory (unless kept). Idempotent. */
  async destroy(options: ShutdownOptions = {}): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await this.stopAll(options);
    } finally {
      if (this.ownsDir && this.options.keepDir !== true) {
        rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
      }
    }
  }

  /** Runs `tandem restore --from file` for a member not started yet (its config written). */
  private restore(member: LocalMember, file: string): Promise<void> {
    const o = this.options;
    const command = o.command ?? 'same';
    const [program, ...args] = tandemArgv(command, o.nodeArgs);
    args.push('restore', '--from', file, '--config', member.spec.configFile);
    return new Promise((resolveRestore, reject) => {
      execFile(
        program!,
        args,
        {
          cwd: o.cwd ?? (fromSource(command) ? REPO_DIR : this.dir),
          env: o.env ?? memberEnv(process.env),
          timeout: RESTORE_TIMEOUT_MS,
        },
        (error, stdout, stderr) => {
          if (error === null) resolveRestore();
          else reject(new Error(`tandem restore of ${member.name} failed: ${stderr}${stdout}`));
        },
      );
    });
  }

  /** `free`: the addresses to use unless `options.addresses` says otherwise. */
  private newSpec(index: number, plan: MemberPlan, free: MemberAddresses | null): MemberSpec {
    const name = plan.name ?? `n${index + 1}`;
    const addresses = this.options.addresses?.(index) ?? free;
    assert(addresses !== null, 'addresses for every member');
    const logDir = this.options.logDir ?? this.dir;
    return {
      index,
      name,
      ...addresses,
      role: plan.role ?? null,
      standbyMode: plan.standbyMode ?? null,
      zone: plan.zone ?? null,
      dataDir: join(this.dir, name),
      configFile: join(this.dir, `${name}.yaml`),
      logFile: this.options.onOutput === undefined ? join(logDir, `${name}.log`) : null,
    };
  }

  private newMember(spec: MemberSpec): LocalMember {
    const o = this.options;
    const command = o.command ?? 'same';
    const onOutput = o.onOutput;
    const wrap = o.wrap;
    const pki = this.pki;
    const adminTls =
      pki === null
        ? null
        : {
            ca: readFileSync(pki.ca),
            cert: readFileSync(pki.client.cert),
            key: readFileSync(pki.client.key),
          };
    const member = new LocalMember(
      spec,
      {
        label: spec.name,
        argv: [...tandemArgv(command, o.nodeArgs), 'start', '--config', spec.configFile],
        env: { ...(o.env ?? memberEnv(process.env)), TANDEM_LOG_LEVEL: o.logLevel ?? 'info' },
        cwd: o.cwd ?? (fromSource(command) ? REPO_DIR : this.dir),
        ...(spec.logFile === null
          ? { onOutput: (stream, chunk) => onOutput!(spec, stream, chunk) }
          : { logFile: spec.logFile }),
        ...(wrap === undefined ? {} : { wrap: (argv) => wrap(spec, argv) }),
        ...(o.dieWithParent === undefined ? {} : { dieWithParent: o.dieWithParent }),
      },
      adminTls,
    );
    this.members.push(member);
    return member;
  }

  /** Writes the member's YAML config: see the layers in the header; `last` is merged last. */
  private writeConfig(member: LocalMember, last: ConfigFields): void {
    const spec = member.spec;
    const launcher = {
      name: spec.name,
      dataDir: spec.dataDir,
      listen: { client: spec.client, peer: spec.peer, admin: spec.admin },
      peers: this.members
        .filter((p) => p !== member)
        .map((p) => ({
          name: p.name,
          addresses: this.dialed.get(p) ?? [p.spec.peer],
          ...(p.spec.role !== null && {
            role: p.spec.role,
            standbyMode: p.spec.standbyMode ?? 'hot',
          }),
        })),
      cluster: { state: 'new', token: this.token, secret: this.secret },
      ...(this.pki !== null && { tls: memberTlsConfig(this.pki, spec.name) }),
    };
    const plan = {
      ...(spec.zone !== null && { zone: spec.zone }),
      ...(spec.role !== null && {
        role: spec.role,
        redundancy: { standby: { mode: spec.standbyMode ?? 'hot' } },
      }),
    };
    const config = mergeConfig(
      launcher,
      plan,
      this.options.config ?? {},
      this.options.memberConfig?.(spec) ?? {},
      last,
    );
    // It holds the cluster secret: readable by this user only.
    writeFileSync(spec.configFile, stringify(config), { mode: 0o600 });
  }
}

/** Every port of member `name` on TLS with its certificate; clients must show one of the CA. */
function memberTlsConfig(pki: DevPki, name: string): ConfigFields {
  const own = { ...pki.member(name), ca: pki.ca };
  return { client: own, peer: own, admin: own };
}

/** Client, peer and admin addresses on 127.0.0.1 from three ports (null without them). */
function loopback(ports: readonly number[]): MemberAddresses | null {
  if (ports.length < 3) return null;
  const [client, peer, admin] = ports;
  return {
    client: `127.0.0.1:${client}`,
    peer: `127.0.0.1:${peer}`,
    admin: `127.0.0.1:${admin}`,
  };
}
