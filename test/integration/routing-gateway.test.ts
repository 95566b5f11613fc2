/**
 * `tandem gateway` as a real process in front of a real 3-member cluster: etcdctl and the etcd3
 * client through it unchanged; writes to the leader and serializable reads spread; two watches
 * on one key share one upstream watch; lease keep-alives go upstream once per lease; a member
 * SIGSTOPped → serializable reads keep flowing within a bound and it is ejected; the leader
 * killed → writes continue; the member under a watch killed mid-stream → every event exactly
 * once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import {
  type LocalCluster,
  type LocalMember,
  MEMBER_START_TIMEOUT_MS,
} from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { call, ctl, ctlOk, ctlStream, ETCDCTL_MISSING, grpcClients, killCtls } from './clients.js';
import { startCluster } from './cluster.js';
import { type GatewayProcess, type GatewayStatus, startGatewayProcess } from './routing-gateway.js';

const TEST_TIMEOUT_MS = 60_000;

describe('tandem gateway', { skip: ETCDCTL_MISSING, timeout: 300_000 }, () => {
  let c: LocalCluster;
  let gw: GatewayProcess;
  const via = (): string[] => [gw.endpoint];

  before(async () => {
    c = await startCluster({ label: 'route-gw' });
    gw = await startGatewayProcess(c);
  });

  after(async () => {
    killCtls();
    await gw?.stop();
    await c?.destroy({ kill: true });
  });

  const memberById = async (hexId: string): Promise<LocalMember> => {
    for (const m of c.members) {
      const s = await m.tryStatus();
      if (s?.memberId === hexId) return m;
    }
    throw new Error(`no running member ${hexId}`);
  };

  const restartDown = async (): Promise<void> => {
    for (const m of c.members) {
      if (m.state === 'paused') m.resume();
      if (m.state === 'down') m.spawn();
    }
    await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
    let last: GatewayStatus | null = null;
    await waitFor('the gateway to see every member ok', 30_000, async () => {
      last = await gw.status();
      return last.members.length === 3 && last.members.every((m) => m.health === 'ok')
        ? true
        : null;
    }).catch((error: Error) => {
      throw new Error(`${error.message}; gateway status ${JSON.stringify(last)}`);
    });
  };

  test('etcdctl through the gateway: kv, txn, lease, member list, endpoint status', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    assert.equal(await ctlOk(via(), ['put', 'g/a', '1']), 'OK\n');
    assert.equal(await ctlOk(via(), ['put', 'g/b', '2']), 'OK\n');
    assert.equal(await ctlOk(via(), ['get', '--prefix', 'g/']), 'g/a\n1\ng/b\n2\n');
    assert.equal(
      await ctlOk(via(), ['get', '--consistency=s', 'g/a', '--print-value-only']),
      '1\n',
    );
    const txn = await ctlOk(via(), ['txn'], 'value("g/a") = "1"\n\nput g/c 3\n\nput g/c 4\n\n');
    assert.match(txn, /SUCCESS/);
    assert.equal(await ctlOk(via(), ['get', 'g/c', '--print-value-only']), '3\n');
    assert.equal(await ctlOk(via(), ['del', 'g/b']), '1\n');
    const grant = await ctlOk(via(), ['lease', 'grant', '30']);
    const id = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
    assert.ok(id !== undefined, grant);
    const ka = await ctlOk(via(), ['lease', 'keep-alive', '--once', id]);
    assert.match(ka, /keepalived with TTL\(\d+\)/);
    assert.match(await ctlOk(via(), ['member', 'list']), /n1.*n2|n2.*n1/s);
    assert.match(await ctlOk(via(), ['endpoint', 'status']), /3\.\d/);
    const bad = await ctl(via(), ['get', '--rev=999999', 'g/a']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /future revision/);
    const s = await gw.status();
    assert.ok((s.decisions.leader ?? 0) > 0, 'writes went to the leader');
    const metrics = await (await fetch(`http://${gw.endpoint}/metrics`)).text();
    assert.match(metrics, /tandem_gateway_routing_decisions_total\{decision="leader"\} [1-9]/);
    assert.match(metrics, /tandem_gateway_member_latency_ewma_ms\{member="n\d"/);
    // What the gateway learns from: a member's status JSON on its client port.
    const member = (await (await fetch(`http://${c.endpoints()[0]}/status`)).json()) as {
      registry: { name: string; role: string; zone: string; clientUrls: string[] }[];
    };
    assert.deepEqual(member.registry.map((m) => `${m.name}:${m.role}:${m.zone}`).sort(), [
      'n1:voter:local',
      'n2:voter:local',
      'n3:voter:local',
    ]);
    assert.ok((s.requests['read:kv.Range'] ?? 0) >= 1, JSON.stringify(s.requests));
  });

  test('the etcd3 client through the gateway: put, serializable get, watch', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const client = new Etcd3({ hosts: `http://${gw.endpoint}` });
    try {
      await client.put('e3/x').value('1');
      assert.equal(await client.get('e3/x').serializable(true).string(), '1');
      const watcher = await client.watch().key('e3/y').create();
      const seen = new Promise<string>((resolve) =>
        watcher.on('put', (kv) => resolve(kv.value.toString())),
      );
      await client.put('e3/y').value('2');
      assert.equal(await seen, '2');
      await watcher.cancel();
    } finally {
      client.close();
    }
  });

  test('two watches on one key share one upstream watch; keep-alives once per lease', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const w1 = ctlStream(via(), ['watch', 'share/k']);
    const w2 = ctlStream(via(), ['watch', 'share/k']);
    try {
      await waitFor('two client watches', 15_000, async () => {
        const s = await gw.status();
        return s.watches.clientWatches >= 2 ? s : null;
      });
      const s = await gw.status();
      assert.equal(s.watches.clientWatches, 2);
      assert.equal(s.watches.upstreamWatches, 1, 'one upstream watch for both');
      await ctlOk(via(), ['put', 'share/k', 'v1']);
      await w1.until((o) => o.includes('v1'));
      await w2.until((o) => o.includes('v1'));
    } finally {
      w1.stop();
      w2.stop();
    }
    // Keep-alives: six clients on one lease at once, coalesced upstream.
    const grant = await ctlOk(via(), ['lease', 'grant', '60']);
    const id = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
    assert.ok(id !== undefined, grant);
    const before = (await gw.status()).leases;
    await Promise.all(
      [1, 2, 3, 4, 5, 6].map(() => ctlOk(via(), ['lease', 'keep-alive', '--once', id])),
    );
    const afterKa = (await gw.status()).leases;
    const clientKa = afterKa.clientKeepAlives - before.clientKeepAlives;
    const upstreamKa = afterKa.upstreamKeepAlives - before.upstreamKeepAlives;
    assert.equal(clientKa, 6);
    assert.ok(upstreamKa < clientKa, `upstream ${upstreamKa} < client ${clientKa}`);
  });

  test('a watch from a compacted revision is cancelled with the compact revision', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const first = await ctlOk(via(), ['put', 'cmp/k', 'a', '-w', 'json']);
    const rev = Number(/"revision":(\d+)/.exec(first)?.[1]);
    await ctlOk(via(), ['put', 'cmp/k', 'b']);
    const last = await ctlOk(via(), ['put', 'cmp/k', 'c', '-w', 'json']);
    const compactAt = Number(/"revision":(\d+)/.exec(last)?.[1]);
    await ctlOk(via(), ['compaction', String(compactAt)]);
    const r = await ctl(via(), ['watch', `--rev=${rev}`, 'cmp/k']);
    assert.match(`${r.stdout}${r.stderr}`, /compacted/);
    // From the compact revision on, the watch works and sees what follows.
    const w = ctlStream(via(), ['watch', `--rev=${compactAt}`, 'cmp/k']);
    try {
      await w.until((o) => o.includes('\nc\n') || o.startsWith('PUT\ncmp/k\nc'));
    } finally {
      w.stop();
    }
  });

  test('a member SIGSTOPped: serializable reads keep flowing within a bound; it is ejected', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const s0 = await gw.status();
    const victimInfo = s0.members.find((m) => m.id !== s0.leaderId)!;
    const victim = await memberById(victimInfo.id);
    const { kv } = grpcClients(gw.endpoint);
    await call(kv, 'Put', { key: Buffer.from('slow/k'), value: Buffer.from('v') });
    const picksBefore = (await gw.status()).members.find((m) => m.id === victimInfo.id)!.picks;
    victim.pause();
    try {
      const latencies: number[] = [];
      const deadlineMs = Date.now() + 8_000;
      for (let i = 0; i < 200 && Date.now() < deadlineMs; i++) {
        const t0 = performance.now();
        const r = (await call(kv, 'Range', { key: Buffer.from('slow/k'), serializable: true })) as {
          kvs: { value: Buffer }[];
        };
        latencies.push(performance.now() - t0);
        assert.equal(r.kvs[0]?.value.toString(), 'v');
      }
      latencies.sort((a, b) => a - b);
      const max = latencies[latencies.length - 1]!;
      assert.ok(latencies.length >= 50, `${latencies.length} reads`);
      // A read sent to the stopped member is hedged to another after the hedge delay (≤ 500 ms).
      assert.ok(max < 1_500, `slowest read ${max.toFixed(0)} ms with a member stopped`);
      // Routed around: ejected, or avoided once a request to it stalled (peak EWMA counts the
      // age of a request still out, so the router need not eject a member it no longer picks).
      const s = await gw.status();
      const v = s.members.find((m) => m.id === victimInfo.id)!;
      const picksWhileStopped = v.picks - picksBefore;
      assert.ok(
        v.health !== 'ok' || v.ejections > 0 || picksWhileStopped <= 3,
        `the stopped member is ejected or avoided: ${picksWhileStopped} picks of ${latencies.length} reads; ${JSON.stringify(v)}`,
      );
    } finally {
      victim.resume();
      kv.close();
    }
    await restartDown();
  });

  test('the leader killed: writes through the gateway continue', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // The leader as the members say (the gateway's view may lag an election it was not told of:
    // a write it sends to a former leader is forwarded, and succeeds).
    const leader = await c.leader();
    const leaderId = (await leader.status()).memberId;
    const { kv } = grpcClients(gw.endpoint);
    try {
      await call(kv, 'Put', { key: Buffer.from('fail/0'), value: Buffer.from('0') });
      await leader.kill();
      let ok = 0;
      let failed = 0;
      const t0 = Date.now();
      let firstOkAfterMs = -1;
      for (let i = 1; i <= 400 && ok < 20 && Date.now() - t0 < 30_000; i++) {
        try {
          await call(kv, 'Put', { key: Buffer.from(`fail/${i}`), value: Buffer.from(String(i)) });
          if (firstOkAfterMs < 0) firstOkAfterMs = Date.now() - t0;
          ok++;
        } catch {
          failed++;
          await sleep(50);
        }
      }
      assert.equal(ok, 20, `writes continue after the leader died (${failed} failed)`);
      assert.ok(firstOkAfterMs < 15_000, `first write ${firstOkAfterMs} ms after the kill`);
      await waitFor('the gateway to follow the new leader', 15_000, async () => {
        const s = await gw.status();
        return s.leaderId !== null && s.leaderId !== leaderId ? true : null;
      });
    } finally {
      kv.close();
    }
    await restartDown();
  });

  test('the member under a watch killed mid-stream: every event exactly once', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const w = ctlStream(via(), ['watch', '--prefix', 'once/']);
    const { kv } = grpcClients(gw.endpoint);
    const TOTAL = 120;
    try {
      await waitFor('the watch to open', 15_000, async () =>
        (await gw.status()).watches.clientWatches >= 1 ? true : null,
      );
      const resumesBefore = (await gw.status()).watches.resumes;
      let killed = false;
      const put = async (key: string, value: string): Promise<void> => {
        for (let attempt = 0; ; attempt++) {
          try {
            await call(kv, 'Put', { key: Buffer.from(key), value: Buffer.from(value) });
            return;
          } catch (error) {
            if (attempt >= 100) throw error;
            await sleep(100);
            // A put lost with its member may have applied: never write it twice.
            try {
              const r = (await call(kv, 'Range', { key: Buffer.from(key) })) as { count: string };
              if (Number(r.count) > 0) return;
            } catch {}
          }
        }
      };
      for (let i = 0; i < TOTAL; i++) {
        await put(`once/${String(i).padStart(4, '0')}`, String(i));
        if (i === 40) {
          // Kill the member the upstream watch is on (the leader too: writes go on after it).
          const upstream = await watchMember();
          assert.ok(upstream !== null, 'the upstream watch is on a member');
          await (await memberById(upstream)).kill();
          killed = true;
        }
      }
      const out = await w.until(
        (o) => o.includes(`once/${String(TOTAL - 1).padStart(4, '0')}`),
        30_000,
      );
      const keys = [...out.matchAll(/^(once\/\d{4})$/gm)].map((m) => m[1]!);
      const expected = Array.from(
        { length: TOTAL },
        (_, i) => `once/${String(i).padStart(4, '0')}`,
      );
      assert.deepEqual(keys, expected, 'each put seen once, in order');
      assert.ok(killed);
      const s = await gw.status();
      assert.ok(s.watches.resumes > resumesBefore, 'the watch resumed on another member');
    } finally {
      w.stop();
      kv.close();
    }
  });

  /** The member the gateway's (one) upstream watch is on, from /status. */
  async function watchMember(): Promise<string | null> {
    const s = (await gw.status()) as unknown as { watches: { members?: Record<string, number> } };
    const members = Object.entries(s.watches.members ?? {});
    return members.length === 0 ? null : members[0]![0];
  }
});
