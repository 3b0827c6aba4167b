import type { Writ } from '../service/writ.js';
import { bearer, readJson, sendJson } from './http-io.js';
import type { AddRoute } from './routes-delegation.js';
import { parse, promoteShadowSchema, shadowReportQuerySchema } from '../wire/index.js';

/**
 * The staged rollout's routes (src/service/policy-shadow.ts), registered before
 * `GET /v1/policies/{version}` so `shadow` is not read as a version. Setting the
 * candidate is `PUT /v1/policies?mode=shadow` (http-server.ts). `GET` is for admins and
 * auditors; promote and drop for admins. `If-Match` names the live version (promote) or
 * the candidate's (drop); `parseIfMatch` reads it as for `PUT /v1/policies`.
 */
export function registerPolicyShadowRoutes(writ: Writ, route: AddRoute, parseIfMatch: (h: string | string[] | undefined) => string | undefined): void {
  const operator = (req: Parameters<Parameters<AddRoute>[2]>[0]['req']) => writ.identity.authenticateOperator(bearer(req));
  route('GET', '/v1/policies/shadow', async ({ req, res, url }) => {
    const op = await operator(req);
    const q = parse(shadowReportQuerySchema, Object.fromEntries(url.searchParams));
    const r = await writ.policy.shadow.report(op, q);
    sendJson(res, 200, r, { etag: `"${r.candidate.version}"` });
  });
  route('POST', '/v1/policies/shadow/promote', async ({ req, res }) => {
    const op = await operator(req);
    const ifMatch = parseIfMatch(req.headers['if-match']);
    const body = parse(promoteShadowSchema, await readJson(req, true));
    const r = await writ.policy.shadow.promote(op, { ...(ifMatch !== undefined ? { ifMatch } : {}), ...(body.version !== undefined ? { version: body.version } : {}) });
    sendJson(res, 200, r, { etag: `"${r.version}"` });
  });
  route('DELETE', '/v1/policies/shadow', async ({ req, res }) => {
    const op = await operator(req);
    const ifMatch = parseIfMatch(req.headers['if-match']);
    await readJson(req, true);
    sendJson(res, 200, await writ.policy.shadow.drop(op, ifMatch !== undefined ? { ifMatch } : {}));
  });
}
