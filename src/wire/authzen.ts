import { z } from 'zod';

/**
 * OpenID AuthZEN Authorization API 1.0 (api/authorization-api-1_0.md) on the wire: the
 * requests and answers of `POST /access/v1/evaluation(s)` and the PDP metadata, Writ as
 * the PDP (the mapping onto a Writ decision is in src/server/routes-authzen.ts).
 *
 * §"JSON Serialization": receivers MUST ignore unknown fields, so these objects are not
 * strict (zod drops the unknown keys); the values Writ reads are checked strictly.
 */

const properties = z.record(z.string(), z.unknown());

export const authzenSubjectSchema = z.object({
  type: z.string().min(1).max(64),
  id: z.string().min(1).max(256),
  properties: properties.optional(),
});

export const authzenActionSchema = z.object({ name: z.string().min(1).max(64), properties: properties.optional() });

export const authzenResourceSchema = z.object({
  type: z.string().min(1).max(64),
  id: z.string().min(1).max(256),
  properties: properties.optional(),
});

export const authzenContextSchema = z.record(z.string(), z.unknown());

/** `POST /access/v1/evaluation` (§"Access Evaluation API") */
export const authzenEvaluationSchema = z.object({
  subject: authzenSubjectSchema,
  action: authzenActionSchema,
  resource: authzenResourceSchema,
  context: authzenContextSchema.optional(),
});

/** One evaluation in a boxcar: each key may come from the top-level defaults (§"Default values"). */
export const authzenPartialEvaluationSchema = z.object({
  subject: authzenSubjectSchema.optional(),
  action: authzenActionSchema.optional(),
  resource: authzenResourceSchema.optional(),
  context: authzenContextSchema.optional(),
});

/** the most evaluations one `POST /access/v1/evaluations` may carry */
export const EVALUATIONS_MAX = 64;

export const AUTHZEN_SEMANTICS = ['execute_all', 'deny_on_first_deny', 'permit_on_first_permit'] as const;
export type AuthzenSemantic = (typeof AUTHZEN_SEMANTICS)[number];

/** `POST /access/v1/evaluations` (§"Access Evaluations API") */
export const authzenEvaluationsSchema = authzenPartialEvaluationSchema.extend({
  evaluations: z.array(authzenPartialEvaluationSchema).max(EVALUATIONS_MAX, `at most ${EVALUATIONS_MAX} evaluations per request`).optional(),
  options: z
    .object({
      evaluations_semantic: z
        .enum(AUTHZEN_SEMANTICS, { error: `\`options.evaluations_semantic\` is one of ${AUTHZEN_SEMANTICS.map((s) => `\`${s}\``).join(', ')}` })
        .optional(),
    })
    .optional(),
});

export type AuthzenEvaluation = z.output<typeof authzenEvaluationSchema>;

/**
 * §"Decision": `decision` is true only for Writ's `allow`; `context` carries the decision
 * id, the task id and either the action token (an allow) or Writ's reasons (a deny, an
 * approval request with `approval_required: true` and `approval_id`).
 */
export const authzenDecisionSchema = z.object({ decision: z.boolean(), context: z.record(z.string(), z.unknown()) });
export type AuthzenDecision = z.output<typeof authzenDecisionSchema>;

/** `POST /access/v1/evaluations`: one decision per evaluation decided (short-circuiting semantics stop early). */
export const authzenEvaluationsResponseSchema = z.object({ evaluations: z.array(authzenDecisionSchema) });

/** `GET /.well-known/authzen-configuration` (§"Policy Decision Point Metadata") */
export const authzenConfigurationSchema = z.object({
  policy_decision_point: z.string(),
  access_evaluation_endpoint: z.string(),
  access_evaluations_endpoint: z.string(),
});
export type AuthzenConfiguration = z.output<typeof authzenConfigurationSchema>;
