/** Unit tests of the MVCC building blocks: revision bytes, KeyValue codec, key index, sorted map. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { KeyIndex } from '../../src/kv/mvcc/key-index.js';
import { decodeKeyValue, encodeKeyValue } from '../../src/kv/mvcc/kv-codec.js';
import {
  bytesToRevision,
  compareRevision,
  isTombstone,
  revisionToBytes,
} from '../../src/kv/mvcc/revision.js';
import { SortedMap } from '../../src/kv/mvcc/sorted-map.js';
import { compareBytes } from '../../src/util/bytes.js';
import { Prng } from '../../src/util/prng.js';

describe('revision keys', () => {
  test('byte order is revision order, and bytes round-trip', () => {
    const rev = fc.record({
      main: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      sub: fc.integer({ min: 0, max: 2 ** 40 }),
    });
    fc.assert(
      fc.property(rev, rev, (a, b) => {
        const ab = revisionToBytes(a);
        assert.deepEqual(bytesToRevision(ab), { ...a });
        assert.equal(
          Math.sign(compareBytes(ab, revisionToBytes(b))),
          Math.sign(compareRevision(a, b)),
        );
      }),
    );
  });

  test('a tombstone is marked with a trailing t, as etcd', () => {
    const t = revisionToBytes({ main: 5, sub: 1 }, true);
    assert.equal(t.length, 17);
    assert.equal(t[16], 0x74);
    assert.ok(isTombstone(t));
    assert.ok(!isTombstone(revisionToBytes({ main: 5, sub: 1 })));
    assert.deepEqual(bytesToRevision(t), { main: 5, sub: 1 });
    assert.throws(() => revisionToBytes({ main: -1, sub: 0 }));
  });
});

test('KeyValue codec round-trips, including negative leases and empty values', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 40 }),
      fc.uint8Array({ maxLength: 100 }),
      fc.nat(),
      fc.nat(),
      fc.nat(),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      (key, value, createRevision, modRevision, version, lease) => {
        const kv = { key, value, createRevision, modRevision, version, lease };
        const back = decodeKeyValue(encodeKeyValue(kv));
        assert.deepEqual(
          { ...back, key: [...back.key], value: [...back.value] },
          {
            ...kv,
            key: [...key],
            value: [...value],
          },
        );
      },
    ),
  );
});

describe('key index (the worked example of key-index.ts)', () => {
  const r = (main: number) => ({ main, sub: 0 });
  function example(): KeyIndex {
    const ki = new KeyIndex('foo');
    ki.put(r(1));
    ki.put(r(2));
    ki.tombstone(r(3));
    ki.put(r(4));
    ki.put(r(5));
    ki.tombstone(r(6));
    return ki;
  }
  const mains = (ki: KeyIndex) => ki.revisionsSince(0).map((x) => x.main);

  test('get follows generations', () => {
    const ki = example();
    assert.equal(ki.get(0), null);
    assert.deepEqual(ki.get(1), { modified: r(1), created: r(1), version: 1 });
    assert.deepEqual(ki.get(2), { modified: r(2), created: r(1), version: 2 });
    assert.equal(ki.get(3), null);
    assert.deepEqual(ki.get(4), { modified: r(4), created: r(4), version: 1 });
    assert.deepEqual(ki.get(5), { modified: r(5), created: r(4), version: 2 });
    assert.equal(ki.get(6), null);
    assert.equal(ki.get(100), null);
    assert.ok(!ki.isLive());
  });

  const table: [number, number[], number[]][] = [
    // atRev, revisions left, revisions <= atRev kept in the backend
    [1, [1, 2, 3, 4, 5, 6], [1]],
    [2, [2, 3, 4, 5, 6], [2]],
    [3, [3, 4, 5, 6], [3]],
    [4, [4, 5, 6], [4]],
    [5, [5, 6], [5]],
    [6, [6], [6]],
    [7, [], []],
  ];
  for (const [atRev, left, kept] of table) {
    test(`compact(${atRev})`, () => {
      const ki = example();
      const keep: { main: number; sub: number }[] = [];
      const dropped: string[] = [];
      ki.compact(atRev, keep, (rev, tombstone) =>
        dropped.push(`${rev.main}${tombstone ? 't' : ''}`),
      );
      assert.deepEqual(mains(ki), left);
      // Dropped: every revision not left, each once, tombstones (3 and 6) marked as such.
      const tombstones = new Set([3, 6]);
      assert.deepEqual(
        dropped,
        [1, 2, 3, 4, 5, 6]
          .filter((m) => !left.includes(m))
          .map((m) => `${m}${tombstones.has(m) ? 't' : ''}`),
      );
      assert.deepEqual(
        keep.map((x) => x.main),
        kept,
      );
      assert.equal(ki.isEmpty(), left.length === 0);
      // Reads at or after atRev are unchanged by compaction.
      const full = example();
      for (let at = atRev; at <= 7; at++) assert.deepEqual(ki.get(at), full.get(at), `get(${at})`);
    });
  }

  test('compaction keeps the version count of a live generation', () => {
    const ki = new KeyIndex('k');
    for (let i = 1; i <= 5; i++) ki.put(r(i));
    ki.compact(4, []);
    assert.deepEqual(ki.get(5), { modified: r(5), created: r(1), version: 5 });
  });

  test('invariants are asserted', () => {
    const ki = example();
    assert.throws(() => ki.tombstone(r(7)), /tombstone of deleted key/);
    assert.throws(() => ki.put(r(6)), /not after last/);
  });
});

test('SortedMap matches a naive sorted array under random operations', () => {
  // A small alphabet (with 0x00 and 0xff) so deletes hit and chunks (512 entries) split.
  const key = fc.string({
    unit: fc.constantFrom('a', 'b', 'c', 'd', '\u0000', '\u00ff'),
    maxLength: 4,
  });
  const opArb = fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), key, v: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('scan' as const), key, end: fc.option(key) }),
    },
  );
  let sizeMax = 0;
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1500, maxLength: 4000 }), (ops) => {
      const map = new SortedMap<number>();
      const model = new Map<string, number>();
      for (const o of ops) {
        if (o.kind === 'set') {
          map.set(o.key, o.v);
          model.set(o.key, o.v);
        } else if (o.kind === 'delete') {
          assert.equal(map.delete(o.key), model.delete(o.key));
        } else {
          const got: [string, number][] = [];
          map.scan(o.key, o.end, (k, v) => {
            got.push([k, v]);
            return true;
          });
          const want = [...model.entries()]
            .filter(([k]) => k >= o.key && (o.end === null || k < o.end))
            .sort(([a], [b]) => (a < b ? -1 : 1));
          assert.deepEqual(got, want);
        }
      }
      map.checkInvariants();
      assert.equal(map.size, model.size);
      sizeMax = Math.max(sizeMax, map.size);
    }),
    { numRuns: 15 },
  );
  assert.ok(sizeMax > 100, `maps stayed tiny (largest ${sizeMax})`);
});

test('SortedMap splits and drops chunks: 20k inserts and deletes in random order', () => {
  const rng = new Prng(3);
  const keys = Array.from({ length: 20_000 }, (_, i) => i.toString(36));
  const shuffle = () =>
    keys.forEach((_, i) => {
      const j = rng.int(i + 1);
      [keys[i], keys[j]] = [keys[j]!, keys[i]!];
    });
  const map = new SortedMap<number>();
  shuffle();
  for (const k of keys) map.set(k, k.length);
  map.checkInvariants();
  const sorted = [...keys].sort();
  const scanned: string[] = [];
  map.scan('', null, (k) => {
    scanned.push(k);
    return true;
  });
  assert.deepEqual(scanned, sorted);
  shuffle();
  for (const k of keys.slice(0, 15_000)) assert.ok(map.delete(k));
  map.checkInvariants();
  assert.equal(map.size, 5_000);
  for (const k of keys.slice(15_000)) assert.ok(map.delete(k));
  assert.equal(map.size, 0);
  map.checkInvariants();
});

test('SortedMap.fromSorted equals inserting one by one, at chunk boundaries, and stays usable', () => {
  for (const n of [0, 1, 255, 256, 257, 2_000]) {
    const keys = Array.from({ length: n }, (_, i) => `k${i.toString().padStart(5, '0')}`);
    const built = SortedMap.fromSorted(
      keys,
      keys.map((k) => k.length),
    );
    built.checkInvariants();
    assert.equal(built.size, n);
    const scanned: string[] = [];
    built.scan('', null, (k, v) => {
      assert.equal(v, k.length);
      scanned.push(k);
      return true;
    });
    assert.deepEqual(scanned, keys);
    if (n > 0) assert.equal(built.get(keys[n - 1]!), keys[n - 1]!.length);
    // Inserts between, before and after the loaded keys, and deletes, keep the invariants.
    for (let i = 0; i < n; i += 3) built.set(`${keys[i]}x`, 0);
    built.set('a', 0);
    built.set('z', 0);
    for (let i = 0; i < n; i += 2) assert.ok(built.delete(keys[i]!));
    built.checkInvariants();
  }
  assert.throws(() => SortedMap.fromSorted(['b', 'a'], [1, 2]), /not ascending/);
  assert.throws(() => SortedMap.fromSorted(['a', 'a'], [1, 2]), /not ascending/);
});
