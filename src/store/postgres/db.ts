import { userInfo } from 'node:os';
import pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
import { systemClock, type Clock } from '../../core/clock.js';
import { ConflictError, UnavailableError, WritError } from '../../core/errors.js';
import type { AuditEntry } from '../../core/types.js';
import { quoteIdent } from './schema.js';

export type Row = Record<string, unknown>;
export type Q = Pick<PoolClient, 'query'>;

export interface PgDbOptions {
  connectionString: string;
  /**
   * The user name to connect as when the connection string names none (setting `PGUSER`,
   * src/config/settings.ts); without it, the operating-system user, as libpq does.
   */
  user?: string;
  clock?: Clock;
  /** a schema of its own (created by `migrate` when missing); every connection's search_path */
  schema?: string;
  /** connections in the pool (default 10) */
  poolSize?: number;
  /** called with faults that no caller sees: idle connections dropped, the listener lost */
  onBackgroundError?: (err: Error) => void;
}

/**
 * A transaction's commit does not wait for its WAL flush (`synchronous_commit = off`,
 * for this transaction only): its row locks are released as soon as its commit record
 * is written, not after the flush.
 */
const BEGIN_ASYNC = 'BEGIN; SET LOCAL synchronous_commit = off';
/**
 * Sent right after such a COMMIT, in the same message: a one-row write in a transaction
 * of its own that commits with the session's `synchronous_commit` (on), so it returns
 * only once the WAL is flushed up to its own commit record, which lies after the
 * COMMIT before it: WAL is flushed in order, so that commit is durable too (and on a
 * synchronous standby, with `synchronous_standby_names`). The row is this backend's
 * own (keyed by its pid), so no two connections ever wait on each other here.
 *
 * Meanwhile, other connections can already read what the transaction wrote. Whatever
 * they then commit lies later in the WAL, so it is never durable without it: a decision
 * that read a spent budget, a used approval or the chain head is answered only once what
 * it read is durable too. Only a plain read can show a change whose writer has not been
 * answered yet (and which a crash in that window would undo, with everything after it).
 */
const FLUSH_BARRIER = 'INSERT INTO commit_barrier (pid, n) VALUES (pg_backend_pid(), 1) ON CONFLICT (pid) DO UPDATE SET n = commit_barrier.n + 1';

/** A fault at or after COMMIT: the transaction may have taken effect, so it is not retried. */
class CommitUnconfirmed extends Error {
  constructor(override readonly cause: unknown) {
    super('the commit was not confirmed');
  }
}

/**
 * Runs a transaction again after a deadlock or serialization failure (backoff, at most
 * MAX_RETRIES times), and never after a fault at or past its COMMIT (CommitUnconfirmed):
 * the transaction may have taken effect, so it is answered, not run a second time.
 * Maps the final fault to the error model.
 */
async function retryTransaction<T>(once: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await once();
    } catch (err) {
      if (err instanceof CommitUnconfirmed) throw mapPgError(err.cause);
      if (attempt < MAX_RETRIES && RETRYABLE.has(sqlState(err))) {
        await sleep(backoff(attempt));
        continue;
      }
      throw mapPgError(err);
    }
  }
}

/** transaction attempts after a serialization failure or a deadlock */
const MAX_RETRIES = 5;
const RETRYABLE = new Set(['40001', '40P01']);
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** Advisory lock class for break-glass changes of one agent */
export const BREAK_GLASS_LOCK_CLASS = 0x57424721; // "WBG!"
/** Advisory lock class for counting open approvals per agent (the second key is schema:agent). */
export const APPROVAL_LOCK_CLASS = 0x57415052; // "WAPR"
/** Advisory lock classes of the steps that must happen once (start-up) or one at a time */
export const OPERATORS_LOCK_CLASS = 0x574f5052; // "WOPR"
export const POLICY_LOCK_CLASS = 0x57504f4c; // "WPOL"
export const SIGNING_KEY_LOCK_CLASS = 0x574b4559; // "WKEY"
export const CHECKPOINT_KEY_LOCK_CLASS = 0x57434b50; // "WCKP"
export const DECISION_COLUMNS =
  'id, task_id, agent_id, tool, audience, resource, destination, args_digest, decision, reasons, policies, policy_version, token_jti, token_expires_at, created_at, outcome';
export const DECISION_TYPES = ['text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'bigint', 'bigint', 'text'];

/**
 * The plumbing every aggregate file of the PostgreSQL store (agents.ts, tasks.ts, …) works
 * through: the pool, transactions retried on serialization failures and deadlocks,
 * autocommitted statements, and the advisory locks of one-at-a-time steps.
 */
export class PgDb {
  readonly pool: pg.Pool;
  readonly clock: Clock;
  readonly schema: string | undefined;
  closed = false;
  private readonly options: PgDbOptions;

  constructor(options: PgDbOptions) {
    if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
      throw new TypeError('schema must be a plain identifier (letters, digits, underscore)');
    }
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.schema = options.schema;
    this.pool = new pg.Pool(this.connectionConfig('writ', options.poolSize ?? 10));
    // An idle connection that dies (server restart, network) must not crash the process:
    // the pool drops it and opens a new one on demand.
    this.pool.on('error', (err) => this.background(err));
  }

  connectionConfig(app: string, max?: number): pg.PoolConfig {
    return {
      connectionString: withDefaultUser(this.options.connectionString, this.options.user),
      max,
      connectionTimeoutMillis: 2000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: this.schema ? `${app}:${this.schema}`.slice(0, 63) : app,
      options: this.schema ? `-c search_path=${quoteIdent(this.schema)}` : undefined,
    };
  }

  /** Reports a fault no caller sees (see `onBackgroundError`). */
  background(err: Error): void {
    try {
      this.options.onBackgroundError?.(err);
    } catch {
      // a faulty hook must not take the process down
    }
  }

  /**
   * Runs `fn` in one transaction on one pooled connection. Retries the whole
   * transaction on serialization failures and deadlocks; always rolls back and
   * releases on error, discarding a connection that may be broken.
   *
   * The transaction commits without waiting for its WAL flush, so the row locks it
   * holds (the audit chain head, a task's budget) are released at once rather than
   * after the flush; the flush is then awaited by the barrier that follows in the same
   * message (see `FLUSH_BARRIER`). The promise resolves only once the commit is durable,
   * as before, but two instances' commits no longer wait on each other's flush.
   * `syncCommit` commits the ordinary way (migrations: the barrier's table may not exist yet).
   */
  async tx<T>(fn: (c: PoolClient) => Promise<T>, options: { syncCommit?: boolean } = {}): Promise<T> {
    return retryTransaction(() => this.txOnce(fn, options));
  }

  async txOnce<T>(fn: (c: PoolClient) => Promise<T>, options: { syncCommit?: boolean } = {}): Promise<T> {
    return this.onTxClient(async (client) => {
      await client.query(options.syncCommit ? 'BEGIN' : BEGIN_ASYNC);
      const result = await fn(client);
      try {
        await client.query(options.syncCommit ? 'COMMIT' : `COMMIT; ${FLUSH_BARRIER}`);
      } catch (err) {
        throw new CommitUnconfirmed(err);
      }
      return result;
    });
  }

  /**
   * One transaction in two messages, so in two round trips whatever it does: the first
   * message opens it and runs `locks` (statements that lock and read, in the order every
   * writer takes those locks); `finish` gets their results (one per statement) and
   * returns the statements that write, which go in the second message with the COMMIT
   * and the flush barrier (see `FLUSH_BARRIER`). `finish` may still query on the
   * connection (a rare path, e.g. a missing chain head). Both messages are simple-query
   * text, so every value in them must be a literal made by ./sql-literal.ts.
   *
   * A fault in the second message leaves it unknown whether the COMMIT ran, so it is
   * answered and never retried, except a deadlock or serialization failure: only the
   * writes can raise one (the COMMIT of a READ COMMITTED transaction with no deferred
   * constraints cannot, nor the barrier on the backend's own row), and the server then
   * skips the rest of the message, so the transaction did not commit and runs again.
   * Retries are as in `tx`.
   */
  async txInTwoMessages<T>(locks: string, finish: (c: PoolClient, locked: pg.QueryResult[]) => Promise<{ writes: string; value: T }>): Promise<T> {
    return retryTransaction(() =>
      this.onTxClient(async (client) => {
        const opened = (await client.query(`${BEGIN_ASYNC}; ${locks}`)) as unknown as pg.QueryResult[];
        const { writes, value } = await finish(client, opened.slice(2));
        try {
          await client.query(`${writes}; COMMIT; ${FLUSH_BARRIER}`);
        } catch (err) {
          if (RETRYABLE.has(sqlState(err))) throw err;
          throw new CommitUnconfirmed(err);
        }
        return value;
      }),
    );
  }

  /**
   * One transaction in one message: `BEGIN`, `statement`, `COMMIT` and the flush barrier
   * (see `FLUSH_BARRIER`), so whatever locks `statement` takes are held only while the
   * server runs it, never across a round trip. Answers the statement's result once the
   * commit is durable. `statement` is simple-query text (values made by ./sql-literal.ts).
   * Faults as in `txInTwoMessages`: only a deadlock or serialization failure (raised by
   * the statement, after which the server skips the rest) is retried.
   */
  async txInOneMessage(statement: string): Promise<pg.QueryResult> {
    return retryTransaction(() =>
      this.onTxClient(async (client) => {
        try {
          const results = (await client.query(`${BEGIN_ASYNC}; ${statement}; COMMIT; ${FLUSH_BARRIER}`)) as unknown as pg.QueryResult[];
          return results[2]!;
        } catch (err) {
          if (RETRYABLE.has(sqlState(err))) throw err;
          throw new CommitUnconfirmed(err);
        }
      }),
    );
  }

  /**
   * Runs `body` on one pooled connection that it leaves in a transaction or not; on any
   * error rolls back and releases, discarding a connection that may be broken.
   */
  private async onTxClient<T>(body: (client: PoolClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new UnavailableError('the store is closed');
    const client = await this.pool.connect();
    // While checked out the pool does not listen for errors on the client; a socket
    // fault between queries would otherwise be an unhandled 'error' event.
    let broken: Error | undefined;
    const onError = (e: Error) => {
      broken = e;
    };
    client.on('error', onError);
    try {
      const result = await body(client);
      client.off('error', onError);
      client.release();
      return result;
    } catch (err) {
      const cause = err instanceof CommitUnconfirmed ? err.cause : err;
      let discard: Error | undefined = broken ?? (isConnectionError(cause) ? asError(cause) : undefined);
      if (!discard) {
        try {
          await client.query('ROLLBACK');
        } catch (e) {
          discard = asError(e);
        }
      }
      client.off('error', onError);
      client.release(discard ?? broken);
      throw err;
    }
  }

  /** One statement, autocommitted; retried like a transaction. A `QueryConfig` carries its own values (and a name to prepare it). */
  async exec<R extends QueryResultRow = Row>(sql: string | pg.QueryConfig, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.closed) throw new UnavailableError('the store is closed');
        // pool.query discards the connection whenever the query fails
        return typeof sql === 'string' ? await this.pool.query<R>(sql, params) : await this.pool.query<R>(sql);
      } catch (err) {
        if (attempt < MAX_RETRIES && RETRYABLE.has(sqlState(err))) {
          await sleep(backoff(attempt));
          continue;
        }
        throw mapPgError(err);
      }
    }
  }

  async rows(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.exec(sql, params)).rows;
  }

  async row(sql: string, params: unknown[] = []): Promise<Row | undefined> {
    return (await this.exec(sql, params)).rows[0];
  }

  /** Reads through the pool, one statement at a time, with the usual retries and error mapping. */
  get reader(): Q {
    return { query: ((sql: string, params?: unknown[]) => this.exec(sql, params)) as unknown as Q['query'] };
  }

  /**
   * Takes the transaction-scoped advisory lock of one start-up or operator step (class
   * `cls`, keyed by the schema), so that instances doing it at once take turns and the
   * later ones see what the first committed (READ COMMITTED reads after the lock).
   */
  async lockStep(c: Q, cls: number): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [cls, this.schema ?? '']);
  }
}

/**
 * Like libpq (psql), a connection string without a user name connects as `user` (the
 * `PGUSER` setting, read at the CLI edge) or else the operating-system user; `pg` would
 * otherwise rely on $USER, which services often lack.
 */
export function withDefaultUser(connectionString: string, user?: string): string {
  try {
    const u = new URL(connectionString);
    if (u.username || !u.host) return connectionString;
    u.username = encodeURIComponent(user || userInfo().username);
    return u.toString();
  } catch {
    return connectionString;
  }
}

// --- errors ---------------------------------------------------------------------

const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOENT',
]);
const CONNECTION_MESSAGES =
  /timeout exceeded when trying to connect|connection terminated|connection error|not queryable|client was closed|client has already been connected|cannot use a pool after calling end|the server closed the connection/i;

function sqlState(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** True for faults of the connection itself (the server is gone, restarting, unreachable). */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = sqlState(err);
  if (CONNECTION_ERRNOS.has(code)) return true;
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') return true;
  if (err instanceof AggregateError) return err.errors.some(isConnectionError);
  return CONNECTION_MESSAGES.test(err.message);
}

/** Maps a driver fault to the error model: conflicts for constraint violations, 503 for the rest. */
export function mapPgError(err: unknown): Error {
  if (err instanceof WritError || err instanceof TypeError) return err;
  if (isConnectionError(err)) return new UnavailableError('the store is unreachable', err);
  if (sqlState(err).startsWith('23')) return new ConflictError('the record conflicts with one that exists');
  return new UnavailableError('the store failed', err);
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function backoff(attempt: number): number {
  return Math.min(200, 5 * 2 ** attempt) * (0.5 + Math.random());
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The audit rows' INSERT as a CTE (`ins`) and the head's UPDATE as the statement's main
 * part, with parameters numbered from `first`: so a caller can put its own writes in
 * the same statement (one round trip for a whole decision batch).
 */
export function auditWrite(out: AuditEntry[], first: number): { ctes: string; headUpdate: string; params: unknown[] } {
  const $ = (i: number) => `$${first + i}`;
  const last = out[out.length - 1]!;
  return {
    ctes: `ins AS (
         INSERT INTO audit (seq, ts, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash)
         SELECT u.seq, ${$(1)}, u.type, u.actor, u.task_id, u.agent_id, u.decision_id, u.data, u.prev_hash, u.hash
         FROM unnest(${$(0)}::bigint[], ${$(2)}::text[], ${$(3)}::text[], ${$(4)}::text[], ${$(5)}::text[], ${$(6)}::text[], ${$(7)}::text[], ${$(8)}::text[], ${$(9)}::text[])
           AS u(seq, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash)
       )`,
    headUpdate: `UPDATE audit_head SET seq = ${$(10)}, hash = ${$(11)} WHERE id = 1`,
    params: [
      out.map((e) => e.seq),
      out[0]!.ts,
      out.map((e) => e.type),
      out.map((e) => e.actor),
      out.map((e) => e.taskId),
      out.map((e) => e.agentId),
      out.map((e) => e.decisionId),
      out.map((e) => JSON.stringify(e.data)),
      out.map((e) => e.prevHash),
      out.map((e) => e.hash),
      last.seq,
      last.hash,
    ],
  };
}
