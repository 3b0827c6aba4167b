import type { AuditInput, Reason } from '../core/types.js';

/** What one decision answers: the authorize call, and the approval read that issues a token. */
export type AuthorizeResult =
  | { decision: 'allow'; decision_id: string; action_token: string; expires_in: number; args_digest: string }
  | { decision: 'deny'; decision_id: string; reasons: Reason[] }
  | { decision: 'approval_required'; decision_id: string; approval_id: string; expires_in: number };

/** How an allow is committed (./commit.ts). */
export interface AllowOptions {
  /** the determining policies */
  policies: string[];
  /** informational reasons on the allow (`approved`, `break_glass`) */
  reasons?: Reason[];
  /** use this approval (approved -> used) atomically with the allow; `audit` is its `approval.used` entry */
  approval?: { id: string; audit: AuditInput };
  /** the allow holds only because of this break-glass: the token and the audit entry are flagged */
  breakGlassId?: string;
  /** the arguments as asked, kept in the decision's audit entry as WRIT_AUDIT_ARGS says */
  arguments?: Record<string, unknown>;
}
