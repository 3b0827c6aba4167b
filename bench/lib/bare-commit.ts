import type { Store } from '../../src/store/store.js';
import { timeSequential, type LatencySummary } from './stats.js';

/**
 * The floor of one durable write on the store's own connection, for the commit target
 * of issue 12: a single-row INSERT and its COMMIT into a table of its own, in the same
 * run. PostgreSQL: BEGIN, INSERT, COMMIT on one pooled connection (and the INSERT in
 * autocommit, one round trip, beside it); SQLite: one INSERT in a transaction on the
 * store's database (WAL, synchronous as the store sets it: NORMAL), then the store's flush
 * of the WAL (one fsync, src/store/sqlite/wal-flush.ts), without which it is not durable.
 */
export async function bareCommit(store: Store, n: number): Promise<{ insert_commit_us: LatencySummary; autocommit_insert_us?: LatencySummary }> {
  // the stores' plumbing (src/store/{postgres,sqlite}/db.ts): the pg pool, the better-sqlite3 handle
  const plumbing = (store as unknown as { db?: { pool?: { connect: () => Promise<any> }; raw?: any; flush?: () => Promise<void> } }).db;
  const s = { pool: plumbing?.pool, db: plumbing?.raw, flush: plumbing?.flush?.bind(plumbing) };
  if (s.pool) {
    const c = await s.pool.connect();
    try {
      await c.query('CREATE TABLE IF NOT EXISTS bench_bare_commit (id bigint PRIMARY KEY, v text NOT NULL)');
      let k = 0;
      const tx = await timeSequential(n, async () => {
        await c.query('BEGIN');
        await c.query('INSERT INTO bench_bare_commit (id, v) VALUES ($1, $2)', [++k, 'x'.repeat(200)]);
        await c.query('COMMIT');
      });
      const auto = await timeSequential(n, async () => {
        await c.query('INSERT INTO bench_bare_commit (id, v) VALUES ($1, $2)', [++k, 'x'.repeat(200)]);
      });
      return { insert_commit_us: tx.samples.summary(), autocommit_insert_us: auto.samples.summary() };
    } finally {
      c.release();
    }
  }
  if (s.db) {
    s.db.exec('CREATE TABLE IF NOT EXISTS bench_bare_commit (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
    const ins = s.db.prepare('INSERT INTO bench_bare_commit (id, v) VALUES (?, ?)');
    const one = s.db.transaction((k: number) => ins.run(k, 'x'.repeat(200)));
    let k = 0;
    const tx = await timeSequential(n, async () => {
      one(++k);
      await s.flush?.();
    });
    return { insert_commit_us: tx.samples.summary() };
  }
  throw new Error('bareCommit: unknown store');
}
