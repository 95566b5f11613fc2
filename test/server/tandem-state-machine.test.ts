import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { unpack } from 'msgpackr';
import {
  deleteRangeRequest,
  op,
  putRequest,
  rangeRequest,
  txnRequest,
} from '../../src/kv/api-types.js';
import type { Backend, Bucket, ScanVisitor, WriteTx } from '../../src/kv/backend/backend.js';
import { LmdbBackend } from '../../src/kv/backend/lmdb.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import {
  encodeLeaseGrant,
  encodeLeaseRevoke,
  encodeMemberAttributes,
  TandemStateMachine,
} from '../../src/server/tandem-state-machine.js';

const b = (s: string) => new TextEncoder().encode(s);
const founders = [{ id: 1, name: 'n1', peerUrls: ['127.0.0.1:2380'], clientUrls: [] }];

function machine(backend: Backend = new MemoryBackend()) {
  return new TandemStateMachine({ backend, founders, nowMs: () => 0 });
}

test('lease grant, attach, and revoke deleting every attached key in one revision', () => {
  const sm = machine();
  let i = 1;
  const g = sm.apply({ index: ++i, term: 1 }, encodeLeaseGrant(100n, 30));
  assert.equal(g.kind, 'leaseGranted');
  for (const k of ['a', 'b', 'c']) {
    const r = sm.apply(
      { index: ++i, term: 1 },
      sm.encodeKv({ type: 'put', request: putRequest({ key: b(k), value: b('v'), lease: 100n }) }),
    );
    assert.equal(r.kind, 'applied');
  }
  const before = sm.revision();
  const rv = sm.apply({ index: ++i, term: 1 }, encodeLeaseRevoke(100n));
  assert.deepEqual(rv, { kind: 'leaseRevoked', id: 100n, revision: before + 1 });
  assert.equal(sm.revision(), before + 1, 'one revision for all three deletes');
  assert.equal(sm.range(rangeRequest({ key: b('a'), rangeEnd: b('z') })).count, 0);
  const again = sm.apply({ index: ++i, term: 1 }, encodeLeaseRevoke(100n));
  assert.equal(again.kind, 'leaseRejected');
  assert.equal(sm.appliedIndex(), i, 'a rejected command still consumes its index');
});

test("a put with an unknown lease is rejected with etcd's error and changes nothing", () => {
  const sm = machine();
  const r = sm.apply(
    { index: 2, term: 1 },
    sm.encodeKv({ type: 'put', request: putRequest({ key: b('k'), lease: 7n }) }),
  );
  assert.equal(r.kind, 'rejected');
  assert.equal((r as { error: Error }).error.message, 'etcdserver: requested lease not found');
  assert.equal(sm.revision(), 1);
});

test('a key deleted and re-created without a lease survives the revoke of its old lease', () => {
  const sm = machine();
  let i = 1;
  sm.apply({ index: ++i, term: 1 }, encodeLeaseGrant(5n, 30));
  sm.apply(
    { index: ++i, term: 1 },
    sm.encodeKv({ type: 'put', request: putRequest({ key: b('k'), lease: 5n }) }),
  );
  sm.apply(
    { index: ++i, term: 1 },
    sm.encodeKv({ type: 'deleteRange', request: deleteRangeRequest({ key: b('k') }) }),
  );
  sm.apply(
    { index: ++i, term: 1 },
    sm.encodeKv({ type: 'put', request: putRequest({ key: b('k'), value: b('mine') }) }),
  );
  sm.apply({ index: ++i, term: 1 }, encodeLeaseRevoke(5n));
  assert.equal(sm.range(rangeRequest({ key: b('k') })).kvs.length, 1);
});

test('leases, attachments and the registry survive a restart on LMDB', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-sm-'));
  try {
    let backend = new LmdbBackend({ path: dir });
    let sm = machine(backend);
    sm.apply({ index: 2, term: 1 }, encodeLeaseGrant(9n, 60));
    sm.apply(
      { index: 3, term: 1 },
      sm.encodeKv({ type: 'put', request: putRequest({ key: b('x'), lease: 9n }) }),
    );
    sm.apply({ index: 4, term: 1 }, encodeMemberAttributes(1, 'n1', ['127.0.0.1:2379']));
    const hash = sm.hash();
    await backend.close();
    backend = new LmdbBackend({ path: dir });
    sm = machine(backend);
    assert.equal(sm.appliedIndex(), 4);
    assert.deepEqual(sm.hash(), hash);
    assert.deepEqual(sm.members()[0]?.clientUrls, ['127.0.0.1:2379']);
    assert.ok(sm.lessor.exists(9n));
    sm.apply({ index: 5, term: 1 }, encodeLeaseRevoke(9n));
    assert.equal(sm.range(rangeRequest({ key: b('x') })).kvs.length, 0, 'attachment was rebuilt');
    await backend.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a snapshot restores kv, leases and registry into another member', () => {
  const a = machine();
  a.apply({ index: 2, term: 1 }, encodeLeaseGrant(3n, 60));
  a.apply(
    { index: 3, term: 1 },
    a.encodeKv({
      type: 'txn',
      request: txnRequest({
        success: [
          op.put(putRequest({ key: b('p'), lease: 3n })),
          op.put(putRequest({ key: b('q') })),
        ],
      }),
    }),
  );
  a.apply({ index: 4, term: 1 }, encodeMemberAttributes(1, 'n1', ['c:1']));
  const data = a.snapshot();
  const other = machine();
  other.restore({
    metadata: {
      index: 4,
      term: 1,
      confState: {
        voters: [1],
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      },
    },
    data,
  });
  assert.equal(other.appliedIndex(), 4);
  assert.deepEqual(other.hash(), a.hash());
  assert.deepEqual(other.members(), a.members());
  other.apply({ index: 5, term: 1 }, encodeLeaseRevoke(3n));
  assert.equal(other.range(rangeRequest({ key: b('p') })).kvs.length, 0);
  assert.equal(other.range(rangeRequest({ key: b('q') })).kvs.length, 1);
});

test('grant, put with the lease and revoke applied in one batch: the key goes with the lease', () => {
  // A catching-up member (a new learner, a restart) applies many entries in one backend batch;
  // the revoke must find the key the put of the same batch attached (integration regression).
  const sm = machine();
  let i = 1;
  sm.transaction(() => {
    assert.equal(
      sm.apply({ index: ++i, term: 1 }, encodeLeaseGrant(200n, 30)).kind,
      'leaseGranted',
    );
    const put = sm.encodeKv({
      type: 'put',
      request: putRequest({ key: b('leased'), value: b('v'), lease: 200n }),
    });
    assert.equal(sm.apply({ index: ++i, term: 1 }, put).kind, 'applied');
    assert.equal(sm.apply({ index: ++i, term: 1 }, encodeLeaseRevoke(200n)).kind, 'leaseRevoked');
  });
  assert.equal(sm.range(rangeRequest({ key: b('leased') })).count, 0, 'revoked with its lease');
  assert.equal(sm.appliedIndex(), i);
});

test('a snapshot packed in slices is a msgpack list of chunks that restores the same state as snapshot()', () => {
  for (const keys of [0, 3, 6000]) {
    const a = machine();
    // 6000 keys of 1 KiB: about 24 chunks of 256 KiB (a list header of 3 bytes, bin32 parts).
    const value = new Uint8Array(1024).fill(7);
    for (let i = 0; i < keys; i++) {
      a.apply(
        { index: i + 2, term: 1 },
        a.encodeKv({ type: 'put', request: putRequest({ key: b(`k${i}`), value }) }),
      );
    }
    const whole = a.snapshot();
    let sliced: Uint8Array | null = null;
    let slices = 0;
    const queue: (() => void)[] = [];
    a.snapshotInSlices(
      (next) => queue.push(() => next(true)),
      (data) => {
        sliced = data;
      },
    );
    while (queue.length > 0) {
      slices++;
      queue.shift()!();
    }
    assert.ok(sliced !== null, `keys=${keys}: the sliced snapshot completed`);
    // Chunk sizes differ from snapshot()'s (a slice is smaller); the list of chunks is the layout.
    const chunks = unpack(sliced) as Uint8Array[];
    assert.ok(Array.isArray(chunks) && chunks.every((c) => c instanceof Uint8Array));
    if (keys === 6000) assert.ok(chunks.length > 16, `${chunks.length} chunks: a list16 header`);
    // snapshot()'s own layout is a list of chunks too: restore reads either.
    const wholeChunks = unpack(whole) as Uint8Array[];
    assert.ok(Array.isArray(wholeChunks) && wholeChunks.every((c) => c instanceof Uint8Array));
    if (keys === 6000) assert.ok(slices > 20, `${slices} slices`);
    const other = machine();
    const confState = {
      voters: [1],
      learners: [],
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    };
    other.restore({ metadata: { index: keys + 1, term: 1, confState }, data: sliced });
    assert.deepEqual(other.hash(), a.hash(), `keys=${keys}: same state restored`);
  }
});

/** Counts whole scans of the key bucket outside a write: each is a key-index rebuild. */
class KeyScanCountingBackend extends MemoryBackend {
  keyBucketScans = 0;
  private writing = false;

  override write<T>(fn: (tx: WriteTx) => T): T {
    this.writing = true;
    try {
      return super.write(fn);
    } finally {
      this.writing = false;
    }
  }

  override scan(bucket: Bucket, start: Uint8Array, end: Uint8Array | null, visit: ScanVisitor) {
    this.count(bucket, start, end);
    super.scan(bucket, start, end, visit);
  }

  override scanViews(
    bucket: Bucket,
    start: Uint8Array,
    end: Uint8Array | null,
    visit: ScanVisitor,
  ) {
    this.count(bucket, start, end);
    super.scanViews(bucket, start, end, visit);
  }

  /** A scan of the whole key bucket (from the empty key or from [0], the lowest one). */
  private count(bucket: Bucket, start: Uint8Array, end: Uint8Array | null): void {
    const fromFirst = start.length === 0 || (start.length === 1 && start[0] === 0);
    if (bucket === 'key' && fromFirst && end === null && !this.writing) this.keyBucketScans++;
  }
}

test('installing a snapshot rebuilds the key index once, with keys attached to their leases', () => {
  // The rebuild is the install's largest cost (seconds per million keys, the event loop held).
  const a = machine();
  let i = 1;
  a.apply({ index: ++i, term: 1 }, encodeLeaseGrant(7n, 60));
  for (let k = 0; k < 50; k++) {
    const lease = k % 2 === 0 ? 7n : 0n;
    a.apply(
      { index: ++i, term: 1 },
      a.encodeKv({ type: 'put', request: putRequest({ key: b(`k${k}`), value: b('v'), lease }) }),
    );
  }
  const backend = new KeyScanCountingBackend();
  const other = machine(backend);
  backend.keyBucketScans = 0;
  other.restore({
    metadata: {
      index: i,
      term: 1,
      confState: {
        voters: [1],
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      },
    },
    data: a.snapshot(),
  });
  assert.equal(backend.keyBucketScans, 1, 'one key-index rebuild per install');
  assert.deepEqual(other.hash(), a.hash());
  // The leased half goes with its lease: the keys were attached to the restored lease table.
  assert.equal(other.apply({ index: ++i, term: 1 }, encodeLeaseRevoke(7n)).kind, 'leaseRevoked');
  assert.equal(other.range(rangeRequest({ key: b('k'), rangeEnd: b('l') })).count, 25);
});

test('live watch events carry prevKv exactly while a synced watcher asks for it', () => {
  // The store reads a put's previous value only when the watch hub has a synced prev_kv
  // watcher (CurrentStore forwards the hub's wish across snapshot restores).
  const sm = machine();
  let i = 1;
  const putKv = (value: string) =>
    sm.transaction(() =>
      sm.apply(
        { index: ++i, term: 1 },
        sm.encodeKv({ type: 'put', request: putRequest({ key: b('k'), value: b(value) }) }),
      ),
    );
  putKv('1');
  const stream = sm.watchHub.openStream();
  const plain = stream.watch({ key: b('k') });
  const withPrev = stream.watch({ key: b('k'), prevKv: true });
  putKv('2');
  const seen = new Map<number, (string | null)[]>();
  const drain = () => {
    for (let r = stream.next(); r !== undefined; r = stream.next()) {
      for (const e of r.events ?? []) {
        const prev = e.prevKv === null ? null : new TextDecoder().decode(e.prevKv.value);
        seen.set(r.watchId, [...(seen.get(r.watchId) ?? []), prev]);
      }
    }
  };
  drain();
  assert.deepEqual(seen.get(withPrev), ['1']);
  assert.deepEqual(seen.get(plain), [null]);
  stream.cancel(withPrev);
  sm.watchHub.tick(0);
  putKv('3');
  drain();
  assert.deepEqual(seen.get(plain), [null, null]);
  const again = stream.watch({ key: b('k'), prevKv: true });
  putKv('4');
  drain();
  assert.deepEqual(seen.get(again), ['3']);
});
