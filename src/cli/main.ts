/**
 * The `tandem` command line: start a member, run a local development cluster, show status, run
 * the simulator, run a chaos test against a real local cluster.
 */
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import type { ChaosOptions } from '../chaos/run.js';
import { CONFIG_OVERRIDES } from './config-overrides.js';
import type { MemberAddresses } from './local-cluster.js';

// Each command imports what it runs when it runs: the member (grpc, lmdb), the config schema
// (zod, yaml) and the launcher cost a few hundred milliseconds that `--help` should not pay.

/** etcd's Procfile ports and two more, so `etcdctl` with no flags reaches the first member. */
const DEV_BASE_PORTS = [2379, 22379, 32379, 42379, 52379, 62379] as const;
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
    .action(async (opts: { dir: string; members?: string }) => {
      exitCode = await devCommand(
        opts.dir,
        opts.members === undefined ? null : Number(opts.members),
      );
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
      .action(async (name: string, opts: { admin: string }) => {
        exitCode = await memberOpCommand(
          op,
          name,
          opts.admin.split(',').map((a) => a.trim()),
        );
      });
  }

  program
    .command('status')
    .description('members, roles, leader, term, indexes and lag of a running cluster')
    .option('--admin <addresses>', 'admin endpoints', DEV_ADMINS)
    .option('--json', 'print JSON')
    .action(async (opts: { admin: string; json?: boolean }) => {
      const { formatStatusTable, queryStatus } = await import('./status.js');
      const rows = await queryStatus(opts.admin.split(',').map((s) => s.trim()));
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
    .action(async (opts: { endpoints: string; listen: string; zone?: string }) => {
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
  let node: Awaited<ReturnType<typeof startNode>>;
  try {
    node = await startNode(config);
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

async function gatewayCommand(opts: {
  endpoints: string;
  listen: string;
  zone?: string;
}): Promise<number> {
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
function devMembers(count: number | null): DevMember[] {
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
    const base = DEV_BASE_PORTS[i]!;
    return {
      name: `n${i + 1}`,
      client: `127.0.0.1:${base}`,
      peer: `127.0.0.1:${base + 1}`,
      admin: `127.0.0.1:${base + 2}`,
      ...l,
    };
  });
}

async function devCommand(dir: string, count: number | null): Promise<number> {
  if (count !== null && ![1, 3, 5].includes(count)) {
    process.stderr.write(`tandem dev: --members must be 1, 3 or 5, got ${count}\n`);
    return 2;
  }
  const root = resolve(dir);
  const { LocalCluster, TANDEM_BIN } = await import('./local-cluster.js');
  const members = devMembers(count);
  const voters = members.filter((m) => m.role === 'voter').length;
  // The compiled CLI, whatever runs this (the restart command printed below runs it too).
  const cluster = await LocalCluster.start({
    members,
    addresses: (i) => members[i]!,
    dir: root,
    token: 'tandem-dev',
    config: {
      replication: { voters },
      redundancy: { standby: { snapshotEvery: DEV_WARM_SNAPSHOT_EVERY } },
    },
    command: 'compiled',
    env: process.env,
    logLevel: process.env.TANDEM_LOG_LEVEL ?? 'warn',
    cwd: process.cwd(),
    onOutput: (spec, stream, chunk) =>
      (stream === 'stdout' ? process.stdout : process.stderr).write(prefixLines(spec.name, chunk)),
    ready: 'spawned',
  });
  process.stdout.write(
    [
      `tandem dev: ${members.length} members, data under ${root}`,
      `roles as configured; the redundancy policy changes them as members fail (\`node ${TANDEM_BIN} status\` shows the current ones):`,
      ...members.map(
        (m) =>
          `  ${m.name}  ${(m.role === 'standby' ? `${m.standbyMode} standby` : m.role).padEnd(12)} ${m.zone}  client ${m.client}  peer ${m.peer}  admin http://${m.admin}/status`,
      ),
      '',
      'try:',
      '  etcdctl put greeting hello && etcdctl get greeting',
      `  etcdctl --endpoints ${members.map((m) => m.client).join(',')} endpoint status -w table`,
      `  node ${TANDEM_BIN} status`,
      '  kill -9 a voter: within redundancy.replaceAfter (10s) the hot standby n5 takes its place',
      `  node ${TANDEM_BIN} member promote n4   (demote / standby NAME too)`,
      'Ctrl-C stops the cluster.',
      '',
    ].join('\n'),
  );
  const exits = cluster.members.map((m) => m.exited);
  let stopping = false;
  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    cluster.stopAll().catch((error: Error) => {
      process.stderr.write(`tandem dev: ${error.message}\n`);
    });
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  // A member that dies on its own (a crash, or kill -9 to try failover) is reported; the others
  // keep serving. Restart it with the command printed.
  exits.forEach((p, i) => {
    void p.then((exit) => {
      if (stopping) return;
      const m = cluster.members[i]!;
      const how =
        exit.signal === null ? `exited (code ${exit.code})` : `was killed (${exit.signal})`;
      process.stderr.write(
        `tandem dev: ${m.name} ${how}; restart it with: node ${TANDEM_BIN} start --config ${m.spec.configFile}\n`,
      );
    });
  });
  const ends = await Promise.all(exits);
  return ends.every((e) => e.code === 0) && stopping ? 0 : 1;
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
): Promise<number> {
  const problems: string[] = [];
  for (const admin of admins) {
    let res: Response;
    try {
      res = await fetch(`http://${admin}/member/${op}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
        signal: AbortSignal.timeout(MEMBER_OP_TIMEOUT_MS),
      });
    } catch (error) {
      problems.push(`${admin}: ${(error as Error).message}`);
      continue;
    }
    const body = (await res.json().catch(() => ({}))) as {
      reason?: string;
      error?: string;
      code?: string;
    };
    if (res.status === 421) continue; // a follower: try the next endpoint
    if (res.ok) {
      process.stdout.write(`tandem member ${op} ${name}: done (${body.reason ?? 'applied'})\n`);
      return 0;
    }
    process.stderr.write(
      `tandem member ${op} ${name}: refused: ${body.error ?? res.statusText}${body.code ? ` [${body.code}]` : ''}\n`,
    );
    return 1;
  }
  process.stderr.write(
    `tandem member ${op} ${name}: no leader among ${admins.join(', ')}${problems.length > 0 ? ` (${problems.join('; ')})` : ''}\n`,
  );
  return 2;
}
