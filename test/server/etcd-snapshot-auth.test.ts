/**
 * The auth store and removed members in etcd's snapshot buckets (src/kv/auth/etcd-codec.ts,
 * src/server/etcd-snapshot.ts): the encodings byte for byte against hand-assembled protobuf,
 * decoded by protobufjs from etcd's own auth.proto, and a round trip through the bbolt writer
 * and reader into `restoreEtcdSnapshot` (what `tandem restore --from` runs).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../../src/api/proto.js';
import {
  decodeEtcdRole,
  decodeEtcdUser,
  encodeEtcdRole,
  encodeEtcdUser,
} from '../../src/kv/auth/etcd-codec.js';
import { PermType } from '../../src/kv/auth/perm-ranges.js';
import { type AuthOp, AuthStore, NO_CREDENTIALS } from '../../src/kv/auth/store.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import { KvError } from '../../src/kv/errors.js';
import { encodeEtcdKeyValue } from '../../src/kv/mvcc/etcd-codec.js';
import { etcdSnapshotFile, restoreEtcdSnapshot } from '../../src/server/etcd-snapshot.js';
import { META_AUTH } from '../../src/server/meta-keys.js';
import { BboltReader, bytesPageSource } from '../../src/storage/bbolt/reader.js';
import { type BboltEntry, BboltFileWriter } from '../../src/storage/bbolt/writer.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const authpb = new protobuf.Root().loadSync(join(PROTO_DIR, 'auth.proto'), { keepCase: true });
const PbUser = authpb.lookupType('authpb.User');
const PbRole = authpb.lookupType('authpb.Role');
const toJson = (type: protobuf.Type, bytes: Uint8Array) =>
  type.toObject(type.decode(bytes), { bytes: String, enums: String, defaults: false });
const b64 = (s: string) => Buffer.from(s).toString('base64');

function storeWith(ops: readonly AuthOp[]): AuthStore {
  const store = new AuthStore();
  for (const op of ops) store.apply(op, NO_CREDENTIALS);
  return store;
}

const SCRYPT_HASH = 'scrypt$14$8$1$c2FsdA==$aGFzaA==';
const OPS: readonly AuthOp[] = [
  { op: 'userAdd', name: 'root', passwordHash: SCRYPT_HASH, noPassword: false },
  { op: 'userAdd', name: 'alice', passwordHash: SCRYPT_HASH, noPassword: false },
  { op: 'userAdd', name: 'svc', passwordHash: '', noPassword: true },
  { op: 'roleAdd', name: 'reader' },
  {
    op: 'roleGrantPermission',
    name: 'reader',
    perm: { permType: PermType.Read, key: enc.encode('a'), rangeEnd: enc.encode('b') },
  },
  {
    op: 'roleGrantPermission',
    name: 'reader',
    perm: { permType: PermType.ReadWrite, key: enc.encode('k'), rangeEnd: new Uint8Array(0) },
  },
  { op: 'userGrantRole', user: 'root', role: 'root' },
  { op: 'userGrantRole', user: 'alice', role: 'reader' },
  { op: 'authEnable' },
];

test('authpb.User and authpb.Role as gogoproto writes them: known bytes, and protobufjs agrees', () => {
  const user = { name: 'u', passwordHash: 'h', roles: ['r'], noPassword: false };
  // 1 name "u" | 2 password "h" | 3 roles "r" | 4 options {} (etcd 3.4 always sets options).
  assert.equal(
    Buffer.from(encodeEtcdUser(user)).toString('hex'),
    '0a0175120168' + '1a0172' + '2200',
  );
  const noPassword = { name: 'u', passwordHash: '', roles: [], noPassword: true };
  assert.equal(Buffer.from(encodeEtcdUser(noPassword)).toString('hex'), '0a0175' + '22020801');
  const role = {
    name: 'r',
    perms: [
      { permType: PermType.Read, key: enc.encode('a'), rangeEnd: new Uint8Array(0) },
      { permType: PermType.Write, key: enc.encode('a'), rangeEnd: enc.encode('b') },
    ],
  };
  // 1 name "r" | 2 {2 key "a"} (READ is 0: left out) | 2 {1 WRITE | 2 key "a" | 3 range_end "b"}
  assert.equal(
    Buffer.from(encodeEtcdRole(role)).toString('hex'),
    '0a0172' + '12031201' + '61' + '120808011201611a0162',
  );
  assert.deepEqual(toJson(PbUser, encodeEtcdUser(user)), {
    name: b64('u'),
    password: b64('h'),
    roles: ['r'],
    options: {},
  });
  assert.deepEqual(toJson(PbUser, encodeEtcdUser(noPassword)), {
    name: b64('u'),
    options: { no_password: true },
  });
  assert.deepEqual(toJson(PbRole, encodeEtcdRole(role)), {
    name: b64('r'),
    keyPermission: [{ key: b64('a') }, { permType: 'WRITE', key: b64('a'), range_end: b64('b') }],
  });
  assert.deepEqual(decodeEtcdUser(encodeEtcdUser(user)), user);
  assert.deepEqual(decodeEtcdUser(encodeEtcdUser(noPassword)), noPassword);
  assert.deepEqual(decodeEtcdRole(encodeEtcdRole(role)), role);
});

test('etcd-written records decode (protobufjs from auth.proto), bad ones are SNAPSHOT_CORRUPT', () => {
  const bcrypt = '$2a$10$abcdefghijklmnopqrstuuOPQRSTUVWXYZ0123456789abcdefghi';
  const bytes = PbUser.encode(
    PbUser.create({ name: enc.encode('bob'), password: enc.encode(bcrypt), roles: ['x', 'y'] }),
  ).finish();
  assert.deepEqual(decodeEtcdUser(bytes), {
    name: 'bob',
    passwordHash: bcrypt,
    roles: ['x', 'y'],
    noPassword: false,
  });
  const role = PbRole.encode(
    PbRole.create({
      name: enc.encode('x'),
      keyPermission: [{ permType: 2, key: enc.encode('p'), range_end: enc.encode('q') }],
    }),
  ).finish();
  assert.deepEqual(decodeEtcdRole(role), {
    name: 'x',
    perms: [{ permType: PermType.ReadWrite, key: enc.encode('p'), rangeEnd: enc.encode('q') }],
  });
  const isCorrupt = (e: unknown) => e instanceof KvError && e.code === 'SNAPSHOT_CORRUPT';
  assert.throws(() => decodeEtcdUser(Uint8Array.of(0x0a, 0x05, 0x61)), isCorrupt); // overrun
  assert.throws(() => decodeEtcdUser(new Uint8Array(0)), isCorrupt); // no name
  assert.throws(
    () => decodeEtcdRole(Uint8Array.of(0x0a, 0x01, 0x72, 0x12, 0x02, 0x08, 0x07)),
    isCorrupt,
  );
});

/** The snapshot file of a memory backend holding `store` and one key, as bytes. */
function snapshotOf(store: AuthStore, removedMemberIds: readonly number[]): Uint8Array {
  const backend = new MemoryBackend();
  backend.write((tx) => {
    tx.put('meta', META_AUTH, store.encode());
  });
  const file = etcdSnapshotFile({
    view: backend.readView(),
    appliedIndex: 7,
    revision: 1,
    compactRevision: 0,
    members: [],
    removedMemberIds,
  });
  return Buffer.concat([...file.chunks]);
}

function bucket(reader: BboltReader, name: string): BboltEntry[] {
  return [...(reader.bucket(enc.encode(name)) ?? [])];
}

test('a snapshot carries the auth store and removed members; restore reads the store back', () => {
  const store = storeWith(OPS);
  const file = snapshotOf(store, [0xabc, 7]);
  const reader = new BboltReader(bytesPageSource(file));
  // auth: the revision (8 bytes BE) and, auth being on, authEnabled = [1].
  const auth = new Map(bucket(reader, 'auth').map(([k, v]) => [dec.decode(k), Buffer.from(v)]));
  assert.deepEqual([...auth.keys()], ['authEnabled', 'authRevision']);
  assert.equal(auth.get('authEnabled')!.toString('hex'), '01');
  assert.equal(auth.get('authRevision')!.readBigUInt64BE(0), BigInt(store.revision));
  assert.ok(store.revision > 1);
  const users = bucket(reader, 'authUsers');
  assert.deepEqual(
    users.map(([k]) => dec.decode(k)),
    ['alice', 'root', 'svc'],
  );
  assert.deepEqual(toJson(PbUser, users[0]![1]), {
    name: b64('alice'),
    password: b64(SCRYPT_HASH),
    roles: ['reader'],
    options: {},
  });
  const roles = bucket(reader, 'authRoles');
  assert.deepEqual(
    roles.map(([k, v]) => [dec.decode(k), toJson(PbRole, v)]),
    [
      [
        'reader',
        {
          name: b64('reader'),
          keyPermission: [
            { key: b64('a'), range_end: b64('b') },
            { permType: 'READWRITE', key: b64('k') },
          ],
        },
      ],
    ],
  );
  // members_removed: the id in hex -> "removed", by key.
  assert.deepEqual(
    bucket(reader, 'members_removed').map(([k, v]) => [dec.decode(k), dec.decode(v)]),
    [
      ['7', 'removed'],
      ['abc', 'removed'],
    ],
  );
  // Back into tandem: the same store, passwords included (tandem's own hashes).
  const target = new MemoryBackend();
  const result = restoreEtcdSnapshot(target, reader);
  assert.equal(result.users, 3);
  assert.equal(result.roles, 1);
  assert.equal(result.authEnabled, true);
  assert.deepEqual(result.passwordsToReset, []);
  const restored = AuthStore.decode(target.get('meta', META_AUTH));
  assert.deepEqual(restored.state(), store.state());
  // The restored store checks permissions as the original did.
  const alice = { username: 'alice', revision: restored.revision };
  assert.doesNotThrow(() =>
    restored.checkOp(alice, PermType.Read, enc.encode('a'), new Uint8Array(0)),
  );
  assert.throws(() => restored.checkOp(alice, PermType.Write, enc.encode('a'), new Uint8Array(0)));
});

test('auth never touched: authRevision 1 alone (as a fresh etcd), and restore leaves no record', () => {
  const file = snapshotOf(new AuthStore(), []);
  const reader = new BboltReader(bytesPageSource(file));
  assert.deepEqual(
    bucket(reader, 'auth').map(([k, v]) => [dec.decode(k), Buffer.from(v).toString('hex')]),
    [['authRevision', '0000000000000001']],
  );
  assert.deepEqual(bucket(reader, 'authUsers'), []);
  assert.deepEqual(bucket(reader, 'members_removed'), []);
  const target = new MemoryBackend();
  const result = restoreEtcdSnapshot(target, reader);
  assert.equal(result.users + result.roles, 0);
  assert.equal(target.get('meta', META_AUTH), undefined);
});

/** An etcd-like snapshot: one key and the given auth buckets. */
function etcdFile(auth: Record<string, BboltEntry[]>): BboltReader {
  const kv = encodeEtcdKeyValue({
    key: enc.encode('a'),
    value: enc.encode('1'),
    createRevision: 2,
    modRevision: 2,
    version: 1,
    lease: 0n,
  });
  const revKey = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 2, 0x5f, 0, 0, 0, 0, 0, 0, 0, 0);
  const buckets: Record<string, BboltEntry[]> = { key: [[revKey, kv]], meta: [], ...auth };
  const writer = new BboltFileWriter(
    Object.entries(buckets).map(([name, entries]) => ({
      name: enc.encode(name),
      entries: () => entries,
    })),
  );
  return new BboltReader(bytesPageSource(Buffer.concat([...writer.chunks()])));
}

test("an etcd snapshot's users restore with their hashes; those no member can check are named", () => {
  // bob's is a well-formed bcrypt hash of cost 10 (etcd's default; src/api/auth-password.ts
  // checks it); root's is not a hash any member can check, so its password must be set again.
  const hashes: Record<string, string> = {
    bob: `$2a$10$${'a'.repeat(53)}`,
    root: '$2a$10$x',
  };
  const user = (name: string, roles: string[]) =>
    PbUser.encode(
      PbUser.create({ name: enc.encode(name), password: enc.encode(hashes[name]!), roles }),
    ).finish();
  const reader = etcdFile({
    auth: [
      [enc.encode('authEnabled'), Uint8Array.of(1)],
      [enc.encode('authRevision'), Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 9)],
    ],
    authUsers: [
      [enc.encode('bob'), user('bob', [])],
      [enc.encode('root'), user('root', ['root'])],
    ],
    authRoles: [],
  });
  const target = new MemoryBackend();
  const result = restoreEtcdSnapshot(target, reader);
  assert.deepEqual(result.passwordsToReset, ['root']);
  const restored = AuthStore.decode(target.get('meta', META_AUTH));
  assert.equal(restored.enabled, true);
  assert.equal(restored.revision, 9);
  assert.equal(restored.user('bob')?.passwordHash, hashes.bob);
});

test('auth buckets that etcd could not have written are refused, and nothing is restored', () => {
  const isCorrupt = (e: unknown) => e instanceof KvError && e.code === 'SNAPSHOT_CORRUPT';
  const userBytes = PbUser.encode(PbUser.create({ name: enc.encode('bob') })).finish();
  const cases: Record<string, BboltEntry[]>[] = [
    // A record under another name's key.
    { authUsers: [[enc.encode('eve'), userBytes]] },
    // Auth on with no root user.
    { auth: [[enc.encode('authEnabled'), Uint8Array.of(1)]] },
    // A revision that is not 8 bytes.
    { auth: [[enc.encode('authRevision'), Uint8Array.of(1)]] },
  ];
  for (const auth of cases) {
    const target = new MemoryBackend();
    assert.throws(() => restoreEtcdSnapshot(target, etcdFile(auth)), isCorrupt);
    let held = 0;
    target.scan('key', new Uint8Array(0), null, () => {
      held++;
      return true;
    });
    assert.equal(held, 0, 'a refused snapshot leaves the store empty');
  }
});

test('a store emptied again keeps its revision through a snapshot (tokens of old revisions stay stale)', () => {
  const store = storeWith([
    { op: 'roleAdd', name: 'gone' },
    { op: 'roleDelete', role: 'gone' },
  ]);
  assert.equal(store.revision, 3);
  const reader = new BboltReader(bytesPageSource(snapshotOf(store, [])));
  const target = new MemoryBackend();
  restoreEtcdSnapshot(target, reader);
  assert.equal(AuthStore.decode(target.get('meta', META_AUTH)).revision, 3);
});
