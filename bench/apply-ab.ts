/**
 * The apply path, before against after, in one process: puts through TandemStateMachine
 * (transaction + apply, LMDB without fsync, as a member runs it) from two source trees, in
 * alternating rounds, so that both meet the same machine load. Prints CPU µs per put (the
 * whole process, and the main thread alone from /proc) and their ratio, and checks that both
 * trees end at the same HashKV.
 *
 *   git archive <before> src | tar -x -C /tmp/before
 *   node --import tsx bench/apply-ab.ts /tmp/before [--batch 64] [--rounds 40] [--round-puts 8192]
 *
 * `--watch plain|prevkv` adds one synced watcher on another key (prevkv: the store then reads
 * each put's previous value). `--alloc` forces a GC before each round and reports the heap
 * growth per put (bytes allocated, when no GC runs inside a round: give the young generation
 * room, `node --expose-gc --max-semi-space-size=64 … --alloc --round-puts 2048`); the forced
 * GC's sweeping then inflates the CPU figures, so read CPU from a run without it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    batch: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '40' },
    'round-puts': { type: 'string', default: '8192' },
    watch: { type: 'string', default: '' },
    alloc: { type: 'boolean', default: false },
  },
});
const BEFORE = positionals[0];
if (BEFORE === undefined) throw new Error('usage: bench/apply-ab.ts <source tree before> [flags]');
const BATCH = Number(values.batch);
const ROUNDS = Number(values.rounds);
const ROUND_PUTS = Number(values['round-puts']);
const WARMUP_ROUNDS = 3;
const KEYS = 10_000;
const VALUE_BYTES = 256;
const gc = (globalThis as { gc?: () => void }).gc;
if (values.alloc && gc === undefined) throw new Error('--alloc needs node --expose-gc');

async function side(root: string) {
  const { putRequest } = await import(`${root}/src/kv/api-types.ts`);
  const { LmdbBackend } = await import(`${root}/src/kv/backend/lmdb.ts`);
  const { encodeCommand } = await import(`${root}/src/kv/mvcc/command.ts`);
  const tsm = await import(`${root}/src/server/tandem-state-machine.ts`);
  const value = new Uint8Array(VALUE_BYTES).map((_, i) => (i * 31) & 255);
  const pool = Array.from({ length: KEYS }, (_, i) => {
    const key = new TextEncoder().encode(`/bench/key/${(i * 7919) % KEYS}`);
    return tsm.encodeKvCommand(encodeCommand({ type: 'put', request: putRequest({ key, value }) }));
  });
  const dir = mkdtempSync(join(tmpdir(), 'tandem-apply-ab-'));
  const backend = new LmdbBackend({ path: dir, durable: false });
  const sm = new tsm.TandemStateMachine({ backend, nowMs: () => 0 });
  sm.bootstrap();
  if (values.watch !== '') {
    const stream = sm.watchHub.openStream();
    const key = new TextEncoder().encode('/elsewhere');
    stream.watch({ key, prevKv: values.watch === 'prevkv' });
  }
  let index = 1;
  return {
    round(): void {
      for (let done = 0; done < ROUND_PUTS; done += BATCH) {
        sm.transaction(() => {
          for (let i = 0; i < BATCH; i++) {
            index++;
            sm.apply({ index, term: 1 }, pool[index % KEYS]!);
          }
        });
      }
    },
    hash: (): number => sm.hash().hash,
    close: async (): Promise<void> => {
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The main thread's utime + stime in µs (/proc ticks are 10 ms). */
function mainThreadUs(): number {
  const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!;
  const f = fields.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

const sides = { before: await side(resolve(BEFORE)), after: await side(resolve('.')) };
type Name = keyof typeof sides;
const totals = { before: { cpu: 0, main: 0, alloc: 0 }, after: { cpu: 0, main: 0, alloc: 0 } };
const ratios: number[] = [];
for (let r = 0; r < ROUNDS + WARMUP_ROUNDS; r++) {
  const order: Name[] = r % 2 === 0 ? ['before', 'after'] : ['after', 'before'];
  const cpuUs: Record<Name, number> = { before: 0, after: 0 };
  for (const name of order) {
    if (values.alloc) gc!();
    const heap0 = process.memoryUsage().heapUsed;
    const main0 = mainThreadUs();
    const cpu0 = process.cpuUsage();
    sides[name].round();
    const cpu = process.cpuUsage(cpu0);
    cpuUs[name] = cpu.user + cpu.system;
    if (r < WARMUP_ROUNDS) continue;
    totals[name].cpu += cpuUs[name];
    totals[name].main += mainThreadUs() - main0;
    totals[name].alloc += process.memoryUsage().heapUsed - heap0;
  }
  if (r >= WARMUP_ROUNDS) ratios.push(cpuUs.after / cpuUs.before);
}
const puts = ROUNDS * ROUND_PUTS;
const per = (n: number) => (n / puts).toFixed(2);
ratios.sort((a, b) => a - b);
const q = (f: number) => ratios[Math.floor((ratios.length - 1) * f)]!.toFixed(3);
console.log(
  `apply A/B: ${ROUNDS} rounds of ${ROUND_PUTS} puts each side, ${BATCH} per transaction, ` +
    `watch ${values.watch || 'none'}; load ${readFileSync('/proc/loadavg', 'utf8').trim()}`,
);
for (const name of ['before', 'after'] as const) {
  const t = totals[name];
  const alloc = values.alloc ? `, heap growth ${(t.alloc / puts).toFixed(0)} B/put` : '';
  console.log(`${name}: CPU ${per(t.cpu)} µs/put (main thread ${per(t.main)})${alloc}`);
}
console.log(`after/before CPU per round: median ${q(0.5)} (p25 ${q(0.25)}, p75 ${q(0.75)})`);
const hashes = [sides.before.hash(), sides.after.hash()];
console.log(
  `HashKV before ${hashes[0]} after ${hashes[1]}${hashes[0] === hashes[1] ? '' : ' DIFFER'}`,
);
await sides.before.close();
await sides.after.close();
