import { federation } from '../identity/token-exchange.js';
import { issuerView } from '../identity/issuers.js';
import type { Writ } from '../service/writ.js';
import { bearer, readJson, sendJson } from './http-io.js';
import type { AddRoute } from './routes-delegation.js';
import { agentIdSchema, parse } from './schemas.js';
import { z } from 'zod';

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

/**
 * Trusted issuers (operators): `POST /v1/issuers` (admin), `GET /v1/issuers`,
 * `GET /v1/issuers/{id}` (admin, auditor), `DELETE /v1/issuers/{id}` (admin: disables it,
 * the record stays for the audit trail, and ends the task tokens obtained through it
 * unless `?keep_issued=true`; answers the record with `tokens_revoked`). The exchange itself is `POST /oauth/token`
 * with the RFC 8693 grant (see src/identity/token-exchange.ts).
 */
export function registerFederationRoutes(writ: Writ, route: AddRoute): void {
  const operator = (req: Parameters<Parameters<AddRoute>[2]>[0]['req']) => writ.authenticateOperator(bearer(req));
  route('POST', '/v1/issuers', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(registerIssuerSchema, await readJson(req));
    sendJson(res, 201, issuerView(await federation(writ).register(op, body)));
  });
  route('GET', '/v1/issuers', async ({ req, res }) => {
    const op = await operator(req);
    sendJson(res, 200, { issuers: (await federation(writ).list(op)).map(issuerView) });
  });
  route('GET', '/v1/issuers/{id}', async ({ req, res, params }) => {
    const op = await operator(req);
    sendJson(res, 200, issuerView(await federation(writ).get(op, params[0]!)));
  });
  route('DELETE', '/v1/issuers/{id}', async ({ req, res, params, url }) => {
    const op = await operator(req);
    const q = parse(removeIssuerQuerySchema, Object.fromEntries(url.searchParams));
    await readJson(req, true);
    const r = await federation(writ).disable(op, params[0]!, { keepIssued: q.keep_issued === 'true' });
    sendJson(res, 200, { ...issuerView(r.issuer), keep_issued: q.keep_issued === 'true', tokens_revoked: r.revokedTokens });
  });
}
