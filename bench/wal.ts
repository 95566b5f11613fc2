/**
 * WAL group-commit throughput beside the disk's raw fdatasync rate, on the same file system
 * (os.tmpdir, or the directory given as the first argument). Prints a markdown table.
 *
 *   node --import tsx bench/wal.ts [dir]
 *
 * Each row runs for a fixed time (bounded: 2.5 s per row, 5 rows, ~15 s in total with setup).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry } from '../src/raft/types.js';
import { NodeFileSystem } from '../src/storage/fs.js';
import { Wal } from '../src/storage/wal/wal.js';

const RECORD_DATA_BYTES = 256;
const ROW_MS = 2500;
const BATCHES = [1, 16, 256] as const;

interface Row {
  name: string;
  syncs: number;
  records: number;
  bytes: number;
  ms: number;
}

/**
 * The disk's raw rate: one 256 B write then one fdatasync, in a loop. Appending (each sync also
 * commits the new file size) and overwriting a preallocated file (data only, like the WAL).
 */
async function rawFdatasync(dir: string, preallocated: boolean): Promise<Row> {
  const handle = await fsp.open(join(dir, `raw-${preallocated}`), 'w+');
  const data = new Uint8Array(RECORD_DATA_BYTES);
  if (preallocated) {
    const zeros = new Uint8Array(1 << 20);
    for (let at = 0; at < 64 << 20; at += zeros.length)
      await handle.write(zeros, 0, zeros.length, at);
    await handle.sync();
  }
  let syncs = 0;
  const start = performance.now();
  while (performance.now() - start < ROW_MS) {
    await handle.write(data, 0, data.length, (syncs * data.length) % (64 << 20));
    await handle.datasync();
    syncs++;
  }
  const ms = performance.now() - start;
  await handle.close();
  const name = `raw write 256 B + fdatasync (${preallocated ? 'preallocated file' : 'appending'})`;
  return { name, syncs, records: syncs, bytes: syncs * data.length, ms };
}

async function walRow(dir: string, batch: number): Promise<Row> {
  const { wal } = await Wal.open({
    fs: new NodeFileSystem(),
    dir: join(dir, `wal-${batch}`),
    clusterId: 1,
    memberId: 1,
  });
  const data = new Uint8Array(RECORD_DATA_BYTES).fill(7);
  let index = 1;
  let syncs = 0;
  const entries: Entry[] = [];
  const start = performance.now();
  while (performance.now() - start < ROW_MS) {
    entries.length = 0;
    for (let i = 0; i < batch; i++) entries.push({ index: index++, term: 1, type: 0, data });
    await wal.save({ term: 1, vote: 1, commit: index - 1 }, entries, null);
    syncs++;
  }
  const ms = performance.now() - start;
  await wal.close();
  // Bytes of entry data; framing adds 16 B header + 24 B entry header per record, + 40 B hard state per batch.
  return {
    name: `WAL save, batch of ${batch}`,
    syncs,
    records: syncs * batch,
    bytes: syncs * batch * RECORD_DATA_BYTES,
    ms,
  };
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(process.argv[2] ?? tmpdir(), 'tandem-bench-wal-'));
  try {
    const rows = [await rawFdatasync(root, false), await rawFdatasync(root, true)];
    for (const batch of BATCHES) rows.push(await walRow(root, batch));
    console.log(
      `WAL bench: ${RECORD_DATA_BYTES} B records, ${ROW_MS / 1000} s per row, dir ${root}\n`,
    );
    console.log(
      '| workload | fdatasyncs/s | records/s | MB/s (entry data) | mean latency per save |',
    );
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows) {
      const s = r.ms / 1000;
      console.log(
        `| ${r.name} | ${(r.syncs / s).toFixed(0)} | ${(r.records / s).toFixed(0)} | ${(r.bytes / s / 1e6).toFixed(2)} | ${(r.ms / r.syncs).toFixed(3)} ms |`,
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
