/**
 * Limits how many failed requests (bad credentials, replays, refusals) one client
 * address may make in a window. Failures cost an audit entry each; without a bound an
 * unauthenticated client could grow the audit chain and force commits at will. Once
 * over the limit, the address gets 429 until the window ends, and one audit entry
 * records that it was limited (not one per request).
 */
export class FailureLimiter {
  private readonly windows = new Map<string, { start: number; failures: number; reported: boolean }>();

  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(max > 0) || !(windowMs > 0)) throw new TypeError('max and windowMs must be positive');
  }

  private current(key: string): { start: number; failures: number; reported: boolean } {
    const t = this.now();
    let w = this.windows.get(key);
    if (!w || t - w.start >= this.windowMs) {
      if (this.windows.size > 100_000) this.prune(t);
      w = { start: t, failures: 0, reported: false };
      this.windows.set(key, w);
    }
    return w;
  }

  /** Whether `key` is over its limit now; `report` is true once per window, for the audit entry. */
  check(key: string): { blocked: boolean; report: boolean; failures: number } {
    const w = this.current(key);
    if (w.failures < this.max) return { blocked: false, report: false, failures: w.failures };
    const report = !w.reported;
    w.reported = true;
    return { blocked: true, report, failures: w.failures };
  }

  recordFailure(key: string): void {
    this.current(key).failures += 1;
  }

  private prune(t: number): void {
    for (const [k, w] of this.windows) if (t - w.start >= this.windowMs) this.windows.delete(k);
  }
}
