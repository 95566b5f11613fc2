/**
 * The `etcd3` npm client, unchanged, against a real 3-member cluster: KV, txn, watch, leases with
 * keep-alive, its lock and election recipes, and failover when the Raft leader is killed -9
 * while the client keeps writing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3, EtcdLockFailedError, type IKeyValue } from 'etcd3';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { startCluster } from './cluster.js';

const TEST_TIMEOUT_MS = 30_000;
/** Every unary call of the client is bounded (streams are not). */
const CALL_DEADLINE_MS = 2_000;
/** A kill -9 of the leader: election (1 s timeout) plus client retries and backoff. */
const FAILOVER_MAX_MS = 8_000;

function client(hosts: readonly string[]): Etcd3 {
  return new Etcd3({
    hosts: hosts.map((h) => `http://${h}`),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
  });
}

describe('etcd3 client against a 3-member cluster', { timeout: 150_000 }, () => {
  let c: LocalCluster;
  const clients: Etcd3[] = [];
  const open = (hosts: readonly string[]): Etcd3 => {
    const e = client(hosts);
    clients.push(e);
    return e;
  };

  before(async () => {
    c = await startCluster({ label: 'etcd3' });
  });

  after(async () => {
    for (const e of clients) e.close();
    await c?.destroy({ kill: true });
  });

  test('put, get, delete, prefix, txn', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('kv', async () => {
      const [a, b] = [open([c.members[0]!.spec.client]), open([c.members[1]!.spec.client])];
      await a.put('greeting').value('hello');
      assert.equal(await b.get('greeting').string(), 'hello');
      for (const k of ['p/a', 'p/b', 'p/c']) await a.put(k).value(`v-${k}`);
      assert.deepEqual(await b.getAll().prefix('p/').strings(), {
        'p/a': 'v-p/a',
        'p/b': 'v-p/b',
        'p/c': 'v-p/c',
      });
      assert.equal(await b.getAll().prefix('p/').count(), 3);
      assert.equal((await b.delete().prefix('p/')).deleted, '3');
      assert.equal(await a.getAll().prefix('p/').count(), 0);

      const swap = () =>
        b.if('greeting', 'Value', '==', 'hello').then(b.put('greeting').value('bye')).commit();
      assert.equal((await swap()).succeeded, true);
      assert.equal((await swap()).succeeded, false);
      assert.equal(await a.get('greeting').string(), 'bye');
      assert.equal((await a.delete().key('greeting')).deleted, '1');
    }),
  );

  test('watch on one member sees writes through another', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('watch', async () => {
      const watcher = open([c.members[2]!.spec.client]);
      const writer = open([c.members[0]!.spec.client]);
      const w = await watcher.watch().prefix('w/').create();
      const seen: string[] = [];
      w.on('put', (kv: IKeyValue) => seen.push(`put ${kv.key} ${kv.value}`));
      w.on('delete', (kv: IKeyValue) => seen.push(`delete ${kv.key}`));
      try {
        await writer.put('w/1').value('a');
        await writer.put('w/2').value('b');
        await writer.delete().key('w/1');
        await waitFor('three watch events', 10_000, () => (seen.length >= 3 ? true : null));
        assert.deepEqual(seen, ['put w/1 a', 'put w/2 b', 'delete w/1']);
      } finally {
        await w.cancel();
      }
    }),
  );

  test(
    'lease with keep-alive outlives its TTL; revoke deletes its keys',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('lease', async () => {
        const leader = await c.leader();
        // Through a follower: keep-alives are forwarded to the leader.
        const e = open([c.followers(leader)[0]!.spec.client]);
        const lease = e.lease(2);
        let keptAlive = 0;
        lease.on('keepaliveSucceeded', () => {
          keptAlive++;
        });
        let lost = false;
        lease.on('lost', () => {
          lost = true;
        });
        await lease.put('leased/k').value('v');
        await sleep(4_500); // more than twice the TTL
        assert.equal(lost, false);
        assert.ok(keptAlive >= 2, `keep-alives: ${keptAlive}`);
        assert.equal(await e.get('leased/k').string(), 'v');
        await lease.revoke();
        for (const m of c.members) {
          const r = open([m.spec.client]);
          assert.equal(await r.get('leased/k').string(), null, `gone on ${m.name}`);
        }
      }),
  );

  test('lock: two contenders never hold it at once', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('lock', async () => {
      const contenders = [open([c.members[0]!.spec.client]), open([c.members[1]!.spec.client])];
      let holders = 0;
      let holdersMax = 0;
      const acquired = [0, 0];
      const rounds = 4;
      const deadline = Date.now() + 20_000;
      await Promise.all(
        contenders.map(async (e, i) => {
          while (acquired[i]! < rounds && Date.now() < deadline) {
            try {
              await e
                .lock('shared-resource')
                .ttl(5)
                .do(async () => {
                  holders++;
                  holdersMax = Math.max(holdersMax, holders);
                  acquired[i]!++;
                  await sleep(150);
                  holders--;
                });
            } catch (error) {
              if (!(error instanceof EtcdLockFailedError)) throw error;
              await sleep(20 + Math.floor(Math.random() * 30));
            }
          }
        }),
      );
      assert.deepEqual(acquired, [rounds, rounds]);
      assert.equal(holdersMax, 1, 'mutual exclusion');
    }),
  );

  test(
    'election: campaign, observe the leader, resign hands over',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('election', async () => {
        const [a, b, o] = [
          open([c.members[0]!.spec.client]),
          open([c.members[1]!.spec.client]),
          open([c.members[2]!.spec.client]),
        ];
        const first = a.election('singer', 5).campaign('alice');
        await new Promise<void>((resolve, reject) => {
          first.once('elected', () => resolve());
          first.once('error', reject);
        });
        const observer = await o.election('singer', 5).observe();
        try {
          assert.equal(observer.leader(), 'alice');
          const second = b.election('singer', 5).campaign('bob');
          second.on('error', () => {});
          let bobElected = false;
          second.once('elected', () => {
            bobElected = true;
          });
          await sleep(500);
          assert.equal(bobElected, false, 'only one leader at a time');
          const changes: string[] = [];
          observer.on('change', (leader) => changes.push(String(leader)));
          await first.resign();
          await waitFor('bob to be elected and observed', 10_000, () =>
            bobElected && changes.includes('bob') ? true : null,
          );
          assert.equal(await o.election('singer').leader(), 'bob');
          await second.resign();
        } finally {
          await observer.cancel();
        }
      }),
  );

  test(
    'failover: kill -9 the leader while writing; writes resume within seconds',
    {
      timeout: 60_000,
    },
    () =>
      c.guard('failover', async () => {
        const e = open(c.endpoints());
        const acked: { key: string; at: number }[] = [];
        let stop = false;
        let attempts = 0;
        const writer = (async () => {
          for (let i = 0; !stop && i < 100_000; i++) {
            const key = `fo/${String(i).padStart(6, '0')}`;
            attempts++;
            try {
              await e.put(key).value(String(i));
              acked.push({ key, at: Date.now() });
            } catch {
              await sleep(50); // a failed attempt: the key may or may not exist
            }
          }
        })();
        try {
          await waitFor('writes before the kill', 10_000, () => (acked.length >= 20 ? true : null));
          const leader = await c.leader();
          const killedAt = Date.now();
          await leader.kill();
          const resumed = await waitFor(
            'a write acknowledged after the kill',
            FAILOVER_MAX_MS,
            () => acked.find((a) => a.at > killedAt + 50) ?? null,
          );
          await waitFor('more writes after the kill', 10_000, () =>
            acked.filter((a) => a.at > killedAt).length >= 20 ? true : null,
          );
          stop = true;
          await writer;
          const gapMs = resumed.at - killedAt;
          assert.ok(gapMs < FAILOVER_MAX_MS, `writes resumed after ${gapMs} ms`);
          const newLeader = await c.leader();
          assert.notEqual(newLeader, leader);
          // Every acknowledged write survived the failover.
          const survivors = open([newLeader.spec.client]);
          const keys = new Set(await survivors.getAll().prefix('fo/').keys());
          for (const a of acked) assert.ok(keys.has(a.key), `acknowledged ${a.key} lost`);
          assert.ok(keys.size <= attempts);
        } finally {
          stop = true;
          await writer;
        }
      }),
  );
});
