/**
 * The `tandem` command line: start a member, run a local development cluster, show status, run
 * the simulator, run a chaos test against a real local cluster.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { stringify } from 'yaml';
import type { ChaosOptions } from '../chaos/run.js';
import { CONFIG_OVERRIDES, ConfigError, loadConfig, parseDurationMs } from './config.js';
import { startNode } from './node.js';
import { formatStatusTable, queryStatus } from './status.js';

const here = dirname(fileURLToPath(import.meta.url));

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
    .description('run a local 3-member cluster in this terminal (data under ./data/dev)')
    .option('--dir <dir>', 'data directory', 'data/dev')
    .option('--members <n>', 'number of members (1, 3 or 5)', '3')
    .action(async (opts: { dir: string; members: string }) => {
      exitCode = await devCommand(opts.dir, Number(opts.members));
    });

  program
    .command('status')
    .description('members, roles, leader, term, indexes and lag of a running cluster')
    .option(
      '--admin <addresses>',
      'admin endpoints',
      '127.0.0.1:2381,127.0.0.1:22381,127.0.0.1:32381',
    )
    .option('--json', 'print JSON')
    .action(async (opts: { admin: string; json?: boolean }) => {
      const rows = await queryStatus(opts.admin.split(',').map((s) => s.trim()));
      process.stdout.write(
        opts.json === true ? `${JSON.stringify(rows, null, 2)}\n` : formatStatusTable(rows),
      );
      exitCode = rows.some((r) => r.error === null) ? 0 : 1;
    });

  program
    .command('chaos')
    .description(
      'run a real local cluster under faults with recording clients, then check the history (exit 0 pass, 1 violation, 2 unknown/aborted)',
    )
    .option('--voters <n>', 'members of the cluster (odd)', '3')
    .option('--time <duration>', 'how long clients and faults run', '60s')
    .option('--clients <n>', 'concurrent clients', '10')
    .option('--keys <n>', 'registers (keys) the clients share', '5')
    .option(
      '--faults <kinds>',
      'kill,pause,partition,slow,restart (or none)',
      'kill,pause,partition,slow,restart',
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
  let options: ChaosOptions;
  try {
    const seed =
      opts.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(opts.seed as string);
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
    options = {
      voters: Number(opts.voters),
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

interface DevMember {
  name: string;
  client: string;
  peer: string;
  admin: string;
}

function devMembers(count: number): DevMember[] {
  // etcd's Procfile ports, so `etcdctl` with no flags reaches the first member.
  const bases = [2379, 22379, 32379, 42379, 52379];
  return bases.slice(0, count).map((base, i) => ({
    name: `n${i + 1}`,
    client: `127.0.0.1:${base}`,
    peer: `127.0.0.1:${base + 1}`,
    admin: `127.0.0.1:${base + 2}`,
  }));
}

async function devCommand(dir: string, count: number): Promise<number> {
  if (![1, 3, 5].includes(count)) {
    process.stderr.write(`tandem dev: --members must be 1, 3 or 5, got ${count}\n`);
    return 2;
  }
  const root = resolve(dir);
  mkdirSync(root, { recursive: true });
  const members = devMembers(count);
  const bin = join(here, '..', '..', 'bin', 'tandem.js');
  const children: ChildProcess[] = [];
  for (const m of members) {
    const file = join(root, `${m.name}.yaml`);
    const config = {
      name: m.name,
      dataDir: join(root, m.name),
      listen: { client: m.client, peer: m.peer, admin: m.admin },
      peers: members.filter((p) => p !== m).map((p) => ({ name: p.name, addresses: [p.peer] })),
      cluster: { state: 'new', token: 'tandem-dev' },
    };
    writeFileSync(file, stringify(config));
    const child = spawn(process.execPath, [bin, 'start', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TANDEM_LOG_LEVEL: process.env.TANDEM_LOG_LEVEL ?? 'warn' },
    });
    child.stdout?.on('data', (d: Buffer) => process.stdout.write(prefixLines(m.name, d)));
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(prefixLines(m.name, d)));
    children.push(child);
  }
  process.stdout.write(
    [
      `tandem dev: ${count} members, data under ${root}`,
      ...members.map(
        (m) => `  ${m.name}  client ${m.client}  peer ${m.peer}  admin http://${m.admin}/status`,
      ),
      '',
      'try:',
      '  etcdctl put greeting hello && etcdctl get greeting',
      `  etcdctl --endpoints ${members.map((m) => m.client).join(',')} endpoint status -w table`,
      '  npx tandem status',
      'Ctrl-C stops the cluster.',
      '',
    ].join('\n'),
  );
  const exited = children.map(
    (c) => new Promise<number>((r) => c.once('exit', (code) => r(code ?? 1))),
  );
  let stopping = false;
  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  // A member that dies on its own (a crash, or kill -9 to try failover) is reported; the others
  // keep serving. Restart it with the command printed.
  exited.forEach((p, i) => {
    void p.then((code) => {
      if (stopping) return;
      const m = members[i]!;
      process.stderr.write(
        `tandem dev: ${m.name} exited (code ${code}); restart it with: node ${bin} start --config ${join(root, `${m.name}.yaml`)}\n`,
      );
    });
  });
  const codes = await Promise.all(exited);
  return codes.every((c) => c === 0) && stopping ? 0 : 1;
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
