// Break-glass: create, confirm, end, review, expire, under the per-agent cap.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/break-glass.ts is its twin.
import type { AuditInput } from '../../core/types.js';
import type { BreakGlassRecord, BreakGlassResult } from '../../core/escalation-types.js';
import { BREAK_GLASS_COLUMNS, breakGlassLapsedAudit, breakGlassParams, breakGlassStateWhere, fitsBreakGlassCap, toBreakGlass } from '../escalation-rows.js';

import { PgDb, type Row, type Q, BREAK_GLASS_LOCK_CLASS } from './db.js';
import { appendInTx } from './audit.js';

/** Serializes break-glass changes of one agent across instances (no two active, no chaining past the cap). */
export async function lockBreakGlassAgent(db: PgDb, c: Q, agentId: string): Promise<void> {
  await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [BREAK_GLASS_LOCK_CLASS, `${db.schema ?? ''}:${agentId}`]);
}

export async function blockingBreakGlass(db: PgDb, c: Q, agentId: string, now: number, except: string): Promise<BreakGlassRecord | null> {
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

export async function fitsCap(db: PgDb, c: Q, agentId: string, except: string, start: number, durationMs: number, capMs: number): Promise<boolean> {
  const prior = (
    await c.query(`SELECT starts_at, ends_at FROM break_glass WHERE agent_id = $1 AND id <> $2 AND starts_at IS NOT NULL AND ends_at > $3`, [
      agentId, except, start - capMs,
    ])
  ).rows as Row[];
  return fitsBreakGlassCap(prior.map((p) => ({ startsAt: Number(p.starts_at), endsAt: Number(p.ends_at) })), start, durationMs, capMs);
}

export async function breakGlassForUpdate(db: PgDb, c: Q, id: string): Promise<BreakGlassRecord | null> {
  const r = (await c.query('SELECT * FROM break_glass WHERE id = $1 FOR UPDATE', [id])).rows[0] as Row | undefined;
  return r ? toBreakGlass(r) : null;
}

export async function createBreakGlass(db: PgDb, record: BreakGlassRecord, options: { capMs: number; now: number }, audit: AuditInput): Promise<BreakGlassResult> {
  return db.tx(async (c): Promise<BreakGlassResult> => {
    await lockBreakGlassAgent(db, c, record.agentId);
    const blocking = await blockingBreakGlass(db, c, record.agentId, options.now, record.id);
    if (blocking) return { ok: false, reason: 'already_active', record: blocking };
    if (!(await fitsCap(db, c, record.agentId, record.id, record.startsAt ?? options.now, record.durationMs, options.capMs))) {
      return { ok: false, reason: 'cap_exceeded', record: null };
    }
    await c.query(
      `INSERT INTO break_glass (${BREAK_GLASS_COLUMNS.join(', ')}) VALUES (${BREAK_GLASS_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
      breakGlassParams(record),
    );
    await appendInTx(db, c, [audit]);
    return { ok: true, record };
  });
}

export async function confirmBreakGlass(db: PgDb, id: string, by: string, options: { capMs: number; now: number }, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
  const { now, capMs } = options;
  return db.tx(async (c): Promise<BreakGlassResult> => {
    const peek = (await c.query('SELECT agent_id FROM break_glass WHERE id = $1', [id])).rows[0] as Row | undefined;
    if (!peek) return { ok: false, reason: 'not_found', record: null };
    await lockBreakGlassAgent(db, c, peek.agent_id as string);
    const r = (await breakGlassForUpdate(db, c, id))!;
    if (r.status !== 'pending' || (r.confirmDeadline ?? 0) <= now) return { ok: false, reason: 'not_pending', record: r };
    if (r.requestedBy === by) return { ok: false, reason: 'same_admin', record: r };
    const blocking = await blockingBreakGlass(db, c, r.agentId, now, r.id);
    if (blocking) return { ok: false, reason: 'already_active', record: blocking };
    if (!(await fitsCap(db, c, r.agentId, r.id, now, r.durationMs, capMs))) return { ok: false, reason: 'cap_exceeded', record: r };
    const after: BreakGlassRecord = { ...r, status: 'active', confirmedBy: by, startsAt: now, endsAt: now + r.durationMs };
    await c.query(`UPDATE break_glass SET status = 'active', confirmed_by = $1, starts_at = $2, ends_at = $3 WHERE id = $4 AND status = 'pending'`, [
      by, after.startsAt, after.endsAt, id,
    ]);
    await appendInTx(db, c, [audit(after)]);
    return { ok: true, record: after };
  });
}

export async function endBreakGlass(db: PgDb, id: string, by: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
  return db.tx(async (c): Promise<BreakGlassResult> => {
    const r = await breakGlassForUpdate(db, c, id);
    if (!r) return { ok: false, reason: 'not_found', record: null };
    let after: BreakGlassRecord;
    if (r.status === 'active' && (r.endsAt ?? 0) > now) after = { ...r, status: 'ended', endsAt: now, endedAt: now, endedBy: by };
    else if (r.status === 'pending' && (r.confirmDeadline ?? 0) > now) after = { ...r, status: 'cancelled', endedAt: now, endedBy: by };
    else return { ok: false, reason: 'not_active', record: r };
    await c.query('UPDATE break_glass SET status = $1, ends_at = $2, ended_at = $3, ended_by = $4 WHERE id = $5', [after.status, after.endsAt, after.endedAt, by, id]);
    await appendInTx(db, c, [audit(after)]);
    return { ok: true, record: after };
  });
}

export async function reviewBreakGlass(db: PgDb, id: string, by: string, notes: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
  return db.tx(async (c): Promise<BreakGlassResult> => {
    const r = await breakGlassForUpdate(db, c, id);
    if (!r) return { ok: false, reason: 'not_found', record: null };
    if ((r.status === 'active' && (r.endsAt ?? 0) > now) || (r.status === 'pending' && (r.confirmDeadline ?? 0) > now)) {
      return { ok: false, reason: 'still_active', record: r };
    }
    if (r.reviewedAt !== null) return { ok: false, reason: 'already_reviewed', record: r };
    const after: BreakGlassRecord = { ...r, reviewedBy: by, reviewedAt: now, reviewNotes: notes };
    await c.query('UPDATE break_glass SET reviewed_by = $1, reviewed_at = $2, review_notes = $3 WHERE id = $4', [by, now, notes, id]);
    await appendInTx(db, c, [audit(after)]);
    return { ok: true, record: after };
  });
}

export async function getBreakGlass(db: PgDb, id: string): Promise<BreakGlassRecord | null> {
  const r = await db.row('SELECT * FROM break_glass WHERE id = $1', [id]);
  return r ? toBreakGlass(r) : null;
}

export async function listBreakGlass(db: PgDb, filter: { state?: 'active' | 'pending' | 'ended' | 'unreviewed'; agentId?: string; now: number; limit?: number }): Promise<BreakGlassRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.state !== undefined) {
    params.push(filter.now);
    where.push(breakGlassStateWhere(filter.state).replaceAll(':now', `$${params.length}`));
  }
  if (filter.agentId !== undefined) (params.push(filter.agentId), where.push(`agent_id = $${params.length}`));
  const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
  const sql = `SELECT * FROM break_glass ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT ${limit}`;
  return (await db.rows(sql, params)).map(toBreakGlass);
}

export async function findActiveBreakGlass(db: PgDb, agentId: string, taskId: string, now: number): Promise<BreakGlassRecord[]> {
  return (
    await db.rows(
      `SELECT * FROM break_glass WHERE agent_id = $1 AND status = 'active' AND starts_at <= $2 AND ends_at > $2 AND (task_id IS NULL OR task_id = $3)
       ORDER BY created_at`,
      [agentId, now, taskId],
    )
  ).map(toBreakGlass);
}

export async function expireBreakGlass(db: PgDb, now: number): Promise<BreakGlassRecord[]> {
  return db.tx(async (c) => {
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
    await appendInTx(db, c, out.map((r) => breakGlassLapsedAudit(r, now)));
    return out;
  });
}
