/**
 * The `tandem` command line: start a member, run a local development cluster, show status, run
 * the simulator, run a chaos test against a real local cluster.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import type { ChaosOptions } from '../chaos/run.js';
import { CONFIG_OVERRIDES } from './config-overrides.js';
import type { MemberAddresses } from './local-cluster.js';
import type { AdminClientTls } from './local-net.js';
import { StartupTimeline } from './startup-timeline.js';

// Each command imports what it runs when it runs: the member (grpc, lmdb), the config schema
// (zod, yaml) and the launcher cost a few hundred milliseconds that `--help` should not pay.

/** etcd's Procfile ports and two more, so `etcdctl` with no flags reaches the first member. */
const DEV_BASE_PORTS = [2379, 22379, 32379, 42379, 52379, 62379] as const;
/** `tandem dev`'s controls (dev-controls.ts), below the first member's client port. */
const DEV_CONTROLS_PORT = 2378;
/** redundancy.standby.snapshotEvery in `tandem dev`: the warm standby n6 refreshes this often. */
const DEV_WARM_SNAPSHOT_EVERY = '30s';
/** A membership override waits for its entry to be applied (a request timeout or so). */
const MEMBER_OP_TIMEOUT_MS = 15_000;

const here = dirname(fileURLToPath(import.meta.url));
/** The admin endpoints of `tandem dev`'s members. */
const DEV_ADMINS = DEV_BASE_PORTS.map((p) => `127.0.0.1:${p + 2}`).join(',');

export async function run(argv: readonly string[]): Promise<number> {
  let exitCode = 0;
  const program = new Command('tandem')
    .description('tandem: a replicated, self-healing key-value database speaking the etcd v3 API')
    .showHelpAfterError();

  const start = program
    .command('start')
    .description('run one member (config file, TANDEM_* environment variables, then flags)')
    .option('-c, --config <file>', 'the member YAML config')
    .option(
      '--fault-injection',
      'TEST ONLY: enable the transport fault rules and admin POST/DELETE /faults (testMode.faultInjection)',
    );
  for (const o of CONFIG_OVERRIDES) start.addOption(new Option(`--${o.flag} <value>`).hideHelp());
  start.action(async (opts: Record<string, unknown>) => {
    exitCode = await startCommand(opts);
  });

  program
    .command('dev')
    .description(
      'run a local cluster in this terminal: 3 voters, 1 replica, a hot and a warm standby in two zones (data under ./data/dev)',
    )
    .option('--dir <dir>', 'data directory', 'data/dev')
    .option('--members <n>', 'voters only: 1, 3 or 5 (default: the 6-member layout)')
    .option(
      '--tls',
      'TLS on every client, peer and admin port, with a throwaway CA and certificates made by openssl in <dir>/tls',
    )
    .option(
      '--base-port <port>',
      'member i listens on base+10i (client), +1 (peer), +2 (admin); the dev controls on base-1 (default: etcd-like ports from 2379)',
    )
    .option('--replace-after <duration>', 'redundancy.replaceAfter of the members', '10s')
    // Tests: members run from source, on free ports (the fixed ones may be taken).
    .addOption(new Option('--source').hideHelp())
    .addOption(new Option('--free-ports').hideHelp())
    .action(async (opts: DevOptions) => {
      exitCode = await devCommand(opts);
    });

  const memberCmd = program
    .command('member')
    .description('operator overrides of the redundancy policy (sent to the leader)');
  for (const op of ['promote', 'demote', 'standby'] as const) {
    memberCmd
      .command(`${op} <name>`)
      .description(
        op === 'promote'
          ? 'make a replica or standby a voter (a warm/cold standby is first made a hot standby)'
          : op === 'demote'
            ? 'make a voter a replica (a learner serving reads)'
            : 'make a voter or replica a standby of its configured mode',
      )
      .option('--admin <addresses>', 'admin endpoints (the leader is found among them)', DEV_ADMINS)
      .option('--cacert <file>', 'HTTPS admin endpoints: the CA that signed their certificates')
      .option('--cert <file>', 'HTTPS admin endpoints: a client certificate (with --key)')
      .option('--key <file>', 'the client certificate key')
      .option(
        '--token <token>',
        "with etcd auth enabled: the root user's token (POST /v3/auth/authenticate on a client port gives one; default $TANDEM_TOKEN)",
      )
      .action(async (name: string, opts: StatusOptions & { token?: string }) => {
        exitCode = await memberOpCommand(
          op,
          name,
          opts.admin.split(',').map((a) => a.trim()),
          adminTls(opts),
          (opts.token ?? process.env.TANDEM_TOKEN) || undefined,
        );
      });
  }

  program
    .command('restore')
    .description(
      "fill a new member's empty data directory from a snapshot (a tandem backup, or `etcdctl snapshot save` output from tandem or etcd); restore every founder from the same file, then start them",
    )
    .requiredOption('--from <file>', 'the snapshot file')
    .option('-c, --config <file>', 'the member YAML config (its dataDir is filled)')
    .option(
      '--skip-hash-check',
      'accept a file without the SHA-256 trailer (an etcd member/snap/db copied from a data directory)',
    )
    .action(async (opts: { from: string; config?: string; skipHashCheck?: boolean }) => {
      exitCode = await restoreCommand(opts);
    });

  program
    .command('backup')
    .description("backups in etcd's snapshot format (scheduled ones: `backup:` in the config)")
    .command('now')
    .description('save a consistent snapshot from a member now, checked after writing')
    .option('--endpoint <host:port>', "a member's client endpoint", '127.0.0.1:2379')
    .option('--out <file>', 'the file to write (default: tandem-backup-<time>-r<revision>.db here)')
    .option('--timeout <duration>', 'give up after this long', '10m')
    .action(async (opts: { endpoint: string; out?: string; timeout: string }) => {
      exitCode = await backupNowCommand(opts);
    });

  program
    .command('status')
    .description('members, roles, leader, term, indexes and lag of a running cluster')
    .option('--admin <addresses>', 'admin endpoints (https://host:port for tls.admin)', DEV_ADMINS)
    .option('--json', 'print JSON')
    .option('--cacert <file>', 'HTTPS admin endpoints: the CA that signed their certificates')
    .option('--cert <file>', 'HTTPS admin endpoints: a client certificate (with --key)')
    .option('--key <file>', 'the client certificate key')
    .action(async (opts: StatusOptions) => {
      const { formatStatusTable, queryStatus } = await import('./status.js');
      const tls = adminTls(opts);
      const endpoints = opts.admin.split(',').map((s) => s.trim());
      const rows = await (tls === undefined ? queryStatus(endpoints) : queryStatus(endpoints, tls));
      process.stdout.write(
        opts.json === true ? `${JSON.stringify(rows, null, 2)}\n` : formatStatusTable(rows),
      );
      exitCode = rows.some((r) => r.error === null) ? 0 : 1;
    });

  program
    .command('gateway')
    .description(
      'run a routing gateway: the etcd v3 API for any client, writes to the leader, serializable reads to the best member, shared watches (HTTP /metrics, /status on the same port)',
    )
    .requiredOption(
      '--endpoints <addresses>',
      "members' client endpoints (host:port,…): where the topology is first asked",
    )
    .option('--listen <address>', 'host:port to listen on', '127.0.0.1:23790')
    .option('--zone <zone>', "the gateway's zone: serializable reads prefer its members")
    .option('--cacert <file>', 'https:// members: the CA that signed their certificates')
    .option('--cert <file>', 'https:// members: a client certificate to present (with --key)')
    .option('--key <file>', 'the key of --cert')
    .option('--server-name <name>', "the name members' certificates carry (default: the host)")
    .option(
      '--listen-cert <file>',
      'serve TLS to clients with this certificate (with --listen-key)',
    )
    .option('--listen-key <file>', 'the key of --listen-cert')
    .option(
      '--listen-ca <file>',
      "clients must present a certificate this CA signed (etcd's --client-cert-auth)",
    )
    .action(async (opts: GatewayCommandOptions) => {
      exitCode = await gatewayCommand(opts);
    });

  program
    .command('chaos')
    .description(
      'run a real local cluster under faults with recording clients, then check the history (exit 0 pass, 1 violation, 2 unknown/aborted)',
    )
    .option('--voters <n>', 'members of the cluster (odd)', '3')
    .option(
      '--standbys <n>',
      'standbys besides the voters (the redundancy policy promotes them)',
      '0',
    )
    .option('--standby-mode <mode>', 'hot, warm or cold: the standbys and demoted voters', 'hot')
    .option(
      '--replace-after <duration>',
      'redundancy.replaceAfter of the members (default 2s with standbys)',
    )
    .option(
      '--net <mode>',
      'kernel (namespaces, nftables, netem; root), transport (test-mode rules) or auto',
      'auto',
    )
    .option(
      '--wal-mirror <on|off>',
      'a WAL mirror per member (off: a bit flip is fetched from peers when provably safe, else its member refuses to start)',
      'on',
    )
    .option('--time <duration>', 'how long clients and faults run', '60s')
    .option('--clients <n>', 'concurrent clients', '10')
    .option('--keys <n>', 'registers (keys) the clients share', '5')
    .option(
      '--faults <kinds>',
      'kill,pause,partition,slow,lossy,restart,disk,torn,bitflip,membership (or none)',
      'kill,pause,partition,slow,lossy,restart,disk,torn,bitflip,membership',
    )
    .option('--seed <n>', "the seed: the fault plan and the clients' choices (default: random)")
    .option('--out <dir>', 'the report folder (default: chaos-reports/seed-<seed>-<time>)')
    .option('--op-timeout <duration>', 'deadline of one client operation', '2s')
    .option('--quiet', 'no progress output, only the verdict line')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      exitCode = await chaosCommand(opts);
    });

  program
    .command('sim')
    .description('run the deterministic simulator (see `tandem sim -- --help`)')
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action(async (args: string[]) => {
      exitCode = await passThrough(join(here, '..', 'sim', 'cli.js'), args);
    });

  await program.parseAsync(argv as string[]);
  return exitCode;
}

interface StatusOptions {
  readonly admin: string;
  readonly json?: boolean;
  readonly cacert?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** The admin endpoints' TLS from `--cacert/--cert/--key`; undefined when none is given. */
function adminTls(opts: StatusOptions): AdminClientTls | undefined {
  if (opts.cacert === undefined && opts.cert === undefined) return undefined;
  if ((opts.cert === undefined) !== (opts.key === undefined)) {
    throw new Error('--cert and --key go together');
  }
  return {
    ...(opts.cacert !== undefined && { ca: readFileSync(opts.cacert) }),
    ...(opts.cert !== undefined && { cert: readFileSync(opts.cert) }),
    ...(opts.key !== undefined && { key: readFileSync(opts.key) }),
  };
}

async function chaosCommand(opts: Record<string, string | boolean | undefined>): Promise<number> {
  // Loaded here: `tandem start` never needs the chaos runner.
  const { parseFaultKinds } = await import('../chaos/plan.js');
  const { progressView } = await import('../chaos/progress.js');
  const { runChaos, validateChaosOptions } = await import('../chaos/run.js');
  const { parseDurationMs } = await import('./config.js');
  let options: ChaosOptions;
  try {
    const seed =
      opts.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(opts.seed as string);
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
    const mirror = String(opts.walMirror);
    if (mirror !== 'on' && mirror !== 'off') {
      throw new Error(`--wal-mirror: expected on or off, got ${mirror}`);
    }
    options = {
      voters: Number(opts.voters),
      standbys: Number(opts.standbys),
      standbyMode: String(opts.standbyMode) as ChaosOptions['standbyMode'] & string,
      ...(opts.replaceAfter !== undefined && {
        replaceAfterMs: parseDurationMs(String(opts.replaceAfter)),
      }),
      net: String(opts.net) as ChaosOptions['net'] & string,
      walMirror: mirror === 'on',
      timeMs: parseDurationMs(String(opts.time)),
      clients: Number(opts.clients),
      keys: Number(opts.keys),
      faults: parseFaultKinds(String(opts.faults)),
      seed,
      outDir: (opts.out as string | undefined) ?? join('chaos-reports', `seed-${seed}-${stamp}`),
      opTimeoutMs: parseDurationMs(String(opts.opTimeout)),
    };
  } catch (error) {
    process.stderr.write(`tandem chaos: ${(error as Error).message}\n`);
    return 2;
  }
  const problems = validateChaosOptions(options);
  if (problems.length > 0) {
    process.stderr.write(problems.map((p) => `tandem chaos: ${p}\n`).join(''));
    return 2;
  }
  const view = progressView(
    opts.quiet === true
      ? 'none'
      : process.stdout.isTTY === true && process.stderr.isTTY === true
        ? 'bar'
        : 'lines',
  );
  const controller = new AbortController();
  const interrupt = (): void => {
    view.note('tandem chaos: interrupted; healing and stopping the cluster');
    controller.abort();
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    const outcome = await runChaos({
      ...options,
      signal: controller.signal,
      onProgress: (p) => view.update(p),
      onNote: (text) => view.note(text),
    });
    view.stop();
    process.stdout.write(`${outcome.line}\n`);
    process.stderr.write(`seed=${options.seed} report: ${outcome.outDir}\n`);
    return outcome.exitCode;
  } finally {
    view.stop();
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
}

async function startCommand(opts: Record<string, unknown>): Promise<number> {
  if (opts.faultInjection === true) opts = { ...opts, testModeFaultInjection: true };
  const { ConfigError, loadConfig } = await import('./config.js');
  const { startNode } = await import('./node.js');
  const startup = new StartupTimeline();
  startup.mark('modules');
  let config: ReturnType<typeof loadConfig>;
  try {
    const file = (opts.config as string | undefined) ?? process.env.TANDEM_CONFIG;
    config = loadConfig({ ...(file === undefined ? {} : { file }), flags: opts, env: process.env });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    throw error;
  }
  startup.mark('config');
  let node: Awaited<ReturnType<typeof startNode>>;
  try {
    node = await startNode(config, startup);
  } catch (error) {
    process.stderr.write(`tandem: cannot start ${config.name}: ${(error as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      node.stop().then(resolveStop, resolveStop);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  return process.exitCode === 1 ? 1 : 0;
}

async function restoreCommand(opts: {
  from: string;
  config?: string;
  skipHashCheck?: boolean;
}): Promise<number> {
  const { ConfigError, loadConfig } = await import('./config.js');
  const { restoreDataDir } = await import('./restore.js');
  try {
    const file = opts.config ?? process.env.TANDEM_CONFIG;
    const config = loadConfig({
      ...(file === undefined ? {} : { file }),
      flags: {},
      env: process.env,
    });
    const result = await restoreDataDir(config, {
      from: opts.from,
      skipHashCheck: opts.skipHashCheck === true,
      progress: process.stderr.isTTY === true,
    });
    process.stdout.write(
      `restored ${config.name} into ${config.dataDir}: revision ${result.revision}, ` +
        `${result.keyEntries} revisions of keys, ${result.leases} leases` +
        `${result.compactRevision > 0 ? `, compacted at ${result.compactRevision}` : ''}` +
        `${result.users + result.roles > 0 ? `, ${result.users} users and ${result.roles} roles (auth ${result.authEnabled ? 'enabled' : 'disabled'})` : ''}\n` +
        'start every founder restored from this file with cluster.state: new\n',
    );
    if (result.passwordsToReset.length > 0) {
      process.stderr.write(
        `warning: the password hashes of ${result.passwordsToReset.join(', ')} are neither ` +
          "tandem's (scrypt) nor etcd's bcrypt up to cost 12, so they cannot log in with a password: set each again (etcdctl user passwd); while auth is on, root's needs a client certificate naming root, or restore from a snapshot taken with auth disabled\n",
      );
    }
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    process.stderr.write(`tandem restore: ${(error as Error).message}\n`);
    return 1;
  }
}

async function backupNowCommand(opts: {
  endpoint: string;
  out?: string;
  timeout: string;
}): Promise<number> {
  const { parseDurationMs } = await import('./config.js');
  const { backupName, saveSnapshotFromEndpoint } = await import('./backup.js');
  const out = opts.out ?? backupName(Date.now(), 0).replace(/-r0\.db$/, '.db');
  try {
    const saved = await saveSnapshotFromEndpoint(opts.endpoint, out, {
      progress: process.stderr.isTTY === true,
      timeoutMs: parseDurationMs(opts.timeout),
    });
    process.stdout.write(
      `saved ${out}: ${saved.bytes} bytes, revision ${saved.revision}, ${saved.totalKeys} keys (checked)\n`,
    );
    return 0;
  } catch (error) {
    process.stderr.write(`tandem backup now: ${(error as Error).message}\n`);
    return 1;
  }
}

interface GatewayCommandOptions {
  readonly endpoints: string;
  readonly listen: string;
  readonly zone?: string;
  readonly cacert?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly serverName?: string;
  readonly listenCert?: string;
  readonly listenKey?: string;
  readonly listenCa?: string;
}

/**
 * The gateway's TLS from its flags: to members (--cacert, --cert/--key, --server-name) and to
 * its clients (--listen-cert/--listen-key, --listen-ca). Clients' etcd tokens (metadata `token`)
 * pass through to the members unchanged.
 */
function gatewayTls(opts: GatewayCommandOptions) {
  if ((opts.cert === undefined) !== (opts.key === undefined)) {
    throw new Error('--cert and --key go together');
  }
  if ((opts.listenCert === undefined) !== (opts.listenKey === undefined)) {
    throw new Error('--listen-cert and --listen-key go together');
  }
  if (opts.listenCa !== undefined && opts.listenCert === undefined) {
    throw new Error('--listen-ca needs --listen-cert and --listen-key');
  }
  const upstream = {
    ...(opts.cacert !== undefined && { ca: readFileSync(opts.cacert) }),
    ...(opts.cert !== undefined && { cert: readFileSync(opts.cert) }),
    ...(opts.key !== undefined && { key: readFileSync(opts.key) }),
    ...(opts.serverName !== undefined && { servername: opts.serverName }),
  };
  return {
    ...(Object.keys(upstream).length > 0 && { upstreamTls: upstream }),
    ...(opts.listenCert !== undefined &&
      opts.listenKey !== undefined && {
        tls: {
          cert: readFileSync(opts.listenCert),
          key: readFileSync(opts.listenKey),
          ...(opts.listenCa !== undefined && { ca: readFileSync(opts.listenCa) }),
        },
      }),
  };
}

async function gatewayCommand(opts: GatewayCommandOptions): Promise<number> {
  const { pino } = await import('pino');
  const { startGateway } = await import('../proxy/gateway.js');
  const logger = pino({ name: 'tandem-gateway', level: process.env.TANDEM_LOG_LEVEL ?? 'info' });
  const endpoints = opts.endpoints
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway({
      endpoints,
      listen: opts.listen,
      zone: opts.zone ?? null,
      logger,
      ...gatewayTls(opts),
    });
  } catch (error) {
    process.stderr.write(`tandem gateway: cannot start: ${(error as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      gateway.close().then(resolveStop, resolveStop);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  return 0;
}

/** A member of `tandem dev`: its plan and its fixed addresses. */
interface DevMember extends MemberAddresses {
  readonly name: string;
  readonly role: 'voter' | 'replica' | 'standby';
  readonly standbyMode: 'hot' | 'warm';
  readonly zone: string;
}

/**
 * The default layout (DESIGN.md "Interfaces"): voters n1-n3, replica n4, hot standby n5, warm
 * standby n6, in zones dev-a (n1, n2, n5) and dev-b (n3, n4, n6). `--members N`: N voters only.
 */
function devMembers(count: number | null, basePort: number | null): DevMember[] {
  const layout: Pick<DevMember, 'role' | 'standbyMode' | 'zone'>[] =
    count === null
      ? [
          { role: 'voter', standbyMode: 'hot', zone: 'dev-a' },
          { role: 'voter', standbyMode: 'hot', zone: 'dev-a' },
          { role: 'voter', standbyMode: 'hot', zone: 'dev-b' },
          { role: 'replica', standbyMode: 'hot', zone: 'dev-b' },
          { role: 'standby', standbyMode: 'hot', zone: 'dev-a' },
          { role: 'standby', standbyMode: 'warm', zone: 'dev-b' },
        ]
      : Array.from({ length: count }, () => ({ role: 'voter', standbyMode: 'hot', zone: 'dev-a' }));
  // etcd's Procfile ports, so `etcdctl` with no flags reaches the first member.
  return layout.map((l, i) => {
    const base = basePort === null ? DEV_BASE_PORTS[i]! : basePort + 10 * i;
    return {
      name: `n${i + 1}`,
      client: `127.0.0.1:${base}`,
      peer: `127.0.0.1:${base + 1}`,
      admin: `127.0.0.1:${base + 2}`,
      ...l,
    };
  });
}

interface DevOptions {
  readonly dir: string;
  readonly members?: string;
  readonly basePort?: string;
  readonly replaceAfter: string;
  readonly tls?: boolean;
  readonly source?: boolean;
  readonly freePorts?: boolean;
}

async function devCommand(opts: DevOptions): Promise<number> {
  const count = opts.members === undefined ? null : Number(opts.members);
  const basePort = opts.basePort === undefined ? null : Number(opts.basePort);
  if (count !== null && ![1, 3, 5].includes(count)) {
    process.stderr.write(`tandem dev: --members must be 1, 3 or 5, got ${opts.members}\n`);
    return 2;
  }
  if (basePort !== null && (!Number.isSafeInteger(basePort) || basePort < 2 || basePort > 65_000)) {
    process.stderr.write(
      `tandem dev: --base-port must be a port in [2, 65000], got ${opts.basePort}\n`,
    );
    return 2;
  }
  const root = resolve(opts.dir);
  const { LocalCluster, TANDEM_BIN } = await import('./local-cluster.js');
  if (opts.tls === true) {
    const { checkOpenssl } = await import('./dev-certs.js');
    try {
      checkOpenssl();
    } catch (error) {
      process.stderr.write(`tandem dev --tls: ${(error as Error).message}\n`);
      return 2;
    }
  }
  const { startDevControls } = await import('./dev-controls.js');
  const members = devMembers(count, basePort);
  const voters = members.filter((m) => m.role === 'voter').length;
  const controlsAddress = `127.0.0.1:${basePort === null ? DEV_CONTROLS_PORT : basePort - 1}`;
  const startedMs = Date.now();
  // The compiled CLI, whatever runs this (the restart command printed below runs it too).
  const cluster = await LocalCluster.start({
    members,
    ...(opts.freePorts !== true && { addresses: (i: number) => members[i]! }),
    dir: root,
    token: 'tandem-dev',
    config: {
      replication: { voters },
      redundancy: {
        replaceAfter: opts.replaceAfter,
        standby: { snapshotEvery: DEV_WARM_SNAPSHOT_EVERY },
      },
      // The dashboard's fault buttons: partitions need the transport's fault rules.
      testMode: { faultInjection: true, devControls: opts.tls === true ? null : controlsAddress },
    },
    command: opts.source === true ? 'source' : 'compiled',
    env: process.env,
    logLevel: process.env.TANDEM_LOG_LEVEL ?? 'warn',
    cwd: process.cwd(),
    onOutput: (spec, stream, chunk) =>
      (stream === 'stdout' ? process.stdout : process.stderr).write(prefixLines(spec.name, chunk)),
    ready: 'spawned',
    ...(opts.tls === true && { tls: true }),
  });
  const specs = cluster.members.map((m) => m.spec);
  const tls = cluster.tls;
  const scheme = cluster.scheme;
  const endpoints = specs.map((m) => `${scheme}://${m.client}`).join(',');
  // etcdctl's default endpoint is 127.0.0.1:2379 over plain HTTP: say the endpoints otherwise.
  // etcdctl's default endpoint is 127.0.0.1:2379 over plain HTTP: say the endpoints otherwise,
  // on one command line, or once in etcdctl's environment variables (ETCDCTL_<FLAG>).
  const custom = tls !== null || opts.freePorts === true;
  const ctlFlags: [string, string][] = [
    ['endpoints', endpoints],
    ...(tls === null
      ? []
      : ([
          ['cacert', tls.ca],
          ['cert', tls.cert],
          ['key', tls.key],
        ] as [string, string][])),
  ];
  const etcdctl = `etcdctl ${ctlFlags.map(([f, v]) => `--${f} ${v}`).join(' ')}`;
  const ctlEnv = `export ${ctlFlags.map(([f, v]) => `ETCDCTL_${f.toUpperCase()}=${v}`).join(' ')}`;
  const tandemTls = tls === null ? '' : ` --cacert ${tls.ca} --cert ${tls.cert} --key ${tls.key}`;
  const admins = !custom
    ? ''
    : ` --admin ${specs.map((m) => `${scheme}://${m.admin}`).join(',')}${tandemTls}`;
  // The dashboard's dev controls speak plain HTTP to the members' admin ports: not under --tls.
  const controls =
    tls !== null
      ? null
      : await startDevControls(cluster, {
          host: '127.0.0.1',
          port: Number(controlsAddress.split(':')[1]),
        }).catch((error: Error) => {
          process.stderr.write(
            `tandem dev: no dashboard controls (${controlsAddress}: ${error.message}); the rest works\n`,
          );
          return null;
        });
  process.stdout.write(
    [
      `tandem dev: ${members.length} members, data under ${root}${tls === null ? '' : `, TLS on every port (CA and certificates in ${dirname(tls.ca)})`}`,
      `roles as configured; the redundancy policy changes them as members fail (\`node ${TANDEM_BIN} status\` shows the current ones):`,
      ...members.map((m, i) => {
        const s = specs[i]!;
        return `  ${m.name}  ${(m.role === 'standby' ? `${m.standbyMode} standby` : m.role).padEnd(12)} ${m.zone}  client ${s.client}  peer ${s.peer}  admin ${scheme}://${s.admin}/status`;
      }),
      '',
      `dashboard: ${scheme}://${specs[0]!.admin}/dashboard/   (any member's admin port serves it${tls === null ? '' : '; no dev controls under --tls'})`,
      '',
      ...(custom
        ? [
            tls === null ? 'etcdctl:' : 'etcdctl with TLS:',
            `  ${etcdctl}`,
            'or once for this shell:',
            `  ${ctlEnv}`,
            '',
            'try (after the export):',
            '  etcdctl put greeting hello && etcdctl get greeting',
            '  etcdctl endpoint status -w table',
          ]
        : [
            'try (once "ready" is printed below):',
            '  etcdctl put greeting hello && etcdctl get greeting',
            `  etcdctl --endpoints ${endpoints} endpoint status -w table`,
          ]),
      `  node ${TANDEM_BIN} status${admins}`,
      `  kill -9 a voter (or press kill in the dashboard): within redundancy.replaceAfter (${opts.replaceAfter}) the hot standby n5 takes its place`,
      `  node ${TANDEM_BIN} member promote n4${admins}   (demote / standby NAME too)`,
      'Ctrl-C stops the cluster.',
      '',
    ].join('\n'),
  );
  let stopping = false;
  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolveFinish) => {
    finish = resolveFinish;
  });
  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    Promise.allSettled([controls?.close(), cluster.stopAll()]).then((results) => {
      const failed = results.find((r) => r.status === 'rejected');
      if (failed !== undefined) {
        process.stderr.write(`tandem dev: ${(failed.reason as Error).message}\n`);
      }
      finish(failed === undefined ? 0 : 1);
    });
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  // A member that dies on its own (a crash, kill -9 to try failover, the dashboard's kill) is
  // reported; the others keep serving. Restart it with the command printed, or the dashboard.
  const watchExit = (m: (typeof cluster.members)[number]): void => {
    void m.exited.then((exit) => {
      if (stopping) return;
      const how =
        exit.signal === null ? `exited (code ${exit.code})` : `was killed (${exit.signal})`;
      process.stderr.write(
        `tandem dev: ${m.name} ${how}; restart it with: node ${TANDEM_BIN} start --config ${m.spec.configFile}\n`,
      );
      if (cluster.members.every((x) => !x.running) && controls === null) finish(1);
      // A restart (the dashboard's) makes a new process: watch it too.
      const rewatch = setInterval(() => {
        if (stopping || m.running) {
          clearInterval(rewatch);
          if (!stopping) watchExit(m);
        }
      }, 500);
      rewatch.unref();
    });
  };
  for (const m of cluster.members) watchExit(m);
  void announceReady(cluster.members[0]!, startedMs, () => stopping);
  return finished;
}

/** How long `tandem dev` waits for its first member to answer clients before it says so. */
const DEV_READY_TIMEOUT_MS = 30_000;

/**
 * Says when the first member (etcdctl's default endpoint) answers clients: the banner comes as
 * the members start, and in their first second or two a member refuses clients until its role
 * is confirmed (GET /ready says when that is over).
 */
async function announceReady(
  first: {
    readonly name: string;
    readonly spec: { readonly client: string };
    ready(): Promise<boolean>;
  },
  startedMs: number,
  stopping: () => boolean,
): Promise<void> {
  const { waitFor } = await import('./local-net.js');
  const remainingMs = Math.max(0, startedMs + DEV_READY_TIMEOUT_MS - Date.now());
  const answered = await waitFor(`${first.name} answering clients`, remainingMs, async () =>
    stopping() || (await first.ready()) ? true : null,
  ).catch(() => false);
  if (stopping()) return;
  if (answered) {
    const seconds = ((Date.now() - startedMs) / 1000).toFixed(1);
    process.stdout.write(
      `ready: ${first.name} (${first.spec.client}) answers clients, ${seconds} s after start\n`,
    );
  } else {
    process.stderr.write(
      `tandem dev: ${first.name} does not answer clients ${DEV_READY_TIMEOUT_MS / 1000} s after start; see the members' log lines above\n`,
    );
  }
}

function prefixLines(name: string, data: Buffer): string {
  return data
    .toString()
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => `[${name}] ${l}\n`)
    .join('');
}

function passThrough(script: string, args: string[]): Promise<number> {
  return new Promise((resolveExit) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: 'inherit' });
    child.once('exit', (code) => resolveExit(code ?? 1));
  });
}

/**
 * Sends an override to each admin endpoint in turn until the leader takes it (followers answer
 * 421 NOT_LEADER). Exit 0 once applied; 1 with the policy's reason when refused; 2 when no
 * endpoint answered as the leader.
 */
async function memberOpCommand(
  op: 'promote' | 'demote' | 'standby',
  name: string,
  admins: readonly string[],
  tls: AdminClientTls | undefined,
  token: string | undefined,
): Promise<number> {
  const { adminExchange } = await import('./local-net.js');
  const { toAddress } = await import('./addresses.js');
  const problems: string[] = [];
  for (const admin of admins) {
    let res: { status: number; text: string };
    try {
      const secure = tls ?? (admin.startsWith('https://') ? {} : undefined);
      res = await adminExchange(
        toAddress(admin),
        'POST',
        `/member/${op}`,
        { name },
        MEMBER_OP_TIMEOUT_MS,
        secure,
        token,
      );
    } catch (error) {
      problems.push(`${admin}: ${(error as Error).message}`);
      continue;
    }
    let body: { reason?: string; error?: string; code?: string } = {};
    try {
      body = JSON.parse(res.text) as typeof body;
    } catch {
      // not JSON: the status says enough
    }
    if (res.status === 421) continue; // a follower: try the next endpoint
    if (res.status >= 200 && res.status < 300) {
      process.stdout.write(`tandem member ${op} ${name}: done (${body.reason ?? 'applied'})\n`);
      return 0;
    }
    process.stderr.write(
      `tandem member ${op} ${name}: refused: ${body.error ?? `HTTP ${res.status}`}${body.code ? ` [${body.code}]` : ''}\n`,
    );
    return 1;
  }
  process.stderr.write(
    `tandem member ${op} ${name}: no leader among ${admins.join(', ')}${problems.length > 0 ? ` (${problems.join('; ')})` : ''}\n`,
  );
  return 2;
}
