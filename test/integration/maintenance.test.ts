/**
 * etcd's maintenance surface with the real etcdctl (Debian etcd-client 3.4) against a real
 * 3-member cluster: watch from the compaction revision, HashKV at a revision and Hash on every
 * member, the quota and the NOSPACE alarm (list, cluster-wide cap, disarm), and defragment
 * shrinking DB SIZE after a compaction. Skipped, with a message, when etcdctl is absent.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { waitFor } from '../../src/cli/local-net.js';
import { call, ctl, ctlOk, ctlStream, ETCDCTL, grpcClients, killCtls } from './clients.js';
import { startCluster } from './cluster.js';

const TEST_TIMEOUT_MS = 60_000;
const QUOTA_BYTES = 4 * 1024 * 1024;
const VALUE_BYTES = 256 * 1024;
const NO_SPACE = /etcdserver: mvcc: database space exceeded/;

const skip = existsSync(ETCDCTL)
  ? false
  : `${ETCDCTL} not found: apt-get install -y etcd-client to run these tests`;

interface EndpointStatus {
  Endpoint: string;
  Status: { dbSize: number; header: { member_id: number } };
}

describe('maintenance with etcdctl against a 3-member cluster', { timeout: 240_000, skip }, () => {
  let c: LocalCluster;
  let all: string[];
  const at = (m: LocalMember): string[] => [m.spec.client];
  /** GET /health on the member's client port (its HTTP/JSON side). */
  const health = async (m: LocalMember, query: string): Promise<unknown> =>
    (await fetch(`http://${m.spec.client}/health${query}`)).json();

  before(async () => {
    c = await startCluster({
      label: 'maintenance',
      extraConfig: { quota: { backendBytes: QUOTA_BYTES } },
    });
    all = c.endpoints();
  });

  after(async () => {
    killCtls();
    await c?.destroy({ kill: true });
  });

  const revisionOf = (json: string) => Number(/"revision":(\d+)/.exec(json)?.[1]);

  test(
    'a watch from the compaction revision streams from it; below it is compacted',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('watch-compact', async () => {
        const revs: number[] = [];
        for (let i = 1; i <= 5; i++)
          revs.push(revisionOf(await ctlOk(all, ['put', 'wc', `v${i}`, '-w', 'json'])));
        const compactAt = revs[1]!;
        assert.equal(
          await ctlOk(all, ['compaction', String(compactAt)]),
          `compacted revision ${compactAt}\n`,
        );
        // Range at the compaction revision is allowed (etcd: only rev < compactRev is compacted).
        assert.equal(
          await ctlOk(all, ['get', 'wc', `--rev=${compactAt}`, '--print-value-only']),
          'v2\n',
        );
        for (const m of c.members) {
          const watch = ctlStream(at(m), ['watch', 'wc', `--rev=${compactAt}`]);
          try {
            const out = await watch.until((o) => o.includes('v5\n'));
            assert.equal(out, 'PUT\nwc\nv2\nPUT\nwc\nv3\nPUT\nwc\nv4\nPUT\nwc\nv5\n', m.name);
          } finally {
            watch.stop();
          }
        }
        const below = await ctl(all, ['watch', 'wc', `--rev=${compactAt - 1}`]);
        assert.match(below.stdout + below.stderr, /required revision has been compacted/);
        assert.doesNotMatch(
          below.stdout,
          /PUT/,
          'nothing streamed from below the compaction revision',
        );
      }),
  );

  test(
    'HashKV at a revision agrees on every member; a compacted revision is refused; Hash agrees',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      c.guard('hash', async () => {
        const rev = revisionOf(await ctlOk(all, ['put', 'h', '1', '-w', 'json']));
        await ctlOk(all, ['put', 'h', '2']);
        await c.waitForCatchUp();
        const hashes = (out: string) =>
          (
            JSON.parse(out) as {
              HashKV: { hash: number; hash_revision: number; compact_revision: number };
            }[]
          ).map(({ HashKV: h }) => ({
            hash: h.hash,
            hashRevision: h.hash_revision,
            compactRevision: h.compact_revision,
          }));
        const atRev = hashes(
          await ctlOk(all, ['endpoint', 'hashkv', `--rev=${rev}`, '-w', 'json']),
        );
        assert.equal(atRev.length, 3);
        // (etcdctl 3.4 predates hash_revision in the answer: the hash itself must agree.)
        for (const h of atRev) assert.deepEqual(h, atRev[0]);
        const now = hashes(await ctlOk(all, ['endpoint', 'hashkv', '-w', 'json']));
        assert.notEqual(now[0]!.hash, atRev[0]!.hash, 'a later put changes the hash');
        const compacted = await ctl(all, ['endpoint', 'hashkv', '--rev=1']);
        assert.match(compacted.stderr, /etcdserver: mvcc: required revision has been compacted/);
        // Hash (etcdctl has no command for it): the whole backend, equal on every member.
        const backendHashes: unknown[] = [];
        for (const m of c.members) {
          const clients = grpcClients(m.spec.client);
          try {
            backendHashes.push((await call(clients.maintenance, 'Hash', {})).hash);
          } finally {
            clients.close();
          }
        }
        assert.equal(new Set(backendHashes).size, 1, JSON.stringify(backendHashes));
        assert.ok(typeof backendHashes[0] === 'number' && backendHashes[0] !== 0);
      }),
  );

  test(
    'quota: NOSPACE alarm caps every member; compact, defrag (DB SIZE shrinks), disarm',
    {
      timeout: 120_000,
    },
    () =>
      c.guard('quota', async () => {
        assert.equal(await ctlOk(all, ['alarm', 'list']), '');
        const big = 'x'.repeat(VALUE_BYTES);
        let refused = '';
        for (let i = 0; i < (2 * QUOTA_BYTES) / VALUE_BYTES && refused === ''; i++) {
          // The value from stdin: one argument may not exceed 128 KiB (execve).
          const r = await ctl(all, ['put', `big/${i % 4}`], big);
          if (r.code !== 0) refused = r.stderr;
        }
        assert.match(refused, NO_SPACE, 'a put past the quota is refused');
        // The alarm went through the log: every member lists it and refuses growing writes.
        const alarm = /^memberID:\d+ alarm:NOSPACE $/m;
        for (const m of c.members) {
          await waitFor(`${m.name} to list the alarm`, 10_000, async () =>
            alarm.test(await ctlOk(at(m), ['alarm', 'list'])) ? true : null,
          );
          const put = await ctl(at(m), ['put', 'small', 'v']);
          assert.match(put.stderr, NO_SPACE, `${m.name} is capped`);
          const lease = await ctl(at(m), ['lease', 'grant', '60']);
          assert.match(lease.stderr, NO_SPACE, `${m.name} refuses lease grants`);
          // The client port's /health says so, as etcd's does, unless the alarm is excluded.
          assert.deepEqual(await health(m, ''), { health: 'false', reason: 'ALARM NOSPACE' });
          assert.deepEqual(await health(m, '?exclude=NOSPACE'), { health: 'true', reason: '' });
        }
        assert.equal(
          await ctlOk(all, ['get', 'big/0', '--print-value-only']),
          `${big}\n`,
          'reads go on',
        );
        assert.equal(await ctlOk(all, ['del', '--prefix', 'big/']), '4\n', 'deletes go on');
        const rev = revisionOf(await ctlOk(all, ['get', 'big/0', '-w', 'json']));
        assert.equal(await ctlOk(all, ['compaction', String(rev)]), `compacted revision ${rev}\n`);
        await c.waitForCatchUp();
        const sizes = async () =>
          new Map(
            (
              JSON.parse(await ctlOk(all, ['endpoint', 'status', '-w', 'json'])) as EndpointStatus[]
            ).map((s) => [s.Endpoint, s.Status.dbSize]),
          );
        const before = await sizes();
        for (const size of before.values()) assert.ok(size > QUOTA_BYTES / 2, `${size}`);
        const defrag = await ctlOk(all, ['defrag']);
        assert.equal(defrag.match(/Finished defragmenting etcd member/g)?.length, 3, defrag);
        const afterDefrag = await sizes();
        for (const [endpoint, size] of afterDefrag) {
          assert.ok(
            size < before.get(endpoint)! / 4,
            `${endpoint}: ${before.get(endpoint)} -> ${size}`,
          );
        }
        // Defragmented members serve and still agree.
        await c.waitForCatchUp();
        const hashes = JSON.parse(await ctlOk(all, ['endpoint', 'hashkv', '-w', 'json'])) as {
          HashKV: { hash: number };
        }[];
        assert.equal(new Set(hashes.map((h) => h.HashKV.hash)).size, 1);
        // Still capped until disarmed, as etcd.
        assert.match((await ctl(all, ['put', 'small', 'v'])).stderr, NO_SPACE);
        assert.match(await ctlOk(all, ['alarm', 'disarm']), alarm);
        assert.equal(await ctlOk(all, ['alarm', 'list']), '');
        for (const m of c.members) {
          assert.equal(await ctlOk(at(m), ['put', 'small', m.name]), 'OK\n');
          assert.deepEqual(await health(m, ''), { health: 'true', reason: '' });
        }
      }),
  );
});
