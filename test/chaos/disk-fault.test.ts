/**
 * The disk fault on a real member: its next WAL fsync fails (EIO, test-mode fault file system,
 * armed over the admin API). The member must stop — log the storage failure and acknowledge
 * nothing more — while the other two go on; restarted on the same data directory it recovers
 * its WAL and serves every acknowledged write.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ChaosCluster } from '../../src/chaos/cluster.js';
import { KvClient } from '../../src/chaos/etcd-client.js';
import { adminRequest, sleep } from '../../src/cli/local-net.js';

const STOP_WAIT_MS = 10_000;

test('disk fault: a failed WAL fsync stops the member; restarted, it lost nothing', {
  timeout: 120_000,
}, async () => {
  const logDir = mkdtempSync(join(tmpdir(), 'tandem-chaos-disk-'));
  let cluster: ChaosCluster | null = null;
  const clients: KvClient[] = [];
  try {
    cluster = await ChaosCluster.start({ voters: 3, logDir });
    const c = cluster;
    for (const m of c.members) clients.push(new KvClient(m.client));
    const victim = 2;
    const others = [0, 1];
    // Retries on the healthy members: a write may meet an election the fault caused.
    const put = async (value: number): Promise<void> => {
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          await clients[others[attempt % 2]!]!.put('disk/k', String(value), 2_000);
          return;
        } catch {
          await sleep(200);
        }
      }
      assert.fail(`put ${value} never succeeded`);
    };
    await put(1);
    assert.equal(await c.failNextWalSync(victim), true);
    const state = await adminRequest<{ diskFaultsArmed?: number }>(
      c.members[victim]!.admin,
      'GET',
      '/faults',
    );
    assert.equal(state.diskFaultsArmed, 1);
    // Writes reach the victim's WAL (it is a voter): its next fsync fails and it must stop.
    const logFile = join(logDir, `${c.members[victim]!.name}.log`);
    let value = 1;
    let stopped = false;
    for (let round = 0; round < 100 && !stopped; round++) {
      await put(++value);
      stopped = readFileSync(logFile, 'utf8').includes('member stopped on a storage failure');
      if (!stopped) await sleep(STOP_WAIT_MS / 100);
    }
    assert.ok(stopped, `the member did not stop:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
    // It acknowledges nothing more: a read through it fails.
    await assert.rejects(clients[victim]!.get('disk/k', 1_000));
    // The others go on.
    await put(++value);

    await c.kill(victim);
    c.spawn(victim);
    assert.ok(await c.waitUp(victim, 30_000), 'the member did not come back');
    clients[victim]!.close();
    clients[victim] = new KvClient(c.members[victim]!.client);
    let read: string | null = null;
    for (let attempt = 0; attempt < 50 && read !== String(value); attempt++) {
      try {
        read = (await clients[victim]!.get('disk/k', 2_000)).value;
      } catch {
        await sleep(200);
      }
    }
    assert.equal(read, String(value), 'the restarted member serves the last acknowledged write');
  } finally {
    for (const client of clients) client.close();
    await cluster?.destroy();
    rmSync(logDir, { recursive: true, force: true });
  }
});
