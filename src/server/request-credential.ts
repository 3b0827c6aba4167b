import type { IncomingMessage } from 'node:http';
import { sha256Hex } from '../core/digest.js';
import { CLIENT_ASSERTION_TYPE, peekAssertionSubject, verifyClientAssertion } from '../identity/client-assertion.js';
import { TOKEN_EXCHANGE_GRANT_TYPE } from '../identity/token-exchange.js';
import type { Writ } from '../service/writ.js';
import { bearer, readForm, readJson } from './http-io.js';

/**
 * Whose valid credential a request carries, as a key for the failure limiter:
 * `operator:<id>`, `agent:<id>` (a task token or a client assertion that verifies),
 * `issuer:<issuer id>:<sub>` (a subject token that verifies), `action:<jti>` (an action
 * token being consumed); null when it carries none that verifies. Nothing is recorded
 * on the way (no audit, no `jti` spent), so asking twice is harmless.
 *
 * Failures of a request with a valid credential count against that credential, every
 * other failure against the client address; and a valid credential is let through an
 * address that is over its limit. So one holder's failures never refuse another's
 * requests, and garbage from an address cannot lock out a good client behind it.
 */
export async function credentialOf(writ: Writ, req: IncomingMessage, path: string): Promise<string | null> {
  try {
    const token = bearer(req);
    if (token) {
      if (/^eyJ[\w-]*\.[\w-]*\.[\w-]*$/.test(token)) {
        const p = await writ.tokens.verifyTaskToken(token).catch(() => null);
        if (p) return `agent:${p.agentId}`;
        // an operator token may be any text, a JWT look-alike too: fall through
      }
      const op = await writ.store.findOperatorByTokenHash(sha256Hex(token));
      return op && !op.disabled ? `operator:${op.id}` : null;
    }
    if (req.method !== 'POST') return null;
    if (path === '/oauth/token') {
      const form = await readForm(req);
      if (form.grant_type === TOKEN_EXCHANGE_GRANT_TYPE && form.subject_token) {
        const who = await writ.identity.federation.verifiedSubject(form.subject_token);
        return who ? `issuer:${who}` : null;
      }
      if (form.client_assertion_type !== CLIENT_ASSERTION_TYPE || !form.client_assertion) return null;
      const agent = await writ.store.getAgent(peekAssertionSubject(form.client_assertion));
      if (!agent) return null;
      const now = writ.clock.now();
      await verifyClientAssertion(form.client_assertion, agent, { audiences: [writ.config.issuer, writ.tokens.tokenEndpoint], now });
      return `agent:${agent.id}`;
    }
    if (path === '/v1/actions/consume') {
      const body = (await readJson(req)) as { action_token?: unknown };
      if (typeof body?.action_token !== 'string') return null;
      const claims = await writ.tokens.verifyActionToken(body.action_token);
      return `action:${claims.jti}`;
    }
    return null;
  } catch {
    return null;
  }
}
