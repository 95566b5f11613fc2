/**
 * The `bitflip` fault on real members: one bit of a WAL record that a valid record follows is
 * flipped on disk (through the storage fault layer) while the member is down. With a WAL mirror
 * the member must repair the record from the mirror and start, serving the acknowledged data;
 * without one it must fetch what it lost from its peers (protocol-aware recovery) and serve every
 * acknowledged write, or refuse to start naming the corruption — never serve from a broken WAL.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ChaosCluster } from '../../src/chaos/cluster.js';
import { byteAt, flipWalBit } from '../../src/chaos/disk-faults.js';
import { KvClient } from '../../src/chaos/etcd-client.js';
import { sleep } from '../../src/cli/local-net.js';
import { Prng } from '../../src/util/prng.js';

const PUTS = 30;

async function withCluster(
  walMirror: boolean,
  body: (cluster: ChaosCluster, logDir: string, client: KvClient) => Promise<void>,
): Promise<void> {
  const logDir = mkdtempSync(join(tmpdir(), 'tandem-chaos-bitflip-'));
  let cluster: ChaosCluster | null = null;
  let client: KvClient | null = null;
  try {
    cluster = await ChaosCluster.start({ voters: 3, logDir, walMirror });
    client = new KvClient(cluster.members[0]!.client);
    // Enough batches that the victim's WAL has records followed by valid ones.
    for (let i = 0; i < PUTS; i++) {
      for (let attempt = 0; ; attempt++) {
        try {
          await client.put('flip/k', String(i), 2_000);
          break;
        } catch (error) {
          if (attempt >= 20) throw error;
          await sleep(200);
        }
      }
    }
    await body(cluster, logDir, client);
  } finally {
    client?.close();
    await cluster?.destroy();
    rmSync(logDir, { recursive: true, force: true });
  }
}

/** The member answers (retrying while it catches up) with the last acknowledged put. */
async function assertServesLastPut(cluster: ChaosCluster, index: number): Promise<void> {
  const own = new KvClient(cluster.members[index]!.client);
  try {
    let read: string | null = null;
    for (let i = 0; i < 50 && read !== String(PUTS - 1); i++) {
      read = await own.get('flip/k', 2_000).then(
        (r) => r.value,
        () => null,
      );
      if (read !== String(PUTS - 1)) await sleep(200);
    }
    assert.equal(read, String(PUTS - 1));
  } finally {
    own.close();
  }
}

test('bitflip with a WAL mirror: repaired from the mirror, the member starts and serves', {
  timeout: 120_000,
}, async () => {
  await withCluster(true, async (cluster) => {
    const victim = 2;
    await cluster.kill(victim);
    const flip = await flipWalBit(cluster.members[victim]!.dataDir, new Prng(7));
    assert.ok(flip !== null, 'the WAL has a record to damage');
    assert.notEqual(await byteAt(flip), flip.before, 'the bit is flipped on disk');
    cluster.spawn(victim);
    assert.ok(await cluster.waitUp(victim, 30_000), 'the member did not start');
    assert.equal(await byteAt(flip), flip.before, 'the record was repaired in place');
    await assertServesLastPut(cluster, victim);
  });
});

test('bitflip without a mirror: recovered from peers, or refused naming the corruption', {
  timeout: 120_000,
}, async () => {
  await withCluster(false, async (cluster, logDir, client) => {
    const victim = 2;
    await cluster.kill(victim);
    const flip = await flipWalBit(cluster.members[victim]!.dataDir, new Prng(7));
    assert.ok(flip !== null, 'the WAL has a record to damage');
    const from = cluster.logBytes(victim);
    cluster.spawn(victim);
    const started = await cluster.waitUp(victim, 30_000);
    const log = () => readFileSync(join(logDir, 'n3.log')).subarray(from).toString('utf8');
    if (started) {
      // Protocol-aware recovery: the member said what it did, and serves every acknowledged write.
      assert.match(log(), /WAL recovered past 1 span\(s\) damaged in every copy/);
      await assertServesLastPut(cluster, victim);
    } else {
      // Not provably recoverable (e.g. no intact entry record after the damage): refused, named.
      assert.equal(await cluster.waitExit(victim, 10_000), 1, 'the member must exit with an error');
      assert.match(log(), /cannot start n3: WAL corrupt: .*\.wal at byte \d+/);
      cluster.markLost(victim);
      assert.throws(() => cluster.spawn(victim), /given up/);
    }
    // The other two go on either way.
    await client.put('flip/k', 'after', 5_000);
    assert.equal((await client.get('flip/k', 5_000)).value, 'after');
  });
});
