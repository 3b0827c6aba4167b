// Tasks: creation (budget reserved from the parent), reads, ending with descendants, expiry.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/tasks.ts is its twin.
import { ConflictError } from '../../core/errors.js';
import type { AgentRecord, AuditInput, TaskRecord, TaskStatus } from '../../core/types.js';
import { taskParams, toAgent, toTask } from '../rows.js';
import type { PresenceLease } from '../../core/escalation-types.js';

import { PgDb, type Row, type Q } from './db.js';
import { appendInTx } from './audit.js';

export async function createTask(db: PgDb, task: TaskRecord, audit: AuditInput, options: { presence?: PresenceLease } = {}): Promise<void> {
  await db.tx(async (c) => {
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
    await appendInTx(db, c, [audit]);
  });
}

export async function getTask(db: PgDb, id: string): Promise<TaskRecord | null> {
  const r = await db.row('SELECT * FROM tasks WHERE id = $1', [id]);
  return r ? toTask(r) : null;
}

/**
 * The columns of a task with its agent's (prefixed `a_`), as `withAgentRow` reads them;
 * named, not `t.*`: a prepared statement's result shape must not change when a later
 * migration adds a column (PostgreSQL would fail it with "cached plan must not change
 * result type" on every connection that prepared it). The JSON columns come as text,
 * parsed once per distinct text (rows.ts `jsonShared`) rather than by `pg` for every row.
 */
const TASK_WITH_AGENT = `SELECT t.id, t.agent_id, t.owner, t.intent, t.scope::text AS scope, t.status, t.created_at, t.expires_at, t.ended_at,
            t.max_actions, t.actions_used, t.actions_reserved, t.parent_id, t.root_id, t.depth, a.id AS a_id, a.name AS a_name, a.jwks::text AS a_jwks, a.labels::text AS a_labels, a.status AS a_status,
            a.created_at AS a_created_at, a.created_by AS a_created_by
     FROM tasks t JOIN agents a ON a.id = t.agent_id`;

/**
 * The rows of several tasks with their agents in one statement (a named prepared
 * statement: parsed and planned once per connection), keyed by task id; for the reads
 * that postgres-store.ts coalesces (./read-batcher.ts).
 */
export async function getTaskWithAgentRows(db: PgDb, ids: string[]): Promise<Map<string, Row>> {
  const { rows } = await db.exec({ name: 'writ_tasks_with_agents_text', text: `${TASK_WITH_AGENT} WHERE t.id = ANY($1::text[])`, values: [ids] });
  return new Map(rows.map((r) => [r.id as string, r]));
}

/** One row of `getTaskWithAgentRows` as records (new objects for each caller). */
export function withAgentRow(r: Row): { task: TaskRecord; agent: AgentRecord } {
  return { task: toTask(r), agent: toAgent(r, 'a_') };
}

export async function listTasks(db: PgDb, filter: { agentId?: string; status?: TaskStatus; parentId?: string; limit?: number }): Promise<TaskRecord[]> {
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
  return (await db.rows(sql, params)).map(toTask);
}

/**
 * Ends `id` and its active descendants inside the caller's transaction; returns the
 * ended ids (`id` first, then descendants by depth) and their audit inputs, which
 * the caller appends. Budget settles deepest first: a child's unused budget returns
 * to its parent, what it (and its own descendants) used stays spent there.
 */
export async function endInTx(db: PgDb, 
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

export async function endTask(db: PgDb, id: string, status: 'completed' | 'revoked' | 'expired', now: number, audit: AuditInput): Promise<string[]> {
  return db.tx(async (c) => {
    const ended = await endInTx(db, c, id, status, now, audit);
    await appendInTx(db, c, ended.audits);
    return ended.ids;
  });
}

export async function expireTasks(db: PgDb, now: number): Promise<string[]> {
  return db.tx(async (c) => {
    const due = (
      await c.query(`SELECT id, agent_id, expires_at FROM tasks WHERE status = 'active' AND expires_at <= $1 ORDER BY depth, id`, [now])
    ).rows as Row[];
    const ids: string[] = [];
    const audits: AuditInput[] = [];
    for (const t of due) {
      const ended = await endInTx(db, c, t.id as string, 'expired', now, {
        type: 'task.expired',
        actor: 'system',
        taskId: t.id as string,
        agentId: t.agent_id as string,
        data: { expires_at: Number(t.expires_at) },
      });
      ids.push(...ended.ids);
      audits.push(...ended.audits);
    }
    await appendInTx(db, c, audits);
    return ids;
  });
}
