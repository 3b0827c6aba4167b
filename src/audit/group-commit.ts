/**
 * Group commit. Items that arrive while the previous commit is in flight (or in the
 * same turn of the event loop) are written together by one call of `commit`, so
 * durability costs one fsync (SQLite) or one round trip (PostgreSQL) per batch, not
 * per item. No caller is answered before the transaction holding its item has
 * committed; if it fails, every caller in the batch gets the error (and so fails closed).
 *
 * A lazy item (`submit(item, { lazy: true })`) does not start a commit: it waits for the
 * next eager item to ride with, or for `lingerMs` at most. What nobody waits on for an
 * answer (an action's reported outcome) then costs no durable write of its own.
 */
export class GroupCommit<I, R> {
  private queue: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private flushing = false;
  private scheduled = false;
  /** eager items in the queue: only those (or the linger timer) start a commit */
  private eager = 0;
  private linger: NodeJS.Timeout | null = null;
  private idle: (() => void)[] = [];

  /** @param commit writes a batch in one transaction; answers one result per item, in order */
  constructor(
    private readonly commit: (items: I[]) => Promise<R[]>,
    private readonly maxBatch = 256,
    private readonly lingerMs = 50,
  ) {}

  submit(item: I, options: { lazy?: boolean } = {}): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!options.lazy) {
        this.eager += 1;
        this.schedule();
      } else if (!this.linger) {
        this.linger = setTimeout(() => {
          this.linger = null;
          this.eager += 1; // the lingering items are due: commit them as if eager
          this.schedule();
        }, this.lingerMs);
        // not unref'd: a process about to end stays up (lingerMs at most) to write it
      }
    });
  }

  /** Resolves once nothing is queued or being committed (a graceful shutdown waits for it before closing the store). */
  drain(): Promise<void> {
    if (!this.flushing && !this.scheduled && this.queue.length === 0) return Promise.resolve();
    if (this.queue.length > 0 && !this.flushing && !this.scheduled) {
      // only lazy items wait: commit them now
      this.eager += 1;
      this.schedule();
    }
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private schedule(): void {
    if (this.flushing || this.scheduled || this.eager === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.queue.length === 0) {
      this.eager = 0;
      if (!this.flushing) for (const done of this.idle.splice(0)) done();
      return;
    }
    this.flushing = true;
    const batch = this.queue.splice(0, this.maxBatch);
    // what is left is committed next only if something eager (or due) is among it
    this.eager = this.queue.length > 0 && this.eager > 0 ? 1 : 0;
    if (this.queue.length === 0 && this.linger) {
      clearTimeout(this.linger);
      this.linger = null;
    }
    try {
      const results = await this.commit(batch.map((p) => p.item));
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.flushing = false;
      if (this.queue.length > 0 && this.eager > 0) this.schedule();
      else if (this.queue.length === 0) for (const done of this.idle.splice(0)) done();
      else if (this.idle.length > 0) {
        // draining: the lazy rest goes now
        this.eager += 1;
        this.schedule();
      }
    }
  }
}
