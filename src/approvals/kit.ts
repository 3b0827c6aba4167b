import type { Clock } from '../core/clock.js';
import type { AgentRecord, AuditInput, DecisionRecord, Reason, TaskRecord } from '../core/types.js';
import type { LoadedPolicySet, PolicyEngine } from '../policy/engine.js';
import type { ActionInput, RequestFacts } from '../policy/request.js';
import type { WritConfig } from '../service/config.js';
import type { AuthorizeResult } from '../service/writ.js';
import type { Store } from '../store/store.js';

/**
 * What the approval, break-glass and presence services need from the Writ service:
 * its store, clock and configuration, and the parts of the authorize path they
 * share with it (the request facts, the group-committed decision record and the
 * budget-guarded allow). Writ builds one in its constructor.
 */
export interface WritKit {
  readonly store: Store;
  readonly clock: Clock;
  readonly config: WritConfig;
  readonly policy: PolicyEngine;
  currentPolicy(): Promise<LoadedPolicySet>;
  /**
   * The facts of one request, as authorize builds them (without the approval and
   * break-glass variants); `problem` set when the arguments cannot be judged by this policy.
   */
  requestFacts(
    ctx: { task: TaskRecord; agent: AgentRecord },
    action: ActionInput,
    argsDigest: string,
    now: number,
    set: LoadedPolicySet,
  ): Promise<{ facts: RequestFacts; problem: Reason | null }>;
  /** The `decision` audit entry of a decision, with `extra` data (approval id, break-glass flag). */
  decisionAudit(d: DecisionRecord, extra?: Record<string, unknown>, args?: Record<string, unknown>): AuditInput;
  /** Writes a decision that takes no budget (a deny, an approval_required) through the group commit. */
  recordDecision(d: DecisionRecord, extra?: Record<string, unknown>, args?: Record<string, unknown>): Promise<void>;
  /** Signs and commits an allow (budget guarded; with `approval`, the approval is used in the same transaction). */
  issueAllow(ctx: { task: TaskRecord; agent: AgentRecord }, base: DecisionRecord, options: AllowOptions): Promise<AuthorizeResult>;
  securityEvent(type: string, actor: string, data: Record<string, unknown>, ids?: { taskId?: string; agentId?: string; decisionId?: string }): Promise<void>;
}

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
