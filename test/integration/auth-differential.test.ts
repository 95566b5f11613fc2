/**
 * Differential: the same etcdctl (Debian etcd-client 3.4) script of user, role and auth
 * commands, and of reads, writes, txns and watches as users with and without the permissions
 * (auth-script.ts), run against a real etcd (Debian etcd-server, one member) and against a
 * 3-member tandem cluster (etcdctl given all three endpoints, so tokens made on one member are
 * used on others); the transcripts (stdout, stderr, exit code of every command) must be equal,
 * and tandem's members must end with the same auth store (AuthStatus; etcd 3.4 has no such RPC). Normalized: only clientv3's
 * retry log lines and endpoint addresses (runScript).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { AUTH_SCRIPT, runScript } from './auth-script.js';
import { call, ETCDCTL_MISSING, grpcClients, killCtls } from './clients.js';
import { startCluster } from './cluster.js';
import { ETCD_MISSING, type RealEtcd, startRealEtcd } from './real-etcd-single.js';

const SKIP = ETCDCTL_MISSING || ETCD_MISSING;

describe('etcdctl auth script: tandem answers as etcd does', {
  skip: SKIP,
  timeout: 300_000,
}, () => {
  let etcd: RealEtcd | undefined;
  let cluster: LocalCluster | undefined;

  before(async () => {
    [etcd, cluster] = await Promise.all([
      startRealEtcd('auth'),
      startCluster({ label: 'auth-diff' }),
    ]);
  });

  after(async () => {
    killCtls();
    await Promise.all([etcd?.stop(), cluster?.destroy({ kill: true })]);
  });

  test('the same transcript, command by command', { timeout: 280_000 }, async () => {
    const expected = await runScript([etcd!.endpoint], AUTH_SCRIPT);
    const actual = await runScript(cluster!.endpoints(), AUTH_SCRIPT);
    // Sanity: the script exercises refusals and successes on etcd itself.
    assert.match(expected, /etcdserver: permission denied/);
    assert.match(expected, /etcdserver: user name is empty/);
    assert.match(expected, /Authentication Enabled/);
    const e = expected.split('\n$ ');
    const a = actual.split('\n$ ');
    for (let i = 0; i < Math.max(e.length, a.length); i++) {
      assert.equal(a[i], e[i], `step ${i} differs`);
    }
    // etcd 3.4 has no AuthStatus RPC; tandem's members must at least agree with each other.
    const status = async (endpoint: string) => {
      const clients = grpcClients(endpoint);
      try {
        const r = await call(clients.auth, 'AuthStatus', {});
        return { enabled: r.enabled, authRevision: String(r.authRevision) };
      } finally {
        clients.close();
      }
    };
    await cluster!.waitForCatchUp();
    const [first, ...rest] = cluster!.endpoints();
    const want = await status(first!);
    assert.equal(want.enabled, false);
    for (const endpoint of rest) assert.deepEqual(await status(endpoint), want, endpoint);
  });
});
