import { stageEnd, stageStart } from '../core/stage-profile.js';
import { inSpan, tracingOn } from '../core/tracing.js';
import type { Span } from '@opentelemetry/api';
import type { Clock } from '../core/clock.js';
import { checkArgumentKeys } from '../core/argument-keys.js';
import { undecided } from '../core/decision.js';
import { checkDestination } from '../core/destination.js';
import { digestArguments } from '../core/digest.js';
import { RateLimitedError } from '../core/errors.js';
import type { ApprovalRecord } from '../core/escalation-types.js';
import { newId } from '../core/ids.js';
import { checkResource } from '../core/resource.js';
import type { AgentRecord, DecisionRecord, TaskRecord } from '../core/types.js';
import { WindowLimiter } from '../core/window-limiter.js';
import type { LoadedPolicySet } from '../policy/engine.js';
import type { ActionInput, RequestFacts } from '../policy/request.js';
import type { WritConfig } from '../service/config.js';
import type { WritMetrics } from '../service/metrics.js';
import type { Store } from '../store/store.js';
import type { DecisionCommit, SecurityEvent } from './commit.js';
import { bounds, decide, type Verdict } from './decide.js';
import { approvalRuleFor, type Evaluator } from './escalation.js';
import { decideLifting } from './decide-lifting.js';
import { actionOfApproval, approvalFact, gatherFacts, type FactSources } from './facts.js';
import type { AuthorizeResult } from './result.js';

export interface PipelineDeps {
  store: Store;
  clock: Clock;
  config: WritConfig;
  securityEvent: SecurityEvent;
  /** the policy engine's evaluation (the decide step's only dependency) */
  engine: Evaluator;
  /** the active policy set (src/service/policy.ts: re-read at most once a second) */
  currentPolicy(): Promise<LoadedPolicySet>;
  toolLabels: FactSources['toolLabels'];
  ownerPresent: FactSources['ownerPresent'];
  /** the staged rollout's candidate decides beside the live set, never waited for (src/service/policy-shadow.ts) */
  shadow: { observe(input: { decisionId: string; facts: RequestFacts; now: number }): void };
  commit: DecisionCommit;
  metrics: WritMetrics;
}

type Ctx = { task: TaskRecord; agent: AgentRecord };

/**
 * The one authorize pipeline (issue 11 item 4): the hard bounds, then the facts
 * (./facts.ts), a pure decide step (./decide.ts: evaluate, escalate), and the commit
 * (./commit.ts). `authorize` runs it for an agent's request; `readApproved` runs the
 * same steps for the read that issues an approved approval's token, with the approval
 * as one more fact.
 */
export class AuthorizePipeline {
  /** denied or approval-requiring answers per task per window (config `taskRefusalLimit`) */
  private readonly taskRefusals: WindowLimiter;
  /** decisions in flight: with one alone, Cedar may run on this thread (src/policy/engine.ts `evaluateAsync`) */
  private inFlight = 0;

  constructor(private readonly deps: PipelineDeps) {
    this.taskRefusals = new WindowLimiter(deps.config.taskRefusalLimit.max, deps.config.taskRefusalLimit.windowMs, () => deps.clock.now());
  }

  private sources(): FactSources {
    return { store: this.deps.store, toolLabels: this.deps.toolLabels, ownerPresent: this.deps.ownerPresent };
  }

  /**
   * Decides one action. Order: task state and scope (hard bounds), budget, then
   * Cedar. An allow signs the action token first but returns it only after the
   * decision record and its audit entry have committed, together with the budget
   * unit (which is taken atomically, so concurrent requests never overspend).
   */
  async authorize(ctx: Ctx, action: ActionInput): Promise<AuthorizeResult> {
    stageStart();
    this.inFlight += 1;
    try {
      // tracing on: the decision's span, parent of the stage spans (policy, sign, store)
      if (tracingOn()) return await inSpan('writ.authorize', { attributes: { 'writ.agent_id': ctx.agent.id, 'writ.tool': action.tool } }, (span) => this.authorizeNow(ctx, action, span));
      return await this.authorizeNow(ctx, action, null);
    } finally {
      this.inFlight -= 1;
    }
  }

  private async authorizeNow(ctx: Ctx, action: ActionInput, span: Span | null): Promise<AuthorizeResult> {
    // A task already over its refusal rate is answered at once, before any policy work.
    await this.refuseOverRate(ctx, this.taskRefusals.check(ctx.task.id));
    const result = await this.decideAction(ctx, action);
    span?.setAttributes({
      'writ.decision': result.decision,
      'writ.decision_id': result.decision_id,
      ...(result.decision === 'deny' && result.reasons[0] ? { 'writ.reason': result.reasons[0].code } : {}),
    });
    return result;
  }

  private async decideAction(ctx: Ctx, action: ActionInput): Promise<AuthorizeResult> {
    const { clock, commit } = this.deps;
    // The HTTP edge checks these too; the in-process gateway reaches this method directly.
    checkArgumentKeys(action.arguments);
    if (action.resource !== undefined) checkResource(action.resource);
    if (action.destination !== undefined) checkDestination(action.destination);
    const now = clock.now();
    const argsDigest = digestArguments(action.arguments);
    const set = await this.deps.currentPolicy();
    const base = this.base(ctx, action, argsDigest, set, now);

    const deny = async (v: Extract<Verdict, { decision: 'deny' }>): Promise<AuthorizeResult> => {
      await this.countRefusal(ctx);
      await commit.record({ ...base, reasons: v.reasons, policies: v.policies }, {}, action.arguments);
      return { decision: 'deny', decision_id: base.id, reasons: v.reasons };
    };

    const bound = bounds(ctx, action, now, { active: false, budget: true });
    if (bound?.decision === 'deny') return deny(bound);
    stageEnd('scope');

    const facts = await gatherFacts(this.sources(), ctx, action, argsDigest, now, set);
    // staged rollout: the candidate set decides too, beside this (never waited for, never enforced)
    this.deps.shadow.observe({ decisionId: base.id, facts: facts.request, now });
    stageEnd('facts');
    const cedarStart = performance.now();
    // an active break-glass is looked up only for a refusal it could lift (./decide-lifting.ts)
    const verdict = await decideLifting(this.deps.engine, set, facts, this.deps.store, () => {
      this.deps.metrics.observeStage('cedar', cedarStart);
      stageEnd('cedar');
    }, this.inFlight === 1);
    if (verdict.decision === 'deny') return deny(verdict);
    if (verdict.decision === 'approval_required') {
      await this.countRefusal(ctx);
      return commit.approvalRequired(ctx, action, base, verdict);
    }
    return commit.allow(ctx, base, {
      arguments: action.arguments,
      policies: verdict.policies,
      ...(verdict.breakGlassId ? { breakGlassId: verdict.breakGlassId, reasons: verdict.reasons } : {}),
    });
  }

  /**
   * The read of an approved approval (src/approvals/service.ts): the same steps, with
   * the task read afresh, the approval as one more fact, and the allow using the
   * approval in its commit. A deny is recorded with the approval's id.
   */
  async readApproved(ctx: Ctx, a: ApprovalRecord): Promise<{ result: AuthorizeResult; now: number }> {
    const { clock, commit } = this.deps;
    const now = clock.now();
    const set = await this.deps.currentPolicy();
    const action = actionOfApproval(a);
    const base = this.base(ctx, action, a.argsDigest, set, now);
    const denied = async (v: Extract<Verdict, { decision: 'deny' }>): Promise<{ result: AuthorizeResult; now: number }> => {
      await commit.record({ ...base, reasons: v.reasons, policies: v.policies }, { approval_id: a.id }, action.arguments);
      return { result: { decision: 'deny', decision_id: base.id, reasons: v.reasons }, now };
    };
    const bound = bounds(ctx, action, now, { active: true, budget: false });
    if (bound?.decision === 'deny') return denied(bound);
    const facts = await gatherFacts(this.sources(), ctx, action, a.argsDigest, now, set);
    if (!facts.problem) facts.approval = await approvalFact(this.deps.store, ctx.task, a);
    const verdict = await decide(this.deps.engine, set, facts);
    if (verdict.decision === 'deny') return denied(verdict);
    if (verdict.decision !== 'allow') throw new Error('the approval read decides allow or deny');
    const approvers = verdict.approvers ?? [];
    const result = await commit.allow(ctx, base, {
      arguments: action.arguments,
      policies: verdict.policies,
      ...(verdict.reasons ? { reasons: verdict.reasons } : {}),
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
    return { result, now };
  }

  /**
   * The approval rule (quorum, four eyes) the policy in force sets for an action, from
   * the same facts; null when no number of approvals makes it an allow.
   */
  async approvalRule(ctx: Ctx, action: ActionInput, argsDigest: string): Promise<{ quorum: number; fourEyes: boolean } | null> {
    const set = await this.deps.currentPolicy();
    const facts = await gatherFacts(this.sources(), ctx, action, argsDigest, this.deps.clock.now(), set);
    const rule = approvalRuleFor(this.deps.engine, facts.request, set);
    return rule ? { quorum: rule.quorum, fourEyes: rule.fourEyes } : null;
  }

  private base(ctx: Ctx, action: ActionInput, argsDigest: string, set: LoadedPolicySet, now: number): DecisionRecord {
    return undecided({
      id: newId('dec'),
      taskId: ctx.task.id,
      agentId: ctx.agent.id,
      tool: action.tool,
      audience: action.audience,
      resource: action.resource ?? null,
      destination: action.destination ?? null,
      argsDigest,
      policyVersion: set.version,
      createdAt: now,
    });
  }

  /**
   * Denies and approval requests each cost a decision record and its audit entry (an
   * approval also holds a place in a person's review queue): a task that keeps being
   * refused is slowed down. A refusal takes its place in the window at the moment it is
   * known, before it is written, so requests sent together are counted as they are
   * decided (not all let through because none had finished). Allows never count: the
   * task's budget bounds them, and concurrent allowed requests must not be slowed.
   */
  private async countRefusal(ctx: Ctx): Promise<void> {
    const limited = this.taskRefusals.check(ctx.task.id);
    // check and record with no await between them: no other request counts in between
    if (!limited.blocked) {
      this.taskRefusals.record(ctx.task.id);
      return;
    }
    await this.refuseOverRate(ctx, limited);
  }

  private async refuseOverRate(ctx: Ctx, limited: ReturnType<WindowLimiter['check']>): Promise<void> {
    if (!limited.blocked) return;
    if (limited.report) {
      await this.deps.securityEvent('security.rate_limited', `agent:${ctx.agent.id}`, { task_id: ctx.task.id, refusals: limited.count, window_ms: this.taskRefusals.windowMs }, { taskId: ctx.task.id, agentId: ctx.agent.id });
    }
    throw new RateLimitedError(`task \`${ctx.task.id}\` was denied or sent to approval ${limited.count} times in ${this.taskRefusals.windowMs} ms; retry later`, {
      retryAfterSeconds: limited.retryAfterMs / 1000,
    });
  }
}
