import { userInfo } from 'node:os';
import pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
import { computeEntryHash, GENESIS_HASH } from '../../core/audit-hash.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { ConflictError, UnavailableError, WritError } from '../../core/errors.js';
import type {
  AgentRecord,
  CheckpointKeyRecord,
  AuditEntry,
  AuditInput,
  DecisionRecord,
  FederatedTokenRecord,
  IssuerRecord,
  ToolLabelsRecord,
  OperatorRecord,
  PolicyRecord,
  ShadowDecisionRecord,
  ShadowPolicyRecord,
  SigningKeyRecord,
  TaskRecord,
  TaskStatus,
} from '../../core/types.js';
import {
  decisionParams,
  taskParams,
  toAgent,
  toAuditEntry,
  toDecision,
  toCheckpointKey,
  toOperator,
  workingAdmins,
  toPolicy,
  policyMoved,
  shadowMoved,
  toShadowPolicy,
  toShadowPair,
  shadowDecisionParams,
  SHADOW_PAIRS_SQL,
  toSigningKey,
  toTask,
  toToolLabels,
  toAuditCheckpoint,
} from '../rows.js';
import { treeNodeKey, type AuditCheckpointRecord, type AuditFilter, type AuditTreeNode, type DecisionCommitResult, type DecisionWrite, type OutcomeWrite, type PoolStats, type Store } from '../store.js';
import { applyMigrations, quoteIdent } from './schema.js';
import type { ApprovalCreateResult, OpenApprovalLimits, ApprovalRecord, ApprovalReview, ApprovalReviewResult, ApprovalRule, ApprovalStatus, BreakGlassRecord, BreakGlassResult, PresenceLease } from '../../core/escalation-types.js';
import {
  APPROVAL_COLUMNS,
  approvalExpiredAudit,
  approvalParams,
  BREAK_GLASS_COLUMNS,
  breakGlassLapsedAudit,
  breakGlassParams,
  breakGlassStateWhere,
  fitsBreakGlassCap,
  settleReview,
  toApproval,
  toBreakGlass,
  toPresence,
  toReview,
} from '../escalation-rows.js';
import { FEDERATED_TOKEN_COLUMNS, federatedTokenParams, ISSUER_COLUMNS, issuerParams, toFederatedToken, toIssuer } from '../issuer-rows.js';

export interface PostgresStoreOptions {
  connectionString: string;
  clock?: Clock;
  /** a schema of its own (created by `migrate` when missing); every connection's search_path */
  schema?: string;
  /** connections in the pool (default 10) */
  poolSize?: number;
  /** called with faults that no caller sees: idle connections dropped, the listener lost */
  onBackgroundError?: (err: Error) => void;
}

/**
 * A notification handler. `payload` is the NOTIFY payload; `null` means the listener
 * connection was lost and is back, so notifications may have been missed in between
 * (a cache should drop everything).
 */
export type NotificationHandler = (payload: string | null) => void;

type Row = Record<string, unknown>;
type Q = Pick<PoolClient, 'query'>;

/** transaction attempts after a serialization failure or a deadlock */
const MAX_RETRIES = 5;
const RETRYABLE = new Set(['40001', '40P01']);
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** Advisory lock class for break-glass changes of one agent */
const BREAK_GLASS_LOCK_CLASS = 0x57424721; // "WBG!"
/** Advisory lock class for counting open approvals per agent (the second key is schema:agent). */
const APPROVAL_LOCK_CLASS = 0x57415052; // "WAPR"
/** Advisory lock classes of the steps that must happen once (start-up) or one at a time */
const OPERATORS_LOCK_CLASS = 0x574f5052; // "WOPR"
const POLICY_LOCK_CLASS = 0x57504f4c; // "WPOL"
const SIGNING_KEY_LOCK_CLASS = 0x574b4559; // "WKEY"
const CHECKPOINT_KEY_LOCK_CLASS = 0x57434b50; // "WCKP"
const DECISION_COLUMNS =
  'id, task_id, agent_id, tool, audience, resource, destination, args_digest, decision, reasons, policies, policy_version, token_jti, token_expires_at, created_at, outcome';
const DECISION_TYPES = ['text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'bigint', 'bigint', 'text'];

/**
 * The shared store: PostgreSQL through a `pg` pool. Every mutation is one
 * READ COMMITTED transaction that ends by appending its audit entries under a row
 * lock on the single `audit_head` row, so the chain is gap-free and fork-free across
 * any number of processes. Budget and single-use writes are guarded statements whose
 * row counts decide. Serialization failures and deadlocks are retried; connection
 * faults surface as `UnavailableError`, and the connection is discarded.
 */
export class PostgresStore implements Store {
  readonly backend = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly clock: Clock;
  private readonly schema: string | undefined;
  private readonly options: PostgresStoreOptions;
  private closed = false;

  // LISTEN/NOTIFY
  private readonly channels = new Map<string, Set<NotificationHandler>>();
  private listener: pg.Client | null = null;
  private listenerConnecting: Promise<pg.Client> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectAttempt = 0;

  constructor(options: PostgresStoreOptions) {
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

  poolStats(): PoolStats {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount, max: this.pool.options.max ?? 10 };
  }

  private connectionConfig(app: string, max?: number): pg.PoolConfig {
    return {
      connectionString: withDefaultUser(this.options.connectionString),
      max,
      connectionTimeoutMillis: 2000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: this.schema ? `${app}:${this.schema}`.slice(0, 63) : app,
      options: this.schema ? `-c search_path=${quoteIdent(this.schema)}` : undefined,
    };
  }

  private background(err: Error): void {
    try {
      this.options.onBackgroundError?.(err);
    } catch {
      // a faulty hook must not take the process down
    }
  }

  // --- plumbing ------------------------------------------------------------------

  /**
   * Runs `fn` in one transaction on one pooled connection. Retries the whole
   * transaction on serialization failures and deadlocks; always rolls back and
   * releases on error, discarding a connection that may be broken.
   */
  private async tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.txOnce(fn);
      } catch (err) {
        if (attempt < MAX_RETRIES && RETRYABLE.has(sqlState(err))) {
          await sleep(backoff(attempt));
          continue;
        }
        throw mapPgError(err);
      }
    }
  }

  private async txOnce<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
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
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      client.off('error', onError);
      client.release();
      return result;
    } catch (err) {
      let discard: Error | undefined = broken ?? (isConnectionError(err) ? asError(err) : undefined);
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

  /** One statement, autocommitted; retried like a transaction. */
  private async exec<R extends QueryResultRow = Row>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.closed) throw new UnavailableError('the store is closed');
        // pool.query discards the connection whenever the query fails
        return await this.pool.query<R>(sql, params);
      } catch (err) {
        if (attempt < MAX_RETRIES && RETRYABLE.has(sqlState(err))) {
          await sleep(backoff(attempt));
          continue;
        }
        throw mapPgError(err);
      }
    }
  }

  private async rows(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.exec(sql, params)).rows;
  }

  private async row(sql: string, params: unknown[] = []): Promise<Row | undefined> {
    return (await this.exec(sql, params)).rows[0];
  }

  // --- lifecycle -----------------------------------------------------------------

  async migrate(): Promise<void> {
    await this.tx((c) => applyMigrations(c, this.schema));
  }

  async ping(): Promise<void> {
    await this.exec('SELECT 1');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.channels.clear();
    const pending = this.listenerConnecting;
    const l = this.listener;
    this.listener = null;
    await l?.end().catch(() => undefined);
    await pending?.then((c) => c.end()).catch(() => undefined);
    await this.pool.end();
  }

  // --- audit chain -----------------------------------------------------------------

  /** Appends inside the caller's transaction, holding the chain head's row lock until commit. */
  private async appendInTx(c: Q, inputs: AuditInput[]): Promise<AuditEntry[]> {
    if (inputs.length === 0) return [];
    const out = this.chainEntries(await this.lockAuditHead(c), inputs);
    const w = auditWrite(out, 1);
    await c.query(`WITH ${w.ctes} ${w.headUpdate}`, w.params);
    return out;
  }

  /** The chain head, locked FOR UPDATE until the transaction ends (created at genesis if missing). */
  private async lockAuditHead(c: Q): Promise<{ seq: number; hash: string }> {
    let head = (await c.query('SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE')).rows[0] as Row | undefined;
    if (!head) {
      await c.query('INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING', [GENESIS_HASH]);
      head = (await c.query('SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE')).rows[0] as Row;
    }
    return { seq: Number(head.seq), hash: head.hash as string };
  }

  /** The entries after `head`, each hashed over the one before. */
  private chainEntries(head: { seq: number; hash: string }, inputs: AuditInput[]): AuditEntry[] {
    let seq = head.seq;
    let prevHash = head.hash;
    const ts = this.clock.now();
    const out: AuditEntry[] = [];
    for (const input of inputs) {
      seq += 1;
      const base = {
        seq,
        ts,
        type: input.type,
        actor: input.actor,
        taskId: input.taskId ?? null,
        agentId: input.agentId ?? null,
        decisionId: input.decisionId ?? null,
        data: input.data,
        prevHash,
      };
      const hash = computeEntryHash(base);
      out.push({ ...base, hash });
      prevHash = hash;
    }
    return out;
  }

  async appendAudit(entries: AuditInput[]): Promise<AuditEntry[]> {
    if (entries.length === 0) return [];
    return this.tx((c) => this.appendInTx(c, entries));
  }

  async listAudit(filter: AuditFilter): Promise<AuditEntry[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      params.push(v);
      where.push(`${sql} $${params.length}`);
    };
    if (filter.taskId !== undefined) add('task_id =', filter.taskId);
    if (filter.agentId !== undefined) add('agent_id =', filter.agentId);
    if (filter.type !== undefined) add('type =', filter.type);
    if (filter.decisionId !== undefined) add('decision_id =', filter.decisionId);
    if (filter.after !== undefined) add('seq >', filter.after);
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 10_000);
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq ASC LIMIT ${limit}`;
    return (await this.rows(sql, params)).map(toAuditEntry);
  }

  async auditHead(): Promise<{ seq: number; hash: string } | null> {
    const r = await this.row('SELECT seq, hash FROM audit_head WHERE id = 1');
    if (!r || Number(r.seq) === 0) return null;
    return { seq: Number(r.seq), hash: r.hash as string };
  }

  // --- audit Merkle tree ------------------------------------------------------------

  async auditTreeSize(): Promise<number> {
    const r = await this.row('SELECT max(idx) AS m FROM audit_tree WHERE level = 0');
    return r?.m === null || r?.m === undefined ? 0 : Number(r.m) + 1;
  }

  async putAuditTreeNodes(nodes: AuditTreeNode[]): Promise<void> {
    if (nodes.length === 0) return;
    // One statement for the batch: unnest keeps it to a single round trip.
    await this.exec(
      'INSERT INTO audit_tree (level, idx, hash) SELECT * FROM unnest($1::int[], $2::bigint[], $3::bytea[]) ON CONFLICT (level, idx) DO NOTHING',
      [nodes.map((n) => n.level), nodes.map((n) => n.index), nodes.map((n) => n.hash)],
    );
  }

  async getAuditTreeNodes(keys: Array<{ level: number; index: number }>): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (keys.length === 0) return out;
    const rows = await this.rows(
      'SELECT t.level, t.idx, t.hash FROM audit_tree t JOIN unnest($1::int[], $2::bigint[]) AS k(level, idx) ON t.level = k.level AND t.idx = k.idx',
      [keys.map((k) => k.level), keys.map((k) => k.index)],
    );
    for (const r of rows) out.set(treeNodeKey(Number(r.level), Number(r.idx)), r.hash as Buffer);
    return out;
  }

  async putAuditCheckpoint(c: AuditCheckpointRecord): Promise<void> {
    await this.exec('INSERT INTO audit_checkpoints (size, note, created_at) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING', [c.size, c.note, c.createdAt]);
  }

  async listAuditCheckpoints(afterSize: number, limit: number): Promise<AuditCheckpointRecord[]> {
    const rows = await this.rows('SELECT size, note, created_at FROM audit_checkpoints WHERE size > $1 ORDER BY size ASC LIMIT $2', [
      afterSize,
      Math.min(Math.max(limit, 1), 1000),
    ]);
    return rows.map(toAuditCheckpoint);
  }

  async latestAuditCheckpoint(): Promise<AuditCheckpointRecord | null> {
    const r = await this.row('SELECT size, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1');
    return r ? toAuditCheckpoint(r) : null;
  }

  // --- operators -----------------------------------------------------------------

  private async insertOperator(c: Q, op: OperatorRecord): Promise<void> {
    await c.query('INSERT INTO operators (id, name, roles, token_hash, created_at, expires_at, rotated_at, disabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
      op.id, op.name, JSON.stringify(op.roles), op.tokenHash, op.createdAt, op.expiresAt, op.rotatedAt, op.disabled,
    ]);
  }

  /**
   * Takes the transaction-scoped advisory lock of one start-up or operator step (class
   * `cls`, keyed by the schema), so that instances doing it at once take turns and the
   * later ones see what the first committed (READ COMMITTED reads after the lock).
   */
  private async lockStep(c: Q, cls: number): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [cls, this.schema ?? '']);
  }

  async createOperator(op: OperatorRecord, audit: AuditInput): Promise<void> {
    await this.tx(async (c) => {
      await this.insertOperator(c, op);
      await this.appendInTx(c, [audit]);
    });
  }

  async bootstrapOperator(op: OperatorRecord, audit: AuditInput): Promise<boolean> {
    return this.tx(async (c) => {
      await this.lockStep(c, OPERATORS_LOCK_CLASS);
      if ((await c.query('SELECT 1 FROM operators LIMIT 1')).rowCount) return false;
      await this.insertOperator(c, op);
      await this.appendInTx(c, [audit]);
      return true;
    });
  }

  async getOperator(id: string): Promise<OperatorRecord | null> {
    const r = await this.row('SELECT * FROM operators WHERE id = $1', [id]);
    return r ? toOperator(r) : null;
  }

  async listOperators(): Promise<OperatorRecord[]> {
    return (await this.rows('SELECT * FROM operators ORDER BY created_at, id')).map(toOperator);
  }

  async disableOperator(id: string, now: number, audit: AuditInput): Promise<'disabled' | 'not_found' | 'already_disabled' | 'last_admin'> {
    return this.tx(async (c) => {
      // one lock for every disable: two admins disabling each other at once cannot both win
      await this.lockStep(c, OPERATORS_LOCK_CLASS);
      const row = (await c.query('SELECT * FROM operators WHERE id = $1', [id])).rows[0] as Row | undefined;
      if (!row) return 'not_found';
      const op = toOperator(row);
      if (op.disabled) return 'already_disabled';
      if (op.roles.includes('admin')) {
        const all = (await c.query('SELECT * FROM operators WHERE disabled = FALSE')).rows.map((r) => toOperator(r as Row));
        if (workingAdmins(all, now, id).length === 0) return 'last_admin';
      }
      await c.query('UPDATE operators SET disabled = TRUE WHERE id = $1', [id]);
      await this.appendInTx(c, [audit]);
      return 'disabled';
    });
  }

  async rotateOperatorToken(id: string, tokenHash: string, expiresAt: number, now: number, audit: AuditInput): Promise<OperatorRecord | null> {
    return this.tx(async (c) => {
      const r = await c.query('UPDATE operators SET token_hash = $1, expires_at = $2, rotated_at = $3 WHERE id = $4 AND disabled = FALSE RETURNING *', [
        tokenHash, expiresAt, now, id,
      ]);
      if (!r.rows[0]) return null;
      await this.appendInTx(c, [audit]);
      return toOperator(r.rows[0] as Row);
    });
  }

  async findOperatorByTokenHash(tokenHash: string): Promise<OperatorRecord | null> {
    const r = await this.row('SELECT * FROM operators WHERE token_hash = $1', [tokenHash]);
    return r ? toOperator(r) : null;
  }

  async countOperators(): Promise<number> {
    return Number((await this.row('SELECT count(*)::int AS n FROM operators'))!.n);
  }

  // --- agents --------------------------------------------------------------------

  async createAgent(agent: AgentRecord, audit: AuditInput): Promise<void> {
    await this.tx(async (c) => {
      const r = await c.query(
        'INSERT INTO agents (id, name, jwks, labels, status, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING',
        [agent.id, agent.name, JSON.stringify(agent.jwks), JSON.stringify(agent.labels), agent.status, agent.createdAt, agent.createdBy],
      );
      if (r.rowCount !== 1) throw new ConflictError(`agent \`${agent.id}\` already exists`, 'agent_exists');
      await this.appendInTx(c, [audit]);
    });
  }

  async getAgent(id: string): Promise<AgentRecord | null> {
    const r = await this.row('SELECT * FROM agents WHERE id = $1', [id]);
    return r ? toAgent(r) : null;
  }

  async listAgents(): Promise<AgentRecord[]> {
    return (await this.rows('SELECT * FROM agents ORDER BY created_at, id')).map((r) => toAgent(r));
  }

  async disableAgent(id: string, now: number, audit: AuditInput): Promise<{ revokedTaskIds: string[] } | null> {
    return this.tx(async (c) => {
      const r = await c.query(`UPDATE agents SET status = 'disabled' WHERE id = $1`, [id]);
      if (r.rowCount !== 1) return null;
      const audits: AuditInput[] = [audit];
      const held = (await c.query(`SELECT id FROM tasks WHERE agent_id = $1 AND status = 'active' ORDER BY created_at, id`, [id])).rows as { id: string }[];
      const revoked: string[] = [];
      for (const t of held) {
        const ended = await this.endInTx(c, t.id, 'revoked', now, {
          type: 'task.revoked',
          actor: audit.actor,
          taskId: t.id,
          agentId: id,
          data: { reason: 'agent_disabled' },
        });
        revoked.push(...ended.ids);
        audits.push(...ended.audits);
      }
      await this.appendInTx(c, audits);
      return { revokedTaskIds: revoked };
    });
  }

  // --- tasks ---------------------------------------------------------------------

  async createTask(task: TaskRecord, audit: AuditInput, options: { presence?: PresenceLease } = {}): Promise<void> {
    await this.tx(async (c) => {
      if (task.parentId !== null) {
        // Reserve the child's budget from the parent atomically (delegation only narrows).
        const r = await c.query(
          `UPDATE tasks SET actions_reserved = actions_reserved + $1
           WHERE id = $2 AND status = 'active' AND expires_at > $3 AND actions_used + actions_reserved + $1 <= max_actions`,
          [task.maxActions, task.parentId, task.createdAt],
        );
        if (r.rowCount !== 1) throw new ConflictError('the parent task is not active or has not enough budget left', 'parent_budget_exhausted');
      }
      await c.query(
        `INSERT INTO tasks (id, agent_id, owner, intent, scope, status, created_at, expires_at, ended_at, max_actions, actions_used, actions_reserved, parent_id, root_id, depth)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
        taskParams(task),
      );
      if (options.presence) {
        const p = options.presence;
        await c.query('INSERT INTO presence_leases (task_id, owner, expires_at, renewed_at) VALUES ($1, $2, $3, $4)', [p.taskId, p.owner, p.expiresAt, p.renewedAt]);
      }
      await this.appendInTx(c, [audit]);
    });
  }

  async getTask(id: string): Promise<TaskRecord | null> {
    const r = await this.row('SELECT * FROM tasks WHERE id = $1', [id]);
    return r ? toTask(r) : null;
  }

  async getTaskWithAgent(id: string): Promise<{ task: TaskRecord; agent: AgentRecord } | null> {
    const r = await this.row(
      `SELECT t.*, a.id AS a_id, a.name AS a_name, a.jwks AS a_jwks, a.labels AS a_labels, a.status AS a_status,
              a.created_at AS a_created_at, a.created_by AS a_created_by
       FROM tasks t JOIN agents a ON a.id = t.agent_id WHERE t.id = $1`,
      [id],
    );
    return r ? { task: toTask(r), agent: toAgent(r, 'a_') } : null;
  }

  async listTasks(filter: { agentId?: string; status?: TaskStatus; parentId?: string; limit?: number }): Promise<TaskRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (col: string, v: unknown) => {
      params.push(v);
      where.push(`${col} = $${params.length}`);
    };
    if (filter.agentId !== undefined) add('agent_id', filter.agentId);
    if (filter.status !== undefined) add('status', filter.status);
    if (filter.parentId !== undefined) add('parent_id', filter.parentId);
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 10_000);
    const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT ${limit}`;
    return (await this.rows(sql, params)).map(toTask);
  }

  /**
   * Ends `id` and its active descendants inside the caller's transaction; returns the
   * ended ids (`id` first, then descendants by depth) and their audit inputs, which
   * the caller appends. Budget settles deepest first: a child's unused budget returns
   * to its parent, what it (and its own descendants) used stays spent there.
   */
  private async endInTx(
    c: Q,
    id: string,
    status: 'completed' | 'revoked' | 'expired',
    now: number,
    audit: AuditInput,
  ): Promise<{ ids: string[]; audits: AuditInput[] }> {
    const self = (
      await c.query(
        `UPDATE tasks SET status = $2, ended_at = $3 WHERE id = $1 AND status = 'active'
         RETURNING id, agent_id, parent_id, max_actions, actions_used, depth, created_at`,
        [id, status, now],
      )
    ).rows[0] as Row | undefined;
    if (!self) return { ids: [], audits: [] };
    // Every active task below is revoked. The statement is repeated until it finds
    // nothing more: a delegation committed by another transaction while this one
    // waited for a row lock is invisible to the statement that waited, but not to the
    // next one (and no new one can start: its parent is no longer active).
    const descendants: Row[] = [];
    for (;;) {
      const { rows } = await c.query(
        `WITH RECURSIVE sub(id) AS (
           SELECT id FROM tasks WHERE parent_id = $1
           UNION ALL SELECT t.id FROM tasks t JOIN sub ON t.parent_id = sub.id
         )
         UPDATE tasks SET status = 'revoked', ended_at = $2 FROM sub
         WHERE tasks.id = sub.id AND tasks.status = 'active'
         RETURNING tasks.id, tasks.agent_id, tasks.parent_id, tasks.max_actions, tasks.actions_used, tasks.depth, tasks.created_at`,
        [id, now],
      );
      if (rows.length === 0) break;
      descendants.push(...(rows as Row[]));
    }
    descendants.sort((a, b) => Number(a.depth) - Number(b.depth) || Number(a.created_at) - Number(b.created_at) || String(a.id).localeCompare(String(b.id)));
    const ended = [self, ...descendants];

    // settle budgets, deepest first, as SQL would if it ran one update per task
    const used = new Map<string, number>(ended.map((t) => [t.id as string, Number(t.actions_used)]));
    const delta = new Map<string, { reserved: number; used: number }>();
    for (const t of [...ended].reverse()) {
      const parent = t.parent_id as string | null;
      if (!parent) continue;
      const max = Number(t.max_actions);
      const spent = Math.min(used.get(t.id as string)!, max);
      const d = delta.get(parent) ?? { reserved: 0, used: 0 };
      d.reserved += max;
      d.used += spent;
      delta.set(parent, d);
      if (used.has(parent)) used.set(parent, used.get(parent)! + spent);
    }
    if (delta.size > 0) {
      const ids = [...delta.keys()];
      await c.query(
        `UPDATE tasks SET actions_reserved = tasks.actions_reserved - d.r, actions_used = tasks.actions_used + d.u
         FROM unnest($1::text[], $2::int[], $3::int[]) AS d(id, r, u) WHERE tasks.id = d.id`,
        [ids, ids.map((k) => delta.get(k)!.reserved), ids.map((k) => delta.get(k)!.used)],
      );
    }
    const audits: AuditInput[] = [audit];
    for (const d of descendants) {
      audits.push({
        type: 'task.revoked',
        actor: 'system',
        taskId: d.id as string,
        agentId: d.agent_id as string,
        data: { reason: 'ancestor_ended', ancestor: id, ancestor_status: status },
      });
    }
    return { ids: ended.map((t) => t.id as string), audits };
  }

  async endTask(id: string, status: 'completed' | 'revoked' | 'expired', now: number, audit: AuditInput): Promise<string[]> {
    return this.tx(async (c) => {
      const ended = await this.endInTx(c, id, status, now, audit);
      await this.appendInTx(c, ended.audits);
      return ended.ids;
    });
  }

  async expireTasks(now: number): Promise<string[]> {
    return this.tx(async (c) => {
      const due = (
        await c.query(`SELECT id, agent_id, expires_at FROM tasks WHERE status = 'active' AND expires_at <= $1 ORDER BY depth, id`, [now])
      ).rows as Row[];
      const ids: string[] = [];
      const audits: AuditInput[] = [];
      for (const t of due) {
        const ended = await this.endInTx(c, t.id as string, 'expired', now, {
          type: 'task.expired',
          actor: 'system',
          taskId: t.id as string,
          agentId: t.agent_id as string,
          data: { expires_at: Number(t.expires_at) },
        });
        ids.push(...ended.ids);
        audits.push(...ended.audits);
      }
      await this.appendInTx(c, audits);
      return ids;
    });
  }

  // --- one-time identifiers ------------------------------------------------------

  async useOnce(key: string, expiresAt: number, audit: AuditInput | null): Promise<boolean> {
    const insert = 'INSERT INTO once_keys (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING';
    if (!audit) return (await this.exec(insert, [key, expiresAt])).rowCount === 1;
    return this.tx(async (c) => {
      const r = await c.query(insert, [key, expiresAt]);
      if (r.rowCount !== 1) return false;
      await this.appendInTx(c, [audit]);
      return true;
    });
  }

  async purgeExpiredOnce(now: number): Promise<number> {
    const once = (await this.exec('DELETE FROM once_keys WHERE expires_at < $1', [now])).rowCount ?? 0;
    return once + ((await this.exec('DELETE FROM federated_tokens WHERE expires_at < $1', [now])).rowCount ?? 0);
  }

  // --- decisions -----------------------------------------------------------------

  async commitDecisions(items: DecisionWrite[], now: number): Promise<DecisionCommitResult[]> {
    if (items.length === 0) return [];
    return this.tx(async (c) => {
      // Lock every guarded task once, in id order (no deadlock between batches), and
      // take the budget in memory: one round trip for any batch size.
      const taskIds = [...new Set(items.flatMap((i) => (i.guard ? [i.guard.taskId] : [])))].sort();
      const left = new Map<string, number>();
      if (taskIds.length > 0) {
        const { rows } = await c.query(
          `SELECT id, status, expires_at, max_actions, actions_used, actions_reserved FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`,
          [taskIds],
        );
        for (const r of rows as Row[]) {
          const active = r.status === 'active' && Number(r.expires_at) > now;
          left.set(r.id as string, active ? Math.max(0, Number(r.max_actions) - Number(r.actions_used) - Number(r.actions_reserved)) : -1);
        }
      }
      // Approvals to use: locked after the tasks, in id order; a used or expired one is not returned.
      const approvalIds = [...new Set(items.flatMap((i) => (i.approval ? [i.approval.id] : [])))].sort();
      const usable = new Set<string>();
      if (approvalIds.length > 0) {
        const { rows } = await c.query(
          `SELECT id FROM approvals WHERE id = ANY($1::text[]) AND status = 'approved' AND expires_at > $2 ORDER BY id FOR UPDATE`,
          [approvalIds, now],
        );
        for (const r of rows as Row[]) usable.add(r.id as string);
      }
      // Break-glass an allow relies on: read under a share lock (after tasks and approvals,
      // in id order), so an end or expiry either commits first and is seen here, or waits
      // for this commit: no allow under it is recorded after its end.
      const breakGlassIds = [...new Set(items.flatMap((i) => (i.breakGlass ? [i.breakGlass.id] : [])))].sort();
      const activeBreakGlass = new Set<string>();
      if (breakGlassIds.length > 0) {
        const { rows } = await c.query(`SELECT id, status, ends_at FROM break_glass WHERE id = ANY($1::text[]) ORDER BY id FOR SHARE`, [breakGlassIds]);
        for (const r of rows as Row[]) if (r.status === 'active' && r.ends_at !== null && Number(r.ends_at) > now) activeBreakGlass.add(r.id as string);
      }
      const used: { id: string; decisionId: string }[] = [];
      const taken = new Map<string, number>();
      const results: DecisionCommitResult[] = [];
      const decisions: DecisionRecord[] = [];
      const audits: AuditInput[] = [];
      for (const item of items) {
        let decision = item.decision;
        let audit = item.audit;
        let result: DecisionCommitResult = { written: 'primary' };
        if (item.approval && !usable.has(item.approval.id)) {
          if (!item.fallback) throw new TypeError('a decision write that uses an approval needs a fallback');
          result = { written: 'fallback', reason: 'approval_unavailable' };
          ({ decision, audit } = item.fallback('approval_unavailable'));
        } else if (item.breakGlass && !activeBreakGlass.has(item.breakGlass.id)) {
          if (!item.fallback) throw new TypeError('a decision write under break-glass needs a fallback');
          result = { written: 'fallback', reason: 'break_glass_inactive' };
          ({ decision, audit } = item.fallback('break_glass_inactive'));
        } else if (item.guard) {
          const id = item.guard.taskId;
          const n = left.get(id) ?? -1;
          if (n > 0) {
            left.set(id, n - 1);
            taken.set(id, (taken.get(id) ?? 0) + 1);
          } else {
            if (!item.fallback) throw new TypeError('a guarded decision write needs a fallback');
            const reason = n < 0 ? 'task_inactive' : 'budget_exhausted';
            result = { written: 'fallback', reason };
            ({ decision, audit } = item.fallback(reason));
          }
        }
        decisions.push(decision);
        audits.push(audit);
        if (item.approval && result.written === 'primary') {
          usable.delete(item.approval.id);
          used.push({ id: item.approval.id, decisionId: decision.id });
          audits.push(item.approval.audit);
        }
        results.push(result);
      }
      // Every write of the batch in one statement (one round trip): the approvals used,
      // the budget taken, the decisions, the audit entries and the chain head. The head
      // is locked first (after the tasks, as every appender does), since the entries'
      // hashes chain from it.
      const out = this.chainEntries(await this.lockAuditHead(c), audits);
      const params: unknown[] = [];
      const ctes: string[] = [];
      const p = (v: unknown) => `$${params.push(v)}`;
      if (used.length > 0) {
        ctes.push(`used AS (UPDATE approvals SET status = 'used', used_at = ${p(now)}, used_decision_id = d.dec FROM unnest(${p(used.map((u) => u.id))}::text[], ${p(used.map((u) => u.decisionId))}::text[]) AS d(id, dec) WHERE approvals.id = d.id)`);
      }
      if (taken.size > 0) {
        const ids = [...taken.keys()];
        ctes.push(`taken AS (UPDATE tasks SET actions_used = tasks.actions_used + d.n FROM unnest(${p(ids)}::text[], ${p(ids.map((k) => taken.get(k)!))}::int[]) AS d(id, n) WHERE tasks.id = d.id)`);
      }
      const cols = DECISION_TYPES.map(() => [] as unknown[]);
      for (const d of decisions) decisionParams(d).forEach((v, i) => cols[i]!.push(v));
      ctes.push(`dec AS (INSERT INTO decisions (${DECISION_COLUMNS}) SELECT * FROM unnest(${DECISION_TYPES.map((t, i) => `${p(cols[i])}::${t}[]`).join(', ')}))`);
      const w = auditWrite(out, params.length + 1);
      params.push(...w.params);
      ctes.push(w.ctes);
      await c.query(`WITH ${ctes.join(',\n')}\n${w.headUpdate}`, params);
      return results;
    });
  }

  async commitWrites(decisions: DecisionWrite[], outcomes: OutcomeWrite[], now: number): Promise<{ decisions: DecisionCommitResult[]; outcomes: (boolean | 'failed')[] }> {
    // both in flight at once; the caller hears of either only once both have settled
    const [written, set] = await Promise.allSettled([
      this.commitDecisions(decisions, now),
      outcomes.length === 0
        ? Promise.resolve([] as (boolean | 'failed')[])
        : this.tx(async (c) => {
            // every outcome in one statement; those already set are left alone
            const { rows } = await c.query(
              `UPDATE decisions SET outcome = d.o FROM unnest($1::text[], $2::text[]) AS d(id, o) WHERE decisions.id = d.id AND decisions.outcome IS NULL RETURNING decisions.id`,
              [outcomes.map((o) => o.decisionId), outcomes.map((o) => o.outcome)],
            );
            const done = new Set((rows as Row[]).map((r) => r.id as string));
            await this.appendInTx(c, outcomes.filter((o) => done.has(o.decisionId)).map((o) => o.audit));
            return outcomes.map((o) => done.has(o.decisionId));
          }).catch((): (boolean | 'failed')[] => outcomes.map(() => 'failed' as const)),
    ]);
    if (written.status === 'rejected') throw written.reason;
    return { decisions: written.value, outcomes: set.status === 'fulfilled' ? set.value : outcomes.map(() => 'failed' as const) };
  }

  async getDecision(id: string): Promise<DecisionRecord | null> {
    const r = await this.row('SELECT * FROM decisions WHERE id = $1', [id]);
    return r ? toDecision(r) : null;
  }

  async listDecisions(taskId: string): Promise<DecisionRecord[]> {
    return (await this.rows('SELECT * FROM decisions WHERE task_id = $1 ORDER BY created_at, id', [taskId])).map(toDecision);
  }

  async recordOutcome(decisionId: string, outcome: 'succeeded' | 'failed', audit: AuditInput): Promise<boolean> {
    return this.tx(async (c) => {
      const r = await c.query('UPDATE decisions SET outcome = $1 WHERE id = $2 AND outcome IS NULL', [outcome, decisionId]);
      if (r.rowCount !== 1) return false;
      await this.appendInTx(c, [audit]);
      return true;
    });
  }

  // --- policies ------------------------------------------------------------------

  async putPolicy(policy: PolicyRecord, audit: AuditInput, options: { ifActive?: string; promote?: string } = {}): Promise<void> {
    await this.tx(async (c) => {
      // serialised with every other policy change, so the compare and the set are one step
      if (options.ifActive !== undefined || options.promote !== undefined) await this.lockStep(c, POLICY_LOCK_CLASS);
      if (options.ifActive !== undefined) {
        const r = await c.query('SELECT version FROM policy_active WHERE id = 1');
        const active = (r.rows[0]?.version as string | undefined) ?? null;
        if (active !== options.ifActive) throw policyMoved(options.ifActive, active);
      }
      if (options.promote !== undefined) {
        const r = await c.query('DELETE FROM policy_shadow WHERE id = 1 RETURNING version');
        const candidate = (r.rows[0]?.version as string | undefined) ?? null;
        // a throw rolls the delete back
        if (candidate !== options.promote) throw shadowMoved(options.promote, candidate);
      }
      await c.query('INSERT INTO policies (version, text, created_at, created_by) VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING', [
        policy.version, policy.text, policy.createdAt, policy.createdBy,
      ]);
      await c.query('INSERT INTO policy_active (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version', [policy.version]);
      await this.appendInTx(c, [audit]);
    });
  }

  async getPolicy(version: string): Promise<PolicyRecord | null> {
    const r = await this.row('SELECT * FROM policies WHERE version = $1', [version]);
    return r ? toPolicy(r) : null;
  }

  async installFirstPolicy(policy: PolicyRecord, audit: AuditInput): Promise<boolean> {
    return this.tx(async (c) => {
      await this.lockStep(c, POLICY_LOCK_CLASS);
      if ((await c.query('SELECT 1 FROM policy_active WHERE id = 1')).rowCount) return false;
      await c.query('INSERT INTO policies (version, text, created_at, created_by) VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING', [
        policy.version, policy.text, policy.createdAt, policy.createdBy,
      ]);
      await c.query('INSERT INTO policy_active (id, version) VALUES (1, $1)', [policy.version]);
      await this.appendInTx(c, [audit]);
      return true;
    });
  }

  async getActivePolicy(): Promise<PolicyRecord | null> {
    const r = await this.row('SELECT p.* FROM policy_active a JOIN policies p ON p.version = a.version WHERE a.id = 1');
    return r ? toPolicy(r) : null;
  }

  // --- shadow candidate (src/service/policy-shadow.ts) ------------------------------

  private async shadowMatches(c: PoolClient, ifShadow: string | undefined): Promise<void> {
    // serialised with every other policy change, so the compare and the change are one step
    await this.lockStep(c, POLICY_LOCK_CLASS);
    if (ifShadow === undefined) return;
    const r = await c.query('SELECT version FROM policy_shadow WHERE id = 1');
    const current = (r.rows[0]?.version as string | undefined) ?? null;
    if (current !== ifShadow) throw shadowMoved(ifShadow, current);
  }

  async putShadowPolicy(policy: PolicyRecord, audit: AuditInput, options: { ifShadow?: string } = {}): Promise<void> {
    await this.tx(async (c) => {
      await this.shadowMatches(c, options.ifShadow);
      await c.query('INSERT INTO policies (version, text, created_at, created_by) VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING', [
        policy.version, policy.text, policy.createdAt, policy.createdBy,
      ]);
      await c.query(
        'INSERT INTO policy_shadow (id, version, set_at, set_by) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, set_at = EXCLUDED.set_at, set_by = EXCLUDED.set_by',
        [policy.version, policy.createdAt, policy.createdBy],
      );
      await this.appendInTx(c, [audit]);
    });
  }

  async getShadowPolicy(): Promise<ShadowPolicyRecord | null> {
    const r = await this.row('SELECT p.version, p.text, s.set_at, s.set_by FROM policy_shadow s JOIN policies p ON p.version = s.version WHERE s.id = 1');
    return r ? toShadowPolicy(r) : null;
  }

  async dropShadowPolicy(audit: AuditInput, options: { ifShadow?: string } = {}): Promise<boolean> {
    return this.tx(async (c) => {
      await this.shadowMatches(c, options.ifShadow);
      if ((await c.query('DELETE FROM policy_shadow WHERE id = 1')).rowCount !== 1) return false;
      await this.appendInTx(c, [audit]);
      return true;
    });
  }

  async recordShadowDecisions(rows: ShadowDecisionRecord[]): Promise<void> {
    if (rows.length === 0) return;
    const params: unknown[] = [];
    const values = rows.map((r, i) => {
      params.push(...shadowDecisionParams(r));
      const b = i * 6;
      return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6})`;
    });
    await this.rows(
      `INSERT INTO shadow_decisions (decision_id, candidate_version, decision, reasons, policies, created_at) VALUES ${values.join(', ')} ON CONFLICT (decision_id) DO NOTHING`,
      params,
    );
  }

  async listShadowDecisions(filter: { candidateVersion: string; since?: number; limit: number }): Promise<Array<{ shadow: ShadowDecisionRecord; live: DecisionRecord }>> {
    const sql = SHADOW_PAIRS_SQL.replace('{1}', '$1').replace('{2}', '$2').replace('{3}', '$3');
    return (await this.rows(sql, [filter.candidateVersion, filter.since ?? 0, filter.limit])).map(toShadowPair);
  }

  // --- signing keys --------------------------------------------------------------

  async listSigningKeys(): Promise<SigningKeyRecord[]> {
    return (await this.rows('SELECT * FROM signing_keys ORDER BY created_at, kid')).map(toSigningKey);
  }

  async rotateSigningKeys(key: SigningKeyRecord, retireAt: number, audit: AuditInput): Promise<void> {
    await this.tx(async (c) => {
      await c.query('UPDATE signing_keys SET rotated_at = $1, retired_at = $2 WHERE rotated_at IS NULL', [key.createdAt, retireAt]);
      await c.query('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
      ]);
      await this.appendInTx(c, [audit]);
    });
  }

  async addSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<void> {
    await this.tx(async (c) => {
      await c.query('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
      ]);
      await this.appendInTx(c, [audit]);
    });
  }

  async addFirstSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<boolean> {
    return this.tx(async (c) => {
      await this.lockStep(c, SIGNING_KEY_LOCK_CLASS);
      if ((await c.query('SELECT 1 FROM signing_keys WHERE rotated_at IS NULL LIMIT 1')).rowCount) return false;
      await c.query('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
      ]);
      await this.appendInTx(c, [audit]);
      return true;
    });
  }

  // --- checkpoint keys -------------------------------------------------------------

  async listCheckpointKeys(): Promise<CheckpointKeyRecord[]> {
    return (await this.rows('SELECT * FROM checkpoint_keys ORDER BY created_at, kid')).map(toCheckpointKey);
  }

  async addFirstCheckpointKey(key: CheckpointKeyRecord, audit: AuditInput): Promise<boolean> {
    return this.tx(async (c) => {
      await this.lockStep(c, CHECKPOINT_KEY_LOCK_CLASS);
      if ((await c.query('SELECT 1 FROM checkpoint_keys LIMIT 1')).rowCount) return false;
      await c.query('INSERT INTO checkpoint_keys (kid, public_jwk, private_jwk, created_at) VALUES ($1, $2, $3, $4)', [
        key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt,
      ]);
      await this.appendInTx(c, [audit]);
      return true;
    });
  }

  // --- tool labels ---------------------------------------------------------------

  async putToolLabels(record: ToolLabelsRecord, audit: AuditInput): Promise<void> {
    await this.tx(async (c) => {
      if (record.labels.length === 0) await c.query('DELETE FROM tool_labels WHERE pattern = $1', [record.pattern]);
      else {
        await c.query(
          `INSERT INTO tool_labels (pattern, labels, updated_at, updated_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (pattern) DO UPDATE SET labels = excluded.labels, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
          [record.pattern, JSON.stringify(record.labels), record.updatedAt, record.updatedBy],
        );
      }
      await this.appendInTx(c, [audit]);
    });
  }

  async listToolLabels(): Promise<ToolLabelsRecord[]> {
    return (await this.rows('SELECT * FROM tool_labels ORDER BY pattern')).map(toToolLabels);
  }

  // --- trusted issuers (federation) ----------------------------------------------

  async createIssuer(issuer: IssuerRecord, audit: AuditInput): Promise<void> {
    await this.tx(async (c) => {
      // the partial unique index keeps one active record per issuer, across instances
      const r = await c.query(
        `INSERT INTO trusted_issuers (${ISSUER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (issuer) WHERE status = 'active' DO NOTHING`,
        issuerParams(issuer),
      );
      if (r.rowCount !== 1) throw new ConflictError(`issuer \`${issuer.issuer}\` is registered already`, 'issuer_exists');
      await this.appendInTx(c, [audit]);
    });
  }

  async getIssuer(id: string): Promise<IssuerRecord | null> {
    const r = await this.row('SELECT * FROM trusted_issuers WHERE id = $1', [id]);
    return r ? toIssuer(r) : null;
  }

  async findActiveIssuer(issuer: string): Promise<IssuerRecord | null> {
    const r = await this.row(`SELECT * FROM trusted_issuers WHERE issuer = $1 AND status = 'active'`, [issuer]);
    return r ? toIssuer(r) : null;
  }

  async listIssuers(): Promise<IssuerRecord[]> {
    return (await this.rows('SELECT * FROM trusted_issuers ORDER BY created_at, id')).map(toIssuer);
  }

  async disableIssuer(
    id: string,
    now: number,
    options: { revokeIssued: boolean },
    audit: (revoked: { tokens: number; taskIds: string[] }) => AuditInput,
  ): Promise<{ revokedTokens: number; taskIds: string[] } | null> {
    return this.tx(async (c) => {
      // The row lock taken here waits for every exchange holding the issuer row FOR SHARE
      // (recordFederatedToken); the next statement's snapshot then sees their tokens.
      const r = await c.query(`UPDATE trusted_issuers SET status = 'disabled', disabled_at = $1 WHERE id = $2 AND status = 'active'`, [now, id]);
      if (r.rowCount !== 1) return null;
      let revoked: { jti: string; task_id: string }[] = [];
      if (options.revokeIssued) {
        revoked = (
          await c.query<{ jti: string; task_id: string }>(
            `UPDATE federated_tokens SET revoked_at = $1
             WHERE issuer_id = $2 AND revoked_at IS NULL AND expires_at > $1
               AND task_id IN (SELECT id FROM tasks WHERE status = 'active' AND expires_at > $1)
             RETURNING jti, task_id`,
            [now, id],
          )
        ).rows;
      }
      const taskIds = [...new Set(revoked.map((t) => t.task_id))].sort();
      await this.appendInTx(c, [audit({ tokens: revoked.length, taskIds })]);
      return { revokedTokens: revoked.length, taskIds };
    });
  }

  async recordFederatedToken(
    token: FederatedTokenRecord,
    replay: { key: string; expiresAt: number; spentAs?: string[] } | null,
    audit: AuditInput,
  ): Promise<'recorded' | 'replayed' | 'issuer_inactive'> {
    return this.tx(async (c) => {
      // FOR SHARE: a concurrent removal either committed first (seen as disabled here) or
      // waits for this transaction and then revokes the token it wrote
      const active = await c.query(`SELECT 1 FROM trusted_issuers WHERE id = $1 AND status = 'active' FOR SHARE`, [token.issuerId]);
      if (active.rowCount !== 1) return 'issuer_inactive';
      if (replay) {
        if (replay.spentAs?.length && (await c.query('SELECT 1 FROM once_keys WHERE key = ANY($1::text[])', [replay.spentAs])).rowCount) return 'replayed';
        const r = await c.query('INSERT INTO once_keys (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [replay.key, replay.expiresAt]);
        if (r.rowCount !== 1) return 'replayed';
      }
      await c.query(`INSERT INTO federated_tokens (${FEDERATED_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`, federatedTokenParams(token));
      await this.appendInTx(c, [audit]);
      return 'recorded';
    });
  }

  async getFederatedToken(jti: string): Promise<FederatedTokenRecord | null> {
    const r = await this.row('SELECT * FROM federated_tokens WHERE jti = $1', [jti]);
    return r ? toFederatedToken(r) : null;
  }

  // --- approvals -----------------------------------------------------------------

  private async withReviews(q: Q, rows: Row[]): Promise<ApprovalRecord[]> {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id as string);
    const reviews = (await q.query('SELECT * FROM approval_reviews WHERE approval_id = ANY($1::text[]) ORDER BY created_at, approver', [ids])).rows as Row[];
    const by = new Map<string, ApprovalReview[]>();
    for (const r of reviews) {
      const list = by.get(r.approval_id as string) ?? [];
      list.push(toReview(r));
      by.set(r.approval_id as string, list);
    }
    return rows.map((r) => toApproval(r, by.get(r.id as string) ?? []));
  }

  /** Reads through the pool, one statement at a time, with the usual retries and error mapping. */
  private get reader(): Q {
    return { query: ((sql: string, params?: unknown[]) => this.exec(sql, params)) as unknown as Q['query'] };
  }

  async createApproval(approval: ApprovalRecord, decision: DecisionRecord, audit: AuditInput[], limits?: OpenApprovalLimits): Promise<ApprovalCreateResult> {
    return this.tx(async (c): Promise<ApprovalCreateResult> => {
      if (limits) {
        // One creator per agent at a time, on every instance (a task's approvals are its
        // agent's): under READ COMMITTED each count then sees every approval committed
        // before the lock was granted, so two instances cannot both take the last place.
        await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [APPROVAL_LOCK_CLASS, `${this.schema ?? ''}:${approval.agentId}`]);
        const open = `SELECT count(*)::int AS n FROM approvals WHERE status IN ('pending', 'approved') AND expires_at > $1`;
        const byTask = Number((await c.query<{ n: number }>(`${open} AND task_id = $2`, [limits.now, approval.taskId])).rows[0]!.n);
        if (byTask >= limits.maxOpenPerTask) return { ok: false, limit: 'task', open: byTask };
        const byAgent = Number((await c.query<{ n: number }>(`${open} AND agent_id = $2`, [limits.now, approval.agentId])).rows[0]!.n);
        if (byAgent >= limits.maxOpenPerAgent) return { ok: false, limit: 'agent', open: byAgent };
      }
      await c.query(`INSERT INTO decisions (${DECISION_COLUMNS}) VALUES (${DECISION_TYPES.map((_, i) => `$${i + 1}`).join(', ')})`, decisionParams(decision));
      await c.query(
        `INSERT INTO approvals (${APPROVAL_COLUMNS.join(', ')}) VALUES (${APPROVAL_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
        approvalParams(approval, (b) => b),
      );
      for (const r of approval.reviews) {
        await c.query('INSERT INTO approval_reviews (approval_id, approver, verdict, comment, created_at) VALUES ($1, $2, $3, $4, $5)', [
          approval.id, r.approver, r.verdict, r.comment, r.at,
        ]);
      }
      await this.appendInTx(c, audit);
      return { ok: true };
    });
  }

  async getApproval(id: string): Promise<ApprovalRecord | null> {
    const rows = await this.rows('SELECT * FROM approvals WHERE id = $1', [id]);
    return (await this.withReviews(this.reader, rows))[0] ?? null;
  }

  async findOpenApproval(taskId: string, actionDigest: string, now: number): Promise<ApprovalRecord | null> {
    const rows = await this.rows(
      `SELECT * FROM approvals WHERE task_id = $1 AND action_digest = $2 AND status IN ('pending', 'approved') AND expires_at > $3
       ORDER BY created_at DESC LIMIT 1`,
      [taskId, actionDigest, now],
    );
    return (await this.withReviews(this.reader, rows))[0] ?? null;
  }

  async listApprovals(filter: { status?: ApprovalStatus; taskId?: string; limit?: number }): Promise<ApprovalRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.status !== undefined) (params.push(filter.status), where.push(`status = $${params.length}`));
    if (filter.taskId !== undefined) (params.push(filter.taskId), where.push(`task_id = $${params.length}`));
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
    const rows = await this.rows(`SELECT * FROM approvals ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT ${limit}`, params);
    return this.withReviews(this.reader, rows);
  }

  async reviewApproval(
    id: string,
    review: ApprovalReview,
    options: { approvedTtlMs: number; rule?: ApprovalRule },
    audit: (after: ApprovalRecord) => AuditInput[],
  ): Promise<ApprovalReviewResult> {
    return this.tx(async (c): Promise<ApprovalReviewResult> => {
      // The row lock settles an approve racing a deny (or two approvals of one
      // approver) once, on every instance: the second waits, then sees the first.
      const rows = (await c.query('SELECT * FROM approvals WHERE id = $1 FOR UPDATE', [id])).rows as Row[];
      const a = (await this.withReviews(c, rows))[0];
      if (!a) return { ok: false, reason: 'not_found', approval: null };
      if (a.status !== 'pending' || a.expiresAt <= review.at) return { ok: false, reason: 'not_pending', approval: a };
      if (a.reviews.some((r) => r.approver === review.approver)) return { ok: false, reason: 'already_reviewed', approval: a };
      await c.query('INSERT INTO approval_reviews (approval_id, approver, verdict, comment, created_at) VALUES ($1, $2, $3, $4, $5)', [
        id, review.approver, review.verdict, review.comment, review.at,
      ]);
      const after = settleReview(a, review, options.approvedTtlMs, options.rule);
      if (after.status !== a.status || after.quorum !== a.quorum || after.fourEyes !== a.fourEyes) {
        await c.query(`UPDATE approvals SET status = $1, settled_at = $2, expires_at = $3, quorum = $4, four_eyes = $5 WHERE id = $6 AND status = 'pending'`, [
          after.status, after.settledAt, after.expiresAt, after.quorum, after.fourEyes, id,
        ]);
      }
      await this.appendInTx(c, audit(after));
      return { ok: true, approval: after };
    });
  }

  async expireApprovals(now: number, ids?: string[]): Promise<ApprovalRecord[]> {
    if (ids && ids.length === 0) return [];
    return this.tx(async (c) => {
      const rows = (
        await c.query(
          `SELECT * FROM approvals WHERE status IN ('pending', 'approved') AND expires_at <= $1 ${ids ? 'AND id = ANY($2::text[])' : ''}
           ORDER BY id FOR UPDATE`,
          ids ? [now, ids] : [now],
        )
      ).rows as Row[];
      if (rows.length === 0) return [];
      const due = await this.withReviews(c, rows);
      await c.query(`UPDATE approvals SET status = 'expired', settled_at = $1 WHERE id = ANY($2::text[])`, [now, due.map((a) => a.id)]);
      due.sort((x, y) => x.createdAt - y.createdAt || x.id.localeCompare(y.id));
      await this.appendInTx(c, due.map((a) => approvalExpiredAudit(a, now)));
      return due.map((a) => ({ ...a, status: 'expired' as const, settledAt: now }));
    });
  }

  // --- break-glass -----------------------------------------------------------------

  /** Serializes break-glass changes of one agent across instances (no two active, no chaining past the cap). */
  private async lockBreakGlassAgent(c: Q, agentId: string): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [BREAK_GLASS_LOCK_CLASS, `${this.schema ?? ''}:${agentId}`]);
  }

  private async blockingBreakGlass(c: Q, agentId: string, now: number, except: string): Promise<BreakGlassRecord | null> {
    const r = (
      await c.query(
        `SELECT * FROM break_glass WHERE agent_id = $1 AND id <> $2
           AND ((status = 'active' AND ends_at > $3) OR (status = 'pending' AND confirm_deadline > $3))
         ORDER BY created_at LIMIT 1`,
        [agentId, except, now],
      )
    ).rows[0] as Row | undefined;
    return r ? toBreakGlass(r) : null;
  }

  private async fitsCap(c: Q, agentId: string, except: string, start: number, durationMs: number, capMs: number): Promise<boolean> {
    const prior = (
      await c.query(`SELECT starts_at, ends_at FROM break_glass WHERE agent_id = $1 AND id <> $2 AND starts_at IS NOT NULL AND ends_at > $3`, [
        agentId, except, start - capMs,
      ])
    ).rows as Row[];
    return fitsBreakGlassCap(prior.map((p) => ({ startsAt: Number(p.starts_at), endsAt: Number(p.ends_at) })), start, durationMs, capMs);
  }

  private async breakGlassForUpdate(c: Q, id: string): Promise<BreakGlassRecord | null> {
    const r = (await c.query('SELECT * FROM break_glass WHERE id = $1 FOR UPDATE', [id])).rows[0] as Row | undefined;
    return r ? toBreakGlass(r) : null;
  }

  async createBreakGlass(record: BreakGlassRecord, options: { capMs: number; now: number }, audit: AuditInput): Promise<BreakGlassResult> {
    return this.tx(async (c): Promise<BreakGlassResult> => {
      await this.lockBreakGlassAgent(c, record.agentId);
      const blocking = await this.blockingBreakGlass(c, record.agentId, options.now, record.id);
      if (blocking) return { ok: false, reason: 'already_active', record: blocking };
      if (!(await this.fitsCap(c, record.agentId, record.id, record.startsAt ?? options.now, record.durationMs, options.capMs))) {
        return { ok: false, reason: 'cap_exceeded', record: null };
      }
      await c.query(
        `INSERT INTO break_glass (${BREAK_GLASS_COLUMNS.join(', ')}) VALUES (${BREAK_GLASS_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
        breakGlassParams(record),
      );
      await this.appendInTx(c, [audit]);
      return { ok: true, record };
    });
  }

  async confirmBreakGlass(id: string, by: string, options: { capMs: number; now: number }, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    const { now, capMs } = options;
    return this.tx(async (c): Promise<BreakGlassResult> => {
      const peek = (await c.query('SELECT agent_id FROM break_glass WHERE id = $1', [id])).rows[0] as Row | undefined;
      if (!peek) return { ok: false, reason: 'not_found', record: null };
      await this.lockBreakGlassAgent(c, peek.agent_id as string);
      const r = (await this.breakGlassForUpdate(c, id))!;
      if (r.status !== 'pending' || (r.confirmDeadline ?? 0) <= now) return { ok: false, reason: 'not_pending', record: r };
      if (r.requestedBy === by) return { ok: false, reason: 'same_admin', record: r };
      const blocking = await this.blockingBreakGlass(c, r.agentId, now, r.id);
      if (blocking) return { ok: false, reason: 'already_active', record: blocking };
      if (!(await this.fitsCap(c, r.agentId, r.id, now, r.durationMs, capMs))) return { ok: false, reason: 'cap_exceeded', record: r };
      const after: BreakGlassRecord = { ...r, status: 'active', confirmedBy: by, startsAt: now, endsAt: now + r.durationMs };
      await c.query(`UPDATE break_glass SET status = 'active', confirmed_by = $1, starts_at = $2, ends_at = $3 WHERE id = $4 AND status = 'pending'`, [
        by, after.startsAt, after.endsAt, id,
      ]);
      await this.appendInTx(c, [audit(after)]);
      return { ok: true, record: after };
    });
  }

  async endBreakGlass(id: string, by: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    return this.tx(async (c): Promise<BreakGlassResult> => {
      const r = await this.breakGlassForUpdate(c, id);
      if (!r) return { ok: false, reason: 'not_found', record: null };
      let after: BreakGlassRecord;
      if (r.status === 'active' && (r.endsAt ?? 0) > now) after = { ...r, status: 'ended', endsAt: now, endedAt: now, endedBy: by };
      else if (r.status === 'pending' && (r.confirmDeadline ?? 0) > now) after = { ...r, status: 'cancelled', endedAt: now, endedBy: by };
      else return { ok: false, reason: 'not_active', record: r };
      await c.query('UPDATE break_glass SET status = $1, ends_at = $2, ended_at = $3, ended_by = $4 WHERE id = $5', [after.status, after.endsAt, after.endedAt, by, id]);
      await this.appendInTx(c, [audit(after)]);
      return { ok: true, record: after };
    });
  }

  async reviewBreakGlass(id: string, by: string, notes: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    return this.tx(async (c): Promise<BreakGlassResult> => {
      const r = await this.breakGlassForUpdate(c, id);
      if (!r) return { ok: false, reason: 'not_found', record: null };
      if ((r.status === 'active' && (r.endsAt ?? 0) > now) || (r.status === 'pending' && (r.confirmDeadline ?? 0) > now)) {
        return { ok: false, reason: 'still_active', record: r };
      }
      if (r.reviewedAt !== null) return { ok: false, reason: 'already_reviewed', record: r };
      const after: BreakGlassRecord = { ...r, reviewedBy: by, reviewedAt: now, reviewNotes: notes };
      await c.query('UPDATE break_glass SET reviewed_by = $1, reviewed_at = $2, review_notes = $3 WHERE id = $4', [by, now, notes, id]);
      await this.appendInTx(c, [audit(after)]);
      return { ok: true, record: after };
    });
  }

  async getBreakGlass(id: string): Promise<BreakGlassRecord | null> {
    const r = await this.row('SELECT * FROM break_glass WHERE id = $1', [id]);
    return r ? toBreakGlass(r) : null;
  }

  async listBreakGlass(filter: { state?: 'active' | 'pending' | 'ended' | 'unreviewed'; agentId?: string; now: number; limit?: number }): Promise<BreakGlassRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.state !== undefined) {
      params.push(filter.now);
      where.push(breakGlassStateWhere(filter.state).replaceAll(':now', `$${params.length}`));
    }
    if (filter.agentId !== undefined) (params.push(filter.agentId), where.push(`agent_id = $${params.length}`));
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
    const sql = `SELECT * FROM break_glass ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT ${limit}`;
    return (await this.rows(sql, params)).map(toBreakGlass);
  }

  async findActiveBreakGlass(agentId: string, taskId: string, now: number): Promise<BreakGlassRecord[]> {
    return (
      await this.rows(
        `SELECT * FROM break_glass WHERE agent_id = $1 AND status = 'active' AND starts_at <= $2 AND ends_at > $2 AND (task_id IS NULL OR task_id = $3)
         ORDER BY created_at`,
        [agentId, now, taskId],
      )
    ).map(toBreakGlass);
  }

  async expireBreakGlass(now: number): Promise<BreakGlassRecord[]> {
    return this.tx(async (c) => {
      const due = (
        (
          await c.query(
            `SELECT * FROM break_glass WHERE (status = 'active' AND ends_at <= $1) OR (status = 'pending' AND confirm_deadline <= $1)
             ORDER BY id FOR UPDATE`,
            [now],
          )
        ).rows as Row[]
      ).map(toBreakGlass);
      if (due.length === 0) return [];
      const out = due.map((r): BreakGlassRecord => (r.status === 'active' ? { ...r, status: 'expired', endedAt: r.endsAt } : { ...r, status: 'cancelled', endedAt: now }));
      await c.query(
        `UPDATE break_glass SET status = d.status, ended_at = d.ended_at FROM unnest($1::text[], $2::text[], $3::bigint[]) AS d(id, status, ended_at)
         WHERE break_glass.id = d.id`,
        [out.map((r) => r.id), out.map((r) => r.status), out.map((r) => r.endedAt)],
      );
      out.sort((x, y) => x.createdAt - y.createdAt || x.id.localeCompare(y.id));
      await this.appendInTx(c, out.map((r) => breakGlassLapsedAudit(r, now)));
      return out;
    });
  }

  // --- presence leases ---------------------------------------------------------------

  async getPresence(taskId: string): Promise<PresenceLease | null> {
    const r = await this.row('SELECT * FROM presence_leases WHERE task_id = $1', [taskId]);
    return r ? toPresence(r) : null;
  }

  async renewPresence(taskId: string, owner: string, expiresAt: number, now: number, audit: AuditInput): Promise<PresenceLease | null> {
    return this.tx(async (c) => {
      const r = await c.query('UPDATE presence_leases SET expires_at = $1, renewed_at = $2 WHERE task_id = $3 AND owner = $4', [expiresAt, now, taskId, owner]);
      if (r.rowCount !== 1) return null;
      await this.appendInTx(c, [audit]);
      return { taskId, owner, expiresAt, renewedAt: now };
    });
  }

  // --- LISTEN / NOTIFY -----------------------------------------------------------

  /** Channels are namespaced by the schema, so deployments sharing a database stay apart. */
  private channelName(channel: string): string {
    const name = this.schema ? `${this.schema}.${channel}` : channel;
    if (channel.length === 0 || Buffer.byteLength(name) > 63) throw new TypeError('channel name must be 1 to 63 bytes (with the schema prefix)');
    return name;
  }

  /**
   * Subscribes `handler` to `channel` on a dedicated connection, which reconnects on
   * its own after a fault (handlers are then called with `null`: notifications sent in
   * between are lost). Rejects with UnavailableError when PostgreSQL cannot be reached.
   * Resolves to a function that unsubscribes.
   */
  async listen(channel: string, handler: NotificationHandler): Promise<() => Promise<void>> {
    const name = this.channelName(channel);
    if (this.closed) throw new UnavailableError('the store is closed');
    let set = this.channels.get(name);
    const isNew = !set;
    if (!set) {
      set = new Set();
      this.channels.set(name, set);
    }
    set.add(handler);
    try {
      const client = await this.connectListener();
      if (isNew) await client.query(`LISTEN ${quoteIdent(name)}`);
    } catch (err) {
      set.delete(handler);
      if (set.size === 0 && this.channels.get(name) === set) this.channels.delete(name);
      throw mapPgError(err);
    }
    return async () => {
      set.delete(handler);
      if (set.size > 0 || this.channels.get(name) !== set) return;
      this.channels.delete(name);
      await this.listener?.query(`UNLISTEN ${quoteIdent(name)}`).catch(() => undefined);
    };
  }

  /** Sends `payload` (at most ~8000 bytes) to every listener of `channel`, in any instance. */
  async notify(channel: string, payload: string): Promise<void> {
    await this.exec('SELECT pg_notify($1, $2)', [this.channelName(channel), payload]);
  }

  private connectListener(): Promise<pg.Client> {
    if (this.listener) return Promise.resolve(this.listener);
    if (this.listenerConnecting) return this.listenerConnecting;
    const attempt = (async () => {
      const client = new pg.Client(this.connectionConfig('writ-listen'));
      let lost = false;
      const onLost = (err?: Error) => {
        if (lost) return;
        lost = true;
        if (err) this.background(err);
        if (this.listener === client) this.listener = null;
        client.end().catch(() => undefined);
        this.scheduleReconnect();
      };
      client.on('error', (err) => onLost(err));
      client.on('end', () => onLost());
      client.on('notification', (msg) => {
        for (const h of this.channels.get(msg.channel) ?? []) {
          try {
            h(msg.payload ?? '');
          } catch (err) {
            this.background(asError(err));
          }
        }
      });
      try {
        await client.connect();
        for (const name of this.channels.keys()) await client.query(`LISTEN ${quoteIdent(name)}`);
      } catch (err) {
        lost = true; // not ours to reconnect: the caller decides
        client.removeAllListeners('end');
        client.on('error', () => undefined);
        await client.end().catch(() => undefined);
        throw err;
      }
      if (this.closed) {
        await client.end().catch(() => undefined);
        throw new UnavailableError('the store is closed');
      }
      this.listener = client;
      return client;
    })();
    this.listenerConnecting = attempt;
    const clear = () => {
      if (this.listenerConnecting === attempt) this.listenerConnecting = null;
    };
    attempt.then(clear, clear);
    return attempt;
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer || this.channels.size === 0) return;
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.reconnectAttempt, 6)) * (0.5 + Math.random());
    this.reconnectAttempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed || this.channels.size === 0) return;
      this.connectListener().then(
        () => {
          this.reconnectAttempt = 0;
          for (const set of this.channels.values()) {
            for (const h of set) {
              try {
                h(null);
              } catch (err) {
                this.background(asError(err));
              }
            }
          }
        },
        (err) => {
          this.background(asError(err));
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }
}

/**
 * Like libpq (psql), a connection string without a user name connects as the
 * operating-system user; `pg` would otherwise rely on $USER, which services often lack.
 */
export function withDefaultUser(connectionString: string): string {
  if (process.env.PGUSER || process.env.USER) return connectionString;
  try {
    const u = new URL(connectionString);
    if (u.username || !u.host) return connectionString;
    u.username = userInfo().username;
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

function asError(err: unknown): Error {
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
function auditWrite(out: AuditEntry[], first: number): { ctes: string; headUpdate: string; params: unknown[] } {
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
