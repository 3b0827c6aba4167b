// Break-glass: create, confirm, end, review, expire, under the per-agent cap.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/break-glass.ts is its twin.
import type { AuditInput } from '../../core/types.js';
import type { BreakGlassRecord, BreakGlassResult } from '../../core/escalation-types.js';
import { BREAK_GLASS_COLUMNS, breakGlassLapsedAudit, breakGlassParams, breakGlassStateWhere, fitsBreakGlassCap, toBreakGlass } from '../escalation-rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export function breakGlassRow(db: SqliteDb, id: string): BreakGlassRecord | null {
  const row = db.stmt('SELECT * FROM break_glass WHERE id = ?').get(id) as Row | undefined;
  return row ? toBreakGlass(row) : null;
}

/** A pending or active break-glass of the agent, other than `except`. */
export function blockingBreakGlass(db: SqliteDb, agentId: string, now: number, except: string): BreakGlassRecord | null {
  const row = db.stmt(
    `SELECT * FROM break_glass WHERE agent_id = ? AND id <> ?
       AND ((status = 'active' AND ends_at > ?) OR (status = 'pending' AND confirm_deadline > ?))
     ORDER BY created_at LIMIT 1`,
  ).get(agentId, except, now, now) as Row | undefined;
  return row ? toBreakGlass(row) : null;
}

export function fitsCap(db: SqliteDb, agentId: string, except: string, start: number, durationMs: number, capMs: number): boolean {
  const prior = db.stmt(
    `SELECT starts_at, ends_at FROM break_glass WHERE agent_id = ? AND id <> ? AND starts_at IS NOT NULL AND ends_at > ?`,
  ).all(agentId, except, start - capMs) as Row[];
  return fitsBreakGlassCap(prior.map((p) => ({ startsAt: Number(p.starts_at), endsAt: Number(p.ends_at) })), start, durationMs, capMs);
}

export async function createBreakGlass(db: SqliteDb, record: BreakGlassRecord, options: { capMs: number; now: number }, audit: AuditInput): Promise<BreakGlassResult> {
  return db.write((): BreakGlassResult => {
    const blocking = blockingBreakGlass(db, record.agentId, options.now, record.id);
    if (blocking) return { ok: false, reason: 'already_active', record: blocking };
    if (!fitsCap(db, record.agentId, record.id, record.startsAt ?? options.now, record.durationMs, options.capMs)) {
      return { ok: false, reason: 'cap_exceeded', record: null };
    }
    db.stmt(`INSERT INTO break_glass (${BREAK_GLASS_COLUMNS.join(', ')}) VALUES (${BREAK_GLASS_COLUMNS.map(() => '?').join(', ')})`).run(
      ...breakGlassParams(record),
    );
    appendInTx(db, [audit]);
    return { ok: true, record };
  });
}

export async function confirmBreakGlass(db: SqliteDb, id: string, by: string, options: { capMs: number; now: number }, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
  const { now, capMs } = options;
  return db.write((): BreakGlassResult => {
    const r = breakGlassRow(db, id);
    if (!r) return { ok: false, reason: 'not_found', record: null };
    if (r.status !== 'pending' || (r.confirmDeadline ?? 0) <= now) return { ok: false, reason: 'not_pending', record: r };
    if (r.requestedBy === by) return { ok: false, reason: 'same_admin', record: r };
    const blocking = blockingBreakGlass(db, r.agentId, now, r.id);
    if (blocking) return { ok: false, reason: 'already_active', record: blocking };
    if (!fitsCap(db, r.agentId, r.id, now, r.durationMs, capMs)) return { ok: false, reason: 'cap_exceeded', record: r };
    const after: BreakGlassRecord = { ...r, status: 'active', confirmedBy: by, startsAt: now, endsAt: now + r.durationMs };
    db.stmt(`UPDATE break_glass SET status = 'active', confirmed_by = ?, starts_at = ?, ends_at = ? WHERE id = ? AND status = 'pending'`).run(
      by, after.startsAt, after.endsAt, id,
    );
    appendInTx(db, [audit(after)]);
    return { ok: true, record: after };
  });
}

export async function endBreakGlass(db: SqliteDb, id: string, by: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
  return db.write((): BreakGlassResult => {
    const r = breakGlassRow(db, id);
    if (!r) return { ok: false, reason: 'not_found', record: null };
    let after: BreakGlassRecord;
    if (r.status === 'active' && (r.endsAt ?? 0) > now) after = { ...r, status: 'ended', endsAt: now, endedAt: now, endedBy: by };
    else if (r.status === 'pending' && (r.confirmDeadline ?? 0) > now) after = { ...r, status: 'cancelled', endedAt: now, endedBy: by };
    else return { ok: false, reason: 'not_active', record: r };
    db.stmt(`UPDATE break_glass SET status = ?, ends_at = ?, ended_at = ?, ended_by = ? WHERE id = ? AND status = ?`).run(
      after.status, after.endsAt, after.endedAt, by, id, r.status,
    );
    appendInTx(db, [audit(after)]);
    return { ok: true, record: after };
  });
}

export async function reviewBreakGlass(db: SqliteDb, id: string, by: string, notes: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
  return db.write((): BreakGlassResult => {
    const r = breakGlassRow(db, id);
    if (!r) return { ok: false, reason: 'not_found', record: null };
    if ((r.status === 'active' && (r.endsAt ?? 0) > now) || (r.status === 'pending' && (r.confirmDeadline ?? 0) > now)) {
      return { ok: false, reason: 'still_active', record: r };
    }
    if (r.reviewedAt !== null) return { ok: false, reason: 'already_reviewed', record: r };
    const after: BreakGlassRecord = { ...r, reviewedBy: by, reviewedAt: now, reviewNotes: notes };
    db.stmt('UPDATE break_glass SET reviewed_by = ?, reviewed_at = ?, review_notes = ? WHERE id = ? AND reviewed_at IS NULL').run(by, now, notes, id);
    appendInTx(db, [audit(after)]);
    return { ok: true, record: after };
  });
}

export async function getBreakGlass(db: SqliteDb, id: string): Promise<BreakGlassRecord | null> {
  return db.guard(() => breakGlassRow(db, id));
}

export async function listBreakGlass(db: SqliteDb, filter: { state?: 'active' | 'pending' | 'ended' | 'unreviewed'; agentId?: string; now: number; limit?: number }): Promise<BreakGlassRecord[]> {
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
  return db.guard(() => (db.raw.prepare(sql).all(...params) as Row[]).map(toBreakGlass));
}

export async function findActiveBreakGlass(db: SqliteDb, agentId: string, taskId: string, now: number): Promise<BreakGlassRecord[]> {
  return db.guard(() =>
    (
      db.stmt(
        `SELECT * FROM break_glass WHERE agent_id = ? AND status = 'active' AND starts_at <= ? AND ends_at > ? AND (task_id IS NULL OR task_id = ?)
         ORDER BY created_at`,
      ).all(agentId, now, now, taskId) as Row[]
    ).map(toBreakGlass),
  );
}

export async function expireBreakGlass(db: SqliteDb, now: number): Promise<BreakGlassRecord[]> {
  return db.write(() => {
    const due = (
      db.stmt(
        `SELECT * FROM break_glass WHERE (status = 'active' AND ends_at <= ?) OR (status = 'pending' AND confirm_deadline <= ?) ORDER BY created_at, id`,
      ).all(now, now) as Row[]
    ).map(toBreakGlass);
    const set = db.stmt('UPDATE break_glass SET status = ?, ended_at = ? WHERE id = ? AND status = ?');
    const out: BreakGlassRecord[] = [];
    for (const r of due) {
      const after: BreakGlassRecord = r.status === 'active' ? { ...r, status: 'expired', endedAt: r.endsAt } : { ...r, status: 'cancelled', endedAt: now };
      set.run(after.status, after.endedAt, r.id, r.status);
      out.push(after);
    }
    appendInTx(db, out.map((r) => breakGlassLapsedAudit(r, now)));
    return out;
  });
}
