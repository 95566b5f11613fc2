/**
 * Protocol-aware WAL recovery with real processes (3 members on 127.0.0.1): a committed entry
 * record damaged in BOTH copies of a member's WAL (primary and `wal.mirror`) is fetched from the
 * running peers before the member's Raft starts; the member starts, holds every acknowledged
 * write, the repaired entries are byte for byte the leader's, and the WAL reads clean after.
 * Damage that cannot be recovered (no intact entry record bounds it) makes the process exit
 * non-zero with an error saying why.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type LocalCluster,
  type LocalMember,
  MEMBER_START_TIMEOUT_MS,
} from '../../src/cli/local-cluster.js';
import { waitFor } from '../../src/cli/local-net.js';
import type { Entry } from '../../src/raft/types.js';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import { NodeFileSystem } from '../../src/storage/fs.js';
import { type InspectedRecord, inspectWal } from '../../src/storage/wal/inspect.js';
import { Wal } from '../../src/storage/wal/wal.js';
import { call, grpcClients } from './clients.js';
import { startCluster } from './cluster.js';

/** The log a WAL's records spell (later records win), by index. */
function logOf(records: readonly InspectedRecord[]): Map<number, Entry> {
  const log = new Map<number, Entry>();
  for (const r of records) {
    if (r.entry === null) continue;
    for (const i of [...log.keys()]) if (i >= r.entry.index) log.delete(i);
    log.set(r.entry.index, r.entry);
  }
  return log;
}

describe('protocol-aware WAL recovery, real processes', { timeout: 150_000 }, () => {
  let c: LocalCluster;
  const expected = new Map<string, string>();

  before(async () => {
    c = await startCluster({ label: 'walrec' });
  });

  after(async () => {
    await c?.destroy({ kill: true });
  });

  async function put(m: LocalMember, from: number, count: number): Promise<void> {
    const conn = grpcClients(m.spec.client);
    try {
      for (let i = from; i < from + count; i++) {
        const key = `w/${String(i).padStart(3, '0')}`;
        await call(conn.kv, 'Put', { key: Buffer.from(key), value: Buffer.from(`v${i}`) });
        expected.set(key, `v${i}`);
      }
    } finally {
      conn.close();
    }
  }

  async function serializableValues(m: LocalMember): Promise<Map<string, string>> {
    const conn = grpcClients(m.spec.client);
    try {
      const res = await call(conn.kv, 'Range', {
        key: Buffer.from('w/'),
        rangeEnd: Buffer.from('w0'),
        serializable: true,
      });
      const kvs = (res.kvs ?? []) as { key: Buffer; value: Buffer }[];
      return new Map(kvs.map((x) => [x.key.toString(), x.value.toString()]));
    } finally {
      conn.close();
    }
  }

  test('a committed entry damaged in the WAL and its mirror is fetched from peers; the member starts whole', () =>
    c.guard('fetch', async () => {
      const leader = await c.leader();
      const n3 = c.members.find((m) => m !== leader)!;
      const mirror = join(c.dir, `${n3.name}-mirror`);
      const env = { TANDEM_WAL_MIRROR: mirror };
      const walDir = join(n3.spec.dataDir, 'wal');
      await put(leader, 0, 30);
      // Restart n3 with a mirror: recovery clones the WAL into it.
      assert.deepEqual(await n3.stop(), { code: 0, signal: null });
      n3.spawn(env);
      await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
      await put(leader, 30, 30);
      const before = await c.waitForCatchUp();
      const ids = { clusterId: Number.parseInt(before.clusterId, 16) };
      const n3Status = await n3.status();
      const memberId = Number.parseInt(n3Status.memberId, 16);
      assert.deepEqual(await n3.stop(), { code: 0, signal: null });

      // A committed entry record in the middle of n3's log, with entry records after it.
      const records = inspectWal(walDir);
      const commit = Math.max(...records.map((r) => r.hardState?.commit ?? -1));
      const entries = records.filter((r) => r.entry !== null && r.entry.index <= commit - 5);
      assert.ok(entries.length > 20, `enough committed entries: ${entries.length}`);
      const target = entries[Math.floor(entries.length / 2)]!;
      const fs = new FaultyFileSystem(new NodeFileSystem());
      await fs.flipBit(target.file, target.payloadAt + 2, 4);
      await fs.flipBit(join(mirror, target.file.slice(walDir.length + 1)), target.payloadAt + 3, 1);

      const logFrom = n3.log().length;
      n3.spawn(env);
      await c.waitForLeader(MEMBER_START_TIMEOUT_MS);
      const said = () => n3.log().slice(logFrom);
      assert.match(
        said(),
        new RegExp(
          `WAL record at ${target.file.replaceAll('.', '\\.')}:${target.offset} damaged in every copy; ` +
            'fetching committed entries \\d+\\.\\.\\d+ from peers',
        ),
      );
      assert.match(said(), /fetched committed entries \d+\.\.\d+ from a peer/);
      assert.match(said(), /the log was rewritten into a fresh segment/);

      // Every acknowledged write, read locally on n3; then new writes reach it too.
      await put(leader, 60, 10);
      await c.waitForCatchUp();
      assert.deepEqual(await serializableValues(n3), expected);

      // The repaired log is the leader's, entry for entry (read-only look at the live leader).
      const leaderLog = logOf(inspectWal(join(leader.spec.dataDir, 'wal')));
      assert.deepEqual(await n3.stop(), { code: 0, signal: null });
      const reopened = await Wal.open({
        fs: new NodeFileSystem(),
        dir: walDir,
        mirrorDir: mirror,
        clusterId: ids.clusterId,
        memberId,
      });
      try {
        assert.deepEqual(reopened.stats.damaged, [], 'the WAL reads clean');
        assert.deepEqual(reopened.stats.repaired, [], 'both copies agree');
        const index = target.entry!.index;
        const mine = reopened.entries.find((e) => e.index === index)!;
        const theirs = leaderLog.get(index)!;
        assert.equal(mine.term, theirs.term);
        assert.ok(Buffer.from(mine.data).equals(Buffer.from(theirs.data)), `entry ${index}`);
      } finally {
        await reopened.wal.close();
      }
      const cleanFrom = n3.log().length;
      n3.spawn(env);
      await c.waitForCatchUp(MEMBER_START_TIMEOUT_MS);
      assert.doesNotMatch(n3.log().slice(cleanFrom), /damaged in every copy/);
    }));

  test('damage no intact entry record bounds: the process exits non-zero and says why', () =>
    c.guard('refuse', async () => {
      const leader = await c.leader();
      const m = c.members.find((x) => x !== leader && x.running)!;
      await put(leader, 70, 5);
      await c.waitForCatchUp();
      // The follower persists the commit of its last entry in a later hard-state-only batch.
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(await m.stop(), { code: 0, signal: null });
      const walDir = join(m.spec.dataDir, 'wal');
      const records = inspectWal(walDir);
      const lastEntry = records.findLastIndex((r) => r.entry !== null);
      assert.ok(
        records.slice(lastEntry + 1).some((r) => r.hardState !== null),
        'a hard state follows the last entry',
      );
      const target = records[lastEntry]!;
      const fs = new FaultyFileSystem(new NodeFileSystem());
      await fs.flipBit(target.file, target.payloadAt + 2, 4);
      const mirrorFile = target.file.replace(walDir, join(c.dir, `${m.name}-mirror`));
      const hasMirror = readdirSync(c.dir).includes(`${m.name}-mirror`);
      if (hasMirror) await fs.flipBit(mirrorFile, target.payloadAt + 2, 5);
      const logFrom = m.log().length;
      m.spawn(hasMirror ? { TANDEM_WAL_MIRROR: join(c.dir, `${m.name}-mirror`) } : {});
      const exit = await waitFor(
        `${m.name} to refuse to start`,
        MEMBER_START_TIMEOUT_MS,
        async () =>
          Promise.race([m.exited, new Promise<null>((r) => setTimeout(() => r(null), 200))]),
      );
      assert.notEqual(exit.code, 0);
      assert.equal(exit.signal, null);
      const said = m.log().slice(logFrom);
      assert.match(said, /WAL corrupt: .*\.wal at byte \d+: damaged in every copy/);
      assert.match(said, /no intact entry record follows the damage/);
    }));
});
