import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { loadPrivateKey } from './agent-key.js';
import { CliError, request } from './client.js';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** How long a client assertion lives: Writ accepts at most 5 minutes, and each is single-use. */
const ASSERTION_TTL_SECONDS = 60;

/**
 * An RFC 7523 §2.2 client assertion for `private_key_jwt` (OpenID Connect Core §9):
 * iss = sub = the agent, aud = the server's issuer from its RFC 8414 metadata, a unique
 * `jti`, one minute of life, signed with the agent's private JWK from `keyPath`.
 */
export async function signClientAssertion(base: string, agentId: string, keyPath: string): Promise<{ assertion: string; audience: string; expiresIn: number }> {
  const key = await loadPrivateKey(keyPath);
  const meta = await request(base, 'GET', '/.well-known/oauth-authorization-server');
  if (typeof meta?.issuer !== 'string') throw new CliError('bad_response', 'the server metadata names no `issuer`');
  const iat = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({ jti: randomBytes(16).toString('base64url') })
    .setProtectedHeader({ alg: key.alg, kid: key.kid })
    .setIssuer(agentId)
    .setSubject(agentId)
    .setAudience(meta.issuer)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ASSERTION_TTL_SECONDS)
    .sign(key.key);
  return { assertion, audience: meta.issuer, expiresIn: ASSERTION_TTL_SECONDS };
}
