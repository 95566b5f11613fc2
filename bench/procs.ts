/**
 * CPU time of server processes, for the benchmarks' "server CPU µs/op". The processes themselves
 * are the launcher's (src/cli/local-process.ts): spawned, stopped and killed by PID there.
 */
import { readFileSync } from 'node:fs';

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
  try {
    const stat = readFileSync(path, 'utf8');
    // Fields after the command name (which may hold spaces): state is [0], utime [11], stime [12].
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
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
