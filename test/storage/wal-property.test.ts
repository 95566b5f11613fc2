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

/**
 * One run of the property. With `commitOnly`, commit-only hard states come between the saves
 * (`save(hs, [], null, false)`): each is kept, not written, and goes with the next synced save
 * that has no hard state of its own, or is written by a clean close. So the recovered state is
 * the model of the synced saves, each carrying the deferred hard state it took; one deferred
 * when a crash came is lost.
 */
function walProperty(commitOnly: boolean) {
  return fc.asyncProperty(
    fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    fc.array(opArb, { maxLength: 20 }),
    async (seed, ops) => {
      const rng = new Prng(seed);
      const dir = tempDir();
      const fs = new FaultyFileSystem(real);
      const opts = { fs, dir, clusterId: 1, memberId: 1, segmentBytes: 1024 };
      let applied: Batch[] = [];
      // The commit-only hard state handed to the WAL and not yet carried by a synced save.
      let deferred: Batch | null = null;
      const current = (): Batch[] => (deferred === null ? applied : [...applied, deferred]);
      const deferSome = async (wal: Wal): Promise<void> => {
        if (!commitOnly) return;
        const state = model(current());
        const last = state.entries.at(-1)?.index ?? 0;
        if (last <= state.hardState.commit || rng.int(2) === 0) return;
        const commit = state.hardState.commit + 1 + rng.int(last - state.hardState.commit);
        const hs = { ...state.hardState, commit };
        await wal.save(hs, [], null, false);
        deferred = { hardState: hs, entries: [], snapshot: null };
      };
      // A synced batch as the WAL writes it: with the deferred hard state if it has none.
      const carried = (b: Batch): Batch =>
        b.hardState === null && deferred !== null ? { ...b, hardState: deferred.hardState } : b;
      let wal = (await Wal.open(opts)).wal;
      try {
        for (const op of ops) {
          if (op.kind === 'save') {
            for (let i = 0; i < op.count; i++) {
              await deferSome(wal);
              const b = nextBatch(rng, model(current()), 150);
              await wal.save(b.hardState, b.entries, b.snapshot);
              applied.push(carried(b));
              deferred = null;
            }
            continue;
          }
          await deferSome(wal);
          let inFlight: Batch | null = null;
          if (op.kind === 'crash') {
            fs.crashAfterBytes(op.atBytes);
            const b = nextBatch(rng, model(current()), 150);
            inFlight = carried(b);
            let acked = false;
            while (!fs.isCrashed) {
              await wal.save(b.hardState, b.entries, b.snapshot).then(
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
            await wal.close(); // writes a deferred hard state
            if (deferred !== null) applied.push(deferred);
          }
          deferred = null; // written by close, or lost in the crash
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
        await deferSome(wal);
        await wal.close();
        if (deferred !== null) applied.push(deferred);
        const last = await Wal.open(opts);
        assertRecovered(last, applied, [applied.length], `seed ${seed}, final`);
        assert.equal(last.stats.tornTail, null, 'a clean close leaves no torn tail');
        await last.wal.close();
      } finally {
        await fs.restart({ powerLoss: false });
        removeDir(dir);
      }
    },
  );
}

test('recovered state = every acknowledged save, plus at most the one in flight', async () => {
  await fc.assert(walProperty(false), { numRuns: 200 });
});

test('commit-only hard states between saves: written with the next synced save or by close, else lost', async () => {
  await fc.assert(walProperty(true), { numRuns: 200 });
});
