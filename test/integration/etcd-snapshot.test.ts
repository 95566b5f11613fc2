/**
 * Snapshots in etcd's format, between real systems: tandem's Snapshot RPC as `etcdctl snapshot
 * save` gets it, read by `etcdctl snapshot status` (Debian etcd-client 3.4), restored by
 * `etcdctl snapshot restore` into a real etcd (Debian etcd-server) that then serves the same
 * keys, values and revisions; and the other way, an etcd snapshot restored into a new tandem
 * cluster (`tandem restore --from`), as is tandem's own.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { openSnapshotFile } from '../../src/cli/snapshot-file.js';
import { decodeEtcdKeyValue } from '../../src/kv/mvcc/etcd-codec.js';
import { ctl, ctlOk, ETCDCTL_MISSING, killCtls } from './clients.js';
import { startCluster } from './cluster.js';
import {
  dumpKv,
  ETCD_MISSING,
  type EtcdMember,
  etcdctlRestore,
  planEtcd,
  snapshotStatus,
  startEtcd,
  writeWorkload,
} from './etcd-process.js';

const TEST_TIMEOUT_MS = 120_000;
const enc = new TextEncoder();

/**
 * The key bucket of a snapshot file: the raw bytes of each entry, except that a leased value's
 * lease id (which each system picks itself) is left out: its value is shown without field 6.
 */
function keyBucket(file: string): { revKey: string; value: string }[] {
  const opened = openSnapshotFile(file);
  try {
    return [...(opened.reader.bucket(enc.encode('key')) ?? [])].map(([k, v]) => {
      const leased = decodeEtcdKeyValue(v).lease !== 0n;
      const raw = Buffer.from(v);
      const value = leased ? withoutLastVarintField(raw, 6) : raw;
      return { revKey: Buffer.from(k).toString('hex'), value: value.toString('hex') };
    });
  } finally {
    opened.close();
  }
}

/** `bytes` less its last field, a varint numbered `field` (gogoproto writes lease last). */
function withoutLastVarintField(bytes: Buffer, field: number): Buffer {
  let start = bytes.length - 1; // the varint's last byte has no continuation bit
  while (start > 0 && bytes[start - 1]! >= 0x80) start--;
  assert.equal(bytes[start - 1], field << 3, 'the last field is the lease');
  return bytes.subarray(0, start - 1);
}

/** A read below the compaction must fail the same way on both systems. */
async function compactedRead(endpoints: readonly string[], rev: number): Promise<string> {
  const r = await ctl(endpoints, ['get', 'a', `--rev=${rev}`]);
  return r.code === 0 ? r.stdout : r.stderr.trim().split('\n').at(-1)!;
}

describe('etcd snapshot format', { skip: ETCDCTL_MISSING, timeout: 600_000 }, () => {
  let source: LocalCluster;
  let dir: string;
  let tandemFile: string;
  let workload: { leaseId: string; compactRevision: number };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-it-etcd-snapshot-'));
    source = await startCluster({ label: 'snap-src', size: 1 });
    workload = await writeWorkload(source.endpoints());
    tandemFile = join(dir, 'tandem.db');
    assert.match(
      await ctlOk(source.endpoints(), ['snapshot', 'save', tandemFile]),
      /Snapshot saved/,
    );
  });

  after(async () => {
    killCtls();
    await source?.destroy({ kill: true });
    rmSync(dir, { recursive: true, force: true });
  });

  test('etcdctl snapshot status reads a tandem snapshot: its revision and every entry', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const status = await snapshotStatus(tandemFile);
    const now = await dumpKv(source.endpoints());
    assert.equal(status.revision, now.revision);
    // Every bucket's entries: the key history since the compaction and etcd's other buckets.
    const opened = openSnapshotFile(tandemFile);
    let entries = 0;
    for (const name of opened.reader.bucketNames()) {
      for (const _ of opened.reader.bucket(name) ?? []) entries++;
    }
    opened.close();
    assert.equal(status.totalKey, entries);
    assert.ok(status.totalKey > now.kvs.length, `${status.totalKey} entries: the history too`);
  });

  describe('against a real etcd', { skip: ETCD_MISSING }, () => {
    let etcdSource: EtcdMember;
    let etcdFile: string;
    let etcdWorkload: { leaseId: string; compactRevision: number };

    before(async () => {
      etcdSource = await startEtcd(await planEtcd('src'));
      etcdWorkload = await writeWorkload([etcdSource.endpoint]);
      etcdFile = join(dir, 'etcd.db');
      await ctlOk([etcdSource.endpoint], ['snapshot', 'save', etcdFile]);
    });

    after(async () => {
      await etcdSource?.stop();
    });

    test('the same writes give the same key bucket, byte for byte (lease ids aside)', {
      timeout: TEST_TIMEOUT_MS,
    }, async () => {
      assert.equal(etcdWorkload.compactRevision, workload.compactRevision);
      assert.deepEqual(keyBucket(tandemFile), keyBucket(etcdFile));
      const [ours, theirs] = [await snapshotStatus(tandemFile), await snapshotStatus(etcdFile)];
      assert.equal(ours.revision, theirs.revision);
    });

    test('etcdctl snapshot restore of a tandem snapshot: real etcd serves the same data', {
      timeout: TEST_TIMEOUT_MS,
    }, async () => {
      const plan = await planEtcd('from-tandem');
      await etcdctlRestore(plan, tandemFile);
      const restored = await startEtcd(plan);
      try {
        const at = [restored.endpoint];
        const want = await dumpKv(source.endpoints());
        assert.deepEqual(await dumpKv(at), want);
        // History since the compaction, and the compaction itself.
        const rev = workload.compactRevision;
        assert.deepEqual(await dumpKv(at, rev), await dumpKv(source.endpoints(), rev));
        assert.equal(
          await compactedRead(at, rev - 1),
          await compactedRead(source.endpoints(), rev - 1),
        );
        assert.match(await compactedRead(at, rev - 1), /compacted/);
        // The lease, with its key.
        const ttl = await ctlOk(at, ['lease', 'timetolive', workload.leaseId, '--keys']);
        assert.match(
          ttl,
          new RegExp(
            `lease ${workload.leaseId} granted with TTL\\(600s\\).*attached keys\\(\\[leased\\]\\)`,
          ),
        );
        // And it takes writes at the next revision.
        assert.match(
          await ctlOk(at, ['put', 'after', 'restore', '-w', 'json']),
          new RegExp(`"revision":${want.revision + 1}`),
        );
      } finally {
        await restored.stop();
      }
    });

    test('migration etcd -> tandem -> etcd: every key, revision and lease intact', {
      timeout: TEST_TIMEOUT_MS,
    }, async () => {
      const restored = await startCluster({
        label: 'snap-from-etcd',
        size: 1,
        restoreFrom: etcdFile,
      });
      const want = await dumpKv([etcdSource.endpoint]);
      const rev = etcdWorkload.compactRevision;
      const wantAtCompaction = await dumpKv([etcdSource.endpoint], rev);
      const back = join(dir, 'back.db');
      try {
        // etcd -> tandem
        const at = restored.endpoints();
        assert.deepEqual(await dumpKv(at), want);
        assert.deepEqual(await dumpKv(at, rev), wantAtCompaction);
        assert.equal(
          await compactedRead(at, rev - 1),
          await compactedRead([etcdSource.endpoint], rev - 1),
        );
        const ttl = await ctlOk(at, ['lease', 'timetolive', etcdWorkload.leaseId, '--keys']);
        assert.match(ttl, /attached keys\(\[leased\]\)/);
        await ctlOk(at, ['snapshot', 'save', back]);
        assert.match(
          await ctlOk(at, ['put', 'after', 'restore', '-w', 'json']),
          new RegExp(`"revision":${want.revision + 1}`),
        );
      } finally {
        await restored.destroy({ kill: true });
      }
      // ... -> etcd again
      const plan = await planEtcd('back');
      await etcdctlRestore(plan, back);
      const again = await startEtcd(plan);
      try {
        assert.deepEqual(await dumpKv([again.endpoint]), want);
        assert.deepEqual(await dumpKv([again.endpoint], rev), wantAtCompaction);
        const ttl = await ctlOk(
          [again.endpoint],
          ['lease', 'timetolive', etcdWorkload.leaseId, '--keys'],
        );
        assert.match(
          ttl,
          new RegExp(
            `lease ${etcdWorkload.leaseId} granted with TTL\\(600s\\).*attached keys\\(\\[leased\\]\\)`,
          ),
        );
      } finally {
        await again.stop();
      }
    });
  });

  test('tandem restore --from its own snapshot: a new 3-member cluster with the same data', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const restored = await startCluster({
      label: 'snap-from-tandem',
      size: 3,
      restoreFrom: tandemFile,
    });
    try {
      const want = await dumpKv(source.endpoints());
      for (const m of restored.members) assert.deepEqual(await dumpKv([m.spec.client]), want);
      const rev = workload.compactRevision;
      assert.deepEqual(
        await dumpKv(restored.endpoints(), rev),
        await dumpKv(source.endpoints(), rev),
      );
      const ttl = await ctlOk(restored.endpoints(), [
        'lease',
        'timetolive',
        workload.leaseId,
        '--keys',
      ]);
      assert.match(ttl, /attached keys\(\[leased\]\)/);
    } finally {
      await restored.destroy({ kill: true });
    }
  });
});
