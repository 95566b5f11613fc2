/**
 * Property: for any sequence of saves, crashes (at any byte of the next save, as a process
 * crash or a power loss that keeps a random prefix of unsynced writes, possibly torn) and
 * reopens, the recovered state is exactly the state after every acknowledged save, plus at most
 * the one save in flight at the crash if it landed whole. A synced batch is never lost; nothing
 * recovered is other than a prefix of what was written.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FaultyFileSystem } from '../../src/storage/fault-fs.js';
import { NodeFileSystem } from '../../src/storage/fs.js';
import { Wal } from '../../src/storage/wal/wal.js';
import { Prng } from '../../src/util/prng.js';
import { assertRecovered, type Batch, model, nextBatch, removeDir, tempDir } from './helpers.js';

const real = new NodeFileSystem();

type Op =
  | { kind: 'save'; count: number }
  | { kind: 'crash'; atBytes: number; power: 0 | 1 | 2 }
  | { kind: 'reopen' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('save' as const),
      count: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('crash' as const),
      atBytes: fc.integer({ min: 0, max: 2500 }),
      power: fc.constantFrom(0 as const, 1 as const, 2 as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const) }) },
);

test('recovered state = every acknowledged save, plus at most the one in flight', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      fc.array(opArb, { maxLength: 20 }),
      async (seed, ops) => {
        const rng = new Prng(seed);
        const dir = tempDir();
        const fs = new FaultyFileSystem(real);
        const opts = { fs, dir, clusterId: 1, memberId: 1, segmentBytes: 1024 };
        let applied: Batch[] = [];
        let wal = (await Wal.open(opts)).wal;
        try {
          for (const op of ops) {
            if (op.kind === 'save') {
              for (let i = 0; i < op.count; i++) {
                const b = nextBatch(rng, model(applied), 150);
                await wal.save(b.hardState, b.entries, b.snapshot);
                applied.push(b);
              }
              continue;
            }
            let inFlight: Batch | null = null;
            if (op.kind === 'crash') {
              fs.crashAfterBytes(op.atBytes);
              inFlight = nextBatch(rng, model(applied), 150);
              let acked = false;
              while (!fs.isCrashed) {
                await wal.save(inFlight.hardState, inFlight.entries, inFlight.snapshot).then(
                  () => (acked = true),
                  () => {},
                );
                if (acked) break;
              }
              if (acked) {
                applied.push(inFlight); // the crash point was past this save: it is durable
                inFlight = null;
              }
              await fs.restart({ powerLoss: op.power > 0, ...(op.power === 2 ? { rng } : {}) });
            } else {
              await wal.close();
            }
            const got = await Wal.open(opts);
            const candidates = inFlight === null ? [applied] : [applied, [...applied, inFlight]];
            const k = assertRecovered(
              got,
              candidates.at(-1)!,
              candidates.map((c) => c.length),
              `seed ${seed}`,
            );
            applied = candidates.at(-1)!.slice(0, k);
            wal = got.wal;
          }
          await wal.close();
          const last = await Wal.open(opts);
          assertRecovered(last, applied, [applied.length], `seed ${seed}, final`);
          assert.equal(last.stats.tornTail, null, 'a clean close leaves no torn tail');
          await last.wal.close();
        } finally {
          await fs.restart({ powerLoss: false });
          removeDir(dir);
        }
      },
    ),
    { numRuns: 200 },
  );
});
