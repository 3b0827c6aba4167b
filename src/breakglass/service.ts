import { ConflictError, ForbiddenError, InvalidRequestError, NotFoundError } from '../core/errors.js';
import type { BreakGlassRecord, BreakGlassRefusal } from '../core/escalation-types.js';
import { newId } from '../core/ids.js';
import type { OperatorRecord, OperatorRole } from '../core/types.js';
import type { ServiceDeps } from '../service/deps.js';

export interface StartBreakGlassInput {
  agent_id?: string;
  task_id?: string;
  justification: string;
  scope: { tools: string[] };
  duration_seconds: number;
}

export const JUSTIFICATION_MIN = 20;
export const JUSTIFICATION_MAX = 4096;

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function requireRole(op: OperatorRecord, ...roles: OperatorRole[]): void {
  if (!(op.roles.includes('admin') || roles.some((r) => op.roles.includes(r)))) {
    throw new ForbiddenError(`this needs the role ${roles.map((r) => `\`${r}\``).join(' or ')}`, 'insufficient_role');
  }
}

/** The status as of `now`: an active one past its end reads `expired`, a pending one past its deadline `cancelled`. */
export function effectiveStatus(r: BreakGlassRecord, now: number): BreakGlassRecord['status'] {
  if (r.status === 'active' && (r.endsAt ?? 0) <= now) return 'expired';
  if (r.status === 'pending' && (r.confirmDeadline ?? 0) <= now) return 'cancelled';
  return r.status;
}

export function breakGlassView(r: BreakGlassRecord, now: number) {
  const status = effectiveStatus(r, now);
  return {
    id: r.id,
    status,
    agent_id: r.agentId,
    task_id: r.taskId,
    justification: r.justification,
    scope: r.scope,
    duration_seconds: Math.round(r.durationMs / 1000),
    requested_by: r.requestedBy,
    confirmed_by: r.confirmedBy,
    ended_by: r.endedBy,
    created_at: iso(r.createdAt),
    confirm_deadline: status === 'pending' ? iso(r.confirmDeadline) : null,
    starts_at: iso(r.startsAt),
    ends_at: iso(r.endsAt),
    ended_at: iso(r.endedAt ?? (status === 'expired' ? r.endsAt : null)),
    needs_review: status !== 'active' && status !== 'pending' && r.reviewedAt === null,
    reviewed_by: r.reviewedBy,
    reviewed_at: iso(r.reviewedAt),
    review_notes: r.reviewNotes,
  };
}

export type BreakGlassView = ReturnType<typeof breakGlassView>;

function refusal(reason: BreakGlassRefusal, id: string, record: BreakGlassRecord | null, capSeconds: number): Error {
  switch (reason) {
    case 'not_found':
      return new NotFoundError(`break-glass \`${id}\` does not exist`, 'break_glass_not_found');
    case 'already_active':
      return new ConflictError(
        `the agent has a break-glass that is active or awaits confirmation already${record ? ` (\`${record.id}\`)` : ''}: end it first; break-glass is not extended`,
        'break_glass_active',
      );
    case 'cap_exceeded':
      return new ConflictError(
        `break-glass of one agent may not add up to more than ${capSeconds} s within ${capSeconds} s of another (no extension or chaining past the cap)`,
        'break_glass_cap_exceeded',
      );
    case 'not_pending':
      return new ConflictError(`break-glass \`${id}\` does not await confirmation`, 'break_glass_not_pending');
    case 'same_admin':
      return new ForbiddenError('a second admin, not the one who started it, must confirm a break-glass', 'same_admin');
    case 'not_active':
      return new ConflictError(`break-glass \`${id}\` is not active`, 'break_glass_not_active');
    case 'still_active':
      return new ConflictError(`break-glass \`${id}\` is still active: review it once it is over`, 'break_glass_active');
    case 'already_reviewed':
      return new ConflictError(`break-glass \`${id}\` was reviewed already`, 'already_reviewed');
  }
}

/**
 * Break-glass (design principle 6): an admin's explicit, time-boxed widening of one
 * agent's authority (or one task's), with a justification, capped, optionally
 * confirmed by a second admin, announced to a webhook, flagged in every decision it
 * allows, and left for review afterwards.
 */
export class BreakGlassService {
  private readonly inflight = new Set<Promise<void>>();

  constructor(private readonly deps: ServiceDeps) {}

  private get capMs(): number {
    return this.deps.config.breakGlassMaxSeconds * 1000;
  }

  async start(by: OperatorRecord, input: StartBreakGlassInput): Promise<BreakGlassView> {
    requireRole(by, 'admin');
    const { store, clock, config } = this.deps;
    if ((input.agent_id === undefined) === (input.task_id === undefined)) throw new InvalidRequestError('give exactly one of `agent_id` and `task_id`');
    const justification = input.justification.trim();
    if (justification.length < JUSTIFICATION_MIN || justification.length > JUSTIFICATION_MAX) {
      throw new InvalidRequestError(`\`justification\` is required: ${JUSTIFICATION_MIN} to ${JUSTIFICATION_MAX} characters`);
    }
    if (input.duration_seconds > config.breakGlassMaxSeconds) {
      throw new InvalidRequestError(`\`duration_seconds\` is at most ${config.breakGlassMaxSeconds}`);
    }
    let agentId: string;
    let taskId: string | null = null;
    const now = clock.now();
    if (input.task_id !== undefined) {
      const task = await store.getTask(input.task_id);
      if (!task) throw new NotFoundError(`task \`${input.task_id}\` does not exist`, 'task_not_found');
      if (task.status !== 'active' || task.expiresAt <= now) throw new ConflictError(`task \`${task.id}\` is not active`, 'task_not_active');
      agentId = task.agentId;
      taskId = task.id;
    } else {
      const agent = await store.getAgent(input.agent_id!);
      if (!agent) throw new NotFoundError(`agent \`${input.agent_id}\` does not exist`, 'agent_not_found');
      if (agent.status !== 'active') throw new ConflictError(`agent \`${agent.id}\` is disabled`, 'agent_disabled');
      agentId = agent.id;
    }
    const durationMs = input.duration_seconds * 1000;
    const pending = config.breakGlassRequiresConfirmation;
    const record: BreakGlassRecord = {
      id: newId('bg'),
      agentId,
      taskId,
      justification,
      scope: { tools: input.scope.tools },
      durationMs,
      status: pending ? 'pending' : 'active',
      requestedBy: by.id,
      confirmedBy: null,
      endedBy: null,
      createdAt: now,
      confirmDeadline: pending ? now + config.breakGlassConfirmWindowSeconds * 1000 : null,
      startsAt: pending ? null : now,
      endsAt: pending ? null : now + durationMs,
      endedAt: null,
      reviewedBy: null,
      reviewedAt: null,
      reviewNotes: null,
    };
    const r = await store.createBreakGlass(record, { capMs: this.capMs, now }, {
      type: pending ? 'break_glass.requested' : 'break_glass.started',
      actor: `operator:${by.id}`,
      agentId,
      taskId,
      data: {
        break_glass_id: record.id,
        justification,
        scope: record.scope,
        duration_seconds: input.duration_seconds,
        starts_at: record.startsAt,
        ends_at: record.endsAt,
        confirm_deadline: record.confirmDeadline,
      },
    });
    if (!r.ok) throw refusal(r.reason, record.id, r.record, config.breakGlassMaxSeconds);
    if (!pending) this.notify('break_glass.started', record);
    return breakGlassView(record, now);
  }

  async confirm(by: OperatorRecord, id: string): Promise<BreakGlassView> {
    requireRole(by, 'admin');
    const now = this.deps.clock.now();
    const r = await this.deps.store.confirmBreakGlass(id, by.id, { capMs: this.capMs, now }, (after) => ({
      type: 'break_glass.confirmed',
      actor: `operator:${by.id}`,
      agentId: after.agentId,
      taskId: after.taskId,
      data: { break_glass_id: id, requested_by: after.requestedBy, starts_at: after.startsAt, ends_at: after.endsAt },
    }));
    if (!r.ok) throw refusal(r.reason, id, r.record, this.deps.config.breakGlassMaxSeconds);
    this.notify('break_glass.started', r.record);
    return breakGlassView(r.record, now);
  }

  async end(by: OperatorRecord, id: string, reason?: string): Promise<BreakGlassView> {
    requireRole(by, 'admin');
    const now = this.deps.clock.now();
    const r = await this.deps.store.endBreakGlass(id, by.id, now, (after) => ({
      type: after.status === 'ended' ? 'break_glass.ended' : 'break_glass.cancelled',
      actor: `operator:${by.id}`,
      agentId: after.agentId,
      taskId: after.taskId,
      data: { break_glass_id: id, reason: reason ?? null, ended_at: after.endedAt },
    }));
    if (!r.ok) throw refusal(r.reason, id, r.record, this.deps.config.breakGlassMaxSeconds);
    if (r.record.status === 'ended') this.notify('break_glass.ended', r.record);
    return breakGlassView(r.record, now);
  }

  async review(by: OperatorRecord, id: string, notes: string): Promise<BreakGlassView> {
    requireRole(by, 'admin');
    const now = this.deps.clock.now();
    const r = await this.deps.store.reviewBreakGlass(id, by.id, notes, now, (after) => ({
      type: 'break_glass.reviewed',
      actor: `operator:${by.id}`,
      agentId: after.agentId,
      taskId: after.taskId,
      data: { break_glass_id: id, notes },
    }));
    if (!r.ok) throw refusal(r.reason, id, r.record, this.deps.config.breakGlassMaxSeconds);
    return breakGlassView(r.record, now);
  }

  async get(by: OperatorRecord, id: string): Promise<BreakGlassView> {
    requireRole(by, 'admin', 'auditor');
    const r = await this.deps.store.getBreakGlass(id);
    if (!r) throw refusal('not_found', id, null, 0);
    return breakGlassView(r, this.deps.clock.now());
  }

  async list(by: OperatorRecord, filter: { state?: 'active' | 'pending' | 'ended' | 'unreviewed'; agentId?: string; limit?: number }): Promise<BreakGlassView[]> {
    requireRole(by, 'admin', 'auditor');
    const now = this.deps.clock.now();
    await this.sweep(now);
    return (await this.deps.store.listBreakGlass({ ...filter, now })).map((r) => breakGlassView(r, now));
  }

  /** Ends what ran out (audited by the store) and announces the ends; the background sweep. */
  async sweep(now: number): Promise<void> {
    for (const r of await this.deps.store.expireBreakGlass(now)) {
      if (r.status === 'expired') this.notify('break_glass.ended', r);
    }
  }

  /**
   * Calls the configured webhook (POST JSON, short timeout) without making anyone
   * wait for it; a failure is audited as `break_glass.webhook_failed` and blocks nothing.
   */
  private notify(event: 'break_glass.started' | 'break_glass.ended', r: BreakGlassRecord): void {
    const url = this.deps.config.breakGlassWebhookUrl;
    if (!url) return;
    const body = JSON.stringify({ event, break_glass: breakGlassView(r, this.deps.clock.now()) });
    const p = (async () => {
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.deps.config.breakGlassWebhookTimeoutMs),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status < 200 || res.status >= 300) throw new Error(`status ${res.status}`);
      } catch (err) {
        const e = err as Error & { cause?: { code?: string } };
        const detail = e.name === 'TimeoutError' ? 'timeout' : (e.cause?.code ?? e.message);
        await this.deps.audit
          .securityEvent('break_glass.webhook_failed', 'system', { break_glass_id: r.id, event, error: String(detail).slice(0, 200) }, { agentId: r.agentId, ...(r.taskId ? { taskId: r.taskId } : {}) })
          .catch(() => undefined);
      }
    })();
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** Waits for webhook calls in flight (tests, shutdown). */
  async settle(): Promise<void> {
    await Promise.all([...this.inflight]);
  }
}
