/**
 * Restarts on a real 3-member cluster: every member stopped with SIGTERM exits 0 and starts
 * again from its data dir with the data intact; a member killed and restarted as after a machine
 * restart rebuilds its KV store (committed without fsync) from its snapshot and WAL; a member
 * started on an existing data dir with another cluster token refuses to start, naming the
 * problem; every member killed at once right after acknowledged puts restarts with its KV store
 * ahead of the commit index its WAL holds (a commit index alone is never written) and applies
 * nothing twice.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type LocalCluster,
  type LocalMember,
  MEMBER_START_TIMEOUT_MS,
} from '../../src/cli/local-cluster.js';
import { waitFor } from '../../src/cli/local-net.js';
import { KV_STATE_FILE } from '../../src/kv/backend/lmdb.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

const KEYS = 40;

describe('restart from the data dir; refusal of another cluster', { timeout: 150_000 }, () => {
  let c: LocalCluster;

  before(async () => {
    c = await startCluster({ label: 'restart' });
  });

  after(async () => {
    await c?.destroy({ kill: true });
  });

  async function withKv<T>(
    m: LocalMember,
    fn: (kv: ReturnType<typeof grpcClients>['kv']) => Promise<T>,
  ): Promise<T> {
    const conn = grpcClients(m.spec.client);
    try {
      return await fn(conn.kv);
    } finally {
      conn.close();
    }
  }

  async function valuesOn(m: LocalMember): Promise<Map<string, string>> {
    return withKv(m, async (kv) => {
      const res = await call(kv, 'Range', {
        key: Buffer.from('r/'),
        rangeEnd: Buffer.from('r0'),
        serializable: true,
      });
      const kvs = (res.kvs ?? []) as { key: Buffer; value: Buffer }[];
      return new Map(kvs.map((x) => [x.key.toString(), x.value.toString()]));
    });
  }

  async function stopAll(): Promise<void> {
    const exits = await Promise.all(c.members.map((m) => m.stop()));
    for (const [i, exit] of exits.entries()) {
      assert.deepEqual(exit, { code: 0, signal: null }, `${c.members[i]!.name} exits 0 on SIGTERM`);
    }
    for (const m of c.members) assert.match(m.log(), /tandem member stopped/);
  }

  test(
    'SIGTERM all, start all from the same data dirs: the data is still there',
    {
      timeout: 60_000,
    },
    () =>
      c.guard('restart', async () => {
        const expected = new Map<string, string>();
        for (let i = 0; i < KEYS; i++) {
          const m = c.members[i % 3]!;
          const key = `r/${String(i).padStart(3, '0')}`;
          await withKv(m, (kv) =>
            call(kv, 'Put', { key: Buffer.from(key), value: Buffer.from(`v${i}`) }),
          );
          expected.set(key, `v${i}`);
        }
        await withKv(c.members[0]!, (kv) => call(kv, 'DeleteRange', { key: Buffer.from('r/000') }));
        expected.delete('r/000');
        const before = await c.waitForCatchUp();

        await stopAll();
        for (const m of c.members) m.spawn();
        await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
        const after = await c.waitForCatchUp();
        assert.ok(after.revision >= before.revision, 'the revision did not go back');
        for (const m of c.members) {
          assert.deepEqual(await valuesOn(m), expected, `${m.name} after the restart`);
        }
        // History survived too: the deleted key is readable at an old revision.
        await withKv(c.members[1]!, async (kv) => {
          const old = await call(kv, 'Range', { key: Buffer.from('r/000'), revision: 2 });
          assert.equal((old.kvs as { value: Buffer }[])[0]?.value.toString(), 'v0');
          await call(kv, 'Put', { key: Buffer.from('r/new'), value: Buffer.from('after') });
        });
        expected.set('r/new', 'after');
        await c.waitForCatchUp();
        for (const m of c.members) assert.deepEqual(await valuesOn(m), expected, m.name);
      }),
  );

  test(
    'kill -9, then a start as after a machine restart: the KV store is rebuilt from snapshot and WAL',
    { timeout: 60_000 },
    () =>
      c.guard('rebuild', async () => {
        const m = c.members[1]!;
        await withKv(c.members[0]!, (kv) =>
          call(kv, 'Put', { key: Buffer.from('r/rebuild'), value: Buffer.from('kept') }),
        );
        await c.waitForCatchUp();
        const expected = await valuesOn(c.members[0]!);
        await m.kill();
        // What the store recorded when it opened, with the boot changed: a machine restart.
        const stateFile = join(m.spec.dataDir, 'kv', KV_STATE_FILE);
        const record = JSON.parse(readFileSync(stateFile, 'utf8')) as { clean: boolean };
        assert.equal(record.clean, false, 'killed: not closed cleanly');
        writeFileSync(stateFile, JSON.stringify({ ...record, bootId: 'a-boot-before-a-reboot' }));
        const logBefore = m.log().length;
        m.spawn();
        await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
        await c.waitForCatchUp();
        assert.match(m.log().slice(logBefore), /KV store not trusted after an unclean stop/);
        assert.deepEqual(await valuesOn(m), expected, `${m.name} rebuilt its KV store`);
      }),
  );

  test(
    'kill -9 every member right after acknowledged puts: each put kept at its revision, none applied twice',
    { timeout: 60_000 },
    () =>
      c.guard('kill-all', async () => {
        const acked = new Map<string, string>();
        let last = 0;
        for (let i = 0; i < 20; i++) {
          const key = `r/kill/${String(i).padStart(2, '0')}`;
          const put = await withKv(c.members[i % 3]!, (kv) =>
            call(kv, 'Put', { key: Buffer.from(key), value: Buffer.from(`k${i}`) }),
          );
          const revision = (put.header as { revision: string }).revision;
          assert.ok(Number(revision) > last, 'revisions grow');
          last = Number(revision);
          acked.set(key, revision);
        }
        // No catch-up, no pause: the leader applied the last puts, and the commit index that
        // covers them is in no WAL yet (it goes with the next synced save, which never comes).
        await Promise.all(c.members.map((m) => m.kill()));
        const logsBefore = c.members.map((m) => m.log().length);
        for (const m of c.members) m.spawn();
        await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
        const recovered = c.members.map((m, i) => {
          const line = m
            .log()
            .slice(logsBefore[i])
            .split('\n')
            .find((l) => l.includes('recovered durable state'));
          assert.ok(line !== undefined, `${m.name} logs what it recovered`);
          return JSON.parse(line) as { walCommitIndex: number; kvAppliedIndex: number };
        });
        assert.ok(
          recovered.some((r) => r.kvAppliedIndex > r.walCommitIndex),
          `a member restarted with its KV store ahead of its WAL's commit index: ${JSON.stringify(recovered)}`,
        );
        for (const m of c.members) {
          // Linearizable: it must see every acknowledged put, on whichever member it is served.
          const kvs = await withKv(m, async (kv) => {
            const res = await call(kv, 'Range', {
              key: Buffer.from('r/kill/'),
              rangeEnd: Buffer.from('r/kill0'),
            });
            return (res.kvs ?? []) as { key: Buffer; modRevision: string }[];
          });
          assert.deepEqual(
            new Map(kvs.map((x) => [x.key.toString(), x.modRevision])),
            acked,
            `${m.name}: every acknowledged put, at the revision it was acknowledged with`,
          );
        }
        // An entry applied twice would have moved the revision on: the next put follows the last.
        const next = await withKv(c.members[0]!, (kv) =>
          call(kv, 'Put', { key: Buffer.from('r/kill/next'), value: Buffer.from('n') }),
        );
        assert.equal(Number((next.header as { revision: string }).revision), last + 1);
      }),
  );

  test(
    'a data dir of another cluster (other token) is refused with a clear error',
    {
      timeout: 60_000,
    },
    () =>
      c.guard('refusal', async () => {
        const m = c.members[2]!;
        assert.deepEqual(await m.stop(), { code: 0, signal: null });
        const original = readFileSync(m.spec.configFile, 'utf8');
        assert.ok(original.includes(c.token));
        writeFileSync(m.spec.configFile, original.replaceAll(c.token, 'some-other-cluster'));
        const logBefore = m.log().length;
        m.spawn();
        const exit = await waitFor(
          `${m.name} to refuse to start`,
          MEMBER_START_TIMEOUT_MS,
          async () => {
            const done = await Promise.race([
              m.exited,
              new Promise<null>((r) => setTimeout(() => r(null), 200)),
            ]);
            return done;
          },
        );
        assert.notEqual(exit.code, 0, 'a refusal exits non-zero');
        assert.equal(exit.signal, null);
        const said = m.log().slice(logBefore);
        assert.match(said, /cannot start n3/);
        assert.match(said, /belongs to another cluster/);
        assert.match(said, /cluster\.token/);

        // With its own token back, it starts and catches up.
        writeFileSync(m.spec.configFile, original);
        m.spawn();
        await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
        await withKv(c.members[0]!, (kv) =>
          call(kv, 'Put', { key: Buffer.from('r/back'), value: Buffer.from('yes') }),
        );
        await c.waitForCatchUp();
        assert.equal((await valuesOn(m)).get('r/back'), 'yes');
      }),
  );
});
