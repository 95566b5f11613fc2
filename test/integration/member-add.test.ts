/**
 * etcd's documented workflow on real processes with the real etcdctl (issue 13 item 3):
 * `etcdctl member add` of a voter, then start it. 3 voters and 1 hot standby (n4), policy
 * voters 3, replaceAfter 3 s.
 *
 * The added member, not yet started, keeps its seat for replaceAfter counted from when it was
 * added; then the policy replaces it with the standby, and at once returns the standby it
 * promoted to the standbys (the trim: the voters outnumber the policy, all healthy): the cluster
 * is back at 3 voters. Started late, the added member joins as a hot standby (2 standbys); after
 * `etcdctl member remove` of it, the cluster is 3 voters and its one standby, as before the add.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { sleep } from '../../src/cli/local-net.js';
import { ctlOk, ETCDCTL_MISSING } from './clients.js';
import { startCluster, ZONE_DEFAULT } from './cluster.js';

const REPLACE_AFTER_MS = 3_000;
/** Detection (silentAfter), a few policy rounds, two joint changes: generous on a loaded box. */
const CONVERGE_MS = 40_000;

interface RegistryRow {
  readonly id: string;
  readonly name: string;
  readonly role: string;
  readonly placement: string;
  readonly promotedAtMs: number | null;
  readonly demotedAtMs: number | null;
  readonly promotedByPolicy: boolean;
}

describe("etcd's member add of a voter, started late", {
  skip: ETCDCTL_MISSING,
  timeout: 240_000,
}, () => {
  let c: LocalCluster;
  let endpoints: string[];

  before(async () => {
    c = await startCluster({
      label: 'member-add',
      size: 4,
      roles: { n4: { role: 'standby', standbyMode: 'hot' } },
      extraConfig: { redundancy: { replaceAfter: `${REPLACE_AFTER_MS}ms` } },
    });
    endpoints = c.endpoints(c.members.slice(0, 3));
  });

  after(async () => {
    await c?.destroy({ kill: true });
  });

  async function registry(): Promise<RegistryRow[]> {
    const leader = await c.leader();
    const s = (await leader.status()) as unknown as { registry: RegistryRow[] };
    return s.registry;
  }

  /** "name:role" per registered member with a name, by name; unnamed ones as "?:role". */
  function roles(rows: readonly RegistryRow[]): string {
    return rows
      .map((r) => `${r.name || '?'}:${r.role}`)
      .sort()
      .join(' ');
  }

  async function votersInMemberList(): Promise<number> {
    const out = await ctlOk(endpoints, ['member', 'list']);
    return out.split('\n').filter((line) => line.endsWith(', false')).length;
  }

  test('member add: grace of replaceAfter from the add, then replaced, then trimmed back to 3 voters', () =>
    c.guard('member add', async () => {
      const n5 = await c.addMember({
        name: 'n5',
        zone: ZONE_DEFAULT,
        config: { cluster: { state: 'existing' } },
      });
      const added = await ctlOk(endpoints, [
        'member',
        'add',
        'n5',
        `--peer-urls=http://${n5.spec.peer}`,
      ]);
      const addedAtMs = Date.now();
      const id = /Member\s+([0-9a-f]+) added to cluster/.exec(added)?.[1];
      assert.ok(id !== undefined, added);
      assert.match(
        await ctlOk(endpoints, ['member', 'list']),
        new RegExp(`^${id}, unstarted, , http://${n5.spec.peer}, , false$`, 'm'),
      );
      assert.equal(await votersInMemberList(), 4);

      // Through most of replaceAfter from the add, the unstarted voter keeps its seat and n4
      // waits (polled, bounded by the window; a check that ran late under load proves nothing).
      const graceMs = REPLACE_AFTER_MS * 0.8;
      let checks = 0;
      while (Date.now() - addedAtMs < graceMs) {
        const rows = await registry();
        if (Date.now() - addedAtMs >= REPLACE_AFTER_MS) break;
        assert.equal(rows.find((r) => r.id === id)?.role, 'voter', JSON.stringify(rows));
        assert.equal(rows.find((r) => r.name === 'n4')?.role, 'standby');
        checks++;
        await sleep(200);
      }
      assert.ok(checks > 0, 'the grace was checked at least once');

      // Then: replaced by n4 (the policy's promotion), and n4 trimmed back to the standbys.
      const settled = await c.waitUntil('the surplus trimmed', CONVERGE_MS, async () => {
        const rows = await registry();
        const n4 = rows.find((r) => r.name === 'n4');
        const trimmed =
          n4?.role === 'standby' &&
          n4.promotedAtMs !== null &&
          n4.demotedAtMs !== null &&
          n4.demotedAtMs >= n4.promotedAtMs;
        return trimmed && rows.filter((r) => r.role === 'voter').length === 3 ? rows : null;
      });
      const replacedAfterMs = Date.now() - addedAtMs;
      assert.ok(replacedAfterMs >= REPLACE_AFTER_MS, `converged ${replacedAfterMs} ms after add`);
      assert.equal(settled.find((r) => r.id === id)?.role, 'standby');
      assert.equal(roles(settled), '?:standby n1:voter n2:voter n3:voter n4:standby');
      assert.ok(settled.every((r) => !r.promotedByPolicy));
      assert.equal(await votersInMemberList(), 3);

      // Started late, it joins as what it now is: a hot standby (learner), and publishes itself.
      n5.spawn();
      await c.waitUntil('n5 started as a standby', CONVERGE_MS, async () => {
        c.checkAlive([n5]);
        const rows = await registry();
        const text = roles(rows);
        return text === 'n1:voter n2:voter n3:voter n4:standby n5:standby' ? rows : null;
      });
      assert.match(
        await ctlOk(endpoints, ['member', 'list']),
        new RegExp(
          `^${id}, started, n5, http://${n5.spec.peer}, http://${n5.spec.client}, true$`,
          'm',
        ),
      );
      assert.equal(await votersInMemberList(), 3);
      // Still 3 voters a few policy rounds later (nothing promoted back).
      await sleep(1_500);
      assert.equal(roles(await registry()), 'n1:voter n2:voter n3:voter n4:standby n5:standby');

      // member remove: back to exactly the founding shape.
      await ctlOk(endpoints, ['member', 'remove', id]);
      await c.waitUntil('n5 removed', CONVERGE_MS, async () =>
        roles(await registry()) === 'n1:voter n2:voter n3:voter n4:standby' ? true : null,
      );
      assert.equal(await votersInMemberList(), 3);
      assert.equal(await ctlOk(endpoints, ['put', 'after-remove', 'ok']), 'OK\n');
    }));
});
