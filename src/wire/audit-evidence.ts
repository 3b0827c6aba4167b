import { z } from 'zod';

/** Queries of the audit evidence API (RFC 9162 proofs, checkpoints, export, trace). */

const sizeParam = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
export const inclusionQuerySchema = z.strictObject({ index: sizeParam, size: sizeParam.min(1) });
export const consistencyQuerySchema = z.strictObject({ from: sizeParam, to: sizeParam });
export const checkpointsQuerySchema = z.strictObject({ since: sizeParam.optional(), limit: z.coerce.number().int().min(1).max(1000).optional() });
const timeParam = z
  .string()
  .max(64)
  .transform((s, ctx) => {
    const ms = /^\d+$/.test(s) ? Number(s) : Date.parse(s);
    if (!Number.isFinite(ms)) {
      ctx.addIssue({ code: 'custom', message: `\`${s}\` is not a time (ISO 8601 or epoch milliseconds)` });
      return z.NEVER;
    }
    return ms;
  });
export const exportQuerySchema = z.strictObject({ since: timeParam.optional(), until: timeParam.optional(), format: z.enum(['jsonl', 'ocsf']).optional() });
export const traceQuerySchema = z.strictObject({ format: z.enum(['json', 'text']).optional() });
