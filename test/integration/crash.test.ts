/**
 * Crash test on a real 3-member cluster: 4 concurrent writers put unique keys through all three
 * endpoints; the leader is killed -9 once WRITES_EACH_SIDE writes were acknowledged (and at least
 * KILL_AT_MS in), restarted from its data dir RESTART_GAP_MS later, and the writers go on until
 * WRITES_EACH_SIDE more were acknowledged (and at least RUN_MS in): counts, not times, so a
 * loaded machine slows the test rather than failing it. Afterwards
 * every acknowledged write is on EVERY member (serializable reads of each member once it applied
 * the leader's commit index), and no member holds a key that was never attempted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster, LocalMember } from '../../src/cli/local-cluster.js';
import { sleep, waitFor } from '../../src/cli/local-net.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

const WRITERS = 4;
const RUN_MS = 8_000;
const KILL_AT_MS = 2_500;
const RESTART_GAP_MS = 2_000;
/** Acknowledged writes wanted before the kill, and again after it. */
const WRITES_EACH_SIDE = 40;
/** How long each side may take to get them, on the slowest machine. */
const SIDE_TIMEOUT_MS = 30_000;
const CALL_DEADLINE_MS = 3_000;
const PREFIX = 'crash/';

describe('crash: kill -9 the leader under concurrent writes', { timeout: 180_000 }, () => {
  let c: LocalCluster;
  const conns: ReturnType<typeof grpcClients>[] = [];

  before(async () => {
    c = await startCluster({ label: 'crash' });
    for (const m of c.members) conns.push(grpcClients(m.spec.client));
  });

  after(async () => {
    for (const conn of conns) conn.close();
    await c?.destroy({ kill: true });
  });

  async function keysOn(m: LocalMember): Promise<Map<string, string>> {
    const conn = conns[c.members.indexOf(m)]!;
    const res = await call(conn.kv, 'Range', {
      key: Buffer.from(PREFIX),
      rangeEnd: Buffer.from(PREFIX.replace(/\/$/, '0')),
      serializable: true,
    });
    const kvs = (res.kvs ?? []) as { key: Buffer; value: Buffer }[];
    assert.equal(Number(res.count), kvs.length, `${m.name}: a complete range`);
    return new Map(kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
  }

  test(
    'every acknowledged write survives on every member; nothing unattempted appears',
    {
      timeout: 150_000,
    },
    () =>
      c.guard('crash', async () => {
        const attempted = new Set<string>();
        const acked = new Set<string>();
        const errors = new Map<string, number>();
        let stop = false;
        const writer = async (w: number): Promise<void> => {
          for (let seq = 0; !stop && seq < 1_000_000; seq++) {
            const key = `${PREFIX}w${w}/${String(seq).padStart(6, '0')}`;
            const conn = conns[(w + seq) % conns.length]!;
            attempted.add(key);
            try {
              await call(
                conn.kv,
                'Put',
                { key: Buffer.from(key), value: Buffer.from(key) },
                CALL_DEADLINE_MS,
              );
              acked.add(key);
            } catch (error) {
              const code = String((error as { code?: number }).code);
              errors.set(code, (errors.get(code) ?? 0) + 1);
              await sleep(20);
            }
          }
        };
        const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));

        const started = Date.now();
        try {
          await sleep(KILL_AT_MS);
          await waitFor(`${WRITES_EACH_SIDE} writes before the kill`, SIDE_TIMEOUT_MS, () =>
            acked.size >= WRITES_EACH_SIDE ? true : null,
          );
          const victim = await c.leader();
          const ackedBeforeKill = acked.size;
          await victim.kill();
          await sleep(RESTART_GAP_MS);
          victim.spawn();
          await waitFor(`${WRITES_EACH_SIDE} writes after the kill`, SIDE_TIMEOUT_MS, () =>
            acked.size >= ackedBeforeKill + WRITES_EACH_SIDE ? true : null,
          );
          await sleep(Math.max(0, RUN_MS - (Date.now() - started)));
        } finally {
          stop = true;
          await Promise.all(writers);
        }

        // The restarted member rejoins and catches up; then all members agree on everything.
        const target = await c.waitForCatchUp(30_000);
        assert.ok(target.revision >= acked.size, 'the leader counts at least every acked write');
        let views: Map<string, string>[] = [];
        await waitFor(
          'all members to hold the same keys',
          20_000,
          async () => {
            await c.waitForCatchUp(10_000);
            views = await Promise.all(c.members.map((m) => keysOn(m)));
            return views.every((v) => v.size === views[0]!.size) ? true : null;
          },
          { intervalMs: 500 },
        );
        for (const [i, view] of views.entries()) {
          const name = c.members[i]!.name;
          assert.ok(view.size >= acked.size, `${name}: ${view.size} keys < ${acked.size} acked`);
          const missing = [...acked].filter((k) => !view.has(k));
          assert.deepEqual(
            missing.slice(0, 10),
            [],
            `${name} lost ${missing.length} acknowledged writes`,
          );
          const unknown = [...view.keys()].filter((k) => !attempted.has(k));
          assert.deepEqual(unknown, [], `${name} holds keys never attempted`);
          for (const [k, v] of view) assert.equal(v, k, `${name}: value of ${k}`);
          assert.deepEqual(
            [...view.keys()].sort(),
            [...views[0]!.keys()].sort(),
            `${name} = ${c.members[0]!.name}`,
          );
        }
        const statuses = await c.statuses();
        assert.equal(statuses.size, 3, 'all three members answer');
        assert.equal(
          new Set([...statuses.values()].map((s) => s.revision)).size,
          1,
          'one revision',
        );
        process.stderr.write(
          `crash test: ${attempted.size} attempted, ${acked.size} acknowledged, ${views[0]!.size} present, errors ${JSON.stringify(Object.fromEntries(errors))}\n`,
        );
      }),
  );
});
