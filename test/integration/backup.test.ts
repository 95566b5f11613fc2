/**
 * Backups (config `backup: { every, keep, dir }`, `tandem backup now`, `tandem restore --from`)
 * on real member processes: the leader's scheduled backups appear, are checked and pruned to
 * `keep`; etcdctl reads them; one restored into a fresh cluster serves the same data; a damaged
 * file is refused and leaves no data directory behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { listBackups } from '../../src/cli/backup.js';
import { type LocalCluster, REPO_DIR, tandemArgv } from '../../src/cli/local-cluster.js';
import { ctlOk, ETCDCTL_MISSING, grpcClients, killCtls } from './clients.js';
import { startCluster } from './cluster.js';
import { dumpKv, snapshotStatus } from './etcd-process.js';

const TEST_TIMEOUT_MS = 120_000;
const BACKUP_WAIT_MS = 30_000;
const KEEP = 2;

function revisionOf(name: string): number {
  return Number(/-r(\d+)\.db$/.exec(name)?.[1] ?? -1);
}

/** Runs the tandem CLI from source to completion (bounded). */
function tandem(args: readonly string[]): Promise<{ code: number; out: string }> {
  const [program, ...rest] = tandemArgv('source');
  return new Promise((resolve) => {
    execFile(
      program!,
      [...rest, ...args],
      { cwd: REPO_DIR, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({
          code: error === null ? 0 : ((error as { code?: number }).code ?? 1),
          out: `${stdout}${stderr}`,
        }),
    );
  });
}

describe('backups and restore', { skip: ETCDCTL_MISSING, timeout: 400_000 }, () => {
  let c: LocalCluster;
  let dir: string;
  let backupDir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-it-backup-'));
    backupDir = join(dir, 'backups');
    c = await startCluster({
      label: 'backup',
      size: 1,
      extraConfig: { backup: { every: '1s', keep: KEEP, dir: backupDir } },
    });
  });

  after(async () => {
    killCtls();
    await c?.destroy({ kill: true });
    rmSync(dir, { recursive: true, force: true });
  });

  test('scheduled backups appear, pass etcdctl snapshot status, and are pruned to keep', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const puts = Array.from({ length: 50 }, (_, i) => `put k/${i} v${i}\n`).join('');
    await ctlOk(c.endpoints(), ['txn'], `\n${puts}\n\n`);
    await ctlOk(c.endpoints(), ['del', 'k/7']);
    const { revision } = await dumpKv(c.endpoints());
    const seen = new Set<string>();
    let most = 0;
    await c.waitUntil('backups at the latest revision, older ones pruned', BACKUP_WAIT_MS, () => {
      const now = listBackups(backupDir);
      for (const name of now) seen.add(name);
      // Between a new file's rename and the prune after its check, keep + 1 exist.
      most = Math.max(most, now.length);
      const current = now.filter((n) => revisionOf(n) === revision);
      return current.length >= KEEP && seen.size > KEEP + 1 ? true : null;
    });
    assert.ok(most <= KEEP + 1, `at most ${KEEP + 1} backups at once, saw ${most}`);
    const newest = listBackups(backupDir).at(-1)!;
    const status = await snapshotStatus(join(backupDir, newest));
    assert.equal(status.revision, revision);
    // The earliest ones seen are gone.
    const gone = [...seen].sort().slice(0, seen.size - KEEP - 1);
    for (const name of gone) assert.ok(!existsSync(join(backupDir, name)), `${name} pruned`);
  });

  test('tandem backup now, and a restore of a backup into a fresh cluster serves the same data', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const want = await dumpKv(c.endpoints());
    const out = join(dir, 'now.db');
    const saved = await tandem(['backup', 'now', '--endpoint', c.endpoints()[0]!, '--out', out]);
    assert.equal(saved.code, 0, saved.out);
    assert.match(
      saved.out,
      new RegExp(
        `saved .*now\\.db: \\d+ bytes, revision ${want.revision}, \\d+ keys \\(checked\\)`,
      ),
    );
    assert.equal((await snapshotStatus(out)).revision, want.revision);

    const newest = join(backupDir, listBackups(backupDir).at(-1)!);
    const copy = join(dir, 'restore-me.db');
    copyFileSync(newest, copy); // the schedule may prune it meanwhile
    const restored = await startCluster({ label: 'backup-restored', size: 1, restoreFrom: copy });
    try {
      assert.deepEqual(await dumpKv(restored.endpoints()), want);
      assert.deepEqual(
        await dumpKv(restored.endpoints(), want.revision - 1),
        await dumpKv(c.endpoints(), want.revision - 1),
      );
    } finally {
      await restored.destroy({ kill: true });
    }
  });

  test('the Snapshot RPC counts remaining_bytes down exactly, then sends the SHA-256', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // Several chunks of the writer (128 KiB each) and many 32 KiB messages.
    const big = 'x'.repeat(2000);
    for (let t = 0; t < 2; t++) {
      const puts = Array.from({ length: 100 }, (_, i) => `put big/${t}/${i} ${big}\n`).join('');
      await ctlOk(c.endpoints(), ['txn'], `\n${puts}\n\n`);
    }
    const clients = grpcClients(c.endpoints()[0]!);
    const messages: { blob: Buffer; remaining: number }[] = [];
    try {
      const stream = (
        clients.maintenance as unknown as {
          Snapshot(req: object): NodeJS.ReadableStream;
        }
      ).Snapshot({});
      for await (const m of stream as AsyncIterable<{ blob: Buffer; remainingBytes: string }>) {
        messages.push({ blob: m.blob, remaining: Number(m.remainingBytes) });
      }
    } finally {
      clients.close();
    }
    const data = Buffer.concat(messages.slice(0, -1).map((m) => m.blob));
    let sent = 0;
    for (const m of messages.slice(0, -1)) {
      sent += m.blob.length;
      assert.equal(m.remaining, data.length - sent);
    }
    assert.equal(data.length % 4096, 0, 'whole bbolt pages');
    assert.ok(data.length > 400_000, `${data.length} bytes`);
    assert.deepEqual(messages.at(-1)!.blob, createHash('sha256').update(data).digest());
  });

  test('a damaged backup is refused by tandem restore, which leaves no data directory', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const good = join(backupDir, listBackups(backupDir).at(-1)!);
    const bad = join(dir, 'damaged.db');
    const bytes = readFileSync(good);
    bytes[3 * 4096] ^= 0x01; // the first data page's id, under the SHA-256 trailer
    writeFileSync(bad, bytes);
    const dataDir = join(dir, 'fresh');
    const config = join(dir, 'fresh.yaml');
    writeFileSync(config, `name: fresh\ndataDir: ${dataDir}\n`);
    const r = await tandem(['restore', '--from', bad, '--config', config]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /SHA-256 of the data does not match/);
    assert.ok(!existsSync(dataDir), 'no data directory left behind');

    // Past the hash check, the damaged page itself is found.
    const skipped = await tandem([
      'restore',
      '--from',
      bad,
      '--config',
      config,
      '--skip-hash-check',
    ]);
    assert.equal(skipped.code, 1, skipped.out);
    assert.match(skipped.out, /bbolt database|etcd snapshot|corrupt/i);
    assert.ok(!existsSync(dataDir), 'no data directory left behind');
  });
});
