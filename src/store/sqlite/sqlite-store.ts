import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
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
import { treeNodeKey, type AuditCheckpointRecord, type AuditFilter, type AuditTreeNode, type DecisionCommitResult, type DecisionWrite, type OutcomeWrite, type Store } from '../store.js';
import { SQLITE_MIGRATIONS } from './schema.js';
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

export interface SqliteStoreOptions {
  /** a file path, or `:memory:` */
  path: string;
  clock?: Clock;
  /** busy timeout for cross-process locking */
  busyTimeoutMs?: number;
}

type Row = Record<string, unknown>;

/**
 * The embedded store: better-sqlite3 in WAL mode with `synchronous=FULL`, so a
 * committed transaction survives power loss. Writes run in IMMEDIATE transactions,
 * which take SQLite's write lock up front: audit appends and conditional writes
 * are serialized even when several processes open the same file.
 */
export class SqliteStore implements Store {
  readonly backend = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly clock: Clock;
  private readonly stmts = new Map<string, Database.Statement>();

  constructor(options: SqliteStoreOptions) {
    this.clock = options.clock ?? systemClock;
    if (options.path !== ':memory:') prepareDatabaseFile(options.path);
    this.db = new Database(options.path);
    this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
  }

  private stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /** Runs `fn` in an IMMEDIATE transaction; maps driver faults to typed errors. */
  private write<T>(fn: () => T): T {
    // one transaction wrapper, built once: better-sqlite3's wrapper costs ~8 us to make
    this.runInTx ??= this.db.transaction((f: () => unknown) => f());
    return this.guard(() => this.runInTx!.immediate(fn) as T);
  }

  private runInTx: Database.Transaction<(f: () => unknown) => unknown> | undefined;

  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw mapSqliteError(err);
    }
  }

  async migrate(): Promise<void> {
    this.guard(() => {
      const tx = this.db.transaction(() => {
        const version = this.db.pragma('user_version', { simple: true }) as number;
        for (let v = version; v < SQLITE_MIGRATIONS.length; v++) {
          this.db.exec(SQLITE_MIGRATIONS[v]!);
          this.db.pragma(`user_version = ${v + 1}`);
        }
      });
      tx.immediate();
    });
  }

  async ping(): Promise<void> {
    this.guard(() => this.stmt('SELECT 1').get());
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  // --- audit chain -------------------------------------------------------------

  /** Must run inside a write transaction. */
  private appendInTx(inputs: AuditInput[]): AuditEntry[] {
    if (inputs.length === 0) return [];
    const head = this.stmt('SELECT seq, hash FROM audit_head WHERE id = 1').get() as { seq: number; hash: string } | undefined;
    let seq = head?.seq ?? 0;
    let prevHash = head?.hash ?? GENESIS_HASH;
    const ts = this.clock.now();
    const insert = this.stmt(
      'INSERT INTO audit (seq, ts, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
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
      insert.run(seq, ts, base.type, base.actor, base.taskId, base.agentId, base.decisionId, JSON.stringify(base.data), prevHash, hash);
      out.push({ ...base, hash });
      prevHash = hash;
    }
    this.stmt('INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash').run(seq, prevHash);
    return out;
  }

  async appendAudit(entries: AuditInput[]): Promise<AuditEntry[]> {
    return this.write(() => this.appendInTx(entries));
  }

  async listAudit(filter: AuditFilter): Promise<AuditEntry[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.taskId !== undefined) (where.push('task_id = ?'), params.push(filter.taskId));
    if (filter.agentId !== undefined) (where.push('agent_id = ?'), params.push(filter.agentId));
    if (filter.type !== undefined) (where.push('type = ?'), params.push(filter.type));
    if (filter.decisionId !== undefined) (where.push('decision_id = ?'), params.push(filter.decisionId));
    if (filter.after !== undefined) (where.push('seq > ?'), params.push(filter.after));
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 10_000);
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq ASC LIMIT ${limit}`;
    return this.guard(() => (this.db.prepare(sql).all(...params) as Row[]).map(toAuditEntry));
  }

  async auditHead(): Promise<{ seq: number; hash: string } | null> {
    const row = this.guard(() => this.stmt('SELECT seq, hash FROM audit_head WHERE id = 1').get() as { seq: number; hash: string } | undefined);
    return row ? { seq: Number(row.seq), hash: row.hash } : null;
  }

  // --- audit Merkle tree ------------------------------------------------------------

  async auditTreeSize(): Promise<number> {
    const row = this.guard(() => this.stmt('SELECT max(idx) AS m FROM audit_tree WHERE level = 0').get() as { m: number | null });
    return row.m === null ? 0 : Number(row.m) + 1;
  }

  async putAuditTreeNodes(nodes: AuditTreeNode[]): Promise<void> {
    if (nodes.length === 0) return;
    this.write(() => {
      const insert = this.stmt('INSERT INTO audit_tree (level, idx, hash) VALUES (?, ?, ?) ON CONFLICT (level, idx) DO NOTHING');
      for (const n of nodes) insert.run(n.level, n.index, n.hash);
    });
  }

  async getAuditTreeNodes(keys: Array<{ level: number; index: number }>): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    const get = this.stmt('SELECT hash FROM audit_tree WHERE level = ? AND idx = ?');
    this.guard(() => {
      for (const k of keys) {
        const row = get.get(k.level, k.index) as { hash: Buffer } | undefined;
        if (row) out.set(treeNodeKey(k.level, k.index), Buffer.from(row.hash));
      }
    });
    return out;
  }

  async putAuditCheckpoint(c: AuditCheckpointRecord): Promise<void> {
    this.write(() => {
      this.stmt('INSERT INTO audit_checkpoints (size, note, created_at) VALUES (?, ?, ?) ON CONFLICT (size) DO NOTHING').run(c.size, c.note, c.createdAt);
    });
  }

  async listAuditCheckpoints(afterSize: number, limit: number): Promise<AuditCheckpointRecord[]> {
    const rows = this.guard(
      () => this.stmt('SELECT size, note, created_at FROM audit_checkpoints WHERE size > ? ORDER BY size ASC LIMIT ?').all(afterSize, Math.min(Math.max(limit, 1), 1000)) as Row[],
    );
    return rows.map(toAuditCheckpoint);
  }

  async latestAuditCheckpoint(): Promise<AuditCheckpointRecord | null> {
    const r = this.guard(() => this.stmt('SELECT size, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1').get() as Row | undefined);
    return r ? toAuditCheckpoint(r) : null;
  }

  // --- operators ---------------------------------------------------------------

  private insertOperator(op: OperatorRecord): void {
    this.stmt('INSERT INTO operators (id, name, roles, token_hash, created_at, expires_at, rotated_at, disabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
      op.id, op.name, JSON.stringify(op.roles), op.tokenHash, op.createdAt, op.expiresAt, op.rotatedAt, op.disabled ? 1 : 0,
    );
  }

  async createOperator(op: OperatorRecord, audit: AuditInput): Promise<void> {
    this.write(() => {
      this.insertOperator(op);
      this.appendInTx([audit]);
    });
  }

  async bootstrapOperator(op: OperatorRecord, audit: AuditInput): Promise<boolean> {
    // IMMEDIATE: the write lock is held from the count to the insert, across processes too
    return this.write(() => {
      if (this.stmt('SELECT 1 FROM operators LIMIT 1').get()) return false;
      this.insertOperator(op);
      this.appendInTx([audit]);
      return true;
    });
  }

  async getOperator(id: string): Promise<OperatorRecord | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM operators WHERE id = ?').get(id) as Row | undefined);
    return row ? toOperator(row) : null;
  }

  async listOperators(): Promise<OperatorRecord[]> {
    return this.guard(() => (this.stmt('SELECT * FROM operators ORDER BY created_at, id').all() as Row[]).map(toOperator));
  }

  async disableOperator(id: string, now: number, audit: AuditInput): Promise<'disabled' | 'not_found' | 'already_disabled' | 'last_admin'> {
    return this.write(() => {
      const row = this.stmt('SELECT * FROM operators WHERE id = ?').get(id) as Row | undefined;
      if (!row) return 'not_found';
      const op = toOperator(row);
      if (op.disabled) return 'already_disabled';
      if (op.roles.includes('admin')) {
        const all = (this.stmt('SELECT * FROM operators WHERE disabled = 0').all() as Row[]).map(toOperator);
        if (workingAdmins(all, now, id).length === 0) return 'last_admin';
      }
      this.stmt('UPDATE operators SET disabled = 1 WHERE id = ?').run(id);
      this.appendInTx([audit]);
      return 'disabled';
    });
  }

  async rotateOperatorToken(id: string, tokenHash: string, expiresAt: number, now: number, audit: AuditInput): Promise<OperatorRecord | null> {
    return this.write(() => {
      const r = this.stmt('UPDATE operators SET token_hash = ?, expires_at = ?, rotated_at = ? WHERE id = ? AND disabled = 0').run(tokenHash, expiresAt, now, id);
      if (r.changes === 0) return null;
      this.appendInTx([audit]);
      return toOperator(this.stmt('SELECT * FROM operators WHERE id = ?').get(id) as Row);
    });
  }

  async findOperatorByTokenHash(tokenHash: string): Promise<OperatorRecord | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM operators WHERE token_hash = ?').get(tokenHash) as Row | undefined);
    return row ? toOperator(row) : null;
  }

  async countOperators(): Promise<number> {
    return this.guard(() => Number((this.stmt('SELECT count(*) AS n FROM operators').get() as { n: number }).n));
  }

  // --- agents ------------------------------------------------------------------

  async createAgent(agent: AgentRecord, audit: AuditInput): Promise<void> {
    this.write(() => {
      const exists = this.stmt('SELECT 1 FROM agents WHERE id = ?').get(agent.id);
      if (exists) throw new ConflictError(`agent \`${agent.id}\` already exists`, 'agent_exists');
      this.stmt('INSERT INTO agents (id, name, jwks, labels, status, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
        agent.id, agent.name, JSON.stringify(agent.jwks), JSON.stringify(agent.labels), agent.status, agent.createdAt, agent.createdBy,
      );
      this.appendInTx([audit]);
    });
  }

  async getAgent(id: string): Promise<AgentRecord | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM agents WHERE id = ?').get(id) as Row | undefined);
    return row ? toAgent(row) : null;
  }

  async listAgents(): Promise<AgentRecord[]> {
    return this.guard(() => (this.stmt('SELECT * FROM agents ORDER BY created_at, id').all() as Row[]).map((r) => toAgent(r)));
  }

  async disableAgent(id: string, now: number, audit: AuditInput): Promise<{ revokedTaskIds: string[] } | null> {
    return this.write(() => {
      const row = this.stmt('SELECT status FROM agents WHERE id = ?').get(id) as { status: string } | undefined;
      if (!row) return null;
      this.stmt(`UPDATE agents SET status = 'disabled' WHERE id = ?`).run(id);
      this.appendInTx([audit]);
      const held = this.stmt(`SELECT id FROM tasks WHERE agent_id = ? AND status = 'active' ORDER BY created_at`).all(id) as { id: string }[];
      const revoked: string[] = [];
      for (const t of held) {
        revoked.push(...this.endInTx(t.id, 'revoked', now, { type: 'task.revoked', actor: audit.actor, taskId: t.id, agentId: id, data: { reason: 'agent_disabled' } }));
      }
      return { revokedTaskIds: revoked };
    });
  }

  // --- tasks -------------------------------------------------------------------

  async createTask(task: TaskRecord, audit: AuditInput, options: { presence?: PresenceLease } = {}): Promise<void> {
    this.write(() => {
      if (task.parentId !== null) {
        // Reserve the child's budget from the parent atomically (delegation only narrows).
        const r = this.stmt(
          `UPDATE tasks SET actions_reserved = actions_reserved + ? WHERE id = ? AND status = 'active' AND expires_at > ? AND actions_used + actions_reserved + ? <= max_actions`,
        ).run(task.maxActions, task.parentId, task.createdAt, task.maxActions);
        if (r.changes !== 1) throw new ConflictError('the parent task is not active or has not enough budget left', 'parent_budget_exhausted');
      }
      this.stmt(
        `INSERT INTO tasks (id, agent_id, owner, intent, scope, status, created_at, expires_at, ended_at, max_actions, actions_used, actions_reserved, parent_id, root_id, depth)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(...taskParams(task));
      if (options.presence) {
        const p = options.presence;
        this.stmt('INSERT INTO presence_leases (task_id, owner, expires_at, renewed_at) VALUES (?, ?, ?, ?)').run(p.taskId, p.owner, p.expiresAt, p.renewedAt);
      }
      this.appendInTx([audit]);
    });
  }

  async getTask(id: string): Promise<TaskRecord | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM tasks WHERE id = ?').get(id) as Row | undefined);
    return row ? toTask(row) : null;
  }

  async getTaskWithAgent(id: string): Promise<{ task: TaskRecord; agent: AgentRecord } | null> {
    const row = this.guard(
      () =>
        this.stmt(
          `SELECT t.*, a.id AS a_id, a.name AS a_name, a.jwks AS a_jwks, a.labels AS a_labels, a.status AS a_status,
                  a.created_at AS a_created_at, a.created_by AS a_created_by
           FROM tasks t JOIN agents a ON a.id = t.agent_id WHERE t.id = ?`,
        ).get(id) as Row | undefined,
    );
    return row ? { task: toTask(row), agent: toAgent(row, 'a_') } : null;
  }

  async listTasks(filter: { agentId?: string; status?: TaskStatus; parentId?: string; limit?: number }): Promise<TaskRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.agentId !== undefined) (where.push('agent_id = ?'), params.push(filter.agentId));
    if (filter.status !== undefined) (where.push('status = ?'), params.push(filter.status));
    if (filter.parentId !== undefined) (where.push('parent_id = ?'), params.push(filter.parentId));
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 10_000);
    const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT ${limit}`;
    return this.guard(() => (this.db.prepare(sql).all(...params) as Row[]).map(toTask));
  }

  /** Ends `id` and its active descendants; returns the ended ids, `id` first. */
  private endInTx(id: string, status: 'completed' | 'revoked' | 'expired', now: number, audit: AuditInput): string[] {
    const self = this.stmt(`SELECT * FROM tasks WHERE id = ?`).get(id) as Row | undefined;
    if (!self || self.status !== 'active') return [];
    const descendants = this.stmt(
      `WITH RECURSIVE sub(id) AS (SELECT id FROM tasks WHERE parent_id = ? UNION ALL SELECT t.id FROM tasks t JOIN sub ON t.parent_id = sub.id)
       SELECT tasks.* FROM tasks JOIN sub ON sub.id = tasks.id WHERE tasks.status = 'active' ORDER BY tasks.depth`,
    ).all(id) as Row[];
    const setStatus = this.stmt(`UPDATE tasks SET status = ?, ended_at = ? WHERE id = ? AND status = 'active'`);
    const settleParent = this.stmt(
      `UPDATE tasks SET actions_reserved = actions_reserved - ?, actions_used = actions_used + ? WHERE id = ?`,
    );
    const current = this.stmt('SELECT parent_id, max_actions, actions_used FROM tasks WHERE id = ?');
    const ended: string[] = [];
    const audits: AuditInput[] = [];
    const end = (row: Row, st: string, entry: AuditInput) => {
      setStatus.run(st, now, row.id);
      ended.push(row.id as string);
      audits.push(entry);
    };
    end(self, status, audit);
    for (const d of descendants) {
      end(d, 'revoked', {
        type: 'task.revoked',
        actor: 'system',
        taskId: d.id as string,
        agentId: d.agent_id as string,
        data: { reason: 'ancestor_ended', ancestor: id, ancestor_status: status },
      });
    }
    // A child's unused budget returns to its parent; what it used stays spent there.
    // Deepest first, reading each row afresh, so that what a grandchild used is
    // already in its parent's count when that parent settles with its own parent.
    for (const taskId of [...ended].reverse()) {
      const t = current.get(taskId) as Row;
      if (t.parent_id) settleParent.run(Number(t.max_actions), Math.min(Number(t.actions_used), Number(t.max_actions)), t.parent_id);
    }
    this.appendInTx(audits);
    return ended;
  }

  async endTask(id: string, status: 'completed' | 'revoked' | 'expired', now: number, audit: AuditInput): Promise<string[]> {
    return this.write(() => this.endInTx(id, status, now, audit));
  }

  async expireTasks(now: number): Promise<string[]> {
    return this.write(() => {
      const due = this.stmt(`SELECT id, agent_id, expires_at FROM tasks WHERE status = 'active' AND expires_at <= ? ORDER BY depth`).all(now) as Row[];
      const ended: string[] = [];
      for (const t of due) {
        ended.push(
          ...this.endInTx(t.id as string, 'expired', now, {
            type: 'task.expired',
            actor: 'system',
            taskId: t.id as string,
            agentId: t.agent_id as string,
            data: { expires_at: Number(t.expires_at) },
          }),
        );
      }
      return ended;
    });
  }

  // --- one-time identifiers ----------------------------------------------------

  async useOnce(key: string, expiresAt: number, audit: AuditInput | null): Promise<boolean> {
    return this.write(() => {
      const r = this.stmt('INSERT INTO once_keys (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING').run(key, expiresAt);
      if (r.changes !== 1) return false;
      if (audit) this.appendInTx([audit]);
      return true;
    });
  }

  async purgeExpiredOnce(now: number): Promise<number> {
    return this.write(
      () => this.stmt('DELETE FROM once_keys WHERE expires_at < ?').run(now).changes + this.stmt('DELETE FROM federated_tokens WHERE expires_at < ?').run(now).changes,
    );
  }

  // --- decisions ---------------------------------------------------------------

  async commitDecisions(items: DecisionWrite[], now: number): Promise<DecisionCommitResult[]> {
    return this.write(() => {
      const take = this.stmt(
        `UPDATE tasks SET actions_used = actions_used + 1
         WHERE id = ? AND status = 'active' AND expires_at > ? AND actions_used + actions_reserved < max_actions`,
      );
      const state = this.stmt('SELECT status, expires_at FROM tasks WHERE id = ?');
      const insert = this.stmt(
        `INSERT INTO decisions (id, task_id, agent_id, tool, audience, resource, destination, args_digest, decision, reasons, policies, policy_version, token_jti, token_expires_at, created_at, outcome)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      const approvalState = this.stmt('SELECT status, expires_at FROM approvals WHERE id = ?');
      const useApproval = this.stmt(`UPDATE approvals SET status = 'used', used_at = ?, used_decision_id = ? WHERE id = ? AND status = 'approved' AND expires_at > ?`);
      const breakGlassState = this.stmt('SELECT status, ends_at FROM break_glass WHERE id = ?');
      const results: DecisionCommitResult[] = [];
      const audits: AuditInput[] = [];
      for (const item of items) {
        let decision = item.decision;
        let audit = item.audit;
        let result: DecisionCommitResult = { written: 'primary' };
        // An approval is checked before the budget is taken: a used or expired one takes nothing.
        const a = item.approval ? (approvalState.get(item.approval.id) as { status: string; expires_at: number } | undefined) : undefined;
        if (item.approval && !(a && a.status === 'approved' && Number(a.expires_at) > now)) {
          if (!item.fallback) throw new TypeError('a decision write that uses an approval needs a fallback');
          result = { written: 'fallback', reason: 'approval_unavailable' };
          ({ decision, audit } = item.fallback('approval_unavailable'));
        } else if (item.breakGlass && !breakGlassActive(breakGlassState.get(item.breakGlass.id) as { status: string; ends_at: number | null } | undefined, now)) {
          // the write transaction is exclusive: an end or expiry commits wholly before or after this
          if (!item.fallback) throw new TypeError('a decision write under break-glass needs a fallback');
          result = { written: 'fallback', reason: 'break_glass_inactive' };
          ({ decision, audit } = item.fallback('break_glass_inactive'));
        } else if (item.guard) {
          const r = take.run(item.guard.taskId, now);
          if (r.changes !== 1) {
            if (!item.fallback) throw new TypeError('a guarded decision write needs a fallback');
            const s = state.get(item.guard.taskId) as { status: string; expires_at: number } | undefined;
            const reason = !s || s.status !== 'active' || Number(s.expires_at) <= now ? 'task_inactive' : 'budget_exhausted';
            result = { written: 'fallback', reason };
            ({ decision, audit } = item.fallback(reason));
          }
        }
        insert.run(...decisionParams(decision));
        audits.push(audit);
        if (item.approval && result.written === 'primary') {
          useApproval.run(now, decision.id, item.approval.id, now);
          audits.push(item.approval.audit);
        }
        results.push(result);
      }
      this.appendInTx(audits);
      return results;
    });
  }

  async commitWrites(decisions: DecisionWrite[], outcomes: OutcomeWrite[], now: number): Promise<{ decisions: DecisionCommitResult[]; outcomes: (boolean | 'failed')[] }> {
    let written: Promise<DecisionCommitResult[]> = Promise.resolve([]);
    const set = this.write(() => {
      const update = this.stmt('UPDATE decisions SET outcome = ? WHERE id = ? AND outcome IS NULL');
      const audits: AuditInput[] = [];
      const applied = outcomes.map((o) => {
        if (update.run(o.outcome, o.decisionId).changes !== 1) return false;
        audits.push(o.audit);
        return true;
      });
      this.appendInTx(audits);
      // nested in this transaction (better-sqlite3 makes it a savepoint): one commit, one
      // fsync for both; a failed batch of decisions rolls back alone and rejects `written`
      if (decisions.length > 0) written = this.commitDecisions(decisions, now);
      return applied;
    });
    return { decisions: await written, outcomes: set };
  }

  async getDecision(id: string): Promise<DecisionRecord | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM decisions WHERE id = ?').get(id) as Row | undefined);
    return row ? toDecision(row) : null;
  }

  async listDecisions(taskId: string): Promise<DecisionRecord[]> {
    return this.guard(() => (this.stmt('SELECT * FROM decisions WHERE task_id = ? ORDER BY created_at, id').all(taskId) as Row[]).map(toDecision));
  }

  async recordOutcome(decisionId: string, outcome: 'succeeded' | 'failed', audit: AuditInput): Promise<boolean> {
    return this.write(() => {
      const r = this.stmt('UPDATE decisions SET outcome = ? WHERE id = ? AND outcome IS NULL').run(outcome, decisionId);
      if (r.changes !== 1) return false;
      this.appendInTx([audit]);
      return true;
    });
  }

  // --- policies ----------------------------------------------------------------

  async putPolicy(policy: PolicyRecord, audit: AuditInput, options: { ifActive?: string; promote?: string } = {}): Promise<void> {
    this.write(() => {
      if (options.ifActive !== undefined) {
        const row = this.stmt('SELECT version FROM policy_active WHERE id = 1').get() as { version: string } | undefined;
        if (row?.version !== options.ifActive) throw policyMoved(options.ifActive, row?.version ?? null);
      }
      if (options.promote !== undefined) {
        const row = this.stmt('SELECT version FROM policy_shadow WHERE id = 1').get() as { version: string } | undefined;
        if (row?.version !== options.promote) throw shadowMoved(options.promote, row?.version ?? null);
        this.stmt('DELETE FROM policy_shadow WHERE id = 1').run();
      }
      this.stmt('INSERT INTO policies (version, text, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING').run(
        policy.version, policy.text, policy.createdAt, policy.createdBy,
      );
      this.stmt('INSERT INTO policy_active (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version').run(policy.version);
      this.appendInTx([audit]);
    });
  }

  async getPolicy(version: string): Promise<PolicyRecord | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM policies WHERE version = ?').get(version) as Row | undefined);
    return row ? toPolicy(row) : null;
  }

  async installFirstPolicy(policy: PolicyRecord, audit: AuditInput): Promise<boolean> {
    return this.write(() => {
      if (this.stmt('SELECT 1 FROM policy_active WHERE id = 1').get()) return false;
      this.stmt('INSERT INTO policies (version, text, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING').run(
        policy.version, policy.text, policy.createdAt, policy.createdBy,
      );
      this.stmt('INSERT INTO policy_active (id, version) VALUES (1, ?)').run(policy.version);
      this.appendInTx([audit]);
      return true;
    });
  }

  async getActivePolicy(): Promise<PolicyRecord | null> {
    const row = this.guard(
      () => this.stmt('SELECT p.* FROM policy_active a JOIN policies p ON p.version = a.version WHERE a.id = 1').get() as Row | undefined,
    );
    return row ? toPolicy(row) : null;
  }

  // --- shadow candidate (src/service/policy-shadow.ts) ------------------------------

  private shadowMatches(ifShadow: string | undefined): void {
    if (ifShadow === undefined) return;
    const row = this.stmt('SELECT version FROM policy_shadow WHERE id = 1').get() as { version: string } | undefined;
    if (row?.version !== ifShadow) throw shadowMoved(ifShadow, row?.version ?? null);
  }

  async putShadowPolicy(policy: PolicyRecord, audit: AuditInput, options: { ifShadow?: string } = {}): Promise<void> {
    this.write(() => {
      this.shadowMatches(options.ifShadow);
      this.stmt('INSERT INTO policies (version, text, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING').run(
        policy.version, policy.text, policy.createdAt, policy.createdBy,
      );
      this.stmt(
        'INSERT INTO policy_shadow (id, version, set_at, set_by) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version, set_at = excluded.set_at, set_by = excluded.set_by',
      ).run(policy.version, policy.createdAt, policy.createdBy);
      this.appendInTx([audit]);
    });
  }

  async getShadowPolicy(): Promise<ShadowPolicyRecord | null> {
    const row = this.guard(
      () => this.stmt('SELECT p.version, p.text, s.set_at, s.set_by FROM policy_shadow s JOIN policies p ON p.version = s.version WHERE s.id = 1').get() as Row | undefined,
    );
    return row ? toShadowPolicy(row) : null;
  }

  async dropShadowPolicy(audit: AuditInput, options: { ifShadow?: string } = {}): Promise<boolean> {
    return this.write(() => {
      this.shadowMatches(options.ifShadow);
      if (this.stmt('DELETE FROM policy_shadow WHERE id = 1').run().changes !== 1) return false;
      this.appendInTx([audit]);
      return true;
    });
  }

  async recordShadowDecisions(rows: ShadowDecisionRecord[]): Promise<void> {
    if (rows.length === 0) return;
    this.write(() => {
      const ins = this.stmt('INSERT INTO shadow_decisions (decision_id, candidate_version, decision, reasons, policies, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (decision_id) DO NOTHING');
      for (const r of rows) ins.run(...shadowDecisionParams(r));
    });
  }

  async listShadowDecisions(filter: { candidateVersion: string; since?: number; limit: number }): Promise<Array<{ shadow: ShadowDecisionRecord; live: DecisionRecord }>> {
    const sql = SHADOW_PAIRS_SQL.replace('{1}', '?').replace('{2}', '?').replace('{3}', '?');
    return this.guard(() => (this.stmt(sql).all(filter.candidateVersion, filter.since ?? 0, filter.limit) as Row[]).map(toShadowPair));
  }

  // --- signing keys ------------------------------------------------------------

  async listSigningKeys(): Promise<SigningKeyRecord[]> {
    return this.guard(() => (this.stmt('SELECT * FROM signing_keys ORDER BY created_at, kid').all() as Row[]).map(toSigningKey));
  }

  async rotateSigningKeys(key: SigningKeyRecord, retireAt: number, audit: AuditInput): Promise<void> {
    this.write(() => {
      this.stmt('UPDATE signing_keys SET rotated_at = ?, retired_at = ? WHERE rotated_at IS NULL').run(key.createdAt, retireAt);
      this.stmt('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)').run(
        key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
      );
      this.appendInTx([audit]);
    });
  }

  async addSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<void> {
    this.write(() => {
      this.stmt('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)').run(
        key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
      );
      this.appendInTx([audit]);
    });
  }

  async addFirstSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<boolean> {
    return this.write(() => {
      if (this.stmt('SELECT 1 FROM signing_keys WHERE rotated_at IS NULL LIMIT 1').get()) return false;
      this.stmt('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)').run(
        key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
      );
      this.appendInTx([audit]);
      return true;
    });
  }

  // --- checkpoint keys -------------------------------------------------------------

  async listCheckpointKeys(): Promise<CheckpointKeyRecord[]> {
    return this.guard(() => (this.stmt('SELECT * FROM checkpoint_keys ORDER BY created_at, kid').all() as Row[]).map(toCheckpointKey));
  }

  async addFirstCheckpointKey(key: CheckpointKeyRecord, audit: AuditInput): Promise<boolean> {
    return this.write(() => {
      if (this.stmt('SELECT 1 FROM checkpoint_keys LIMIT 1').get()) return false;
      this.stmt('INSERT INTO checkpoint_keys (kid, public_jwk, private_jwk, created_at) VALUES (?, ?, ?, ?)').run(
        key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt,
      );
      this.appendInTx([audit]);
      return true;
    });
  }

  // --- tool labels ---------------------------------------------------------------

  async putToolLabels(record: ToolLabelsRecord, audit: AuditInput): Promise<void> {
    this.write(() => {
      if (record.labels.length === 0) this.stmt('DELETE FROM tool_labels WHERE pattern = ?').run(record.pattern);
      else {
        this.stmt(
          `INSERT INTO tool_labels (pattern, labels, updated_at, updated_by) VALUES (?, ?, ?, ?)
           ON CONFLICT (pattern) DO UPDATE SET labels = excluded.labels, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
        ).run(record.pattern, JSON.stringify(record.labels), record.updatedAt, record.updatedBy);
      }
      this.appendInTx([audit]);
    });
  }

  async listToolLabels(): Promise<ToolLabelsRecord[]> {
    return this.guard(() => (this.stmt('SELECT * FROM tool_labels ORDER BY pattern').all() as Row[]).map(toToolLabels));
  }

  // --- trusted issuers (federation) ----------------------------------------------

  async createIssuer(issuer: IssuerRecord, audit: AuditInput): Promise<void> {
    this.write(() => {
      if (issuer.status === 'active' && this.stmt(`SELECT 1 FROM trusted_issuers WHERE issuer = ? AND status = 'active'`).get(issuer.issuer)) {
        throw new ConflictError(`issuer \`${issuer.issuer}\` is registered already`, 'issuer_exists');
      }
      this.stmt(`INSERT INTO trusted_issuers (${ISSUER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...issuerParams(issuer));
      this.appendInTx([audit]);
    });
  }

  async getIssuer(id: string): Promise<IssuerRecord | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM trusted_issuers WHERE id = ?').get(id) as Row | undefined);
    return row ? toIssuer(row) : null;
  }

  async findActiveIssuer(issuer: string): Promise<IssuerRecord | null> {
    const row = this.guard(() => this.stmt(`SELECT * FROM trusted_issuers WHERE issuer = ? AND status = 'active'`).get(issuer) as Row | undefined);
    return row ? toIssuer(row) : null;
  }

  async listIssuers(): Promise<IssuerRecord[]> {
    return this.guard(() => (this.stmt('SELECT * FROM trusted_issuers ORDER BY created_at, id').all() as Row[]).map(toIssuer));
  }

  async disableIssuer(
    id: string,
    now: number,
    options: { revokeIssued: boolean },
    audit: (revoked: { tokens: number; taskIds: string[] }) => AuditInput,
  ): Promise<{ revokedTokens: number; taskIds: string[] } | null> {
    return this.write(() => {
      const r = this.stmt(`UPDATE trusted_issuers SET status = 'disabled', disabled_at = ? WHERE id = ? AND status = 'active'`).run(now, id);
      if (r.changes !== 1) return null;
      let revoked: { jti: string; task_id: string }[] = [];
      if (options.revokeIssued) {
        revoked = this.stmt(
          `UPDATE federated_tokens SET revoked_at = ?
           WHERE issuer_id = ? AND revoked_at IS NULL AND expires_at > ?
             AND task_id IN (SELECT id FROM tasks WHERE status = 'active' AND expires_at > ?)
           RETURNING jti, task_id`,
        ).all(now, id, now, now) as { jti: string; task_id: string }[];
      }
      const taskIds = [...new Set(revoked.map((t) => t.task_id))].sort();
      this.appendInTx([audit({ tokens: revoked.length, taskIds })]);
      return { revokedTokens: revoked.length, taskIds };
    });
  }

  async recordFederatedToken(
    token: FederatedTokenRecord,
    replay: { key: string; expiresAt: number; spentAs?: string[] } | null,
    audit: AuditInput,
  ): Promise<'recorded' | 'replayed' | 'issuer_inactive'> {
    return this.write(() => {
      // IMMEDIATE: a removal is either fully before (seen here) or fully after (revokes this row)
      if (!this.stmt(`SELECT 1 FROM trusted_issuers WHERE id = ? AND status = 'active'`).get(token.issuerId)) return 'issuer_inactive';
      if (replay) {
        for (const k of replay.spentAs ?? []) if (this.stmt('SELECT 1 FROM once_keys WHERE key = ?').get(k)) return 'replayed';
        const r = this.stmt('INSERT INTO once_keys (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING').run(replay.key, replay.expiresAt);
        if (r.changes !== 1) return 'replayed';
      }
      this.stmt(`INSERT INTO federated_tokens (${FEDERATED_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`).run(...federatedTokenParams(token));
      this.appendInTx([audit]);
      return 'recorded';
    });
  }

  async getFederatedToken(jti: string): Promise<FederatedTokenRecord | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM federated_tokens WHERE jti = ?').get(jti) as Row | undefined);
    return row ? toFederatedToken(row) : null;
  }

  // --- approvals -----------------------------------------------------------------

  private approvalRow(id: string): ApprovalRecord | null {
    const row = this.stmt('SELECT * FROM approvals WHERE id = ?').get(id) as Row | undefined;
    if (!row) return null;
    const reviews = (this.stmt('SELECT * FROM approval_reviews WHERE approval_id = ? ORDER BY created_at, approver').all(id) as Row[]).map(toReview);
    return toApproval(row, reviews);
  }

  async createApproval(approval: ApprovalRecord, decision: DecisionRecord, audit: AuditInput[], limits?: OpenApprovalLimits): Promise<ApprovalCreateResult> {
    return this.write((): ApprovalCreateResult => {
      // inside the write transaction: no other connection or process writes between the count and the insert
      if (limits) {
        const open = `SELECT count(*) AS n FROM approvals WHERE status IN ('pending', 'approved') AND expires_at > ?`;
        const byTask = Number((this.stmt(`${open} AND task_id = ?`).get(limits.now, approval.taskId) as { n: number }).n);
        if (byTask >= limits.maxOpenPerTask) return { ok: false, limit: 'task', open: byTask };
        const byAgent = Number((this.stmt(`${open} AND agent_id = ?`).get(limits.now, approval.agentId) as { n: number }).n);
        if (byAgent >= limits.maxOpenPerAgent) return { ok: false, limit: 'agent', open: byAgent };
      }
      this.stmt(
        `INSERT INTO decisions (id, task_id, agent_id, tool, audience, resource, destination, args_digest, decision, reasons, policies, policy_version, token_jti, token_expires_at, created_at, outcome)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(...decisionParams(decision));
      this.stmt(`INSERT INTO approvals (${APPROVAL_COLUMNS.join(', ')}) VALUES (${APPROVAL_COLUMNS.map(() => '?').join(', ')})`).run(
        ...approvalParams(approval, (b) => (b ? 1 : 0)),
      );
      const review = this.stmt('INSERT INTO approval_reviews (approval_id, approver, verdict, comment, created_at) VALUES (?, ?, ?, ?, ?)');
      for (const r of approval.reviews) review.run(approval.id, r.approver, r.verdict, r.comment, r.at);
      this.appendInTx(audit);
      return { ok: true };
    });
  }

  async getApproval(id: string): Promise<ApprovalRecord | null> {
    return this.guard(() => this.approvalRow(id));
  }

  async findOpenApproval(taskId: string, actionDigest: string, now: number): Promise<ApprovalRecord | null> {
    return this.guard(() => {
      const row = this.stmt(
        `SELECT id FROM approvals WHERE task_id = ? AND action_digest = ? AND status IN ('pending', 'approved') AND expires_at > ?
         ORDER BY created_at DESC LIMIT 1`,
      ).get(taskId, actionDigest, now) as { id: string } | undefined;
      return row ? this.approvalRow(row.id) : null;
    });
  }

  async listApprovals(filter: { status?: ApprovalStatus; taskId?: string; limit?: number }): Promise<ApprovalRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.status !== undefined) (where.push('status = ?'), params.push(filter.status));
    if (filter.taskId !== undefined) (where.push('task_id = ?'), params.push(filter.taskId));
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
    const sql = `SELECT id FROM approvals ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT ${limit}`;
    return this.guard(() => (this.db.prepare(sql).all(...params) as { id: string }[]).map((r) => this.approvalRow(r.id)!));
  }

  async reviewApproval(
    id: string,
    review: ApprovalReview,
    options: { approvedTtlMs: number; rule?: ApprovalRule },
    audit: (after: ApprovalRecord) => AuditInput[],
  ): Promise<ApprovalReviewResult> {
    return this.write(() => {
      const a = this.approvalRow(id);
      if (!a) return { ok: false, reason: 'not_found', approval: null };
      if (a.status !== 'pending' || a.expiresAt <= review.at) return { ok: false, reason: 'not_pending', approval: a };
      if (a.reviews.some((r) => r.approver === review.approver)) return { ok: false, reason: 'already_reviewed', approval: a };
      this.stmt('INSERT INTO approval_reviews (approval_id, approver, verdict, comment, created_at) VALUES (?, ?, ?, ?, ?)').run(
        id, review.approver, review.verdict, review.comment, review.at,
      );
      const after = settleReview(a, review, options.approvedTtlMs, options.rule);
      if (after.status !== a.status || after.quorum !== a.quorum || after.fourEyes !== a.fourEyes) {
        this.stmt(`UPDATE approvals SET status = ?, settled_at = ?, expires_at = ?, quorum = ?, four_eyes = ? WHERE id = ? AND status = 'pending'`).run(
          after.status, after.settledAt, after.expiresAt, after.quorum, after.fourEyes ? 1 : 0, id,
        );
      }
      this.appendInTx(audit(after));
      return { ok: true, approval: after };
    });
  }

  async expireApprovals(now: number, ids?: string[]): Promise<ApprovalRecord[]> {
    if (ids && ids.length === 0) return [];
    return this.write(() => {
      const only = ids ? ` AND id IN (${ids.map(() => '?').join(', ')})` : '';
      const due = this.db
        .prepare(`SELECT id FROM approvals WHERE status IN ('pending', 'approved') AND expires_at <= ?${only} ORDER BY created_at, id`)
        .all(now, ...(ids ?? [])) as { id: string }[];
      const set = this.stmt(`UPDATE approvals SET status = 'expired', settled_at = ? WHERE id = ? AND status IN ('pending', 'approved')`);
      const out: ApprovalRecord[] = [];
      const audits: AuditInput[] = [];
      for (const { id } of due) {
        const before = this.approvalRow(id)!;
        set.run(now, id);
        audits.push(approvalExpiredAudit(before, now));
        out.push({ ...before, status: 'expired', settledAt: now });
      }
      this.appendInTx(audits);
      return out;
    });
  }

  // --- break-glass -----------------------------------------------------------------

  private breakGlassRow(id: string): BreakGlassRecord | null {
    const row = this.stmt('SELECT * FROM break_glass WHERE id = ?').get(id) as Row | undefined;
    return row ? toBreakGlass(row) : null;
  }

  /** A pending or active break-glass of the agent, other than `except`. */
  private blockingBreakGlass(agentId: string, now: number, except: string): BreakGlassRecord | null {
    const row = this.stmt(
      `SELECT * FROM break_glass WHERE agent_id = ? AND id <> ?
         AND ((status = 'active' AND ends_at > ?) OR (status = 'pending' AND confirm_deadline > ?))
       ORDER BY created_at LIMIT 1`,
    ).get(agentId, except, now, now) as Row | undefined;
    return row ? toBreakGlass(row) : null;
  }

  private fitsCap(agentId: string, except: string, start: number, durationMs: number, capMs: number): boolean {
    const prior = this.stmt(
      `SELECT starts_at, ends_at FROM break_glass WHERE agent_id = ? AND id <> ? AND starts_at IS NOT NULL AND ends_at > ?`,
    ).all(agentId, except, start - capMs) as Row[];
    return fitsBreakGlassCap(prior.map((p) => ({ startsAt: Number(p.starts_at), endsAt: Number(p.ends_at) })), start, durationMs, capMs);
  }

  async createBreakGlass(record: BreakGlassRecord, options: { capMs: number; now: number }, audit: AuditInput): Promise<BreakGlassResult> {
    return this.write((): BreakGlassResult => {
      const blocking = this.blockingBreakGlass(record.agentId, options.now, record.id);
      if (blocking) return { ok: false, reason: 'already_active', record: blocking };
      if (!this.fitsCap(record.agentId, record.id, record.startsAt ?? options.now, record.durationMs, options.capMs)) {
        return { ok: false, reason: 'cap_exceeded', record: null };
      }
      this.stmt(`INSERT INTO break_glass (${BREAK_GLASS_COLUMNS.join(', ')}) VALUES (${BREAK_GLASS_COLUMNS.map(() => '?').join(', ')})`).run(
        ...breakGlassParams(record),
      );
      this.appendInTx([audit]);
      return { ok: true, record };
    });
  }

  async confirmBreakGlass(id: string, by: string, options: { capMs: number; now: number }, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    const { now, capMs } = options;
    return this.write((): BreakGlassResult => {
      const r = this.breakGlassRow(id);
      if (!r) return { ok: false, reason: 'not_found', record: null };
      if (r.status !== 'pending' || (r.confirmDeadline ?? 0) <= now) return { ok: false, reason: 'not_pending', record: r };
      if (r.requestedBy === by) return { ok: false, reason: 'same_admin', record: r };
      const blocking = this.blockingBreakGlass(r.agentId, now, r.id);
      if (blocking) return { ok: false, reason: 'already_active', record: blocking };
      if (!this.fitsCap(r.agentId, r.id, now, r.durationMs, capMs)) return { ok: false, reason: 'cap_exceeded', record: r };
      const after: BreakGlassRecord = { ...r, status: 'active', confirmedBy: by, startsAt: now, endsAt: now + r.durationMs };
      this.stmt(`UPDATE break_glass SET status = 'active', confirmed_by = ?, starts_at = ?, ends_at = ? WHERE id = ? AND status = 'pending'`).run(
        by, after.startsAt, after.endsAt, id,
      );
      this.appendInTx([audit(after)]);
      return { ok: true, record: after };
    });
  }

  async endBreakGlass(id: string, by: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    return this.write((): BreakGlassResult => {
      const r = this.breakGlassRow(id);
      if (!r) return { ok: false, reason: 'not_found', record: null };
      let after: BreakGlassRecord;
      if (r.status === 'active' && (r.endsAt ?? 0) > now) after = { ...r, status: 'ended', endsAt: now, endedAt: now, endedBy: by };
      else if (r.status === 'pending' && (r.confirmDeadline ?? 0) > now) after = { ...r, status: 'cancelled', endedAt: now, endedBy: by };
      else return { ok: false, reason: 'not_active', record: r };
      this.stmt(`UPDATE break_glass SET status = ?, ends_at = ?, ended_at = ?, ended_by = ? WHERE id = ? AND status = ?`).run(
        after.status, after.endsAt, after.endedAt, by, id, r.status,
      );
      this.appendInTx([audit(after)]);
      return { ok: true, record: after };
    });
  }

  async reviewBreakGlass(id: string, by: string, notes: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    return this.write((): BreakGlassResult => {
      const r = this.breakGlassRow(id);
      if (!r) return { ok: false, reason: 'not_found', record: null };
      if ((r.status === 'active' && (r.endsAt ?? 0) > now) || (r.status === 'pending' && (r.confirmDeadline ?? 0) > now)) {
        return { ok: false, reason: 'still_active', record: r };
      }
      if (r.reviewedAt !== null) return { ok: false, reason: 'already_reviewed', record: r };
      const after: BreakGlassRecord = { ...r, reviewedBy: by, reviewedAt: now, reviewNotes: notes };
      this.stmt('UPDATE break_glass SET reviewed_by = ?, reviewed_at = ?, review_notes = ? WHERE id = ? AND reviewed_at IS NULL').run(by, now, notes, id);
      this.appendInTx([audit(after)]);
      return { ok: true, record: after };
    });
  }

  async getBreakGlass(id: string): Promise<BreakGlassRecord | null> {
    return this.guard(() => this.breakGlassRow(id));
  }

  async listBreakGlass(filter: { state?: 'active' | 'pending' | 'ended' | 'unreviewed'; agentId?: string; now: number; limit?: number }): Promise<BreakGlassRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.state !== undefined) {
      const parts = breakGlassStateWhere(filter.state).split(':now');
      where.push(parts.join('?'));
      for (let i = 1; i < parts.length; i++) params.push(filter.now);
    }
    if (filter.agentId !== undefined) (where.push('agent_id = ?'), params.push(filter.agentId));
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
    const sql = `SELECT * FROM break_glass ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT ${limit}`;
    return this.guard(() => (this.db.prepare(sql).all(...params) as Row[]).map(toBreakGlass));
  }

  async findActiveBreakGlass(agentId: string, taskId: string, now: number): Promise<BreakGlassRecord[]> {
    return this.guard(() =>
      (
        this.stmt(
          `SELECT * FROM break_glass WHERE agent_id = ? AND status = 'active' AND starts_at <= ? AND ends_at > ? AND (task_id IS NULL OR task_id = ?)
           ORDER BY created_at`,
        ).all(agentId, now, now, taskId) as Row[]
      ).map(toBreakGlass),
    );
  }

  async expireBreakGlass(now: number): Promise<BreakGlassRecord[]> {
    return this.write(() => {
      const due = (
        this.stmt(
          `SELECT * FROM break_glass WHERE (status = 'active' AND ends_at <= ?) OR (status = 'pending' AND confirm_deadline <= ?) ORDER BY created_at, id`,
        ).all(now, now) as Row[]
      ).map(toBreakGlass);
      const set = this.stmt('UPDATE break_glass SET status = ?, ended_at = ? WHERE id = ? AND status = ?');
      const out: BreakGlassRecord[] = [];
      for (const r of due) {
        const after: BreakGlassRecord = r.status === 'active' ? { ...r, status: 'expired', endedAt: r.endsAt } : { ...r, status: 'cancelled', endedAt: now };
        set.run(after.status, after.endedAt, r.id, r.status);
        out.push(after);
      }
      this.appendInTx(out.map((r) => breakGlassLapsedAudit(r, now)));
      return out;
    });
  }

  // --- presence leases ---------------------------------------------------------------

  async getPresence(taskId: string): Promise<PresenceLease | null> {
    const row = this.guard(() => this.stmt('SELECT * FROM presence_leases WHERE task_id = ?').get(taskId) as Row | undefined);
    return row ? toPresence(row) : null;
  }

  async renewPresence(taskId: string, owner: string, expiresAt: number, now: number, audit: AuditInput): Promise<PresenceLease | null> {
    return this.write(() => {
      const r = this.stmt('UPDATE presence_leases SET expires_at = ?, renewed_at = ? WHERE task_id = ? AND owner = ?').run(expiresAt, now, taskId, owner);
      if (r.changes !== 1) return null;
      this.appendInTx([audit]);
      return { taskId, owner, expiresAt, renewedAt: now };
    });
  }
}

function mapSqliteError(err: unknown): Error {
  if (err instanceof WritError || err instanceof TypeError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code.startsWith('SQLITE_CONSTRAINT')) return new ConflictError('the record conflicts with one that exists');
  return new UnavailableError('the store failed', err);
}

function breakGlassActive(r: { status: string; ends_at: number | null } | undefined, now: number): boolean {
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
