import { createHash, sign as edSign, type KeyObject } from 'node:crypto';
import type { Jwk } from './types.js';

/**
 * Signs a compact JWS (RFC 7515 §7.1) with an Ed25519 key through node:crypto directly
 * (header `alg: EdDSA`, explicit `typ` per RFC 8725 §3.11, and `kid`). Verification
 * always goes through jose.
 */
export function signCompactJws(key: KeyObject, kid: string, typ: string, claims: Record<string, unknown>): string {
  return prepareCompactJws(key, kid, typ, claims)();
}

/**
 * `signCompactJws` in two steps: the header and payload are serialized now (what can
 * fail on the way: claims JSON cannot carry), the Ed25519 signature when the returned
 * function is called (a pure computation over bytes already fixed, with a loaded key).
 */
export function prepareCompactJws(key: KeyObject, kid: string, typ: string, claims: Record<string, unknown>): () => string {
  const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ, kid })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const input = `${header}.${payload}`;
  return () => `${input}.${edSign(null, Buffer.from(input), key).toString('base64url')}`;
}

/** RFC 7638 thumbprint of an OKP public JWK: base64url SHA-256 of `{"crv","kty","x"}` in that order. */
export function okpThumbprint(pub: Jwk): string {
  return createHash('sha256').update(JSON.stringify({ crv: pub.crv, kty: pub.kty, x: pub.x })).digest('base64url');
}
