// Approvals: the approval_required decision with its request, reviews, quorum, expiry.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/approvals.ts is its twin.
import type { AuditInput, DecisionRecord } from '../../core/types.js';
import { decisionParams } from '../rows.js';
import type {
  ApprovalCreateResult,
  OpenApprovalLimits,
  ApprovalRecord,
  ApprovalReview,
  ApprovalReviewResult,
  ApprovalRule,
  ApprovalStatus,
} from '../../core/escalation-types.js';
import { APPROVAL_COLUMNS, approvalExpiredAudit, approvalParams, settleReview, toApproval, toReview } from '../escalation-rows.js';

import { PgDb, type Row, type Q, DECISION_COLUMNS, DECISION_TYPES, APPROVAL_LOCK_CLASS } from './db.js';
import { appendInTx } from './audit.js';

export async function withReviews(db: PgDb, q: Q, rows: Row[]): Promise<ApprovalRecord[]> {
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

export async function createApproval(db: PgDb, approval: ApprovalRecord, decision: DecisionRecord, audit: AuditInput[], limits?: OpenApprovalLimits): Promise<ApprovalCreateResult> {
  return db.tx(async (c): Promise<ApprovalCreateResult> => {
    if (limits) {
      // One creator per agent at a time, on every instance (a task's approvals are its
      // agent's): under READ COMMITTED each count then sees every approval committed
      // before the lock was granted, so two instances cannot both take the last place.
      await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [APPROVAL_LOCK_CLASS, `${db.schema ?? ''}:${approval.agentId}`]);
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
    await appendInTx(db, c, audit);
    return { ok: true };
  });
}

export async function getApproval(db: PgDb, id: string): Promise<ApprovalRecord | null> {
  const rows = await db.rows('SELECT * FROM approvals WHERE id = $1', [id]);
  return (await withReviews(db, db.reader, rows))[0] ?? null;
}

export async function findOpenApproval(db: PgDb, taskId: string, actionDigest: string, now: number): Promise<ApprovalRecord | null> {
  const rows = await db.rows(
    `SELECT * FROM approvals WHERE task_id = $1 AND action_digest = $2 AND status IN ('pending', 'approved') AND expires_at > $3
     ORDER BY created_at DESC LIMIT 1`,
    [taskId, actionDigest, now],
  );
  return (await withReviews(db, db.reader, rows))[0] ?? null;
}

export async function listApprovals(db: PgDb, filter: { status?: ApprovalStatus; taskId?: string; limit?: number }): Promise<ApprovalRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.status !== undefined) (params.push(filter.status), where.push(`status = $${params.length}`));
  if (filter.taskId !== undefined) (params.push(filter.taskId), where.push(`task_id = $${params.length}`));
  const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
  const rows = await db.rows(`SELECT * FROM approvals ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT ${limit}`, params);
  return withReviews(db, db.reader, rows);
}

export async function reviewApproval(db: PgDb, 
  id: string,
  review: ApprovalReview,
  options: { approvedTtlMs: number; rule?: ApprovalRule },
  audit: (after: ApprovalRecord) => AuditInput[],
): Promise<ApprovalReviewResult> {
  return db.tx(async (c): Promise<ApprovalReviewResult> => {
    // The row lock settles an approve racing a deny (or two approvals of one
    // approver) once, on every instance: the second waits, then sees the first.
    const rows = (await c.query('SELECT * FROM approvals WHERE id = $1 FOR UPDATE', [id])).rows as Row[];
    const a = (await withReviews(db, c, rows))[0];
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
    await appendInTx(db, c, audit(after));
    return { ok: true, approval: after };
  });
}

export async function expireApprovals(db: PgDb, now: number, ids?: string[]): Promise<ApprovalRecord[]> {
  if (ids && ids.length === 0) return [];
  return db.tx(async (c) => {
    const rows = (
      await c.query(
        `SELECT * FROM approvals WHERE status IN ('pending', 'approved') AND expires_at <= $1 ${ids ? 'AND id = ANY($2::text[])' : ''}
         ORDER BY id FOR UPDATE`,
        ids ? [now, ids] : [now],
      )
    ).rows as Row[];
    if (rows.length === 0) return [];
    const due = await withReviews(db, c, rows);
    await c.query(`UPDATE approvals SET status = 'expired', settled_at = $1 WHERE id = ANY($2::text[])`, [now, due.map((a) => a.id)]);
    due.sort((x, y) => x.createdAt - y.createdAt || x.id.localeCompare(y.id));
    await appendInTx(db, c, due.map((a) => approvalExpiredAudit(a, now)));
    return due.map((a) => ({ ...a, status: 'expired' as const, settledAt: now }));
  });
}
