import { errors as joseErrors, jwtVerify, type JWTHeaderParameters, type JWTPayload } from 'jose';
import type { KeyObject } from 'node:crypto';
import type { KeyRing } from './key-ring.js';

export type TokenFailure = 'invalid_token' | 'expired_token' | 'wrong_type' | 'wrong_audience' | 'wrong_issuer';

export class TokenVerificationError extends Error {
  constructor(
    readonly reason: TokenFailure,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Verifies a JWT signed by Writ: EdDSA only, the expected `typ`, issuer and audience,
 * `exp` required. The key is looked up by `kid`; an unknown kid always triggers a
 * reload of the key ring (another instance may have created or rotated a key a moment
 * ago); concurrent reloads are shared (KeyRing.reload).
 */
export async function verifyWritJwt(
  ring: KeyRing,
  token: string,
  expect: { typ: string; issuer: string; audience?: string; currentDate?: Date },
): Promise<{ payload: JWTPayload; header: JWTHeaderParameters }> {
  try {
    const result = await jwtVerify(
      token,
      async (header): Promise<KeyObject> => {
        const kid = header.kid;
        if (typeof kid !== 'string') throw new TokenVerificationError('invalid_token', 'the token has no `kid`');
        let key = ring.publicKey(kid);
        if (!key) {
          await ring.reload();
          key = ring.publicKey(kid);
        }
        if (!key) throw new TokenVerificationError('invalid_token', 'the token was not signed by a key of this issuer');
        return key;
      },
      {
        algorithms: ['EdDSA'],
        typ: expect.typ,
        issuer: expect.issuer,
        audience: expect.audience,
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
        currentDate: expect.currentDate,
        clockTolerance: 5,
      },
    );
    return { payload: result.payload, header: result.protectedHeader };
  } catch (err) {
    throw classify(err);
  }
}

function classify(err: unknown): TokenVerificationError {
  if (err instanceof TokenVerificationError) return err;
  if (err instanceof joseErrors.JWTExpired) return new TokenVerificationError('expired_token', 'the token has expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'typ') return new TokenVerificationError('wrong_type', 'the token is not of the expected type');
    if (err.claim === 'aud') return new TokenVerificationError('wrong_audience', 'the token is not for this audience');
    if (err.claim === 'iss') return new TokenVerificationError('wrong_issuer', 'the token is not from this issuer');
    return new TokenVerificationError('invalid_token', `the token's \`${err.claim}\` claim is invalid`);
  }
  return new TokenVerificationError('invalid_token', 'the token does not verify');
}
