/**
 * KV apply throughput: puts/s through KvStateMachine.apply for each backend and commit mode.
 * Each configuration runs until it has applied `putsMax` entries or spent `secondsMax`, so the
 * whole run stays near 15 s. Commands are encoded up front: this measures apply, not msgpack.
 *
 *   node --import tsx bench/kv.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { putRequest } from '../src/kv/api-types.js';
import type { Backend } from '../src/kv/backend/backend.js';
import { LmdbBackend } from '../src/kv/backend/lmdb.js';
import { MemoryBackend } from '../src/kv/backend/memory.js';
import { encodeCommand } from '../src/kv/mvcc/command.js';
import { KvStateMachine } from '../src/kv/state-machine.js';
import type { LeaseAttachments } from '../src/kv/types.js';
import { Prng } from '../src/util/prng.js';

const SECONDS_MAX = 3;
const PUTS_MAX = 300_000;
const KEYS = 10_000;
const VALUE_BYTES = 256;
const BATCH_ENTRIES = 64;

const noLeases: LeaseAttachments = { exists: () => false, attach: () => {}, detach: () => {} };

interface Config {
  readonly name: string;
  readonly mode: string;
  readonly batch: number;
  open(dir: string): Backend;
}

const CONFIGS: Config[] = [
  { name: 'memory', mode: 'one entry per apply', batch: 1, open: () => new MemoryBackend() },
  {
    name: 'memory',
    mode: `batches of ${BATCH_ENTRIES}`,
    batch: BATCH_ENTRIES,
    open: () => new MemoryBackend(),
  },
  { name: 'lmdb', mode: 'fsync per entry', batch: 1, open: (path) => new LmdbBackend({ path }) },
  {
    name: 'lmdb',
    mode: `fsync per ${BATCH_ENTRIES} entries`,
    batch: BATCH_ENTRIES,
    open: (path) => new LmdbBackend({ path }),
  },
  {
    name: 'lmdb',
    mode: 'no fsync, per entry',
    batch: 1,
    open: (path) => new LmdbBackend({ path, durable: false }),
  },
  {
    // What a member runs: no fsync (the WAL is the durability), one transaction per Ready.
    name: 'lmdb',
    mode: `no fsync, per ${BATCH_ENTRIES} entries`,
    batch: BATCH_ENTRIES,
    open: (path) => new LmdbBackend({ path, durable: false }),
  },
];

function commands(): Uint8Array[] {
  const rng = new Prng(1);
  const value = new Uint8Array(VALUE_BYTES).map(() => rng.int(256));
  const keys = Array.from({ length: KEYS }, (_, i) => `/bench/key/${(i * 7919) % KEYS}`);
  return keys.map((k) =>
    encodeCommand({
      type: 'put',
      request: putRequest({ key: new TextEncoder().encode(k), value }),
    }),
  );
}

async function run(config: Config, pool: Uint8Array[]) {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-kv-'));
  const backend = config.open(dir);
  try {
    const sm = KvStateMachine.open(backend, { lessor: noLeases });
    const started = performance.now();
    const deadline = started + SECONDS_MAX * 1000;
    let index = 0;
    while (index < PUTS_MAX && performance.now() < deadline) {
      const batch = Array.from({ length: config.batch }, (_, i) => ({
        index: index + i + 1,
        command: pool[(index + i) % pool.length]!,
      }));
      if (config.batch === 1) sm.apply(batch[0]!.index, batch[0]!.command);
      else sm.applyBatch(batch);
      index += config.batch;
    }
    const seconds = (performance.now() - started) / 1000;
    return { puts: index, seconds, rate: index / seconds, revision: sm.store.currentRevision() };
  } finally {
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const pool = commands();
const rows: string[] = [];
for (const config of CONFIGS) {
  const r = await run(config, pool);
  rows.push(
    `| ${config.name} | ${config.mode} | ${r.puts} | ${r.seconds.toFixed(2)} | ${Math.round(r.rate).toLocaleString('en-US')} |`,
  );
}
console.log(
  `KV apply throughput: ${KEYS} keys, ${VALUE_BYTES}-byte values, limit ${SECONDS_MAX} s or ${PUTS_MAX} puts each`,
);
console.log('| backend | commit | puts | seconds | puts/s |');
console.log('|---|---|---:|---:|---:|');
for (const row of rows) console.log(row);
