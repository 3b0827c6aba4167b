import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { Jwk } from '../core/types.js';

/**
 * Signing keys at rest. With a key-encryption secret (WRIT_KEY_ENCRYPTION_KEY), a
 * private JWK is stored sealed with AES-256-GCM under a key derived from the secret
 * (HKDF-SHA256, RFC 5869): someone who reads the database, or a backup of it, cannot
 * sign tokens. The key id is bound as additional data, so a sealed key cannot be
 * swapped onto another key's row.
 */
export const SEALED_KTY = 'writ-sealed';

export function deriveKeyEncryptionKey(secret: string): Buffer {
  if (secret.length < 32) throw new TypeError('WRIT_KEY_ENCRYPTION_KEY must be at least 32 characters');
  return Buffer.from(hkdfSync('sha256', secret, 'writ', 'writ signing keys v1', 32));
}

export function isSealed(jwk: Jwk): boolean {
  return jwk.kty === SEALED_KTY;
}

export function sealJwk(jwk: Jwk, kid: string, kek: Buffer): Jwk {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, iv);
  cipher.setAAD(Buffer.from(kid));
  const ct = Buffer.concat([cipher.update(JSON.stringify(jwk), 'utf8'), cipher.final()]);
  return { kty: SEALED_KTY, alg: 'A256GCM', iv: iv.toString('base64url'), ct: ct.toString('base64url'), tag: cipher.getAuthTag().toString('base64url') };
}

export function unsealJwk(sealed: Jwk, kid: string, kek: Buffer): Jwk {
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(String(sealed.iv), 'base64url'));
    decipher.setAAD(Buffer.from(kid));
    decipher.setAuthTag(Buffer.from(String(sealed.tag), 'base64url'));
    const pt = Buffer.concat([decipher.update(Buffer.from(String(sealed.ct), 'base64url')), decipher.final()]);
    return JSON.parse(pt.toString('utf8')) as Jwk;
  } catch {
    throw new Error(`signing key \`${kid}\` does not open with WRIT_KEY_ENCRYPTION_KEY (a different secret?)`);
  }
}
