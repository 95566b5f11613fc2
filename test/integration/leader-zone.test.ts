/**
 * The leader-zone preference on real processes (issue 5): 3 voters, n3 alone in zone-b, and
 * `replication.preferLeaderZone: zone-b`. Whoever wins the first election, leadership moves to
 * n3 by a transfer, and stays there; writes work throughout.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

describe('replication.preferLeaderZone', { timeout: 120_000 }, () => {
  let c: LocalCluster;

  before(async () => {
    c = await startCluster({
      label: 'leader-zone',
      size: 3,
      roles: {
        n1: { role: 'voter', zone: 'zone-a' },
        n2: { role: 'voter', zone: 'zone-a' },
        n3: { role: 'voter', zone: 'zone-b' },
      },
      extraConfig: { replication: { preferLeaderZone: 'zone-b' } },
    });
  });

  after(async () => {
    await c?.destroy({ kill: true });
  });

  test('the leader moves to the healthy voter of the preferred zone and stays', () =>
    c.guard('leader zone', async () => {
      const leader = await waitFor('n3 leads', 30_000, async () => {
        const l = await c.leader();
        return l.name === 'n3' ? l : null;
      });
      await sleep(3_000);
      assert.equal((await c.leader()).name, 'n3', 'no churn after the transfer');
      const conn = grpcClients(leader.spec.client);
      try {
        await call(conn.kv, 'Put', { key: Buffer.from('zone/k'), value: Buffer.from('v') }, 3_000);
      } finally {
        conn.close();
      }
    }));
});
