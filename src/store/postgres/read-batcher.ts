// Concurrent reads of rows by key, coalesced into one statement per batch (the read side of group commit).
// Part of the PostgreSQL store; postgres-store.ts uses it for the task + agent read of every request.

/**
 * Reads rows by key for many callers at once with few round trips: a caller's key joins
 * the batch that has not been sent yet, and a batch is sent at once while fewer than
 * `maxInFlight` are out, else as soon as one returns. Under load (32 requests in flight,
 * each authenticating by one read) that is one statement for many requests instead of
 * one each: every round trip costs this process a write and a read system call and the
 * server a statement.
 *
 * A key never joins a batch already sent: each caller's read starts after the caller
 * asked, so it sees every commit acknowledged before that (a revocation answered before
 * a request arrives is seen by that request, as with a read of its own).
 */
export class ReadBatcher<K, R> {
  private next: Map<K, Array<{ resolve: (row: R | undefined) => void; reject: (err: unknown) => void }>> | null = null;
  private inFlight = 0;

  /**
   * @param fetch reads the rows of `keys` (distinct) in one statement; a key with no row is left out
   * @param maxInFlight batches out at once (at least 1)
   */
  constructor(
    private readonly fetch: (keys: K[]) => Promise<Map<K, R>>,
    private readonly maxInFlight = 2,
  ) {}

  /** The row of `key` (undefined when there is none), read by a statement sent after this call. */
  read(key: K): Promise<R | undefined> {
    return new Promise((resolve, reject) => {
      if (!this.next) this.next = new Map();
      const waiters = this.next.get(key);
      if (waiters) waiters.push({ resolve, reject });
      else this.next.set(key, [{ resolve, reject }]);
      if (this.inFlight < Math.max(1, this.maxInFlight)) this.send();
    });
  }

  private send(): void {
    const batch = this.next;
    if (!batch) return;
    this.next = null;
    this.inFlight++;
    let fetched: Promise<Map<K, R>>;
    try {
      fetched = this.fetch([...batch.keys()]);
    } catch (err) {
      fetched = Promise.reject(err);
    }
    fetched.then(
      (rows) => {
        this.inFlight--;
        for (const [key, waiters] of batch) for (const w of waiters) w.resolve(rows.get(key));
        this.send();
      },
      (err: unknown) => {
        this.inFlight--;
        for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
        this.send();
      },
    );
  }
}
