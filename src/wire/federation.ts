import { z } from 'zod';
import { agentIdSchema } from './requests.js';

/** Trusted issuers (federated workload identity, RFC 8693). */

const claimValue = z.union([z.string().min(1).max(1024), z.number(), z.boolean()]);

export const registerIssuerSchema = z.strictObject({
  issuer: z.string().min(1).max(1024),
  kind: z.enum(['oidc', 'spiffe']).optional(),
  audience: z.string().min(1).max(1024),
  jwks: z.strictObject({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(20) }).optional(),
  jwks_uri: z.string().min(1).max(2048).optional(),
  rules: z
    .array(
      z.strictObject({
        claims: z.record(z.string().min(1).max(256), claimValue),
        agent_id: agentIdSchema,
      }),
    )
    .min(1)
    .max(100),
});

/** `DELETE /v1/issuers/{id}?keep_issued=true` leaves the task tokens it issued working until they expire. */
export const removeIssuerQuerySchema = z.strictObject({
  keep_issued: z.enum(['true', 'false']).optional(),
});
