import { z } from 'zod';
import { ERROR_CODES } from '../core/error-codes.js';

/**
 * Response bodies the SDK and the gateway read. The server builds them from records
 * (the record-to-wire views); these schemas say what a client may rely on.
 */

/** `{"error": {"code", "message", "details"?}}`; OAuth endpoints answer RFC 6749 §5.2 instead. */
export const errorResponseSchema = z.object({
  error: z.object({ code: z.enum(ERROR_CODES), message: z.string(), details: z.unknown().optional() }),
});

/** RFC 6749 §5.2 */
export const oauthErrorResponseSchema = z.object({ error: z.string(), error_description: z.string().optional() });

export const reasonSchema = z.object({ code: z.string(), message: z.string() });

export const authorizeResponseSchema = z.discriminatedUnion('decision', [
  z.object({ decision: z.literal('allow'), decision_id: z.string(), action_token: z.string(), expires_in: z.number().int(), args_digest: z.string() }),
  z.object({ decision: z.literal('deny'), decision_id: z.string(), reasons: z.array(reasonSchema) }),
  z.object({ decision: z.literal('approval_required'), decision_id: z.string(), approval_id: z.string(), expires_in: z.number().int() }),
]);

export const approvalStatusSchema = z.enum(['pending', 'approved', 'denied', 'expired', 'cancelled', 'used']);

/** `GET /v1/approvals/{id}`: an agent polls it; `action_token` once approved (read once). */
export const approvalResponseSchema = z.looseObject({ status: approvalStatusSchema, action_token: z.string().optional() });

/** `GET /v1/tasks/current` */
export const currentTaskResponseSchema = z.object({
  task_id: z.string(),
  agent_id: z.string(),
  status: z.enum(['active', 'completed', 'revoked', 'expired']),
  expires_at: z.iso.datetime({ offset: true }),
});

/** `GET /v1/agents/{id}/tasks`: what the agent needs to pick a task and ask for its token */
export const agentTasksResponseSchema = z.object({
  tasks: z.array(
    z.object({
      id: z.string(),
      intent: z.string(),
      status: z.literal('active'),
      created_at: z.iso.datetime({ offset: true }),
      expires_at: z.iso.datetime({ offset: true }),
      parent_id: z.string().nullable(),
    }),
  ),
});

export const visibleToolsResponseSchema = z.object({ tools: z.array(z.string()) });

/** `POST /oauth/token` (RFC 6749 §5.1; RFC 8693 §2.2.1 adds `issued_token_type`) */
export const tokenResponseSchema = z.looseObject({
  access_token: z.string(),
  token_type: z.string(),
  expires_in: z.number().int(),
  issued_token_type: z.string().optional(),
});

/**
 * The claims of an action token (`typ: writ-action+jwt`), as a tool server reads them.
 * `break_glass` is present only as `true` (an allow that relied on a break-glass).
 */
export const actionClaimsSchema = z.object({
  iss: z.string(),
  sub: z.string(),
  aud: z.string(),
  iat: z.number().int(),
  exp: z.number().int(),
  jti: z.string(),
  txn: z.string(),
  decision_id: z.string(),
  tool: z.string(),
  args_digest: z.string(),
  resource: z.string().optional(),
  destination: z.string().optional(),
  act: z.record(z.string(), z.unknown()).optional(),
  approval_id: z.string().optional(),
  break_glass: z.literal(true).optional(),
});

/** Any JSON object: responses whose shape is documented in the README and not pinned here. */
export const objectResponseSchema = z.looseObject({});
