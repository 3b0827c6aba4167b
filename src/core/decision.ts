import type { DecisionRecord } from './types.js';

/**
 * A decision record before it is decided: a deny with no reasons, for the caller to
 * complete. Every path that records a decision starts from this one shape.
 */
export function undecided(fields: {
  id: string;
  taskId: string;
  agentId: string;
  tool: string;
  audience: string;
  resource: string | null;
  destination: string | null;
  argsDigest: string;
  policyVersion: string;
  createdAt: number;
}): DecisionRecord {
  return { ...fields, decision: 'deny', reasons: [], policies: [], tokenJti: null, tokenExpiresAt: null, outcome: null };
}
