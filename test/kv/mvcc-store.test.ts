/**
 * The store and state machine beyond request semantics: watch events, commit listeners, the
 * applied index under crashes and replays, lease re-attachment on open, snapshots, limits.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import type { KvRequest, RangeRequest } from '../../src/kv/api-types.js';
import type { Backend, WriteTx } from '../../src/kv/backend/backend.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import { KV_ERRORS, KvError, type KvErrorCode } from '../../src/kv/errors.js';
import { encodeCommand } from '../../src/kv/mvcc/command.js';
import { MvccStore } from '../../src/kv/mvcc/store.js';
import { type ApplyEntry, KvStateMachine } from '../../src/kv/state-machine.js';
import { EventType, type KvEvent } from '../../src/kv/types.js';
import {
  BACKENDS,
  compact,
  dec,
  del,
  enc,
  FakeLessor,
  get,
  kvTuple,
  printResult,
  put,
  txn,
} from './mvcc-helpers.js';

const entries = (reqs: KvRequest[], first = 1): ApplyEntry[] =>
  reqs.map((r, i) => ({ index: first + i, command: encodeCommand(r) }));

function applyAll(sm: KvStateMachine, reqs: KvRequest[], first = sm.appliedIndex() + 1) {
  return entries(reqs, first).map((e) => printResult(sm.apply(e.index, e.command)));
}

const printEvent = (e: KvEvent) => ({
  type: e.type === EventType.Put ? 'PUT' : 'DELETE',
  key: dec(e.kv.key),
  mod: e.kv.modRevision,
  prev: e.prevKv === null ? null : kvTuple(e.prevKv),
});

/** A workload touching every kind of write. */
const WORKLOAD: KvRequest[] = [
  put('a', '1'),
  put('b', '1'),
  txn({ success: [put('a', '2'), put('c', '1'), del('b')] }),
  put('a', '3', { lease: 7n }),
  compact(3),
  del('a', { end: 'b' }),
  put('d', 'x'),
  get('a', { end: '\0' }),
  put('', 'rejected'),
];

for (const kind of BACKENDS) {
  describe(`store on ${kind.name}`, () => {
    test('eventsBetween: revision then sub-revision order, ranges, prevKv, limit, compaction', async () => {
      const { backend, cleanup } = kind.create();
      try {
        const sm = KvStateMachine.open(backend, { lessor: new FakeLessor() });
        applyAll(sm, [
          put('a', '1'),
          txn({ success: [put('b', '1'), put('a', '2'), del('c')] }),
          del('a'),
          put('c', '3'),
        ]);
        const all = { key: enc('a'), rangeEnd: new Uint8Array([0]) };
        const events = sm.store.eventsBetween(all, 1, 100, 100, true).map(printEvent);
        assert.deepEqual(events, [
          { type: 'PUT', key: 'a', mod: 2, prev: null },
          { type: 'PUT', key: 'b', mod: 3, prev: null },
          { type: 'PUT', key: 'a', mod: 3, prev: ['a', '1', 2, 2, 1] },
          { type: 'DELETE', key: 'a', mod: 4, prev: ['a', '2', 2, 3, 2] },
          { type: 'PUT', key: 'c', mod: 5, prev: null },
        ]);
        const onlyA = sm.store.eventsBetween(
          { key: enc('a'), rangeEnd: new Uint8Array(0) },
          3,
          5,
          10,
          false,
        );
        assert.deepEqual(onlyA.map(printEvent), [
          { type: 'PUT', key: 'a', mod: 3, prev: null },
          { type: 'DELETE', key: 'a', mod: 4, prev: null },
        ]);
        assert.equal(sm.store.eventsBetween(all, 1, 100, 2, false).length, 2);
        applyAll(sm, [compact(3)]);
        // etcd's rule: only revisions strictly below the compaction revision are compacted.
        assert.throws(
          () => sm.store.eventsBetween(all, 2, 100, 10, false),
          (e) => e instanceof KvError && e.code === 'COMPACTED',
        );
        assert.deepEqual(sm.store.eventsBetween(all, 3, 100, 10, false).map(printEvent), [
          { type: 'PUT', key: 'b', mod: 3, prev: null },
          { type: 'PUT', key: 'a', mod: 3, prev: null },
          { type: 'DELETE', key: 'a', mod: 4, prev: null },
          { type: 'PUT', key: 'c', mod: 5, prev: null },
        ]);
        // A delete exactly at the compaction revision is kept for watchers (etcd > 3.5.15),
        // and read back when the store is opened again (restoreTombstone).
        applyAll(sm, [compact(4)]);
        const fromFour = (store: typeof sm.store) =>
          store.eventsBetween(all, 4, 100, 10, false).map((e) => `${e.type}:${e.kv.modRevision}`);
        assert.deepEqual(fromFour(sm.store), ['1:4', '0:5']);
        const reopened = KvStateMachine.open(backend, { lessor: new FakeLessor() });
        assert.deepEqual(fromFour(reopened.store), ['1:4', '0:5']);
        assert.deepEqual(reopened.hash(), sm.hash());
        applyAll(sm, [put('a', 'again'), compact(6)]);
        assert.deepEqual(
          sm.store.eventsBetween(all, 6, 100, 10, false).map((e) => e.kv.modRevision),
          [6],
        );
      } finally {
        await cleanup();
      }
    });

    test('onCommit: once per changed revision, with events and prevKv, none for reads or errors', async () => {
      const { backend, cleanup } = kind.create();
      try {
        const sm = KvStateMachine.open(backend, { lessor: new FakeLessor() });
        const heard: [number, unknown[]][] = [];
        const off = sm.store.onCommit((rev, events) => heard.push([rev, events.map(printEvent)]));
        applyAll(sm, [put('a', '1'), get('a'), put('', 'x'), del('zz'), put('a', '2')]);
        sm.applyBatch(entries([put('b', '1'), del('a')], 6));
        off();
        applyAll(sm, [put('c', '1')]);
        assert.deepEqual(heard, [
          [2, [{ type: 'PUT', key: 'a', mod: 2, prev: null }]],
          [3, [{ type: 'PUT', key: 'a', mod: 3, prev: ['a', '1', 2, 2, 1] }]],
          [4, [{ type: 'PUT', key: 'b', mod: 4, prev: null }]],
          [5, [{ type: 'DELETE', key: 'a', mod: 5, prev: ['a', '2', 2, 3, 2] }]],
        ]);
      } finally {
        await cleanup();
      }
    });

    test('onCommit: prevKv only while a subscriber wants it; versions and leases from the index', async () => {
      const { backend, cleanup } = kind.create();
      try {
        const lessor = new FakeLessor();
        lessor.grant(7n);
        const sm = KvStateMachine.open(backend, { lessor });
        let wanted = false;
        const heard: unknown[] = [];
        sm.store.onCommit((_rev, events) => heard.push(...events.map(printEvent)), {
          prevKvWanted: () => wanted,
        });
        applyAll(sm, [put('a', '1', { lease: 7n }), put('a', '2', { lease: 7n })]);
        wanted = true;
        applyAll(sm, [put('a', '3')]);
        wanted = false;
        sm.applyBatch(entries([put('a', '4', { lease: 7n }), del('a'), put('a', '5')], 4));
        assert.deepEqual(heard, [
          { type: 'PUT', key: 'a', mod: 2, prev: null },
          { type: 'PUT', key: 'a', mod: 3, prev: null }, // not wanted: not read
          { type: 'PUT', key: 'a', mod: 4, prev: ['a', '2', 2, 3, 2, 7] },
          { type: 'PUT', key: 'a', mod: 5, prev: null },
          { type: 'DELETE', key: 'a', mod: 6, prev: null }, // not wanted: not read either
          { type: 'PUT', key: 'a', mod: 7, prev: null },
        ]);
        // Creation and version as the index tracks them: a new generation after the delete.
        const kv = sm.range(get('a').request as RangeRequest).kvs[0]!;
        assert.deepEqual(kvTuple(kv), ['a', '5', 7, 7, 1]);
        // The lease of a value it did not read came from the index.
        assert.deepEqual(lessor.keys(7n), [], 'the delete detached the key from lease 7');
        wanted = true;
        heard.length = 0;
        applyAll(sm, [put('a', '6', { lease: 7n }), del('a')]);
        assert.deepEqual(heard, [
          { type: 'PUT', key: 'a', mod: 8, prev: ['a', '5', 7, 7, 1] },
          { type: 'DELETE', key: 'a', mod: 9, prev: ['a', '6', 7, 8, 2, 7] },
        ]);
        assert.deepEqual(lessor.keys(7n), []);
      } finally {
        await cleanup();
      }
    });

    test('a put after reopening takes creation, version and lease from the rebuilt index', async () => {
      const { backend, cleanup } = kind.create();
      try {
        const lessor = new FakeLessor();
        lessor.grant(7n);
        const sm = KvStateMachine.open(backend, { lessor });
        applyAll(sm, [put('a', '1'), put('a', '2', { lease: 7n }), put('b', '1')]);
        // A store opened again over the same backend rebuilds its index from the key bucket.
        const lessorAfter = new FakeLessor();
        lessorAfter.grant(7n);
        const again = KvStateMachine.open(backend, { lessor: lessorAfter });
        assert.deepEqual(lessorAfter.keys(7n), ['a']);
        // A listener without a prevKvWanted wants prevKv: the put reads the stored value and
        // checks it against the index (an assertion in the store).
        const heard: unknown[] = [];
        again.store.onCommit((_rev, events) => heard.push(...events.map(printEvent)));
        applyAll(again, [put('a', '3')]);
        assert.deepEqual(heard, [{ type: 'PUT', key: 'a', mod: 5, prev: ['a', '2', 2, 3, 2, 7] }]);
        assert.deepEqual(lessorAfter.keys(7n), [], 'the put without a lease detached it');
        const kv = again.range(get('a').request as RangeRequest).kvs[0]!;
        assert.deepEqual(kvTuple(kv), ['a', '3', 2, 5, 3]);
      } finally {
        await cleanup();
      }
    });

    test('apply is a no-op at or below the applied index; a batch is one transaction', async () => {
      const { backend, cleanup } = kind.create();
      try {
        const sm = KvStateMachine.open(backend, { lessor: new FakeLessor() });
        const results = sm.applyBatch(entries(WORKLOAD)).map(printResult);
        assert.equal(results.at(-1)?.error, 'EMPTY_KEY');
        assert.equal(sm.appliedIndex(), WORKLOAD.length);
        const h = sm.hash();
        for (const e of entries(WORKLOAD))
          assert.deepEqual(sm.apply(e.index, e.command), { kind: 'skipped' });
        assert.deepEqual(sm.hash(), h);
        assert.throws(() => sm.apply(-1, encodeCommand(get('a'))));
      } finally {
        await cleanup();
      }
    });

    test('a command that does not decode is rejected identically and consumes its index', async () => {
      const { backend, cleanup } = kind.create();
      try {
        const sm = KvStateMachine.open(backend, { lessor: new FakeLessor() });
        assert.deepEqual(printResult(sm.apply(1, new Uint8Array([0xc1]))), {
          error: 'INVALID_REQUEST',
        });
        assert.deepEqual(printResult(sm.apply(2, encodeCommand({ type: 'nope' } as never))), {
          error: 'INVALID_REQUEST',
        });
        assert.equal(sm.appliedIndex(), 2);
        assert.equal(sm.store.currentRevision(), 1);
      } finally {
        await cleanup();
      }
    });
  });
}

describe('durability on LMDB', () => {
  const lmdb = BACKENDS.find((b) => b.name === 'lmdb')!;

  test('a crash between entries: replaying the whole log applies each entry exactly once', async () => {
    const reference = KvStateMachine.open(new MemoryBackend(), { lessor: lessorWith7() });
    reference.applyBatch(entries(WORKLOAD));
    for (let crashAt = 1; crashAt <= WORKLOAD.length; crashAt++) {
      const { backend, reopen, cleanup } = lmdb.create();
      try {
        const failing = new FailingBackend(backend, crashAt);
        const sm = KvStateMachine.open(failing, { lessor: lessorWith7() });
        assert.throws(() => {
          for (const e of entries(WORKLOAD)) sm.apply(e.index, e.command);
        }, /injected crash/);
        // The store refuses use after a failed write, as etcd panics.
        assert.throws(() => sm.hash(), /failed during a write/);
        await backend.close();
        const recovered = KvStateMachine.open(reopen(), { lessor: lessorWith7() });
        assert.equal(recovered.appliedIndex(), crashAt - 1, `crash at write ${crashAt}`);
        const kinds = entries(WORKLOAD).map((e) => recovered.apply(e.index, e.command).kind);
        assert.equal(kinds.filter((k) => k === 'skipped').length, crashAt - 1);
        assert.deepEqual(recovered.hash(), reference.hash());
      } finally {
        await cleanup();
      }
    }
  });

  test('a crash inside a batch loses the whole batch, and replay restores it', async () => {
    const { backend, reopen, cleanup } = lmdb.create();
    try {
      const sm = KvStateMachine.open(new FailingBackend(backend, 2), { lessor: lessorWith7() });
      sm.applyBatch(entries(WORKLOAD.slice(0, 3)));
      assert.throws(() => sm.applyBatch(entries(WORKLOAD.slice(3), 4)), /injected crash/);
      await backend.close();
      const recovered = KvStateMachine.open(reopen(), { lessor: lessorWith7() });
      assert.equal(recovered.appliedIndex(), 3);
      assert.equal(recovered.store.currentRevision(), 4);
      recovered.applyBatch(entries(WORKLOAD));
      const reference = KvStateMachine.open(new MemoryBackend(), { lessor: lessorWith7() });
      reference.applyBatch(entries(WORKLOAD));
      assert.deepEqual(recovered.hash(), reference.hash());
    } finally {
      await cleanup();
    }
  });

  test('opening re-attaches leased keys that are live, for leases that exist', async () => {
    const { backend, reopen, cleanup } = lmdb.create();
    try {
      const lessor = new FakeLessor();
      lessor.grant(1n);
      lessor.grant(2n);
      const sm = KvStateMachine.open(backend, { lessor });
      applyAll(sm, [
        put('a', '1', { lease: 1n }),
        put('b', '1', { lease: 1n }),
        put('c', '1', { lease: 2n }),
        del('b'),
        put('c', '2'),
      ]);
      assert.deepEqual(lessor.keys(1n), ['a']);
      assert.deepEqual(lessor.keys(2n), []);
      await backend.close();
      const fresh = new FakeLessor();
      fresh.grant(1n);
      KvStateMachine.open(reopen(), { lessor: fresh });
      assert.deepEqual(fresh.keys(1n), ['a']);
    } finally {
      await cleanup();
    }
  });
});

describe('snapshots', () => {
  for (const from of BACKENDS) {
    for (const to of BACKENDS) {
      test(`${from.name} -> ${to.name}: point in time, identical hash and reads`, async () => {
        const src = from.create();
        const dst = to.create();
        try {
          const sm = KvStateMachine.open(src.backend, { lessor: lessorWith7() });
          sm.applyBatch(entries(WORKLOAD));
          const big = 'v'.repeat(3000);
          applyAll(
            sm,
            Array.from({ length: 50 }, (_, i) => put(`k${i}`, big)),
          );
          const snap = sm.snapshot(16 * 1024);
          const want = {
            hash: sm.hash(),
            all: printResult(sm.apply(100, encodeCommand(get('a', { end: '\0' })))),
          };
          // Writes after the snapshot was taken must not show in it.
          applyAll(sm, [put('late', 'x'), del('k1')], 101);
          const chunks = [...snap.chunks];
          assert.ok(chunks.length > 5, `${chunks.length} chunks`);
          const restored = KvStateMachine.restore(dst.backend, chunks, { lessor: lessorWith7() });
          assert.equal(restored.appliedIndex(), snap.appliedIndex);
          assert.equal(snap.appliedIndex, WORKLOAD.length + 50);
          assert.deepEqual(restored.hash(), want.hash);
          const got = printResult(restored.apply(100, encodeCommand(get('a', { end: '\0' }))));
          assert.deepEqual(got, want.all);
          assert.throws(() => [...snap.chunks], /once/);
        } finally {
          await src.cleanup();
          await dst.cleanup();
        }
      });
    }
  }

  // A naive encoder of the format in snapshot.ts's header, record by record, for the packer's
  // in-place frame writer to match byte for byte (including a record larger than the frame's
  // buffer slack, and the resume across frames of either bucket).
  for (const kind of BACKENDS) {
    test(`${kind.name}: chunks are exactly the documented format`, async () => {
      const { backend, cleanup } = kind.create();
      try {
        const sm = KvStateMachine.open(backend, { lessor: lessorWith7() });
        sm.applyBatch(entries(WORKLOAD));
        const sizes = [0, 1, 700, 5000, 200 * 1024, 3];
        applyAll(
          sm,
          sizes.map((n, i) => put(`s${i}`, 'z'.repeat(n))),
          WORKLOAD.length + 1,
        );
        const target = 4096;
        const want = referenceChunks(
          backend,
          sm.appliedIndex(),
          sm.store.currentRevision(),
          target,
        );
        // The leader keeps applying between slices: writes between chunks must not show, nor
        // lose the packer its place in the view.
        const got: Uint8Array[] = [];
        let late = 0;
        for (const chunk of sm.snapshot(target).chunks) {
          got.push(chunk);
          applyAll(sm, [put(`late${late}`, 'x'.repeat(300)), del(`s${late++ % sizes.length}`)]);
        }
        assert.equal(got.length, want.length);
        for (let i = 0; i < want.length; i++) {
          assert.deepEqual(Buffer.from(got[i]!), Buffer.from(want[i]!), `chunk ${i}`);
        }
      } finally {
        await cleanup();
      }
    });
  }

  test('damage anywhere is detected and leaves the target untouched', () => {
    const sm = KvStateMachine.open(new MemoryBackend(), { lessor: lessorWith7() });
    sm.applyBatch(entries(WORKLOAD));
    const chunks = [...sm.snapshot(64).chunks];
    const target = KvStateMachine.open(new MemoryBackend(), { lessor: new FakeLessor() });
    applyAll(target, [put('keep', 'me')]);
    const before = target.hash();
    const damaged: Uint8Array[][] = [
      chunks.slice(0, -1), // truncated
      chunks.slice(1), // no BEGIN
      [...chunks.slice(0, 2), ...chunks.slice(3)], // a chunk lost
      [...chunks, chunks[1]!], // data after END
    ];
    for (let i = 0; i < chunks.length; i++) {
      for (const at of [0, 5, 12, chunks[i]!.length - 1]) {
        const copy = chunks.map((c) => c.slice());
        copy[i]![at]! ^= 0x40;
        damaged.push(copy);
      }
    }
    for (const d of damaged) {
      assert.throws(
        () => KvStateMachine.restore(target.store.backend, d, { lessor: new FakeLessor() }),
        (e) => e instanceof KvError && e.code === 'SNAPSHOT_CORRUPT',
      );
    }
    assert.deepEqual(
      KvStateMachine.open(target.store.backend, { lessor: new FakeLessor() }).hash(),
      before,
    );
  });
});

describe('limits and errors', () => {
  test('request size: 1.5 MiB by default, configurable', () => {
    const sm = KvStateMachine.open(new MemoryBackend(), { lessor: new FakeLessor() });
    const big = put('k', 'x'.repeat(1.5 * 1024 * 1024));
    assert.throws(
      () => sm.encode(big),
      (e) => e instanceof KvError && e.code === 'REQUEST_TOO_LARGE',
    );
    assert.ok(sm.encode(put('k', 'x'.repeat(1024 * 1024))).length < 1.5 * 1024 * 1024);
    const small = KvStateMachine.open(new MemoryBackend(), {
      lessor: new FakeLessor(),
      limits: { requestBytesMax: 100, txnOpsMax: 2 },
    });
    assert.throws(() => small.encode(put('k', 'x'.repeat(100))), /request is too large/);
    assert.throws(
      () => small.encode(txn({ success: [put('a', ''), put('b', ''), put('c', '')] })),
      /too many operations/,
    );
    assert.throws(() => small.encode(put('', 'x')), /key is not provided/);
    assert.throws(
      () =>
        KvStateMachine.open(new MemoryBackend(), {
          lessor: new FakeLessor(),
          limits: { txnOpsMax: 0 },
        }),
      RangeError,
    );
  });

  test('every error code maps to a gRPC status and etcd message', () => {
    const codes = Object.keys(KV_ERRORS) as KvErrorCode[];
    assert.ok(codes.length >= 13);
    for (const code of codes) {
      const e = new KvError(code);
      assert.equal(e.code, code);
      assert.equal(e.message, KV_ERRORS[code].message);
      assert.equal(e.etcdMessage, e.message);
      assert.match(e.grpc, /^[A-Z_]+$/);
    }
    assert.equal(
      new KvError('COMPACTED').message,
      'etcdserver: mvcc: required revision has been compacted',
    );
    assert.equal(new KvError('FUTURE_REV').grpc, 'OUT_OF_RANGE');
    assert.equal(new KvError('LEASE_NOT_FOUND').grpc, 'NOT_FOUND');
  });
});

function lessorWith7(): FakeLessor {
  const l = new FakeLessor();
  l.grant(7n);
  return l;
}

/** Wraps a backend; the `crashAt`-th write transaction fails after its work, before commit. */
class FailingBackend implements Backend {
  readonly kind: Backend['kind'];
  private writes = 0;
  constructor(
    private readonly inner: Backend,
    private readonly crashAt: number,
  ) {
    this.kind = inner.kind;
  }
  get: Backend['get'] = (b, k) => this.inner.get(b, k);
  scan: Backend['scan'] = (b, s, e, v) => this.inner.scan(b, s, e, v);
  scanViews: Backend['scanViews'] = (b, s, e, v) => this.inner.scanViews(b, s, e, v);
  readView: Backend['readView'] = () => this.inner.readView();
  close = () => this.inner.close();
  write<T>(fn: (tx: WriteTx) => T): T {
    const n = ++this.writes;
    return this.inner.write((tx) => {
      const r = fn(tx);
      if (n === this.crashAt) throw new Error('injected crash');
      return r;
    });
  }
}

test('hashKv in slices equals hashKv, over more records than a slice', async () => {
  const backend = new MemoryBackend();
  const store = MvccStore.open(backend, new FakeLessor());
  const enc = new TextEncoder();
  for (let i = 0; i < 10_000; i++) {
    store.write(i + 1, (txn) => {
      txn.put(enc.encode(`k${i % 997}`), enc.encode(`v${i}`), 0n);
    });
  }
  let pauses = 0;
  const sliced = await store.hashKvInSlices(async () => {
    pauses++;
  });
  assert.deepEqual(sliced, store.hashKv());
  assert.ok(pauses >= 2, `hashed in ${pauses + 1} slices`);
});

test("hashKv equals etcd's HashKV for the same history (values from etcd 3.4.23)", () => {
  // etcdctl put/del against a fresh single-member etcd, `endpoint hashkv` after each marked step
  // (test/integration/etcdctl-differential.test.ts compares the two systems live).
  const store = MvccStore.open(new MemoryBackend(), new FakeLessor());
  const bytes = new TextEncoder();
  let index = 0;
  const putKv = (key: string, value: string) =>
    store.write(++index, (t) => {
      t.put(bytes.encode(key), bytes.encode(value), 0n);
    });
  putKv('k/a', '1');
  assert.equal(store.hashKv().hash, 2650204907);
  putKv('k/b', '2');
  putKv('k/c', '3');
  putKv('k/a', '1b');
  putKv('k/a', '1c');
  assert.equal(store.hashKv().hash, 2427464482);
  putKv('k/b', '2'); // etcdctl put --ignore-value: the same value again
  assert.equal(store.hashKv().hash, 1286052034);
  store.write(++index, (t) => {
    t.deleteRange(bytes.encode('k/c'), new Uint8Array(0));
  });
  assert.equal(store.hashKv().hash, 4086783655, 'a tombstone hashes as etcd stores it');
  putKv('k/c', 'x');
  // Below the compaction only what is still live at the hashed revision counts (etcd's
  // kvindex.Keep(rev)): both compactions give etcd's 429350593, compact(9) its 253581615.
  const compactAt = (rev: number) =>
    store.write(++index, (t) => {
      store.compact(t, rev);
    });
  compactAt(5);
  assert.equal(store.hashKv().hash, 429350593);
  assert.equal(store.hashKv(7).hash, 1128786299, 'etcd: endpoint hashkv --rev=7');
  compactAt(6);
  assert.equal(store.hashKv().hash, 429350593);
  assert.equal(store.hashKv(7).hash, 1128786299);
  compactAt(9);
  assert.equal(store.hashKv().hash, 253581615);
});

function referenceChunks(
  backend: Backend,
  appliedIndex: number,
  revision: number,
  target: number,
): Uint8Array[] {
  const frame = (kind: number, payload: Uint8Array): Uint8Array => {
    const out = Buffer.alloc(16 + payload.length);
    out.writeUInt32BE(0x544b5653, 0);
    out[4] = kind;
    out.writeUInt32BE(payload.length, 8);
    out.writeUInt32BE(crc32c(payload), 12);
    out.set(payload, 16);
    return out;
  };
  const begin = Buffer.alloc(20);
  begin.writeUInt32BE(1, 0);
  begin.writeBigUInt64BE(BigInt(appliedIndex), 4);
  begin.writeBigUInt64BE(BigInt(revision), 12);
  const out = [frame(1, begin)];
  let records = 0;
  let streamCrc = 0;
  for (const [bucketId, bucket] of (['key', 'meta'] as const).entries()) {
    let parts: Buffer[] = [];
    let bytes = 0;
    const close = () => {
      if (parts.length === 0) return;
      const payload = Buffer.concat(parts);
      streamCrc = crc32c(payload, streamCrc);
      out.push(frame(2, payload));
      parts = [];
      bytes = 0;
    };
    backend.scan(bucket, new Uint8Array(0), null, (key, value) => {
      if (bytes >= target) close();
      const rec = Buffer.alloc(9 + key.length + value.length);
      rec[0] = bucketId;
      rec.writeUInt32BE(key.length, 1);
      rec.set(key, 5);
      rec.writeUInt32BE(value.length, 5 + key.length);
      rec.set(value, 9 + key.length);
      parts.push(rec);
      bytes += rec.length;
      records++;
      return true;
    });
    close();
  }
  const end = Buffer.alloc(12);
  end.writeBigUInt64BE(BigInt(records), 0);
  end.writeUInt32BE(streamCrc, 8);
  out.push(frame(3, end));
  return out;
}
