import type { Reason } from '../core/types.js';
import type { Evaluation } from './engine.js';

/** The reason a failed evaluation gives: fail closed, naming the policies that errored. */
export function policyErrorReason(e: Evaluation): Reason {
  const detail = e.errors.map((x) => `${x.policy_id}: ${x.message}`).join('; ').slice(0, 500);
  return { code: 'policy_error', message: `policy evaluation failed: ${detail}` };
}

/** The reason a deny gives: the forbids that determined it, or that nothing permits. */
export function policyDenyReason(e: Evaluation, suffix = ''): Reason {
  return e.policies.length > 0
    ? { code: 'policy_forbids', message: `denied by policy ${e.policies.map((p) => `\`${p}\``).join(', ')}` }
    : { code: 'no_policy_permits', message: `no policy permits this action${suffix}` };
}
