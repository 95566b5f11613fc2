/**
 * The real etcdctl (Debian's etcd-client, v3.4) against tandem's API edge. Skipped, loudly, when
 * etcdctl is not installed (.ci/run installs it).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Harness, startHarness } from './harness.js';

const CTL_TIMEOUT_MS = 8_000;
const TEST_TIMEOUT_MS = 20_000;

function etcdctlPath(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v etcdctl'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const ETCDCTL = etcdctlPath();

interface CtlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

// Skipped, naming the package, where etcdctl is missing (.ci/run installs it).
const MISSING =
  ETCDCTL === null && 'needs etcdctl (Debian etcd-client: apt-get install -y etcd-client)';

describe('etcdctl', { skip: MISSING, timeout: 90_000 }, () => {
  let h: Harness & { errors: unknown[] };
  let dir: string;
  const children = new Set<ChildProcess>();

  const args = (rest: string[]) => [
    `--endpoints=${h.endpoint}`,
    '--dial-timeout=3s',
    '--command-timeout=5s',
    ...rest,
  ];

  /** Runs etcdctl to completion (bounded), with optional stdin. */
  function ctl(rest: string[], input?: string): Promise<CtlResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(ETCDCTL!, args(rest), { env: { ...process.env, ETCDCTL_API: '3' } });
      children.add(child);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`etcdctl ${rest.join(' ')} timed out: ${stdout} ${stderr}`));
      }, CTL_TIMEOUT_MS);
      child.on('close', (code) => {
        clearTimeout(timer);
        children.delete(child);
        resolve({ code, stdout, stderr });
      });
      child.stdin.end(input ?? '');
    });
  }

  async function ok(rest: string[], input?: string): Promise<string> {
    const r = await ctl(rest, input);
    assert.equal(r.code, 0, `etcdctl ${rest.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** Starts a long-running etcdctl and resolves once its output matches `until`. */
  function stream(rest: string[], until: (out: string) => boolean) {
    const child = spawn(ETCDCTL!, args(rest), { env: { ...process.env, ETCDCTL_API: '3' } });
    children.add(child);
    let out = '';
    const done = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`etcdctl ${rest.join(' ')}: no match in ${JSON.stringify(out)}`));
      }, CTL_TIMEOUT_MS);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (until(out)) {
          clearTimeout(timer);
          resolve(out);
        }
      });
    });
    return {
      done,
      stop: () => {
        child.kill('SIGTERM');
        children.delete(child);
      },
    };
  }

  before(async () => {
    h = await startHarness();
    dir = mkdtempSync(join(tmpdir(), 'tandem-etcdctl-'));
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await h.close();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(h.errors, [], 'no unexpected (INTERNAL) errors were logged');
  });

  test('put, get, del, prefix, json header', { timeout: TEST_TIMEOUT_MS }, async () => {
    assert.equal(await ok(['put', 'a', '1']), 'OK\n');
    assert.equal(await ok(['put', 'ab', '2']), 'OK\n');
    assert.equal(await ok(['get', 'a']), 'a\n1\n');
    assert.equal(await ok(['get', '--prefix', 'a', '--print-value-only']), '1\n2\n');
    assert.equal(await ok(['get', '--consistency=s', 'ab']), 'ab\n2\n');
    // uint64 ids must survive exactly; JSON.parse would round them, so match the text.
    const json = await ok(['get', 'a', '-w', 'json']);
    assert.match(json, new RegExp(`"member_id":${h.backend.header().memberId}`));
    assert.match(json, new RegExp(`"cluster_id":${h.backend.header().clusterId}`));
    assert.match(json, /"count":1/);
    assert.equal(await ok(['del', 'a']), '1\n');
    assert.equal(await ok(['get', 'a']), '');
    assert.equal(await ok(['del', '--prefix', 'a']), '1\n');
  });

  test('txn (interactive, from stdin)', { timeout: TEST_TIMEOUT_MS }, async () => {
    await ok(['put', 'k', 'v1']);
    const swap = 'value("k") = "v1"\n\nput k v2\n\nget k\n\n';
    assert.equal(await ok(['txn'], swap), 'SUCCESS\n\nOK\n');
    assert.equal(await ok(['txn'], swap), 'FAILURE\n\nk\nv2\n');
  });

  test('watch streams puts and deletes', { timeout: TEST_TIMEOUT_MS }, async () => {
    const watch = stream(['watch', '--prefix', 'w/'], (out) => out.includes('DELETE\nw/1\n\n'));
    await new Promise((resolve) => setTimeout(resolve, 500)); // let the watch be created
    await ok(['put', 'w/1', 'x']);
    await ok(['del', 'w/1']);
    const out = await watch.done;
    watch.stop();
    assert.equal(out, 'PUT\nw/1\nx\nDELETE\nw/1\n\n');
  });

  test('lease grant, timetolive, keep-alive, revoke, list', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const granted = await ok(['lease', 'grant', '3']);
    const id = /lease ([0-9a-f]+) granted with TTL\(3s\)/.exec(granted)?.[1];
    assert.ok(id !== undefined, granted);
    await ok(['put', '--lease', id, 'lk', 'lv']);
    assert.match(await ok(['lease', 'timetolive', '--keys', id]), /attached keys\(\[lk\]\)/);
    assert.match(await ok(['lease', 'list']), new RegExp(id));
    assert.equal(
      await ok(['lease', 'keep-alive', '--once', id]),
      `lease ${id} keepalived with TTL(3)\n`,
    );
    // The streaming keep-alive renews every TTL/3.
    const keepAlive = stream(
      ['lease', 'keep-alive', id],
      (out) => out.split('keepalived').length > 2,
    );
    await keepAlive.done;
    keepAlive.stop();
    assert.equal(await ok(['lease', 'revoke', id]), `lease ${id} revoked\n`);
    assert.equal(await ok(['get', 'lk']), '');
    assert.match(await ok(['lease', 'timetolive', id]), /already expired/);
    const revoked = await ctl(['lease', 'revoke', id]);
    assert.notEqual(revoked.code, 0);
    assert.match(revoked.stderr, /etcdserver: requested lease not found/);
  });

  test('member list, add (learner), promote, update, remove', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    assert.match(
      await ok(['member', 'list']),
      /^f00dbabe12345678, started, n1, http:\/\/127\.0\.0\.1:2380/,
    );
    assert.match(
      await ok(['member', 'add', 'n2', '--peer-urls=http://10.0.0.2:2380']),
      /Member\s+1 added to cluster deadbeefcafe1234/,
    );
    assert.match(
      await ok(['member', 'add', 'n3', '--learner', '--peer-urls=http://10.0.0.3:2380']),
      /Member\s+2 added/,
    );
    assert.match(
      await ok(['member', 'list']),
      /^2, unstarted, , http:\/\/10\.0\.0\.3:2380, , true$/m,
    );
    assert.match(await ok(['member', 'promote', '2']), /Member\s+2 promoted/);
    const notLearner = await ctl(['member', 'promote', '2']);
    assert.match(notLearner.stderr, /etcdserver: can only promote a learner member/);
    assert.match(
      await ok(['member', 'update', '1', '--peer-urls=http://10.0.0.9:2380']),
      /updated/,
    );
    assert.match(await ok(['member', 'remove', '1']), /Member\s+1 removed/);
    const missing = await ctl(['member', 'remove', '99']);
    assert.match(missing.stderr, /etcdserver: member not found/);
    const dup = await ctl(['member', 'add', 'n4', '--peer-urls=http://10.0.0.3:2380']);
    assert.match(dup.stderr, /etcdserver: Peer URLs already exists/);
  });

  test('endpoint status, health, hashkv; alarm list; defrag', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const status = await ok(['endpoint', 'status']);
    assert.match(
      status,
      new RegExp(`${h.endpoint}, f00dbabe12345678, 3\\.5\\.0, .*, true, false, 2, `),
    );
    const health = await ctl(['endpoint', 'health']);
    assert.equal(health.code, 0);
    assert.match(health.stdout + health.stderr, /is healthy: successfully committed proposal/);
    assert.match(await ok(['endpoint', 'hashkv']), new RegExp(`${h.endpoint}, \\d+`));
    assert.equal(await ok(['alarm', 'list']), '');
    assert.match(await ok(['defrag']), /Finished defragmenting etcd member/);
    assert.equal(await ok(['auth', 'disable']), 'Authentication Disabled\n');
    const enable = await ctl(['auth', 'enable']);
    assert.match(enable.stderr, /etcdserver: root user does not exist/);
  });

  test('compaction, then reads below it are compacted', { timeout: TEST_TIMEOUT_MS }, async () => {
    await ok(['put', 'c', '1']);
    await ok(['put', 'c', '2']);
    const rev = JSON.parse(await ok(['get', 'c', '-w', 'json'])).header.revision as number;
    assert.equal(await ok(['compaction', String(rev)]), `compacted revision ${rev}\n`);
    const old = await ctl(['get', 'c', `--rev=${rev - 1}`]);
    assert.match(old.stderr, /etcdserver: mvcc: required revision has been compacted/);
    const again = await ctl(['compaction', String(rev)]);
    assert.match(again.stderr, /etcdserver: mvcc: required revision has been compacted/);
  });

  test('snapshot save: n * 512 bytes and their SHA-256, as etcdctl checks', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const path = join(dir, 'snap.db');
    assert.match(await ok(['snapshot', 'save', path]), /Snapshot saved at/);
    const file = readFileSync(path);
    assert.equal(file.length % 512, 32);
    const data = file.subarray(0, file.length - 32);
    assert.deepEqual(createHash('sha256').update(data).digest(), file.subarray(file.length - 32));
  });
});
