import { stageEnd } from '../core/stage-profile.js';
import { canonicalJson } from '../core/digest.js';
import { epochSeconds } from '../core/clock.js';
import { RateLimitedError } from '../core/errors.js';
import type { ApprovalRecord } from '../core/escalation-types.js';
import { newId } from '../core/ids.js';
import type { AgentRecord, AuditInput, DecisionRecord, Reason, TaskRecord } from '../core/types.js';
import { auditArguments } from '../audit/mask-arguments.js';
import type { DecisionCommitter } from '../audit/decision-committer.js';
import type { ActionInput } from '../policy/request.js';
import type { WritConfig } from '../service/config.js';
import type { WritMetrics } from '../service/metrics.js';
import type { GuardFailure, Store } from '../store/store.js';
import { lineageOf } from '../tasks/delegation.js';
import type { KeyRing } from '../tokens/key-ring.js';
import { ACTION_TOKEN_TYP, type ActionTokenClaims } from '../tokens/token-types.js';
import { actionDigest } from './escalation.js';
import type { AllowOptions, AuthorizeResult } from './result.js';

/**
 * Signs the action token in a turn of the event loop queued just after the group
 * commit's (src/audit/group-commit.ts schedules its batch with setImmediate when the
 * item is submitted): the batch's SQL has run by then and its durable flush (the WAL
 * fsync on the threadpool, or PostgreSQL's round trip) is in flight, so at one request
 * in flight the signature costs no latency. The order is only what makes it overlap;
 * the token is returned only after the commit resolved, whichever finishes first.
 *
 * What is left to fail here is an Ed25519 signature over bytes already fixed, with a
 * key already loaded (KeyRing.prepareJwt): if it ever threw, the answer is a 5xx and
 * the committed allow names a token (`token_jti`) that was never given out, as when an
 * answer is lost on its way back; the budget unit stays spent, nothing is allowed.
 */
function signBesideCommit(sign: () => string, metrics: WritMetrics): Promise<string> {
  const signed = new Promise<string>((resolve, reject) =>
    setImmediate(() => {
      stageEnd('commit', true); // the batch's SQL, which ran just before
      const signStart = performance.now();
      try {
        resolve(sign());
      } catch (err) {
        reject(err);
      }
      metrics.observeStage('sign', signStart);
      stageEnd('sign');
    }),
  );
  // a failed commit is thrown first; the signature is then never awaited
  signed.catch(() => undefined);
  return signed;
}

/** Records a security event (src/audit/audit-batcher.ts through the audit service); never blocks. */
export type SecurityEvent = (type: string, actor: string, data: Record<string, unknown>, ids?: { taskId?: string; agentId?: string; decisionId?: string }) => Promise<void>;

export interface CommitDeps {
  store: Store;
  config: WritConfig;
  keys: KeyRing;
  committer: DecisionCommitter;
  metrics: WritMetrics;
  securityEvent: SecurityEvent;
}

/**
 * The commit step of the authorize pipeline (./pipeline.ts): what was decided becomes
 * durable. A deny or an `approval_required` is a decision record with its audit entry
 * (group-committed); an allow also takes a unit of the task's budget, atomically, and
 * its action token is returned only once that has committed.
 */
export class DecisionCommit {
  constructor(private readonly deps: CommitDeps) {}

  /** The `decision` audit entry; `extra` adds `approval_id`, `break_glass: true` and its id where they apply. */
  decisionAudit(d: DecisionRecord, extra: Record<string, unknown> = {}, args?: Record<string, unknown>): AuditInput {
    const { config } = this.deps;
    // The arguments as asked, for investigators (masked as configured); `args_digest`
    // always covers them unmasked.
    const kept = args === undefined ? undefined : auditArguments(args, d.tool, config.auditArgs, config.auditMaskRules);
    return {
      type: 'decision',
      actor: `agent:${d.agentId}`,
      taskId: d.taskId,
      agentId: d.agentId,
      decisionId: d.id,
      data: {
        decision: d.decision,
        tool: d.tool,
        audience: d.audience,
        resource: d.resource,
        destination: d.destination,
        args_digest: d.argsDigest,
        policy_version: d.policyVersion,
        policies: d.policies,
        reasons: d.reasons,
        token_jti: d.tokenJti,
        token_exp: d.tokenExpiresAt,
        ...(kept !== undefined ? { arguments: kept } : {}),
        ...extra,
      },
    };
  }

  /** Writes a decision that takes no budget (a deny, an approval_required) through the group commit. */
  async record(d: DecisionRecord, extra?: Record<string, unknown>, args?: Record<string, unknown>): Promise<void> {
    await this.deps.committer.submit({ decision: d, audit: this.decisionAudit(d, extra, args) });
  }

  /**
   * An allow: returns the action token only after the decision record and its audit
   * entry have committed and are durable, together with the budget unit (taken
   * atomically, so concurrent requests never overspend) and, for an approval, the
   * approval's one use. The token is signed while that commit's flush is in flight.
   */
  async allow(ctx: { task: TaskRecord; agent: AgentRecord }, base: DecisionRecord, options: AllowOptions): Promise<AuthorizeResult> {
    const { store, config, keys, committer, metrics } = this.deps;
    const { task, agent } = ctx;
    const now = base.createdAt;
    const lineage = await lineageOf(store, task);
    const iat = epochSeconds(now);
    const exp = Math.min(iat + config.actionTokenTtlSeconds, epochSeconds(task.expiresAt));
    const jti = newId('act');
    const claims: ActionTokenClaims = {
      iss: config.issuer,
      sub: agent.id,
      aud: base.audience,
      iat,
      exp,
      jti,
      txn: task.id,
      decision_id: base.id,
      tool: base.tool,
      args_digest: base.argsDigest,
      // what was judged, so a tool server can hold the call to it
      ...(base.resource !== null ? { resource: base.resource } : {}),
      ...(base.destination !== null ? { destination: base.destination } : {}),
      ...(lineage.act ? { act: lineage.act } : {}),
      ...(options.approval ? { approval_id: options.approval.id } : {}),
      ...(options.breakGlassId ? { break_glass: true as const } : {}),
    };
    // The key is chosen and the token's bytes fixed now, so what can fail fails before
    // anything is written; the Ed25519 signature itself is made while the commit's flush
    // is in flight (signBesideCommit).
    const sign = keys.prepareJwt(ACTION_TOKEN_TYP, claims as unknown as Record<string, unknown>);
    stageEnd('sign', true);
    const approvalRef = options.approval ? { approval_id: options.approval.id } : {};
    const flags = { ...approvalRef, ...(options.breakGlassId ? { break_glass: true, break_glass_id: options.breakGlassId } : {}) };
    const allowed: DecisionRecord = { ...base, decision: 'allow', reasons: options.reasons ?? [], policies: options.policies, tokenJti: jti, tokenExpiresAt: exp * 1000 };
    const fallbackReasons = (why: GuardFailure): Reason[] =>
      why === 'budget_exhausted'
        ? [{ code: 'budget_exhausted', message: `the task has used its ${task.maxActions} actions` }]
        : why === 'approval_unavailable'
          ? [{ code: 'approval_unavailable', message: 'the approval was used, has expired or is not approved' }]
          : why === 'break_glass_inactive'
            ? [{ code: 'break_glass_ended', message: `break-glass \`${options.breakGlassId}\` ended before the decision was recorded` }]
            : [{ code: 'task_not_active', message: `task \`${task.id}\` is not active` }];
    const commitStart = performance.now();
    const committed = committer.submit({
      decision: allowed,
      audit: this.decisionAudit(allowed, flags, options.arguments),
      guard: { taskId: task.id },
      ...(options.approval ? { approval: options.approval } : {}),
      // The break-glass this allow relies on must still be active when it commits.
      ...(options.breakGlassId ? { breakGlass: { id: options.breakGlassId } } : {}),
      // Another request took the last unit, or the task ended, or the approval was used, since it was read.
      fallback: (why) => {
        const denied: DecisionRecord = { ...base, reasons: fallbackReasons(why) };
        return { decision: denied, audit: this.decisionAudit(denied, approvalRef, options.arguments) };
      },
    });
    const signed = signBesideCommit(sign, metrics);
    const result = await committed;
    metrics.observeStage('commit', commitStart);
    stageEnd('commit');
    if (result.written === 'fallback') {
      return { decision: 'deny', decision_id: base.id, reasons: fallbackReasons(result.reason) };
    }
    return { decision: 'allow', decision_id: base.id, action_token: await signed, expires_in: exp - iat, args_digest: base.argsDigest };
  }

  /**
   * Records `approval_required` for an action: a new approval, or the open one of the
   * same task for the very same action (asking twice does not pile up approvals).
   */
  async approvalRequired(
    ctx: { task: TaskRecord; agent: AgentRecord },
    action: ActionInput,
    base: DecisionRecord,
    verdict: { policies: string[]; quorum: number; fourEyes: boolean },
  ): Promise<AuthorizeResult> {
    const { store, config } = this.deps;
    const now = base.createdAt;
    const policies = verdict.policies;
    const digest = actionDigest({ ...base, taskId: ctx.task.id });
    const reasons: Reason[] = [
      {
        code: 'approval_required',
        message: `policy ${policies.map((p) => `\`${p}\``).join(', ')} allows this action only with ${verdict.quorum === 1 ? 'a person\'s approval' : `${verdict.quorum} approvals`}`,
      },
    ];
    const decision: DecisionRecord = { ...base, decision: 'approval_required', reasons, policies };
    const open = await store.findOpenApproval(ctx.task.id, digest, now);
    if (open) {
      await this.record(decision, { approval_id: open.id });
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
      quorum: verdict.quorum,
      fourEyes: verdict.fourEyes,
      status: 'pending',
      createdAt: now,
      expiresAt: Math.min(now + config.approvalPendingTtlSeconds * 1000, ctx.task.expiresAt),
      settledAt: null,
      usedAt: null,
      usedDecisionId: null,
      reviews: [],
    };
    const created = await store.createApproval(approval, decision, [
      this.decisionAudit(decision, { approval_id: approval.id }, action.arguments),
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
      await this.deps.securityEvent(
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
}
