/**
 * tandem's state in etcd's snapshot format and back: a bbolt database (storage/bbolt) with the
 * buckets etcd 3.4's backend has, so that `etcdctl snapshot status` and `snapshot restore` take
 * tandem's snapshots and `tandem restore` takes etcd's.
 *
 *   key              etcd's revision bytes (8 main BE | '_' | 8 sub BE, + 't' on a tombstone; tandem's
 *                    own are the same without the '_') -> mvccpb.KeyValue
 *                    (a tombstone's value is KeyValue{key} alone, as etcd writes it)
 *   meta             consistent_index u64 BE (the applied index); finishedCompactRev and
 *                    scheduledCompactRev as etcd's revision bytes {compact, 0}, once compacted
 *   lease            lease id i64 BE -> leasepb.Lease{ID, TTL, RemainingTTL}
 *   members          member id in hex -> etcd's Member JSON; cluster: clusterVersion
 *   members_removed  member id in hex -> "removed", for the ids the registry remembers
 *                    (registry.ts REMOVED_IDS_MAX)
 *   auth, authUsers, authRoles  the auth store as etcd keeps it (kv/auth/etcd-codec.ts), read
 *                    from the view's own record, so it is of the same point in time as the keys
 *   alarm            empty
 *
 * A restore into tandem takes the key history, the compact revision, the leases and the auth
 * store (users, roles, revision, enabled); the new cluster's members come from its own
 * configuration, as with etcd's restore.
 */
import { pack, unpack as unpackMsgpack } from 'msgpackr';
import type { MemberInfo } from '../cluster/registry.js';
import {
  decodeEtcdAuthRevision,
  decodeEtcdRole,
  decodeEtcdUser,
  ETCD_AUTH_ENABLED,
  ETCD_AUTH_KEYS,
  encodeEtcdAuthRevision,
  encodeEtcdRole,
  encodeEtcdUser,
} from '../kv/auth/etcd-codec.js';
import { checkableHash } from '../kv/auth/hash-format.js';
import { AUTH_ENTRIES_MAX, type AuthRole, AuthStore, type AuthUser } from '../kv/auth/store.js';
import type { Backend, Bucket, ReadView } from '../kv/backend/backend.js';
import { KvError } from '../kv/errors.js';
import {
  decodeEtcdKeyValue,
  decodeEtcdLease,
  ETCD_REVISION_BYTES,
  encodeEtcdLease,
  etcdRevisionKey,
  etcdStoredValue,
  tandemRevisionKey,
} from '../kv/mvcc/etcd-codec.js';
import { decodeKeyValue, encodeKeyValue } from '../kv/mvcc/kv-codec.js';
import {
  bytesToRevision,
  isTombstone,
  readU64,
  revisionToBytes,
  writeU64,
} from '../kv/mvcc/revision.js';
import { META_COMPACT_REVISION, META_SCHEDULED_COMPACT_REVISION } from '../kv/mvcc/store.js';
import type { BboltReader } from '../storage/bbolt/reader.js';
import {
  type BboltBucketSource,
  type BboltEntry,
  BboltFileWriter,
} from '../storage/bbolt/writer.js';
import { assert } from '../util/assert.js';
import { prefixEnd } from '../util/bytes.js';
import { leaseIdOfKey, leaseKey, META_AUTH, META_LEASE_PREFIX } from './meta-keys.js';

const enc = new TextEncoder();
/** Entries read from the view per scan: the scan is push-style, the writer pulls. */
const SCAN_BATCH_ENTRIES = 1024;
/** The cluster version etcd 3.4's restore and start expect to find. */
const CLUSTER_VERSION = '3.4.0';
/** etcd's members_removed value (membership/store.go mustDeleteMemberFromBackend). */
const REMOVED = enc.encode('removed');

const ETCD_META = {
  consistentIndex: enc.encode('consistent_index'),
  finishedCompactRev: enc.encode('finishedCompactRev'),
  scheduledCompactRev: enc.encode('scheduledCompactRev'),
};

/** What a snapshot is taken of: a pinned view and the facts of its point in time. */
export interface EtcdSnapshotSource {
  readonly view: ReadView;
  readonly appliedIndex: number;
  readonly revision: number;
  /** 0 or -1 when never compacted. */
  readonly compactRevision: number;
  /**
   * The compaction whose deletes are all done (absent: `compactRevision`). Behind it while the
   * view still holds records a compaction drops: etcd then finishes that compaction on restore.
   */
  readonly finishedCompactRevision?: number;
  readonly members: readonly MemberInfo[];
  /** Ids of removed members (etcd's members_removed bucket). */
  readonly removedMemberIds: readonly number[];
}

export interface EtcdSnapshotFile {
  readonly revision: number;
  /** The file's size, known once planned (before its first non-empty chunk); null before. */
  readonly sizeBytes: number | null;
  /** The bbolt file's bytes, lazily; the view is released when the iteration ends. */
  readonly chunks: Iterable<Uint8Array>;
  /** Releases the view if the chunks are never iterated (idempotent). */
  release(): void;
}

export function etcdSnapshotFile(source: EtcdSnapshotSource): EtcdSnapshotFile {
  const { view } = source;
  let released = false;
  const release = (): void => {
    if (!released) view.release();
    released = true;
  };
  const writer = new BboltFileWriter(etcdBuckets(source));
  const chunks: Iterable<Uint8Array> = {
    *[Symbol.iterator]() {
      assert(!released, 'snapshot chunks iterated after release');
      try {
        yield* writer.chunks();
      } finally {
        release();
      }
    },
  };
  return {
    revision: source.revision,
    get sizeBytes() {
      return writer.sizeBytes;
    },
    chunks,
    release,
  };
}

function etcdBuckets(source: EtcdSnapshotSource): BboltBucketSource[] {
  const { view } = source;
  const fixed = (name: string, entries: readonly BboltEntry[]): BboltBucketSource => {
    const sorted = [...entries].sort((a, b) => Buffer.compare(a[0], b[0]));
    return { name: enc.encode(name), entries: () => sorted };
  };
  return [
    {
      name: enc.encode('key'),
      entries: () => mapped(scanAll(view, 'key', new Uint8Array(0), null), toEtcdKeyEntry),
    },
    fixed('meta', etcdMeta(source)),
    fixed('lease', etcdLeases(view)),
    fixed('members', source.members.map(etcdMember)),
    fixed(
      'members_removed',
      source.removedMemberIds.map((id) => [enc.encode(id.toString(16)), REMOVED]),
    ),
    fixed('cluster', [[enc.encode('clusterVersion'), enc.encode(CLUSTER_VERSION)]]),
    fixed('alarm', []),
    ...etcdAuthBuckets(view).map(([name, entries]) => fixed(name, entries)),
  ];
}

/** The auth, authUsers and authRoles buckets of the auth store recorded in `view`. */
function etcdAuthBuckets(view: ReadView): [string, BboltEntry[]][] {
  const state = AuthStore.decode(view.get('meta', META_AUTH)).state();
  const auth: BboltEntry[] = [[ETCD_AUTH_KEYS.revision, encodeEtcdAuthRevision(state.revision)]];
  if (state.enabled) auth.push([ETCD_AUTH_KEYS.enabled, ETCD_AUTH_ENABLED]);
  return [
    ['auth', auth],
    ['authUsers', state.users.map((u) => [enc.encode(u.name), encodeEtcdUser(u)])],
    ['authRoles', state.roles.map((r) => [enc.encode(r.name), encodeEtcdRole(r)])],
  ];
}

function toEtcdKeyEntry([revKey, value]: BboltEntry): BboltEntry {
  const kv = decodeKeyValue(value);
  const tombstone = isTombstone(revKey);
  return [etcdRevisionKey(revKey), etcdStoredValue(kv, tombstone)];
}

function u64Bytes(n: number): Uint8Array {
  const bytes = new Uint8Array(8);
  writeU64(new DataView(bytes.buffer), 0, n);
  return bytes;
}

function etcdMeta(source: EtcdSnapshotSource): BboltEntry[] {
  const index = new Uint8Array(8);
  writeU64(new DataView(index.buffer), 0, source.appliedIndex);
  const entries: BboltEntry[] = [[ETCD_META.consistentIndex, index]];
  const etcdRev = (main: number) => etcdRevisionKey(revisionToBytes({ main, sub: 0 }));
  const finished = source.finishedCompactRevision ?? source.compactRevision;
  if (finished > 0) entries.push([ETCD_META.finishedCompactRev, etcdRev(finished)]);
  if (source.compactRevision > 0) {
    entries.push([ETCD_META.scheduledCompactRev, etcdRev(source.compactRevision)]);
  }
  return entries;
}

function etcdLeases(view: ReadView): BboltEntry[] {
  const out: BboltEntry[] = [];
  view.scan('meta', META_LEASE_PREFIX, prefixEnd(META_LEASE_PREFIX), (key, value) => {
    const id = leaseIdOfKey(key);
    assert(id !== null, 'a lease key names its id');
    const [ttlSeconds, remainingTtlSeconds] = unpackPair(value);
    const idBytes = new Uint8Array(8);
    new DataView(idBytes.buffer).setBigInt64(0, id);
    out.push([idBytes, encodeEtcdLease({ id, ttlSeconds, remainingTtlSeconds })]);
    return true;
  });
  return out;
}

/** etcd's membership.Member as its backend stores it (id as a JSON number, as Go writes it). */
function etcdMember(m: MemberInfo): BboltEntry {
  const json =
    `{"id":${BigInt(m.id).toString()},"peerURLs":${JSON.stringify(m.peerUrls)},` +
    `"name":${JSON.stringify(m.name)},"clientURLs":${JSON.stringify(m.clientUrls)}` +
    `${m.isLearner ? ',"isLearner":true' : ''}}`;
  return [enc.encode(m.id.toString(16)), enc.encode(json)];
}

/** Every entry of `bucket` in [start, end), pulled a batch at a time from a push-style scan. */
function* scanAll(
  view: ReadView,
  bucket: Bucket,
  start: Uint8Array,
  end: Uint8Array | null,
): Generator<BboltEntry, void, undefined> {
  let from: Uint8Array | null = start;
  while (from !== null) {
    const batch: BboltEntry[] = [];
    let last: Uint8Array | null = null;
    view.scan(bucket, from, end, (key, value) => {
      batch.push([key, value]);
      last = key;
      return batch.length < SCAN_BATCH_ENTRIES;
    });
    yield* batch;
    // The next batch starts just after the last key (the key plus a zero byte).
    from = batch.length < SCAN_BATCH_ENTRIES || last === null ? null : successor(last);
  }
}

function successor(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1);
  out.set(key);
  return out;
}

function* mapped<T, U>(items: Iterable<T>, fn: (item: T) => U): Generator<U, void, undefined> {
  for (const item of items) yield fn(item);
}

function unpackPair(value: Uint8Array): [number, number] {
  const pair = unpackMsgpack(value);
  assert(
    Array.isArray(pair) && typeof pair[0] === 'number' && typeof pair[1] === 'number',
    'a lease record is [ttl, remaining]',
  );
  return [pair[0], pair[1]];
}

// ---------------------------------------------------------------------------------------------
// etcd -> tandem

export interface EtcdRestoreResult {
  /** The revision of the newest key history entry (etcd's `snapshot status` revision). */
  readonly revision: number;
  readonly compactRevision: number;
  /** Entries of the key bucket (revisions, as etcd's "total keys" counts the key bucket's). */
  readonly keyEntries: number;
  readonly leases: number;
  /** The auth store restored (users, roles): empty when the snapshot had none. */
  readonly users: number;
  readonly roles: number;
  readonly authEnabled: boolean;
  /**
   * Users whose password hash is not tandem's (etcd's bcrypt): they authenticate with a
   * password only once it is set again (by root, or a client certificate naming root).
   */
  readonly passwordsToReset: readonly string[];
}

/**
 * Fills an empty backend with an etcd snapshot's key history, compact revision and leases, in
 * one transaction (a bad snapshot leaves the backend empty). `onEntry` is told of each key
 * bucket entry (progress). Throws KvError SNAPSHOT_CORRUPT on anything etcd could not have
 * written, and refuses a backend that already holds data.
 */
export function restoreEtcdSnapshot(
  backend: Backend,
  reader: BboltReader,
  onEntry: (entries: number) => void = () => {},
): EtcdRestoreResult {
  const keyBucket = reader.bucket(enc.encode('key'));
  if (keyBucket === null) throw corrupt('no "key" bucket: not an etcd snapshot');
  let holdsData = false;
  for (const bucket of ['key', 'meta'] as const) {
    backend.scan(bucket, new Uint8Array(0), null, () => {
      holdsData = true;
      return false;
    });
  }
  if (holdsData) {
    throw new KvError(
      'SNAPSHOT_CORRUPT',
      'the target store already holds data: restore into an empty data directory',
    );
  }
  return backend.write((tx) => {
    let revision = 0;
    let keyEntries = 0;
    for (const [etcdKey, value] of keyBucket) {
      const revKey = tandemRevisionKey(etcdKey);
      if (revKey === null) {
        throw corrupt(`key bucket: ${Buffer.from(etcdKey).toString('hex')} is not a revision`);
      }
      const rev = bytesToRevision(revKey);
      const kv = decodeEtcdKeyValue(value);
      const ours = isTombstone(revKey)
        ? {
            key: kv.key,
            value: new Uint8Array(0),
            createRevision: 0,
            modRevision: rev.main,
            version: 0,
            lease: 0n,
          }
        : kv;
      if (!isTombstone(revKey) && (kv.modRevision !== rev.main || kv.version < 1)) {
        throw corrupt(`key bucket: revision ${rev.main} holds mod_revision ${kv.modRevision}`);
      }
      tx.put('key', revKey, encodeKeyValue(ours));
      revision = rev.main;
      onEntry(++keyEntries);
    }
    // finishedCompactRev: the compaction whose deletes are done; scheduledCompactRev ahead of it:
    // one the snapshot was taken in the middle of, which the store finishes when it opens.
    let finishedCompactRevision = 0;
    let scheduledCompactRevision = 0;
    for (const [key, value] of reader.bucket(enc.encode('meta')) ?? []) {
      const finished = Buffer.compare(key, ETCD_META.finishedCompactRev) === 0;
      if (!finished && Buffer.compare(key, ETCD_META.scheduledCompactRev) !== 0) continue;
      const name = finished ? 'finishedCompactRev' : 'scheduledCompactRev';
      if (value.length !== ETCD_REVISION_BYTES) throw corrupt(`meta: ${name} length`);
      const rev = readU64(new DataView(value.buffer, value.byteOffset, 8), 0);
      if (finished) finishedCompactRevision = rev;
      else scheduledCompactRevision = rev;
    }
    const compactRevision = Math.max(finishedCompactRevision, scheduledCompactRevision);
    if (finishedCompactRevision > 0) {
      tx.put('meta', META_COMPACT_REVISION, u64Bytes(finishedCompactRevision));
    }
    if (scheduledCompactRevision > finishedCompactRevision) {
      tx.put('meta', META_SCHEDULED_COMPACT_REVISION, u64Bytes(scheduledCompactRevision));
    }
    let leases = 0;
    for (const [, value] of reader.bucket(enc.encode('lease')) ?? []) {
      const lease = decodeEtcdLease(value);
      tx.put('meta', leaseKey(lease.id), pack([lease.ttlSeconds, lease.remainingTtlSeconds]));
      leases++;
    }
    const auth = readEtcdAuth(reader);
    if (auth !== null) tx.put('meta', META_AUTH, auth.encode());
    const state = auth?.state();
    return {
      revision: Math.max(revision, compactRevision),
      compactRevision,
      keyEntries,
      leases,
      users: state?.users.length ?? 0,
      roles: state?.roles.length ?? 0,
      authEnabled: state?.enabled ?? false,
      passwordsToReset: (state?.users ?? [])
        .filter((u) => !u.noPassword && !checkableHash(u.passwordHash))
        .map((u) => u.name),
    };
  });
}

/**
 * The auth store etcd's auth buckets describe, or null when it is a fresh store's (no users, no
 * roles, auth off, revision 1: the new cluster starts with the same). Password hashes come verbatim:
 * an etcd (bcrypt) hash does not check in tandem, so such a user's password must be set again.
 */
function readEtcdAuth(reader: BboltReader): AuthStore | null {
  let revision = 1;
  let enabled = false;
  for (const [key, value] of reader.bucket(enc.encode('auth')) ?? []) {
    if (Buffer.compare(key, ETCD_AUTH_KEYS.revision) === 0) {
      revision = Math.max(1, decodeEtcdAuthRevision(value));
    } else if (Buffer.compare(key, ETCD_AUTH_KEYS.enabled) === 0) {
      enabled = Buffer.compare(value, ETCD_AUTH_ENABLED) === 0;
    }
  }
  const users = named('authUsers', reader, decodeEtcdUser);
  const roles = named('authRoles', reader, decodeEtcdRole);
  if (users.length === 0 && roles.length === 0 && !enabled && revision === 1) return null;
  return AuthStore.fromState({ enabled, revision, users, roles });
}

/** A bucket of records keyed by their name, each checked against its key; bounded. */
function named<T extends AuthUser | AuthRole>(
  bucket: string,
  reader: BboltReader,
  decode: (bytes: Uint8Array) => T,
): T[] {
  const out: T[] = [];
  for (const [key, value] of reader.bucket(enc.encode(bucket)) ?? []) {
    if (out.length >= AUTH_ENTRIES_MAX) throw corrupt(`${bucket}: more than ${AUTH_ENTRIES_MAX}`);
    const record = decode(value);
    if (Buffer.compare(key, enc.encode(record.name)) !== 0) {
      throw corrupt(`${bucket}: key ${Buffer.from(key).toString('hex')} holds "${record.name}"`);
    }
    out.push(record);
  }
  return out;
}

function corrupt(detail: string): KvError {
  return new KvError('SNAPSHOT_CORRUPT', `etcd snapshot: ${detail}`);
}
