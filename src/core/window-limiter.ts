/**
 * A fixed-window counter per key: at most `max` counted events per key per window of
 * `windowMs`. Used for failed requests (per client address, per credential) and for
 * per-task request rates. In memory, per instance: a limit protects this process; with
 * several instances each enforces it on its own share of the traffic.
 */
export class WindowLimiter {
  private readonly windows = new Map<string, { start: number; count: number; reported: boolean }>();
  /** the last time some key reached its limit: lets a caller skip work when none can be over */
  private lastFullAt = -Infinity;

  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
    /** the most keys kept; past it, finished windows are dropped first, then the oldest */
    private readonly maxKeys = 100_000,
  ) {
    if (!(max > 0) || !(windowMs > 0)) throw new TypeError('max and windowMs must be positive');
  }

  private current(key: string): { start: number; count: number; reported: boolean } {
    const t = this.now();
    let w = this.windows.get(key);
    if (!w || t - w.start >= this.windowMs) {
      if (this.windows.size >= this.maxKeys) this.prune(t);
      w = { start: t, count: 0, reported: false };
      this.windows.set(key, w);
    }
    return w;
  }

  /**
   * Whether `key` is over its limit now; `report` is true once per window (for one audit
   * entry; `report: false` only peeks); `retryAfterMs` is the time until its window ends.
   */
  check(key: string, report = true): { blocked: boolean; report: boolean; count: number; retryAfterMs: number } {
    const w = this.windows.get(key);
    const t = this.now();
    if (!w || t - w.start >= this.windowMs || w.count < this.max) return { blocked: false, report: false, count: w && t - w.start < this.windowMs ? w.count : 0, retryAfterMs: 0 };
    const first = report && !w.reported;
    if (report) w.reported = true;
    return { blocked: true, report: first, count: w.count, retryAfterMs: w.start + this.windowMs - t };
  }

  /** Counts one event against `key`. */
  record(key: string): void {
    const w = this.current(key);
    w.count += 1;
    if (w.count >= this.max) this.lastFullAt = this.now();
  }

  /** False when no key can be over its limit now (none reached it within the last window). */
  mayBlock(): boolean {
    return this.now() - this.lastFullAt < this.windowMs;
  }

  private prune(t: number): void {
    for (const [k, w] of this.windows) if (t - w.start >= this.windowMs) this.windows.delete(k);
    // still full: every key is in a live window; drop the oldest (Map keeps insertion order)
    for (const k of this.windows.keys()) {
      if (this.windows.size < this.maxKeys) break;
      this.windows.delete(k);
    }
  }
}
