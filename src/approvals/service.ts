import { EventEmitter } from 'node:events';
import { canonicalJson } from '../core/digest.js';
import { ConflictError, ForbiddenError, NotFoundError, RateLimitedError } from '../core/errors.js';
import type { ApprovalRecord } from '../core/escalation-types.js';
import { undecided } from '../core/decision.js';
import { newId } from '../core/ids.js';
import type { AgentRecord, DecisionRecord, OperatorRecord, OperatorRole, Reason, TaskRecord } from '../core/types.js';
import type { Evaluation } from '../policy/engine.js';
import { policyDenyReason, policyErrorReason } from '../policy/deny-reasons.js';
import { buildCedarRequest, type ActionInput } from '../policy/request.js';
import type { AuthorizeResult } from '../service/writ.js';
import { checkScope } from '../tasks/scope.js';
import { actionDigest, approvalRuleFor } from './escalation.js';
import type { WritKit } from './kit.js';

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

/**
 * The approvers whose yes counts: never an agent of the delegation chain, and under
 * four eyes never an owner along it.
 */
function countedApprovers(a: ApprovalRecord, by: { agents: string[]; owners: string[]; fourEyes: boolean }): string[] {
  const out = new Set<string>();
  for (const r of a.reviews) {
    if (r.verdict !== 'approve' || by.agents.includes(r.approver)) continue;
    if (by.fourEyes && (by.owners.includes(r.approver) || by.owners.includes(`operator:${r.approver}`))) continue;
    out.add(r.approver);
  }
  return [...out];
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
 * authorize, reviewed by operators (quorum, one deny settles, no self-approval),
 * read by the agent, whose first read of an approved one returns the action token
 * and uses the approval in the same transaction as the allow.
 */
export class ApprovalService {
  private readonly settled = new EventEmitter();

  constructor(private readonly kit: WritKit) {
    this.settled.setMaxListeners(0);
  }

  // --- the authorize side --------------------------------------------------------

  /**
   * Records `approval_required` for an action: a new approval, or the open one of the
   * same task for the very same action (asking twice does not pile up approvals).
   */
  async request(
    ctx: { task: TaskRecord; agent: AgentRecord },
    action: ActionInput,
    base: DecisionRecord,
    esc: { evaluation: Evaluation; quorum: number; fourEyes: boolean },
  ): Promise<AuthorizeResult> {
    const { store, config } = this.kit;
    const now = base.createdAt;
    const policies = esc.evaluation.policies;
    const digest = actionDigest({ ...base, taskId: ctx.task.id });
    const reasons: Reason[] = [
      {
        code: 'approval_required',
        message: `policy ${policies.map((p) => `\`${p}\``).join(', ')} allows this action only with ${esc.quorum === 1 ? 'a person\'s approval' : `${esc.quorum} approvals`}`,
      },
    ];
    const decision: DecisionRecord = { ...base, decision: 'approval_required', reasons, policies };
    const open = await store.findOpenApproval(ctx.task.id, digest, now);
    if (open) {
      await this.kit.recordDecision(decision, { approval_id: open.id });
      return { decision: 'approval_required', decision_id: base.id, approval_id: open.id, expires_in: Math.max(0, Math.ceil((open.expiresAt - now) / 1000)) };
    }
    const approval: ApprovalRecord = {
      id: newId('apr'),
      taskId: ctx.task.id,
      agentId: ctx.agent.id,
      decisionId: base.id,
      actionDigest: digest,
      tool: action.tool,
      arguments: canonicalJson(action.arguments),
      argsDigest: base.argsDigest,
      audience: action.audience,
      resource: action.resource ?? null,
      destination: action.destination ?? null,
      policies,
      policyVersion: base.policyVersion,
      quorum: esc.quorum,
      fourEyes: esc.fourEyes,
      status: 'pending',
      createdAt: now,
      expiresAt: Math.min(now + config.approvalPendingTtlSeconds * 1000, ctx.task.expiresAt),
      settledAt: null,
      usedAt: null,
      usedDecisionId: null,
      reviews: [],
    };
    const created = await store.createApproval(approval, decision, [
      this.kit.decisionAudit(decision, { approval_id: approval.id }, action.arguments),
      {
        type: 'approval.requested',
        actor: `agent:${ctx.agent.id}`,
        taskId: ctx.task.id,
        agentId: ctx.agent.id,
        decisionId: base.id,
        data: {
          approval_id: approval.id,
          action_digest: digest,
          tool: approval.tool,
          args_digest: approval.argsDigest,
          audience: approval.audience,
          resource: approval.resource,
          destination: approval.destination,
          policies,
          quorum: approval.quorum,
          four_eyes: approval.fourEyes,
          expires_at: approval.expiresAt,
        },
      },
    ], { maxOpenPerTask: config.approvalOpenMaxPerTask, maxOpenPerAgent: config.approvalOpenMaxPerAgent, now });
    if (!created.ok) {
      // Nothing was written: no decision, no approval. The refusal is recorded once each
      // (bounded by the task's refusal rate), so flooding shows up in the audit log.
      const max = created.limit === 'task' ? config.approvalOpenMaxPerTask : config.approvalOpenMaxPerAgent;
      const whose = created.limit === 'task' ? `task \`${ctx.task.id}\`` : `agent \`${ctx.agent.id}\``;
      await this.kit.securityEvent(
        'approval.limited',
        `agent:${ctx.agent.id}`,
        { limit: created.limit, open: created.open, max, tool: action.tool, action_digest: digest },
        { taskId: ctx.task.id, agentId: ctx.agent.id },
      );
      throw new RateLimitedError(`${whose} has ${created.open} open approvals, the most it may have (${max}); wait for reviews or expiry`, {
        code: 'approval_limit',
        retryAfterSeconds: 10,
      });
    }
    return { decision: 'approval_required', decision_id: base.id, approval_id: approval.id, expires_in: Math.ceil((approval.expiresAt - now) / 1000) };
  }

  // --- reading -------------------------------------------------------------------

  /** Reads one approval; one past its expiry is marked `expired` (with its audit entry) first. */
  private async load(id: string): Promise<ApprovalRecord | null> {
    const a = await this.kit.store.getApproval(id);
    if (!a) return null;
    const now = this.kit.clock.now();
    if ((a.status === 'pending' || a.status === 'approved') && a.expiresAt <= now) {
      await this.kit.store.expireApprovals(now, [id]);
      return this.kit.store.getApproval(id);
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

  /** The agent ids of the task's delegation chain, root first, and the owners along it. */
  private async lineage(task: TaskRecord | null): Promise<{ agents: string[]; owners: string[] }> {
    const agents: string[] = [];
    const owners: string[] = [];
    let t = task;
    for (let hops = 0; t && hops < 64; hops++) {
      agents.unshift(t.agentId);
      owners.unshift(t.owner);
      t = t.parentId ? await this.kit.store.getTask(t.parentId) : null;
    }
    return { agents, owners };
  }

  async operatorView(a: ApprovalRecord): Promise<OperatorApprovalView> {
    const task = await this.kit.store.getTask(a.taskId);
    return operatorApprovalView(a, { task, chain: (await this.lineage(task)).agents });
  }

  async list(by: OperatorRecord, filter: { status?: ApprovalRecord['status']; taskId?: string; limit?: number }): Promise<OperatorApprovalView[]> {
    requireRole(by, 'approver', 'auditor');
    await this.kit.store.expireApprovals(this.kit.clock.now());
    const list = await this.kit.store.listApprovals(filter);
    return Promise.all(list.map((a) => this.operatorView(a)));
  }

  /** An operator's read (approver, auditor, or the task's owner): never issues anything. */
  async getForOperator(by: OperatorRecord, id: string, waitSeconds = 0, signal?: AbortSignal): Promise<OperatorApprovalView> {
    let a = await this.load(id);
    if (a && !hasRole(by, 'approver', 'auditor')) {
      const task = await this.kit.store.getTask(a.taskId);
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
    const fresh = await this.kit.store.getTaskWithAgent(ctx.task.id);
    return this.issue(fresh ?? ctx, a);
  }

  private async issue(ctx: { task: TaskRecord; agent: AgentRecord }, a: ApprovalRecord): Promise<AgentApprovalRead> {
    const { clock } = this.kit;
    const now = clock.now();
    const set = await this.kit.currentPolicy();
    const action: ActionInput = { tool: a.tool, arguments: JSON.parse(a.arguments) as Record<string, unknown>, audience: a.audience };
    if (a.resource !== null) action.resource = a.resource;
    if (a.destination !== null) action.destination = a.destination;
    const base = undecided({
      id: newId('dec'),
      taskId: ctx.task.id,
      agentId: ctx.agent.id,
      tool: a.tool,
      audience: a.audience,
      resource: a.resource,
      destination: a.destination,
      argsDigest: a.argsDigest,
      policyVersion: set.version,
      createdAt: now,
    });
    const denied = async (reasons: Reason[], policies: string[] = []): Promise<AgentApprovalRead> => {
      const d: DecisionRecord = { ...base, reasons, policies };
      await this.kit.recordDecision(d, { approval_id: a.id }, action.arguments);
      return { ...agentApprovalView(a), decision: 'deny', decision_id: d.id, reasons };
    };
    if (ctx.task.status !== 'active' || ctx.task.expiresAt <= now) return denied([{ code: 'task_not_active', message: `task \`${ctx.task.id}\` is not active` }]);
    const scope = checkScope(ctx.task.scope, action);
    if (scope) return denied([scope]);
    // The policy of this moment, with the approval granted by its approvers.
    const { facts, problem } = await this.kit.requestFacts(ctx, action, a.argsDigest, now, set);
    if (problem) return denied([problem]);
    // The rule (quorum, four eyes) of the policy in force, not the one recorded when the
    // approval was asked for: the reviews must satisfy it now.
    const rule = approvalRuleFor(this.kit.policy, facts, set);
    const { agents, owners } = await this.lineage(ctx.task);
    const counted = await this.stillApprovers(countedApprovers(a, { agents, owners, fourEyes: rule?.fourEyes ?? a.fourEyes }));
    if (rule && counted.length < rule.quorum) {
      return denied(
        [
          {
            code: 'approval_insufficient',
            message: `the policy in force asks for ${rule.quorum === 1 ? 'an approval' : `${rule.quorum} approvals`}${rule.fourEyes ? ' by someone other than the task owner' : ''}; ${counted.length} of this approval's count`,
          },
        ],
        rule.evaluation.policies,
      );
    }
    const e = this.kit.policy.evaluate(buildCedarRequest({ ...facts, approval: { granted: true, approvers: counted.length } }), set);
    if (e.errors.length > 0) {
      return denied([policyErrorReason(e)]);
    }
    if (e.decision !== 'allow') {
      return denied([policyDenyReason(e, ', even approved')], e.policies);
    }
    const approvers = counted;
    const result = await this.kit.issueAllow(ctx, base, {
      arguments: action.arguments,
      policies: e.policies,
      reasons: [{ code: 'approved', message: `approved by ${approvers.join(', ')} (approval \`${a.id}\`)` }],
      approval: {
        id: a.id,
        audit: {
          type: 'approval.used',
          actor: `agent:${ctx.agent.id}`,
          taskId: ctx.task.id,
          agentId: ctx.agent.id,
          decisionId: base.id,
          data: { approval_id: a.id, decision_id: base.id, approvers, action_digest: a.actionDigest },
        },
      },
    });
    if (result.decision === 'allow') {
      // This read answers `approved` with the token; the approval is `used` from now on.
      return { ...agentApprovalView({ ...a, usedAt: now, usedDecisionId: base.id }), ...result, approval_id: a.id };
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
    const task = await this.kit.store.getTask(a.taskId);
    // an approval of a task that has ended would never be used: nothing to approve
    if (!task || task.status !== 'active' || task.expiresAt <= this.kit.clock.now()) {
      throw new ConflictError(`task \`${a.taskId}\` is not active`, 'task_not_active');
    }
    const { agents, owners } = await this.lineage(task);
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
    const now = this.kit.clock.now();
    const r = await this.kit.store.reviewApproval(
      id,
      { approver: by.id, verdict, comment: comment ?? null, at: now },
      {
        approvedTtlMs: this.kit.config.approvalApprovedTtlSeconds * 1000,
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

  /**
   * Of `ids`, the operators who may still approve: they exist, are not disabled, and
   * hold the `approver` (or `admin`) role. An approval given by someone since disabled
   * or demoted no longer counts toward the quorum.
   */
  private async stillApprovers(ids: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const id of ids) {
      const op = await this.kit.store.getOperator(id);
      if (op && !op.disabled && hasRole(op, 'approver')) out.push(id);
    }
    return out;
  }

  /** The reviewers of `a` who approved but may no longer approve (see `stillApprovers`). */
  private async noLongerApprovers(a: ApprovalRecord): Promise<string[]> {
    const yes = [...new Set(a.reviews.filter((r) => r.verdict === 'approve').map((r) => r.approver))];
    const still = new Set(await this.stillApprovers(yes));
    return yes.filter((id) => !still.has(id));
  }

  /**
   * The rule (quorum, four eyes) the policy in force sets for the approval's action; the
   * recorded one when the policy no longer lets any approval allow it (the token read
   * then denies whatever the reviews).
   */
  private async currentRule(a: ApprovalRecord, task: TaskRecord): Promise<{ quorum: number; fourEyes: boolean }> {
    const agent = await this.kit.store.getAgent(a.agentId);
    if (!agent) return { quorum: a.quorum, fourEyes: a.fourEyes };
    const set = await this.kit.currentPolicy();
    const action: ActionInput = { tool: a.tool, arguments: JSON.parse(a.arguments) as Record<string, unknown>, audience: a.audience };
    if (a.resource !== null) action.resource = a.resource;
    if (a.destination !== null) action.destination = a.destination;
    const { facts } = await this.kit.requestFacts({ task, agent }, action, a.argsDigest, this.kit.clock.now(), set);
    const rule = approvalRuleFor(this.kit.policy, facts, set);
    return rule ? { quorum: rule.quorum, fourEyes: rule.fourEyes } : { quorum: a.quorum, fourEyes: a.fourEyes };
  }

  /** Marks pending and approved approvals past their expiry `expired` (the background sweep). */
  async sweep(now: number): Promise<void> {
    const expired = await this.kit.store.expireApprovals(now);
    for (const a of expired) this.settled.emit(a.id);
  }
}
