import type { IncomingMessage } from 'node:http';
import { UnauthorizedError } from '../core/errors.js';
import { DpopError, DpopReplayCache, verifyDpopProof } from '../tokens/dpop.js';
import { boundKeyOf } from './authorizer.js';

/**
 * The task token a client presents to the MCP gateway or the HTTP proxy, with DPoP
 * (RFC 9449 §7) checked at this edge: a token bound to a key (`cnf.jkt`) must come as
 * `Authorization: DPoP` with a proof by that key for this very request, checked against
 * the gateway's own URL (`htu`), method, the token's hash (`ath`), freshness and replay.
 * So a bound token copied from an agent is as useless at the gateway as it is at Writ;
 * an unbound one comes as `Authorization: Bearer`, as before.
 */
export class DpopEdge {
  /** proof `jti`s seen here (§11.1), apart from Writ's own */
  private readonly replay = new DpopReplayCache();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The request's task token, or null when it carries none. `url` is the request's URL as
   * the client addressed the gateway (its public URL, without the query).
   * Throws 401 `invalid_token` for the wrong scheme, `invalid_dpop_proof` for a bad proof.
   */
  async token(req: IncomingMessage, url: string): Promise<string | null> {
    const m = /^(Bearer|DPoP) +([\x21-\x7e]+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) return null;
    const token = m[2]!;
    const jkt = boundKeyOf(token);
    if (m[1]!.toLowerCase() === 'bearer') {
      if (jkt !== undefined) throw new UnauthorizedError('this task token is bound to a key (DPoP): send it as `Authorization: DPoP` with a `DPoP` proof by that key', 'invalid_token');
      return token;
    }
    if (jkt === undefined) throw new UnauthorizedError('this task token is not bound to a key: send it as `Authorization: Bearer`', 'invalid_token');
    const proven = await verifyDpopProof(req.headers.dpop, { method: req.method ?? '', url, accessToken: token, nowMs: this.now(), replay: this.replay });
    if (proven !== jkt) throw new DpopError('the `DPoP` proof is signed by another key than the one the task token is bound to');
    return token;
  }
}

/** The `WWW-Authenticate` challenge for a DPoP refusal (§7.1), or null for another error. */
export function dpopChallenge(code: string): string | null {
  return code === 'invalid_dpop_proof' || code === 'use_dpop_nonce' ? `DPoP error="${code}", algs="EdDSA ES256"` : null;
}
