/**
 * Kernel-level network faults for `tandem chaos --net kernel` (root only): each member runs in
 * its own network namespace with its own address, like a separate host, and faults are the
 * kernel's, not the member's own transport's.
 *
 *   root namespace (the runner: clients, watchers, checker)
 *     └─ veth <host> 10.213.X.254/24 ──┐
 *   namespace <prefix>-br:  bridge br0 ├─ m1 ── eth0 10.213.X.1  namespace <prefix>-n1 (member n1)
 *                                      ├─ m2 ── eth0 10.213.X.2  namespace <prefix>-n2 (member n2)
 *                                      └─ …
 *
 * Everything is named from a prefix unique per run (`tdm-<pid>-<k>`), created only if none of
 * the names exists yet, and removed by those exact names at the end — on failure too, and from
 * this process's `exit` hook as a last resort. The bridge lives in a namespace of its own; the
 * root namespace gets one veth end with an address in a /24 that no route or address of the host
 * overlaps (checked), so its only change is that link's connected route, gone with the link.
 *
 * Faults, in the namespace of the member that RECEIVES (nftables, table `inet tandem_chaos`,
 * input hook): a partition drops every packet from the cut-off sources; a lossy link drops a
 * share of them (`numgen random`). Dropping on arrival is what a broken cable or a congested
 * switch does: the sender's packets leave and vanish, its TCP retransmits and times out. (Why
 * not `ip route add blackhole/prohibit` on the sender: a local sender gets an immediate error
 * (EINVAL / EACCES), a fast failure no real partition gives; an output-hook drop gives EPERM.)
 * One-way: only the packets from A to B are dropped (B's still reach A: established TCP from B
 * to A delivers data while A's acknowledgements are lost, a genuinely asymmetric fault).
 * Slow links: `tc netem delay D J` on the SENDER's eth0, filtered by destination (u32), when
 * the kernel has sch_netem; otherwise `kernel.delay` is false and the caller falls back to the
 * transport's delay rules for slow links (reported, never silent). Heal: the nftables table and
 * the root qdisc are deleted.
 *
 * Every command is bounded in time; a failure names the command and its stderr.
 */
import { execFile, spawnSync } from 'node:child_process';
import { assert } from '../util/assert.js';

/** One `ip` / `nft` / `tc` command: a stuck one is a broken host, not a slow one. */
const NET_COMMAND_TIMEOUT_MS = 10_000;
/** Members on one bridge (addresses .1 … .N of the /24; .254 is the runner). */
export const KERNEL_NET_MEMBERS_MAX = 64;
/** Candidate /24 subnets tried before giving up (each checked against the host's routes). */
const SUBNET_CANDIDATES_MAX = 250;
/** The second octet of every subnet the runs use: 10.213.X.0/24. */
const SUBNET_OCTET = 213;
const RUNNER_HOST_OCTET = 254;
const NFT_TABLE = 'tandem_chaos';
/** A netem delay longer than this is a partition, not a slow link. */
export const KERNEL_DELAY_MS_MAX = 10_000;

assert(KERNEL_NET_MEMBERS_MAX < RUNNER_HOST_OCTET, 'member addresses stay below the runner');

export class KernelNetError extends Error {
  override readonly name = 'KernelNetError';
}

export interface LinkShape {
  readonly delayMs: number;
  readonly jitterMs: number;
  /** Share of packets lost, in [0, 1]. */
  readonly lossRate: number;
}

/** Runs one command, bounded; rejects with a message naming it and its stderr. */
function run(command: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      { timeout: NET_COMMAND_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) {
          const why = String(stderr).trim() || error.message;
          reject(new KernelNetError(`${command} ${args.join(' ')}: ${why}`));
          return;
        }
        resolve(String(stdout));
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Why the kernel way is unavailable here, or null when it works (root, `ip netns`, nft). */
export async function kernelNetUnavailable(): Promise<string | null> {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root (network namespaces need CAP_NET_ADMIN)';
  for (const tool of [
    ['ip', '-V'],
    ['nft', '--version'],
    ['tc', '-V'],
  ] as const) {
    try {
      await run(tool[0], [tool[1]]);
    } catch {
      return `'${tool[0]}' is not installed (Debian: ${tool[0] === 'nft' ? 'nftables' : 'iproute2'})`;
    }
  }
  const probe = `tdm-${process.pid}-probe`;
  try {
    await run('ip', ['netns', 'add', probe]);
  } catch (error) {
    return `ip netns add failed: ${(error as Error).message}`;
  }
  try {
    await run('ip', ['netns', 'exec', probe, 'nft', 'add', 'table', 'inet', NFT_TABLE]);
  } catch (error) {
    return `nftables does not work in a namespace: ${(error as Error).message}`;
  } finally {
    await run('ip', ['netns', 'del', probe]).catch(() => {});
  }
  return null;
}

/** Every kernel network alive in this process: removed on exit whatever happens. */
const LIVE = new Set<KernelNet>();
let exitHookInstalled = false;
let runsStarted = 0;

export interface KernelNetOptions {
  readonly members: number;
  /** Unique per run by default (`tdm-<pid>-<k>`); tests may fix it. */
  readonly prefix?: string;
}

export class KernelNet {
  /** Whether slow links are the kernel's (sch_netem); false: the caller must use its own. */
  delay = false;
  private readonly nsNames: string[];
  private readonly bridgeNs: string;
  private readonly hostLink: string;
  private subnet: number | null = null;
  private created: string[] = [];
  private hostLinkCreated = false;
  private destroyed = false;
  /** Per member: the qdisc and nft table are in place (what heal must remove). */
  private readonly shaped = new Set<number>();
  private readonly filtered = new Set<number>();

  private constructor(
    readonly prefix: string,
    readonly members: number,
  ) {
    this.nsNames = Array.from({ length: members }, (_, i) => `${prefix}-n${i + 1}`);
    this.bridgeNs = `${prefix}-br`;
    // IFNAMSIZ: at most 15 characters, in the root namespace, so unique per run too.
    this.hostLink = `tdm${process.pid.toString(36)}${runsStarted.toString(36)}h`.slice(0, 15);
  }

  /** Creates the namespaces, bridge and links; throws (having removed what it made) on failure. */
  static async create(options: KernelNetOptions): Promise<KernelNet> {
    assert(options.members >= 1 && options.members <= KERNEL_NET_MEMBERS_MAX, 'member count');
    runsStarted++;
    const prefix = options.prefix ?? `tdm-${process.pid}-${runsStarted}`;
    const net = new KernelNet(prefix, options.members);
    installExitHook();
    LIVE.add(net);
    try {
      await net.refuseExisting();
      net.subnet = await freeSubnet(process.pid * 7 + runsStarted);
      await net.build();
      net.delay = await net.probeNetem();
    } catch (error) {
      await net.destroy();
      throw error;
    }
    return net;
  }

  namespace(index: number): string {
    return this.nsNames[index]!;
  }

  /** The member's address (10.213.X.i+1). */
  address(index: number): string {
    assert(this.subnet !== null, 'network built');
    return `10.${SUBNET_OCTET}.${this.subnet}.${index + 1}`;
  }

  /** The runner's own address on the bridge. */
  get runnerAddress(): string {
    return `10.${SUBNET_OCTET}.${this.subnet}.${RUNNER_HOST_OCTET}`;
  }

  /** The argv that runs `argv` inside the member's namespace (`ip netns exec` execs in place). */
  wrap(index: number, argv: readonly string[]): string[] {
    return ['ip', 'netns', 'exec', this.namespace(index), ...argv];
  }

  /**
   * Drops a share (`lossRate`, 1 = all) of the packets from every member of `from` to every
   * member of `to`, at their arrival. Adds to what is in force.
   */
  async drop(from: readonly number[], to: readonly number[], lossRate: number): Promise<void> {
    assert(lossRate > 0 && lossRate <= 1, 'loss rate in (0, 1]');
    const percent = Math.max(1, Math.min(100, Math.round(lossRate * 100)));
    const byReceiver = new Map<number, number[]>();
    for (const t of to) {
      const sources = from.filter((f) => f !== t);
      if (sources.length > 0) byReceiver.set(t, sources);
    }
    await Promise.all(
      [...byReceiver].map(async ([receiver, sources]) => {
        const set = sources.map((s) => this.address(s)).join(', ');
        const verdict = percent >= 100 ? 'drop' : `numgen random mod 100 < ${percent} drop`;
        const script =
          `add table inet ${NFT_TABLE}\n` +
          `add chain inet ${NFT_TABLE} input { type filter hook input priority 0 ; policy accept ; }\n` +
          `add rule inet ${NFT_TABLE} input ip saddr { ${set} } ${verdict}\n`;
        this.filtered.add(receiver);
        await run('ip', ['netns', 'exec', this.namespace(receiver), 'nft', '-f', '-'], script);
      }),
    );
  }

  /** Delays (netem) the packets every member of `from` sends to every member of `to`. */
  async shape(from: readonly number[], to: readonly number[], shape: LinkShape): Promise<void> {
    assert(this.delay, 'netem is available');
    assert(shape.delayMs >= 0 && shape.delayMs <= KERNEL_DELAY_MS_MAX, 'delay');
    await Promise.all(
      from.map(async (sender) => {
        const targets = to.filter((t) => t !== sender);
        if (targets.length === 0) return;
        const ns = this.namespace(sender);
        this.shaped.add(sender);
        // Two HTB classes: 1:1 unshaped (the default), 1:2 with netem for the listed peers.
        await run('tc', [
          '-n',
          ns,
          'qdisc',
          'add',
          'dev',
          'eth0',
          'root',
          'handle',
          '1:',
          'htb',
          'default',
          '1',
        ]);
        await run('tc', [
          '-n',
          ns,
          'class',
          'add',
          'dev',
          'eth0',
          'parent',
          '1:',
          'classid',
          '1:1',
          'htb',
          'rate',
          '10gbit',
        ]);
        await run('tc', [
          '-n',
          ns,
          'class',
          'add',
          'dev',
          'eth0',
          'parent',
          '1:',
          'classid',
          '1:2',
          'htb',
          'rate',
          '10gbit',
        ]);
        const netem = ['netem', 'delay', `${shape.delayMs}ms`, `${shape.jitterMs}ms`];
        if (shape.lossRate > 0) netem.push('loss', `${Math.round(shape.lossRate * 100)}%`);
        await run('tc', [
          '-n',
          ns,
          'qdisc',
          'add',
          'dev',
          'eth0',
          'parent',
          '1:2',
          'handle',
          '20:',
          ...netem,
        ]);
        for (const t of targets) {
          await run('tc', [
            '-n',
            ns,
            'filter',
            'add',
            'dev',
            'eth0',
            'parent',
            '1:',
            'protocol',
            'ip',
            'prio',
            '1',
            'u32',
            'match',
            'ip',
            'dst',
            `${this.address(t)}/32`,
            'flowid',
            '1:2',
          ]);
        }
      }),
    );
  }

  /** Removes every fault (the nftables tables and root qdiscs this run added). */
  async heal(): Promise<void> {
    const filtered = [...this.filtered];
    const shaped = [...this.shaped];
    this.filtered.clear();
    this.shaped.clear();
    await Promise.all([
      ...filtered.map((i) =>
        run('ip', [
          'netns',
          'exec',
          this.namespace(i),
          'nft',
          'delete',
          'table',
          'inet',
          NFT_TABLE,
        ]),
      ),
      ...shaped.map((i) =>
        run('tc', ['-n', this.namespace(i), 'qdisc', 'del', 'dev', 'eth0', 'root']),
      ),
    ]);
  }

  /** What is in force (for tests and the report): nft rules and qdiscs per member. */
  async describe(index: number): Promise<{ nft: string; tc: string }> {
    const ns = this.namespace(index);
    const nft = await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset']);
    const tc = await run('tc', ['-n', ns, 'qdisc', 'show', 'dev', 'eth0']);
    return { nft, tc };
  }

  /** Removes everything this run created, by exact name; idempotent, never throws. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    LIVE.delete(this);
    // Deleting a namespace destroys the veths in it, and with them their peers.
    for (const ns of this.created.reverse()) await run('ip', ['netns', 'del', ns]).catch(() => {});
    if (this.hostLinkCreated) await run('ip', ['link', 'del', this.hostLink]).catch(() => {});
    this.created = [];
  }

  /** The synchronous last resort of the exit hook. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ns of this.created.reverse()) {
      spawnSync('ip', ['netns', 'del', ns], { timeout: NET_COMMAND_TIMEOUT_MS });
    }
    if (this.hostLinkCreated) {
      spawnSync('ip', ['link', 'del', this.hostLink], { timeout: NET_COMMAND_TIMEOUT_MS });
    }
  }

  private async refuseExisting(): Promise<void> {
    const list = await run('ip', ['netns', 'list']);
    const existing = new Set(list.split('\n').map((l) => l.split(' ')[0]!));
    const clash = [this.bridgeNs, ...this.nsNames].filter((n) => existing.has(n));
    if (clash.length > 0) {
      throw new KernelNetError(
        `network namespaces ${clash.join(', ')} already exist: another run (or a crashed one) owns them; refusing to start (remove them with 'ip netns del <name>' once sure)`,
      );
    }
    const link = spawnSync('ip', ['link', 'show', this.hostLink], {
      timeout: NET_COMMAND_TIMEOUT_MS,
    });
    if (link.status === 0) {
      throw new KernelNetError(`network link ${this.hostLink} already exists: refusing to start`);
    }
  }

  private async addNamespace(name: string): Promise<void> {
    await run('ip', ['netns', 'add', name]);
    this.created.push(name);
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  }

  private async build(): Promise<void> {
    const br = this.bridgeNs;
    await this.addNamespace(br);
    await run('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge']);
    await run('ip', ['-n', br, 'link', 'set', 'br0', 'up']);
    for (let i = 0; i < this.members; i++) {
      const ns = this.namespace(i);
      await this.addNamespace(ns);
      await run('ip', [
        '-n',
        ns,
        'link',
        'add',
        'eth0',
        'type',
        'veth',
        'peer',
        'name',
        `m${i + 1}`,
        'netns',
        br,
      ]);
      await run('ip', ['-n', ns, 'addr', 'add', `${this.address(i)}/24`, 'dev', 'eth0']);
      await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', br, 'link', 'set', `m${i + 1}`, 'master', 'br0', 'up']);
    }
    await run('ip', [
      'link',
      'add',
      this.hostLink,
      'type',
      'veth',
      'peer',
      'name',
      'host',
      'netns',
      br,
    ]);
    this.hostLinkCreated = true;
    await run('ip', ['addr', 'add', `${this.runnerAddress}/24`, 'dev', this.hostLink]);
    await run('ip', ['link', 'set', this.hostLink, 'up']);
    await run('ip', ['-n', br, 'link', 'set', 'host', 'master', 'br0', 'up']);
  }

  /** Whether this kernel has sch_netem: adding one on a namespace's loopback tells. */
  private async probeNetem(): Promise<boolean> {
    try {
      await run('tc', [
        '-n',
        this.bridgeNs,
        'qdisc',
        'add',
        'dev',
        'lo',
        'root',
        'netem',
        'delay',
        '1ms',
      ]);
      await run('tc', ['-n', this.bridgeNs, 'qdisc', 'del', 'dev', 'lo', 'root']);
      return true;
    } catch {
      return false;
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const net of LIVE) net.destroySync();
  });
}

/** A 10.213.X.0/24 that no route or address of the root namespace overlaps. */
async function freeSubnet(seed: number): Promise<number> {
  const routes = JSON.parse(await run('ip', ['-4', '-j', 'route', 'show', 'table', 'all'])) as {
    dst?: string;
  }[];
  const addresses = JSON.parse(await run('ip', ['-4', '-j', 'addr', 'show'])) as {
    addr_info?: { local?: string; prefixlen?: number }[];
  }[];
  const taken: [number, number][] = [];
  for (const r of routes) {
    if (r.dst === undefined || r.dst === 'default') continue;
    const range = cidrRange(r.dst.includes('/') ? r.dst : `${r.dst}/32`);
    if (range !== null) taken.push(range);
  }
  for (const link of addresses) {
    for (const a of link.addr_info ?? []) {
      if (a.local === undefined) continue;
      const range = cidrRange(`${a.local}/${a.prefixlen ?? 32}`);
      if (range !== null) taken.push(range);
    }
  }
  for (let k = 0; k < SUBNET_CANDIDATES_MAX; k++) {
    const x = ((seed + k) % 250) + 1;
    const mine = cidrRange(`10.${SUBNET_OCTET}.${x}.0/24`)!;
    if (!taken.some(([lo, hi]) => lo <= mine[1] && mine[0] <= hi)) return x;
  }
  throw new KernelNetError(`no free 10.${SUBNET_OCTET}.X.0/24 subnet: the host routes them all`);
}

/** [first, last] address of an IPv4 CIDR as unsigned integers; null if it does not parse. */
export function cidrRange(cidr: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (m === null) return null;
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) return null;
  const base = octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - bits);
  const first = Math.floor(base / size) * size;
  return [first, first + size - 1];
}
