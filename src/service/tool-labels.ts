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

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly maxAgeMs = 1000,
  ) {}

  async labelsFor(tool: string): Promise<string[]> {
    const now = this.clock.now();
    if (now - this.loadedAt >= this.maxAgeMs) {
      this.entries = await this.store.listToolLabels();
      this.loadedAt = now;
    }
    if (this.entries.length === 0) return [];
    const out = new Set<string>();
    for (const e of this.entries) if (matchPattern(e.pattern, tool)) for (const l of e.labels) out.add(l);
    return [...out].sort();
  }

  invalidate(): void {
    this.loadedAt = -Infinity;
  }
}
