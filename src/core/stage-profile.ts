/**
 * Per-stage CPU accounting of a decision, for the benchmarks (issue 12: where do a
 * decision's microseconds go). Off unless `enableStageProfile(true)`: then each mark is
 * one branch. On, each mark reads the process's CPU time (`process.cpuUsage`, user +
 * system) and charges the time since the previous mark to the stage it ends. That is
 * only meaningful with one request in flight (CPU time is per process, and requests
 * interleave across awaits), so the benchmarks turn it on for a concurrency-1 phase.
 */

export const STAGES = ['http_in', 'authenticate', 'parse', 'scope', 'facts', 'cedar', 'sign', 'commit', 'respond'] as const;
export type Stage = (typeof STAGES)[number];

let enabled = false;
let last: number | null = null;
const totals = new Map<Stage, { cpuUs: number; count: number }>();

function cpuNowUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Turns accounting on (resetting it) or off. */
export function enableStageProfile(on: boolean): void {
  enabled = on;
  last = on ? cpuNowUs() : null;
  totals.clear();
}

/** Starts the clock without charging anyone (a decision begins). */
export function stageStart(): void {
  if (enabled) last = cpuNowUs();
}

/**
 * Charges the CPU since the previous mark to `stage`. `part`: one more part of a stage
 * that is ended again later in the same decision (charged, not counted twice).
 */
export function stageEnd(stage: Stage, part = false): void {
  if (!enabled || last === null) return;
  const now = cpuNowUs();
  const t = totals.get(stage) ?? { cpuUs: 0, count: 0 };
  t.cpuUs += now - last;
  if (!part) t.count += 1;
  totals.set(stage, t);
  last = now;
}

/** The accounting so far, per stage in decision order, and resets it (accounting stays on). */
export function takeStageProfile(): Record<string, { mean_cpu_us: number; count: number }> {
  const out: Record<string, { mean_cpu_us: number; count: number }> = {};
  for (const s of STAGES) {
    const t = totals.get(s);
    if (t) out[s] = { mean_cpu_us: Math.round((t.cpuUs / t.count) * 10) / 10, count: t.count };
  }
  totals.clear();
  return out;
}
