import type { DecisionRecord } from './types.js';

/**
 * A decision record before it is decided: a deny with no reasons, for the caller to
 * complete. Every path that records a decision starts from this one shape.
 */
export function undecided(
  fields: Omit<DecisionRecord, 'decision' | 'reasons' | 'policies' | 'tokenJti' | 'tokenExpiresAt' | 'outcome'>,
): DecisionRecord {
  return { ...fields, decision: 'deny', reasons: [], policies: [], tokenJti: null, tokenExpiresAt: null, outcome: null };
}
