/**
 * `tandem dev --tls` as a user runs it (3 voters; from source and on free ports, so it runs
 * beside other tests): it makes a CA and certificates, starts the cluster with TLS on every
 * port and prints an etcdctl command line; that line, as printed, writes and reads. The printed
 * `tandem status` line reads the HTTPS admin endpoints, and a member override reaches the leader.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_DIR, tandemArgv } from '../../src/cli/local-cluster.js';
import { waitFor } from '../../src/cli/local-net.js';
import { ETCDCTL, ETCDCTL_MISSING } from '../integration/clients.js';
import { OPENSSL_MISSING } from '../integration/openssl.js';

const execFileAsync = promisify(execFile);
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;
const COMMAND_TIMEOUT_MS = 15_000;

/** Runs a printed command line (paths without spaces: a temp directory) to completion. */
async function runLine(line: string, ...more: string[]) {
  const [command, ...args] = line.trim().split(/\s+/);
  const argv = command === 'etcdctl' ? [ETCDCTL, ...args] : [command!, ...args];
  return execFileAsync(argv[0]!, [...argv.slice(1), ...more], {
    encoding: 'utf8',
    timeout: COMMAND_TIMEOUT_MS,
    env: { ...process.env, ETCDCTL_API: '3' },
    cwd: REPO_DIR,
  });
}

describe('tandem dev --tls', { skip: ETCDCTL_MISSING || OPENSSL_MISSING, timeout: 150_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-dev-tls-'));
  let dev: ChildProcess | null = null;
  let out = '';

  after(async () => {
    if (dev?.pid !== undefined && dev.exitCode === null) {
      dev.kill('SIGTERM');
      const exited = new Promise((resolve) => dev!.once('exit', resolve));
      const timer = setTimeout(() => dev!.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('prints an etcdctl line with --cacert/--cert/--key that works', {
    timeout: 120_000,
  }, async () => {
    const argv = tandemArgv('source');
    dev = spawn(
      argv[0]!,
      [
        ...argv.slice(1),
        'dev',
        '--tls',
        '--members',
        '3',
        '--dir',
        join(dir, 'dev'),
        '--source',
        '--free-ports',
      ],
      { cwd: REPO_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: process.env },
    );
    dev.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    dev.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const etcdctl = await waitFor('the etcdctl line', START_TIMEOUT_MS, () => {
      if (dev!.exitCode !== null) throw new Error(`tandem dev exited ${dev!.exitCode}: ${out}`);
      const lines = out.split('\n');
      const at = lines.indexOf('etcdctl with TLS:');
      return at === -1 || lines[at + 1] === undefined ? null : lines[at + 1]!.trim();
    });
    assert.match(
      etcdctl,
      /^etcdctl --endpoints https:\/\/127\.0\.0\.1:\d+(,https:\/\/127\.0\.0\.1:\d+){2} --cacert \S+ca\.crt --cert \S+client\.crt --key \S+client\.key$/,
    );
    // The banner comes as the members start; "ready: n1 (host:port) answers clients" once the
    // first member answers (GET /ready). From then on, a put to that member alone works at once.
    const ready = await waitFor('the ready line', START_TIMEOUT_MS, () => {
      if (dev!.exitCode !== null) throw new Error(`tandem dev exited ${dev!.exitCode}: ${out}`);
      return /^ready: (\S+) \((127\.0\.0\.1:\d+)\) answers clients/m.exec(out);
    });
    const firstOnly = etcdctl.replace(/--endpoints \S+/, `--endpoints https://${ready[2]}`);
    assert.equal((await runLine(firstOnly, 'put', 'greeting', 'hello')).stdout, 'OK\n');
    assert.equal(
      (await runLine(etcdctl, 'get', 'greeting', '--print-value-only')).stdout,
      'hello\n',
    );
    // Every member publishes its https URLs once it has applied the log: bounded wait for all 3.
    const httpsRows = (list: string) =>
      list.match(/https:\/\/127\.0\.0\.1:\d+, https:\/\/127\.0\.0\.1:\d+/g)?.length ?? 0;
    let list = '';
    await waitFor('every member publishing its https URLs', START_TIMEOUT_MS, async () => {
      list = (await runLine(etcdctl, 'member', 'list')).stdout;
      return httpsRows(list) === 3 ? true : null;
    }).catch(() => assert.fail(`member list without 3 published https members:\n${list}`));
    // The printed export line works the same (etcdctl's ETCDCTL_<FLAG> variables).
    const exportLine = out
      .split('\n')
      .find((l) => l.trim().startsWith('export ETCDCTL_ENDPOINTS='))
      ?.trim();
    assert.ok(exportLine, out);
    const env: Record<string, string> = {};
    for (const pair of exportLine.slice('export '.length).split(' ')) {
      const at = pair.indexOf('=');
      env[pair.slice(0, at)] = pair.slice(at + 1);
    }
    assert.deepEqual(Object.keys(env).sort(), [
      'ETCDCTL_CACERT',
      'ETCDCTL_CERT',
      'ETCDCTL_ENDPOINTS',
      'ETCDCTL_KEY',
    ]);
    const viaEnv = await execFileAsync(ETCDCTL, ['get', 'greeting', '--print-value-only'], {
      encoding: 'utf8',
      timeout: COMMAND_TIMEOUT_MS,
      env: { ...process.env, ETCDCTL_API: '3', ...env },
    });
    assert.equal(viaEnv.stdout, 'hello\n');
    // Without the certificates, the same endpoints refuse.
    const bare = etcdctl.replace(/ --cacert .*$/, '');
    await assert.rejects(
      runLine(bare, '--dial-timeout=2s', '--command-timeout=3s', 'get', 'greeting'),
    );

    // The printed `tandem status` line (the admin endpoints over HTTPS) and a member override.
    const statusLine = out
      .split('\n')
      .find((l) => l.includes(' status --admin https://'))
      ?.trim();
    assert.ok(statusLine, out);
    const flags = statusLine.slice(statusLine.indexOf(' --admin ')).trim().split(/\s+/);
    const cli = [...argv, 'status', ...flags, '--json'];
    const status = await execFileAsync(cli[0]!, cli.slice(1), {
      encoding: 'utf8',
      timeout: COMMAND_TIMEOUT_MS,
      cwd: REPO_DIR,
    });
    const rows = JSON.parse(status.stdout) as { name: string; error: string | null }[];
    assert.deepEqual(rows.map((r) => [r.name, r.error]).sort(), [
      ['n1', null],
      ['n2', null],
      ['n3', null],
    ]);
    // An override of a member that does not exist: the leader (found over HTTPS) refuses it.
    const op = [...argv, 'member', 'standby', 'nobody', ...flags];
    const refused = await execFileAsync(op[0]!, op.slice(1), {
      encoding: 'utf8',
      timeout: COMMAND_TIMEOUT_MS,
      cwd: REPO_DIR,
    }).then(
      () => assert.fail('an override of an unknown member was accepted'),
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /tandem member standby nobody: refused/);
  });
});
