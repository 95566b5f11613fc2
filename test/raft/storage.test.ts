/** MemoryStorage (etcd storage_test.go). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftError } from '../../src/raft/errors.js';
import { EMPTY_CONF_STATE, MemoryStorage } from '../../src/raft/storage.js';
import { entry } from './harness.js';

function storageWith(terms: number[]): MemoryStorage {
  const s = new MemoryStorage();
  s.append(terms.map((t, i) => entry(i + 1, t)));
  return s;
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof RaftError) return e.code;
    throw e;
  }
  return 'ok';
}

test('empty storage has the dummy entry at index 0, term 0', () => {
  const s = new MemoryStorage();
  assert.equal(s.firstIndex(), 1);
  assert.equal(s.lastIndex(), 0);
  assert.equal(s.term(0), 0);
  assert.equal(
    code(() => s.term(1)),
    'UNAVAILABLE',
  );
});

test('term and entries around compaction', () => {
  const s = storageWith([1, 1, 2, 3, 3]);
  s.compact(3);
  assert.equal(s.firstIndex(), 4);
  assert.equal(s.term(3), 2); // the dummy keeps the compacted entry's term
  assert.equal(
    code(() => s.term(2)),
    'COMPACTED',
  );
  assert.equal(
    code(() => s.entries(3, 5, Infinity)),
    'COMPACTED',
  );
  assert.deepEqual(
    s.entries(4, 6, Infinity).map((e) => e.index),
    [4, 5],
  );
  assert.equal(
    code(() => s.compact(3)),
    'COMPACTED',
  );
  assert.equal(
    code(() => s.entries(4, 7, Infinity)),
    'UNAVAILABLE',
  );
});

test('entries respects maxBytes but returns at least one entry', () => {
  const s = new MemoryStorage();
  s.append([entry(1, 1, 'aaaa'), entry(2, 1, 'bbbb'), entry(3, 1, 'cccc')]);
  assert.equal(s.entries(1, 4, 0).length, 1);
  assert.equal(s.entries(1, 4, 8).length, 2);
  assert.equal(s.entries(1, 4, 7).length, 1);
  assert.equal(s.entries(1, 4, Infinity).length, 3);
});

test('append truncates a conflicting suffix and ignores compacted entries', () => {
  const s = storageWith([1, 1, 1]);
  s.append([entry(2, 2), entry(3, 2), entry(4, 2)]);
  assert.deepEqual(
    [1, 2, 3, 4].map((i) => s.term(i)),
    [1, 2, 2, 2],
  );
  s.compact(2);
  s.append([entry(1, 1), entry(2, 2), entry(3, 3)]);
  assert.equal(s.lastIndex(), 3);
  assert.equal(s.term(3), 3);
  assert.throws(() => s.append([entry(9, 3)]), /gap/);
});

test('createSnapshot and applySnapshot', () => {
  const s = storageWith([1, 2, 3]);
  const snap = s.createSnapshot(2, EMPTY_CONF_STATE, new Uint8Array([7]));
  assert.equal(snap.metadata.term, 2);
  assert.equal(
    code(() => s.createSnapshot(1, EMPTY_CONF_STATE, new Uint8Array())),
    'SNAP_OUT_OF_DATE',
  );
  const t = new MemoryStorage();
  t.applySnapshot(snap);
  assert.equal(t.firstIndex(), 3);
  assert.equal(t.lastIndex(), 2);
  assert.equal(t.term(2), 2);
  assert.equal(
    code(() => t.applySnapshot(snap)),
    'SNAP_OUT_OF_DATE',
  );
});

test('clone is independent', () => {
  const s = storageWith([1, 1]);
  const c = s.clone();
  s.append([entry(3, 1)]);
  c.setHardState({ term: 5, vote: 1, commit: 0 });
  assert.equal(c.lastIndex(), 2);
  assert.equal(s.initialState().hardState.term, 0);
});
