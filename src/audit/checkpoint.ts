import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';

/** JOSE `typ` of a signed audit checkpoint (RFC 8725 §3.11 explicit typing). */
export const CHECKPOINT_TYP = 'writ-checkpoint+jwt';

export interface Checkpoint {
  seq: number;
  hash: string;
  /** seconds since the epoch at which Writ signed it */
  iat: number;
}

/** The claims of a checkpoint: Writ's signed statement that entry `seq` of its chain has hash `hash`. */
export function checkpointClaims(issuer: string, head: { seq: number; hash: string }, nowMs: number): Record<string, unknown> {
  return { iss: issuer, sub: 'audit-chain', iat: Math.floor(nowMs / 1000), seq: head.seq, hash: head.hash };
}

/**
 * Verifies a checkpoint JWS with Writ's public keys (jose, EdDSA only). An
 * investigator keeps checkpoints outside Writ's database: someone who can rewrite
 * the database (and so recompute every hash and the head) cannot make the chain
 * agree with a checkpoint taken before the rewrite.
 */
export async function verifyCheckpoint(token: string, jwks: JSONWebKeySet, issuer?: string): Promise<Checkpoint> {
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
    algorithms: ['EdDSA'],
    typ: CHECKPOINT_TYP,
    ...(issuer ? { issuer } : {}),
    requiredClaims: ['iat'],
  });
  return parseClaims(payload);
}

/** Reads a checkpoint without verifying its signature (when only its numbers are trusted). */
export function readCheckpoint(token: string): Checkpoint {
  return parseClaims(decodeJwt(token));
}

function parseClaims(p: Record<string, unknown>): Checkpoint {
  if (!Number.isSafeInteger(p.seq) || (p.seq as number) < 1 || typeof p.hash !== 'string' || !/^[0-9a-f]{64}$/.test(p.hash)) {
    throw new TypeError('the checkpoint has no valid `seq` and `hash`');
  }
  return { seq: p.seq as number, hash: p.hash, iat: Number(p.iat) };
}
