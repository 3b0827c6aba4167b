import type { LoadedPolicySet } from '../policy/engine.js';
import type { Store } from '../store/store.js';
import { decide, type Verdict } from './decide.js';
import type { Evaluator } from './escalation.js';
import { activeBreakGlass, type Facts } from './facts.js';

/**
 * The decide step (./decide.ts, pure) with the one fact it may need afterwards: an active
 * break-glass can only lift a refusal (a deny no `forbid` caused, escalated), so it is
 * looked up only for a request the set refused, never for an allow, and the request is
 * decided again with it when one covers it (break-glass comes before an approval).
 * The live pipeline and the shadow candidate both decide through here.
 */
export async function decideLifting(engine: Evaluator, set: LoadedPolicySet, facts: Facts, store: Store, evaluated?: () => void, inline = false): Promise<Verdict> {
  const verdict = await decide(engine, set, facts, evaluated, inline);
  if (verdict.decision === 'allow' || !set.mentionsBreakGlass || facts.problem !== null || facts.approval) return verdict;
  facts.breakGlass = await activeBreakGlass(store, facts.request);
  return facts.breakGlass ? decide(engine, set, facts, undefined, inline) : verdict;
}
