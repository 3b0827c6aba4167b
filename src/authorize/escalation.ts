import { canonicalJson, sha256Hex } from '../core/digest.js';
import type { CedarRequest, Evaluation, LoadedPolicySet } from '../policy/engine.js';
import { buildCedarRequest, type RequestFacts } from '../policy/request.js';

/** The engine calls the decide step makes: evaluation only (no store, no clock). */
export interface Evaluator {
  evaluate(request: CedarRequest, set: LoadedPolicySet): Evaluation;
  /** `inline`: the caller has nothing else in flight (src/policy/engine.ts may then skip its worker hop) */
  evaluateAsync(request: CedarRequest, set: LoadedPolicySet, options?: { inline?: boolean }): Promise<Evaluation>;
}

/**
 * The approvals convention (README, "Approvals, break-glass and presence"): policy
 * states the condition (`context.approval.granted`, `context.break_glass`,
 * `context.owner_present`), Writ supplies the fact. A request is evaluated with
 * `approval.granted == false` and `break_glass == false`. Only when that denies
 * with no `forbid` applying, and the active set mentions the fact at all, is it
 * evaluated again:
 *
 * - with `break_glass == true`, when an active break-glass covers the agent, the
 *   task and the tool: an allow then is an allow flagged `break_glass`;
 * - otherwise with `approval.granted == true`: an allow then makes the decision
 *   `approval_required`, with the quorum and four-eyes rule taken from the
 *   annotations of the policies that allowed it.
 *
 * A `forbid` is never overridden: an action a forbid denies stays denied.
 */

/** the most approvers a policy may ask for (`@approvals("N")`, N in 1..10) */
export const MAX_QUORUM = 10;

export type Escalation =
  | { kind: 'approval'; evaluation: Evaluation; quorum: number; fourEyes: boolean }
  | { kind: 'break_glass'; evaluation: Evaluation; breakGlassId: string };

/**
 * The action an approval is bound to: hex SHA-256 of the RFC 8785 JSON of the tool,
 * the arguments' digest, the audience, resource, destination and task.
 */
export function actionDigest(a: { tool: string; argsDigest: string; audience: string; resource: string | null; destination: string | null; taskId: string }): string {
  return sha256Hex(
    canonicalJson({ tool: a.tool, args_digest: a.argsDigest, audience: a.audience, resource: a.resource, destination: a.destination, task_id: a.taskId }),
  );
}

function allows(e: Evaluation): boolean {
  return e.decision === 'allow' && e.errors.length === 0;
}

/** Quorum and four-eyes from the annotations of the policies that determined an allow. */
export function approvalRule(set: LoadedPolicySet, policies: string[]): { quorum: number; fourEyes: boolean } {
  let quorum = 1;
  let fourEyes = false;
  for (const id of policies) {
    const ann = set.annotations[id] ?? {};
    const n = Number(ann.approvals);
    if (Number.isInteger(n) && n > quorum) quorum = Math.min(n, MAX_QUORUM);
    if (ann.four_eyes === 'true') fourEyes = true;
  }
  return { quorum, fourEyes };
}

/**
 * The approval rule the policy in force sets for this request: null when no number of
 * approvals makes it an allow; otherwise the quorum (the largest `@approvals` of the
 * policies that allow it, and at least the fewest approvers with which a policy that
 * counts them in its condition allows it) and whether four eyes apply. Computed when an
 * approval is requested, again for each review, and again when a token is issued from
 * it: an approval asked for under a lenient policy is held to the policy of the moment.
 */
export function approvalRuleFor(
  policy: Pick<Evaluator, 'evaluate'>,
  facts: RequestFacts,
  set: LoadedPolicySet,
): { evaluation: Evaluation; quorum: number; fourEyes: boolean } | null {
  // With as many approvers as any policy may ask for: does a yes make it an allow?
  const granted = policy.evaluate(buildCedarRequest({ ...facts, approval: { granted: true, approvers: MAX_QUORUM } }), set);
  if (!allows(granted)) return null;
  let { quorum, fourEyes } = approvalRule(set, granted.policies);
  // A policy may also count approvers in its condition: the quorum is at least the
  // fewest approvers with which the request is allowed.
  let e = policy.evaluate(buildCedarRequest({ ...facts, approval: { granted: true, approvers: quorum } }), set);
  while (!allows(e) && quorum < MAX_QUORUM) {
    quorum += 1;
    e = policy.evaluate(buildCedarRequest({ ...facts, approval: { granted: true, approvers: quorum } }), set);
  }
  if (!allows(e)) e = granted;
  const rule = approvalRule(set, e.policies);
  return { evaluation: e, quorum: Math.max(quorum, rule.quorum), fourEyes: fourEyes || rule.fourEyes };
}

/**
 * Looks again at a deny (see above). `first` is the evaluation with neither fact
 * granted; `breakGlass` the active break-glass covering the request (gathered only
 * when the set mentions it); null means the deny stands. Pure: evaluation only.
 */
export function escalate(
  policy: Pick<Evaluator, 'evaluate'>,
  input: { facts: RequestFacts; set: LoadedPolicySet; first: Evaluation; breakGlass: { id: string } | null },
): Escalation | null {
  const { facts, set, first } = input;
  if (first.decision === 'allow' || first.errors.length > 0 || first.policies.length > 0) return null;
  if (!set.mentionsApproval && !set.mentionsBreakGlass) return null;

  if (set.mentionsBreakGlass && input.breakGlass) {
    const e = policy.evaluate(buildCedarRequest({ ...facts, breakGlass: true }), set);
    if (allows(e)) return { kind: 'break_glass', evaluation: e, breakGlassId: input.breakGlass.id };
  }

  if (set.mentionsApproval) {
    const rule = approvalRuleFor(policy, facts, set);
    if (rule) return { kind: 'approval', ...rule };
  }
  return null;
}
