/**
 * LmdbBackend.inUseBytes (etcd_mvcc_db_total_size_in_use_in_bytes, Status's dbSizeInUse): the
 * pages holding data grow with what is written, fall when it is deleted while the file does
 * not shrink, and come back to the file's size after a defragment.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
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
