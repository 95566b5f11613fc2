/**
 * The client port's limits on real members with the real etcdctl (Debian etcd-client 3.4):
 * - limits.leasesMax: the grant past it fails with the message naming the limit;
 * - keep-alive enforcement (limits.grpcKeepaliveMinTime, etcd's --grpc-keepalive-min-time):
 *   an `etcdctl watch` held open for 35 s (etcdctl pings every 10 s on an open stream: its
 *   --keepalive-time of 2 s raised by grpc-go to its 10 s floor) is never sent away under the
 *   default 5 s; the same watch against a member requiring 15 s is (GOAWAY too_many_pings),
 *   which shows the watch really pings and the member really counts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { ctl, ctlOk, ctlStream, ETCDCTL_MISSING, killCtls } from './clients.js';
import { startCluster } from './cluster.js';

const SENT_AWAY = 'pinged more often than the keep-alive policy allows';
const WATCH_HELD_MS = 35_000;

function memberLog(m: LocalMember): string {
  return m.spec.logFile === null ? m.tail(10_000) : readFileSync(m.spec.logFile, 'utf8');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('client port limits with etcdctl', { skip: ETCDCTL_MISSING, timeout: 150_000 }, () => {
  let relaxed: LocalCluster;
  let strict: LocalCluster;

  before(async () => {
    [relaxed, strict] = await Promise.all([
      startCluster({ label: 'limits', size: 1, extraConfig: { limits: { leasesMax: 3 } } }),
      startCluster({
        label: 'limits-strict',
        size: 1,
        extraConfig: { limits: { grpcKeepaliveMinTime: '15s' } },
      }),
    ]);
  });

  after(async () => {
    killCtls();
    await Promise.all([relaxed?.destroy({ kill: true }), strict?.destroy({ kill: true })]);
  });

  test('the lease past limits.leasesMax is refused, naming the limit', { timeout: 30_000 }, () =>
    relaxed.guard('leases', async () => {
      const at = relaxed.endpoints();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const out = await ctlOk(at, ['lease', 'grant', '60']);
        ids.push(/lease ([0-9a-f]+) granted/.exec(out)?.[1] ?? assert.fail(out));
      }
      const refused = await ctl(at, ['lease', 'grant', '60']);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /too many leases \(3 alive, limits\.leasesMax is 3/);
      await ctlOk(at, ['lease', 'revoke', ids[0]!]);
      assert.match(await ctlOk(at, ['lease', 'grant', '60']), /granted with TTL\(60s\)/);
    }),
  );

  test(
    "a watch held 35 s: kept under etcd's 5 s policy, sent away under a 15 s one",
    {
      timeout: 90_000,
    },
    () =>
      relaxed.guard('watch', async () => {
        // From revision 1: a put made before etcdctl's watch is in place still reaches it (seen
        // failing under load when the watch started after the put).
        const watch = ['watch', '--prefix', 'held/', '--rev', '1'];
        const kept = ctlStream(relaxed.endpoints(), watch);
        const pinged = ctlStream(strict.endpoints(), watch);
        try {
          await ctlOk(relaxed.endpoints(), ['put', 'held/0', 'v0']);
          await ctlOk(strict.endpoints(), ['put', 'held/0', 'v0']);
          await kept.until((out) => out.includes('held/0\nv0'));
          await pinged.until((out) => out.includes('held/0\nv0'));
          const strictMember = strict.members[0]!;
          const deadline = Date.now() + 60_000;
          const started = Date.now();
          while (
            (Date.now() - started < WATCH_HELD_MS ||
              !memberLog(strictMember).includes(SENT_AWAY)) &&
            Date.now() < deadline
          ) {
            await sleep(500);
          }
          assert.ok(
            memberLog(strictMember).includes(SENT_AWAY),
            'the member requiring 15 s between pings sent etcdctl away: the watch does ping',
          );
          assert.ok(Date.now() - started >= WATCH_HELD_MS);
          // Under the default policy: never sent away, and the same stream still delivers.
          assert.equal(memberLog(relaxed.members[0]!).includes(SENT_AWAY), false);
          await ctlOk(relaxed.endpoints(), ['put', 'held/1', 'v1']);
          await kept.until((out) => out.includes('held/1\nv1'));
        } finally {
          kept.stop();
          pinged.stop();
        }
      }),
  );
});
