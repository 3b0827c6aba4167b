// Tasks: creation (budget reserved from the parent), reads, ending with descendants, expiry.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/tasks.ts is its twin.
import { ConflictError } from '../../core/errors.js';
import type { AgentRecord, AuditInput, TaskRecord, TaskStatus } from '../../core/types.js';
import type { Statement } from 'better-sqlite3';
import { TASK_WITH_AGENT_COLUMNS, taskParams, taskWithAgentValues, toTask } from '../rows.js';
import type { PresenceLease } from '../../core/escalation-types.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export async function createTask(db: SqliteDb, task: TaskRecord, audit: AuditInput, options: { presence?: PresenceLease } = {}): Promise<void> {
  await db.write(() => {
    if (task.parentId !== null) {
      // Reserve the child's budget from the parent atomically (delegation only narrows).
      const r = db.stmt(
        `UPDATE tasks SET actions_reserved = actions_reserved + ? WHERE id = ? AND status = 'active' AND expires_at > ? AND actions_used + actions_reserved + ? <= max_actions`,
      ).run(task.maxActions, task.parentId, task.createdAt, task.maxActions);
      if (r.changes !== 1) throw new ConflictError('the parent task is not active or has not enough budget left', 'parent_budget_exhausted');
    }
    db.stmt(
      `INSERT INTO tasks (id, agent_id, owner, intent, scope, status, created_at, expires_at, ended_at, max_actions, actions_used, actions_reserved, parent_id, root_id, depth)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(...taskParams(task));
    if (options.presence) {
      const p = options.presence;
      db.stmt('INSERT INTO presence_leases (task_id, owner, expires_at, renewed_at) VALUES (?, ?, ?, ?)').run(p.taskId, p.owner, p.expiresAt, p.renewedAt);
    }
    appendInTx(db, [audit]);
  });
}

export async function getTask(db: SqliteDb, id: string): Promise<TaskRecord | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM tasks WHERE id = ?').get(id) as Row | undefined);
  return row ? toTask(row) : null;
}

/**
 * The task with its agent, read on every request that carries a task token: one
 * statement in array mode (no row object) over named columns; the JSON columns parse
 * once per distinct text (rows.ts `jsonShared`), the state columns are read every time.
 */
export async function getTaskWithAgent(db: SqliteDb, id: string): Promise<{ task: TaskRecord; agent: AgentRecord } | null> {
  const values = db.guard(() => taskWithAgentStmt(db).get(id) as unknown[] | undefined);
  return values ? taskWithAgentValues(values) : null;
}

const taskWithAgentStmts = new WeakMap<SqliteDb, Statement>();

function taskWithAgentStmt(db: SqliteDb): Statement {
  let s = taskWithAgentStmts.get(db);
  if (!s) {
    s = db.raw.prepare(`SELECT ${TASK_WITH_AGENT_COLUMNS} FROM tasks t JOIN agents a ON a.id = t.agent_id WHERE t.id = ?`).raw(true);
    taskWithAgentStmts.set(db, s);
  }
  return s;
}

export async function listTasks(db: SqliteDb, filter: { agentId?: string; status?: TaskStatus; parentId?: string; limit?: number }): Promise<TaskRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.agentId !== undefined) (where.push('agent_id = ?'), params.push(filter.agentId));
  if (filter.status !== undefined) (where.push('status = ?'), params.push(filter.status));
  if (filter.parentId !== undefined) (where.push('parent_id = ?'), params.push(filter.parentId));
  const limit = Math.min(Math.max(filter.limit ?? 100, 1), 10_000);
  const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT ${limit}`;
  return db.guard(() => (db.raw.prepare(sql).all(...params) as Row[]).map(toTask));
}

/** Ends `id` and its active descendants; returns the ended ids, `id` first. */
export function endInTx(db: SqliteDb, id: string, status: 'completed' | 'revoked' | 'expired', now: number, audit: AuditInput): string[] {
  const self = db.stmt(`SELECT * FROM tasks WHERE id = ?`).get(id) as Row | undefined;
  if (!self || self.status !== 'active') return [];
  const descendants = db.stmt(
    `WITH RECURSIVE sub(id) AS (SELECT id FROM tasks WHERE parent_id = ? UNION ALL SELECT t.id FROM tasks t JOIN sub ON t.parent_id = sub.id)
     SELECT tasks.* FROM tasks JOIN sub ON sub.id = tasks.id WHERE tasks.status = 'active' ORDER BY tasks.depth`,
  ).all(id) as Row[];
  const setStatus = db.stmt(`UPDATE tasks SET status = ?, ended_at = ? WHERE id = ? AND status = 'active'`);
  const settleParent = db.stmt(
    `UPDATE tasks SET actions_reserved = actions_reserved - ?, actions_used = actions_used + ? WHERE id = ?`,
  );
  const current = db.stmt('SELECT parent_id, max_actions, actions_used FROM tasks WHERE id = ?');
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
  appendInTx(db, audits);
  return ended;
}

export async function endTask(db: SqliteDb, id: string, status: 'completed' | 'revoked' | 'expired', now: number, audit: AuditInput): Promise<string[]> {
  return db.write(() => endInTx(db, id, status, now, audit));
}

export async function expireTasks(db: SqliteDb, now: number): Promise<string[]> {
  return db.write(() => {
    const due = db.stmt(`SELECT id, agent_id, expires_at FROM tasks WHERE status = 'active' AND expires_at <= ? ORDER BY depth`).all(now) as Row[];
    const ended: string[] = [];
    for (const t of due) {
      ended.push(
        ...endInTx(db, t.id as string, 'expired', now, {
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
