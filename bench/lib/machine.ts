import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';

/** The filesystem type a path lives on (Linux /proc/mounts; null elsewhere). */
export function filesystemOf(path: string): { mount: string; type: string } | null {
  try {
    const abs = resolve(path);
    let best: { mount: string; type: string } | null = null;
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [, mount, type] = line.split(' ');
      if (!mount || !type) continue;
      const m = mount.replace(/\\040/g, ' ');
      if ((abs === m || abs.startsWith(m.endsWith('/') ? m : `${m}/`)) && (!best || m.length > best.mount.length)) best = { mount: m, type };
    }
    return best;
  } catch {
    return null;
  }
}

export function machine(dataDir: string) {
  const cpus = os.cpus();
  return {
    cpu_model: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    available_parallelism: os.availableParallelism?.() ?? cpus.length,
    total_memory_mb: Math.round(os.totalmem() / 2 ** 20),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    sqlite_data_dir: dataDir,
    sqlite_data_fs: filesystemOf(dataDir),
    /** 1/5/15-minute load averages when the run started: other work on the machine skews every figure */
    load_average_at_start: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/**
 * A fixed CPU workload (200 SHA-256 of 1 KiB), median of 15 runs, in microseconds:
 * comparing it across runs tells a slower or busier machine from a slower Writ.
 */
export function calibrationUs(): number {
  const data = Buffer.alloc(1024, 7);
  const runs: number[] = [];
  for (let r = 0; r < 15; r++) {
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) createHash('sha256').update(data).digest();
    runs.push((performance.now() - t0) * 1000);
  }
  runs.sort((a, b) => a - b);
  return Math.round(runs[7]! * 10) / 10;
}
