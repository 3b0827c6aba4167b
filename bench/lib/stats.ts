/** Latency samples (microseconds) and their summary. */

export interface LatencySummary {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** A growable buffer of samples in microseconds. */
export class Samples {
  private buf: Float64Array;
  private len = 0;

  constructor(capacity = 1024) {
    this.buf = new Float64Array(Math.max(16, capacity));
  }

  push(us: number): void {
    if (this.len === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.len++] = us;
  }

  get count(): number {
    return this.len;
  }

  summary(): LatencySummary {
    return summarize(this.buf.subarray(0, this.len));
  }
}

/** Nearest-rank percentile of sorted values. */
function rank(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(values: Float64Array | number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n: sorted.length,
    mean: round(sorted.length ? sum / sorted.length : 0),
    p50: round(rank(sorted, 50)),
    p90: round(rank(sorted, 90)),
    p99: round(rank(sorted, 99)),
    p999: round(rank(sorted, 99.9)),
    max: round(sorted.length ? sorted[sorted.length - 1]! : 0),
  };
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function ratio(a: number, b: number): number {
  return b > 0 ? round(a / b, 3) : 0;
}

/** Microseconds since an arbitrary origin (performance.now has sub-µs resolution). */
export function nowUs(): number {
  return performance.now() * 1000;
}

/** Runs `fn` `n` times, timing each call; for synchronous functions. */
export function timeSync(n: number, fn: (i: number) => void): Samples {
  const s = new Samples(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    fn(i);
    s.push((performance.now() - t0) * 1000);
  }
  return s;
}

/** Runs `fn` `n` times one after another, timing each call. */
export async function timeSequential(n: number, fn: (i: number) => Promise<unknown>): Promise<{ samples: Samples; elapsedMs: number }> {
  const s = new Samples(n);
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    s.push((performance.now() - t0) * 1000);
  }
  return { samples: s, elapsedMs: performance.now() - start };
}

/** Keeps `concurrency` calls in flight until `n` have completed; times each. */
export async function timeConcurrent(
  n: number,
  concurrency: number,
  fn: (i: number, worker: number) => Promise<unknown>,
): Promise<{ samples: Samples; elapsedMs: number }> {
  const s = new Samples(n);
  let next = 0;
  const start = performance.now();
  const worker = async (w: number) => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      await fn(i, w);
      s.push((performance.now() - t0) * 1000);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  return { samples: s, elapsedMs: performance.now() - start };
}

/**
 * Runs each of `fns` `n` times, one call at a time, in `rounds` interleaved slices (a
 * slice of the first, a slice of the second, ...), timing each call: a change of load on
 * a shared machine falls on all of them alike, so their ratio holds.
 */
export async function timeInterleaved(n: number, fns: ((i: number) => Promise<unknown>)[], rounds = 10): Promise<Samples[]> {
  const out = fns.map(() => new Samples(n));
  const per = Math.max(1, Math.ceil(n / rounds));
  for (let done = 0; done < n; done += per) {
    for (let k = 0; k < fns.length; k++) {
      for (let i = done; i < Math.min(n, done + per); i++) {
        const t0 = performance.now();
        await fns[k]!(i);
        out[k]!.push((performance.now() - t0) * 1000);
      }
    }
  }
  return out;
}
