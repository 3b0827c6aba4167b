import type { AgentRecord, AuditEntry, DecisionRecord, OperatorRecord, TaskRecord } from '../core/types.js';

/**
 * The record-to-wire views: how a stored record is shown on the API (snake_case, times as
 * RFC 3339 strings, never a secret or its hash).
 */

export function agentView(a: AgentRecord) {
  return { id: a.id, name: a.name, jwks: a.jwks, labels: a.labels, status: a.status, created_at: iso(a.createdAt) };
}

export function taskView(t: TaskRecord) {
  return {
    id: t.id,
    agent_id: t.agentId,
    owner: t.owner,
    intent: t.intent,
    scope: t.scope,
    status: t.status,
    created_at: iso(t.createdAt),
    expires_at: iso(t.expiresAt),
    ended_at: t.endedAt === null ? null : iso(t.endedAt),
    max_actions: t.maxActions,
    actions_used: t.actionsUsed,
    actions_reserved: t.actionsReserved,
    parent_id: t.parentId,
    root_id: t.rootId,
    depth: t.depth,
  };
}

/** A task as its own agent sees it in `GET /v1/agents/{id}/tasks` (no owner, no usage). */
export function agentTaskView(t: TaskRecord) {
  return { id: t.id, intent: t.intent, status: t.status, created_at: iso(t.createdAt), expires_at: iso(t.expiresAt), parent_id: t.parentId };
}

export function decisionView(d: DecisionRecord) {
  return {
    id: d.id,
    task_id: d.taskId,
    agent_id: d.agentId,
    decision: d.decision,
    tool: d.tool,
    audience: d.audience,
    resource: d.resource,
    destination: d.destination,
    args_digest: d.argsDigest,
    reasons: d.reasons,
    policies: d.policies,
    policy_version: d.policyVersion,
    created_at: iso(d.createdAt),
    outcome: d.outcome,
  };
}

export function auditView(e: AuditEntry) {
  return {
    seq: e.seq,
    ts: iso(e.ts),
    type: e.type,
    actor: e.actor,
    task_id: e.taskId,
    agent_id: e.agentId,
    decision_id: e.decisionId,
    data: e.data,
    prev_hash: e.prevHash,
    hash: e.hash,
  };
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** An operator as the API shows it: never its token or the token's hash. */
export function operatorView(o: OperatorRecord, now: number) {
  return {
    id: o.id,
    name: o.name,
    roles: o.roles,
    status: o.disabled ? 'disabled' : o.expiresAt <= now ? 'expired' : 'active',
    created_at: new Date(o.createdAt).toISOString(),
    expires_at: new Date(o.expiresAt).toISOString(),
    rotated_at: o.rotatedAt === null ? null : new Date(o.rotatedAt).toISOString(),
  };
}
