/**
 * A real member writes its WAL through an O_DSYNC descriptor (one pool job per save: write and
 * flush together, see storage/fs.ts `writeDurable`): checked from outside, in /proc, on the
 * member process's open descriptors for its WAL segment.
 */
import assert from 'node:assert/strict';
import { constants, existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

/** Open flags of `pid`'s descriptors whose target lies under `dir`. */
function flagsUnder(pid: number, dir: string): number[] {
  const flags: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (!target.startsWith(`${dir}/`) || !target.endsWith('.wal')) continue;
    const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    flags.push(Number.parseInt(/^flags:\s*([0-7]+)/m.exec(info)![1]!, 8));
  }
  return flags;
}

describe('WAL durable writes on a real member', { timeout: 60_000 }, () => {
  let c: LocalCluster | null = null;

  before(async () => {
    if (existsSync('/proc/self/fdinfo')) c = await startCluster({ size: 1, label: 'wal-dsync' });
  });

  after(async () => {
    await c?.destroy({ kill: true });
  });

  test('the open WAL segment has an O_DSYNC twin descriptor, and puts go through', async (t) => {
    if (c === null) {
      t.skip('needs /proc (Linux) to read the member process descriptor flags');
      return;
    }
    const m = c.members[0]!;
    const conn = grpcClients(m.spec.client);
    try {
      for (let i = 0; i < 5; i++) {
        await call(conn.kv, 'Put', { key: Buffer.from(`d/${i}`), value: Buffer.from('v') });
      }
      const res = await call(conn.kv, 'Range', { key: Buffer.from('d/4') });
      assert.equal((res.kvs as unknown[]).length, 1);
    } finally {
      conn.close();
    }
    const pid = m.pid;
    assert.ok(pid !== null, 'member running');
    const flags = flagsUnder(pid, join(m.spec.dataDir, 'wal'));
    const dsync = flags.filter((f) => (f & constants.O_DSYNC) !== 0);
    assert.equal(dsync.length, 1, `one O_DSYNC descriptor on the WAL segment (flags ${flags})`);
    assert.equal(flags.length, 2, 'and the plain one beside it');
  });
});
