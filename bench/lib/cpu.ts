import { readdirSync, readFileSync } from 'node:fs';

/** CPU time (user + system, microseconds) a process has used, from /proc; null where unavailable. */
export function processCpuUs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
    return ((utime + stime) * 1e6) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

/** CPU used by `pids` (and this process) while `fn` runs. */
export async function withCpu<T>(pids: number[], fn: () => Promise<T>): Promise<{ value: T; serverCpuUs: number | null; selfCpuUs: number }> {
  const before = pids.map(processCpuUs);
  const self0 = process.cpuUsage();
  const value = await fn();
  const self = process.cpuUsage(self0);
  const after = pids.map(processCpuUs);
  let server: number | null = 0;
  for (let i = 0; i < pids.length; i++) {
    if (before[i] === null || after[i] === null || server === null) server = null;
    else server += after[i]! - before[i]!;
  }
  return { value, serverCpuUs: server, selfCpuUs: self.user + self.system };
}

/**
 * CPU time (nanoseconds) every thread of `pid` has run so far, from
 * /proc/PID/task/TID/schedstat (its first field: time on a CPU, in ns; `stat`'s ticks are
 * 10 ms, too coarse for a slice of calls). A thread that ended takes its time with it;
 * null where unavailable.
 */
export function threadsCpuNs(pid: number): number | null {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ', 1)[0]);
      } catch {
        // the thread ended between the listing and the read
      }
    }
    return ns;
  } catch {
    return null;
  }
}
