/**
 * The bbolt writer and reader (src/storage/bbolt): random buckets written then read back equal
 * (fast-check, against the plain sorted lists they came from), every page reachable as bbolt's
 * tx.Check wants, damage found (meta checksum, a branch page, a page id), and, where etcdctl is
 * installed, bbolt itself (`etcdctl snapshot status` runs tx.Check) accepting the files and
 * refusing the damaged ones.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  decodeEtcdKeyValue,
  decodeEtcdLease,
  encodeEtcdKeyValue,
  encodeEtcdLease,
} from '../../src/kv/mvcc/etcd-codec.js';
import { PAGE_HEADER_BYTES, PageFlag } from '../../src/storage/bbolt/format.js';
import { BboltReader, bytesPageSource } from '../../src/storage/bbolt/reader.js';
import { type BboltEntry, BboltFileWriter } from '../../src/storage/bbolt/writer.js';
import { compareBytes } from '../../src/util/bytes.js';

const ETCDCTL = '/usr/bin/etcdctl';
const enc = new TextEncoder();
const PAGE = 4096;

type Buckets = Map<string, BboltEntry[]>;

function writeFile(buckets: Buckets, pageSize = PAGE): Uint8Array {
  const writer = new BboltFileWriter(
    [...buckets].map(([name, entries]) => ({ name: enc.encode(name), entries: () => entries })),
    { pageSize, chunkBytesTarget: 3 * pageSize, entriesPerPause: 7 },
  );
  const chunks = [...writer.chunks()];
  const file = Buffer.concat(chunks);
  assert.equal(file.length, writer.sizeBytes, 'the planned size is the written size');
  return file;
}

function readAll(file: Uint8Array): Buckets {
  const reader = new BboltReader(bytesPageSource(file));
  const out: Buckets = new Map();
  for (const name of reader.bucketNames()) {
    out.set(new TextDecoder().decode(name), [...reader.bucket(name)!]);
  }
  return out;
}

function hex(buckets: Buckets): [string, [string, string][]][] {
  return [...buckets]
    .sort(([a], [b]) => compareBytes(enc.encode(a), enc.encode(b)))
    .map(([name, entries]) => [
      name,
      entries.map(([k, v]) => [Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex')]),
    ]);
}

/** Every page id the trees reach, for the "reachable or free" check bbolt's tx.Check makes. */
function reachablePages(file: Uint8Array): Set<number> {
  const reader = new BboltReader(bytesPageSource(file));
  const seen = new Set<number>([0, 1, 2]);
  const visit = (id: number): void => {
    const view = new DataView(file.buffer, file.byteOffset + id * PAGE);
    const flags = view.getUint16(8, true);
    const count = view.getUint16(10, true);
    const overflow = view.getUint32(12, true);
    for (let i = 0; i <= overflow; i++) {
      assert.ok(!seen.has(id + i), `page ${id + i} referenced twice`);
      seen.add(id + i);
    }
    for (let i = 0; i < count; i++) {
      const at = PAGE_HEADER_BYTES + 16 * i;
      if (flags === PageFlag.Branch) visit(Number(view.getBigUint64(at + 8, true)));
      else if (view.getUint32(at, true) === 1) {
        const root = Number(
          view.getBigUint64(at + view.getUint32(at + 4, true) + view.getUint32(at + 8, true), true),
        );
        if (root !== 0) visit(root);
      }
    }
  };
  visit(reader.meta.rootPgid);
  return seen;
}

const entryArb = fc.tuple(
  fc.uint8Array({ minLength: 1, maxLength: 40 }),
  fc.oneof(
    { weight: 8, arbitrary: fc.uint8Array({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 4000, maxLength: 13000 }) },
  ),
);

const bucketsArb = fc
  .dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.array(entryArb, { maxLength: 400 }), {
    maxKeys: 6,
  })
  .map((dict): Buckets => {
    const out: Buckets = new Map();
    for (const [name, raw] of Object.entries(dict)) {
      const byKey = new Map<string, BboltEntry>();
      for (const [k, v] of raw) byKey.set(Buffer.from(k).toString('hex'), [k, v]);
      out.set(
        name,
        [...byKey.values()].sort((a, b) => compareBytes(a[0], b[0])),
      );
    }
    return out;
  });

describe('bbolt writer and reader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bbolt-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('write then read gives the same buckets, every page reachable once', () => {
    fc.assert(
      fc.property(bucketsArb, (buckets) => {
        const file = writeFile(buckets);
        assert.deepEqual(hex(readAll(file)), hex(buckets));
        const pages = file.length / PAGE;
        const reached = reachablePages(file);
        for (let id = 0; id < pages; id++) assert.ok(reached.has(id), `page ${id} unreachable`);
      }),
      { numRuns: 120 },
    );
  });

  test('other page sizes', () => {
    fc.assert(
      fc.property(bucketsArb, fc.constantFrom(1024, 8192, 16384), (buckets, pageSize) => {
        assert.deepEqual(hex(readAll(writeFile(buckets, pageSize))), hex(buckets));
      }),
      { numRuns: 30 },
    );
  });

  test('a large bucket streams in bounded chunks, with pause points while planning', () => {
    const count = 100_000;
    function* entries(): Generator<BboltEntry> {
      for (let i = 0; i < count; i++) {
        const k = Buffer.alloc(17);
        k.writeBigUInt64BE(BigInt(i + 2), 0);
        k[8] = 0x5f;
        yield [k, Buffer.alloc(100, i & 0xff)];
      }
    }
    const target = 64 * 1024;
    const writer = new BboltFileWriter([{ name: enc.encode('key'), entries }], {
      chunkBytesTarget: target,
    });
    let pauses = 0;
    let bytes = 0;
    let biggest = 0;
    for (const chunk of writer.chunks()) {
      if (chunk.length === 0) pauses++;
      bytes += chunk.length;
      biggest = Math.max(biggest, chunk.length);
    }
    assert.equal(bytes, writer.sizeBytes);
    assert.ok(bytes > 10 * 1024 * 1024, `${bytes} bytes`);
    assert.ok(biggest <= target + 3 * PAGE, `a chunk of ${biggest} bytes`);
    assert.ok(pauses >= Math.floor(count / 4096), `${pauses} pauses`);
  });

  test('keys out of order are refused when writing', () => {
    const buckets: Buckets = new Map([
      [
        'b',
        [
          [enc.encode('2'), enc.encode('x')],
          [enc.encode('1'), enc.encode('y')],
        ],
      ],
    ]);
    assert.throws(() => writeFile(buckets), /keys not strictly ascending/);
  });

  /** A file with a key bucket deep enough for branch pages. */
  function bigFile(): Uint8Array {
    const entries: BboltEntry[] = [];
    for (let i = 0; i < 3000; i++) {
      const k = Buffer.alloc(17);
      k.writeBigUInt64BE(BigInt(i + 2), 0);
      k[8] = 0x5f;
      entries.push([k, enc.encode(`value ${i}`.repeat(3))]);
    }
    return writeFile(
      new Map([
        ['key', entries],
        ['meta', []],
      ]),
    );
  }

  test('damage is found: both meta checksums, a branch page, a page id', () => {
    const good = bigFile();
    assert.equal(readAll(good).get('key')!.length, 3000);

    const metas = Uint8Array.from(good);
    metas[PAGE_HEADER_BYTES + 20] ^= 0xff; // meta 0's root page id
    metas[PAGE + PAGE_HEADER_BYTES + 20] ^= 0xff; // meta 1's
    assert.throws(() => readAll(metas), /checksum error/);

    // One good meta is enough (bbolt falls back to the other).
    const oneMeta = Uint8Array.from(good);
    oneMeta[PAGE + PAGE_HEADER_BYTES + 20] ^= 0xff;
    assert.equal(readAll(oneMeta).get('key')!.length, 3000);

    const branch = Uint8Array.from(good);
    const root = new BboltReader(bytesPageSource(good)).meta.rootPgid;
    const keyRoot = findBucketRoot(good, root, 'key');
    const view = new DataView(branch.buffer, keyRoot * PAGE);
    assert.equal(view.getUint16(8, true), PageFlag.Branch, 'the key bucket has a branch root');
    view.setBigUint64(PAGE_HEADER_BYTES + 8, 1n, true); // first child -> a meta page
    assert.throws(() => readAll(branch), /outside the data pages|header says page/);

    const flags = Uint8Array.from(good);
    new DataView(flags.buffer, keyRoot * PAGE).setUint16(8, PageFlag.Freelist, true);
    assert.throws(() => readAll(flags), /not a leaf or branch/);

    const id = Uint8Array.from(good);
    new DataView(id.buffer, (keyRoot + 1) * PAGE).setBigUint64(0, 99n, true);
    assert.throws(() => readAll(id), /header says page 99/);
  });

  function findBucketRoot(file: Uint8Array, rootPage: number, name: string): number {
    const view = new DataView(file.buffer, file.byteOffset + rootPage * PAGE);
    for (let i = 0; i < view.getUint16(10, true); i++) {
      const at = PAGE_HEADER_BYTES + 16 * i;
      const keyAt = at + view.getUint32(at + 4, true);
      const ksize = view.getUint32(at + 8, true);
      const key = new TextDecoder().decode(
        file.subarray(rootPage * PAGE + keyAt, rootPage * PAGE + keyAt + ksize),
      );
      if (key === name) return Number(view.getBigUint64(keyAt + ksize, true));
    }
    throw new Error(`no bucket ${name}`);
  }

  const etcdctlMissing =
    !existsSync(ETCDCTL) && `needs ${ETCDCTL} (Debian etcd-client: apt-get install -y etcd-client)`;

  function status(file: Uint8Array, name: string): Promise<{ code: number; out: string }> {
    const path = join(dir, name);
    writeFileSync(path, Buffer.concat([file, createHash('sha256').update(file).digest()]));
    return new Promise((resolve) => {
      execFile(
        ETCDCTL,
        ['snapshot', 'status', path, '-w', 'json'],
        { timeout: 15_000 },
        (error, stdout, stderr) =>
          resolve({ code: error === null ? 0 : 1, out: `${stdout}${stderr}` }),
      );
    });
  }

  test('bbolt itself (etcdctl snapshot status, which runs tx.Check) accepts it and finds the damage', {
    skip: etcdctlMissing,
  }, async () => {
    const good = bigFile();
    const ok = await status(good, 'good.db');
    assert.equal(ok.code, 0, ok.out);
    const parsed = JSON.parse(ok.out) as { revision: number; totalKey: number; totalSize: number };
    assert.equal(parsed.revision, 3001);
    assert.equal(parsed.totalKey, 3000);
    assert.equal(parsed.totalSize, good.length);

    const metas = Uint8Array.from(good);
    metas[PAGE_HEADER_BYTES + 20] ^= 0xff;
    metas[PAGE + PAGE_HEADER_BYTES + 20] ^= 0xff;
    const bad = await status(metas, 'bad-meta.db');
    assert.notEqual(bad.code, 0);
    assert.match(bad.out, /invalid database|checksum/);
  });

  test('etcd messages round trip (KeyValue, Lease), int64 extremes included', () => {
    fc.assert(
      fc.property(
        fc.record({
          key: fc.uint8Array({ minLength: 1, maxLength: 64 }),
          value: fc.uint8Array({ maxLength: 64 }),
          createRevision: fc.maxSafeNat(),
          modRevision: fc.maxSafeNat(),
          version: fc.maxSafeNat(),
          lease: fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }),
        }),
        (kv) => {
          const back = decodeEtcdKeyValue(encodeEtcdKeyValue(kv));
          assert.deepEqual(
            { ...back, key: [...back.key], value: [...back.value] },
            {
              ...kv,
              key: [...kv.key],
              value: [...kv.value],
            },
          );
        },
      ),
    );
    const lease = { id: (1n << 62n) + 5n, ttlSeconds: 600, remainingTtlSeconds: 0 };
    assert.deepEqual(decodeEtcdLease(encodeEtcdLease(lease)), lease);
    assert.throws(() => decodeEtcdKeyValue(Uint8Array.of(0x0a, 0x05, 0x61)), /overruns/);
  });
});
