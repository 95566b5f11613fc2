/**
 * The real etcdctl (Debian etcd-client 3.4) against a real 3-member cluster: KV, txn, watch
 * across members, leases through a follower, membership with a 4th process joining as a learner,
 * endpoint status and health, snapshot, move-leader and compaction.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { waitFor } from '../../src/cli/local-net.js';
import { ctl, ctlOk, ctlStream, ETCDCTL_MISSING, killCtls } from './clients.js';
import { startCluster, ZONE_DEFAULT } from './cluster.js';

const TEST_TIMEOUT_MS = 30_000;

describe('etcdctl against a 3-member cluster', { skip: ETCDCTL_MISSING, timeout: 150_000 }, () => {
  let c: LocalCluster;
  /** All three client endpoints, so etcdctl picks any. */
  let all: string[];
  const at = (m: LocalMember): string[] => [m.spec.client];

  before(async () => {
    c = await startCluster({ label: 'etcdctl' });
    all = c.endpoints();
  });

  after(async () => {
    killCtls();
    await c?.destroy({ kill: true });
  });

  test('put, get (prefix, range, limit, --rev), del', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('kv', async () => {
      const [n1, n2, n3] = c.members as [LocalMember, LocalMember, LocalMember];
      assert.equal(await ctlOk(at(n1), ['put', 'k/a', '1']), 'OK\n');
      assert.equal(await ctlOk(at(n2), ['put', 'k/b', '2']), 'OK\n');
      assert.equal(await ctlOk(at(n3), ['put', 'k/c', '3']), 'OK\n');
      const json = await ctlOk(at(n3), ['put', 'k/a', '1-new', '-w', 'json']);
      const rev = Number(/"revision":(\d+)/.exec(json)?.[1]);
      assert.ok(rev > 1, json);
      for (const m of c.members) {
        assert.equal(await ctlOk(at(m), ['get', 'k/a']), 'k/a\n1-new\n');
      }
      assert.equal(await ctlOk(all, ['get', '--prefix', 'k/']), 'k/a\n1-new\nk/b\n2\nk/c\n3\n');
      assert.equal(await ctlOk(all, ['get', 'k/a', 'k/c', '--keys-only']), 'k/a\n\nk/b\n\n');
      assert.equal(
        await ctlOk(all, ['get', '--prefix', 'k/', '--limit=2', '--print-value-only']),
        '1-new\n2\n',
      );
      assert.equal(await ctlOk(all, ['get', 'k/a', `--rev=${rev - 1}`]), 'k/a\n1\n');
      const counted = await ctlOk(at(n2), [
        'get',
        '--consistency=s',
        '--prefix',
        'k/',
        '-w',
        'json',
      ]);
      assert.match(counted, /"count":3/);
      assert.equal(await ctlOk(at(n2), ['del', 'k/b']), '1\n');
      assert.equal(await ctlOk(all, ['get', 'k/b']), '');
      assert.equal(await ctlOk(at(n1), ['del', '--prefix', 'k/']), '2\n');
      assert.equal(await ctlOk(all, ['get', '--prefix', 'k/']), '');
    }),
  );

  test('txn (interactive, from stdin)', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('txn', async () => {
      await ctlOk(all, ['put', 'tx', 'v1']);
      const swap = 'value("tx") = "v1"\n\nput tx v2\n\nget tx\n\n';
      assert.equal(await ctlOk(all, ['txn'], swap), 'SUCCESS\n\nOK\n');
      assert.equal(await ctlOk(all, ['txn'], swap), 'FAILURE\n\ntx\nv2\n');
    }),
  );

  test('watch on one member sees writes made through another', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('watch', async () => {
      const [n1, n2, n3] = c.members as [LocalMember, LocalMember, LocalMember];
      const watch = ctlStream(at(n1), ['watch', '--prefix', 'w/']);
      try {
        // The watch is registered once etcdctl is connected; retry the first write until seen.
        await waitFor(
          'the watch to see w/0',
          10_000,
          async () => {
            await ctlOk(at(n2), ['put', 'w/0', 'x']);
            return watch.output().includes('PUT\nw/0\nx\n') ? true : null;
          },
          { intervalMs: 500 },
        );
        await ctlOk(at(n2), ['put', 'w/1', 'one']);
        await ctlOk(at(n3), ['del', 'w/1']);
        const out = await watch.until((o) => o.includes('DELETE\nw/1\n\n'));
        assert.ok(out.endsWith('PUT\nw/1\none\nDELETE\nw/1\n\n'), out);
      } finally {
        watch.stop();
      }
    }),
  );

  test(
    'lease grant, keep-alive, timetolive, revoke through a follower',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('lease', async () => {
        const leader = await c.leader();
        const follower = at(c.followers(leader)[0]!);
        const granted = await ctlOk(follower, ['lease', 'grant', '30']);
        const id = /lease ([0-9a-f]+) granted with TTL\(30s\)/.exec(granted)?.[1];
        assert.ok(id !== undefined, granted);
        await ctlOk(follower, ['put', '--lease', id, 'lease/a', '1']);
        await ctlOk(at(leader), ['put', '--lease', id, 'lease/b', '2']);
        // keep-alive and timetolive live on the leader: the follower forwards them.
        assert.equal(
          await ctlOk(follower, ['lease', 'keep-alive', '--once', id]),
          `lease ${id} keepalived with TTL(30)\n`,
        );
        const ttl = await ctlOk(follower, ['lease', 'timetolive', '--keys', id]);
        assert.match(
          ttl,
          new RegExp(`lease ${id} granted with TTL\\(30s\\), remaining\\(\\d+s\\)`),
        );
        assert.match(ttl, /attached keys\(\[lease\/a lease\/b\]\)/);
        assert.match(await ctlOk(follower, ['lease', 'list']), new RegExp(id));
        assert.equal(await ctlOk(follower, ['lease', 'revoke', id]), `lease ${id} revoked\n`);
        for (const m of c.members) {
          assert.equal(
            await ctlOk(at(m), ['get', '--prefix', 'lease/']),
            '',
            `keys gone on ${m.name}`,
          );
        }
        assert.match(await ctlOk(follower, ['lease', 'timetolive', id]), /already expired/);
        const again = await ctl(follower, ['lease', 'revoke', id]);
        assert.notEqual(again.code, 0);
        assert.match(again.stderr, /etcdserver: requested lease not found/);
        const once = await ctl(follower, ['lease', 'keep-alive', '--once', id]);
        assert.notEqual(once.code, 0, once.stdout);
      }),
  );

  test('endpoint status and health on all three endpoints', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('endpoint', async () => {
      const leader = await c.leader();
      const leaderId = BigInt(`0x${(await leader.status()).memberId}`);
      const status = JSON.parse(await ctlOk(all, ['endpoint', 'status', '-w', 'json'])) as {
        Endpoint: string;
        Status: { header: { member_id: number }; leader: number; version: string };
      }[];
      assert.equal(status.length, 3);
      assert.deepEqual(status.map((s) => s.Endpoint).sort(), [...all].sort());
      for (const s of status) assert.equal(BigInt(s.Status.leader), leaderId);
      assert.equal(
        new Set(status.map((s) => s.Status.header.member_id)).size,
        3,
        'three distinct members',
      );
      const health = await ctl(all, ['endpoint', 'health']);
      assert.equal(health.code, 0, health.stderr);
      const healthy = `${health.stdout}${health.stderr}`.match(/is healthy/g) ?? [];
      assert.equal(healthy.length, 3, health.stdout + health.stderr);
    }),
  );

  test('snapshot save writes a non-empty file', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('snapshot', async () => {
      await ctlOk(all, ['put', 'snap/k', 'v']);
      const file = join(c.dir, 'backup.db');
      const out = await ctlOk([c.members[0]!.spec.client], ['snapshot', 'save', file]);
      assert.match(out, /Snapshot saved at/);
      assert.ok(statSync(file).size > 0, 'snapshot file is empty');
    }),
  );

  test('move-leader to a chosen member', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('move-leader', async () => {
      const leader = await c.leader();
      const target = c.followers(leader)[1]!;
      const targetId = (await target.status()).memberId;
      const out = await ctlOk(all, ['move-leader', targetId]);
      assert.match(out, new RegExp(`Leadership transferred from \\w+ to ${targetId}`));
      const now = await c.leader();
      assert.equal(now, target);
      const status = JSON.parse(await ctlOk(all, ['endpoint', 'status', '-w', 'json'])) as {
        Status: { leader: number };
      }[];
      for (const s of status) assert.equal(BigInt(s.Status.leader), BigInt(`0x${targetId}`));
      assert.equal(await ctlOk(all, ['put', 'after-move', 'ok']), 'OK\n');
    }),
  );

  test('compaction: a read below the compacted revision fails', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('compaction', async () => {
      await ctlOk(all, ['put', 'cmp', 'old']);
      const json = await ctlOk(all, ['put', 'cmp', 'new', '-w', 'json']);
      const rev = Number(/"revision":(\d+)/.exec(json)?.[1]);
      assert.equal(await ctlOk(all, ['get', 'cmp', `--rev=${rev - 1}`]), 'cmp\nold\n');
      assert.equal(await ctlOk(all, ['compaction', String(rev)]), `compacted revision ${rev}\n`);
      for (const m of c.members) {
        const below = await ctl(at(m), ['get', 'cmp', `--rev=${rev - 1}`]);
        assert.notEqual(below.code, 0);
        assert.match(below.stderr, /etcdserver: mvcc: required revision has been compacted/);
      }
      assert.equal(await ctlOk(all, ['get', 'cmp', `--rev=${rev}`]), 'cmp\nnew\n');
    }),
  );

  test(
    'member list; add a learner, start it as a 4th process, promote, remove',
    {
      timeout: 60_000,
    },
    () =>
      c.guard('membership', async () => {
        const list = await ctlOk(all, ['member', 'list']);
        for (const m of c.members) {
          assert.match(
            list,
            new RegExp(
              `, started, ${m.name}, http://${m.spec.peer}, http://${m.spec.client}, false`,
            ),
          );
        }
        for (let i = 0; i < 20; i++) await ctlOk(all, ['put', `before-join/${i}`, String(i)]);

        // Its config is written now (not started): the peers it dials, the cluster it joins.
        const n4 = await c.addMember({
          name: 'n4',
          zone: ZONE_DEFAULT,
          config: { cluster: { state: 'existing' } },
        });
        const spec = n4.spec;
        const added = await ctlOk(all, [
          'member',
          'add',
          'n4',
          '--learner',
          `--peer-urls=http://${spec.peer}`,
        ]);
        const id = /Member\s+([0-9a-f]+) added to cluster/.exec(added)?.[1];
        assert.ok(id !== undefined, added);
        assert.match(
          await ctlOk(all, ['member', 'list']),
          new RegExp(`^${id}, unstarted, , http://${spec.peer}, , true$`, 'm'),
        );

        n4.spawn();
        const target = await (await c.leader()).status();
        await waitFor('the learner to catch up', 30_000, async () => {
          c.checkAlive([n4]);
          const s = await n4.status();
          return s.memberId === id && s.appliedIndex >= target.commitIndex ? s : null;
        });
        // Once it has a leader, the learner publishes its name and client URL through the log.
        const started = new RegExp(
          `^${id}, started, n4, http://${spec.peer}, http://${spec.client}, true$`,
          'm',
        );
        await waitFor('the learner to publish itself', 10_000, async () =>
          started.test(await ctlOk(all, ['member', 'list'])) ? true : null,
        );
        // A learner that joined through etcd's member add is a hot standby in tandem's registry:
        // it serves no client traffic from its own data, but forwards what a client sends it to
        // a member that does (where etcd answers "rpc not supported for learner").
        assert.equal(await ctlOk([spec.client], ['put', 'to-learner', 'x']), 'OK\n');
        assert.equal(await ctlOk(all, ['get', 'to-learner', '--print-value-only']), 'x\n');

        // Promotion is refused until the learner is in sync; it is, so retry briefly. Sent to a
        // voter that is not the leader: as etcd does, it forwards the promotion to its leader
        // (only the leader knows whether the learner is in sync).
        await waitFor(
          'the promotion',
          10_000,
          async () => {
            const leader = await c.leader();
            const follower = c.followers(leader).find((m) => m.name !== 'n4')!;
            const r = await ctl([follower.spec.client], ['member', 'promote', id]);
            if (r.code === 0) return r.stdout;
            assert.match(r.stderr, /in sync with leader/);
            return null;
          },
          { intervalMs: 500 },
        );
        assert.match(
          await ctlOk(all, ['member', 'list']),
          new RegExp(
            `^${id}, started, n4, http://${spec.peer}, http://${spec.client}, false$`,
            'm',
          ),
        );
        // Promoted, it serves: the data it received as a learner, and writes.
        assert.equal(
          await ctlOk(
            [spec.client],
            ['get', '--consistency=s', 'before-join/19', '--print-value-only'],
          ),
          '19\n',
        );
        assert.equal(await ctlOk([spec.client], ['put', 'from-n4', 'voter']), 'OK\n');
        assert.equal(await ctlOk(all, ['get', 'from-n4', '--print-value-only']), 'voter\n');
        // A joined member restarts from its data dir with the identity the cluster gave it.
        const n4Exit = await n4.stop();
        assert.deepEqual(
          n4Exit,
          { code: 0, signal: null },
          `n4 did not stop cleanly:\n${n4.tail()}`,
        );
        await ctlOk(all, ['put', 'while-n4-down', 'x']);
        n4.spawn();
        await c.waitForLeader();
        await c.waitForCatchUp();
        assert.equal((await n4.status()).memberId, id);
        assert.equal(
          await ctlOk(
            [spec.client],
            ['get', '--consistency=s', 'while-n4-down', '--print-value-only'],
          ),
          'x\n',
        );

        assert.match(
          await ctlOk(all, ['member', 'remove', id]),
          new RegExp(`Member\\s+${id} removed`),
        );
        const after = await ctlOk(all, ['member', 'list']);
        assert.doesNotMatch(after, new RegExp(id));
        assert.equal(after.trim().split('\n').length, 3);
        await n4.stop();
        await c.waitForLeader();
        assert.equal(await ctlOk(all, ['put', 'after-remove', 'ok']), 'OK\n');
        const health = await ctl(all, ['endpoint', 'health']);
        assert.equal(health.code, 0, health.stderr);
      }),
  );
});
