import { createHash, createHmac, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify } from 'jose';
import { UnauthorizedError, WritError } from '../core/errors.js';
import type { ErrorCode } from '../core/error-codes.js';

/**
 * DPoP (RFC 9449): a task token bound to a key the agent holds. The token carries
 * `cnf.jkt` (the key's RFC 7638 thumbprint, §6.1); every request that presents it sends
 * `Authorization: DPoP <token>` and a fresh proof in the `DPoP` header (§7.1), checked
 * per §4.3. A stolen task token without the private key is useless.
 */

/** §4.3 check 11: how far a proof's `iat` may be from now, either way. */
export const DPOP_IAT_WINDOW_SECONDS = 60;
const DPOP_ALGORITHMS = ['EdDSA', 'Ed25519', 'ES256'];

/** 401 `invalid_dpop_proof` (§7.1: error `invalid_dpop_proof`), or 400 at the token endpoint (§5). */
export class DpopError extends WritError {
  constructor(message: string, status = 401, code: ErrorCode = 'invalid_dpop_proof') {
    super(code, message, status);
  }
}

/** 401 `use_dpop_nonce` (§8, §9): the proof must carry the nonce in the `DPoP-Nonce` header. */
export class DpopNonceError extends WritError {
  readonly nonce: string;
  constructor(message: string, nonce: string, status = 401) {
    super('use_dpop_nonce', message, status);
    this.nonce = nonce;
  }
}

/** `ath` (§4.2): base64url of the SHA-256 of the access token's ASCII. */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/**
 * Server nonces (§8): an HMAC of the current time slot, so any instance sharing the
 * secret can check one without storing it; the current and the previous slot are taken.
 */
export class DpopNonces {
  private readonly secret: Buffer;
  constructor(
    private readonly slotSeconds = 300,
    secret?: Buffer,
  ) {
    this.secret = secret ?? randomBytes(32);
  }
  private at(slot: number): string {
    return createHmac('sha256', this.secret).update(`dpop-nonce:${slot}`).digest('base64url');
  }
  current(nowMs: number): string {
    return this.at(Math.floor(nowMs / 1000 / this.slotSeconds));
  }
  valid(nonce: string, nowMs: number): boolean {
    const slot = Math.floor(nowMs / 1000 / this.slotSeconds);
    return nonce === this.at(slot) || nonce === this.at(slot - 1);
  }
}

/**
 * Proof `jti`s seen within the `iat` window (§11.1: replay). Per instance, in memory: a
 * proof captured and replayed at another instance within the window is not caught there
 * (README, DPoP); server nonces shorten what a captured proof is good for.
 */
export class DpopReplayCache {
  private readonly seen = new Map<string, number>();
  constructor(private readonly max = 100_000) {}
  /** true the first time (jkt, jti) is seen before `untilMs`; false on a replay */
  useOnce(key: string, untilMs: number, nowMs: number): boolean {
    if (this.seen.size >= this.max) {
      for (const [k, exp] of this.seen) if (exp <= nowMs) this.seen.delete(k);
      // still full of live entries: refuse rather than forget one (fail closed)
      if (this.seen.size >= this.max) return false;
    }
    const exp = this.seen.get(key);
    if (exp !== undefined && exp > nowMs) return false;
    this.seen.set(key, untilMs);
    return true;
  }
}

export interface DpopExpectation {
  method: string;
  /** the request's URL as the client addressed it (Writ's issuer + path) */
  url: string;
  /** the access token the proof must be bound to (`ath`); absent at the token endpoint */
  accessToken?: string;
  nowMs: number;
  replay: DpopReplayCache;
  nonces?: DpopNonces;
  /** 400 at the token endpoint (§5), 401 at resources (§7.1) */
  status?: number;
}

/** `htu` compares without query and fragment (§4.3 check 9), scheme and host as URL parsing normalizes them. */
function htuForm(u: string): string | null {
  try {
    const url = new URL(u);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return null;
  }
}

/** Checks a proof (§4.3) and answers its key's thumbprint (`jkt`). */
export async function verifyDpopProof(proof: string | string[] | undefined, expect: DpopExpectation): Promise<string> {
  const status = expect.status ?? 401;
  const fail = (m: string) => new DpopError(m, status);
  // check 1: exactly one DPoP header field (Node joins repeated ones with `, `)
  if (proof === undefined || proof === '') throw fail('a `DPoP` proof header is required');
  if (Array.isArray(proof) || proof.includes(',')) throw fail('exactly one `DPoP` proof is allowed');
  if (proof.length > 8192 || !/^[\w-]+\.[\w-]+\.[\w-]+$/.test(proof)) throw fail('the `DPoP` proof is not a compact JWS');
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(proof);
  } catch {
    throw fail('the `DPoP` proof is not a JWT');
  }
  // checks 4-6: typ, an asymmetric algorithm we support, a public key (never a private one)
  if (header.typ !== 'dpop+jwt') throw fail('the `DPoP` proof must have `typ` `dpop+jwt`');
  if (typeof header.alg !== 'string' || !DPOP_ALGORITHMS.includes(header.alg)) throw fail(`the \`DPoP\` proof's \`alg\` must be one of ${DPOP_ALGORITHMS.join(', ')}`);
  const jwk = header.jwk as Record<string, unknown> | undefined;
  if (!jwk || typeof jwk !== 'object') throw fail('the `DPoP` proof must carry its public key in `jwk`');
  if ('d' in jwk || 'p' in jwk || 'k' in jwk) throw fail('the `DPoP` proof\'s `jwk` must be a public key');
  let payload: Record<string, unknown>;
  try {
    // check 7: the signature, with the key in the header
    payload = (await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: DPOP_ALGORITHMS, currentDate: new Date(expect.nowMs) })).payload;
  } catch {
    throw fail('the `DPoP` proof\'s signature does not verify with its `jwk`');
  }
  // check 3: the required claims
  const { jti, htm, htu, iat, ath, nonce } = payload;
  if (typeof jti !== 'string' || jti.length < 8 || jti.length > 256) throw fail('the `DPoP` proof needs a `jti` of 8 to 256 characters');
  if (typeof htm !== 'string' || typeof htu !== 'string' || typeof iat !== 'number') throw fail('the `DPoP` proof needs `htm`, `htu` and `iat`');
  // check 8: the method, exactly (case matters: RFC 9110 §9.1)
  if (htm !== expect.method) throw fail(`the \`DPoP\` proof is for \`${htm.slice(0, 16)}\`, not \`${expect.method}\``);
  // check 9: the URL, without query and fragment
  const want = htuForm(expect.url);
  if (want === null || htuForm(htu) !== want) throw fail(`the \`DPoP\` proof's \`htu\` is not \`${want}\``);
  // check 11: a fresh proof
  const now = expect.nowMs / 1000;
  if (!Number.isFinite(iat) || Math.abs(now - iat) > DPOP_IAT_WINDOW_SECONDS) throw fail(`the \`DPoP\` proof's \`iat\` is more than ${DPOP_IAT_WINDOW_SECONDS} s from now`);
  // check 12: bound to the access token it comes with
  if (expect.accessToken !== undefined) {
    if (typeof ath !== 'string') throw fail('the `DPoP` proof needs `ath`, the hash of the access token');
    if (ath !== accessTokenHash(expect.accessToken)) throw fail('the `DPoP` proof\'s `ath` is not the hash of this access token');
  }
  // check 10: the server's nonce, when it asks for one
  if (expect.nonces) {
    if (typeof nonce !== 'string' || !expect.nonces.valid(nonce, expect.nowMs)) {
      throw new DpopNonceError('the `DPoP` proof must carry the server\'s nonce (see the `DPoP-Nonce` header)', expect.nonces.current(expect.nowMs), status);
    }
  }
  const jkt = await calculateJwkThumbprint(jwk as never, 'sha256');
  // replay: after every other check, so a bad proof does not take a jti's place
  if (!expect.replay.useOnce(`${jkt}:${jti}`, (iat + DPOP_IAT_WINDOW_SECONDS + 1) * 1000, expect.nowMs)) throw fail('the `DPoP` proof was used before');
  return jkt;
}

/** A DPoP-bound token presented without a proof, or a proof for an unbound token (§7.1). */
export function dpopSchemeError(message: string): UnauthorizedError {
  return new UnauthorizedError(message, 'invalid_token');
}
