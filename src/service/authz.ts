import { DecisionCommitter } from '../audit/decision-committer.js';
import type { Clock } from '../core/clock.js';
import { ConflictError, InvalidRequestError, RateLimitedError, NotFoundError, UnavailableError } from '../core/errors.js';
import { WindowLimiter } from '../core/window-limiter.js';
import type { AgentRecord, TaskRecord } from '../core/types.js';
import { buildCedarRequest, type ActionInput } from '../policy/request.js';
import { AuthorizePipeline } from '../authorize/pipeline.js';
import type { AuthorizeResult } from '../authorize/result.js';
import type { ServiceDeps } from './deps.js';
import { ToolVisibilityCache } from '../policy/tool-visibility.js';
import type { Store } from '../store/store.js';
import { matchesAny } from '../core/scope.js';
import type { WritConfig } from './config.js';
import { PolicyService } from './policy.js';
import type { TaskPrincipal } from '../tokens/token-types.js';

/**
 * Actions: the authorize pipeline (src/authorize), the outcome of an allowed action, and
 * which tools a task could be allowed to call (an MCP gateway's tools/list).
 */
export class AuthorizeService {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly config: WritConfig;
  /** outcomes queued for the next commit: a second report of one is refused at once */
  private readonly outcomesQueued = new Set<string>();
  /** `POST /v1/tools/visible`: answers per task and policy version, and requests per task per window */
  private readonly toolVisibility = new ToolVisibilityCache();
  private readonly visibleToolsRate: WindowLimiter;

  constructor(private readonly deps: ServiceDeps & { pipeline: AuthorizePipeline; committer: DecisionCommitter; policy: PolicyService }) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.config = deps.config;
    this.visibleToolsRate = new WindowLimiter(this.config.visibleToolsLimit.max, this.config.visibleToolsLimit.windowMs, () => this.clock.now());
  }

  /**
   * Decides one action: the authorize pipeline (src/authorize/pipeline.ts: bounds,
   * facts, a pure decide step, commit).
   */
  authorize(ctx: { task: TaskRecord; agent: AgentRecord }, action: ActionInput): Promise<AuthorizeResult> {
    return this.deps.pipeline.authorize(ctx, action);
  }

  /**
   * Records an allowed action's outcome. It is written with the next batch of decisions
   * (no durable write of its own: src/audit/decision-committer.ts). `wait: false` answers
   * once it is checked and queued, not written: for a caller that never waits on it (the
   * MCP gateway reports every call's outcome off the call's path).
   */
  async reportOutcome(
    principal: TaskPrincipal,
    decisionId: string,
    input: { status: 'succeeded' | 'failed'; detail?: string },
    options: { wait?: boolean } = {},
  ): Promise<{ decision_id: string; status: string }> {
    const d = await this.store.getDecision(decisionId);
    if (!d || d.taskId !== principal.taskId) throw new NotFoundError(`decision \`${decisionId}\` does not exist`, 'decision_not_found');
    if (d.decision !== 'allow') throw new ConflictError('only an allowed action has an outcome', 'not_allowed_decision');
    if (d.outcome !== null) throw new ConflictError('the outcome was reported before', 'outcome_already_reported');
    return this.submitOutcome(principal, decisionId, d, input, options);
  }

  /**
   * The outcome of an allow this Writ answered in this process, to a caller that kept
   * what it was answered (the in-process MCP gateway, src/gateway/authorizer.ts): the
   * decision, its task and agent are known, so it is not read back. What guards the
   * record is the same: the caller holds the allow only for the task it was decided for;
   * once (a report queued is refused at once, and the write sets only an outcome not set).
   */
  reportOwnOutcome(
    principal: TaskPrincipal,
    allowed: { decisionId: string; taskId: string; agentId: string },
    input: { status: 'succeeded' | 'failed'; detail?: string },
    options: { wait?: boolean } = {},
  ): Promise<{ decision_id: string; status: string }> {
    if (allowed.taskId !== principal.taskId) return Promise.reject(new NotFoundError(`decision \`${allowed.decisionId}\` does not exist`, 'decision_not_found'));
    return this.submitOutcome(principal, allowed.decisionId, allowed, input, options);
  }

  /** Queues the outcome for the next commit; a second report of one still queued is refused at once. */
  private async submitOutcome(
    principal: TaskPrincipal,
    decisionId: string,
    d: { taskId: string; agentId: string },
    input: { status: 'succeeded' | 'failed'; detail?: string },
    options: { wait?: boolean },
  ): Promise<{ decision_id: string; status: string }> {
    if (this.outcomesQueued.has(decisionId)) throw new ConflictError('the outcome was reported before', 'outcome_already_reported');
    this.outcomesQueued.add(decisionId);
    const written = this.deps.committer
      .submitOutcome({
        decisionId,
        outcome: input.status,
        audit: { type: 'action.outcome', actor: `agent:${principal.agentId}`, taskId: d.taskId, agentId: d.agentId, decisionId, data: { status: input.status, detail: input.detail ?? null } },
      })
      .finally(() => this.outcomesQueued.delete(decisionId));
    if (options.wait === false) {
      void written.catch(() => undefined);
      return { decision_id: decisionId, status: input.status };
    }
    const ok = await written;
    if (ok === 'failed') throw new UnavailableError('the outcome could not be written; report it again');
    if (!ok) throw new ConflictError('the outcome was reported before', 'outcome_already_reported');
    return { decision_id: decisionId, status: input.status };
  }

  /** Writes the outcomes queued for the next commit now, without waiting for a decision to ride with (the in-process gateway's flush). */
  flushOutcomes(): Promise<void> {
    return this.deps.committer.drain();
  }

  /**
   * Of `tools`, those this task could be allowed to call: inside its scope, and not
   * denied by policy whatever the call's details (partial evaluation). For listing
   * (an MCP gateway's tools/list); every call is still decided on its own.
   */
  async visibleTools(ctx: { task: TaskRecord; agent: AgentRecord }, tools: string[]): Promise<string[]> {
    const max = this.config.visibleToolsMax;
    if (tools.length > max) {
      throw new InvalidRequestError(`\`tools\` lists ${tools.length} tools; at most ${max} per request (ask in batches)`, undefined, 'too_many_tools');
    }
    const limited = this.visibleToolsRate.check(ctx.task.id);
    if (limited.blocked) {
      throw new RateLimitedError(`task \`${ctx.task.id}\` asked for visible tools ${limited.count} times in ${this.visibleToolsRate.windowMs} ms; retry later`, {
        retryAfterSeconds: limited.retryAfterMs / 1000,
      });
    }
    this.visibleToolsRate.record(ctx.task.id);
    const set = await this.deps.policy.currentPolicy();
    const now = this.clock.now();
    const out: string[] = [];
    // Each partial evaluation runs on the event loop: give it back every few ms, so one
    // long list does not hold up every other request.
    let sliceStart = performance.now();
    for (const tool of tools) {
      if (!matchesAny(ctx.task.scope.tools, tool)) continue;
      const toolLabels = await this.deps.policy.labelsFor(tool);
      let visible = this.toolVisibility.get(ctx.task.id, set.version, tool, toolLabels);
      if (visible === undefined) {
        const request = buildCedarRequest({
          agent: ctx.agent, task: ctx.task, action: { tool, arguments: {}, audience: '' }, argsDigest: '', now, withArgs: false, toolLabels,
        });
        visible = this.deps.policy.engine.couldAllow(request, set) !== 'deny';
        this.toolVisibility.set(ctx.task.id, set.version, tool, toolLabels, visible);
        if (performance.now() - sliceStart >= 5) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
        }
      }
      if (visible) out.push(tool);
    }
    return out;
  }
}
