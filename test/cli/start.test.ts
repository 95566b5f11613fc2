/**
 * `tandem start` on a real process: a member that cannot start (its admin port taken) says why
 * and exits, closing what it had opened, instead of lingering half-started with its client
 * and peer ports open (a launcher then waited 50 s for a member that never served). A member
 * without a cluster secret refuses to start and names the option.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_DIR } from '../../src/cli/local-cluster.js';
import { STARTUP_TIMELINE_KEYS } from '../../src/cli/startup-timeline.js';
import { oneMemberBase, spawnMemberUntil } from './one-member.js';

const EXIT_WITHIN_MS = 20_000;
/** From spawn to serving, from source (tsx) on a loaded machine: generous. */
const SERVE_WITHIN_MS = 60_000;

/** Runs `tandem start --config <config>`; resolves with its exit code (null: still running). */
async function runStart(config: string): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(REPO_DIR, 'src', 'cli', 'bin.ts'), 'start', '--config', config],
    { cwd: REPO_DIR, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout.resume();
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(null);
    }, EXIT_WITHIN_MS);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  return { code, stderr };
}

test('a member without cluster.secret refuses to start, naming the option', {
  timeout: EXIT_WITHIN_MS + 10_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-start-test-'));
  try {
    const config = join(dir, 'node.yaml');
    const base = (await oneMemberBase(dir)).yaml;
    writeFileSync(config, base);
    const missing = await runStart(config);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /tandem: cannot start n1: cluster\.secret is required/);
    assert.match(missing.stderr, /cluster\.secretFile/);
    // A short secret is a config error that names the field, and never echoes the value.
    writeFileSync(config, `${base}cluster: { secret: hunter2 }\n`);
    const short = await runStart(config);
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /cluster\.secret: expected a random string of 16 to 1024 bytes/);
    assert.doesNotMatch(short.stderr, /hunter2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a member whose admin port is taken says so and exits, leaving nothing open', {
  timeout: EXIT_WITHIN_MS + 10_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-start-test-'));
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const adminPort = (taken.address() as net.AddressInfo).port;
  try {
    const config = join(dir, 'node.yaml');
    const { yaml } = await oneMemberBase(dir, adminPort);
    writeFileSync(config, `${yaml}cluster: { secret: start-test-secret-0123456789 }\n`);
    const { code, stderr } = await runStart(config);
    assert.notEqual(code, null, `still running after ${EXIT_WITHIN_MS} ms:\n${stderr}`);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /tandem: cannot start n1: .*EADDRINUSE/);
  } finally {
    taken.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** pino's JSON lines of a running `tandem start`, until `until` matches one or time runs out. */
async function startUntil(
  config: string,
  until: (line: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>[]> {
  const args = ['--import', 'tsx', join(REPO_DIR, 'src', 'cli', 'bin.ts'), 'start'];
  const { found, member } = await spawnMemberUntil(
    [...args, '--config', config],
    until,
    SERVE_WITHIN_MS,
    EXIT_WITHIN_MS,
  );
  await member.stop();
  assert.ok(
    found,
    `no such line within ${SERVE_WITHIN_MS} ms:\n${member.stderr()}\n${JSON.stringify(member.lines)}`,
  );
  return member.lines;
}

const PHASES = STARTUP_TIMELINE_KEYS;

test('a member logs its start-up timeline, and when its role is confirmed, on a new and a restarted data directory', {
  timeout: 2 * (SERVE_WITHIN_MS + EXIT_WITHIN_MS) + 10_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-start-test-'));
  try {
    const config = join(dir, 'node.yaml');
    const { yaml } = await oneMemberBase(dir);
    writeFileSync(config, `${yaml}cluster: { secret: start-test-secret-0123456789 }\n`);
    for (const run of ['new', 'restarted']) {
      const lines = await startUntil(config, (l) => l.msg === 'role confirmed with the leader');
      const serving = lines.find((l) => l.msg === 'tandem member serving');
      assert.ok(serving !== undefined, `${run}: no 'tandem member serving' line`);
      const startupMs = serving.startupMs as Record<string, number>;
      // Every phase, each ending no earlier than the one before, all after the process began.
      const ends = PHASES.map((p) => startupMs[p]);
      assert.ok(
        ends.every((ms) => Number.isInteger(ms) && ms! >= 0),
        JSON.stringify(startupMs),
      );
      for (let i = 1; i < ends.length; i++)
        assert.ok(ends[i]! >= ends[i - 1]!, JSON.stringify(startupMs));
      assert.ok(startupMs.cpuMs! > 0);
      const confirmed = lines.find((l) => l.msg === 'role confirmed with the leader')!;
      assert.equal(confirmed.serves, true, `${run}: ${JSON.stringify(confirmed)}`);
      assert.equal(confirmed.role, 'voter');
      assert.ok((confirmed.sinceStartMs as number) >= startupMs.member!, JSON.stringify(confirmed));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
