import { InvalidRequestError } from '../core/errors.js';
import type { Jwk } from '../core/types.js';

/**
 * Agent keys accepted at registration: Ed25519 (OKP) and P-256 (EC) public keys.
 * Anything else (RSA, symmetric `oct`, a JWK carrying private material) is refused:
 * a key that could verify an HS256 assertion must never be registered.
 */
export function checkAgentJwks(jwks: { keys: Jwk[] }): { keys: Jwk[] } {
  if (jwks.keys.length === 0) throw new InvalidRequestError('`jwks.keys` must hold at least one key', undefined, 'invalid_jwks');
  if (jwks.keys.length > 10) throw new InvalidRequestError('`jwks.keys` holds at most 10 keys', undefined, 'invalid_jwks');
  const keys = jwks.keys.map((k, i) => {
    if ('d' in k || 'k' in k || 'p' in k) throw new InvalidRequestError(`key ${i} carries private or symmetric key material`, undefined, 'invalid_jwks');
    if (k.kty === 'OKP' && k.crv === 'Ed25519' && typeof k.x === 'string' && k.x.length === 43) {
      if (k.alg !== undefined && k.alg !== 'EdDSA' && k.alg !== 'Ed25519') throw badAlg(i, k.alg);
      return { kty: 'OKP', crv: 'Ed25519', x: k.x, ...(k.kid ? { kid: k.kid } : {}), ...(k.alg ? { alg: k.alg } : {}) } as Jwk;
    }
    if (k.kty === 'EC' && k.crv === 'P-256' && typeof k.x === 'string' && typeof k.y === 'string' && k.x.length === 43 && k.y.length === 43) {
      if (k.alg !== undefined && k.alg !== 'ES256') throw badAlg(i, k.alg);
      return { kty: 'EC', crv: 'P-256', x: k.x, y: k.y, ...(k.kid ? { kid: k.kid } : {}), ...(k.alg ? { alg: k.alg } : {}) } as Jwk;
    }
    throw new InvalidRequestError(`key ${i} is not an Ed25519 (OKP) or P-256 (EC) public key`, undefined, 'invalid_jwks');
  });
  return { keys };
}

function badAlg(i: number, alg: unknown): InvalidRequestError {
  return new InvalidRequestError(`key ${i} has \`alg\` \`${String(alg)}\`, which does not fit its key type`, undefined, 'invalid_jwks');
}
