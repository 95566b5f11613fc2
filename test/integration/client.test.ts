/**
 * The TypeScript client (src/client/, `tandem/client`) against a real 3-member cluster in two
 * zones (n1, n2 in a; n3 in b): typed KV and txn, typed errors, zone-first serializable reads,
 * a watch iterator resumed exactly once after its member is killed, leases kept alive, and a
 * SIGSTOPped member routed around, then probed back in once it answers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type LocalCluster,
  type LocalMember,
  MEMBER_START_TIMEOUT_MS,
} from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { Client, op, type RangeResult, TandemClientError } from '../../src/client/index.js';
import { startCluster } from './cluster.js';

const TEST_TIMEOUT_MS = 60_000;

describe('tandem client', { timeout: 300_000 }, () => {
  let c: LocalCluster;
  let client: Client;

  before(async () => {
    c = await startCluster({
      label: 'route-client',
      roles: {
        n1: { role: 'voter', zone: 'a' },
        n2: { role: 'voter', zone: 'a' },
        n3: { role: 'voter', zone: 'b' },
      },
    });
    // One endpoint is enough: the rest are learned from the registry.
    client = await Client.connect({
      endpoints: [c.members[0]!.spec.client],
      zone: 'b',
      // A member killed and restarted by one test is back in the view for the next within the
      // wait below: ejections in a row during a slow restart double up to this (default 30 s,
      // the whole wait; seen failing under load).
      router: { ejectMaxMs: 4_000 },
    });
  });

  after(async () => {
    client?.close();
    await c?.destroy({ kill: true });
  });

  const memberById = async (hexId: string): Promise<LocalMember> => {
    for (const m of c.members) {
      const s = await m.tryStatus();
      if (s?.memberId === hexId) return m;
    }
    throw new Error(`no running member ${hexId}`);
  };

  test('put, get, range, delete, txn builder', { timeout: TEST_TIMEOUT_MS }, async () => {
    assert.equal(client.status().members.length, 3, 'members learned from one endpoint');
    const p = await client.put('c/a', '1');
    assert.ok(p.revision > 1);
    await client.put('c/b', '2');
    await client.put('c/c', '3');
    assert.equal((await client.get('c/a'))?.value.toString(), '1');
    assert.equal(await client.get('c/none'), null);
    const r = await client.range('c/', { prefix: true });
    assert.deepEqual(
      r.kvs.map((kv) => kv.key.toString()),
      ['c/a', 'c/b', 'c/c'],
    );
    assert.equal(r.count, 3);
    const limited = await client.range('c/', {
      prefix: true,
      limit: 2,
      consistency: 'serializable',
    });
    assert.equal(limited.kvs.length, 2);
    assert.equal(limited.more, true);
    const old = await client.get('c/a', { revision: p.revision - 1 });
    assert.equal(old, null, 'c/a did not exist before its put');

    const t1 = await client
      .txn()
      .if('c/a', 'value', '=', '1')
      .do(op.put('c/a', '1b'), op.get('c/b'))
      .else(op.delete('c/b'))
      .commit();
    assert.equal(t1.succeeded, true);
    assert.equal(t1.responses.length, 2);
    assert.equal((t1.responses[1] as RangeResult).kvs[0]?.value.toString(), '2');
    const t2 = await client
      .txn()
      .if('c/a', 'version', '>', 5)
      .do(op.put('c/x', 'no'))
      .else(op.delete('c/b', { prevKv: true }))
      .commit();
    assert.equal(t2.succeeded, false);
    assert.equal((t2.responses[0] as { deleted: number }).deleted, 1);
    const d = await client.delete('c/', { prefix: true });
    assert.equal(d.deleted, 2);
  });

  test('typed errors with stable codes', { timeout: TEST_TIMEOUT_MS }, async () => {
    await assert.rejects(
      client.get('c/a', { revision: 1_000_000 }),
      (e: unknown) => e instanceof TandemClientError && e.code === 'FUTURE_REVISION',
    );
    await assert.rejects(
      client.put('', 'v'),
      (e: unknown) => e instanceof TandemClientError && e.code === 'INVALID_ARGUMENT',
    );
    const bogus = await client.grant(5, { keepAlive: false });
    await bogus.revoke();
    await assert.rejects(
      bogus.revoke(),
      (e: unknown) => e instanceof TandemClientError && e.code === 'LEASE_NOT_FOUND',
    );
  });

  test('serializable reads go to the own zone first', { timeout: TEST_TIMEOUT_MS }, async () => {
    await client.put('z/k', 'v');
    // Members publish their zones in the registry shortly after they start.
    await waitFor('zone b in the client view', 30_000, () =>
      client.status().members.some((m) => m.zone === 'b') ? true : null,
    );
    const before = client.status().members.find((m) => m.zone === 'b')!.picks;
    for (let i = 0; i < 30; i++) {
      assert.equal(
        (await client.get('z/k', { consistency: 'serializable' }))?.value.toString(),
        'v',
      );
    }
    const s = client.status();
    const zoneB = s.members.find((m) => m.zone === 'b')!;
    assert.equal(zoneB.picks - before, 30, 'every read picked n3, the only member of zone b');
    const bounded = await client.get('z/k', { consistency: { maxStalenessMs: 5_000 } });
    assert.equal(bounded?.value.toString(), 'v');
  });

  test('leases are kept alive until closed', { timeout: TEST_TIMEOUT_MS }, async () => {
    const lease = await client.grant(2);
    await client.put('l/k', 'v', { lease: lease.id });
    await sleep(4_500); // more than twice the TTL: only keep-alives keep the key
    assert.equal((await client.get('l/k'))?.value.toString(), 'v');
    assert.ok(lease.keepAlives >= 2, `${lease.keepAlives} keep-alives`);
    lease.close();
    await waitFor('the lease to expire once not kept alive', 15_000, async () =>
      (await client.get('l/k')) === null ? true : null,
    );
  });

  test('lock: two clients never hold it at once (a read-modify-write counter loses nothing)', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const other = await Client.connect({ endpoints: c.endpoints() });
    try {
      await client.put('lock/counter', '0');
      let holders = 0;
      let maxHolders = 0;
      const worker = async (cl: Client): Promise<void> => {
        for (let i = 0; i < 8; i++) {
          const held = await cl.lock('lock/mutex', { ttlSeconds: 5, timeoutMs: 20_000 });
          holders++;
          maxHolders = Math.max(maxHolders, holders);
          const n = Number((await cl.get('lock/counter'))!.value.toString());
          await sleep(20); // a window for the other to interleave, were the lock broken
          await cl.put('lock/counter', String(n + 1));
          holders--;
          await held.unlock();
        }
      };
      await Promise.all([worker(client), worker(other)]);
      assert.equal(maxHolders, 1);
      assert.equal((await client.get('lock/counter'))?.value.toString(), '16');
      assert.equal(
        (await client.range('lock/mutex/', { prefix: true })).count,
        0,
        'no lock key left',
      );
    } finally {
      other.close();
    }
  });

  test('election: the oldest candidate leads; the next takes over when it resigns', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const other = await Client.connect({ endpoints: c.endpoints() });
    try {
      const first = await client.campaign('elect/e', 'alice');
      assert.equal((await other.electionLeader('elect/e'))?.toString(), 'alice');
      let secondLeads = false;
      const second = other.campaign('elect/e', 'bob').then((h) => {
        secondLeads = true;
        return h;
      });
      await sleep(500);
      assert.equal(secondLeads, false, 'bob waits while alice leads');
      await first.unlock();
      const bob = await second;
      assert.equal((await client.electionLeader('elect/e'))?.toString(), 'bob');
      await bob.unlock();
      assert.equal(await client.electionLeader('elect/e'), null);
    } finally {
      other.close();
    }
  });

  test('a watch iterator resumes exactly once after its member is killed', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const TOTAL = 100;
    const abort = new AbortController();
    const seen: string[] = [];
    const consumer = (async () => {
      for await (const ev of client.watch('w/', { prefix: true, signal: abort.signal })) {
        seen.push(ev.kv.key.toString());
        if (seen.length === TOTAL) break;
      }
    })();
    await waitFor('the watch to open', 10_000, () =>
      client.status().watchMembers.length > 0 ? true : null,
    );
    let killed: LocalMember | null = null;
    for (let i = 0; i < TOTAL; i++) {
      const key = `w/${String(i).padStart(4, '0')}`;
      for (let attempt = 0; ; attempt++) {
        try {
          await client.put(key, String(i));
          break;
        } catch (error) {
          if (attempt >= 50) throw error;
          await sleep(100);
          if ((await client.get(key).catch(() => null)) !== null) break; // it applied
        }
      }
      if (i === 30) {
        const on = client.status().watchMembers[0];
        assert.ok(on !== undefined);
        killed = await memberById(on);
        await killed.kill();
      }
    }
    await Promise.race([
      consumer,
      sleep(30_000).then(() => {
        throw new Error(`watch saw ${seen.length} of ${TOTAL}`);
      }),
    ]);
    abort.abort();
    const expected = Array.from({ length: TOTAL }, (_, i) => `w/${String(i).padStart(4, '0')}`);
    assert.deepEqual(seen, expected, 'each put once, in order');
    killed!.spawn();
    await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
  });

  test('a SIGSTOPped member: serializable reads stay quick', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const s0 = client.status();
    // Stop the zone-b member (the one reads prefer): reads must move to zone a.
    const n3 = s0.members.find((m) => m.zone === 'b')!;
    // Every member back in the client view (a member killed by an earlier test is probed back
    // in): at most half the members may be out at once, so with another one still out the stopped
    // member could not be ejected, and reads would keep going to it.
    await waitFor('every member back in the client view', 30_000, () =>
      client.status().members.every((m) => m.health === 'ok') ? true : null,
    );
    await client.put('s/k', 'v');
    /** Sorted latencies of `count` serializable reads. */
    const reads = async (count: number): Promise<number[]> => {
      const latencies: number[] = [];
      for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        assert.equal(
          (await client.get('s/k', { consistency: 'serializable' }))?.value.toString(),
          'v',
        );
        latencies.push(performance.now() - t0);
      }
      return latencies.sort((a, b) => a - b);
    };
    // A serializable read may be stale: every member applies the put before the reads.
    await c.waitForCatchUp(20_000);
    // What reads cost on this machine right now, all members running: the bar below scales with
    // it, so a loaded machine does not fail the test (a read waiting on the stopped member takes
    // the hedge delay or the 2 s attempt timeout, far above either).
    const baselineP90 = (await reads(30))[26]!;
    const victim = await memberById(n3.id);
    victim.pause();
    try {
      const latencies = await reads(100);
      assert.ok(latencies[99]! < 1_500, `slowest ${latencies[99]!.toFixed(0)} ms`);
      const bar = Math.max(200, 4 * baselineP90);
      assert.ok(
        latencies[89]! < bar,
        `p90 ${latencies[89]!.toFixed(0)} ms (bar ${bar.toFixed(0)} ms; p90 before the stop ${baselineP90.toFixed(0)} ms)`,
      );
      assert.notEqual(
        client.status().members.find((m) => m.id === n3.id)?.health,
        'ok',
        'the stopped member was ejected',
      );
    } finally {
      victim.resume();
    }
    // Probed back in once it answers again (ejections here last at most ejectMaxMs, 4 s).
    await waitFor('n3 readmitted after SIGCONT', 20_000, () =>
      client.status().members.find((m) => m.id === n3.id)?.health === 'ok' ? true : null,
    );
  });
});
