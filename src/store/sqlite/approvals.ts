// Approvals: the approval_required decision with its request, reviews, quorum, expiry.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/approvals.ts is its twin.
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

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export function approvalRow(db: SqliteDb, id: string): ApprovalRecord | null {
  const row = db.stmt('SELECT * FROM approvals WHERE id = ?').get(id) as Row | undefined;
  if (!row) return null;
  const reviews = (db.stmt('SELECT * FROM approval_reviews WHERE approval_id = ? ORDER BY created_at, approver').all(id) as Row[]).map(toReview);
  return toApproval(row, reviews);
}

export async function createApproval(db: SqliteDb, approval: ApprovalRecord, decision: DecisionRecord, audit: AuditInput[], limits?: OpenApprovalLimits): Promise<ApprovalCreateResult> {
  return db.write((): ApprovalCreateResult => {
    // inside the write transaction: no other connection or process writes between the count and the insert
    if (limits) {
      const open = `SELECT count(*) AS n FROM approvals WHERE status IN ('pending', 'approved') AND expires_at > ?`;
      const byTask = Number((db.stmt(`${open} AND task_id = ?`).get(limits.now, approval.taskId) as { n: number }).n);
      if (byTask >= limits.maxOpenPerTask) return { ok: false, limit: 'task', open: byTask };
      const byAgent = Number((db.stmt(`${open} AND agent_id = ?`).get(limits.now, approval.agentId) as { n: number }).n);
      if (byAgent >= limits.maxOpenPerAgent) return { ok: false, limit: 'agent', open: byAgent };
    }
    db.stmt(
      `INSERT INTO decisions (id, task_id, agent_id, tool, audience, resource, destination, args_digest, decision, reasons, policies, policy_version, token_jti, token_expires_at, created_at, outcome)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(...decisionParams(decision));
    db.stmt(`INSERT INTO approvals (${APPROVAL_COLUMNS.join(', ')}) VALUES (${APPROVAL_COLUMNS.map(() => '?').join(', ')})`).run(
      ...approvalParams(approval, (b) => (b ? 1 : 0)),
    );
    const review = db.stmt('INSERT INTO approval_reviews (approval_id, approver, verdict, comment, created_at) VALUES (?, ?, ?, ?, ?)');
    for (const r of approval.reviews) review.run(approval.id, r.approver, r.verdict, r.comment, r.at);
    appendInTx(db, audit);
    return { ok: true };
  });
}

export async function getApproval(db: SqliteDb, id: string): Promise<ApprovalRecord | null> {
  return db.guard(() => approvalRow(db, id));
}

export async function findOpenApproval(db: SqliteDb, taskId: string, actionDigest: string, now: number): Promise<ApprovalRecord | null> {
  return db.guard(() => {
    const row = db.stmt(
      `SELECT id FROM approvals WHERE task_id = ? AND action_digest = ? AND status IN ('pending', 'approved') AND expires_at > ?
       ORDER BY created_at DESC LIMIT 1`,
    ).get(taskId, actionDigest, now) as { id: string } | undefined;
    return row ? approvalRow(db, row.id) : null;
  });
}

export async function listApprovals(db: SqliteDb, filter: { status?: ApprovalStatus; taskId?: string; limit?: number }): Promise<ApprovalRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.status !== undefined) (where.push('status = ?'), params.push(filter.status));
  if (filter.taskId !== undefined) (where.push('task_id = ?'), params.push(filter.taskId));
  const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
  const sql = `SELECT id FROM approvals ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT ${limit}`;
  return db.guard(() => (db.raw.prepare(sql).all(...params) as { id: string }[]).map((r) => approvalRow(db, r.id)!));
}

export async function reviewApproval(db: SqliteDb, 
  id: string,
  review: ApprovalReview,
  options: { approvedTtlMs: number; rule?: ApprovalRule },
  audit: (after: ApprovalRecord) => AuditInput[],
): Promise<ApprovalReviewResult> {
  return db.write(() => {
    const a = approvalRow(db, id);
    if (!a) return { ok: false, reason: 'not_found', approval: null };
    if (a.status !== 'pending' || a.expiresAt <= review.at) return { ok: false, reason: 'not_pending', approval: a };
    if (a.reviews.some((r) => r.approver === review.approver)) return { ok: false, reason: 'already_reviewed', approval: a };
    db.stmt('INSERT INTO approval_reviews (approval_id, approver, verdict, comment, created_at) VALUES (?, ?, ?, ?, ?)').run(
      id, review.approver, review.verdict, review.comment, review.at,
    );
    const after = settleReview(a, review, options.approvedTtlMs, options.rule);
    if (after.status !== a.status || after.quorum !== a.quorum || after.fourEyes !== a.fourEyes) {
      db.stmt(`UPDATE approvals SET status = ?, settled_at = ?, expires_at = ?, quorum = ?, four_eyes = ? WHERE id = ? AND status = 'pending'`).run(
        after.status, after.settledAt, after.expiresAt, after.quorum, after.fourEyes ? 1 : 0, id,
      );
    }
    appendInTx(db, audit(after));
    return { ok: true, approval: after };
  });
}

export async function expireApprovals(db: SqliteDb, now: number, ids?: string[]): Promise<ApprovalRecord[]> {
  if (ids && ids.length === 0) return [];
  return db.write(() => {
    const only = ids ? ` AND id IN (${ids.map(() => '?').join(', ')})` : '';
    const due = db.raw
      .prepare(`SELECT id FROM approvals WHERE status IN ('pending', 'approved') AND expires_at <= ?${only} ORDER BY created_at, id`)
      .all(now, ...(ids ?? [])) as { id: string }[];
    const set = db.stmt(`UPDATE approvals SET status = 'expired', settled_at = ? WHERE id = ? AND status IN ('pending', 'approved')`);
    const out: ApprovalRecord[] = [];
    const audits: AuditInput[] = [];
    for (const { id } of due) {
      const before = approvalRow(db, id)!;
      set.run(now, id);
      audits.push(approvalExpiredAudit(before, now));
      out.push({ ...before, status: 'expired', settledAt: now });
    }
    appendInTx(db, audits);
    return out;
  });
}
