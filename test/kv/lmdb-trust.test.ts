/**
 * A member's LMDB store commits without fsync (the WAL is the durable record): after an unclean
 * stop it is trusted only within the same boot (a process crash keeps the page cache); after a
 * machine restart it is emptied, for the member to restore from its snapshot and log.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { KV_STATE_FILE, LmdbBackend } from '../../src/kv/backend/lmdb.js';

const KEY = new Uint8Array([1]);
const VALUE = new Uint8Array([2]);

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'tandem-lmdb-trust-'));
}

function withData(path: string, bootId: string | null): LmdbBackend {
  const b = new LmdbBackend({ path, durable: false, bootId });
  b.write((tx) => tx.put('key', KEY, VALUE));
  return b;
}

test('closed cleanly: trusted in any later boot', async () => {
  const path = dir();
  await withData(path, 'boot-a').close();
  const again = new LmdbBackend({ path, durable: false, bootId: 'boot-b' });
  assert.equal(again.rebuilt, null);
  assert.deepEqual(again.get('key', KEY), VALUE);
  await again.close();
});

test('an unclean stop in the same boot (a process crash): trusted, data kept', async () => {
  const path = dir();
  const crashed = withData(path, 'boot-a'); // never closed
  const again = new LmdbBackend({ path, durable: false, bootId: 'boot-a' });
  assert.equal(again.rebuilt, null);
  assert.deepEqual(again.get('key', KEY), VALUE);
  await again.close();
  await crashed.close();
});

test('an unclean stop before a machine restart: emptied, and says why', async () => {
  for (const bootId of ['boot-b', null]) {
    const path = dir();
    const crashed = withData(path, 'boot-a');
    const again = new LmdbBackend({ path, durable: false, bootId });
    assert.match(again.rebuilt ?? '', /not closed cleanly/, `boot ${bootId}`);
    assert.equal(again.get('key', KEY), undefined, 'nothing of the untrusted store is kept');
    // Rebuilt and closed cleanly, it is trusted again.
    again.write((tx) => tx.put('key', KEY, VALUE));
    await again.close();
    const third = new LmdbBackend({ path, durable: false, bootId: 'boot-c' });
    assert.equal(third.rebuilt, null);
    assert.deepEqual(third.get('key', KEY), VALUE);
    await third.close();
    await crashed.close().catch(() => {});
  }
});

test('a durable store (fsync per commit) keeps no state record', async () => {
  const path = dir();
  const b = new LmdbBackend({ path });
  b.write((tx) => tx.put('key', KEY, VALUE));
  await b.close();
  assert.equal(existsSync(join(path, KV_STATE_FILE)), false);
});
