import canonicalize from 'canonicalize';
import { createHash } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { apiErrorOf, WritClient } from './api-client.js';

/** The action token's `typ` (explicit typing, RFC 8725 §3.11). */
export const ACTION_TOKEN_TYPE = 'writ-action+jwt';

export interface ActionClaims {
  iss: string;
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  txn: string;
  decision_id: string;
  tool: string;
  args_digest: string;
  /** the resource and destination that were judged, when the action named them */
  resource?: string;
  destination?: string;
  act?: Record<string, unknown>;
  approval_id?: string;
  /** present only as `true`: the allow relied on a break-glass (src/wire: actionClaimsSchema) */
  break_glass?: true;
}

export type ActionTokenErrorCode =
  | 'invalid_token'
  | 'token_expired'
  | 'wrong_type'
  | 'wrong_audience'
  | 'wrong_issuer'
  | 'wrong_tool'
  | 'arguments_mismatch'
  | 'wrong_resource';

export class ActionTokenError extends Error {
  constructor(
    readonly code: ActionTokenErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ActionTokenError';
  }
}

/** base64url(SHA-256(RFC 8785 canonical JSON)) of the arguments: the token's `args_digest`. */
export function argumentsDigest(args: unknown): string {
  const text = (canonicalize as unknown as (v: unknown) => string | undefined)(args);
  if (text === undefined) throw new TypeError('arguments have no canonical JSON form');
  return createHash('sha256').update(text).digest('base64url');
}

export interface ActionVerifierOptions {
  /** Writ's issuer URL (the `iss` of its tokens) */
  issuer: string;
  /** this tool server's audience; a token for any other audience is refused */
  audience: string;
  /** Writ's JWKS: a URL (fetched and cached by jose) or the key set itself */
  jwks: string | URL | JSONWebKeySet;
  /**
   * seconds of clock skew tolerated on `iat` and `nbf` (default 5): a token issued by a
   * clock slightly ahead of this one is accepted. Never on `exp`: a token is refused from
   * its `exp` on (RFC 7519 §4.1.4), because Writ caps `exp` at the end of the task, and a
   * tolerance there would let a token act for seconds after its task ended.
   */
  clockToleranceSeconds?: number;
  /** the current time in ms (default Date.now): for tests and replays */
  now?: () => number;
}

/**
 * A tool server's offline check of an action token, with jose and Writ's JWKS:
 * signature (EdDSA only), `typ`, issuer, audience, expiry, and that the call the
 * server actually received (tool and arguments) is the one that was authorized.
 * Offline verification does not make the token single-use: call Writ's
 * `/v1/actions/consume` (see `consumeActionToken`) before acting.
 */
export function createActionVerifier(options: ActionVerifierOptions) {
  if (!options.issuer || !options.audience) throw new TypeError('issuer and audience are required');
  const keys: JWTVerifyGetKey =
    typeof options.jwks === 'string' || options.jwks instanceof URL
      ? createRemoteJWKSet(new URL(options.jwks), { timeoutDuration: 5000, cooldownDuration: 30_000 })
      : createLocalJWKSet(options.jwks);

  /**
   * `call.resource` / `call.destination`, when the tool server knows what the call
   * acts on: the token must have been issued for exactly that (a token for an action
   * that named none does not cover one).
   */
  async function verifyActionToken(token: string, call: { tool: string; arguments: unknown; resource?: string; destination?: string }): Promise<ActionClaims> {
    const payload = await verifyClaims(token, call.tool);
    if (payload.args_digest !== argumentsDigest(call.arguments)) {
      throw new ActionTokenError('arguments_mismatch', 'the arguments received are not the ones that were authorized');
    }
    if (call.resource !== undefined && payload.resource !== call.resource) {
      throw new ActionTokenError('wrong_resource', `the action token does not cover resource \`${call.resource}\``);
    }
    if (call.destination !== undefined && payload.destination !== call.destination) {
      throw new ActionTokenError('wrong_resource', `the action token does not cover destination \`${call.destination}\``);
    }
    return payload;
  }

  /**
   * The checks that need no call: signature, type, issuer, audience, expiry and (when
   * given) the tool. A tool server can run them before it reads a request body, so a
   * request without a valid token for it is refused before it costs a buffer.
   */
  async function verifyClaims(token: string, tool?: string): Promise<ActionClaims> {
    let payload: ActionClaims;
    const now = options.now?.() ?? Date.now();
    try {
      const r = await jwtVerify(token, keys, {
        currentDate: new Date(now),
        algorithms: ['EdDSA'],
        typ: ACTION_TOKEN_TYPE,
        issuer: options.issuer,
        audience: options.audience,
        requiredClaims: ['exp', 'iat', 'jti', 'txn', 'decision_id', 'tool', 'args_digest'],
        clockTolerance: options.clockToleranceSeconds ?? 5,
      });
      payload = r.payload as unknown as ActionClaims;
    } catch (err) {
      if (err instanceof ActionTokenError) throw err;
      if (err instanceof errors.JWTExpired) throw new ActionTokenError('token_expired', 'the action token has expired');
      if (err instanceof errors.JWTClaimValidationFailed) {
        if (err.claim === 'typ') throw new ActionTokenError('wrong_type', 'the token is not an action token');
        if (err.claim === 'aud') throw new ActionTokenError('wrong_audience', 'the action token is for another audience');
        if (err.claim === 'iss') throw new ActionTokenError('wrong_issuer', 'the action token is from another issuer');
        throw new ActionTokenError('invalid_token', `the action token's \`${err.claim}\` claim is invalid`);
      }
      throw new ActionTokenError('invalid_token', 'the action token does not verify');
    }
    // jose applies the tolerance to `exp` too: the exact check, with none
    if (typeof payload.exp !== 'number' || Math.floor(now / 1000) >= payload.exp) throw new ActionTokenError('token_expired', 'the action token has expired');
    if (tool !== undefined && payload.tool !== tool) throw new ActionTokenError('wrong_tool', `the action token is for tool \`${payload.tool}\`, not \`${tool}\``);
    return payload;
  }

  return Object.assign(verifyActionToken, { verifyClaims });
}

/**
 * Marks the token used at Writ (`POST /v1/actions/consume`). Resolves with the claims
 * the first time; rejects with code `token_already_used` on a replay.
 */
export async function consumeActionToken(writUrl: string, token: string, audience: string, fetchImpl: typeof fetch = fetch): Promise<ActionClaims> {
  const r = await new WritClient({ url: writUrl, fetch: fetchImpl }).send({ method: 'POST', path: '/v1/actions/consume', json: { action_token: token, audience } });
  const claims = (r.body as { claims?: ActionClaims } | undefined)?.claims;
  if (r.status === 200 && claims) return claims;
  throw apiErrorOf(r.status, r.body, 'POST /v1/actions/consume');
}
