import type { DecisionRecord } from './types.js';

/**
 * A decision record before it is decided: a deny with no reasons, for the caller to
 * complete. Every path that records a decision starts from this one shape.
 *
 * Written field by field, not as `{ ...fields, decision: 'deny', … }`: V8 builds that
 * spread (new properties added past the copied ones) on a slow path, about 10 us per
 * call against 0.1 us, on every decision. Every field of DecisionRecord is required,
 * so a field added to it and not here fails to compile.
 */
export function undecided(
  fields: Omit<DecisionRecord, 'decision' | 'reasons' | 'policies' | 'tokenJti' | 'tokenExpiresAt' | 'outcome'>,
): DecisionRecord {
  return {
    id: fields.id,
    taskId: fields.taskId,
    agentId: fields.agentId,
    tool: fields.tool,
    audience: fields.audience,
    resource: fields.resource,
    destination: fields.destination,
    argsDigest: fields.argsDigest,
    decision: 'deny',
    reasons: [],
    policies: [],
    policyVersion: fields.policyVersion,
    tokenJti: null,
    tokenExpiresAt: null,
    createdAt: fields.createdAt,
    outcome: null,
  };
}
