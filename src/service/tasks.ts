import { WritMetrics } from './metrics.js';
import type { Clock } from '../core/clock.js';
import { ConflictError, ForbiddenError, InvalidRequestError, NotFoundError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { AgentRecord, DecisionRecord, OperatorRecord, TaskRecord, TaskScope } from '../core/types.js';
import type { ServiceDeps } from './deps.js';
import { PresenceService } from '../tasks/presence.js';
import type { Store } from '../store/store.js';
import { assertScopeBounds } from '../core/scope-limits.js';
import { assertScopeForms } from '../core/scope-forms.js';
import type { WritConfig } from './config.js';
import { delegate, delegationTree, type DelegationInput } from '../tasks/delegation.js';
import { AgentTasks } from './agent-tasks.js';
import { TaskEndings } from '../tasks/endings.js';
import type { TaskPrincipal } from '../tokens/token-types.js';
import { hasRole, requireRole } from '../core/roles.js';

export interface CreateTaskInput {
  agent_id: string;
  intent: string;
  scope: TaskScope;
  ttl_seconds: number;
  max_actions: number;
  /** the owner renews a presence lease; while it lapses, `context.owner_present` is false */
  require_owner_presence?: boolean;
}

/** Tasks: created by an operator for one agent, read, completed and revoked (delegation: src/tasks/delegation.ts). */
export class TaskService {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly config: WritConfig;

  /** an agent's own active tasks, long-polled with its key (./agent-tasks.ts) */
  readonly agentTasks: AgentTasks;

  constructor(private readonly deps: ServiceDeps & { endings: TaskEndings; presence: PresenceService; metrics: WritMetrics }) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.config = deps.config;
    const { store } = deps;
    this.agentTasks = new AgentTasks({
      store, clock: deps.clock, issuer: () => deps.config.issuer,
      ...(store.listen && store.notify ? { notifications: { listen: store.listen.bind(store), notify: store.notify.bind(store) } } : {}),
    });
    // an agent's gateway long-polling for its tasks sees an ended one at once
    deps.endings.onTasksEnded(() => this.agentTasks.changed());
  }

  /** Stops the long-polls' notifications (shutdown). */
  close(): Promise<void> {
    return this.agentTasks.close();
  }

  /** A sub-task of the holder's task for another agent, narrower in every way (src/tasks/delegation.ts). */
  delegate(holder: { task: TaskRecord; agent: AgentRecord }, parentId: string, input: DelegationInput): Promise<TaskRecord> {
    return delegate(this.deps, holder, parentId, input);
  }

  /** Listens for tasks this instance ends (src/tasks/endings.ts). */
  onTasksEnded(listener: (taskIds: string[]) => void): () => void {
    return this.deps.endings.onTasksEnded(listener);
  }

  async createTask(by: OperatorRecord, input: CreateTaskInput): Promise<TaskRecord> {
    requireRole(by, 'admin', 'requester');
    assertScopeBounds(input.scope);
    assertScopeForms(input.scope);
    if (input.ttl_seconds > this.config.maxTaskTtlSeconds) {
      throw new InvalidRequestError(`\`ttl_seconds\` is at most ${this.config.maxTaskTtlSeconds}`);
    }
    if (input.max_actions > this.config.maxTaskActions) throw new InvalidRequestError(`\`max_actions\` is at most ${this.config.maxTaskActions}`);
    const agent = await this.store.getAgent(input.agent_id);
    if (!agent) throw new NotFoundError(`agent \`${input.agent_id}\` does not exist`, 'agent_not_found');
    if (agent.status !== 'active') throw new ConflictError(`agent \`${input.agent_id}\` is disabled`, 'agent_disabled');
    const now = this.clock.now();
    const id = newId('task');
    const task: TaskRecord = {
      id,
      agentId: agent.id,
      owner: by.id,
      intent: input.intent,
      scope: input.scope,
      status: 'active',
      createdAt: now,
      expiresAt: now + input.ttl_seconds * 1000,
      endedAt: null,
      maxActions: input.max_actions,
      actionsUsed: 0,
      actionsReserved: 0,
      parentId: null,
      rootId: id,
      depth: 0,
    };
    await this.store.createTask(task, {
      type: 'task.created',
      actor: `operator:${by.id}`,
      taskId: id,
      agentId: agent.id,
      data: {
        intent: task.intent,
        scope: task.scope,
        expires_at: task.expiresAt,
        max_actions: task.maxActions,
        owner: by.id,
        ...(input.require_owner_presence ? { require_owner_presence: true } : {}),
      },
    }, input.require_owner_presence ? { presence: this.deps.presence.initialLease(id, by.id, now) } : {});
    // an agent's gateway long-polling for its tasks gets this one at once
    this.agentTasks.changed();
    return task;
  }

  /** A task with its decisions, its direct delegations and its whole delegation tree. */
  async getTaskDetail(by: OperatorRecord, id: string): Promise<{ task: TaskRecord; decisions: DecisionRecord[]; delegations: TaskRecord[]; tree: Awaited<ReturnType<typeof delegationTree>> }> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    const task = await this.store.getTask(id);
    if (!task) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
    if (!hasRole(by, 'admin', 'auditor', 'approver') && task.owner !== by.id) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
    const [decisions, delegations] = await Promise.all([this.store.listDecisions(id), this.store.listTasks({ parentId: id, limit: 1000 })]);
    const effective = this.effective(task);
    const tree = await delegationTree(this.store, effective, this.clock.now());
    return { task: effective, decisions, delegations: delegations.map((t) => this.effective(t)), tree };
  }

  async listTasks(by: OperatorRecord, filter: { agentId?: string; status?: TaskRecord['status']; limit?: number }): Promise<TaskRecord[]> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    const tasks = await this.store.listTasks(filter);
    const visible = hasRole(by, 'admin', 'auditor', 'approver') ? tasks : tasks.filter((t) => t.owner === by.id);
    return visible.map((t) => this.effective(t));
  }

  /** A task past its expiry reads as expired even before the sweeper marks it. */
  private effective(task: TaskRecord): TaskRecord {
    return task.status === 'active' && task.expiresAt <= this.clock.now() ? { ...task, status: 'expired' } : task;
  }

  /** Completes a task: the agent holding it (task token) or an operator. */
  async completeTask(actor: { operator: OperatorRecord } | { task: TaskPrincipal }, id: string): Promise<{ id: string; status: 'completed'; ended: string[] }> {
    let who: string;
    if ('operator' in actor) {
      requireRole(actor.operator, 'admin', 'requester');
      const t = await this.store.getTask(id);
      if (!t || (!hasRole(actor.operator, 'admin') && t.owner !== actor.operator.id)) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
      who = `operator:${actor.operator.id}`;
    } else {
      if (actor.task.taskId !== id) throw new ForbiddenError('the task token is for another task', 'wrong_task');
      who = `agent:${actor.task.agentId}`;
    }
    return { id, status: 'completed', ended: await this.endTask(id, 'completed', who) };
  }

  async revokeTask(by: OperatorRecord, id: string, reason?: string): Promise<{ id: string; status: 'revoked'; ended: string[] }> {
    requireRole(by, 'admin', 'requester');
    const t = await this.store.getTask(id);
    if (!t || (!hasRole(by, 'admin') && t.owner !== by.id)) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
    const ended = await this.endTask(id, 'revoked', `operator:${by.id}`, reason);
    if (ended.length > 0) this.deps.metrics.revocations.inc();
    return { id, status: 'revoked', ended };
  }

  private async endTask(id: string, status: 'completed' | 'revoked', actor: string, reason?: string): Promise<string[]> {
    const task = await this.store.getTask(id);
    if (!task) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
    const ended = await this.store.endTask(id, status, this.clock.now(), {
      type: `task.${status}`,
      actor,
      taskId: id,
      agentId: task.agentId,
      data: reason ? { reason } : {},
    });
    if (ended.length === 0) throw new ConflictError(`task \`${id}\` is not active`, 'task_not_active');
    this.deps.endings.changed(ended);
    return ended;
  }
}
