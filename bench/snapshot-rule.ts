/**
 * What packing snapshots costs per put under the member's two snapshot rules, in one process on
 * one growing store: puts of 256-byte values to distinct keys (as `npm run bench` writes them)
 * applied through TandemStateMachine on LMDB, 64 per transaction as a member applies a Ready.
 * After each transaction both rules are asked whether a snapshot is due (each keeps its own
 * count of entries, logged bytes and last image since its own last snapshot); each rule that
 * says yes packs the state (TandemStateMachine.snapshot) and its CPU time is charged to it. So
 * the two rules' packs alternate on the same store, under the same load.
 * - every N: a snapshot every raft.snapshotEntries entries (the rule before);
 * - log bytes: snapshotDue with snapshotEveryEntriesMax = 5 N (cli/node.ts's setting).
 *
 *   node --import tsx bench/snapshot-rule.ts [puts=100000] [snapshotEntries=10000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { putRequest } from '../src/kv/api-types.js';
import { LmdbBackend } from '../src/kv/backend/lmdb.js';
import { ENVELOPE_HEADER_BYTES } from '../src/server/envelope.js';
import { snapshotDue } from '../src/server/member.js';
import { TandemStateMachine } from '../src/server/tandem-state-machine.js';

const PUTS_MAX = 2_000_000;
const PUTS_PER_READY = 64;
const VALUE_BYTES = 256;
const MAX_FACTOR = 5;

const puts = Number(process.argv[2] ?? 100_000);
const every = Number(process.argv[3] ?? 10_000);
if (!Number.isSafeInteger(puts) || puts < 1 || puts > PUTS_MAX) {
  throw new Error(`puts must be an integer in [1, ${PUTS_MAX}]`);
}
if (!Number.isSafeInteger(every) || every < 1) throw new Error('snapshotEntries must be >= 1');

interface Rule {
  readonly name: string;
  readonly due: (entries: number, logBytes: number, imageBytes: number) => boolean;
  entries: number;
  logBytes: number;
  imageBytes: number;
  snapshots: number;
  packCpuMs: number;
}

const rule = (name: string, due: Rule['due']): Rule => ({
  name,
  due,
  entries: 0,
  logBytes: 0,
  imageBytes: 0,
  snapshots: 0,
  packCpuMs: 0,
});
const rules = [
  rule(`every ${every}`, (entries) => entries >= every),
  rule(`log bytes (max ${MAX_FACTOR * every})`, (entries, logBytes, imageBytes) =>
    snapshotDue(entries, logBytes, imageBytes, every, MAX_FACTOR * every),
  ),
];

const dir = mkdtempSync(join(tmpdir(), 'tandem-snapshot-rule-'));
try {
  const founders = [{ id: 1, name: 'n1', peerUrls: ['127.0.0.1:2380'], clientUrls: [] }];
  const sm = new TandemStateMachine({
    backend: new LmdbBackend({ path: dir, durable: false }),
    founders,
    nowMs: () => 0,
  });
  const value = new Uint8Array(VALUE_BYTES).fill(7);
  const encoder = new TextEncoder();
  const loadStart = loadavg()[0]!;
  let index = 1;
  for (let i = 0; i < puts; i += PUTS_PER_READY) {
    let readyBytes = 0;
    const n = Math.min(PUTS_PER_READY, puts - i);
    sm.transaction(() => {
      for (let j = i; j < i + n; j++) {
        const key = encoder.encode(`bench/run/load/${j}`);
        const command = sm.encodeKv({ type: 'put', request: putRequest({ key, value }) });
        readyBytes += ENVELOPE_HEADER_BYTES + command.length;
        sm.apply({ index: ++index, term: 1 }, command);
      }
    });
    for (const r of rules) {
      r.entries += n;
      r.logBytes += readyBytes;
      if (!r.due(r.entries, r.logBytes, r.imageBytes)) continue;
      const cpu = process.cpuUsage();
      const image = sm.snapshot();
      const used = process.cpuUsage(cpu);
      r.packCpuMs += (used.user + used.system) / 1000;
      r.snapshots++;
      r.entries = 0;
      r.logBytes = 0;
      r.imageBytes = image.length;
    }
  }
  process.stdout.write(
    `${puts} puts of ${VALUE_BYTES} B, snapshotEntries ${every}, load average ${loadStart.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}\n\n` +
      '| rule | snapshots | pack CPU, ms | µs per put | last image, MiB |\n|---|--:|--:|--:|--:|\n',
  );
  for (const r of rules) {
    process.stdout.write(
      `| ${r.name} | ${r.snapshots} | ${r.packCpuMs.toFixed(0)} | ${((r.packCpuMs * 1000) / puts).toFixed(2)} | ${(r.imageBytes / 1024 / 1024).toFixed(1)} |\n`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
