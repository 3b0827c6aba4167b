import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** RFC 8785 (JCS) canonical JSON of a value. Throws TypeError for values JSON cannot carry. */
export function canonicalJson(value: unknown): string {
  const text = (canonicalize as unknown as (v: unknown) => string | undefined)(value);
  if (text === undefined) throw new TypeError('value has no canonical JSON form');
  return text;
}

export function sha256(data: string | Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function base64url(buf: Buffer): string {
  return buf.toString('base64url');
}

/**
 * The `args_digest` of an action: base64url (RFC 4648 §5, no padding) of the
 * SHA-256 of the RFC 8785 canonical JSON of the arguments.
 */
export function digestArguments(args: unknown): string {
  return base64url(sha256(canonicalJson(args)));
}
