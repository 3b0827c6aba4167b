import { z } from 'zod';

/**
 * The staged rollout's wire (src/service/policy-shadow.ts): a candidate set evaluated
 * beside the live one on real traffic, its report, its promotion and its removal.
 */

/** `PUT /v1/policies?mode=shadow`: the body (`policySchema`) becomes the shadow candidate instead of the live set. */
export const putPolicyQuerySchema = z.strictObject({ mode: z.enum(['shadow']).optional() });

/** `GET /v1/policies/shadow?limit=N&examples=K`: the newest N shadow decisions are compared, K examples per kind. */
export const shadowReportQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100_000).default(10_000),
  examples: z.coerce.number().int().min(0).max(100).default(10),
});

/** `POST /v1/policies/shadow/promote` (If-Match: the live version): with `version`, only while it is the candidate. */
export const promoteShadowSchema = z.strictObject({ version: z.string().min(1).max(128).optional() });

const diagnosticSchema = z.looseObject({ message: z.string() });

/** `PUT /v1/policies?mode=shadow` */
export const shadowSetResponseSchema = z.object({
  version: z.string(),
  policies: z.array(z.string()),
  warnings: z.array(diagnosticSchema),
  live_version: z.string().nullable(),
  previous: z.string().nullable(),
  diff_sha256: z.string(),
});

const shadowExampleSchema = z.object({
  decision_id: z.string(),
  tool: z.string(),
  at: z.iso.datetime({ offset: true }),
  live: z.object({ decision: z.string(), reasons: z.array(z.string()), policy_version: z.string() }),
  candidate: z.object({ decision: z.enum(['allow', 'deny', 'approval_required', 'error']), reasons: z.array(z.string()), policies: z.array(z.string()) }),
});

/** `GET /v1/policies/shadow`: the candidate, and where its decisions differ from the live ones. */
export const shadowReportResponseSchema = z.object({
  candidate: z.object({ version: z.string(), set_by: z.string(), set_at: z.iso.datetime({ offset: true }), policies: z.string() }),
  live_version: z.string().nullable(),
  considered: z.number().int(),
  decided_outside_policy: z.number().int(),
  agreed: z.number().int(),
  differed: z.number().int(),
  differences: z.object({ by_tool: z.record(z.string(), z.number().int()), by_reason: z.record(z.string(), z.number().int()), examples: z.array(shadowExampleSchema) }),
  errors: z.object({ count: z.number().int(), by_reason: z.record(z.string(), z.number().int()), examples: z.array(shadowExampleSchema) }),
  truncated: z.boolean(),
});

/** `POST /v1/policies/shadow/promote`: the live change (as `PUT /v1/policies` answers it) and the version promoted. */
export const shadowPromoteResponseSchema = z.looseObject({ version: z.string(), promoted: z.string(), previous: z.string().nullable(), diff_sha256: z.string() });

/** `DELETE /v1/policies/shadow` */
export const shadowDropResponseSchema = z.object({ dropped: z.string() });
