import type { Reason } from '../core/types.js';
import { policyDenyReason, policyErrorReason } from './deny-reasons.js';
import type { LoadedPolicySet, PolicyEngine } from './engine.js';
import { argumentsProblem, buildCedarRequest, flattenArguments, type RequestFacts } from './request.js';

export interface PolicyOutcome {
  decision: 'allow' | 'deny';
  reasons: Reason[];
  /** the determining policies (the permits of an allow, the forbids of a deny) */
  policies: string[];
}

/**
 * What policy decides for one request's facts, as the authorize path decides it after
 * the scope and budget checks: arguments that cannot be shown faithfully deny, an
 * evaluation error denies (fail closed), otherwise Cedar's answer. Approval and
 * break-glass are facts here (`facts.approval`, `facts.breakGlass`): for policy tests
 * (src/cli/policy-test.ts) and replay (src/service/policy-simulate.ts), with no store.
 */
export function decideOnFacts(engine: PolicyEngine, set: LoadedPolicySet, input: Omit<RequestFacts, 'withArgs' | 'flatArgs'>): PolicyOutcome {
  const facts: RequestFacts = { ...input, withArgs: set.readsArgs };
  if (set.readsArgs) {
    facts.flatArgs = flattenArguments(facts.action.arguments);
    const problem = argumentsProblem(facts.flatArgs, { numeric: set.numericTagsRead, strings: set.stringTagsRead }, facts.action.arguments);
    if (problem) return { decision: 'deny', reasons: [problem], policies: [] };
  }
  const e = engine.evaluate(buildCedarRequest(facts), set);
  if (e.errors.length > 0) return { decision: 'deny', reasons: [policyErrorReason(e)], policies: e.errors.map((x) => x.policy_id).filter(Boolean) };
  if (e.decision !== 'allow') return { decision: 'deny', reasons: [policyDenyReason(e)], policies: e.policies };
  return { decision: 'allow', reasons: [], policies: e.policies };
}
