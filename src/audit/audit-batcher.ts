import type { AuditInput } from '../core/types.js';
import type { Store } from '../store/store.js';

/**
 * Group commit for audit entries that are not decisions (security events such as a
 * refused credential): entries arriving together share one transaction, so a burst
 * of bad requests costs one commit, not one each. Callers are answered once theirs
 * has committed.
 */
export class AuditBatcher {
  private queue: { entry: AuditInput; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private flushing = false;
  private scheduled = false;

  constructor(
    private readonly store: Store,
    private readonly maxBatch = 256,
  ) {}

  append(entry: AuditInput): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ entry, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.flushing || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.queue.length === 0) return;
    this.flushing = true;
    const batch = this.queue.splice(0, this.maxBatch);
    try {
      await this.store.appendAudit(batch.map((b) => b.entry));
      for (const b of batch) b.resolve();
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.flushing = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}
