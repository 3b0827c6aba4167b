import { z } from 'zod';

/** Approvals, break-glass and presence (README "Approvals, break-glass and presence"). */

const pattern = z.string().min(1).max(256).regex(/^[\x21-\x7e]+$/, 'patterns are printable ASCII without spaces');

export const approvalListQuerySchema = z.strictObject({
  status: z.enum(['pending', 'approved', 'denied', 'expired', 'cancelled', 'used']).optional(),
  task_id: z.string().max(256).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

export const approvalReadQuerySchema = z.strictObject({
  wait: z.coerce.number().int().min(0).max(30).optional(),
});

export const reviewSchema = z.strictObject({ comment: z.string().max(4096).optional() });

export const startBreakGlassSchema = z
  .strictObject({
    agent_id: z.string().min(1).max(256).optional(),
    task_id: z.string().min(1).max(256).optional(),
    justification: z.string().min(20, '`justification` must be 20 to 4096 characters').max(4096, '`justification` must be 20 to 4096 characters'),
    scope: z.strictObject({ tools: z.array(pattern).min(1).max(100) }),
    duration_seconds: z.number().int().min(1),
  })
  .refine((b) => (b.agent_id === undefined) !== (b.task_id === undefined), { message: 'give exactly one of `agent_id` and `task_id`' });

export const breakGlassListQuerySchema = z.strictObject({
  state: z.enum(['active', 'pending', 'ended', 'unreviewed']).optional(),
  agent_id: z.string().max(256).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

export const endBreakGlassSchema = z.strictObject({ reason: z.string().max(1000).optional() });

export const reviewBreakGlassSchema = z.strictObject({ notes: z.string().min(1).max(4096) });

/** `ttl_seconds` (default and most: `presenceMaxTtlSeconds`, 300); 0 says "stepping away now" */
export const presenceSchema = z.strictObject({ ttl_seconds: z.number().int().min(0).max(86_400).optional() });
