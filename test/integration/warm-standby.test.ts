/**
 * The second half of issue 5's self-healing test, on real processes: 3 voters (n1..n3), a hot
 * standby (n4) and a warm standby (n5, outside the Raft configuration); replaceAfter is 3 s and
 * snapshots are frequent, so a member that falls behind is caught up from a snapshot.
 *
 * 1. The leader hears the warm standby (it probes members outside the configuration): its live
 *    health is "healthy", not "unreachable".
 * 2. kill -9 a follower voter: the hot standby becomes a voter (the first replacement).
 * 3. kill -9 another follower voter: the warm standby is promoted (staged as a learner, caught
 *    up, made a voter), `etcdctl member list` shows it as a voter, and it holds every write
 *    acknowledged by the cluster throughout.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { call, ctlOk, ETCDCTL_MISSING, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

const REPLACE_AFTER_MS = 3_000;
/** Staging, catching up from a snapshot and the joint change on a loaded 2-core machine. */
const REPLACE_SLACK_MS = 12_000;
const VOTER_NAMES = ['n1', 'n2', 'n3'];

/** How many snapshots the member's transport received (its log's "snapshot received" lines). */
function snapshotsReceived(m: LocalMember): number {
  return m.log().split('snapshot received').length - 1;
}

interface RegistryRow {
  name: string;
  role: string;
  placement: string;
  /** The leader's live health when asked of the leader. */
  health: string;
}

describe('redundancy: the warm standby is reachable and replaces a second voter', {
  skip: ETCDCTL_MISSING,
  timeout: 240_000,
}, () => {
  let c: LocalCluster;
  const conns = new Map<string, ReturnType<typeof grpcClients>>();
  /** Every write a member acknowledged (key -> value). */
  const acked = new Map<string, string>();

  before(async () => {
    c = await startCluster({
      label: 'warm-standby',
      size: 5,
      roles: {
        n1: { role: 'voter', zone: 'zone-a' },
        n2: { role: 'voter', zone: 'zone-a' },
        n3: { role: 'voter', zone: 'zone-b' },
        n4: { role: 'standby', standbyMode: 'hot', zone: 'zone-a' },
        n5: { role: 'standby', standbyMode: 'warm', zone: 'zone-b' },
      },
      extraConfig: {
        redundancy: { replaceAfter: `${REPLACE_AFTER_MS}ms` },
        raft: { snapshotEntries: 100 },
      },
    });
    for (const m of c.members) conns.set(m.name, grpcClients(m.spec.client));
  });

  after(async () => {
    for (const conn of conns.values()) conn.close();
    await c?.destroy({ kill: true });
  });

  const kv = (m: LocalMember) => conns.get(m.name)!.kv;

  async function registry(m: LocalMember): Promise<RegistryRow[]> {
    const s = (await m.status()) as unknown as { registry: RegistryRow[] };
    return s.registry;
  }

  /** Writes through the given members until stopped; records what was acknowledged. */
  function startWriter(prefix: string, through: () => LocalMember[]) {
    let stop = false;
    const done = (async () => {
      for (let i = 0; !stop && i < 100_000; i++) {
        const members = through();
        const m = members[i % members.length]!;
        const key = `${prefix}/${i}`;
        try {
          await call(kv(m), 'Put', { key: Buffer.from(key), value: Buffer.from(String(i)) }, 2_000);
          acked.set(key, String(i));
        } catch {
          // not acknowledged: may or may not be applied; the check is on acknowledged writes
        }
        await sleep(20);
      }
    })();
    return async () => {
      stop = true;
      await done;
    };
  }

  async function waitForVoter(name: string, endpoints: string[]): Promise<void> {
    await waitFor(
      `etcdctl member list shows ${name} as a voter`,
      REPLACE_AFTER_MS + REPLACE_SLACK_MS,
      async () => {
        const out = JSON.parse(await ctlOk(endpoints, ['member', 'list', '-w', 'json'])) as {
          members: { name: string; isLearner?: boolean }[];
        };
        const row = out.members.find((m) => m.name === name);
        return row !== undefined && row.isLearner !== true ? true : null;
      },
      { intervalMs: 250 },
    );
  }

  test('the leader hears the warm standby outside the configuration', () =>
    c.guard('warm reachable', async () => {
      const leader = await c.leader();
      const n5 = await waitFor('n5 healthy in the leader view', 20_000, async () => {
        const row = (await registry(leader)).find((r) => r.name === 'n5');
        return row?.health === 'healthy' ? row : null;
      });
      assert.equal(n5.role, 'standby');
    }));

  test('hot standby first, then the warm standby: promoted, caught up, holding every acknowledged write', () =>
    c.guard('warm replacement', async () => {
      const leader = await c.leader();
      const stopWriter = startWriter('warm', () =>
        c.running.filter((m) => VOTER_NAMES.includes(m.name)),
      );
      await sleep(1_500);

      const first = c.members.find((m) => m !== leader && VOTER_NAMES.includes(m.name))!;
      await first.kill();
      const others = c.running.filter((m) => m.name !== 'n5');
      await waitForVoter('n4', c.endpoints(others));
      await sleep(1_000);

      const second = c.members.find(
        (m) => m !== leader && m !== first && VOTER_NAMES.includes(m.name),
      )!;
      // Let the log run well past the warm standby and past compaction (snapshot every 100
      // entries, 100 kept), so that catching up must go through a snapshot however loaded the
      // machine is (a slow writer alone may not get there).
      const n5Applied = (await c.member('n5').status()).appliedIndex;
      await waitFor('the log moved 250 entries past the warm standby', 60_000, async () => {
        const ls = await (await c.leader()).status();
        return ls.commitIndex >= n5Applied + 250 ? true : null;
      });
      const snapshotsBefore = snapshotsReceived(c.member('n5'));
      const killedAt = Date.now();
      await second.kill();
      await waitForVoter('n5', c.endpoints([leader, c.member('n4')]));
      const replacedMs = Date.now() - killedAt;
      await sleep(1_000);
      await stopWriter();
      process.stderr.write(
        `warm standby voter ${replacedMs} ms after the kill; ${acked.size} acknowledged writes\n`,
      );
      assert.ok(acked.size > 50, `writes went on (${acked.size})`);
      assert.ok(
        snapshotsReceived(c.member('n5')) > snapshotsBefore,
        'the warm standby caught up from a snapshot',
      );

      const rows = await registry(await c.leader());
      const byName = new Map(rows.map((r) => [r.name, r]));
      assert.equal(byName.get('n5')?.role, 'voter');
      assert.equal(byName.get('n4')?.role, 'voter');
      assert.equal(byName.get(second.name)?.role, 'standby');
      assert.equal(rows.filter((r) => r.role === 'voter').length, 3, 'three voters');

      // The promoted warm standby holds every acknowledged write (a serializable read there).
      await waitFor('n5 applied the leader commit index', 20_000, async () => {
        const ls = await (await c.leader()).status();
        const s5 = await c.member('n5').status();
        return s5.appliedIndex >= ls.commitIndex ? true : null;
      });
      const res = await call(
        kv(c.member('n5')),
        'Range',
        { key: Buffer.from('warm/'), rangeEnd: Buffer.from('warm0'), serializable: true },
        10_000,
      );
      const held = new Map(
        ((res.kvs ?? []) as { key: Buffer; value: Buffer }[]).map((k) => [
          k.key.toString(),
          k.value.toString(),
        ]),
      );
      const missing = [...acked].filter(([k, v]) => held.get(k) !== v).map(([k]) => k);
      assert.deepEqual(missing.slice(0, 10), [], `${missing.length} acknowledged writes missing`);
    }));
});
