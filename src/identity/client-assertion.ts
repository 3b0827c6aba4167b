import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWK } from 'jose';
import { OAuthError } from '../core/errors.js';
import type { AgentRecord } from '../core/types.js';

/** RFC 7523 §2.2 client authentication with a JWT bearer assertion (private_key_jwt). */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** `EdDSA`, or its fully-specified name `Ed25519` (RFC 9864), for Ed25519 keys; `ES256` for P-256. */
export const ASSERTION_ALGORITHMS = ['EdDSA', 'Ed25519', 'ES256'];

export const MAX_ASSERTION_LIFETIME_SECONDS = 300;
const CLOCK_SKEW_SECONDS = 5;

export interface VerifiedAssertion {
  agentId: string;
  jti: string;
  exp: number;
}

/** Reads the claimed agent id without trusting it, to find the agent's keys. */
export function peekAssertionSubject(assertion: string): string {
  let header: ReturnType<typeof decodeProtectedHeader>;
  let claims: ReturnType<typeof decodeJwt>;
  try {
    header = decodeProtectedHeader(assertion);
    claims = decodeJwt(assertion);
  } catch {
    throw new OAuthError('invalid_client', 'the client assertion is not a JWT');
  }
  if (typeof header.alg !== 'string' || !ASSERTION_ALGORITHMS.includes(header.alg)) {
    throw new OAuthError('invalid_client', `the client assertion algorithm \`${String(header.alg)}\` is not accepted`);
  }
  if (typeof claims.iss !== 'string' || claims.iss !== claims.sub) {
    throw new OAuthError('invalid_client', 'the client assertion must have `iss` equal to `sub` (the agent id)');
  }
  return claims.iss;
}

/**
 * Verifies the assertion against the agent's registered keys (RFC 7523 §3): the
 * signature, `iss` = `sub` = agent id, `aud` naming this server, `exp` in the
 * future, `iat` not in the future and at most 5 minutes before `exp`, a `jti`.
 * Replay of the `jti` is checked by the caller against the store.
 */
export async function verifyClientAssertion(
  assertion: string,
  agent: AgentRecord,
  opts: { audiences: string[]; now: number },
): Promise<VerifiedAssertion> {
  // jose checks the key type against the algorithm; a registered `alg` of EdDSA must
  // not keep an assertion using the fully-specified `Ed25519` name from matching.
  const keys = agent.jwks.keys.map((k) => {
    if (k.kty === 'OKP') {
      const { alg: _alg, ...rest } = k;
      return rest as JWK;
    }
    return k as JWK;
  });
  let payload;
  try {
    ({ payload } = await jwtVerify(assertion, createLocalJWKSet({ keys }), {
      algorithms: ASSERTION_ALGORITHMS,
      issuer: agent.id,
      subject: agent.id,
      audience: opts.audiences,
      requiredClaims: ['exp', 'iat', 'jti'],
      currentDate: new Date(opts.now),
      clockTolerance: CLOCK_SKEW_SECONDS,
    }));
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new OAuthError('invalid_client', 'the client assertion has expired');
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      throw new OAuthError('invalid_client', `the client assertion's \`${err.claim}\` claim is invalid`);
    }
    if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) {
      throw new OAuthError('invalid_client', 'no registered key of the agent matches the client assertion');
    }
    throw new OAuthError('invalid_client', 'the client assertion does not verify with the agent\'s registered keys');
  }
  const { exp, iat, jti } = payload as { exp: number; iat: number; jti: unknown };
  const nowSeconds = Math.floor(opts.now / 1000);
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw new OAuthError('invalid_client', 'the client assertion needs a `jti`');
  if (iat > nowSeconds + CLOCK_SKEW_SECONDS) throw new OAuthError('invalid_client', 'the client assertion is issued in the future');
  if (exp - iat > MAX_ASSERTION_LIFETIME_SECONDS) {
    throw new OAuthError('invalid_client', `the client assertion lives longer than ${MAX_ASSERTION_LIFETIME_SECONDS} seconds`);
  }
  return { agentId: agent.id, jti, exp };
}
