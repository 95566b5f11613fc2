/**
 * LmdbBackend.inUseBytes (etcd_mvcc_db_total_size_in_use_in_bytes, Status's dbSizeInUse): the
 * pages holding data grow with what is written, fall when it is deleted while the file does
 * not shrink, and come back to the file's size after a defragment. And sizeBytes (the quota's
 * and Status's dbSize) under the write map a store without fsync uses.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LmdbBackend } from '../../src/kv/backend/lmdb.js';

const KEYS = 4_000;
const VALUE = new Uint8Array(512).fill(7);
const PAGE_BYTES = 4096;

const key = (i: number) => new TextEncoder().encode(`k/${String(i).padStart(6, '0')}`);

test('in-use bytes follow the data; the file keeps its free pages until a defragment', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-lmdb-in-use-'));
  const b = new LmdbBackend({ path: join(dir, 'kv'), durable: false });
  try {
    const empty = b.inUseBytes();
    assert.ok(empty >= 2 * PAGE_BYTES && empty % PAGE_BYTES === 0, `empty: ${empty}`);
    b.write((tx) => {
      for (let i = 0; i < KEYS; i++) tx.put('key', key(i), VALUE);
    });
    const full = b.inUseBytes();
    // At least the values themselves, at most the file.
    assert.ok(full >= KEYS * VALUE.length, `full: ${full}`);
    const fileFull = b.sizeBytes();
    assert.ok(full <= fileFull, `in use ${full} <= file ${fileFull}`);
    b.write((tx) => {
      for (let i = 0; i < KEYS - 10; i++) tx.delete('key', key(i));
    });
    const after = b.inUseBytes();
    assert.ok(after < full / 10, `after deleting: ${after} of ${full}`);
    await new Promise((resolve) => setTimeout(resolve, 150)); // sizeBytes re-reads after 100 ms
    assert.ok(b.sizeBytes() >= fileFull, 'the file does not shrink by itself');
    await b.defragment();
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.ok(b.sizeBytes() < fileFull, 'defragment gives the free pages back');
    assert.ok(b.inUseBytes() <= b.sizeBytes());
  } finally {
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without fsync (the write map, which sizes the file to the whole map) the size is where the last page ends, as a durable store writing the same has its file end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-lmdb-size-'));
  const mapped = new LmdbBackend({ path: join(dir, 'mapped'), durable: false });
  const written = new LmdbBackend({ path: join(dir, 'written'), durable: true });
  try {
    for (const round of [1, 2, 3]) {
      for (const b of [mapped, written]) {
        b.write((tx) => {
          for (let i = 0; i < KEYS; i++) tx.put('key', key(round * KEYS + i), VALUE);
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 150)); // sizeBytes re-reads after 100 ms
      const fileEnd = statSync(join(dir, 'written', 'data.mdb')).size;
      assert.equal(written.sizeBytes(), fileEnd, `round ${round}: the durable store's file`);
      assert.equal(mapped.sizeBytes(), fileEnd, `round ${round}: the mapped store's size`);
      // The mapped file itself is bigger (sparse up to the map's size): not what is reported.
      const mappedFile = statSync(join(dir, 'mapped', 'data.mdb')).size;
      assert.ok(mappedFile >= fileEnd, `round ${round}: mapped file ${mappedFile}`);
    }
  } finally {
    await mapped.close();
    await written.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
