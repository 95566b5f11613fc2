/**
 * Snapshots in etcd's format, between real systems: tandem's Snapshot RPC as `etcdctl snapshot
 * save` gets it, read by `etcdctl snapshot status` (Debian etcd-client 3.4), restored by
 * `etcdctl snapshot restore` into a real etcd (Debian etcd-server) that then serves the same
 * keys, values, revisions, users and roles; and the other way, an etcd snapshot restored into a
 * new tandem cluster (`tandem restore --from`), as is tandem's own.
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

/**
 * Users and roles (auth left off, so the tests' plain etcdctl calls still work): the same on
 * either system, and what `authView` reads back.
 */
async function writeAuth(endpoints: readonly string[]): Promise<void> {
  await ctlOk(endpoints, ['role', 'add', 'reader']);
  await ctlOk(endpoints, ['role', 'grant-permission', 'reader', 'read', 'a', 'b']);
  await ctlOk(endpoints, ['role', 'grant-permission', 'reader', 'readwrite', 'dir/', '--prefix']);
  await ctlOk(endpoints, ['user', 'add', 'alice', '--new-user-password=pw-alice']);
  await ctlOk(endpoints, ['user', 'grant-role', 'alice', 'reader']);
  await ctlOk(endpoints, ['user', 'add', 'svc', '--no-password']);
}

/** The users and roles an endpoint serves, as etcdctl prints them. */
async function authView(endpoints: readonly string[]): Promise<string> {
  const parts = [
    await ctlOk(endpoints, ['user', 'list']),
    await ctlOk(endpoints, ['role', 'list']),
    await ctlOk(endpoints, ['user', 'get', 'alice', '--detail']),
    await ctlOk(endpoints, ['role', 'get', 'reader']),
  ];
  return parts.join('');
}

/** A snapshot file's auth buckets: each entry in hex, a user's password field cut out. */
function authBuckets(file: string): Record<string, [string, string][]> {
  const opened = openSnapshotFile(file);
  try {
    const out: Record<string, [string, string][]> = {};
    for (const name of ['auth', 'authUsers', 'authRoles']) {
      out[name] = [...(opened.reader.bucket(enc.encode(name)) ?? [])].map(([k, v]) => {
        const value = name === 'authUsers' ? withoutPassword(Buffer.from(v)) : Buffer.from(v);
        return [Buffer.from(k).toString('hex'), value.toString('hex')];
      });
    }
    return out;
  } finally {
    opened.close();
  }
}

/** authpb.User bytes less field 2 (password), which follows field 1 (name) as gogoproto writes. */
function withoutPassword(user: Buffer): Buffer {
  assert.equal(user[0], 0x0a, 'a user starts with its name');
  assert.ok(user[1]! < 0x80, 'short names in this test');
  const at = 2 + user[1]!;
  if (user[at] !== 0x12) return user;
  let length = 0;
  let end = at + 1;
  for (let shift = 0; ; shift += 7) {
    const b = user[end++]!;
    length |= (b & 0x7f) << shift;
    if (b < 0x80) break;
  }
  return Buffer.concat([user.subarray(0, at), user.subarray(end + length)]);
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
    await writeAuth(source.endpoints());
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
      await writeAuth([etcdSource.endpoint]);
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

    test("the same users and roles give etcd's auth buckets, byte for byte (hashes aside)", {
      timeout: TEST_TIMEOUT_MS,
    }, async () => {
      const [ours, theirs] = [authBuckets(tandemFile), authBuckets(etcdFile)];
      assert.equal(ours.authUsers!.length, 2);
      assert.deepEqual(ours, theirs);
      const [a, b] = [await snapshotStatus(tandemFile), await snapshotStatus(etcdFile)];
      assert.equal(a.totalKey, b.totalKey);
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
        assert.deepEqual(await authView(at), await authView(source.endpoints()));
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

    test('users migrated from etcd log in to tandem with their etcd passwords (bcrypt)', {
      timeout: TEST_TIMEOUT_MS,
    }, async () => {
      const restored = await startCluster({
        label: 'snap-etcd-login',
        size: 1,
        restoreFrom: etcdFile,
      });
      try {
        const at = restored.endpoints();
        await ctlOk(at, ['put', 'a', 'va']);
        await ctlOk(at, ['user', 'add', 'root', '--new-user-password=pw-root']);
        await ctlOk(at, ['user', 'grant-role', 'root', 'root']);
        await ctlOk(at, ['auth', 'enable']);
        // alice's hash is etcd's bcrypt: her etcd password opens her etcd permissions.
        assert.match(await ctlOk(at, ['--user', 'alice:pw-alice', 'get', 'a']), /^a\nva\n$/);
        const wrong = await ctl(at, ['--user', 'alice:not-hers', 'get', 'a']);
        assert.notEqual(wrong.code, 0);
        assert.match(wrong.stderr, /authentication failed, invalid user ID or password/);
        const denied = await ctl(at, ['--user', 'alice:pw-alice', 'put', 'a', 'x']);
        assert.match(denied.stderr, /permission denied/);
      } finally {
        await restored.destroy({ kill: true });
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
      const wantAuth = await authView([etcdSource.endpoint]);
      const back = join(dir, 'back.db');
      try {
        // etcd -> tandem
        const at = restored.endpoints();
        assert.deepEqual(await dumpKv(at), want);
        assert.deepEqual(await dumpKv(at, rev), wantAtCompaction);
        assert.deepEqual(await authView(at), wantAuth);
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
        assert.deepEqual(await authView([again.endpoint]), wantAuth);
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
      assert.deepEqual(await authView(restored.endpoints()), await authView(source.endpoints()));
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
