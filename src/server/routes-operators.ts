import type { Writ } from '../service/writ.js';
import { bearer, readJson, sendJson } from './http-io.js';
import type { AddRoute } from './routes-delegation.js';
import { noFieldsSchema, operatorView, parse } from '../wire/index.js';


/**
 * Operator lifecycle and the audit checkpoint key:
 * - `GET /v1/operators` (admin, auditor): every operator with its token's expiry, never a token or hash;
 * - `POST /v1/operators/{id}/disable` (admin): the token stops working at once; refused
 *   (409 `last_admin`) for the last enabled admin whose token has not expired;
 * - `POST /v1/operators/{id}/rotate` (admin): a new token, shown once, with a fresh expiry;
 *   the old one stops working in the same transaction;
 * - `GET /.well-known/writ-audit-key` (public): the key set checkpoints verify with, and
 *   only that: it is never in the token JWKS, and no token key is in it.
 * (`POST /v1/operators` is in http-server.ts.)
 */
export function registerOperatorRoutes(writ: Writ, route: AddRoute): void {
  const operator = (req: Parameters<Parameters<AddRoute>[2]>[0]['req']) => writ.identity.authenticateOperator(bearer(req));
  route('GET', '/v1/operators', async ({ req, res }) => {
    const op = await operator(req);
    const now = writ.clock.now();
    sendJson(res, 200, { operators: (await writ.identity.listOperators(op)).map((o) => operatorView(o, now)) });
  });
  route('POST', '/v1/operators/{id}/disable', async ({ req, res, params }) => {
    const op = await operator(req);
    parse(noFieldsSchema, await readJson(req, true));
    sendJson(res, 200, operatorView(await writ.identity.disableOperator(op, params[0]!), writ.clock.now()));
  });
  route('POST', '/v1/operators/{id}/rotate', async ({ req, res, params }) => {
    const op = await operator(req);
    parse(noFieldsSchema, await readJson(req, true));
    sendJson(res, 200, await writ.identity.rotateOperatorToken(op, params[0]!));
  });
  route('GET', '/.well-known/writ-audit-key', async ({ res }) => {
    sendJson(res, 200, writ.audit.checkpointKey.jwks(), { 'cache-control': 'public, max-age=300' });
  });
}
