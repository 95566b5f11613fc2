/**
 * GET /metrics on the admin port, on real processes (issue 5: "warm standbys' staleness is
 * visible in status and metrics"): 3 voters (n1..n3) and a warm standby (n4, outside the Raft
 * configuration, refreshed every 60 s, the default), each scraped over HTTP and read back by a
 * strict Prometheus text parser.
 *
 * 1. Every member's exposition parses; exactly one member says tandem_raft_is_leader 1 (the one
 *    /status calls leader); each names itself in tandem_member_info and its role.
 * 2. Puts move the commit and applied indexes (leader and followers), real fdatasyncs land in
 *    tandem_wal_fsync_seconds, a serializable read counts as a local read; the warm standby,
 *    not refreshed meanwhile, applies none of it.
 * 3. The warm standby's tandem_standby_staleness_seconds grows with time while it is not
 *    refreshed, and /status shows the same staleness; voters have none.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { type PromFamily, parsePromText, sampleValue } from '../server/prom-text.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

const HTTP_TIMEOUT_MS = 2_000;
const PUTS = 20;
const VOTER_NAMES = ['n1', 'n2', 'n3'];

/** GET /metrics on the member's admin port: status, content type and the parsed families. */
function scrape(m: LocalMember): Promise<Map<string, PromFamily>> {
  return new Promise((resolve, reject) => {
    const req = request(`http://${m.spec.admin}/metrics`, { timeout: HTTP_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => {
        try {
          assert.equal(res.statusCode, 200, body.slice(0, 200));
          assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
          resolve(parsePromText(body));
        } catch (error) {
          reject(error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${m.spec.admin}/metrics timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The member's current role series (the one at 1). */
function roleOf(f: Map<string, PromFamily>): string {
  const on = f.get('tandem_member_role')!.samples.filter((s) => s.value === 1);
  assert.equal(on.length, 1, 'exactly one role series is 1');
  return `${on[0]!.labels.role}/${on[0]!.labels.standby_mode}`;
}

describe('admin GET /metrics on real members', { timeout: 90_000 }, () => {
  let c: LocalCluster;

  before(async () => {
    c = await startCluster({
      label: 'metrics',
      size: 4,
      roles: {
        n1: { role: 'voter' },
        n2: { role: 'voter' },
        n3: { role: 'voter' },
        n4: { role: 'standby', standbyMode: 'warm' },
      },
    });
  });

  after(async () => {
    await c?.destroy({ kill: true });
  });

  test('each member: a valid exposition, one leader, its own name and role', () =>
    c.guard('metrics leader', async () => {
      const leader = await c.leader();
      const scrapes = new Map<LocalMember, Map<string, PromFamily>>();
      for (const m of c.members) scrapes.set(m, await scrape(m));
      const leaders = [...scrapes].filter(([, f]) => sampleValue(f, 'tandem_raft_is_leader') === 1);
      assert.deepEqual(
        leaders.map(([m]) => m.name),
        [leader.name],
      );
      for (const [m, f] of scrapes) {
        // tandem's own series, and etcd's gRPC ones under etcd's names (for etcd dashboards).
        for (const name of f.keys()) {
          assert.ok(/^(tandem_|grpc_server_|etcd_)/.test(name), `${m.name}: ${name}`);
        }
        const info = f.get('tandem_member_info')!.samples;
        assert.equal(info.length, 1);
        assert.equal(info[0]!.labels.name, m.name);
        assert.equal(info[0]!.labels.id, (await m.status()).memberId);
        assert.equal(f.get('tandem_process_cpu_seconds_total')?.type, 'counter');
        assert.equal(sampleValue(f, 'tandem_raft_has_leader'), 1, m.name);
        assert.ok(sampleValue(f, 'tandem_raft_term') >= 1);
      }
      // The leader knows every voter's lag from raft progress (and only members it replicates to).
      const lagged = scrapes
        .get(leader)!
        .get('tandem_replication_lag_entries')!
        .samples.map((s) => s.labels.member);
      for (const name of VOTER_NAMES) assert.ok(lagged.includes(name), `lag of ${name}`);
      assert.ok(lagged.every((n) => n !== undefined && c.members.some((m) => m.name === n)));
      await waitFor('n4 knows it is a warm standby', 15_000, async () =>
        roleOf(await scrape(c.member('n4'))) === 'standby/warm' ? true : null,
      );
      for (const name of VOTER_NAMES) {
        await waitFor(`${name} knows it is a voter`, 15_000, async () =>
          roleOf(await scrape(c.member(name))) === 'voter/' ? true : null,
        );
      }
    }));

  test('puts move commit and applied indexes, fsyncs are timed, local reads counted', () =>
    c.guard('metrics indexes', async () => {
      const leader = await c.leader();
      const follower = c.members.find((m) => m !== leader && VOTER_NAMES.includes(m.name))!;
      // The warm standby's first refresh (due at once: staged as a learner, caught up, then
      // unstaged) is over, as the leader's policy counter and n4's log say: it is back outside,
      // idle.
      const n4Applied = await waitFor('n4 refreshed and idle', 20_000, async () => {
        let unstaged = 0;
        for (const m of c.members) {
          const f = await scrape(m);
          const kinds = f.get('tandem_redundancy_policy_actions_total')!.samples;
          unstaged +=
            kinds.find((s) => s.labels.kind === 'unstage' && s.labels.outcome === 'ok')?.value ?? 0;
        }
        if (unstaged === 0) return null;
        // Its own log says the refresh ended. The leader sends the removal's commit index before
        // it applies the removal (and stops replicating to n4), but under load that message and
        // n4's log line can trail the leader's counter.
        if (!/standby refreshed: outside the configuration again/.test(c.member('n4').log())) {
          return null;
        }
        const a = sampleValue(await scrape(c.member('n4')), 'tandem_raft_applied_index');
        await sleep(500);
        const b = sampleValue(await scrape(c.member('n4')), 'tandem_raft_applied_index');
        return a === b ? a : null;
      });
      // The refresh was routine: it was not removed from the cluster.
      assert.doesNotMatch(c.member('n4').log(), /removed from the cluster/);
      const [l0, f0] = [await scrape(leader), await scrape(follower)];
      const conn = grpcClients(follower.spec.client);
      try {
        for (let i = 0; i < PUTS; i++) {
          await call(conn.kv, 'Put', { key: Buffer.from(`m/${i}`), value: Buffer.from('v') });
        }
        const read = await call(conn.kv, 'Range', { key: Buffer.from('m/0'), serializable: true });
        assert.equal((read.kvs as unknown[]).length, 1);
      } finally {
        conn.close();
      }
      const l1 = await scrape(leader);
      assert.ok(
        sampleValue(l1, 'tandem_raft_commit_index') >=
          sampleValue(l0, 'tandem_raft_commit_index') + PUTS,
      );
      assert.ok(
        sampleValue(l1, 'tandem_raft_applied_index') >=
          sampleValue(l0, 'tandem_raft_applied_index') + PUTS,
      );
      assert.ok(
        sampleValue(l1, 'tandem_wal_fsync_seconds_count') >=
          sampleValue(l0, 'tandem_wal_fsync_seconds_count') + 1,
        'the leader fdatasynced its WAL',
      );
      const f1 = await scrape(follower);
      assert.ok(
        sampleValue(f1, 'tandem_raft_applied_index') >=
          sampleValue(f0, 'tandem_raft_applied_index') + PUTS,
        'the follower applied the puts (it answered them)',
      );
      assert.equal(
        sampleValue(f1, 'tandem_reads_total', { path: 'local' }),
        sampleValue(f0, 'tandem_reads_total', { path: 'local' }) + 1,
      );
      // etcd's gRPC series (go-grpc-prometheus names): the follower's client port served the
      // puts and the read, each counted with its status code and timed.
      const kvCall = (method: string) => ({
        grpc_type: 'unary',
        grpc_service: 'etcdserverpb.KV',
        grpc_method: method,
      });
      const handled = (f: Map<string, PromFamily>, method: string, code: string): number => {
        try {
          return sampleValue(f, 'grpc_server_handled_total', {
            ...kvCall(method),
            grpc_code: code,
          });
        } catch {
          return 0; // no such call yet
        }
      };
      assert.equal(handled(f1, 'Put', 'OK') - handled(f0, 'Put', 'OK'), PUTS);
      assert.equal(handled(f1, 'Range', 'OK') - handled(f0, 'Range', 'OK'), 1);
      assert.ok(
        sampleValue(f1, 'grpc_server_handling_seconds_count', kvCall('Put')) >= PUTS,
        'puts are timed',
      );
      // Outside the configuration, the warm standby got none of it.
      const n4 = await scrape(c.member('n4'));
      assert.equal(sampleValue(n4, 'tandem_raft_applied_index'), n4Applied);
    }));

  test('the warm standby staleness grows while it is not refreshed; /status shows it', () =>
    c.guard('metrics staleness', async () => {
      const n4 = c.member('n4');
      const stale = (f: Map<string, PromFamily>) =>
        sampleValue(f, 'tandem_standby_staleness_seconds', { standby_mode: 'warm' });
      const a = await scrape(n4);
      const t0 = Date.now();
      await sleep(1_500);
      const b = await scrape(n4);
      const elapsedSeconds = (Date.now() - t0) / 1000;
      assert.equal(
        sampleValue(b, 'tandem_raft_applied_index'),
        sampleValue(a, 'tandem_raft_applied_index'),
        'not refreshed meanwhile (snapshotEvery is 60 s)',
      );
      const grew = stale(b) - stale(a);
      assert.ok(grew >= 1.2 && grew <= elapsedSeconds + 0.5, `grew ${grew} s in ${elapsedSeconds}`);
      assert.ok(stale(a) >= 0.5, 'stale since the last refresh, before this test began');
      const status = (await n4.status()) as unknown as { standbyStalenessSeconds: number | null };
      assert.ok(
        status.standbyStalenessSeconds !== null && status.standbyStalenessSeconds >= stale(b),
      );
      for (const name of VOTER_NAMES) {
        const f = await scrape(c.member(name));
        assert.equal(f.get('tandem_standby_staleness_seconds')!.samples.length, 0, name);
        const s = (await c.member(name).status()) as unknown as Record<string, unknown>;
        assert.equal(s.standbyStalenessSeconds, null, name);
      }
    }));
});
