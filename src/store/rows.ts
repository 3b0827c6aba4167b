import type { AuditCheckpointRecord } from './store.js';
import { PreconditionFailedError } from '../core/errors.js';
import type { ToolLabelsRecord } from '../core/types.js';
import type { AgentRecord, AuditEntry, CheckpointKeyRecord, DecisionRecord, OperatorRecord, PolicyRecord, ShadowDecisionRecord, ShadowPolicyRecord, SigningKeyRecord, TaskRecord } from '../core/types.js';

/**
 * Row <-> record mapping shared by the SQL backends. Column names are the same in
 * both schemas; JSON columns arrive as text (SQLite) or parsed (PostgreSQL jsonb),
 * and 64-bit integers as numbers or strings.
 */
export type Row = Record<string, unknown>;

/** A JSON column: text on SQLite, possibly parsed already on PostgreSQL. */
export function json<T>(v: unknown): T {
  return (typeof v === 'string' ? JSON.parse(v) : v) as T;
}

/**
 * A JSON column of the rows every request reads (a task's scope, its agent's keys and
 * labels), parsed once per distinct text: the value is keyed by the column's exact text,
 * so a changed row always parses afresh (never a stale value), and deep-frozen, so no
 * reader can change what the next request sees. Bounded by total text length; cleared
 * when full. Nothing of a row's state (status, expiry, counts) goes through here.
 */
const parsedTexts = new Map<string, unknown>();
let parsedChars = 0;
const PARSED_CHARS_MAX = 4 * 1024 * 1024;

export function jsonShared<T>(v: unknown): T {
  if (typeof v !== 'string') return v as T;
  let hit = parsedTexts.get(v);
  if (hit === undefined) {
    hit = deepFreeze(JSON.parse(v) as unknown);
    if (parsedChars + v.length > PARSED_CHARS_MAX) {
      parsedTexts.clear();
      parsedChars = 0;
    }
    parsedTexts.set(v, hit);
    parsedChars += v.length;
  }
  return hit as T;
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/** A BIGINT column: a number on SQLite, a string from `pg`. */
export function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

export function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : num(v);
}

export function toOperator(r: Row): OperatorRecord {
  return {
    id: r.id as string,
    name: r.name as string,
    roles: json(r.roles),
    tokenHash: r.token_hash as string,
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    rotatedAt: numOrNull(r.rotated_at),
    disabled: Boolean(r.disabled),
  };
}

export function toAgent(r: Row, prefix = ''): AgentRecord {
  return {
    id: r[`${prefix}id`] as string,
    name: r[`${prefix}name`] as string,
    jwks: jsonShared(r[`${prefix}jwks`]),
    labels: jsonShared(r[`${prefix}labels`]),
    status: r[`${prefix}status`] as AgentRecord['status'],
    createdAt: num(r[`${prefix}created_at`]),
    createdBy: r[`${prefix}created_by`] as string,
  };
}

export function toTask(r: Row): TaskRecord {
  return {
    id: r.id as string,
    agentId: r.agent_id as string,
    owner: r.owner as string,
    intent: r.intent as string,
    scope: jsonShared(r.scope),
    status: r.status as TaskRecord['status'],
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    endedAt: numOrNull(r.ended_at),
    maxActions: num(r.max_actions),
    actionsUsed: num(r.actions_used),
    actionsReserved: num(r.actions_reserved),
    parentId: (r.parent_id as string | null) ?? null,
    rootId: r.root_id as string,
    depth: num(r.depth),
  };
}

/**
 * The columns of a task and of its agent, in the order `taskWithAgentValues` reads them
 * (a statement in array mode: no object built per row). Named, not `t.*`, so that a
 * later migration adding a column moves nothing. The agent's id is the task's `agent_id`.
 */
export const TASK_WITH_AGENT_COLUMNS =
  't.id, t.agent_id, t.owner, t.intent, t.scope, t.status, t.created_at, t.expires_at, t.ended_at, t.max_actions, t.actions_used, ' +
  't.actions_reserved, t.parent_id, t.root_id, t.depth, a.name, a.jwks, a.labels, a.status, a.created_at, a.created_by';

export function taskWithAgentValues(v: unknown[]): { task: TaskRecord; agent: AgentRecord } {
  return {
    task: {
      id: v[0] as string,
      agentId: v[1] as string,
      owner: v[2] as string,
      intent: v[3] as string,
      scope: jsonShared(v[4]),
      status: v[5] as TaskRecord['status'],
      createdAt: num(v[6]),
      expiresAt: num(v[7]),
      endedAt: numOrNull(v[8]),
      maxActions: num(v[9]),
      actionsUsed: num(v[10]),
      actionsReserved: num(v[11]),
      parentId: (v[12] as string | null) ?? null,
      rootId: v[13] as string,
      depth: num(v[14]),
    },
    agent: {
      id: v[1] as string,
      name: v[15] as string,
      jwks: jsonShared(v[16]),
      labels: jsonShared(v[17]),
      status: v[18] as AgentRecord['status'],
      createdAt: num(v[19]),
      createdBy: v[20] as string,
    },
  };
}

export function toDecision(r: Row): DecisionRecord {
  return {
    id: r.id as string,
    taskId: r.task_id as string,
    agentId: r.agent_id as string,
    tool: r.tool as string,
    audience: r.audience as string,
    resource: (r.resource as string | null) ?? null,
    destination: (r.destination as string | null) ?? null,
    argsDigest: r.args_digest as string,
    decision: r.decision as DecisionRecord['decision'],
    reasons: json(r.reasons),
    policies: json(r.policies),
    policyVersion: r.policy_version as string,
    tokenJti: (r.token_jti as string | null) ?? null,
    tokenExpiresAt: numOrNull(r.token_expires_at),
    createdAt: num(r.created_at),
    outcome: (r.outcome as DecisionRecord['outcome']) ?? null,
  };
}

export function toAuditEntry(r: Row): AuditEntry {
  return {
    seq: num(r.seq),
    ts: num(r.ts),
    type: r.type as string,
    actor: r.actor as string,
    taskId: (r.task_id as string | null) ?? null,
    agentId: (r.agent_id as string | null) ?? null,
    decisionId: (r.decision_id as string | null) ?? null,
    data: json(r.data),
    prevHash: r.prev_hash as string,
    hash: r.hash as string,
  };
}

/** The If-Match of a policy change named a version that is no longer (or never was) active. */
export function toAuditCheckpoint(r: Row): AuditCheckpointRecord {
  return { size: num(r.size), note: r.note as string, createdAt: num(r.created_at) };
}

export function policyMoved(expected: string, active: string | null): PreconditionFailedError {
  return new PreconditionFailedError(`the active policy version is \`${active ?? 'none'}\`, not \`${expected.slice(0, 80)}\`: read it again and retry`, 'policy_version_mismatch');
}

/** The If-Match of a shadow change (or a promotion) named a version that is not the candidate. */
export function shadowMoved(expected: string, current: string | null): PreconditionFailedError {
  return new PreconditionFailedError(`the shadow candidate is \`${current ?? 'none'}\`, not \`${expected.slice(0, 80)}\`: read it again and retry`, 'policy_version_mismatch');
}

export function toShadowPolicy(r: Row): ShadowPolicyRecord {
  return { version: r.version as string, text: r.text as string, setAt: num(r.set_at), setBy: r.set_by as string };
}

/** A `shadow_decisions` row joined with its `decisions` row (shadow columns prefixed `s_`). */
export function toShadowPair(r: Row): { shadow: ShadowDecisionRecord; live: DecisionRecord } {
  return {
    shadow: {
      decisionId: r.id as string,
      candidateVersion: r.s_candidate_version as string,
      decision: r.s_decision as ShadowDecisionRecord['decision'],
      reasons: json(r.s_reasons),
      policies: json(r.s_policies),
      createdAt: num(r.s_created_at),
    },
    live: toDecision(r),
  };
}

export function shadowDecisionParams(d: ShadowDecisionRecord): unknown[] {
  return [d.decisionId, d.candidateVersion, d.decision, JSON.stringify(d.reasons), JSON.stringify(d.policies), d.createdAt];
}

/** Selects shadow rows with their live decision (`toShadowPair`); `{1}`, `{2}`, `{3}` are the candidate version, since and limit. */
export const SHADOW_PAIRS_SQL =
  'SELECT d.*, s.candidate_version AS s_candidate_version, s.decision AS s_decision, s.reasons AS s_reasons, s.policies AS s_policies, s.created_at AS s_created_at ' +
  'FROM shadow_decisions s JOIN decisions d ON d.id = s.decision_id WHERE s.candidate_version = {1} AND s.created_at >= {2} ORDER BY s.created_at DESC, s.decision_id DESC LIMIT {3}';

export function toPolicy(r: Row): PolicyRecord {
  return { version: r.version as string, text: r.text as string, createdAt: num(r.created_at), createdBy: r.created_by as string };
}

export function toSigningKey(r: Row): SigningKeyRecord {
  return {
    kid: r.kid as string,
    publicJwk: json(r.public_jwk),
    privateJwk: json(r.private_jwk),
    createdAt: num(r.created_at),
    rotatedAt: numOrNull(r.rotated_at),
    retiredAt: numOrNull(r.retired_at),
  };
}

export function toCheckpointKey(r: Row): CheckpointKeyRecord {
  return { kid: r.kid as string, publicJwk: json(r.public_jwk), privateJwk: json(r.private_jwk), createdAt: num(r.created_at) };
}

/** Of `operators`, the admins whose token works at `now` (enabled, unexpired), other than `exceptId`. */
export function workingAdmins(operators: OperatorRecord[], now: number, exceptId?: string): OperatorRecord[] {
  return operators.filter((o) => o.id !== exceptId && !o.disabled && o.expiresAt > now && o.roles.includes('admin'));
}

/** The params of a decision row, in the column order of the INSERT statements. */
export function decisionParams(d: DecisionRecord): unknown[] {
  return [
    d.id, d.taskId, d.agentId, d.tool, d.audience, d.resource, d.destination, d.argsDigest, d.decision,
    JSON.stringify(d.reasons), JSON.stringify(d.policies), d.policyVersion, d.tokenJti, d.tokenExpiresAt, d.createdAt, d.outcome,
  ];
}

export function taskParams(t: TaskRecord): unknown[] {
  return [
    t.id, t.agentId, t.owner, t.intent, JSON.stringify(t.scope), t.status, t.createdAt, t.expiresAt, t.endedAt,
    t.maxActions, t.actionsUsed, t.actionsReserved, t.parentId, t.rootId, t.depth,
  ];
}

export function toToolLabels(r: Row): ToolLabelsRecord {
  return { pattern: r.pattern as string, labels: json(r.labels), updatedAt: num(r.updated_at), updatedBy: r.updated_by as string };
}
