import { z } from 'zod';

/**
 * The console's own endpoints (`/console/api/*`, src/server/routes-console.ts). Everything
 * else the console does goes through the `/v1` API and its schemas.
 */

/** `POST /console/api/session`: sign in with an operator token (never stored in the browser). */
export const consoleSignInSchema = z.strictObject({
  token: z.string().min(1, 'an operator token is required').max(4096, 'the token is longer than any operator token'),
});

/** `GET /console/api/events`: no parameters (an unknown one is refused, like everywhere). */
export const consoleEventsQuerySchema = z.strictObject({});

const time = z.iso.datetime({ offset: true, message: 'a time is an RFC 3339 date-time (`2026-01-31T12:00:00Z`)' });

/**
 * `GET /console/api/audit`: the audit log searched by agent, task, tool, decision, type and
 * time; pages forward with `after` (the `next_after` of the last page).
 */
export const consoleAuditQuerySchema = z
  .strictObject({
    agent_id: z.string().min(1).max(256).optional(),
    task_id: z.string().min(1).max(256).optional(),
    /** a tool name, or a prefix ending in `*` (`payments.*`) */
    tool: z.string().min(1).max(256).regex(/^[^*]*\*?$/, '`tool` is a name or a prefix ending in `*`').optional(),
    decision: z.enum(['allow', 'deny', 'approval_required']).optional(),
    type: z.string().min(1).max(64).optional(),
    since: time.optional(),
    until: time.optional(),
    after: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(500).optional(),
  })
  .refine((q) => !(q.since && q.until) || Date.parse(q.since) <= Date.parse(q.until), { message: '`since` is after `until`' })
  .refine((q) => !(q.decision && q.type && q.type !== 'decision'), { message: '`decision` filters `decision` entries: leave `type` out or make it `decision`' });

/** `POST /console/api/policies/validate`: a policy text checked as `PUT /v1/policies` would, nothing stored. */
export const consoleValidatePolicySchema = z.strictObject({ policies: z.string().min(1).max(1_000_000) });
