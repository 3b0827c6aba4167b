import { ConflictError, ForbiddenError, InternalError, NotFoundError, WritError, type ErrorCode } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { AgentRecord, TaskRecord, TaskScope } from '../core/types.js';
import type { ServiceDeps } from '../service/deps.js';
import type { Store } from '../store/store.js';
import { assertScopeBounds } from '../core/scope-limits.js';
import { assertScopeForms } from '../core/scope-forms.js';
import { scopeExcessCooperative } from './scope-subset.js';

/**
 * Delegation: an agent holding a task gives part of it to another registered agent as
 * a sub-task. Delegation only narrows (design principle 5): the child's scope is
 * within the parent's (every child pattern is included in some parent pattern), it
 * ends no later than the parent, its budget is reserved from what the parent has left
 * (atomically, by the store), the depth is bounded, and no agent appears twice in a
 * chain. The chain is recorded, shown to policy and carried in action tokens as nested
 * RFC 8693 `act` claims.
 */

export interface DelegationInput {
  agent_id: string;
  intent: string;
  scope: TaskScope;
  ttl_seconds: number;
  max_actions: number;
}

/** RFC 8693 §4.1 actor claim: the delegating agent, and who delegated to it, up to the root. */
export type ActorClaim = {
  sub: string;
  act?: ActorClaim;
};

/** What a delegated task inherits: immutable, so it is cached per task id. */
export interface Lineage {
  /** the root task (only its immutable fields are read: id, owner, intent) */
  root?: TaskRecord;
  /** agent ids from the root task's agent down to the delegating agent; empty for a root task */
  chain: string[];
  /** the nested actor claim for action tokens; absent for a root task */
  act?: ActorClaim;
}

const ROOT: Lineage = Object.freeze({ chain: [] }) as Lineage;
const MAX_CACHED = 10_000;
const caches = new WeakMap<Store, Map<string, Lineage>>();

/** Nests the chain (root first) so that the delegating agent is outermost. */
export function actorClaim(chain: string[]): ActorClaim | undefined {
  let act: ActorClaim | undefined;
  for (const sub of chain) act = act ? { sub, act } : { sub };
  return act;
}

/**
 * The lineage of a task. A root task costs nothing; a delegated one reads its
 * ancestors once, then comes from the cache (ancestry never changes; status is never
 * cached: the task's own state is read on every request, and ending an ancestor ends
 * it too).
 */
export async function lineageOf(store: Store, task: TaskRecord): Promise<Lineage> {
  if (task.parentId === null) return ROOT;
  let cache = caches.get(store);
  if (!cache) {
    cache = new Map();
    caches.set(store, cache);
  }
  const hit = cache.get(task.id);
  if (hit) return hit;
  const ancestors: TaskRecord[] = [];
  let cur: TaskRecord = task;
  while (cur.parentId !== null) {
    const parent = await store.getTask(cur.parentId);
    if (!parent) throw new InternalError(`the parent of task \`${cur.id}\` is missing`);
    ancestors.push(parent);
    cur = parent;
    if (ancestors.length > 64) throw new InternalError(`task \`${task.id}\` has a delegation chain that is too long`);
  }
  const chain = ancestors.map((a) => a.agentId).reverse();
  const lineage: Lineage = { root: ancestors[ancestors.length - 1], chain, act: actorClaim(chain) };
  if (cache.size >= MAX_CACHED) cache.clear();
  cache.set(task.id, lineage);
  return lineage;
}

/**
 * A child's missing or empty `resources` / `destinations` list inherits its parent's.
 * On a root task `[]` means "may name none", and an action naming none passes the scope
 * check; read that way on a child, `[]` would let it act with no resource where its
 * parent is refused (`resource_required`): wider, not narrower. So on a child `[]`
 * means "inherit": the child is never less bounded than its parent. (`tools` is never
 * empty: the schema asks for at least one.)
 */
export function inheritBounds(parent: TaskScope, child: TaskScope): TaskScope {
  return {
    tools: child.tools,
    resources: child.resources.length > 0 ? child.resources : [...parent.resources],
    destinations: child.destinations.length > 0 ? child.destinations : [...parent.destinations],
  };
}

function refuse(code: ErrorCode, message: string, details?: unknown): WritError {
  return new WritError(code, message, 403, { details });
}

/**
 * Creates a sub-task of `parentId` for `input.agent_id`, on behalf of the agent holding
 * the parent (authenticated by its task token). Refusals are 403 with a code:
 * `scope_not_subset`, `ttl_exceeds_parent`, `budget_exceeds_parent`, `depth_exceeded`,
 * `delegation_cycle`; each is audited as `delegation.refused`.
 */
export async function delegate(
  deps: ServiceDeps,
  holder: { task: TaskRecord; agent: AgentRecord },
  parentId: string,
  input: DelegationInput,
): Promise<TaskRecord> {
  const parent = holder.task;
  if (parent.id !== parentId) throw new ForbiddenError('the task token is for another task', 'wrong_task');
  assertScopeBounds(input.scope);
  assertScopeForms(input.scope);
  const { store, clock, config } = deps;
  const refused = async (err: WritError): Promise<never> => {
    await deps.audit.securityEvent(
      'delegation.refused',
      `agent:${parent.agentId}`,
      { reason: err.code, target_agent: input.agent_id.slice(0, 256), detail: err.message.slice(0, 500) },
      { taskId: parent.id, agentId: parent.agentId },
    );
    throw err;
  };

  const target = await store.getAgent(input.agent_id);
  if (!target) throw new NotFoundError(`agent \`${input.agent_id}\` does not exist`, 'agent_not_found');
  if (target.status !== 'active') throw new ConflictError(`agent \`${target.id}\` is disabled`, 'agent_disabled');

  const lineage = await lineageOf(store, parent);
  const chain = [...lineage.chain, parent.agentId];
  if (chain.includes(target.id)) {
    return refused(
      refuse(
        'delegation_cycle',
        target.id === parent.agentId
          ? 'an agent cannot delegate to itself'
          : `agent \`${target.id}\` is already in the delegation chain`,
        { chain },
      ),
    );
  }
  const depth = parent.depth + 1;
  if (depth > config.maxDelegationDepth) {
    return refused(refuse('depth_exceeded', `the sub-task would be at depth ${depth}; the limit is ${config.maxDelegationDepth}`));
  }
  const scope = inheritBounds(parent.scope, input.scope);
  const excess = await scopeExcessCooperative(parent.scope, scope);
  if (excess.length > 0) {
    const what = excess.map((e) => `${e.field} ${e.patterns.map((p) => `\`${p}\``).join(', ')}`).join('; ');
    return refused(refuse('scope_not_subset', `the sub-task scope is not within the parent's: ${what}`.slice(0, 1000), { excess }));
  }
  const now = clock.now();
  const expiresAt = now + input.ttl_seconds * 1000;
  if (expiresAt > parent.expiresAt) {
    return refused(refuse('ttl_exceeds_parent', `the sub-task would end after its parent (at most ${Math.max(0, Math.floor((parent.expiresAt - now) / 1000))} seconds)`));
  }
  const left = parent.maxActions - parent.actionsUsed - parent.actionsReserved;
  const budgetRefusal = (l: number) => refuse('budget_exceeds_parent', `the sub-task budget ${input.max_actions} exceeds what the parent has left (${Math.max(0, l)})`);
  if (input.max_actions > left) return refused(budgetRefusal(left));

  const root = lineage.root ?? parent;
  const id = newId('task');
  const child: TaskRecord = {
    id,
    agentId: target.id,
    owner: root.owner,
    intent: input.intent,
    scope,
    status: 'active',
    createdAt: now,
    expiresAt,
    endedAt: null,
    maxActions: input.max_actions,
    actionsUsed: 0,
    actionsReserved: 0,
    parentId: parent.id,
    rootId: parent.rootId,
    depth,
  };
  try {
    await store.createTask(child, {
      type: 'task.delegated',
      actor: `agent:${parent.agentId}`,
      taskId: id,
      agentId: target.id,
      data: {
        parent_id: parent.id,
        root_id: child.rootId,
        depth,
        intent: child.intent,
        scope: child.scope,
        expires_at: expiresAt,
        max_actions: child.maxActions,
        owner: child.owner,
        delegated_by: parent.agentId,
        chain,
      },
    });
  } catch (err) {
    // the store reserves the budget atomically: another delegation or action took it, or the parent ended
    if (err instanceof ConflictError && err.code === 'parent_budget_exhausted') {
      const now2 = clock.now();
      const fresh = await store.getTask(parent.id);
      if (!fresh || fresh.status !== 'active' || fresh.expiresAt <= now2) throw new ConflictError(`task \`${parent.id}\` is not active`, 'task_not_active');
      return refused(budgetRefusal(fresh.maxActions - fresh.actionsUsed - fresh.actionsReserved));
    }
    throw err;
  }
  return child;
}

/** One node of the delegation tree shown by `GET /v1/tasks/{id}`. */
export interface TreeNode {
  id: string;
  agent_id: string;
  intent: string;
  status: TaskRecord['status'];
  depth: number;
  created_at: string;
  expires_at: string;
  ended_at: string | null;
  max_actions: number;
  actions_used: number;
  actions_reserved: number;
  actions_left: number;
  children: TreeNode[];
}

const MAX_TREE_NODES = 1000;

/** The task and its delegated descendants, nested, with each node's state and usage. */
export async function delegationTree(store: Store, task: TaskRecord, now: number): Promise<TreeNode & { truncated?: true }> {
  const node = (t: TaskRecord): TreeNode => ({
    id: t.id,
    agent_id: t.agentId,
    intent: t.intent,
    // a task past its expiry reads as expired even before the sweeper marks it
    status: t.status === 'active' && t.expiresAt <= now ? 'expired' : t.status,
    depth: t.depth,
    created_at: new Date(t.createdAt).toISOString(),
    expires_at: new Date(t.expiresAt).toISOString(),
    ended_at: t.endedAt === null ? null : new Date(t.endedAt).toISOString(),
    max_actions: t.maxActions,
    actions_used: t.actionsUsed,
    actions_reserved: t.actionsReserved,
    actions_left: Math.max(0, t.maxActions - t.actionsUsed - t.actionsReserved),
    children: [],
  });
  const top = node(task);
  let count = 1;
  let truncated = false;
  let level: TreeNode[] = [top];
  while (level.length > 0 && !truncated) {
    const next: TreeNode[] = [];
    for (const n of level) {
      const kids = await store.listTasks({ parentId: n.id, limit: MAX_TREE_NODES });
      for (const k of kids) {
        if (count >= MAX_TREE_NODES) {
          truncated = true;
          break;
        }
        const c = node(k);
        n.children.push(c);
        next.push(c);
        count++;
      }
      if (truncated) break;
    }
    level = next;
  }
  return truncated ? { ...top, truncated: true } : top;
}
