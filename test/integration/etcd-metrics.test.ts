/**
 * The series an etcd operator's Grafana board reads, on real members (issue 15, "Metrics that
 * answer an operator's questions"): 3 voters over real TCP, scraped over HTTP after traffic.
 *
 * 1. After puts through a follower: bytes sent by the leader to the follower and received by
 *    the follower from it grew; every member timed round trips to both peers; applies were
 *    timed on leader and follower; etcd's fsync name counts what tandem's counts; the KV
 *    store's bytes in use are positive and within its file (in /metrics and etcd's Status
 *    RPC); the event-loop window gauges are ordered; no proposal failed.
 * 2. A proposal that cannot reach the leader (the follower's outbound links dropped, test
 *    mode) times out and is counted in etcd_server_proposals_failed_total, on that member only.
 * 3. Every query of the Grafana dashboard (deploy/grafana/tandem.json) names only metrics these
 *    members export (a family, or a sample name such as a histogram's _bucket).
 * 4. The admin port's probes (the Kubernetes manifests in deploy/k8s use them): /ready is 200
 *    while a leader is known and 503 "no leader" on a member left alone; /health stays 200.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { adminRequest, waitFor } from '../../src/cli/local-net.js';
import { dashboardExpressions, metricNames } from '../deploy/promql.js';
import type { PromFamily } from '../server/prom-text.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';
import { scrapeAdmin, valueOr0 } from './scrape.js';

const PUTS = 30;
/** A put the leader never hears of fails after the member's request timeout (5 s). */
const STUCK_PUT_DEADLINE_MS = 15_000;

const scrape = (m: LocalMember) => scrapeAdmin(m.spec.admin);

describe('etcd-named operator metrics on real members', { timeout: 120_000 }, () => {
  let c: LocalCluster;
  const ids = new Map<LocalMember, string>();

  before(async () => {
    c = await startCluster({
      label: 'etcd-metrics',
      size: 3,
      extraConfig: { testMode: { faultInjection: true } },
    });
    for (const m of c.members) ids.set(m, (await m.status()).memberId);
  });

  after(async () => {
    await c?.destroy({ kill: true });
  });

  test('traffic moves bytes, round trips and apply durations; nothing failed', () =>
    c.guard('etcd metrics traffic', async () => {
      const leader = await c.leader();
      const follower = c.members.find((m) => m !== leader)!;
      const [l0, f0] = [await scrape(leader), await scrape(follower)];
      const conn = grpcClients(follower.spec.client);
      try {
        for (let i = 0; i < PUTS; i++) {
          await call(conn.kv, 'Put', { key: Buffer.from(`em/${i}`), value: Buffer.alloc(512) });
        }
        // etcd's Status RPC carries the same in-use figure (etcdctl endpoint status -w json).
        const status = await call(conn.maintenance, 'Status', {});
        const [dbSize, inUse] = [Number(status.dbSize), Number(status.dbSizeInUse)];
        assert.ok(inUse > 0 && inUse <= dbSize, `Status: ${inUse} in use of ${dbSize}`);
      } finally {
        conn.close();
      }
      const sent = (f: Map<string, PromFamily>) =>
        valueOr0(f, 'etcd_network_peer_sent_bytes_total', { To: ids.get(follower)! });
      const received = (f: Map<string, PromFamily>) =>
        valueOr0(f, 'etcd_network_peer_received_bytes_total', { From: ids.get(leader)! });
      const [l1, f1] = [await scrape(leader), await scrape(follower)];
      assert.ok(sent(l1) >= sent(l0) + PUTS * 512, `leader sent ${sent(l0)} -> ${sent(l1)}`);
      assert.ok(received(f1) >= received(f0) + PUTS * 512, `follower got ${received(f1)}`);
      // Counters of both directions: the follower sent its acknowledgements to the leader.
      assert.ok(valueOr0(f1, 'etcd_network_peer_sent_bytes_total', { To: ids.get(leader)! }) > 0);
      for (const [f, who] of [
        [l1, leader],
        [f1, follower],
      ] as const) {
        const applied = (x: Map<string, PromFamily>) =>
          valueOr0(x, 'etcd_server_apply_duration_seconds_count');
        assert.ok(applied(f) >= PUTS, `${who.name} timed ${applied(f)} applies`);
        assert.ok(valueOr0(f, 'etcd_server_apply_duration_seconds_sum') > 0);
        assert.equal(
          valueOr0(f, 'etcd_disk_wal_fsync_duration_seconds_count'),
          valueOr0(f, 'tandem_wal_fsync_seconds_count'),
        );
        assert.ok(valueOr0(f, 'etcd_disk_wal_fsync_duration_seconds_count') >= 1);
        const inUse = valueOr0(f, 'etcd_mvcc_db_total_size_in_use_in_bytes');
        const total = valueOr0(f, 'etcd_mvcc_db_total_size_in_bytes');
        assert.ok(inUse > 0 && inUse <= total, `${who.name}: in use ${inUse} of ${total}`);
        assert.equal(valueOr0(f, 'etcd_server_proposals_failed_total'), 0);
        assert.ok(f.has('etcd_server_proposals_failed_total'), 'exported at 0');
      }
      // Every member times round trips to each of its two peers (a PING a second).
      for (const m of c.members) {
        await waitFor(`${m.name} timed round trips to both peers`, 10_000, async () => {
          const f = await scrape(m);
          const peers = c.members.filter((p) => p !== m);
          const counts = peers.map((p) =>
            valueOr0(f, 'etcd_network_peer_round_trip_time_seconds_count', { To: ids.get(p)! }),
          );
          if (counts.some((n) => n < 1)) return null;
          const sum = valueOr0(f, 'etcd_network_peer_round_trip_time_seconds_sum', {
            To: ids.get(peers[0]!)!,
          });
          assert.ok(
            sum > 0 && sum / counts[0]! < 1,
            `loopback round trips: mean ${sum / counts[0]!} s`,
          );
          return true;
        });
        const f = await scrape(m);
        const [p50, p99, max] = ['p50', 'p99', 'max'].map((q) =>
          valueOr0(f, `tandem_event_loop_delay_${q}_seconds`),
        ) as [number, number, number];
        assert.ok(0 <= p50 && p50 <= p99 && p99 <= max && max < 10, `${p50} ${p99} ${max}`);
      }
    }));

  test('a proposal the leader never hears of times out and is counted as failed', () =>
    c.guard('etcd metrics failed proposal', async () => {
      const leader = await c.leader();
      const follower = c.members.find((m) => m !== leader)!;
      const others = c.members.filter((m) => m !== follower);
      await adminRequest(follower.spec.admin, 'POST', '/faults', {
        links: others.map((m) => ({ peer: m.name, dropRate: 1 })),
      });
      const conn = grpcClients(follower.spec.client);
      try {
        await assert.rejects(
          call(
            conn.kv,
            'Put',
            { key: Buffer.from('em/stuck'), value: Buffer.from('x') },
            STUCK_PUT_DEADLINE_MS,
          ),
          /timed out/,
        );
      } finally {
        conn.close();
        await adminRequest(follower.spec.admin, 'DELETE', '/faults');
      }
      assert.equal(valueOr0(await scrape(follower), 'etcd_server_proposals_failed_total'), 1);
      for (const m of others) {
        assert.equal(valueOr0(await scrape(m), 'etcd_server_proposals_failed_total'), 0, m.name);
      }
    }));

  test('every Grafana panel query names only metrics these members export', () =>
    c.guard('grafana names', async () => {
      const exported = new Set<string>();
      for (const m of c.members) {
        for (const family of (await scrape(m)).values()) {
          exported.add(family.name);
          for (const sample of family.samples) exported.add(sample.name);
        }
      }
      const dashboard: unknown = JSON.parse(
        readFileSync(new URL('../../deploy/grafana/tandem.json', import.meta.url), 'utf8'),
      );
      const queries = dashboardExpressions(dashboard);
      assert.ok(queries.length >= 30, `${queries.length} queries`);
      const unknown: string[] = [];
      for (const q of queries) {
        for (const name of metricNames(q.expr)) {
          if (!exported.has(name)) unknown.push(`${q.where}: ${name}`);
        }
      }
      assert.deepEqual(unknown, [], 'names no member exports');
    }));

  test('/ready follows the leader, /health the process (the probes of deploy/k8s)', () =>
    c.guard('probes', async () => {
      type Probe = { status: number; body: unknown };
      const probe = async (m: LocalMember, path: string): Promise<Probe> => {
        const res = await fetch(`http://${m.spec.admin}${path}`);
        return { status: res.status, body: await res.json() };
      };
      for (const m of c.members) {
        assert.deepEqual(await probe(m, '/ready'), { status: 200, body: { ready: true } });
      }
      const [survivor, ...others] = c.members as [LocalMember, ...LocalMember[]];
      for (const m of others) await m.kill();
      const notReady = await waitFor('the survivor is not ready', 15_000, async () => {
        const p = await probe(survivor, '/ready');
        return p.status === 503 ? p : null;
      });
      assert.deepEqual(notReady.body, { ready: false, reason: 'no leader' });
      assert.deepEqual(await probe(survivor, '/health'), {
        status: 200,
        body: { health: 'true' },
      });
    }));
});
