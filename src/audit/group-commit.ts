/**
 * Group commit. Items that arrive while the previous commit is in flight (or in the
 * same turn of the event loop) are written together by one call of `commit`, so
 * durability costs one fsync (SQLite) or one round trip (PostgreSQL) per batch, not
 * per item. No caller is answered before the transaction holding its item has
 * committed; if it fails, every caller in the batch gets the error (and so fails closed).
 */
export class GroupCommit<I, R> {
  private queue: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private flushing = false;
  private scheduled = false;
  private idle: (() => void)[] = [];

  /** @param commit writes a batch in one transaction; answers one result per item, in order */
  constructor(
    private readonly commit: (items: I[]) => Promise<R[]>,
    private readonly maxBatch = 256,
  ) {}

  submit(item: I): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Resolves once nothing is queued or being committed (a graceful shutdown waits for it before closing the store). */
  drain(): Promise<void> {
    if (!this.flushing && !this.scheduled && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
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
      const results = await this.commit(batch.map((p) => p.item));
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.flushing = false;
      if (this.queue.length > 0) this.schedule();
      else for (const done of this.idle.splice(0)) done();
    }
  }
}
