import { ConflictError, ForbiddenError, InvalidRequestError, NotFoundError } from '../core/errors.js';
import type { PresenceLease } from '../core/escalation-types.js';
import type { OperatorRecord, TaskRecord } from '../core/types.js';
import type { ServiceDeps } from '../service/deps.js';

const NOT_REQUIRED_CACHE = 50_000;

export function presenceView(taskId: string, lease: PresenceLease | null, now: number) {
  return {
    task_id: taskId,
    required: lease !== null,
    owner: lease?.owner ?? null,
    expires_at: lease ? new Date(lease.expiresAt).toISOString() : null,
    renewed_at: lease ? new Date(lease.renewedAt).toISOString() : null,
    owner_present: lease === null || lease.expiresAt > now,
  };
}

export type PresenceView = ReturnType<typeof presenceView>;

/**
 * The owner who steps away. A task created with `require_owner_presence` has a lease
 * its owner renews (`POST /v1/tasks/{id}/presence`); while the lease has lapsed,
 * `context.owner_present` is false, and policy decides what that means (approval
 * required, or deny) for the actions it marks sensitive. Sub-tasks share their root
 * task's lease.
 */
export class PresenceService {
  /** root tasks known to require no presence: that never changes after creation */
  private readonly notRequired = new Set<string>();

  constructor(private readonly deps: ServiceDeps) {}

  /** The lease a task created with `require_owner_presence` starts with. */
  initialLease(taskId: string, owner: string, now: number): PresenceLease {
    return { taskId, owner, expiresAt: now + this.deps.config.presenceInitialTtlSeconds * 1000, renewedAt: now };
  }

  /** `context.owner_present` for a request of `task` (one read, only for a task that requires presence). */
  async ownerPresent(task: TaskRecord, now: number): Promise<boolean> {
    const root = task.rootId;
    if (this.notRequired.has(root)) return true;
    const lease = await this.deps.store.getPresence(root);
    if (!lease) {
      if (this.notRequired.size >= NOT_REQUIRED_CACHE) this.notRequired.clear();
      this.notRequired.add(root);
      return true;
    }
    return lease.expiresAt > now;
  }

  private async taskFor(by: OperatorRecord, taskId: string): Promise<{ task: TaskRecord; lease: PresenceLease | null }> {
    const task = await this.deps.store.getTask(taskId);
    const visible = task && (by.roles.includes('admin') || by.roles.includes('auditor') || by.roles.includes('approver') || task.owner === by.id);
    if (!task || !visible) throw new NotFoundError(`task \`${taskId}\` does not exist`, 'task_not_found');
    return { task, lease: await this.deps.store.getPresence(task.rootId) };
  }

  async get(by: OperatorRecord, taskId: string): Promise<PresenceView> {
    const { lease } = await this.taskFor(by, taskId);
    return presenceView(taskId, lease, this.deps.clock.now());
  }

  /**
   * The owner says "I am here" for `ttlSeconds` more (0: "I am stepping away now").
   * Only the owning operator renews; only a task that requires presence has a lease.
   */
  async renew(by: OperatorRecord, taskId: string, ttlSeconds: number): Promise<PresenceView> {
    const max = this.deps.config.presenceMaxTtlSeconds;
    if (!(Number.isInteger(ttlSeconds) && ttlSeconds >= 0 && ttlSeconds <= max)) throw new InvalidRequestError(`\`ttl_seconds\` is 0 to ${max}`);
    const { task, lease } = await this.taskFor(by, taskId);
    if (!lease) throw new ConflictError(`task \`${taskId}\` does not require its owner's presence`, 'presence_not_required');
    if (lease.owner !== by.id) throw new ForbiddenError('only the task owner renews its presence', 'not_task_owner');
    const now = this.deps.clock.now();
    if (task.status !== 'active' || task.expiresAt <= now) throw new ConflictError(`task \`${taskId}\` is not active`, 'task_not_active');
    const expiresAt = Math.min(now + ttlSeconds * 1000, task.expiresAt);
    const renewed = await this.deps.store.renewPresence(task.rootId, by.id, expiresAt, now, {
      type: 'presence.renewed',
      actor: `operator:${by.id}`,
      taskId: task.rootId,
      agentId: task.agentId,
      data: { ttl_seconds: ttlSeconds, expires_at: expiresAt, was_present: lease.expiresAt > now },
    });
    if (!renewed) throw new ForbiddenError('only the task owner renews its presence', 'not_task_owner');
    return presenceView(taskId, renewed, now);
  }
}
