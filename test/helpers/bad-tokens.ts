import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

/** Hostile JWTs for negative tests: every one of them must be refused. */

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

export function standardClaims(agentId: string, audience: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iss: agentId, sub: agentId, aud: audience, iat: now, exp: now + 60, jti: randomBytes(12).toString('base64url'), ...over };
}

/** An unsecured JWS (RFC 7515 Appendix A.5): `alg: none`, empty signature. */
export function unsignedJwt(claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  return `${b64({ alg: 'none', typ: 'JWT', ...header })}.${b64(claims)}.`;
}

/**
 * The classic key-confusion attack: HS256 with the agent's *public* key used as the
 * HMAC secret. `form` picks which bytes: the raw key (JWK `x` decoded), the `x`
 * string itself, or the whole public JWK as JSON text.
 */
export async function hmacWithPublicKey(claims: Record<string, unknown>, publicJwk: JWK, form: 'raw' | 'x' | 'jwk-json'): Promise<string> {
  const secret =
    form === 'raw'
      ? new Uint8Array(Buffer.from(publicJwk.x!, 'base64url'))
      : form === 'x'
        ? new TextEncoder().encode(publicJwk.x!)
        : new TextEncoder().encode(JSON.stringify(publicJwk));
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: publicJwk.kid ?? 'k1' }).sign(secret);
}

/** A properly signed JWT under a key the verifier does not trust, with any header. */
export async function signWith(key: CryptoKey, claims: Record<string, unknown>, header: Record<string, unknown> & { alg: string }): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header as never).sign(key);
}

export async function freshEd25519(): Promise<{ privateKey: CryptoKey; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
  return { privateKey, publicJwk: await exportJWK(publicKey) };
}

/** Changes one character in the middle of the signature (the last one may only touch padding bits). */
export function flipSignature(jwt: string): string {
  const [h, p, s] = jwt.split('.') as [string, string, string];
  const i = Math.floor(s.length / 2);
  const c = s[i] === 'A' ? 'B' : 'A';
  return `${h}.${p}.${s.slice(0, i)}${c}${s.slice(i + 1)}`;
}

/** Changes a claim without re-signing. */
export function tamperPayload(jwt: string, change: Record<string, unknown>): string {
  const [h, p, s] = jwt.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  return `${h}.${b64({ ...claims, ...change })}.${s}`;
}

export function decodePart(jwt: string, part: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[part]!, 'base64url').toString('utf8'));
}

export const JWT_PATTERN = /eyJ[\w-]+\.[\w-]+\./;
