/**
 * CPU time of server processes, for the benchmarks' "server CPU µs/op". The processes themselves
 * are the launcher's (src/cli/local-process.ts): spawned, stopped and killed by PID there.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second for /proc/<pid>/stat (CLK_TCK: 100 on every Linux Node supports). */
const CLOCK_TICKS_PER_S = 100;

/**
 * CPU time (user + system, ms) the processes have used so far, from /proc/<pid>/stat; a process
 * that has gone (or a null PID) counts 0. Under `setpriv` the PID is the member's own (setpriv
 * execs it).
 */
export function processesCpuMs(pids: readonly (number | null)[]): number {
  let ticks = 0;
  for (const pid of pids) {
    if (pid !== null) ticks += statTicks(`/proc/${pid}/stat`);
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}

/**
 * CPU time (user + system, ms) of a process's main thread alone (its thread id is its PID): for
 * Node, the event loop's thread, without the libuv pool, GC helper or other threads.
 */
export function mainThreadCpuMs(pid: number | null): number {
  return pid === null ? 0 : (statTicks(`/proc/${pid}/task/${pid}/stat`) * 1000) / CLOCK_TICKS_PER_S;
}

/** utime + stime from a /proc stat file, in clock ticks; 0 when it is gone (or not Linux). */
function statTicks(path: string): number {
  const fields = statFields(path);
  return fields === null ? 0 : Number(fields[11]) + Number(fields[12]);
}

/**
 * The fields of a /proc stat file after the command name (which may hold spaces): state is [0],
 * utime [11], stime [12], starttime [19]. Null when it is gone (or not Linux).
 */
function statFields(path: string): string[] | null {
  try {
    const stat = readFileSync(path, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** A thread's scheduler times: on a CPU, and runnable but waiting for one (ms). */
export interface SchedTimes {
  readonly runMs: number;
  readonly waitMs: number;
}

/** `/proc/<pid>/task/<tid>/schedstat`: "<ns on cpu> <ns waiting on a runqueue> <timeslices>". */
export function parseSchedstat(text: string): SchedTimes {
  const [run, wait] = text.trim().split(' ');
  const runNs = Number(run);
  const waitNs = Number(wait);
  if (!(Number.isFinite(runNs) && Number.isFinite(waitNs))) {
    throw new Error(`not a schedstat line: ${JSON.stringify(text)}`);
  }
  return { runMs: runNs / 1e6, waitMs: waitNs / 1e6 };
}

/**
 * The scheduler times of a process's main thread (for Node, the event loop's), or null when it
 * is gone or the kernel keeps no schedstat. The wait is CPU starvation: time the loop could
 * have run but the machine gave its cores to others, which event-loop delay includes.
 */
export function mainThreadSched(pid: number | null): SchedTimes | null {
  if (pid === null) return null;
  try {
    return parseSchedstat(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Thread groups of a Node 20 process, for CPU per thread. Node 20 names few of its threads
 * (/proc/<pid>/task/<tid>/comm reads "node" for all but V8's own, such as the CPU profiler's
 * "v8:ProfEvntProc"), so an unnamed thread's group comes from the order the threads were made,
 * checked with gdb on a member, with and without --cpu-prof (`thread apply all bt`):
 * - the main thread (tid = pid): the event loop, JavaScript, and lmdb-js's synchronous calls;
 * - V8's platform: one delayed-task scheduler, then `--v8-pool-size` (default 4)
 *   PlatformWorkerThreads: concurrent and parallel GC (scavenge, marking, sweeping), concurrent
 *   compilation;
 * - the inspector's I/O thread (idle unless a debugger attaches);
 * - libuv's pool, `UV_THREADPOOL_SIZE` (default 4) threads made on first use: fs calls (WAL
 *   writes, fdatasync), lmdb-js's asynchronous commits, dns, zlib;
 * - anything made later (worker_threads, an addon's own threads): "other".
 * With --cpu-prof, V8's sampler thread ("v8:ProfEvntProc", made between the inspector's and the
 * pool's) is "cpu profiler". Later Node versions name the pool's and V8's workers; those names
 * are recognized too.
 */
export type ThreadGroup =
  | 'main'
  | 'v8 platform (GC, compiler)'
  | 'libuv pool'
  | 'cpu profiler'
  | 'inspector'
  | 'other';
export const THREAD_GROUPS: readonly ThreadGroup[] = [
  'main',
  'v8 platform (GC, compiler)',
  'libuv pool',
  'cpu profiler',
  'inspector',
  'other',
];
/** Thread names (comm) that say their group, whatever the order. */
const NAMED_GROUPS: readonly { readonly name: RegExp; readonly group: ThreadGroup }[] = [
  { name: /^v8:ProfEvntProc/, group: 'cpu profiler' },
  { name: /^libuv-worker/, group: 'libuv pool' },
  { name: /^(V8Worker|V8 DefaultWorke|DelayedTaskSche)/, group: 'v8 platform (GC, compiler)' },
];
const V8_POOL_SIZE_DEFAULT = 4;
const UV_THREADPOOL_SIZE_DEFAULT = 4;
const INSPECTOR_THREADS = 1;

export interface ThreadLayout {
  /** --v8-pool-size the process runs with (0 is V8's own choice; Node 20 default 4). */
  readonly v8PoolSize: number;
  readonly uvThreadpoolSize: number;
}

export const DEFAULT_THREAD_LAYOUT: ThreadLayout = {
  v8PoolSize: V8_POOL_SIZE_DEFAULT,
  uvThreadpoolSize: UV_THREADPOOL_SIZE_DEFAULT,
};

/** One thread's CPU so far, with when it was made (clock ticks since boot) for its order. */
interface ThreadSample {
  readonly tid: number;
  readonly name: string;
  readonly startTicks: number;
  readonly cpuTicks: number;
}

function threadSamples(pid: number): ThreadSample[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const samples: ThreadSample[] = [];
  for (const name of tids) {
    const fields = statFields(`/proc/${pid}/task/${name}/stat`);
    let comm = '';
    try {
      comm = readFileSync(`/proc/${pid}/task/${name}/comm`, 'utf8').trim();
    } catch {}
    if (fields !== null) {
      samples.push({
        tid: Number(name),
        name: comm,
        startTicks: Number(fields[19]),
        cpuTicks: Number(fields[11]) + Number(fields[12]),
      });
    }
  }
  return samples;
}

/**
 * The group of each thread of a process: by its name where the name says it (NAMED_GROUPS),
 * else by its place among the unnamed threads in the order they were made (see ThreadGroup).
 * Pure: `threads` are (tid, comm, start time), in any order.
 */
export function groupThreads(
  pid: number,
  threads: readonly { readonly tid: number; readonly name: string; readonly startTicks: number }[],
  layout: ThreadLayout = DEFAULT_THREAD_LAYOUT,
): Map<number, ThreadGroup> {
  const groups = new Map<number, ThreadGroup>([[pid, 'main']]);
  const unnamed: (typeof threads)[number][] = [];
  for (const t of threads) {
    if (t.tid === pid) continue;
    const named = NAMED_GROUPS.find((n) => n.name.test(t.name));
    if (named !== undefined) groups.set(t.tid, named.group);
    else unnamed.push(t);
  }
  const ordered = unnamed.sort((a, b) => a.startTicks - b.startTicks || a.tid - b.tid);
  const v8Threads = 1 + (layout.v8PoolSize === 0 ? V8_POOL_SIZE_DEFAULT : layout.v8PoolSize);
  ordered.forEach((t, i) => {
    let group: ThreadGroup = 'other';
    if (i < v8Threads) group = 'v8 platform (GC, compiler)';
    else if (i < v8Threads + INSPECTOR_THREADS) group = 'inspector';
    else if (i < v8Threads + INSPECTOR_THREADS + layout.uvThreadpoolSize) group = 'libuv pool';
    groups.set(t.tid, group);
  });
  return groups;
}

/** Per thread id: its group and CPU so far (ms). Threads are grouped as of this reading. */
export interface ThreadCpu {
  readonly byTid: ReadonlyMap<number, { readonly group: ThreadGroup; readonly cpuMs: number }>;
}

export function threadCpuMs(pid: number | null, layout?: ThreadLayout): ThreadCpu {
  const byTid = new Map<number, { group: ThreadGroup; cpuMs: number }>();
  if (pid === null) return { byTid };
  const samples = threadSamples(pid);
  const groups = groupThreads(pid, samples, layout);
  for (const s of samples) {
    byTid.set(s.tid, { group: groups.get(s.tid)!, cpuMs: (s.cpuTicks * 1000) / CLOCK_TICKS_PER_S });
  }
  return { byTid };
}

/**
 * CPU (ms) per thread group between two readings of one process. A thread made between them
 * counts from 0; one that ended between them loses its last interval (Node's threads live as
 * long as the process). Groups come from the later reading, which has seen every thread made.
 */
export function threadGroupCpuMs(before: ThreadCpu, after: ThreadCpu): Map<ThreadGroup, number> {
  const totals = new Map<ThreadGroup, number>(THREAD_GROUPS.map((g) => [g, 0]));
  for (const [tid, { group, cpuMs }] of after.byTid) {
    const earlier = before.byTid.get(tid)?.cpuMs ?? 0;
    totals.set(group, totals.get(group)! + Math.max(0, cpuMs - earlier));
  }
  return totals;
}

/** Per thread: its group, time on a CPU (ns, schedstat) and the times it was put on one. */
export interface ThreadRuns {
  readonly byTid: ReadonlyMap<
    number,
    { readonly group: ThreadGroup; readonly runNs: number; readonly runs: number }
  >;
}

/**
 * Every thread's scheduler counters (`/proc/<pid>/task/<tid>/schedstat`): time on a CPU and how
 * many times it ran, which for a thread that sleeps between bursts counts its wake-ups. Threads
 * are grouped as threadCpuMs groups them when `node` (a Node process); otherwise the process's
 * own thread is 'main' and the rest 'other' (etcd's Go threads have no such order).
 */
export function threadRuns(pid: number | null, node = true): ThreadRuns {
  const byTid = new Map<number, { group: ThreadGroup; runNs: number; runs: number }>();
  if (pid === null) return { byTid };
  const samples = threadSamples(pid);
  const groups = node ? groupThreads(pid, samples) : null;
  for (const s of samples) {
    let fields: number[];
    try {
      fields = readFileSync(`/proc/${pid}/task/${s.tid}/schedstat`, 'utf8')
        .trim()
        .split(' ')
        .map(Number);
    } catch {
      continue; // the thread ended between the listing and this read
    }
    const group = groups?.get(s.tid) ?? (s.tid === pid ? 'main' : 'other');
    byTid.set(s.tid, { group, runNs: fields[0]!, runs: fields[2]! });
  }
  return { byTid };
}
