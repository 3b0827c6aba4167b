/**
 * Records for the ways a person steps into a decision: approvals (a yes for one exact
 * action), break-glass (an admin's time-boxed widening) and presence leases (the task
 * owner is still there). Times are epoch milliseconds.
 */

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';

export interface ApprovalReview {
  /** the operator id of the reviewer */
  approver: string;
  verdict: 'approve' | 'deny';
  comment: string | null;
  at: number;
}

export interface ApprovalRecord {
  id: string;
  taskId: string;
  agentId: string;
  /** the `approval_required` decision that asked for it */
  decisionId: string;
  /**
   * hex SHA-256 of the RFC 8785 JSON of {tool, args_digest, audience, resource,
   * destination, task_id}: the exact action the approval allows, once
   */
  actionDigest: string;
  tool: string;
  /** the canonical (RFC 8785) JSON of the arguments, in full, for the approver to read */
  arguments: string;
  argsDigest: string;
  audience: string;
  resource: string | null;
  destination: string | null;
  /** the policies that asked for approval */
  policies: string[];
  policyVersion: string;
  /** distinct approvers needed */
  quorum: number;
  /** the task owner (and the owners up the delegation chain) may not approve */
  fourEyes: boolean;
  status: ApprovalStatus;
  createdAt: number;
  /** pending: until a review settles it; approved: until it is used */
  expiresAt: number;
  /** when it became approved, denied, expired or cancelled */
  settledAt: number | null;
  usedAt: number | null;
  /** the `allow` decision that used it */
  usedDecisionId: string | null;
  reviews: ApprovalReview[];
}

/** Caps on open (`pending` or `approved`, unexpired) approvals, checked as one is created. */
export interface OpenApprovalLimits {
  maxOpenPerTask: number;
  maxOpenPerAgent: number;
  now: number;
}

/** `createApproval`: written, or refused (nothing written) because a cap is reached. */
export type ApprovalCreateResult = { ok: true } | { ok: false; limit: 'task' | 'agent'; open: number };

/**
 * The approval rule of the policy in force at a review (quorum, four eyes), and the
 * approvers whose yes does not count under it (the task owners, under four eyes).
 */
export interface ApprovalRule {
  quorum: number;
  fourEyes: boolean;
  uncounted: string[];
}

export type ApprovalReviewResult =
  | { ok: true; approval: ApprovalRecord }
  | { ok: false; reason: 'not_found' | 'not_pending' | 'already_reviewed'; approval: ApprovalRecord | null };

export type BreakGlassStatus = 'pending' | 'active' | 'ended' | 'expired' | 'cancelled';

export interface BreakGlassRecord {
  id: string;
  /** the agent whose authority is widened (for a task, the task's agent) */
  agentId: string;
  /** when set, only this task */
  taskId: string | null;
  justification: string;
  /** tool patterns the break-glass covers (`*` matches any run of characters) */
  scope: { tools: string[] };
  durationMs: number;
  status: BreakGlassStatus;
  /** operator ids */
  requestedBy: string;
  confirmedBy: string | null;
  endedBy: string | null;
  createdAt: number;
  /** a pending one that is not confirmed by then is cancelled */
  confirmDeadline: number | null;
  startsAt: number | null;
  /** the planned end while active; the actual end once ended or expired */
  endsAt: number | null;
  endedAt: number | null;
  reviewedBy: string | null;
  reviewedAt: number | null;
  reviewNotes: string | null;
}

export type BreakGlassRefusal = 'not_found' | 'already_active' | 'cap_exceeded' | 'not_pending' | 'not_active' | 'still_active' | 'already_reviewed' | 'same_admin';

export type BreakGlassResult = { ok: true; record: BreakGlassRecord } | { ok: false; reason: BreakGlassRefusal; record: BreakGlassRecord | null };

export interface PresenceLease {
  /** the root task that requires its owner's presence (sub-tasks share it) */
  taskId: string;
  /** the operator id whose presence counts */
  owner: string;
  expiresAt: number;
  renewedAt: number;
}
