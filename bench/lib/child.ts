import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { StoreSpec } from './backend.js';
import { NODE_ARGS, script } from './runtime.js';
import type { CommitStats } from './commit-probe.js';

export interface ServerChild {
  url: string;
  port: number;
  pid: number;
  /** the bootstrap admin token, or null for a second instance on existing data */
  adminToken: string | null;
  /** group-commit batches since the previous call */
  commitStats: () => Promise<CommitStats | null>;
  /** starts per-stage CPU accounting in the server (src/core/stage-profile.ts) */
  profileOn: () => void;
  /** the per-stage accounting since `profileOn` (and stops it); null when the child does not answer */
  takeProfile: () => Promise<Record<string, { mean_cpu_us: number; count: number }> | null>;
  stop: () => Promise<void>;
}

const CHILD = script('bench/server-child.ts');

/**
 * Starts `bench/server-child.ts` on `spec` and waits for its ready line.
 * WRIT_BENCH_CHILD_NODE_ARGS adds node flags to the child (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 */
export async function startServerChild(spec: StoreSpec, timeoutMs = 120_000): Promise<ServerChild> {
  const extra = (process.env.WRIT_BENCH_CHILD_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child: ChildProcess = spawn(process.execPath, [...extra, ...NODE_ARGS, CHILD], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, WRIT_BENCH_STORE: JSON.stringify(spec) },
  });
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  let onMessage: (msg: Record<string, unknown>) => void = () => undefined;
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line.startsWith('{')) continue;
      try {
        onMessage(JSON.parse(line));
      } catch {
        /* not our line */
      }
    }
  });
  const ready = await new Promise<{ port: number; pid: number; admin_token: string | null }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server child did not start in time')), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server child exited with ${code} before it was ready`));
    });
    onMessage = (msg) => {
      if (msg.ready) {
        clearTimeout(timer);
        resolve(msg as never);
      }
    };
  });
  const waiting: ((s: CommitStats | null) => void)[] = [];
  const profiles: ((p: Record<string, { mean_cpu_us: number; count: number }> | null) => void)[] = [];
  onMessage = (msg) => {
    if (msg.stats) waiting.shift()?.(msg.stats as CommitStats);
    if (msg.profile) profiles.shift()?.(msg.profile as Record<string, { mean_cpu_us: number; count: number }>);
  };
  return {
    url: `http://127.0.0.1:${ready.port}`,
    port: ready.port,
    pid: child.pid!,
    adminToken: ready.admin_token,
    commitStats: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || !child.stdin!.writable) return resolve(null);
        const done = (s: CommitStats | null) => (clearTimeout(t), resolve(s));
        const t = setTimeout(() => {
          const i = waiting.indexOf(done);
          if (i >= 0) waiting.splice(i, 1);
          resolve(null);
        }, 2000);
        waiting.push(done);
        child.stdin!.write('stats\n');
      }),
    profileOn: () => {
      if (child.exitCode === null && child.stdin!.writable) child.stdin!.write('profile on\n');
    },
    takeProfile: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || !child.stdin!.writable) return resolve(null);
        const done = (p: Record<string, { mean_cpu_us: number; count: number }> | null) => (clearTimeout(t), resolve(p));
        const t = setTimeout(() => {
          const i = profiles.indexOf(done);
          if (i >= 0) profiles.splice(i, 1);
          resolve(null);
        }, 5000);
        profiles.push(done);
        child.stdin!.write('profile\n');
      }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}
