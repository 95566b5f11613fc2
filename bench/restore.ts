/**
 * Reopening a store, before against after, in one process: the key index rebuild that a
 * restarted member does before it serves (`MvccStore.open` over an LMDB backend). Writes
 * `--keys` keys of `--value-bytes` once (one revision each, as a put workload makes), then
 * reopens the same files with each source tree in alternating rounds (A B, B A, …), so both
 * meet the same machine load and the same bytes. Prints wall and CPU ms per reopen and their
 * ratios, and checks that both trees see the same revision, key count and HashKV.
 *
 *   git archive <before> src | tar -x -C /tmp/before && ln -s $PWD/node_modules /tmp/before/
 *   node --expose-gc --import tsx bench/restore.ts /tmp/before [--keys 200000] [--rounds 5]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    keys: { type: 'string', default: '200000' },
    'value-bytes': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '5' },
  },
});
const BEFORE = positionals[0];
if (BEFORE === undefined) throw new Error('usage: bench/restore.ts <source tree before> [flags]');
const KEYS = Number(values.keys);
const VALUE_BYTES = Number(values['value-bytes']);
const ROUNDS = Number(values.rounds);
const WRITES_PER_BATCH = 1000;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc (each reopen starts collected)');

const NO_LEASES = { exists: () => false, attach: () => {}, detach: () => {} };

async function side(root: string) {
  const { LmdbBackend } = await import(`${root}/src/kv/backend/lmdb.ts`);
  const { MvccStore } = await import(`${root}/src/kv/mvcc/store.ts`);
  return {
    reopen(dir: string) {
      const backend = new LmdbBackend({ path: dir, durable: false });
      const store = MvccStore.open(backend, NO_LEASES);
      return { backend, store };
    },
  };
}

const sides = { before: await side(resolve(BEFORE)), after: await side(resolve('.')) };
type Name = keyof typeof sides;

const dir = mkdtempSync(join(tmpdir(), 'tandem-restore-bench-'));
try {
  {
    const { backend, store } = sides.after.reopen(dir);
    const value = new Uint8Array(VALUE_BYTES).map((_, i) => (i * 31) & 255);
    const enc = new TextEncoder();
    let applied = 0;
    const t0 = performance.now();
    for (let done = 0; done < KEYS; ) {
      store.batch(() => {
        for (let i = 0; i < WRITES_PER_BATCH && done < KEYS; i++, done++) {
          const key = enc.encode(`/bench/key/${String((done * 7919) % KEYS).padStart(8, '0')}`);
          store.write(++applied, (txn: { put(k: Uint8Array, v: Uint8Array, l: bigint): void }) =>
            txn.put(key, value, 0n),
          );
        }
      });
    }
    console.log(
      `wrote ${KEYS} keys of ${VALUE_BYTES} B in ${(performance.now() - t0).toFixed(0)} ms`,
    );
    await backend.close();
  }
  const wall: Record<Name, number[]> = { before: [], after: [] };
  const cpu: Record<Name, number[]> = { before: [], after: [] };
  const seen: Record<Name, string> = { before: '', after: '' };
  for (let r = 0; r < ROUNDS + 1; r++) {
    const order: Name[] = r % 2 === 0 ? ['before', 'after'] : ['after', 'before'];
    for (const name of order) {
      gc();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const { backend, store } = sides[name].reopen(dir);
      const ms = performance.now() - t0;
      const used = process.cpuUsage(cpu0);
      if (r > 0) {
        // round 0 warms up both trees (module compilation, the page cache)
        wall[name].push(ms);
        cpu[name].push((used.user + used.system) / 1000);
      }
      seen[name] =
        `rev ${store.currentRevision()} keys ${store.indexedKeys()} hash ${store.hashKv().hash}`;
      await backend.close();
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const spread = (xs: number[]) =>
    `median ${median(xs).toFixed(0)} (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)})`;
  console.log(
    `reopen of ${KEYS} keys × ${VALUE_BYTES} B, ${ROUNDS} rounds each side; load ${readFileSync('/proc/loadavg', 'utf8').trim()}`,
  );
  for (const name of ['before', 'after'] as const) {
    console.log(`${name}: wall ms ${spread(wall[name])}; CPU ms ${spread(cpu[name])}`);
  }
  const ratios = wall.after.map((a, i) => a / wall.before[i]!);
  console.log(`after/before wall per round: ${spread(ratios.map((x) => x * 1000))} ‰`);
  console.log(`before: ${seen.before}\nafter:  ${seen.after}`);
  if (seen.before !== seen.after) throw new Error('the two trees rebuilt different stores');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
