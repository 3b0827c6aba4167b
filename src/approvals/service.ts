import { EventEmitter } from 'node:events';
import { ConflictError, ForbiddenError, NotFoundError } from '../core/errors.js';
import type { ApprovalRecord } from '../core/escalation-types.js';
import type { AgentRecord, OperatorRecord, OperatorRole, Reason, TaskRecord } from '../core/types.js';
import { actionOfApproval, chainOf, stillApprovers } from '../authorize/facts.js';
import type { AuthorizePipeline } from '../authorize/pipeline.js';
import type { ServiceDeps } from '../service/deps.js';

/** the longest `?wait=` of a long-poll */
export const MAX_WAIT_SECONDS = 30;
/** how often a long-poll re-reads the store (another instance may have settled it) */
const POLL_MS = 200;

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function hasRole(op: OperatorRecord, ...roles: OperatorRole[]): boolean {
  return op.roles.includes('admin') || roles.some((r) => op.roles.includes(r));
}

function requireRole(op: OperatorRecord, ...roles: OperatorRole[]): void {
  if (!hasRole(op, ...roles)) throw new ForbiddenError(`this needs the role ${roles.map((r) => `\`${r}\``).join(' or ')}`, 'insufficient_role');
}

function approvalsCount(a: ApprovalRecord): number {
  return new Set(a.reviews.filter((r) => r.verdict === 'approve').map((r) => r.approver)).size;
}

/** What the agent sees of its approval (and, on its first read of an approved one, the action token). */
export function agentApprovalView(a: ApprovalRecord) {
  return {
    id: a.id,
    status: a.status,
    task_id: a.taskId,
    tool: a.tool,
    args_digest: a.argsDigest,
    audience: a.audience,
    resource: a.resource,
    destination: a.destination,
    quorum: a.quorum,
    approvals: approvalsCount(a),
    created_at: iso(a.createdAt),
    expires_at: a.status === 'pending' || a.status === 'approved' ? iso(a.expiresAt) : null,
    used_decision_id: a.usedDecisionId,
  };
}

/** Everything an approver needs to judge the action. */
export function operatorApprovalView(a: ApprovalRecord, context: { task: TaskRecord | null; chain: string[] }) {
  let args: unknown = a.arguments;
  try {
    args = JSON.parse(a.arguments);
  } catch {
    // stored as canonical JSON; never fails in practice
  }
  return {
    id: a.id,
    status: a.status,
    task_id: a.taskId,
    agent_id: a.agentId,
    decision_id: a.decisionId,
    task: context.task
      ? { id: context.task.id, intent: context.task.intent, owner: context.task.owner, status: context.task.status, root_id: context.task.rootId, depth: context.task.depth }
      : null,
    delegation_chain: context.chain,
    tool: a.tool,
    arguments: args,
    canonical_arguments: a.arguments,
    args_digest: a.argsDigest,
    action_digest: a.actionDigest,
    audience: a.audience,
    resource: a.resource,
    destination: a.destination,
    policies: a.policies,
    policy_version: a.policyVersion,
    quorum: a.quorum,
    four_eyes: a.fourEyes,
    approvals: approvalsCount(a),
    reviews: a.reviews.map((r) => ({ approver: r.approver, verdict: r.verdict, comment: r.comment, at: iso(r.at) })),
    created_at: iso(a.createdAt),
    expires_at: iso(a.expiresAt),
    settled_at: iso(a.settledAt),
    used_at: iso(a.usedAt),
    used_decision_id: a.usedDecisionId,
  };
}

export type OperatorApprovalView = ReturnType<typeof operatorApprovalView>;
export type AgentApprovalRead = ReturnType<typeof agentApprovalView> & Partial<Record<'decision' | 'decision_id' | 'action_token' | 'args_digest' | 'approval_id', string>> & {
  expires_in?: number;
  reasons?: Reason[];
};

/**
 * Approvals bound to one exact action (design §5, README "Approvals"): created by
 * authorize (the commit step of src/authorize/commit.ts), reviewed by operators (quorum, one deny settles, no self-approval),
 * read by the agent, whose first read of an approved one returns the action token
 * and uses the approval in the same transaction as the allow.
 */
export class ApprovalService {
  private readonly settled = new EventEmitter();

  /** `pipeline`: the authorize pipeline the token read runs (src/authorize/pipeline.ts) */
  constructor(private readonly deps: ServiceDeps & { pipeline: Pick<AuthorizePipeline, 'readApproved' | 'approvalRule'> }) {
    this.settled.setMaxListeners(0);
  }

  // --- reading -------------------------------------------------------------------

  /** Reads one approval; one past its expiry is marked `expired` (with its audit entry) first. */
  private async load(id: string): Promise<ApprovalRecord | null> {
    const a = await this.deps.store.getApproval(id);
    if (!a) return null;
    const now = this.deps.clock.now();
    if ((a.status === 'pending' || a.status === 'approved') && a.expiresAt <= now) {
      await this.deps.store.expireApprovals(now, [id]);
      return this.deps.store.getApproval(id);
    }
    return a;
  }

  /** Resolves when the approval is settled on this instance, after `ms`, or on abort. */
  private waitForChange(id: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.settled.off(id, done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.settled.on(id, done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  async operatorView(a: ApprovalRecord): Promise<OperatorApprovalView> {
    const task = await this.deps.store.getTask(a.taskId);
    return operatorApprovalView(a, { task, chain: (await chainOf(this.deps.store, task)).agents });
  }

  async list(by: OperatorRecord, filter: { status?: ApprovalRecord['status']; taskId?: string; limit?: number }): Promise<OperatorApprovalView[]> {
    requireRole(by, 'approver', 'auditor');
    await this.deps.store.expireApprovals(this.deps.clock.now());
    const list = await this.deps.store.listApprovals(filter);
    return Promise.all(list.map((a) => this.operatorView(a)));
  }

  /** An operator's read (approver, auditor, or the task's owner): never issues anything. */
  async getForOperator(by: OperatorRecord, id: string, waitSeconds = 0, signal?: AbortSignal): Promise<OperatorApprovalView> {
    let a = await this.load(id);
    if (a && !hasRole(by, 'approver', 'auditor')) {
      const task = await this.deps.store.getTask(a.taskId);
      if (!task || task.owner !== by.id) a = null;
    }
    if (!a) throw new NotFoundError(`approval \`${id}\` does not exist`, 'approval_not_found');
    a = await this.waitWhilePending(a, waitSeconds, signal);
    return this.operatorView(a);
  }

  private async waitWhilePending(a: ApprovalRecord, waitSeconds: number, signal?: AbortSignal): Promise<ApprovalRecord> {
    const deadline = Date.now() + Math.min(Math.max(waitSeconds, 0), MAX_WAIT_SECONDS) * 1000;
    while (a.status === 'pending' && !signal?.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await this.waitForChange(a.id, Math.min(POLL_MS, left), signal);
      a = (await this.load(a.id)) ?? a;
    }
    return a;
  }

  /**
   * The agent's read, with its task token (of the approval's task). While pending it
   * may wait up to `waitSeconds`. The first read of an approved approval re-checks the
   * action (task scope, policy with the approval granted) and answers `approved` with
   * its action token, using the approval in the same transaction as the allow; every
   * later read sees `used`. A read that loses a race for the same approval sees `used` too.
   */
  async readAsAgent(ctx: { task: TaskRecord; agent: AgentRecord }, id: string, waitSeconds = 0, signal?: AbortSignal): Promise<AgentApprovalRead> {
    let a = await this.load(id);
    if (!a || a.taskId !== ctx.task.id || a.agentId !== ctx.agent.id) throw new NotFoundError(`approval \`${id}\` does not exist`, 'approval_not_found');
    a = await this.waitWhilePending(a, waitSeconds, signal);
    if (a.status !== 'approved') return agentApprovalView(a);
    // the task may have moved on while we waited: read it afresh
    const fresh = await this.deps.store.getTaskWithAgent(ctx.task.id);
    return this.issue(fresh ?? ctx, a);
  }

  /**
   * Issues an approved approval's token: the authorize pipeline with the approval as one
   * more fact (the task scope and the policy of this moment, its rule met by the reviews).
   */
  private async issue(ctx: { task: TaskRecord; agent: AgentRecord }, a: ApprovalRecord): Promise<AgentApprovalRead> {
    const { result, now } = await this.deps.pipeline.readApproved(ctx, a);
    if (result.decision === 'allow') {
      // This read answers `approved` with the token; the approval is `used` from now on.
      return { ...agentApprovalView({ ...a, usedAt: now, usedDecisionId: result.decision_id }), ...result, approval_id: a.id };
    }
    if (result.decision === 'deny' && result.reasons[0]?.code === 'approval_unavailable') {
      // another read used it first (or it just expired)
      const now2 = await this.load(a.id);
      return agentApprovalView(now2 ?? a);
    }
    const reasons = result.decision === 'deny' ? result.reasons : [];
    return { ...agentApprovalView(a), decision: 'deny', decision_id: result.decision_id, reasons };
  }

  // --- reviews -------------------------------------------------------------------

  /**
   * One review. Refused with 403 `self_approval` to an agent of the task's delegation
   * chain and, under four eyes, to the task owner (and the owners up the chain).
   */
  async review(by: OperatorRecord, id: string, verdict: 'approve' | 'deny', comment?: string): Promise<OperatorApprovalView> {
    requireRole(by, 'approver');
    const a = await this.load(id);
    if (!a) throw new NotFoundError(`approval \`${id}\` does not exist`, 'approval_not_found');
    if (a.status !== 'pending') throw new ConflictError(`approval \`${id}\` is ${a.status}`, 'approval_not_pending');
    const task = await this.deps.store.getTask(a.taskId);
    // an approval of a task that has ended would never be used: nothing to approve
    if (!task || task.status !== 'active' || task.expiresAt <= this.deps.clock.now()) {
      throw new ConflictError(`task \`${a.taskId}\` is not active`, 'task_not_active');
    }
    const { agents, owners } = await chainOf(this.deps.store, task);
    // An operator that is (named as) an agent of the chain is that agent approving itself.
    if (agents.includes(by.id) || agents.includes(by.name)) {
      throw new ForbiddenError('an agent of the delegation chain cannot approve its own action', 'self_approval');
    }
    // Reviews are checked against the rule of the policy in force, not the one recorded
    // when the approval was asked for (a policy may have added `@approvals`/`@four_eyes`).
    const rule = await this.currentRule(a, task);
    if (rule.fourEyes && (owners.includes(by.id) || owners.includes(`operator:${by.id}`))) {
      throw new ForbiddenError('the policy asks for four eyes: the task owner cannot approve it', 'self_approval');
    }
    const now = this.deps.clock.now();
    const r = await this.deps.store.reviewApproval(
      id,
      { approver: by.id, verdict, comment: comment ?? null, at: now },
      {
        approvedTtlMs: this.deps.config.approvalApprovedTtlSeconds * 1000,
        rule: { quorum: rule.quorum, fourEyes: rule.fourEyes, uncounted: [...(rule.fourEyes ? [...agents, ...owners] : agents), ...(await this.noLongerApprovers(a))] },
      },
      (after) => [
        {
          type: 'approval.reviewed',
          actor: `operator:${by.id}`,
          taskId: a.taskId,
          agentId: a.agentId,
          decisionId: a.decisionId,
          data: { approval_id: id, approver: by.id, verdict, comment: comment ?? null, status: after.status, approvals: approvalsCount(after), quorum: after.quorum },
        },
      ],
    );
    if (!r.ok) {
      if (r.reason === 'not_found') throw new NotFoundError(`approval \`${id}\` does not exist`, 'approval_not_found');
      if (r.reason === 'already_reviewed') throw new ConflictError(`you have reviewed approval \`${id}\` already`, 'already_reviewed');
      throw new ConflictError(`approval \`${id}\` is ${r.approval?.status === 'pending' ? 'expired' : (r.approval?.status ?? 'settled')}`, 'approval_not_pending');
    }
    if (r.approval.status !== 'pending') this.settled.emit(id);
    return operatorApprovalView(r.approval, { task, chain: agents });
  }

  /** The reviewers of `a` who approved but may no longer approve (see `stillApprovers`). */
  private async noLongerApprovers(a: ApprovalRecord): Promise<string[]> {
    const yes = [...new Set(a.reviews.filter((r) => r.verdict === 'approve').map((r) => r.approver))];
    const still = new Set(await stillApprovers(this.deps.store, yes));
    return yes.filter((id) => !still.has(id));
  }

  /**
   * The rule (quorum, four eyes) the policy in force sets for the approval's action; the
   * recorded one when the policy no longer lets any approval allow it (the token read
   * then denies whatever the reviews).
   */
  private async currentRule(a: ApprovalRecord, task: TaskRecord): Promise<{ quorum: number; fourEyes: boolean }> {
    const agent = await this.deps.store.getAgent(a.agentId);
    if (!agent) return { quorum: a.quorum, fourEyes: a.fourEyes };
    const rule = await this.deps.pipeline.approvalRule({ task, agent }, actionOfApproval(a), a.argsDigest);
    return rule ?? { quorum: a.quorum, fourEyes: a.fourEyes };
  }

  /** Marks pending and approved approvals past their expiry `expired` (the background sweep). */
  async sweep(now: number): Promise<void> {
    const expired = await this.deps.store.expireApprovals(now);
    for (const a of expired) this.settled.emit(a.id);
  }
}
