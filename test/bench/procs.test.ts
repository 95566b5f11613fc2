/**
 * The bench's CPU per thread group (bench/procs.ts) on a real Node process: its threads sorted
 * into the groups gdb showed on a member, and CPU spent on purpose in the libuv pool (pbkdf2) and
 * on the main thread (a busy loop) charged to those groups. A wrong order in groupThreads (the
 * pool taken for V8's workers, say) would print "V8 GC" where the WAL's fsyncs are.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import {
  groupThreads,
  THREAD_GROUPS,
  type ThreadGroup,
  threadCpuMs,
  threadGroupCpuMs,
  threadRuns,
} from '../../bench/procs.js';

const READY_TIMEOUT_MS = 30_000;
const linux = process.platform === 'linux';

/**
 * A child that uses the libuv pool (pbkdf2, about 0.3 s of CPU there) and then its main thread
 * (a busy loop until the process has used 300 ms more CPU), prints "ready" and waits.
 */
const CHILD = `
const crypto = require('node:crypto');
crypto.pbkdf2('password', 'salt', 1200000, 32, 'sha256', () => {
  const from = process.cpuUsage();
  while (process.cpuUsage(from).user < 300000);
  process.stdout.write('ready\\n');
  setInterval(() => {}, 1000);
});
`;

async function startChild(nodeArgs: readonly string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...nodeArgs, '-e', CHILD], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8');
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: string) => {
      output += chunk;
      if (output.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before ready`)));
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), READY_TIMEOUT_MS);
  try {
    await ready;
  } finally {
    clearTimeout(timer);
  }
  return child;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

function countByGroup(groups: ReadonlyMap<number, ThreadGroup>): Record<ThreadGroup, number> {
  const counts = Object.fromEntries(THREAD_GROUPS.map((g) => [g, 0])) as Record<
    ThreadGroup,
    number
  >;
  for (const group of groups.values()) counts[group]++;
  return counts;
}

describe('bench thread groups (/proc/<pid>/task)', { skip: !linux && 'needs Linux /proc' }, () => {
  test('groupThreads: by name first, then by the order the unnamed threads were made', () => {
    const threads = [
      { tid: 10, name: 'node', startTicks: 5 },
      // Made in the same tick: tid breaks the tie.
      ...[11, 12, 13, 14, 15].map((tid) => ({ tid, name: 'node', startTicks: 6 })),
      { tid: 16, name: 'node', startTicks: 7 },
      { tid: 17, name: 'v8:ProfEvntProc', startTicks: 7 },
      ...[18, 19, 20, 21].map((tid) => ({ tid, name: 'node', startTicks: 9 })),
      { tid: 30, name: 'node', startTicks: 50 },
    ];
    const groups = groupThreads(10, [...threads].reverse());
    assert.equal(groups.get(10), 'main');
    for (const tid of [11, 12, 13, 14, 15])
      assert.equal(groups.get(tid), 'v8 platform (GC, compiler)');
    assert.equal(groups.get(16), 'inspector');
    assert.equal(groups.get(17), 'cpu profiler');
    for (const tid of [18, 19, 20, 21]) assert.equal(groups.get(tid), 'libuv pool');
    assert.equal(groups.get(30), 'other');
    const bigger = groupThreads(10, threads, { v8PoolSize: 2, uvThreadpoolSize: 4 });
    assert.equal(bigger.get(14), 'inspector');
    assert.equal(bigger.get(15), 'libuv pool');
  });

  for (const nodeArgs of [[], ['--cpu-prof', `--cpu-prof-dir=${process.env.TMPDIR ?? '/tmp'}`]]) {
    test(`a live node ${nodeArgs.join(' ') || '(no flags)'}: its threads, and CPU charged where it was spent`, async () => {
      const child = await startChild(nodeArgs);
      try {
        const reading = threadCpuMs(child.pid!);
        const groups = new Map([...reading.byTid].map(([tid, t]) => [tid, t.group]));
        const counts = countByGroup(groups);
        assert.deepEqual(counts, {
          main: 1,
          'v8 platform (GC, compiler)': 5,
          'libuv pool': 4,
          'cpu profiler': nodeArgs.length === 0 ? 0 : 1,
          inspector: 1,
          other: 0,
        });
        const cpu = threadGroupCpuMs({ byTid: new Map() }, reading);
        const poolMs = cpu.get('libuv pool')!;
        const mainMs = cpu.get('main')!;
        // pbkdf2's CPU is the pool's; the busy loop's 300 ms (clock ticks: ±10 ms) the main's.
        assert.ok(poolMs >= 150, `libuv pool ${poolMs} ms, expected pbkdf2's ~300 ms`);
        assert.ok(mainMs >= 250, `main ${mainMs} ms, expected the busy loop's 300 ms and more`);
        assert.ok(
          cpu.get('v8 platform (GC, compiler)')! < poolMs,
          `v8 platform ${cpu.get('v8 platform (GC, compiler)')} ms ≥ pool ${poolMs} ms`,
        );
      } finally {
        await stopChild(child);
      }
    });
  }
});

test("threadRuns counts each thread's time on a CPU and its runs, grouped as threadCpuMs groups", {
  skip: linux ? false : 'reads /proc (Linux only)',
}, async () => {
  const before = threadRuns(process.pid);
  const main = before.byTid.get(process.pid);
  assert.ok(main !== undefined && main.group === 'main' && main.runNs > 0 && main.runs > 0);
  // Sleep and wake a few times, spending CPU in between: the main thread's counters both grow.
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    const until = performance.now() + 2;
    while (performance.now() < until);
  }
  const after = threadRuns(process.pid).byTid.get(process.pid)!;
  assert.ok(after.runNs - main.runNs >= 10e6 * 0.9, `ran ${(after.runNs - main.runNs) / 1e6} ms`);
  assert.ok(after.runs - main.runs >= 5, `ran ${after.runs - main.runs} times`);
  // Not a Node process: the own thread is 'main', every other one 'other'.
  const plain = threadRuns(process.pid, false);
  for (const [tid, t] of plain.byTid) assert.equal(t.group, tid === process.pid ? 'main' : 'other');
  assert.equal(threadRuns(null).byTid.size, 0);
});
