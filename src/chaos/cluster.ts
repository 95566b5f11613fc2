/**
 * A local cluster of real tandem members for `tandem chaos`, on the launcher
 * (src/cli/local-cluster.ts): one process per member, each with its own YAML config and data
 * directory in a temp directory, its log in the report's folder, started with test-mode fault
 * injection on. Members are named by index here (the nemesis picks indexes); in kernel mode each
 * runs in its own network namespace (netns.ts), through the launcher's spawn wrapper.
 *
 * Process safety and bounded waits: the launcher's (PIDs only, killed on exit). `destroy()`
 * resumes paused members, stops every member, removes the data and the kernel network.
 */
import {
  type ConfigFields,
  LEADER_TIMEOUT_MS,
  LocalCluster,
  type LocalMember,
  MEMBER_START_TIMEOUT_MS,
  type MemberStatus,
  mergeConfig,
} from '../cli/local-cluster.js';
import { adminRequest } from '../cli/local-net.js';
import type { ProcessState } from '../cli/local-process.js';
import type { StandbyMode } from '../cluster/commands.js';
import { assert } from '../util/assert.js';
import { KernelNet } from './netns.js';

const MEMBER_STOP_TIMEOUT_MS = 10_000;

export interface LinkRule {
  /** A member name. */
  readonly peer: string;
  readonly dropRate?: number;
  readonly delayMs?: number;
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
/** redundancy.standby.snapshotEvery of warm standbys in a chaos run: several per run. */
const WARM_SNAPSHOT_EVERY = '10s';

/** A member's fixed ports in kernel mode (each member has an address of its own). */
const KERNEL_CLIENT_PORT = 2379;
const KERNEL_PEER_PORT = 2380;
const KERNEL_ADMIN_PORT = 2381;

export interface ChaosClusterOptions {
  readonly voters: number;
  /** Standbys besides the voters (default 0), with the redundancy policy's replaceAfter. */
  readonly standbys?: number;
  /**
   * Every member's standby mode (default hot): the founding standbys', and the mode a replaced
   * voter is demoted to. Warm standbys are refreshed every WARM_SNAPSHOT_EVERY.
   */
  readonly standbyMode?: StandbyMode;
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

export class ChaosCluster {
  readonly members: readonly ChaosMember[];
  /** Members given up for the rest of the run (a WAL they refuse to start from): never spawned. */
  private readonly lost = new Set<number>();
  private destroyed = false;

  private constructor(
    private readonly local: LocalCluster,
    /** The kernel network, or null in transport mode. */
    readonly net: KernelNet | null,
    walMirror: boolean,
  ) {
    this.members = local.members.map((m) => {
      assert(m.spec.logFile !== null, 'chaos members log to files');
      return {
        index: m.index,
        name: m.name,
        client: m.spec.client,
        peer: m.spec.peer,
        admin: m.spec.admin,
        dataDir: m.spec.dataDir,
        mirrorDir: walMirror ? mirrorDir(m.spec.dataDir) : null,
        configFile: m.spec.configFile,
        logFile: m.spec.logFile,
        foundingRole: m.spec.role === 'standby' ? 'standby' : 'voter',
      };
    });
  }

  /** Writes the configs (ports picked now) and starts every member; waits for a leader. */
  static async start(options: ChaosClusterOptions): Promise<ChaosCluster> {
    assert(options.voters >= 1 && options.voters % 2 === 1, 'an odd number of voters');
    const count = options.voters + (options.standbys ?? 0);
    const mode = options.standbyMode ?? 'hot';
    const walMirror = options.walMirror === true;
    const net = options.net === 'kernel' ? await KernelNet.create({ members: count }) : null;
    try {
      const local = await LocalCluster.start({
        label: 'chaos',
        members: Array.from({ length: count }, (_, i) => ({
          role: i < options.voters ? 'voter' : 'standby',
          standbyMode: mode,
        })),
        // Kernel mode: admin endpoints on the namespaces' bridge, which only this host reaches.
        config: mergeConfig(
          chaosConfig(options),
          net === null ? {} : { testMode: { faultsOffLoopback: true } },
        ),
        ...(walMirror && {
          memberConfig: (spec) => ({ wal: { mirror: mirrorDir(spec.dataDir) } }),
        }),
        logDir: options.logDir,
        logLevel: options.logLevel ?? 'info',
        ...(net !== null && {
          addresses: (i) => ({
            client: `${net.address(i)}:${KERNEL_CLIENT_PORT}`,
            peer: `${net.address(i)}:${KERNEL_PEER_PORT}`,
            admin: `${net.address(i)}:${KERNEL_ADMIN_PORT}`,
          }),
          // `ip netns exec` execs the member in place: the PID is the member's own.
          wrap: (spec, argv) => net.wrap(spec.index, argv),
        }),
        ready: 'leader',
        readyTimeoutMs: MEMBER_START_TIMEOUT_MS + LEADER_TIMEOUT_MS,
      });
      return new ChaosCluster(local, net, walMirror);
    } catch (error) {
      await net?.destroy();
      throw error;
    }
  }

  /** The temp directory of the members' configs and data (removed by destroy). */
  get dataRoot(): string {
    return this.local.dir;
  }

  private member(index: number): LocalMember {
    return this.local.members[index]!;
  }

  /** Whether the member was given up for the rest of the run. */
  isLost(index: number): boolean {
    return this.lost.has(index);
  }

  /** Gives the (down) member up: it is never started again in this run. */
  markLost(index: number): void {
    assert(this.state(index) === 'down', 'only a member that is down is given up');
    this.lost.add(index);
  }

  /** Waits (bounded) for the member's process to exit; its exit code, or null if it did not. */
  async waitExit(index: number, timeoutMs: number): Promise<number | null> {
    return (await this.member(index).waitExit(timeoutMs))?.code ?? null;
  }

  state(index: number): ProcessState {
    return this.member(index).state;
  }

  pid(index: number): number | null {
    return this.member(index).pid;
  }

  /** Starts the member's process (it must be down). */
  spawn(index: number): void {
    assert(!this.destroyed, 'cluster destroyed');
    assert(this.state(index) === 'down', `${this.members[index]!.name} is not down`);
    assert(!this.lost.has(index), `${this.members[index]!.name} was given up`);
    this.member(index).spawn();
  }

  /** kill -9; resolves once the process has exited. */
  async kill(index: number): Promise<void> {
    await this.member(index).kill();
  }

  /** SIGTERM, SIGKILL after a bound; resolves once the process has exited. */
  async stop(index: number): Promise<void> {
    await this.member(index).stop(MEMBER_STOP_TIMEOUT_MS);
  }

  pause(index: number): void {
    this.member(index).pause();
  }

  resume(index: number): void {
    this.member(index).resume();
  }

  /** The member's /status (registry included), or null when it is not running or not answering. */
  status(index: number): Promise<MemberStatus | null> {
    return this.member(index).tryStatus();
  }

  /** Sets link rules on one member (its outbound messages); false if it did not answer. */
  async setLinks(index: number, links: readonly LinkRule[]): Promise<boolean> {
    if (this.state(index) !== 'running') return false;
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
    if (this.state(index) !== 'running') return false;
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
    if (this.state(index) !== 'running') return false;
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
  fullStatus(index: number): Promise<MemberStatus | null> {
    return this.status(index);
  }

  /** The size of the member's log file now (a later `logMentions` can start from it). */
  logBytes(index: number): number {
    return this.member(index).logBytes();
  }

  /** Whether the member's log, from byte `fromBytes` on, contains `text`. */
  logMentions(index: number, text: string, fromBytes = 0): boolean {
    return this.member(index).logMentions(text, fromBytes);
  }

  /** Heals every link of one member; false if it did not answer. */
  async clearLinks(index: number): Promise<boolean> {
    if (this.state(index) !== 'running') return false;
    try {
      await adminRequest(this.members[index]!.admin, 'DELETE', '/faults');
      return true;
    } catch {
      return false;
    }
  }

  /** Waits (bounded) until the running member answers its admin endpoint. */
  waitUp(index: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.member(index).waitUp(timeoutMs, signal);
  }

  /**
   * Waits until one running member leads and every running member agrees; returns its index.
   * Members may exit meanwhile (faults): they drop out. Throws after `timeoutMs`.
   */
  async waitForLeader(timeoutMs = LEADER_TIMEOUT_MS, signal?: AbortSignal): Promise<number> {
    const leader = await this.local.waitForLeader(timeoutMs, {
      exitsAllowed: true,
      ...(signal !== undefined && { signal }),
    });
    return leader.index;
  }

  /**
   * Resumes paused members, stops every member (SIGTERM, then SIGKILL), removes the data and the
   * kernel network.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await this.local.destroy({ timeoutMs: MEMBER_STOP_TIMEOUT_MS });
    } finally {
      await this.net?.destroy();
    }
  }
}

function mirrorDir(dataDir: string): string {
  return `${dataDir}-mirror`;
}

/** Every member's config besides the launcher's (see DESIGN.md "Policies"). */
function chaosConfig(options: ChaosClusterOptions): ConfigFields {
  return {
    replication: { voters: options.voters, readDefault: 'linearizable' },
    redundancy: {
      ...(options.replaceAfterMs !== undefined && { replaceAfter: `${options.replaceAfterMs}ms` }),
      ...(options.standbyMode === 'warm' && { standby: { snapshotEvery: WARM_SNAPSHOT_EVERY } }),
    },
    raft: {
      heartbeatMs: options.heartbeatMs ?? 100,
      electionMs: options.electionMs ?? 1000,
      snapshotEntries: options.snapshotEntries ?? 1000,
    },
    testMode: { faultInjection: true },
  };
}
