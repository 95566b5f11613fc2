/**
 * Child of snapshot-install-crash.test.ts: installs the snapshot in <file> into the LMDB store
 * at <dir> as a member does (TandemStateMachine.restore), and kill -9s itself inside the
 * install's write transaction after <puts> records. Exits 0 only if it was never killed.
 */
import { readFileSync } from 'node:fs';
import { unpack } from 'msgpackr';
import type { WriteTx } from '../../src/kv/backend/backend.js';
import { LmdbBackend } from '../../src/kv/backend/lmdb.js';
import type { Snapshot } from '../../src/raft/types.js';
import { TandemStateMachine } from '../../src/server/tandem-state-machine.js';

const [dir, file, putsText] = process.argv.slice(2);
const killAfterPuts = Number(putsText);
const backend = new LmdbBackend({ path: dir!, durable: false });
const write = backend.write.bind(backend);
let puts = 0;
backend.write = <T>(fn: (tx: WriteTx) => T): T =>
  write((tx) =>
    fn({
      ...tx,
      put: (bucket, key, value) => {
        tx.put(bucket, key, value);
        if (++puts === killAfterPuts) process.kill(process.pid, 'SIGKILL');
      },
    }),
  );
const sm = new TandemStateMachine({ backend, nowMs: () => 0 });
sm.restore(unpack(readFileSync(file!)) as Snapshot);
process.stdout.write(`installed without a crash after ${puts} puts\n`);
