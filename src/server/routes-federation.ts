import { issuerView } from '../identity/issuers.js';
import type { Writ } from '../service/writ.js';
import { bearer, readJson, sendJson } from './http-io.js';
import type { AddRoute } from './routes-delegation.js';
import { parse, registerIssuerSchema, removeIssuerQuerySchema } from '../wire/index.js';

/**
 * Trusted issuers (operators): `POST /v1/issuers` (admin), `GET /v1/issuers`,
 * `GET /v1/issuers/{id}` (admin, auditor), `DELETE /v1/issuers/{id}` (admin: disables it,
 * the record stays for the audit trail, and ends the task tokens obtained through it
 * unless `?keep_issued=true`; answers the record with `tokens_revoked`). The exchange itself is `POST /oauth/token`
 * with the RFC 8693 grant (see src/identity/token-exchange.ts).
 */
export function registerFederationRoutes(writ: Writ, route: AddRoute): void {
  const operator = (req: Parameters<Parameters<AddRoute>[2]>[0]['req']) => writ.identity.authenticateOperator(bearer(req));
  route('POST', '/v1/issuers', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(registerIssuerSchema, await readJson(req));
    sendJson(res, 201, issuerView(await writ.identity.federation.register(op, body)));
  });
  route('GET', '/v1/issuers', async ({ req, res }) => {
    const op = await operator(req);
    sendJson(res, 200, { issuers: (await writ.identity.federation.list(op)).map(issuerView) });
  });
  route('GET', '/v1/issuers/{id}', async ({ req, res, params }) => {
    const op = await operator(req);
    sendJson(res, 200, issuerView(await writ.identity.federation.get(op, params[0]!)));
  });
  route('DELETE', '/v1/issuers/{id}', async ({ req, res, params, url }) => {
    const op = await operator(req);
    const q = parse(removeIssuerQuerySchema, Object.fromEntries(url.searchParams));
    await readJson(req, true);
    const r = await writ.identity.federation.disable(op, params[0]!, { keepIssued: q.keep_issued === 'true' });
    sendJson(res, 200, { ...issuerView(r.issuer), keep_issued: q.keep_issued === 'true', tokens_revoked: r.revokedTokens });
  });
}
