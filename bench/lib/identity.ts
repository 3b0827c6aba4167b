import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';

/** The issuer every benchmark instance uses, so that two instances accept each other's tokens. */
export const BENCH_ISSUER = 'http://writ-bench.invalid';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface BenchAgentKey {
  privateKey: KeyObject;
  publicJwk: Record<string, unknown>;
}

export function makeAgentKey(): BenchAgentKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicJwk: { ...(publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: 'k1' } };
}

/** An RFC 7523 client assertion for `agentId`, audience the bench issuer. */
export async function clientAssertion(agentId: string, key: BenchAgentKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ jti: randomBytes(12).toString('base64url') })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
    .setIssuer(agentId)
    .setSubject(agentId)
    .setAudience(BENCH_ISSUER)
    .setIssuedAt(now)
    .setExpirationTime(now + 120)
    .sign(key.privateKey);
}
