/**
 * The client port's HTTP side against a real 3-member cluster, with plain fetch and node:http:
 * /version, /health, /metrics, the JSON gateway (KV, lease, watch, cluster, maintenance, an
 * etcd error body), Patroni's own sequence of requests (patroni/dcs/etcd3.py), and the real
 * etcdctl speaking gRPC to the same port in the same test.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { ctlOk, ETCDCTL_MISSING, killCtls } from './clients.js';
import { startCluster } from './cluster.js';

const TEST_TIMEOUT_MS = 30_000;
const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

// biome-ignore lint/suspicious/noExplicitAny: JSON of many shapes, each checked by an assertion
type Json = Record<string, any>;

async function post(base: string, path: string, body: unknown): Promise<Json> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Json;
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(json)}`);
  return json;
}

/** A streaming POST read line by line (node:http, as Patroni's urllib3 reads it). */
function openStream(base: string, path: string, body: unknown) {
  const url = new URL(`${base}${path}`);
  const lines: Json[] = [];
  let waiter: (() => void) | null = null;
  const req = request({ host: url.hostname, port: url.port, path, method: 'POST' }, (res) => {
    assert.equal(res.statusCode, 200);
    let rest = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      rest += chunk;
      let i = rest.indexOf('\n');
      while (i >= 0) {
        lines.push(JSON.parse(rest.slice(0, i)) as Json);
        rest = rest.slice(i + 1);
        i = rest.indexOf('\n');
      }
      waiter?.();
    });
  });
  req.on('error', () => {});
  req.end(JSON.stringify(body));
  return {
    lines,
    /** The next line matching `pred`, waiting for it. */
    async next(pred: (line: Json) => boolean): Promise<Json> {
      for (;;) {
        const found = lines.find(pred);
        if (found !== undefined) return found;
        await new Promise<void>((resolve) => {
          waiter = resolve;
        });
      }
    },
    close: () => req.destroy(),
  };
}

describe('HTTP and JSON on the client port of a 3-member cluster', { timeout: 150_000 }, () => {
  let c: LocalCluster;
  let bases: string[];

  before(async () => {
    c = await startCluster({ label: 'gateway' });
    bases = c.endpoints().map((e) => `http://${e}`);
  });

  after(async () => {
    killCtls();
    await c?.destroy({ kill: true });
  });

  test('/version, /health and /metrics on every member', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('basics', async () => {
      for (const base of bases) {
        const version = await fetch(`${base}/version`);
        assert.equal(version.status, 200);
        const v = (await version.json()) as Json;
        assert.match(v.etcdserver, /^3\.\d+\.\d+$/);
        assert.match(v.etcdcluster, /^3\.\d+\.0$/);
        const status = await post(base, '/v3beta/maintenance/status', {});
        assert.equal(status.version, v.etcdserver, 'the version Maintenance.Status reports');
        const health = await fetch(`${base}/health`);
        assert.equal(health.status, 200);
        assert.deepEqual(await health.json(), { health: 'true', reason: '' });
        const metrics = await fetch(`${base}/metrics`);
        assert.equal(metrics.status, 200);
        assert.match(await metrics.text(), /^tandem_raft_term /m);
        assert.equal((await fetch(`${base}/version`, { method: 'POST' })).status, 405);
        assert.equal((await fetch(`${base}/v3/kv/range`)).status, 405);
        assert.equal((await fetch(`${base}/v3/kv/nothing`, { method: 'POST' })).status, 404);
      }
    }),
  );

  test(
    'KV: put, range, txn, deleterange, compaction; a compacted read gets etcd’s error',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('kv', async () => {
        const [b1, b2, b3] = bases as [string, string, string];
        const put = await post(b1, '/v3/kv/put', { key: b64('gw/a'), value: b64('1') });
        const rev1 = put.header.revision as string;
        assert.match(rev1, /^\d+$/, 'revisions are decimal strings');
        assert.match(put.header.cluster_id, /^\d+$/);
        const put2 = await post(b2, '/v3/kv/put', {
          key: b64('gw/a'),
          value: b64('2'),
          prev_kv: true,
        });
        assert.equal(unb64(put2.prev_kv.value), '1');
        const range = await post(b3, '/v3/kv/range', { key: b64('gw/'), range_end: b64('gw0') });
        assert.equal(range.count, '1');
        assert.equal(range.kvs[0].key, b64('gw/a'));
        assert.equal(range.kvs[0].value, b64('2'));
        assert.equal(range.kvs[0].version, '2');
        assert.equal(range.kvs[0].create_revision, rev1);
        assert.equal(range.header.revision, put2.header.revision);
        const old = await post(b2, '/v3/kv/range', { key: b64('gw/a'), revision: rev1 });
        assert.equal(unb64(old.kvs[0].value), '1');
        const missing = await post(b1, '/v3/kv/range', { key: b64('gw/none') });
        assert.equal(missing.kvs, undefined, 'empty lists are left out');
        assert.equal(missing.count, undefined, 'zero counts are left out');

        const swap = {
          compare: [{ key: b64('gw/a'), target: 'VALUE', result: 'EQUAL', value: b64('2') }],
          success: [{ request_put: { key: b64('gw/a'), value: b64('3') } }],
          failure: [{ request_range: { key: b64('gw/a') } }],
        };
        const won = await post(b3, '/v3/kv/txn', swap);
        assert.equal(won.succeeded, true);
        assert.ok(won.responses[0].response_put !== undefined);
        const lost = await post(b1, '/v3/kv/txn', swap);
        assert.equal(lost.succeeded, undefined, 'false is left out');
        assert.equal(unb64(lost.responses[0].response_range.kvs[0].value), '3');

        const deleted = await post(b2, '/v3/kv/deleterange', { key: b64('gw/a') });
        assert.equal(deleted.deleted, '1');
        await post(b1, '/v3/kv/compaction', { revision: deleted.header.revision, physical: true });
        const res = await fetch(`${b3}/v3/kv/range`, {
          method: 'POST',
          body: JSON.stringify({ key: b64('gw/a'), revision: rev1 }),
        });
        assert.equal(res.status, 400);
        const message = 'etcdserver: mvcc: required revision has been compacted';
        assert.deepEqual(await res.json(), { error: message, code: 11, message });
        const bad = await fetch(`${b3}/v3/kv/range`, { method: 'POST', body: '{"key":' });
        assert.equal(bad.status, 400);
        assert.equal(((await bad.json()) as Json).code, 3);
      }),
  );

  test('leases: grant, keepalive, timetolive, leases, revoke', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('lease', async () => {
      const [b1, b2, b3] = bases as [string, string, string];
      const grant = await post(b1, '/v3/lease/grant', { TTL: 60 });
      const id = grant.ID as string;
      assert.match(id, /^\d+$/);
      assert.equal(grant.TTL, '60');
      await post(b2, '/v3/kv/put', { key: b64('gw/leased'), value: b64('x'), lease: id });
      const kept = await post(b2, '/v3/lease/keepalive', { ID: id });
      assert.equal(kept.result.ID, id);
      assert.equal(kept.result.TTL, '60');
      const ttl = await post(b3, '/v3/kv/lease/timetolive', { ID: id, keys: true });
      assert.equal(ttl.grantedTTL, '60');
      assert.deepEqual(ttl.keys, [b64('gw/leased')]);
      const leases = await post(b3, '/v3/lease/leases', {});
      assert.ok(leases.leases.some((l: Json) => l.ID === id));
      await post(b1, '/v3/lease/revoke', { ID: id });
      const gone = await post(b2, '/v3/kv/range', { key: b64('gw/leased') });
      assert.equal(gone.kvs, undefined, 'the leased key went with its lease');
    }),
  );

  test(
    'a watch stream receives a put made through another member',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('watch', async () => {
        const [b1, b2] = bases as [string, string];
        const watch = openStream(b1, '/v3/watch', {
          create_request: { key: b64('gw/w/'), range_end: b64('gw/w0'), prev_kv: true },
        });
        try {
          const created = await watch.next((l) => l.result?.created === true);
          assert.ok(created.result.header.revision);
          await post(b2, '/v3/kv/put', { key: b64('gw/w/1'), value: b64('v') });
          const event = await watch.next((l) => l.result?.events !== undefined);
          assert.equal(event.result.events[0].kv.key, b64('gw/w/1'));
          assert.equal(event.result.events[0].type, undefined, 'PUT is the default: left out');
        } finally {
          watch.close();
        }
      }),
  );

  test('cluster member list and maintenance status', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('cluster', async () => {
      const list = await post(bases[1]!, '/v3/cluster/member/list', {});
      assert.equal(list.members.length, 3);
      const urls = list.members.flatMap((m: Json) => m.clientURLs as string[]);
      for (const e of c.endpoints())
        assert.ok(
          urls.some((u: string) => u.endsWith(e)),
          e,
        );
      const status = await post(bases[2]!, '/v3/maintenance/status', {});
      assert.ok(
        list.members.some((m: Json) => m.ID === status.leader),
        'a member leads',
      );
    }),
  );

  test(
    'Patroni’s sequence (patroni/dcs/etcd3.py): GET /version, then its /v3 requests',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('patroni', async () => {
        const base = bases[0]!;
        // _ensure_version_prefix: GET /version; a cluster version >= 3.4 selects /v3.
        const v = (await (await fetch(`${base}/version`)).json()) as Json;
        const [major, minor] = (v.etcdcluster as string).split('.').map(Number);
        assert.ok(major === 3 && minor! >= 4, v.etcdcluster);
        const prefix = '/v3';
        const scope = '/service/batman/';
        const leader = `${scope}leader`;
        // KVCache._build_cache: a serializable prefix range.
        const cache = await post(base, `${prefix}/kv/range`, {
          key: b64(scope),
          range_end: b64('/service/batman0'),
          serializable: true,
        });
        const { cluster_id, raft_term, revision } = cache.header;
        assert.ok(cluster_id && raft_term && revision);
        // lease_grant returns ['ID']
        const ttl = 30;
        const id = (await post(base, `${prefix}/lease/grant`, { TTL: ttl })).ID as string;
        // put with lease (create the leader key)
        await post(base, `${prefix}/kv/put`, {
          key: b64(leader),
          value: b64('postgresql0'),
          lease: id,
        });
        const got = await post(base, `${prefix}/kv/range`, {
          key: b64(leader),
          serializable: true,
        });
        const mod = got.kvs[0].mod_revision as string;
        // update_leader: txn compare-and-swap on mod_revision
        const cas = await post(base, `${prefix}/kv/txn`, {
          compare: [{ target: 'MOD', mod_revision: mod, key: b64(leader) }],
          success: [{ request_put: { key: b64(leader), value: b64('postgresql0'), lease: id } }],
        });
        assert.equal(cas.succeeded, true);
        // lease_keepalive reads ['result']['TTL']
        const kept = await post(base, `${prefix}/lease/keepalive`, { ID: id });
        assert.equal(kept.result.TTL, String(ttl));
        // watchprefix from the cache's revision: create_request with start_revision and filters
        const watch = openStream(base, `${prefix}/watch`, {
          create_request: {
            key: b64(scope),
            range_end: b64('/service/batman0'),
            start_revision: revision,
            filters: [],
          },
        });
        try {
          const seen = await watch.next((l) =>
            (l.result?.events ?? []).some((e: Json) => e.kv.key === b64(leader)),
          );
          const event = seen.result.events.find((e: Json) => e.kv.key === b64(leader));
          assert.equal(unb64(event.kv.value), 'postgresql0');
          assert.match(event.kv.mod_revision, /^\d+$/);
          assert.equal(seen.result.header.cluster_id, cluster_id);
        } finally {
          watch.close();
        }
        // _get_members: clientURLs of every member
        const members = await post(base, `${prefix}/cluster/member/list`, {});
        const urls = members.members.flatMap((m: Json) => m.clientURLs ?? []);
        assert.equal(urls.length, 3);
      }),
  );

  test(
    'gRPC on the same port, in the same test: etcdctl reads what JSON wrote',
    {
      timeout: TEST_TIMEOUT_MS,
      skip: ETCDCTL_MISSING,
    },
    () =>
      c.guard('etcdctl', async () => {
        const endpoint = c.endpoints()[0]!;
        await post(`http://${endpoint}`, '/v3/kv/put', { key: b64('gw/both'), value: b64('json') });
        assert.equal(await ctlOk([endpoint], ['get', 'gw/both']), 'gw/both\njson\n');
        assert.equal(await ctlOk([endpoint], ['put', 'gw/both', 'grpc']), 'OK\n');
        const back = await post(`http://${endpoint}`, '/v3/kv/range', { key: b64('gw/both') });
        assert.equal(unb64(back.kvs[0].value), 'grpc');
        assert.equal((await fetch(`http://${endpoint}/version`)).status, 200);
      }),
  );
});
