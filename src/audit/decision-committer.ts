import type { Clock } from '../core/clock.js';
import type { DecisionCommitResult, DecisionWrite, Store } from '../store/store.js';

interface Pending {
  item: DecisionWrite;
  resolve: (r: DecisionCommitResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit for decisions. Decisions that arrive while the previous commit is
 * in flight (or in the same turn of the event loop) are written together in one
 * transaction, so durability costs one fsync (SQLite) or one round trip
 * (PostgreSQL) per batch, not per decision. No caller is answered before the
 * transaction holding its record has committed; if it fails, every caller in the
 * batch gets the error (and so fails closed).
 */
export class DecisionCommitter {
  private queue: Pending[] = [];
  private flushing = false;
  private scheduled = false;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly maxBatch = 256,
  ) {}

  submit(item: DecisionWrite): Promise<DecisionCommitResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
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
      const results = await this.store.commitDecisions(
        batch.map((p) => p.item),
        this.clock.now(),
      );
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.flushing = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}
