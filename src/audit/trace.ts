import type { AuditEntry } from '../core/types.js';
import type { Store } from '../store/store.js';

/**
 * The story of one action (or one task), in log order, for an investigator
 * (`writ audit trace`, `GET /v1/audit/trace/{id}`): how the agent proved its identity,
 * the task's intent and owner and its delegation chain, the decision with its policy
 * version, policies and (masked) arguments, approvals and break-glass, consume and
 * outcome. Each step names its log index (leaf index = seq - 1), so it can be proved
 * with `writ audit prove`.
 */
export interface TraceStep {
  index: number;
  seq: number;
  ts: number;
  type: string;
  actor: string;
  summary: string;
  entry: AuditEntry;
}

export interface Trace {
  subject: { kind: 'decision' | 'task'; id: string };
  task_id: string | null;
  agent_id: string | null;
  steps: TraceStep[];
}

const MAX_ENTRIES = 5000;

async function all(store: Store, filter: Parameters<Store['listAudit']>[0]): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  for (let after = 0; out.length < MAX_ENTRIES; ) {
    const page = await store.listAudit({ ...filter, after, limit: 1000 });
    out.push(...page);
    if (page.length < 1000) break;
    after = page.at(-1)!.seq;
  }
  return out;
}

function s(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** One line of plain words for an entry. */
export function summarize(e: AuditEntry): string {
  const d = e.data as Record<string, any>;
  switch (e.type) {
    case 'agent.registered':
      return `agent ${e.agentId} registered by ${e.actor} with keys ${(d.keys ?? []).map((k: any) => k.kid ?? k.kty).join(', ') || '(none)'}`;
    case 'task.created':
      return `task ${e.taskId} created by ${e.actor} for ${e.agentId}: intent "${s(d.intent)}", owner ${s(d.owner)}, scope ${s(d.scope)}`;
    case 'task.delegated':
      return `task ${e.taskId} delegated by ${e.actor} to ${e.agentId} from ${s(d.parent_id)} (depth ${s(d.depth)}): intent "${s(d.intent)}", scope ${s(d.scope)}`;
    case 'token.issued':
      return d.grant === 'token-exchange'
        ? `task token ${s(d.jti)} issued to ${e.agentId} on a token from issuer ${s(d.issuer)} (subject ${s(d.subject)})`
        : `task token ${s(d.jti)} issued to ${e.agentId} on a client assertion signed with its registered key`;
    case 'decision':
      return (
        `decision ${e.decisionId}: ${s(d.decision)} ${s(d.tool)} for ${s(d.audience)}` +
        (d.resource ? ` on ${s(d.resource)}` : '') +
        (d.destination ? ` to ${s(d.destination)}` : '') +
        ` under policy ${s(d.policy_version)} (${(d.policies ?? []).join(', ') || 'no policy'})` +
        (d.reasons?.length ? `; reasons: ${d.reasons.map((r: any) => r.code).join(', ')}` : '') +
        (d.arguments !== undefined ? `; arguments ${JSON.stringify(d.arguments)}` : `; args_digest ${s(d.args_digest)}`) +
        (d.break_glass ? ` [BREAK-GLASS ${s(d.break_glass_id)}]` : '') +
        (d.approval_id ? ` [approval ${s(d.approval_id)}]` : '')
      );
    case 'approval.requested':
      return `approval ${s(d.approval_id)} requested (quorum ${s(d.quorum)}${d.four_eyes ? ', four eyes' : ''})`;
    case 'approval.reviewed':
      return `approval ${s(d.approval_id)} ${s(d.verdict)}d by ${s(d.approver)}${d.comment ? `: "${s(d.comment)}"` : ''} (${s(d.approvals)}/${s(d.quorum)})`;
    case 'approval.used':
      return `approval ${s(d.approval_id)} used`;
    case 'action.consumed':
      return `action token ${s(d.jti)} consumed by ${s(d.audience)}`;
    case 'action.outcome':
      return `outcome: ${s(d.status ?? d.outcome)}${d.detail ? ` (${s(d.detail)})` : ''}`;
    default:
      if (e.type.startsWith('break_glass.')) return `${e.type.replace('break_glass.', 'break-glass ')} ${s(d.break_glass_id)} by ${e.actor}${d.justification ? `: "${s(d.justification)}"` : ''}`;
      return `${e.type} by ${e.actor}`;
  }
}

function step(e: AuditEntry): TraceStep {
  return { index: e.seq - 1, seq: e.seq, ts: e.ts, type: e.type, actor: e.actor, summary: summarize(e), entry: e };
}

/** Entries that tell how the task came to be: its creation and the chain of delegations above it. */
async function taskLineage(store: Store, taskId: string): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  const seen = new Set<string>();
  for (let id: string | null = taskId; id && !seen.has(id) && seen.size < 16; ) {
    seen.add(id);
    for (const type of ['task.created', 'task.delegated']) out.push(...(await store.listAudit({ taskId: id, type, limit: 10 })));
    const task = await store.getTask(id);
    id = task?.parentId ?? null;
  }
  return out;
}

/** How the agent proved itself: registration, and the task tokens issued for this task before `beforeSeq`. */
async function identity(store: Store, agentId: string, taskId: string, beforeSeq: number): Promise<AuditEntry[]> {
  const reg = (await all(store, { agentId, type: 'agent.registered' })).slice(-1);
  const tokens = (await all(store, { taskId, type: 'token.issued' })).filter((e) => e.seq < beforeSeq).slice(-3);
  return [...reg, ...tokens];
}

/** The trace of one decision. Null when no decision entry has that id. */
export async function traceDecision(store: Store, decisionId: string): Promise<Trace | null> {
  const own = await all(store, { decisionId });
  const decision = own.find((e) => e.type === 'decision');
  if (!decision) return null;
  const taskId = decision.taskId;
  const agentId = decision.agentId;
  const entries = new Map<number, AuditEntry>();
  const add = (es: AuditEntry[]) => es.forEach((e) => entries.set(e.seq, e));
  add(own);
  const approvalId = (decision.data as Record<string, unknown>).approval_id;
  if (taskId) {
    add(await taskLineage(store, taskId));
    const taskEntries = await all(store, { taskId });
    // the approval it used (its request and reviews carry the first decision's id)
    if (typeof approvalId === 'string') add(taskEntries.filter((e) => (e.data as Record<string, unknown>).approval_id === approvalId));
    // break-glass that was in force for this agent
    const bgId = (decision.data as Record<string, unknown>).break_glass_id;
    if (typeof bgId === 'string' && agentId) add((await all(store, { agentId })).filter((e) => (e.data as Record<string, unknown>).break_glass_id === bgId));
    if (agentId) add(await identity(store, agentId, taskId, decision.seq));
  }
  return { subject: { kind: 'decision', id: decisionId }, task_id: taskId, agent_id: agentId, steps: [...entries.values()].sort((a, b) => a.seq - b.seq).map(step) };
}

/** The trace of a whole task: its lineage, identity, and every entry that names it. Null when unknown. */
export async function traceTask(store: Store, taskId: string): Promise<Trace | null> {
  const own = await all(store, { taskId });
  if (own.length === 0) return null;
  const entries = new Map<number, AuditEntry>();
  own.forEach((e) => entries.set(e.seq, e));
  (await taskLineage(store, taskId)).forEach((e) => entries.set(e.seq, e));
  const agentId = own.find((e) => e.agentId)?.agentId ?? null;
  if (agentId) (await all(store, { agentId, type: 'agent.registered' })).slice(-1).forEach((e) => entries.set(e.seq, e));
  return { subject: { kind: 'task', id: taskId }, task_id: taskId, agent_id: agentId, steps: [...entries.values()].sort((a, b) => a.seq - b.seq).map(step) };
}

/** Plain text, one step a line, for people. */
export function formatTrace(t: Trace): string {
  const head = `trace of ${t.subject.kind} ${t.subject.id}` + (t.task_id ? ` (task ${t.task_id}` + (t.agent_id ? `, agent ${t.agent_id})` : ')') : '');
  const lines = t.steps.map((st) => `#${st.index}  ${new Date(st.ts).toISOString()}  ${st.type.padEnd(18)}  ${st.summary}`);
  return [head, ...lines].join('\n') + '\n';
}
