import type { AgentRecord, Reason, TaskRecord } from '../core/types.js';
import type { LoadedPolicySet } from '../policy/engine.js';
import { policyDenyReason, policyErrorReason } from '../policy/deny-reasons.js';
import { buildCedarRequest, type ActionInput } from '../policy/request.js';
import { checkScope } from '../core/scope.js';
import { approvalRuleFor, escalate, type Evaluator } from './escalation.js';
import type { Facts } from './facts.js';

/**
 * The decide step of the authorize pipeline (./pipeline.ts): pure. It reads no store
 * and writes nothing; it sees the facts gathered before it (./facts.ts) and evaluates
 * them under one policy set, escalating a deny that a person may lift (approval,
 * break-glass: ./escalation.ts). What it decides is committed after it (./commit.ts).
 */

export type Verdict =
  | { decision: 'deny'; reasons: Reason[]; policies: string[] }
  | { decision: 'allow'; policies: string[]; reasons?: Reason[]; breakGlassId?: string; approvers?: string[] }
  | { decision: 'approval_required'; policies: string[]; quorum: number; fourEyes: boolean };

const deny = (reasons: Reason[], policies: string[] = []): Verdict => ({ decision: 'deny', reasons, policies });

/**
 * The hard bounds, checked before any fact is read: the task is active (when `active`),
 * the action is inside its scope, and (when `budget`) the task has actions left. Null
 * when they hold, else the deny.
 */
export function bounds(
  ctx: { task: TaskRecord; agent: AgentRecord },
  action: ActionInput,
  now: number,
  check: { active: boolean; budget: boolean },
): Verdict | null {
  const { task } = ctx;
  if (check.active && (task.status !== 'active' || task.expiresAt <= now)) return deny([{ code: 'task_not_active', message: `task \`${task.id}\` is not active` }]);
  const scopeViolation = checkScope(task.scope, action);
  if (scopeViolation) return deny([scopeViolation]);
  if (check.budget && task.actionsUsed + task.actionsReserved >= task.maxActions) {
    return deny([{ code: 'budget_exhausted', message: `the task has used its ${task.maxActions} actions` }]);
  }
  return null;
}

/**
 * Decides one request from its facts under `set`. Without an approval fact: evaluate,
 * and a deny no `forbid` caused may be escalated to an approval request or a
 * break-glass allow. With one (the approval read): the rule of the policy in force
 * (quorum, four eyes) must be met by the approval's reviews, then the request is
 * evaluated with the approval granted by that many approvers. `evaluated` is called
 * once the first evaluation is done (stage accounting); `inline`: the caller has no
 * other request in flight (the engine may evaluate on this thread).
 */
export async function decide(engine: Evaluator, set: LoadedPolicySet, facts: Facts, evaluated?: () => void, inline = false): Promise<Verdict> {
  if (facts.problem) return deny([facts.problem]);
  if (facts.approval) return decideApproved(engine, set, facts);
  // on a policy worker when configured: a worker failure throws 503, never allows
  const first = await engine.evaluateAsync(buildCedarRequest(facts.request), set, { inline });
  evaluated?.();
  if (first.errors.length > 0) return deny([policyErrorReason(first)], first.errors.map((e) => e.policy_id).filter(Boolean));
  if (first.decision === 'allow') return { decision: 'allow', policies: first.policies };
  // A deny that no forbid caused may be lifted by a person: an approval of this one
  // action, or an active break-glass. Only then, and only under a policy set that
  // mentions them, is the request evaluated again (./escalation.ts).
  const esc = set.mentionsApproval || set.mentionsBreakGlass ? escalate(engine, { facts: facts.request, set, first, breakGlass: facts.breakGlass }) : null;
  if (esc?.kind === 'approval') return { decision: 'approval_required', policies: esc.evaluation.policies, quorum: esc.quorum, fourEyes: esc.fourEyes };
  if (esc?.kind === 'break_glass') {
    return {
      decision: 'allow',
      policies: esc.evaluation.policies,
      breakGlassId: esc.breakGlassId,
      reasons: [{ code: 'break_glass', message: `allowed only under break-glass \`${esc.breakGlassId}\`` }],
    };
  }
  return deny([policyDenyReason(first)], first.policies);
}

function decideApproved(engine: Evaluator, set: LoadedPolicySet, facts: Facts): Verdict {
  const approval = facts.approval!;
  // The rule (quorum, four eyes) of the policy in force, not the one recorded when the
  // approval was asked for: the reviews must satisfy it now.
  const rule = approvalRuleFor(engine, facts.request, set);
  const fourEyes = rule?.fourEyes ?? approval.recordedFourEyes;
  const counted = fourEyes ? approval.approvers.filter((id) => !approval.owners.includes(id)) : approval.approvers;
  if (rule && counted.length < rule.quorum) {
    return deny(
      [
        {
          code: 'approval_insufficient',
          message: `the policy in force asks for ${rule.quorum === 1 ? 'an approval' : `${rule.quorum} approvals`}${rule.fourEyes ? ' by someone other than the task owner' : ''}; ${counted.length} of this approval's count`,
        },
      ],
      rule.evaluation.policies,
    );
  }
  // The policy of this moment, with the approval granted by its approvers.
  const e = engine.evaluate(buildCedarRequest({ ...facts.request, approval: { granted: true, approvers: counted.length } }), set);
  if (e.errors.length > 0) return deny([policyErrorReason(e)]);
  if (e.decision !== 'allow') return deny([policyDenyReason(e, ', even approved')], e.policies);
  return {
    decision: 'allow',
    policies: e.policies,
    approvers: counted,
    reasons: [{ code: 'approved', message: `approved by ${counted.join(', ')} (approval \`${approval.id}\`)` }],
  };
}
