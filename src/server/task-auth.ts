import type { IncomingMessage } from 'node:http';
import { UnauthorizedError } from '../core/errors.js';
import { verifyDpopProof } from '../tokens/dpop.js';
import type { Writ } from '../service/writ.js';
import { bearer } from './http-io.js';

/** `Authorization: DPoP <token>` (RFC 9449 §7.1); the scheme is case-insensitive (RFC 9110 §11.1). */
function dpopToken(req: IncomingMessage): string | null {
  const m = /^DPoP +([\x21-\x7e]+)\s*$/i.exec(req.headers.authorization ?? '');
  return m ? m[1]! : null;
}

/**
 * The request's task token, authenticated: a bearer token as before, or a DPoP-bound one
 * with its proof checked against this very request (method, Writ's URL for the path,
 * the token's hash, freshness, replay, the server nonce when configured). A bound token
 * sent as `Bearer`, or an unbound one as `DPoP`, is refused by `Writ.authenticateTask`.
 */
export async function authenticateTaskRequest(writ: Writ, req: IncomingMessage) {
  const token = dpopToken(req);
  if (token === null) return writ.tokens.authenticateTask(bearer(req));
  return writ.tokens.authenticateTask(token, { jkt: await proofKey(writ, req, token) });
}

/**
 * The task token alone, with no task state (for calls allowed after a task ends, such
 * as reporting an outcome), under the same DPoP rule as `authenticateTaskRequest`.
 */
export async function verifyTaskRequest(writ: Writ, req: IncomingMessage) {
  const token = dpopToken(req);
  // through the token cache the decisions use: an outcome comes with every allowed action
  const principal = await writ.tokens.taskPrincipal(token ?? bearer(req) ?? '');
  const jkt = token === null ? null : await proofKey(writ, req, token);
  if ((principal.jkt ?? null) !== jkt) {
    throw new UnauthorizedError(
      principal.jkt === undefined ? 'this task token is not bound to a key: send it as `Authorization: Bearer`' : 'this task token is bound to a key (DPoP): send it as `Authorization: DPoP` with a proof by that key',
      'invalid_token',
    );
  }
  return principal;
}

async function proofKey(writ: Writ, req: IncomingMessage, token: string): Promise<string> {
  const path = new URL(req.url ?? '/', 'http://writ.invalid').pathname;
  return verifyDpopProof(req.headers.dpop, {
    method: req.method ?? '',
    url: `${writ.config.issuer}${path}`,
    accessToken: token,
    nowMs: writ.clock.now(),
    replay: writ.tokens.dpopReplay,
    nonces: writ.tokens.dpopNonces,
  });
}
