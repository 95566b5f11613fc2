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
    if (pid === null) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces): state is [0], utime [11], stime [12].
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone, or not Linux: counts nothing
    }
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}
