import type { ApprovalRecord } from '../core/escalation-types.js';
import type { AgentRecord, OperatorRecord, Reason, TaskRecord } from '../core/types.js';
import type { LoadedPolicySet } from '../policy/engine.js';
import { argumentsProblem, flattenArguments, type ActionInput, type RequestFacts } from '../policy/request.js';
import type { Store } from '../store/store.js';
import { lineageOf } from '../tasks/delegation.js';
import { matchesAny } from '../core/scope.js';

/**
 * The first step of the authorize pipeline (./pipeline.ts): everything the decision
 * depends on, read before anything is decided, so the decide step (./decide.ts) is
 * pure. Shared by authorize, the approval read and the review's rule, so all judge alike.
 */

/** Where the facts come from: the store, and the services that hold the rest (tool labels, presence). */
export interface FactSources {
  store: Store;
  /** the labels policy sees on a tool (src/service/tool-labels.ts) */
  toolLabels(tool: string): Promise<string[]>;
  /** whether the task's owner holds a presence lease (src/tasks/presence.ts) */
  ownerPresent(task: TaskRecord, now: number): Promise<boolean>;
}

/** An approved approval, as the read that issues its token sees it: one more fact. */
export interface ApprovalFact {
  id: string;
  /** the four-eyes rule recorded when it was asked for (used when no policy now lets an approval allow it) */
  recordedFourEyes: boolean;
  /** who approved it and may still approve (not an agent of the delegation chain), in review order */
  approvers: string[];
  /** of `approvers`, the owners along the delegation chain: they do not count under four eyes */
  owners: string[];
}

export interface Facts {
  /** what policy sees */
  request: RequestFacts;
  /** set when the arguments cannot be shown to this policy faithfully: the decision is a deny */
  problem: Reason | null;
  /** the active break-glass covering the agent, task and tool: null until the pipeline looks it up, which it does only for a request the set refused (and only when the set mentions break-glass) */
  breakGlass: { id: string } | null;
  /** the approval read: the approval being used */
  approval?: ApprovalFact;
}

/**
 * The facts a policy sees about one request: delegated tasks' root task and chain of
 * delegating agents (immutable, cached), the tool's labels, the owner's presence when
 * the policy set reads it, and the arguments flattened when it reads them. The active
 * break-glass is not gathered here: only a refused request needs it (./pipeline.ts).
 */
export async function gatherFacts(
  sources: FactSources,
  ctx: { task: TaskRecord; agent: AgentRecord },
  action: ActionInput,
  argsDigest: string,
  now: number,
  set: LoadedPolicySet,
): Promise<Facts> {
  const { task, agent } = ctx;
  const lineage = await lineageOf(sources.store, task);
  const toolLabels = await sources.toolLabels(action.tool);
  const request: RequestFacts = {
    agent, task, root: lineage.root, chain: lineage.chain, action, argsDigest, now, withArgs: set.readsArgs, toolLabels,
    argReads: { numeric: set.numericTagsRead, strings: set.stringTagsRead },
  };
  if (set.mentionsPresence) request.ownerPresent = await sources.ownerPresent(task, now);
  let problem: Reason | null = null;
  if (set.readsArgs) {
    request.flatArgs = flattenArguments(action.arguments);
    problem = argumentsProblem(request.flatArgs, { numeric: set.numericTagsRead, strings: set.stringTagsRead }, action.arguments);
  }
  return { request, problem, breakGlass: null };
}

/** The first active break-glass that covers the request's agent, task and tool; null when none does. */
export async function activeBreakGlass(store: Store, facts: RequestFacts): Promise<{ id: string } | null> {
  const active = await store.findActiveBreakGlass(facts.agent.id, facts.task.id, facts.now);
  const bg = active.find((r) => matchesAny(r.scope.tools, facts.action.tool));
  return bg ? { id: bg.id } : null;
}

/** The agent ids of the task's delegation chain, root first, and the owners along it. */
export async function chainOf(store: Store, task: TaskRecord | null): Promise<{ agents: string[]; owners: string[] }> {
  const agents: string[] = [];
  const owners: string[] = [];
  let t = task;
  for (let hops = 0; t && hops < 64; hops++) {
    agents.unshift(t.agentId);
    owners.unshift(t.owner);
    t = t.parentId ? await store.getTask(t.parentId) : null;
  }
  return { agents, owners };
}

/** An operator that may approve: it exists, is not disabled, and holds `approver` (or `admin`). */
export function mayApprove(op: OperatorRecord | null): boolean {
  return !!op && !op.disabled && (op.roles.includes('admin') || op.roles.includes('approver'));
}

/**
 * Of `ids`, the operators who may still approve. An approval given by someone since
 * disabled or demoted no longer counts toward the quorum.
 */
export async function stillApprovers(store: Store, ids: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const id of ids) if (mayApprove(await store.getOperator(id))) out.push(id);
  return out;
}

/**
 * The approval as a fact of its read: the approvers whose yes may count (never an agent
 * of the delegation chain, nor one who may no longer approve), and which of them are
 * owners along the chain (they do not count under four eyes: the decide step applies
 * the rule of the policy in force).
 */
export async function approvalFact(store: Store, task: TaskRecord, a: ApprovalRecord): Promise<ApprovalFact> {
  const { agents, owners } = await chainOf(store, task);
  const yes = new Set<string>();
  for (const r of a.reviews) if (r.verdict === 'approve' && !agents.includes(r.approver)) yes.add(r.approver);
  const approvers = await stillApprovers(store, [...yes]);
  return {
    id: a.id,
    recordedFourEyes: a.fourEyes,
    approvers,
    owners: approvers.filter((id) => owners.includes(id) || owners.includes(`operator:${id}`)),
  };
}

/** The action an approval is bound to, as authorize was asked for it. */
export function actionOfApproval(a: ApprovalRecord): ActionInput {
  const action: ActionInput = { tool: a.tool, arguments: JSON.parse(a.arguments) as Record<string, unknown>, audience: a.audience };
  if (a.resource !== null) action.resource = a.resource;
  if (a.destination !== null) action.destination = a.destination;
  return action;
}
