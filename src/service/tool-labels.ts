import type { Clock } from '../core/clock.js';
import type { ToolLabelsRecord } from '../core/types.js';
import type { Store } from '../store/store.js';
import { matchPattern } from '../core/scope.js';

/**
 * Operator-set tool labels (`sensitive`, `writes`, `external`, ...), kept in the
 * store so that no caller of /v1/authorize can choose the labels its own call is
 * judged by, and upstream hints (MCP `readOnlyHint`) never count. A tool's labels
 * are the union over every pattern it matches. Re-read at most once a second, so a
 * change made through one instance reaches all; a failed read fails the request.
 */
export class ToolLabelRegistry {
  private entries: ToolLabelsRecord[] = [];
  private loadedAt = -Infinity;
  /** the re-read in flight: the requests that find the entries stale meanwhile wait for it, not send their own */
  private loading: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly maxAgeMs = 1000,
  ) {}

  async labelsFor(tool: string): Promise<string[]> {
    if (this.clock.now() - this.loadedAt >= this.maxAgeMs) await this.reload();
    if (this.entries.length === 0) return [];
    const out = new Set<string>();
    for (const e of this.entries) if (matchPattern(e.pattern, tool)) for (const l of e.labels) out.add(l);
    return [...out].sort();
  }

  invalidate(): void {
    this.loadedAt = -Infinity;
    // a read already in flight may predate the change: the next request reads again
    this.loading = null;
  }

  /**
   * One read for every request that finds the entries stale at once (at 32 in flight, one
   * query a second instead of one per request in the window until the first answers).
   * A failed read fails each request waiting on it, and the next request reads again.
   */
  private reload(): Promise<void> {
    if (!this.loading) {
      const at = this.clock.now();
      const p: Promise<void> = this.store.listToolLabels().then(
        (entries) => {
          if (this.loading === p) {
            this.entries = entries;
            this.loadedAt = at;
          }
        },
      ).finally(() => {
        if (this.loading === p) this.loading = null;
      });
      this.loading = p;
    }
    return this.loading;
  }
}
