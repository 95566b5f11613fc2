/**
 * A member killed in the middle of installing a snapshot recovers: the install is one LMDB
 * write transaction, so the store the killed process leaves is the one it had before (same
 * boot: trusted, lmdb.ts), below the snapshot's index; at restart the member installs the
 * snapshot again from its file (cli/node.ts bootstrapOrRestore: snapshot index > applied).
 * The kill is a real SIGKILL of a child process inside the install's write transaction.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pack } from 'msgpackr';
import { op, putRequest, txnRequest } from '../../src/kv/api-types.js';
import { LmdbBackend } from '../../src/kv/backend/lmdb.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import type { Snapshot } from '../../src/raft/types.js';
import { TandemStateMachine } from '../../src/server/tandem-state-machine.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHILD = join(HERE, 'snapshot-install-crash-child.ts');
const CHILD_MS_MAX = 60_000;
const founders = [{ id: 1, name: 'n1', peerUrls: ['127.0.0.1:2380'], clientUrls: [] }];
const confState = {
  voters: [1],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};
const encoder = new TextEncoder();

/** Applies `txns` Txns of 64 puts of 200-byte values from index `first`; returns the next. */
function load(sm: TandemStateMachine, prefix: string, txns: number, first: number): number {
  let index = first;
  for (let t = 0; t < txns; t++) {
    const success = Array.from({ length: 64 }, (_, i) =>
      op.put(
        putRequest({
          key: encoder.encode(`${prefix}/${t}/${i}`),
          value: new Uint8Array(200).fill((t + i) & 255),
        }),
      ),
    );
    sm.apply(
      { index: index++, term: 1 },
      sm.encodeKv({ type: 'txn', request: txnRequest({ success }) }),
    );
  }
  return index;
}

function runChild(dir: string, file: string, killAfterPuts: number) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>(
    (resolve) => {
      const child = spawn(process.execPath, [
        '--import',
        'tsx',
        CHILD,
        dir,
        file,
        `${killAfterPuts}`,
      ]);
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_MS_MAX);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, out });
      });
    },
  );
}

test('kill -9 in the middle of a snapshot install: the store is as before, and the install is redone', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tandem-install-crash-'));
  try {
    // The leader's state and its snapshot (as packed for a joiner: a list of chunks).
    const leader = new TandemStateMachine({
      backend: new MemoryBackend(),
      founders,
      nowMs: () => 0,
    });
    const index = load(leader, 'leader', 60, 2) - 1;
    const snapshot: Snapshot = { metadata: { index, term: 1, confState }, data: leader.snapshot() };
    const file = join(root, 'snapshot.msgpack');
    writeFileSync(file, pack(snapshot));

    // The member's store before: some state of its own, below the snapshot's index.
    const dir = join(root, 'kv');
    const own = new TandemStateMachine({
      backend: new LmdbBackend({ path: dir, durable: false }),
      founders,
      nowMs: () => 0,
    });
    load(own, 'own', 5, 2);
    const before = { applied: own.appliedIndex(), hash: own.hash() };
    assert.ok(before.applied < index);

    // Killed halfway through the install's records (the image holds 60 × 64 puts).
    const child = await runChild(dir, file, 1_900);
    assert.equal(child.signal, 'SIGKILL', `the child was killed mid-install: ${child.out}`);

    // Restart: the store is the one from before the install, and trusted (same boot).
    const backend = new LmdbBackend({ path: dir, durable: false });
    assert.equal(backend.rebuilt, null);
    const restarted = new TandemStateMachine({ backend, founders, nowMs: () => 0 });
    assert.equal(restarted.appliedIndex(), before.applied);
    assert.deepEqual(restarted.hash(), before.hash);
    // As cli/node.ts does at start: the snapshot is ahead of the store, so it is installed.
    assert.ok(snapshot.metadata.index > restarted.appliedIndex());
    restarted.restore(snapshot);
    assert.equal(restarted.appliedIndex(), index);
    assert.deepEqual(restarted.hash(), leader.hash());
    await backend.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
