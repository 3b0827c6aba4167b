// The group flush of the SQLite store: an fsync of the `-wal` file after each write
// transaction, off the write lock and off the main thread. Part of the SQLite store (db.ts).
import { close, fdatasync, fstatSync, open, type Stats } from 'node:fs';
import { UnavailableError } from '../../core/errors.js';

/**
 * Makes one file's written data durable, node-callback style: `fs.fdatasync` on the
 * libuv threadpool. fdatasync suffices (POSIX: data integrity completion, which includes
 * the file size a later read needs); the inode's times are not needed to read the WAL.
 * Tests put a fault or a gate here.
 */
export type SyncFile = (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;

interface Waiters {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function waiters(): Waiters {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((ok, no) => ((resolve = ok), (reject = no)));
  // a writer may have gone (its own transaction threw after flushing began): never unhandled
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/**
 * The connection runs `synchronous = NORMAL` in WAL mode: a COMMIT appends its frames to
 * the `-wal` file (write(2), into the page cache) and returns without fsync. This makes
 * them durable afterwards: `flush()` is called right after a COMMIT and resolves once an
 * fsync of the WAL that *started after that call* has completed.
 *
 * Why one fsync covers every commit before it: frames are appended in commit order, and
 * an fsync makes every byte written to the file before it began durable, whoever wrote
 * it (another connection or process too: the page cache is the inode's). Frames that a
 * checkpoint already copied into the database file were made durable by the checkpoint
 * itself (SQLite syncs the WAL before a checkpoint and the database after it, at
 * `synchronous = NORMAL` too), and the header SQLite writes when it restarts the WAL is
 * synced by SQLite before any frame follows it (wal.c, sqlite3WalFrames, syncHeader), with
 * the directory the first time the file is synced (os_unix.c, UNIXFILE_DIRSYNC).
 *
 * So: one fsync in flight at a time; writers that commit while it runs wait for the next
 * one, which then covers all of them (a group flush, as PostgreSQL's WAL writer does).
 *
 * The descriptor is ours, opened read-only on the first flush (SQLite creates the file
 * when it opens the WAL, before any commit). It stays the same inode as SQLite's own
 * descriptor for as long as the connection is open: SQLite opens its WAL once per
 * connection, truncating or restarting it keeps the inode, and it deletes the file only
 * when the last connection closes, which cannot happen while this one holds its shared
 * lock on the database (pager.c, pager_unlock keeps it in WAL mode). A WAL file removed
 * or replaced from outside (its inode unlinked) would make every later fsync useless, so
 * each flush also checks the link count (fstat) and fails closed. SQLite takes no POSIX lock on the `-wal` file (WAL locks are on `-shm`),
 * so closing our descriptor cannot drop one of SQLite's locks.
 *
 * A failed fsync is final: Linux may mark the pages that failed clean (they are lost from
 * the cache and a later fsync reports success), and a lost frame breaks the WAL's checksum
 * chain, so every later commit would be dropped at recovery too. Every waiting writer is
 * rejected (503 store_unavailable), and so is every later write, before it runs; the
 * store's ping fails, so readiness reports it until the process restarts.
 */
export class WalFlusher {
  private fd: number | null = null;
  /** writers whose commit is covered by the fsync in flight */
  private running: Waiters | null = null;
  /** writers that committed after the fsync in flight began: the next fsync's */
  private next: Waiters | null = null;
  private failure: UnavailableError | null = null;
  private closed = false;
  private idle: (() => void)[] = [];

  constructor(
    private readonly walPath: string,
    private readonly syncFile: SyncFile = fdatasync,
  ) {}

  /** Throws the fault that broke durability, if one did (checked before a write runs). */
  check(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new UnavailableError('the store is closed');
  }

  /** Resolves once an fsync of the WAL that began after this call has completed. */
  flush(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new UnavailableError('the store is closed'));
    const w = (this.next ??= waiters());
    if (!this.running) this.start();
    return w.promise;
  }

  /** Waits for the flushes in flight and requested, then closes the descriptor. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.running || this.next) await new Promise<void>((ok) => this.idle.push(ok));
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      await new Promise<void>((ok) => close(fd, () => ok()));
    }
  }

  private start(): void {
    const batch = this.next!;
    this.next = null;
    this.running = batch;
    this.syncOnce((err, final) => {
      this.running = null;
      if (err && final) {
        // an fsync that failed, or a file that is no longer the WAL: durability is lost
        this.failure ??= new UnavailableError('the store could not make its writes durable', err);
        batch.reject(this.failure);
        this.next?.reject(this.failure);
        this.next = null;
      } else if (err) {
        // no fsync was tried (the descriptor could not be opened): nothing is lost from the
        // cache, so these writers fail and the next flush tries again
        batch.reject(new UnavailableError('the store could not make its writes durable', err));
        if (this.next) this.start();
      } else {
        // the next group's fsync starts before this group's writers go on
        if (this.next) this.start();
        batch.resolve();
      }
      if (!this.running && !this.next) for (const done of this.idle.splice(0)) done();
    });
  }

  /**
   * fsync on the threadpool, after the link-count check; opens the descriptor first when
   * needed. `final`: the fault may have lost written data (see the class).
   */
  private syncOnce(done: (err: Error | null, final: boolean) => void): void {
    if (this.fd === null) {
      open(this.walPath, 'r', (err, fd) => {
        if (err) return done(err, false);
        this.fd = fd;
        this.syncOnce(done);
      });
      return;
    }
    // the link count is read on the main thread: fstat of an open descriptor does no I/O
    // (a few microseconds), where a second threadpool job would be a second thread to wake
    let st: Stats;
    try {
      st = fstatSync(this.fd);
    } catch (err) {
      return done(err as Error, true);
    }
    if (st.nlink === 0) return done(new Error(`${this.walPath} was removed while the store had it open`), true);
    this.syncFile(this.fd, (err) => done(err, true));
  }
}
