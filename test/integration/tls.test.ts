/**
 * TLS end to end, on real member processes: three voters and a hot standby with TLS on every
 * client, peer and admin port (a throwaway CA, src/cli/dev-certs.ts) and ack=all, so writes
 * through a follower ask the leader over TLS. The real etcdctl and the `etcd3` client with
 * put/get/txn/watch/lease; a lease kept alive through a follower only, longer than its TTL (the
 * keep-alives reach the leader over TLS, or the key vanishes); a standby forwarding its clients
 * over TLS; https URLs in `member list`; a peer showing another member's certificate refused;
 * `tandem status` over HTTPS.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Etcd3, type IKeyValue } from 'etcd3';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { FatalWait, waitFor } from '../../src/cli/local-net.js';
import { queryStatus } from '../../src/cli/status.js';
import { fetchCommittedFromPeers } from '../../src/transport/fetch.js';
import { clusterSecret } from '../../src/transport/handshake.js';
import { ctl, ctlOk, ctlStream, ETCDCTL_MISSING, killCtls } from './clients.js';
import { startCluster, ZONE_DEFAULT } from './cluster.js';
import { OPENSSL_MISSING } from './openssl.js';

const TEST_TIMEOUT_MS = 40_000;
const START_TIMEOUT_MS = 120_000;
/** The lease of the keep-alive test: etcdctl renews every TTL/3; it outlives TTL many times. */
const LEASE_TTL_S = 3;
const KEEP_ALIVE_FOR_MS = 3 * LEASE_TTL_S * 1000;

describe('TLS on every port of a 3-voter cluster with a standby', {
  skip: ETCDCTL_MISSING || OPENSSL_MISSING,
  timeout: 420_000,
}, () => {
  let c: LocalCluster;
  let tlsArgs: string[];
  let leader: LocalMember;
  let follower: LocalMember;
  let standby: LocalMember;
  const clients: Etcd3[] = [];
  /** etcdctl with the printed TLS flags against `members`' https endpoints. */
  const at = (...members: LocalMember[]): string[] =>
    members.map((m) => `https://${m.spec.client}`);
  const run = (members: LocalMember[], args: string[]) =>
    ctlOk(at(...members), [...tlsArgs, ...args]);

  before(async () => {
    c = await startCluster({
      label: 'tls',
      size: 4,
      tls: true,
      roles: { n4: { role: 'standby', standbyMode: 'hot' } },
      extraConfig: { replication: { ack: 'all' } },
      // Five processes doing TLS handshakes start slowly on a loaded 2-core machine.
      readyTimeoutMs: START_TIMEOUT_MS,
    });
    const files = c.tls!;
    tlsArgs = [`--cacert=${files.ca}`, `--cert=${files.cert}`, `--key=${files.key}`];
    leader = await c.waitForLeader();
    standby = c.member('n4');
    follower = c.members.find((m) => m !== leader && m !== standby)!;
  });

  after(async () => {
    killCtls();
    for (const e of clients) e.close();
    await c?.destroy({ kill: true });
  });

  test('member list shows https client and peer URLs', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('member list', async () => {
      const list = await run([follower], ['member', 'list']);
      for (const m of c.members.filter((m) => m !== standby)) {
        assert.ok(
          list.includes(`https://${m.spec.peer}, https://${m.spec.client}`),
          `${m.name} with https URLs in:\n${list}`,
        );
      }
      assert.doesNotMatch(list, /http:\/\//);
    }),
  );

  test(
    'etcdctl: put (ack=all through a follower), get, txn, watch',
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('etcdctl kv', async () => {
        assert.equal(await run([follower], ['put', 'tls/a', '1']), 'OK\n');
        for (const m of [leader, follower]) {
          assert.equal(await run([m], ['get', 'tls/a', '--print-value-only']), '1\n');
        }
        const txn = await ctlOk(
          at(follower),
          [...tlsArgs, 'txn'],
          'value("tls/a") = "1"\n\nput tls/b 2\n\nput tls/b 3\n\n',
        );
        assert.equal(txn, 'SUCCESS\n\nOK\n');
        assert.equal(await run([leader], ['get', 'tls/b', '--print-value-only']), '2\n');
        const watch = ctlStream(at(follower), [...tlsArgs, 'watch', 'tls/w']);
        try {
          // The watch is open once a put through the leader shows up in it (bounded retries).
          await waitFor('the watch to see a put', 15_000, async () => {
            await run([leader], ['put', 'tls/w', 'seen']);
            return watch.output().includes('tls/w\nseen\n') ? true : null;
          });
        } finally {
          watch.stop();
        }
      }),
  );

  test(
    'a lease kept alive through a follower only outlives its TTL; then it expires',
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('keep-alive through a follower', async () => {
        const granted = await run([leader], ['lease', 'grant', String(LEASE_TTL_S)]);
        const id = /lease ([0-9a-f]+) granted/.exec(granted)?.[1];
        assert.ok(id, granted);
        const grantedAtMs = Date.now();
        // Granted and attached at the leader: only the keep-alives go through the follower.
        await run([leader], ['put', '--lease', id, 'tls/leased', 'alive']);
        const keepAlive = ctlStream(at(follower), [...tlsArgs, 'lease', 'keep-alive', id]);
        try {
          // Checked every second for 3 TTLs: the key must be there every time.
          await waitFor('3 TTLs of keep-alives', KEEP_ALIVE_FOR_MS + 10_000, async () => {
            const value = await run([leader], ['get', 'tls/leased', '--print-value-only']);
            // Gone once is gone for good: no point in waiting out the bound.
            if (value !== 'alive\n') throw new FatalWait(`the leased key vanished (${value})`);
            return Date.now() - grantedAtMs >= KEEP_ALIVE_FOR_MS ? true : null;
          }).catch((error: Error) => {
            throw new Error(`${error.message}\nkeep-alive said: ${keepAlive.output()}`);
          });
          const renewals = keepAlive.output().match(/keepalived with TTL\(3\)/g) ?? [];
          assert.ok(renewals.length >= 3, keepAlive.output());
          assert.match(
            await run([follower], ['lease', 'timetolive', id]),
            new RegExp(`lease ${id} granted with TTL\\(3s\\), remaining\\(\\ds\\)`),
          );
        } finally {
          keepAlive.stop();
        }
        // Control: without keep-alives the lease does expire, so the test above could fail.
        await waitFor('the lease to expire', 15_000, async () =>
          (await run([leader], ['get', 'tls/leased'])) === '' ? true : null,
        );
      }),
  );

  test('a standby forwards its clients over TLS', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('standby forwarding', async () => {
      assert.equal(await run([standby], ['put', 'tls/via-standby', 'yes']), 'OK\n');
      assert.equal(await run([leader], ['get', 'tls/via-standby', '--print-value-only']), 'yes\n');
      assert.equal(await run([standby], ['get', 'tls/via-standby', '--print-value-only']), 'yes\n');
      // A stream relayed whole: a watch opened at the standby sees a put at the leader.
      const watch = ctlStream(at(standby), [...tlsArgs, 'watch', 'tls/sw']);
      try {
        await waitFor('the relayed watch to see a put', 15_000, async () => {
          await run([leader], ['put', 'tls/sw', 'relayed']);
          return watch.output().includes('tls/sw\nrelayed\n') ? true : null;
        });
      } finally {
        watch.stop();
      }
    }),
  );

  test(
    'etcd3 client: put, get, txn, watch, lease keep-alive through a follower',
    { timeout: TEST_TIMEOUT_MS },
    () =>
      c.guard('etcd3', async () => {
        const files = c.tls!;
        const e = new Etcd3({
          hosts: at(follower),
          credentials: {
            rootCertificate: readFileSync(files.ca),
            certChain: readFileSync(files.cert),
            privateKey: readFileSync(files.key),
          },
          defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }),
        });
        clients.push(e);
        await e.put('tls/e3').value('v1');
        assert.equal(await e.get('tls/e3').string(), 'v1');
        const txn = await e
          .if('tls/e3', 'Value', '==', 'v1')
          .then(e.put('tls/e3').value('v2'))
          .commit();
        assert.equal(txn.succeeded, true);
        const watcher = await e.watch().key('tls/e3w').create();
        const seen = new Promise<string>((resolve) =>
          watcher.on('put', (kv: IKeyValue) => resolve(kv.value.toString())),
        );
        await e.put('tls/e3w').value('watched');
        assert.equal(await seen, 'watched');
        await watcher.cancel();
        const lease = e.lease(LEASE_TTL_S, { autoKeepAlive: false });
        await lease.put('tls/e3lease').value('x');
        const ttl = await lease.keepaliveOnce();
        assert.equal(String(ttl.TTL), String(LEASE_TTL_S));
        await lease.revoke();
        assert.equal(await e.get('tls/e3lease').string(), null);
      }),
  );

  test("a peer showing another member's certificate is refused", { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('peer certificate binding', async () => {
      const n1 = c.member('n1');
      const n3 = c.member('n3');
      const s1 = await n1.status();
      const s3 = await n3.status();
      const dir = `${c.dir}/tls`;
      const tlsOf = (name: string) => ({
        caFile: c.tls!.ca,
        certFile: `${dir}/member-${name}.crt`,
        keyFile: `${dir}/member-${name}.key`,
      });
      const ask = (certOf: string) =>
        fetchCommittedFromPeers(
          {
            clusterId: s1.clusterId,
            secret: clusterSecret(c.secret),
            localId: Number.parseInt(s3.memberId, 16),
            peers: () => [{ id: Number.parseInt(s1.memberId, 16), addresses: [n1.spec.peer] }],
            tls: tlsOf(certOf),
            roundsMax: 1,
          },
          { firstIndex: s1.commitIndex, lastIndex: s1.commitIndex },
          () => null,
        );
      // n2's certificate, claiming to be n3: refused at the handshake, naming why.
      await assert.rejects(
        ask('n2'),
        /refused the (connection|handshake): its certificate names n2/,
      );
      // Control: n3's own certificate as n3 is let in (and answered).
      const entries = await ask('n3');
      assert.equal(entries[0]?.index, s1.commitIndex);
    }),
  );

  test('a member joins over TLS (member add with an https peer URL)', { timeout: 60_000 }, () =>
    c.guard('join over TLS', async () => {
      const n5 = await c.addMember({
        name: 'n5',
        zone: ZONE_DEFAULT,
        config: { cluster: { state: 'existing' } },
      });
      const spec = n5.spec;
      const added = await run(
        [leader],
        ['member', 'add', 'n5', '--learner', `--peer-urls=https://${spec.peer}`],
      );
      const id = /Member\s+([0-9a-f]+) added to cluster/.exec(added)?.[1];
      assert.ok(id !== undefined, added);
      n5.spawn();
      const target = await leader.status();
      await waitFor('the learner to catch up over TLS', 40_000, async () => {
        c.checkAlive([n5]);
        const s = await n5.status();
        return s.memberId === id && s.appliedIndex >= target.commitIndex ? s : null;
      });
      await waitFor('n5 to publish its https client URL', 20_000, async () => {
        const list = await run([leader], ['member', 'list']);
        const line = `${id}, started, n5, https://${spec.peer}, https://${spec.client}, true`;
        return list.includes(line) ? true : null;
      });
      // A learner forwards its clients (over TLS) to a member that serves them.
      assert.equal(await run([n5], ['put', 'tls/via-learner', 'x']), 'OK\n');
      assert.equal(await run([leader], ['get', 'tls/via-learner', '--print-value-only']), 'x\n');
    }),
  );

  test('tandem status reads the HTTPS admin endpoints', { timeout: TEST_TIMEOUT_MS }, () =>
    c.guard('status', async () => {
      const files = c.tls!;
      const endpoints = c.members.map((m) => `https://${m.spec.admin}`);
      const rows = await queryStatus(endpoints, {
        ca: readFileSync(files.ca),
        cert: readFileSync(files.cert),
        key: readFileSync(files.key),
      });
      assert.deepEqual(
        rows.map((r) => [r.name, r.error]),
        c.members.map((m) => [m.name, null]),
      );
      // Without a client certificate the admin endpoint refuses.
      const refused = await queryStatus(endpoints.slice(0, 1), { ca: readFileSync(files.ca) });
      assert.notEqual(refused[0]!.error, null);
      // And a plain-HTTP request to it gets no status.
      const plain = await ctl([`http://${c.members[0]!.spec.client}`], ['get', 'x']);
      assert.notEqual(plain.code, 0);
    }),
  );
});
