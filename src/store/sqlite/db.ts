import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { systemClock, type Clock } from '../../core/clock.js';
import { ConflictError, UnavailableError, WritError } from '../../core/errors.js';
import { WalFlusher, type SyncFile } from './wal-flush.js';

export type Row = Record<string, unknown>;

/** WAL pages after which a commit checkpoints (see the constructor); ~16 MB of WAL. */
export const WAL_AUTOCHECKPOINT_PAGES = 4000;

export interface SqliteDbOptions {
  /** a file path, or `:memory:` */
  path: string;
  clock?: Clock;
  /** busy timeout for cross-process locking */
  busyTimeoutMs?: number;
  /** the fsync of the WAL file (default fs.fdatasync); tests inject faults and gates here */
  syncFile?: SyncFile;
}

/**
 * The plumbing every aggregate file of the SQLite store (agents.ts, tasks.ts, …) works
 * through: the connection, cached prepared statements, and IMMEDIATE write transactions
 * that map driver faults to the error model and resolve once they are durable.
 *
 * Durability: in WAL mode the connection runs `synchronous = NORMAL`, so a COMMIT writes
 * its WAL frames without fsync and releases the write lock at once; `write` then waits for
 * an fsync of the WAL on the libuv threadpool, shared by every commit made meanwhile (a
 * group flush, wal-flush.ts). No write resolves before the fsync that covers it has
 * completed, as with `synchronous = FULL`, but the fsync no longer blocks the event loop
 * or holds the write lock (another process's commits go on meanwhile). A database that
 * is not in WAL mode (`:memory:`, or a file system without shared memory) keeps `FULL`
 * (a file's COMMIT fsyncs before it returns) and needs no flush.
 */
export class SqliteDb {
  readonly raw: Database.Database;
  readonly clock: Clock;
  private readonly stmts = new Map<string, Database.Statement>();
  private runInTx: Database.Transaction<(f: () => unknown) => unknown> | undefined;
  /** null when each COMMIT is durable by itself (see the class) */
  private readonly flusher: WalFlusher | null = null;

  constructor(options: SqliteDbOptions) {
    this.clock = options.clock ?? systemClock;
    if (options.path !== ':memory:') prepareDatabaseFile(options.path);
    this.raw = new Database(options.path);
    this.raw.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    const mode = this.raw.pragma('journal_mode = WAL', { simple: true });
    if (mode === 'wal') {
      this.raw.pragma('synchronous = NORMAL');
      // SQLite checkpoints inside the COMMIT that takes the WAL past this many pages, on this
      // thread, with two fsyncs (WAL, then database). Its default of 1,000 comes every ~6
      // batches of 32 decisions: 4,000 copies the pages every batch rewrites (chain head,
      // budgets, index leaves) once for four times the decisions, and at one request in
      // flight stalls one commit in ~400 instead of ~100, off the p99 (issue 12).
      this.raw.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
      // SQLite's own name of the file (absolute, symbolic links resolved): the WAL is beside it
      const main = (this.raw.pragma('database_list') as { name: string; file: string }[]).find((d) => d.name === 'main');
      if (!main?.file) throw new UnavailableError('the store has no database file');
      this.flusher = new WalFlusher(`${main.file}-wal`, options.syncFile);
    } else {
      this.raw.pragma('synchronous = FULL');
    }
    this.raw.pragma('foreign_keys = ON');
  }

  /** A prepared statement, prepared once per SQL text. */
  stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.raw.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /**
   * Runs `fn` in an IMMEDIATE transaction and resolves once it is durable (its WAL frames
   * fsync'd); maps driver faults to typed errors. A rejection after the COMMIT (the flush
   * failed) leaves the transaction committed: the caller answers 503 and never retries it.
   * Refused before anything runs once durability is known to be lost.
   */
  async write<T>(fn: () => T): Promise<T> {
    this.flusher?.check();
    const result = this.transact(fn);
    if (this.flusher) await this.flusher.flush();
    return result;
  }

  /**
   * Runs `fn` in an IMMEDIATE transaction, or in a savepoint when called inside one, with
   * no flush: for a part of a write that may fail alone (the outer `write` flushes).
   */
  transact<T>(fn: () => T): T {
    // one transaction wrapper, built once: better-sqlite3's wrapper costs ~8 us to make
    this.runInTx ??= this.raw.transaction((f: () => unknown) => f());
    return this.guard(() => this.runInTx!.immediate(fn) as T);
  }

  /** Resolves once every commit made so far is durable (for writes made outside `write`). */
  async flush(): Promise<void> {
    if (this.flusher) await this.flusher.flush();
  }

  /** Throws when the store can no longer be written durably (readiness: see WalFlusher). */
  checkDurable(): void {
    this.flusher?.check();
  }

  /** Waits for the flushes in flight, then closes the connection. */
  async close(): Promise<void> {
    await this.flusher?.close();
    if (this.raw.open) this.raw.close();
  }

  /** Runs `fn`, mapping driver faults to typed errors. */
  guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw mapSqliteError(err);
    }
  }
}

function mapSqliteError(err: unknown): Error {
  if (err instanceof WritError || err instanceof TypeError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code.startsWith('SQLITE_CONSTRAINT')) return new ConflictError('the record conflicts with one that exists');
  return new UnavailableError('the store failed', err);
}

/** Whether a break-glass row is active at `now` (decisions relying on it check this in their transaction). */
export function breakGlassActive(r: { status: string; ends_at: number | null } | undefined, now: number): boolean {
  return !!r && r.status === 'active' && r.ends_at !== null && Number(r.ends_at) > now;
}

/**
 * The store holds signing keys (plain JWK unless sealed) and the audit log: only its owner
 * may read it. The directory is created 0700 (an existing one is left as the operator made
 * it); the database file is created 0600 before SQLite opens it, because SQLite gives the
 * `-wal` and `-shm` files the mode of the database file (os_unix.c, findCreateFileMode).
 * Files that already exist are tightened to 0600 too: a store written by an older version
 * was world-readable under the usual umask 022.
 */
function prepareDatabaseFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      chmodSync(f, 0o600);
    } catch (err) {
      // -wal/-shm exist only while a connection is open: a missing one is fine
      const code = (err as NodeJS.ErrnoException).code;
      // a file of another owner cannot be tightened here; it is its owner's to fix
      if (code !== 'ENOENT' && code !== 'EPERM') throw err;
    }
  }
}
