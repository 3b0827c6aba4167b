import { authenticateTaskRequest } from './task-auth.js';
import { ForbiddenError, InvalidRequestError } from '../core/errors.js';
import type { ActionInput } from '../policy/request.js';
import type { AuthorizeResult, Writ } from '../service/writ.js';
import type { AddRoute } from './routes-delegation.js';
import { bearer, readJson, sendJson } from './http-io.js';
import {
  authorizeSchema,
  authzenEvaluationSchema as evaluationSchema,
  authzenEvaluationsSchema as evaluationsSchema,
  parse,
  type AuthzenConfiguration,
  type AuthzenDecision,
  type AuthzenEvaluation,
  type AuthzenSemantic as Semantic,
} from '../wire/index.js';

/**
 * OpenID AuthZEN Authorization API 1.0 (api/authorization-api-1_0.md), Writ as the PDP.
 *
 * The mapping onto a Writ decision:
 * - `subject` = the agent: `{"type": "agent", "id": <agent id>}`; it must be the task
 *   token's agent (403 `subject_mismatch`): a PEP cannot ask on behalf of another agent.
 * - `action` = a tool call: `{"name": "call"}` (Cedar's `Writ::Action::"call"`).
 * - `resource` = the tool: `{"type": "tool", "id": <tool>, "properties": {"audience",
 *   "resource"?, "destination"?}}`.
 * - `context` = the task token's claims (taken from the token, never from the body) and
 *   `context.arguments`, the tool call's arguments.
 *
 * A task token (Bearer) is required, so an AuthZEN caller gets the same scope, budget,
 * refusal limit and audit as `POST /v1/authorize`: every evaluation goes through
 * `writ.authz.authorize` (src/authorize/pipeline.ts), there is no second decision path. The answer is the AuthZEN Decision
 * (§"Decision"): `decision` is true only for Writ's `allow`; a deny and an approval
 * request are both `false` (the PEP must not go forward, §"Decision"), with Writ's
 * reasons, the decision id and, for an allow, the action token in `context`.
 */

// The request and answer schemas are the wire's (src/wire/authzen.ts).
type Evaluation = AuthzenEvaluation;

/** The PDP metadata (§"Policy Decision Point Metadata"), rooted at Writ's issuer. */
export function authzenConfiguration(issuer: string): AuthzenConfiguration {
  return {
    policy_decision_point: issuer,
    access_evaluation_endpoint: `${issuer}/access/v1/evaluation`,
    access_evaluations_endpoint: `${issuer}/access/v1/evaluations`,
  };
}

/**
 * An AuthZEN evaluation as Writ's action input, checked by the same schema as
 * `/v1/authorize` (tool name, argument keys and numbers, canonical resource and
 * destination forms: the same typed 400s). `where` prefixes error paths (`evaluations.2.`).
 */
export function toActionInput(e: Evaluation, agentId: string, where = ''): ActionInput {
  if (e.subject.type !== 'agent') {
    throw new InvalidRequestError(`\`${where}subject.type\` must be \`agent\`, not \`${e.subject.type}\``, undefined, 'unsupported_subject_type');
  }
  if (e.subject.id !== agentId) {
    throw new ForbiddenError(`\`${where}subject.id\` \`${e.subject.id}\` is not the task token's agent`, 'subject_mismatch');
  }
  if (e.action.name !== 'call') {
    throw new InvalidRequestError(`\`${where}action.name\` must be \`call\` (a tool call), not \`${e.action.name}\``, undefined, 'unsupported_action');
  }
  if (e.resource.type !== 'tool') {
    throw new InvalidRequestError(`\`${where}resource.type\` must be \`tool\`, not \`${e.resource.type}\``, undefined, 'unsupported_resource_type');
  }
  const p = e.resource.properties ?? {};
  const input = { tool: e.resource.id, audience: p.audience, resource: p.resource, destination: p.destination, arguments: e.context?.arguments === undefined ? {} : e.context.arguments };
  try {
    return parse(authorizeSchema, input) as ActionInput;
  } catch (err) {
    // name the AuthZEN field, not Writ's internal one
    if (err instanceof InvalidRequestError) {
      const field: Record<string, string> = { tool: 'resource.id', audience: 'resource.properties.audience', resource: 'resource.properties.resource', destination: 'resource.properties.destination', arguments: 'context.arguments' };
      const message = err.message.replace(/^`(tool|audience|resource|destination|arguments)([`.])/, (_m, k: string, rest: string) => `\`${where}${field[k]}${rest}`);
      throw new InvalidRequestError(message, err.details, err.code);
    }
    throw err;
  }
}

/** Writ's answer as an AuthZEN Decision. */
export function toAuthzenDecision(r: AuthorizeResult, taskId: string): AuthzenDecision {
  if (r.decision === 'allow') {
    return { decision: true, context: { decision_id: r.decision_id, task_id: taskId, action_token: r.action_token, expires_in: r.expires_in, args_digest: r.args_digest } };
  }
  if (r.decision === 'deny') return { decision: false, context: { decision_id: r.decision_id, task_id: taskId, reasons: r.reasons } };
  return {
    decision: false,
    context: {
      decision_id: r.decision_id,
      task_id: taskId,
      approval_required: true,
      approval_id: r.approval_id,
      expires_in: r.expires_in,
      reasons: [{ code: 'approval_required', message: 'a person must approve this action; ask again once it is approved' }],
    },
  };
}

/** §"Request Identification": an `X-Request-ID` is sent back unchanged, on errors too. */
function echoRequestId(req: { headers: Record<string, string | string[] | undefined> }, res: { setHeader(k: string, v: string): unknown }): void {
  const raw = req.headers['x-request-id'];
  if (raw === undefined) return;
  const id = Array.isArray(raw) ? raw[0]! : raw;
  if (!/^[\x21-\x7e]{1,256}$/.test(id)) throw new InvalidRequestError('`X-Request-ID` must be 1 to 256 printable ASCII characters', undefined, 'invalid_request_id');
  res.setHeader('x-request-id', id);
}

export function registerAuthzenRoutes(writ: Writ, route: AddRoute): void {
  route('GET', '/.well-known/authzen-configuration', async ({ res }) => {
    sendJson(res, 200, authzenConfiguration(writ.config.issuer), { 'cache-control': 'public, max-age=300' });
  });

  route('POST', '/access/v1/evaluation', async ({ req, res }) => {
    echoRequestId(req, res);
    const ctx = await authenticateTaskRequest(writ, req);
    const e = parse(evaluationSchema, await readJson(req));
    const action = toActionInput(e, ctx.agent.id);
    sendJson(res, 200, toAuthzenDecision(await writ.authz.authorize(ctx, action), ctx.task.id));
  });

  route('POST', '/access/v1/evaluations', async ({ req, res }) => {
    echoRequestId(req, res);
    const ctx = await authenticateTaskRequest(writ, req);
    const body = parse(evaluationsSchema, await readJson(req));
    const { evaluations, options, ...defaults } = body;
    // §"Access Evaluations API Request": no or an empty `evaluations` array is a single evaluation
    if (!evaluations || evaluations.length === 0) {
      const action = toActionInput(parse(evaluationSchema, defaults), ctx.agent.id);
      sendJson(res, 200, toAuthzenDecision(await writ.authz.authorize(ctx, action), ctx.task.id));
      return;
    }
    // Every evaluation is resolved (defaults, §"Default values": a key on the evaluation
    // replaces the top-level one whole) and checked before any is decided: a bad one
    // refuses the request with nothing recorded, never half of a boxcar.
    const actions = evaluations.map((item, i) => {
      const merged = { ...defaults, ...Object.fromEntries(Object.entries(item).filter(([, v]) => v !== undefined)) };
      for (const k of ['subject', 'action', 'resource'] as const) {
        if (merged[k] === undefined) throw new InvalidRequestError(`\`evaluations.${i}.${k}\` is required (neither the evaluation nor the request gives it)`);
      }
      return toActionInput(merged as Evaluation, ctx.agent.id, `evaluations.${i}.`);
    });
    const semantic: Semantic = options?.evaluations_semantic ?? 'execute_all';
    // §"Evaluations semantics". Decided one after another, in order: each allow reserves
    // budget, so the order the PEP gave is the order the budget is spent in, and the
    // short-circuiting semantics decide (and record) nothing after the deciding one.
    const out: AuthzenDecision[] = [];
    for (const action of actions) {
      const d = toAuthzenDecision(await writ.authz.authorize(ctx, action), ctx.task.id);
      out.push(d);
      if (semantic === 'deny_on_first_deny' && !d.decision) break;
      if (semantic === 'permit_on_first_permit' && d.decision) break;
    }
    sendJson(res, 200, { evaluations: out });
  });
}
