/*
 * Row <-> record mapping for approvals, break-glass and presence leases, shared by
 * the SQL backends (column names are the same in both schemas).
 */
import type { ApprovalRecord, ApprovalReview, ApprovalRule, BreakGlassRecord, PresenceLease } from '../core/escalation-types.js';
import type { AuditInput } from '../core/types.js';
import { json, num, numOrNull, type Row } from './rows.js';

function strOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : (v as string);
}

export const APPROVAL_COLUMNS = [
  'id', 'task_id', 'agent_id', 'decision_id', 'action_digest', 'tool', 'arguments', 'args_digest', 'audience', 'resource',
  'destination', 'policies', 'policy_version', 'quorum', 'four_eyes', 'status', 'created_at', 'expires_at', 'settled_at',
  'used_at', 'used_decision_id',
] as const;

export function approvalParams(a: ApprovalRecord, bool: (b: boolean) => unknown): unknown[] {
  return [
    a.id, a.taskId, a.agentId, a.decisionId, a.actionDigest, a.tool, a.arguments, a.argsDigest, a.audience, a.resource,
    a.destination, JSON.stringify(a.policies), a.policyVersion, a.quorum, bool(a.fourEyes), a.status, a.createdAt, a.expiresAt, a.settledAt,
    a.usedAt, a.usedDecisionId,
  ];
}

export function toReview(r: Row): ApprovalReview {
  return { approver: r.approver as string, verdict: r.verdict as ApprovalReview['verdict'], comment: strOrNull(r.comment), at: num(r.created_at) };
}

export function toApproval(r: Row, reviews: ApprovalReview[]): ApprovalRecord {
  return {
    id: r.id as string,
    taskId: r.task_id as string,
    agentId: r.agent_id as string,
    decisionId: r.decision_id as string,
    actionDigest: r.action_digest as string,
    tool: r.tool as string,
    arguments: r.arguments as string,
    argsDigest: r.args_digest as string,
    audience: r.audience as string,
    resource: strOrNull(r.resource),
    destination: strOrNull(r.destination),
    policies: json(r.policies),
    policyVersion: r.policy_version as string,
    quorum: num(r.quorum),
    fourEyes: Boolean(r.four_eyes),
    status: r.status as ApprovalRecord['status'],
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    settledAt: numOrNull(r.settled_at),
    usedAt: numOrNull(r.used_at),
    usedDecisionId: strOrNull(r.used_decision_id),
    reviews,
  };
}

export const BREAK_GLASS_COLUMNS = [
  'id', 'agent_id', 'task_id', 'justification', 'scope', 'duration_ms', 'status', 'requested_by', 'confirmed_by', 'ended_by',
  'created_at', 'confirm_deadline', 'starts_at', 'ends_at', 'ended_at', 'reviewed_by', 'reviewed_at', 'review_notes',
] as const;

export function breakGlassParams(b: BreakGlassRecord): unknown[] {
  return [
    b.id, b.agentId, b.taskId, b.justification, JSON.stringify(b.scope), b.durationMs, b.status, b.requestedBy, b.confirmedBy, b.endedBy,
    b.createdAt, b.confirmDeadline, b.startsAt, b.endsAt, b.endedAt, b.reviewedBy, b.reviewedAt, b.reviewNotes,
  ];
}

export function toBreakGlass(r: Row): BreakGlassRecord {
  return {
    id: r.id as string,
    agentId: r.agent_id as string,
    taskId: strOrNull(r.task_id),
    justification: r.justification as string,
    scope: json(r.scope),
    durationMs: num(r.duration_ms),
    status: r.status as BreakGlassRecord['status'],
    requestedBy: r.requested_by as string,
    confirmedBy: strOrNull(r.confirmed_by),
    endedBy: strOrNull(r.ended_by),
    createdAt: num(r.created_at),
    confirmDeadline: numOrNull(r.confirm_deadline),
    startsAt: numOrNull(r.starts_at),
    endsAt: numOrNull(r.ends_at),
    endedAt: numOrNull(r.ended_at),
    reviewedBy: strOrNull(r.reviewed_by),
    reviewedAt: numOrNull(r.reviewed_at),
    reviewNotes: strOrNull(r.review_notes),
  };
}

export function toPresence(r: Row): PresenceLease {
  return { taskId: r.task_id as string, owner: r.owner as string, expiresAt: num(r.expires_at), renewedAt: num(r.renewed_at) };
}

/**
 * Break-glass may not be chained past the cap: sessions of one agent that start less
 * than `capMs` apart from the end of another count together, and together they may
 * not exceed the cap. `prior` holds the sessions that ran (start, effective end)
 * whose end is after `start - capMs`. Returns true when the new session fits.
 */
export function fitsBreakGlassCap(prior: { startsAt: number; endsAt: number }[], start: number, durationMs: number, capMs: number): boolean {
  if (durationMs > capMs) return false;
  let total = durationMs;
  for (const p of prior) if (p.endsAt > start - capMs) total += Math.max(0, p.endsAt - p.startsAt);
  return total <= capMs;
}

/** SQL (shared text, `?`-style placeholders rewritten by the PostgreSQL store) for the break-glass list filters. */
export function breakGlassStateWhere(state: 'active' | 'pending' | 'ended' | 'unreviewed'): string {
  switch (state) {
    case 'active':
      return `status = 'active' AND ends_at > :now`;
    case 'pending':
      return `status = 'pending' AND confirm_deadline > :now`;
    case 'ended':
      return `(status IN ('ended', 'expired', 'cancelled') OR (status = 'active' AND ends_at <= :now) OR (status = 'pending' AND confirm_deadline <= :now))`;
    case 'unreviewed':
      return `reviewed_at IS NULL AND (status IN ('ended', 'expired', 'cancelled') OR (status = 'active' AND ends_at <= :now) OR (status = 'pending' AND confirm_deadline <= :now))`;
  }
}

/** The audit entry a store writes when an approval runs out. */
export function approvalExpiredAudit(a: ApprovalRecord, now: number): AuditInput {
  return {
    type: 'approval.expired',
    actor: 'system',
    taskId: a.taskId,
    agentId: a.agentId,
    decisionId: a.decisionId,
    data: { approval_id: a.id, previous_status: a.status, expires_at: a.expiresAt, expired_at: now },
  };
}

/** The audit entry a store writes when a break-glass runs out (active) or was never confirmed (pending). */
export function breakGlassLapsedAudit(b: BreakGlassRecord, now: number): AuditInput {
  return {
    type: b.status === 'expired' ? 'break_glass.expired' : 'break_glass.cancelled',
    actor: 'system',
    taskId: b.taskId,
    agentId: b.agentId,
    data: b.status === 'expired'
      ? { break_glass_id: b.id, starts_at: b.startsAt, ended_at: b.endedAt }
      : { break_glass_id: b.id, reason: 'not_confirmed', confirm_deadline: b.confirmDeadline, at: now },
  };
}

/**
 * The approval after one more review: a deny settles it `denied`; the quorum-th
 * distinct approver settles it `approved`, usable for `approvedTtlMs`.
 */
export function settleReview(a: ApprovalRecord, review: ApprovalReview, approvedTtlMs: number, rule?: ApprovalRule): ApprovalRecord {
  // the rule of the policy in force replaces the one recorded when the approval was asked for
  const ruled = rule ? { ...a, quorum: rule.quorum, fourEyes: rule.fourEyes } : a;
  const reviews = [...a.reviews, review];
  if (review.verdict === 'deny') return { ...ruled, reviews, status: 'denied', settledAt: review.at };
  const uncounted = new Set(rule?.uncounted ?? []);
  const yes = new Set(reviews.filter((r) => r.verdict === 'approve' && !uncounted.has(r.approver)).map((r) => r.approver)).size;
  if (yes >= ruled.quorum) return { ...ruled, reviews, status: 'approved', settledAt: review.at, expiresAt: review.at + approvedTtlMs };
  return { ...ruled, reviews };
}
