import { z } from 'zod';
import { findReservedArgumentKey } from '../core/argument-keys.js';
import { scopeBoundsProblem } from '../core/scope-limits.js';
import { scopeFormProblem } from '../core/scope-forms.js';
import { destinationProblem } from '../core/destination.js';
import { resourceProblem } from '../core/resource.js';

/** Every external input is parsed once, at the edge, with these schemas; unknown fields are rejected. */

const pattern = z.string().min(1).max(256).regex(/^[\x21-\x7e]+$/, 'patterns are printable ASCII without spaces');
const identifier = z.string().min(1).max(256).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export const agentIdSchema = identifier;

export const registerAgentSchema = z.strictObject({
  id: agentIdSchema,
  name: z.string().min(1).max(200).optional(),
  // optional: an agent that proves itself only through a trusted issuer (federation) has no keys
  jwks: z.strictObject({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(10) }).optional(),
  labels: z.array(z.string().min(1).max(64).regex(/^[A-Za-z0-9_.:-]+$/)).max(32).optional(),
});

/**
 * Scope patterns: printable ASCII; their number, length and `*` count are bounded by
 * `scope-limits.ts` (400 `scope_too_large`, for task creation and delegation alike).
 */
const scopePattern = z.string().min(1).regex(/^[\x21-\x7e]+$/, 'patterns are printable ASCII without spaces');

export const scopeSchema = z
  .strictObject({
    tools: z.array(scopePattern).min(1),
    resources: z.array(scopePattern).default([]),
    destinations: z.array(scopePattern).default([]),
  })
  .superRefine((scope, ctx) => {
    const problem = scopeBoundsProblem(scope);
    if (problem) {
      ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path, params: { writ_code: 'scope_too_large' } });
      return;
    }
    const form = scopeFormProblem(scope);
    if (form) ctx.addIssue({ code: 'custom', message: form.message, path: form.path, params: { writ_code: form.code } });
  });

export const createTaskSchema = z.strictObject({
  agent_id: agentIdSchema,
  intent: z.string().min(1).max(2000),
  scope: scopeSchema,
  ttl_seconds: z.number().int().min(1),
  max_actions: z.number().int().min(1),
  require_owner_presence: z.boolean().optional(),
});

/**
 * Arguments must have an RFC 8785 canonical form (their digest is bound into the
 * action token): finite numbers only (`1e400` parses as Infinity), and a bounded depth.
 * The first problem of `value`, or null. The schema below and the plain check before it
 * (./authorize-body.ts) both ask this.
 */
export function argumentsValueProblem(value: unknown): { message: string; writCode?: string } | null {
  const reserved = findReservedArgumentKey(value);
  if (reserved !== null) {
    return {
      message: `argument key \`${reserved.slice(0, 200)}\` is reserved: \`__proto__\`, \`constructor\` and \`prototype\` are refused at every depth`,
      writCode: 'reserved_argument_key',
    };
  }
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v === 'number' && !Number.isFinite(v)) return { message: 'numbers in `arguments` must be finite' };
    if (v !== null && typeof v === 'object') {
      if (depth >= 64) return { message: '`arguments` nest deeper than 64 levels' };
      for (const x of Array.isArray(v) ? v : Object.values(v)) stack.push([x, depth + 1]);
    }
  }
  return null;
}

function checkArgumentsValue(value: unknown, ctx: z.RefinementCtx): void {
  const problem = argumentsValueProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem.message, ...(problem.writCode ? { params: { writ_code: problem.writCode } } : {}) });
}

/** A tool name: letters, digits and `_ . : / -` (the schema below and ./authorize-body.ts). */
export const TOOL_NAME = /^[A-Za-z0-9_.:/-]+$/;

export const authorizeSchema = z.strictObject({
  tool: z.string().min(1).max(256).regex(TOOL_NAME, 'tool names are letters, digits and `_ . : / -`'),
  // checked before the record parse: zod's record drops a top-level `__proto__` key silently
  arguments: z
    .unknown()
    .superRefine((v, ctx) => {
      if (v !== undefined) checkArgumentsValue(v, ctx);
    })
    .pipe(z.record(z.string(), z.unknown()).default({})),
  audience: z.string().min(1).max(1024),
  // canonical forms (README, "Destinations and resources"): 400 invalid_resource / invalid_destination
  resource: z
    .string()
    .superRefine((v, ctx) => {
      const why = resourceProblem(v);
      if (why) ctx.addIssue({ code: 'custom', message: `resource \`${v.slice(0, 200)}\`: ${why}`, params: { writ_code: 'invalid_resource' } });
    })
    .optional(),
  destination: z
    .string()
    .superRefine((v, ctx) => {
      const why = destinationProblem(v);
      if (why) ctx.addIssue({ code: 'custom', message: `destination \`${v.slice(0, 200)}\`: ${why}`, params: { writ_code: 'invalid_destination' } });
    })
    .optional(),
});

export const consumeSchema = z.strictObject({
  action_token: z.string().min(1).max(16_384),
  // required: a token consumed without its audience would be burnt by anyone holding it,
  // at any tool server (RFC 7519 §4.1.3: the recipient checks it is the audience)
  audience: z.string({ error: '`audience` is required: the tool server names itself' }).min(1).max(1024),
});

export const outcomeSchema = z.strictObject({
  status: z.enum(['succeeded', 'failed']),
  detail: z.string().max(4096).optional(),
});

/** the most outcomes one `POST /v1/actions/outcomes` carries */
export const MAX_OUTCOMES_PER_REQUEST = 256;

/**
 * `POST /v1/actions/outcomes`: several outcomes of one task's allowed actions in one
 * request (a gateway reports each call's, gathered over a few milliseconds).
 */
export const outcomesSchema = z.strictObject({
  outcomes: z
    .array(z.strictObject({ decision_id: z.string().min(1).max(256), status: z.enum(['succeeded', 'failed']), detail: z.string().max(4096).optional() }))
    .min(1)
    .max(MAX_OUTCOMES_PER_REQUEST),
});

export const revokeSchema = z.strictObject({ reason: z.string().max(1000).optional() });

export const policySchema = z.strictObject({ policies: z.string().min(1).max(1_000_000) });

/** `POST /v1/policies/simulate`: a candidate set replayed on the decisions since `since` (RFC 3339). */
export const simulatePolicySchema = z.strictObject({
  policies: z.string().min(1).max(1_000_000),
  since: z.iso.datetime({ offset: true }),
  limit: z.number().int().min(1).max(100_000).default(10_000),
  examples: z.number().int().min(0).max(100).default(10),
});

/** `GET /v1/policies?limit=N`: how many changes of the history to list (newest first). */
export const policyQuerySchema = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(20) });

export const createOperatorSchema = z.strictObject({
  name: z.string().min(1).max(200),
  roles: z.array(z.enum(['admin', 'approver', 'auditor', 'requester'])).min(1),
});

export const tokenFormSchema = z.object({
  grant_type: z.string().min(1, '`grant_type` is required'),
  client_assertion_type: z.string().optional(),
  client_assertion: z.string().max(16_384).optional(),
  task_id: z.string().max(256).optional(),
  /** `task:<task id>` names the task instead of `task_id` (for stock OAuth clients, which send only a scope) */
  scope: z.string().max(1024).optional(),
  /** RFC 8707 resource indicator (an MCP client sends the gateway's URL): an absolute URI, not otherwise bound */
  resource: z.string().max(2048).optional(),
  // RFC 8693 token exchange (federated workload identity)
  subject_token: z.string().max(16_384).optional(),
  subject_token_type: z.string().max(256).optional(),
  actor_token: z.string().max(16_384).optional(),
  actor_token_type: z.string().max(256).optional(),
  requested_token_type: z.string().max(256).optional(),
});

export const introspectFormSchema = z.object({ token: z.string().min(1).max(16_384), token_type_hint: z.string().optional() });

export const auditVerifySchema = z.strictObject({
  checkpoints: z.array(z.string().min(1).max(4096)).max(1000).default([]),
});

export const auditQuerySchema = z.strictObject({
  task_id: z.string().max(256).optional(),
  agent_id: z.string().max(256).optional(),
  type: z.string().max(64).optional(),
  decision_id: z.string().max(256).optional(),
  after: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

/** `GET /v1/agents/{id}/tasks`: only active tasks are listed; `wait` long-polls (seconds, at most 30) */
export const agentTasksQuerySchema = z.strictObject({
  status: z.literal('active').optional(),
  wait: z.coerce.number().int().min(0).max(30).optional(),
});

export const taskQuerySchema = z.strictObject({
  agent_id: z.string().max(256).optional(),
  status: z.enum(['active', 'completed', 'revoked', 'expired']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});


export const toolLabelsSchema = z.strictObject({
  pattern: pattern,
  labels: z.array(z.string().min(1).max(64).regex(/^[A-Za-z0-9_.:-]+$/)).max(32),
});

export const visibleToolsSchema = z.strictObject({
  // the count is bounded by the service (`visibleToolsMax`, 400 `too_many_tools`); this only keeps parsing cheap
  tools: z.array(z.string().min(1).max(256)).max(10_000),
});

/** disable and rotate take no fields: an empty body or `{}` */
export const noFieldsSchema = z.strictObject({});
