/**
 * Where a Raft snapshot's time goes inside one process, phase by phase, for a store of N keys
 * (256 B values, written in Txns of 128 puts, as bench/scale.ts loads them) on LMDB:
 * - pack: the leader's state machine packs the image a slice per event-loop turn
 *   (snapshotInSlices, setImmediate between slices, as the member schedules it); the longest
 *   slice is the longest the loop is held;
 * - install: a fresh member's state machine restores the image (TandemStateMachine.restore),
 *   then, on a third backend, its two parts apart: the backend rebuilt from the image
 *   (restoreSnapshot) and the store opened on it (MvccStore.open: the key index rebuilt).
 * Sending and writing the file are not here: the cluster bench (bench/scale.ts) covers them.
 *
 *   node --import tsx bench/snapshot-phases.ts [keys=100000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { unpack } from 'msgpackr';
import { op, putRequest, txnRequest } from '../src/kv/api-types.js';
import { LmdbBackend } from '../src/kv/backend/lmdb.js';
import { Lessor } from '../src/kv/lease/lessor.js';
import { restoreSnapshot } from '../src/kv/mvcc/snapshot.js';
import { KvStateMachine } from '../src/kv/state-machine.js';
import { TandemStateMachine } from '../src/server/tandem-state-machine.js';

const KEYS_MAX = 2_000_000;
const PUTS_PER_TXN = 128;
const VALUE_BYTES = 256;
const MiB = 1024 * 1024;

const keys = Number(process.argv[2] ?? 100_000);
if (!Number.isSafeInteger(keys) || keys < 1 || keys > KEYS_MAX) {
  throw new Error(`keys must be an integer in [1, ${KEYS_MAX}]`);
}
const founders = [{ id: 1, name: 'n1', peerUrls: ['127.0.0.1:2380'], clientUrls: [] }];
const confState = {
  voters: [1],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};
const dirs: string[] = [];
const lmdb = (durable: boolean) => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-snapshot-phases-'));
  dirs.push(dir);
  return new LmdbBackend({ path: dir, durable });
};
const ms = (since: number) => performance.now() - since;
/** CPU ms of this process (user + system) since `since`: less sensitive than wall time to a shared machine's load. */
const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
};
const rate = (bytes: number, elapsedMs: number) => (bytes / MiB / (elapsedMs / 1000)).toFixed(1);

try {
  const leader = new TandemStateMachine({ backend: lmdb(false), founders, nowMs: () => 0 });
  const value = new Uint8Array(VALUE_BYTES).fill(7);
  const encoder = new TextEncoder();
  let index = 1;
  for (let i = 0; i < keys; i += PUTS_PER_TXN) {
    const success = [];
    for (let j = i; j < Math.min(keys, i + PUTS_PER_TXN); j++) {
      const key = encoder.encode(`key-${String(j).padStart(8, '0')}`);
      success.push(op.put(putRequest({ key, value })));
    }
    const command = leader.encodeKv({ type: 'txn', request: txnRequest({ success }) });
    leader.apply({ index: ++index, term: 1 }, command);
  }

  let start = performance.now();
  let cpu = process.cpuUsage();
  let slices = 0;
  let sliceMsMax = 0;
  const data = await new Promise<Uint8Array>((resolve) => {
    leader.snapshotInSlices(
      (next) =>
        setImmediate(() => {
          const sliceStart = performance.now();
          slices++;
          next(true);
          sliceMsMax = Math.max(sliceMsMax, ms(sliceStart));
        }),
      resolve,
    );
  });
  const packMs = ms(start);
  const packCpuMs = cpuMs(cpu);

  const joiner = new TandemStateMachine({ backend: lmdb(true), founders, nowMs: () => 0 });
  start = performance.now();
  cpu = process.cpuUsage();
  joiner.restore({ metadata: { index, term: 1, confState }, data });
  const installMs = ms(start);
  const installCpuMs = cpuMs(cpu);

  const apart = lmdb(true);
  start = performance.now();
  restoreSnapshot(apart, unpack(data) as Uint8Array[]);
  const rebuildMs = ms(start);
  start = performance.now();
  KvStateMachine.open(apart, { lessor: new Lessor() });
  const openMs = ms(start);

  const mib = (data.length / MiB).toFixed(1);
  process.stdout.write(
    `keys ${keys}, image ${mib} MiB, load average ${loadavg()[0]!.toFixed(2)}\n` +
      `pack:    ${packMs.toFixed(0)} ms (${rate(data.length, packMs)} MiB/s), CPU ${packCpuMs.toFixed(0)} ms, ` +
      `${slices} slices, longest ${sliceMsMax.toFixed(1)} ms\n` +
      `install: ${installMs.toFixed(0)} ms (${rate(data.length, installMs)} MiB/s), CPU ${installCpuMs.toFixed(0)} ms\n` +
      `  apart: backend rebuilt ${rebuildMs.toFixed(0)} ms, store opened (key index) ${openMs.toFixed(0)} ms\n`,
  );
} finally {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
