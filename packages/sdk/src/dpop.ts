import { createHash, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';

/**
 * DPoP (RFC 9449) for the agent's side: a key the agent holds, a fresh proof for every
 * request (§4.2), and one retry when the server asks for its nonce (§8 at the
 * authorization server, §9 at a resource server). A task token bound to the key
 * (`cnf.jkt`, `token_type: DPoP`) is useless to anyone who copies it without the key.
 */

export type DpopAlgorithm = 'EdDSA' | 'ES256';

export interface DpopProofInput {
  /** the request's method (`htm`), exactly as sent */
  method: string;
  /** the request's URL (`htu`); query and fragment are left out (§4.2) */
  url: string;
  /** the access token sent with the request: its hash goes in `ath` (§4.2) */
  accessToken?: string;
  /** the server's nonce (`DPoP-Nonce`), when it asked for one (§8) */
  nonce?: string;
}

/** A key pair for DPoP proofs. The private key never leaves this object. */
export class DpopKey {
  private constructor(
    private readonly key: CryptoKey,
    /** the public JWK, as it goes in every proof's header */
    readonly publicJwk: JWK,
    readonly alg: DpopAlgorithm,
    /** the RFC 7638 thumbprint (SHA-256): a bound token's `cnf.jkt` */
    readonly jkt: string,
  ) {}

  /** A new key pair, in memory only (Ed25519 by default). */
  static async generate(alg: DpopAlgorithm = 'EdDSA'): Promise<DpopKey> {
    const { privateKey, publicKey } = await generateKeyPair(alg === 'ES256' ? 'ES256' : 'Ed25519');
    const pub = await exportJWK(publicKey);
    return new DpopKey(privateKey, publicOf(pub), alg, await calculateJwkThumbprint(pub, 'sha256'));
  }

  /** From a private JWK (Ed25519 `OKP` or P-256 `EC`), as `writ agent keygen` writes it. */
  static async fromJwk(jwk: JWK): Promise<DpopKey> {
    if (!jwk || typeof jwk !== 'object' || typeof jwk.d !== 'string') throw new TypeError('a DPoP key must be a private JWK (with `d`)');
    const alg: DpopAlgorithm | null = jwk.kty === 'OKP' && jwk.crv === 'Ed25519' ? 'EdDSA' : jwk.kty === 'EC' && jwk.crv === 'P-256' ? 'ES256' : null;
    if (!alg) throw new TypeError('a DPoP key must be Ed25519 (OKP) or P-256 (EC)');
    const pub = publicOf(jwk);
    const key = (await importJWK({ ...jwk, alg: undefined, key_ops: undefined, ext: undefined, use: undefined }, alg)) as CryptoKey;
    return new DpopKey(key, pub, alg, await calculateJwkThumbprint(pub, 'sha256'));
  }

  /** A proof for one request (§4.2): unique `jti`, `htm`, `htu`, `iat` now, and `ath`/`nonce` when given. */
  proof(input: DpopProofInput): Promise<string> {
    const claims: Record<string, unknown> = { jti: randomBytes(16).toString('base64url'), htm: input.method, htu: htuOf(input.url), iat: Math.floor(Date.now() / 1000) };
    if (input.accessToken !== undefined) claims.ath = createHash('sha256').update(input.accessToken, 'ascii').digest('base64url');
    if (input.nonce !== undefined) claims.nonce = input.nonce;
    return new SignJWT(claims).setProtectedHeader({ alg: this.alg, typ: 'dpop+jwt', jwk: this.publicJwk }).sign(this.key);
  }
}

/** The members of the public key only (RFC 7638 §3.2 takes these for the thumbprint too). */
function publicOf(jwk: JWK): JWK {
  return jwk.kty === 'EC' ? { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
}

/** `htu` without query and fragment (RFC 9449 §4.2). */
function htuOf(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}

/** A DPoP proof for one request by `key` (the same as `key.proof(input)`). */
export function dpopProof(key: DpopKey, input: DpopProofInput): Promise<string> {
  return key.proof(input);
}

/** What `sendWithDpop` needs of an answer: its status and headers (a fetch `Response` fits). */
export interface DpopResponse {
  status: number;
  headers: { get(name: string): string | null };
}

/**
 * The last nonce each server gave (`DPoP-Nonce`, §8.2: any answer may carry a fresh
 * one), by origin. Share one between the calls to the same servers.
 */
export class DpopNonces {
  private readonly byOrigin = new Map<string, string>();
  get(url: string): string | undefined {
    return this.byOrigin.get(new URL(url).origin);
  }
  set(url: string, nonce: string): void {
    if (this.byOrigin.size > 1000) this.byOrigin.clear();
    this.byOrigin.set(new URL(url).origin, nonce);
  }
}

/**
 * A nonce challenge (§8, §9): a `DPoP-Nonce` header on a 401 whose `WWW-Authenticate`
 * names `use_dpop_nonce` (a resource server), or on a 400 (the token endpoint, whose body
 * says `use_dpop_nonce`).
 */
function nonceChallenge(r: DpopResponse): string | null {
  const nonce = r.headers.get('dpop-nonce');
  if (!nonce) return null;
  if (r.status === 400) return nonce;
  if (r.status === 401 && /use_dpop_nonce/.test(r.headers.get('www-authenticate') ?? '')) return nonce;
  return null;
}

/**
 * Sends one request with a fresh proof (`send` puts it in the `DPoP` header); when the
 * server answers with a nonce challenge, sends it once more with a new proof carrying
 * that nonce. Remembers the nonces in `nonces`, so later calls carry them from the start.
 */
export async function sendWithDpop<R extends DpopResponse>(key: DpopKey, input: Omit<DpopProofInput, 'nonce'>, send: (proof: string) => Promise<R>, nonces: DpopNonces = new DpopNonces()): Promise<R> {
  const sent = nonces.get(input.url);
  const first = await send(await key.proof({ ...input, nonce: sent }));
  const offered = first.headers.get('dpop-nonce');
  if (offered) nonces.set(input.url, offered);
  const challenge = nonceChallenge(first);
  if (challenge === null || challenge === sent) return first;
  const second = await send(await key.proof({ ...input, nonce: challenge }));
  const next = second.headers.get('dpop-nonce');
  if (next) nonces.set(input.url, next);
  return second;
}
