import { InvalidRequestError } from '../core/errors.js';

/**
 * SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md):
 * `spiffe://<trust domain><path>`.
 *
 * - the scheme is exactly `spiffe` (lowercase), followed by `://`;
 * - the trust domain is 1..255 characters of lowercase letters, digits, `.`, `-`, `_`
 *   (no port, no user info, no percent-encoding, no upper case);
 * - the path is empty or `/segment(/segment)*`, each segment 1+ characters of
 *   letters, digits, `.`, `-`, `_`, and neither `.` nor `..` (no empty segments, so
 *   no `//` and no trailing `/`);
 * - no query and no fragment (`?` and `#` are not allowed characters anyway);
 * - at most 2048 bytes in all.
 *
 * Characters outside those sets (including `%`, `@`, `:`, `?`, `#` and any non-ASCII)
 * are refused, so there is exactly one spelling of each ID: ids compare as strings.
 */
export interface SpiffeId {
  trustDomain: string;
  /** `''` or `/a/b` */
  path: string;
}

export const SPIFFE_SCHEME_PREFIX = 'spiffe://';
export const MAX_SPIFFE_ID_BYTES = 2048;
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const PATH_CHAR = /^[a-zA-Z0-9._-]$/;

export class SpiffeIdError extends Error {}

/** Parses and validates a SPIFFE ID; throws SpiffeIdError naming the first problem. */
export function parseSpiffeId(id: string): SpiffeId {
  if (typeof id !== 'string' || id.length === 0) throw new SpiffeIdError('the SPIFFE ID is empty');
  if (Buffer.byteLength(id, 'utf8') > MAX_SPIFFE_ID_BYTES) throw new SpiffeIdError(`a SPIFFE ID is at most ${MAX_SPIFFE_ID_BYTES} bytes`);
  if (!id.startsWith(SPIFFE_SCHEME_PREFIX)) {
    if (id.toLowerCase().startsWith(SPIFFE_SCHEME_PREFIX)) throw new SpiffeIdError('the scheme must be lowercase `spiffe://`');
    throw new SpiffeIdError('a SPIFFE ID starts with `spiffe://`');
  }
  const rest = id.slice(SPIFFE_SCHEME_PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  checkTrustDomain(trustDomain);
  if (path !== '') {
    const segments = path.slice(1).split('/');
    for (const seg of segments) {
      if (seg.length === 0) throw new SpiffeIdError('the path has an empty segment (`//` or a trailing `/`)');
      if (seg === '.' || seg === '..') throw new SpiffeIdError('the path has a `.` or `..` segment');
      for (const ch of seg) {
        if (!PATH_CHAR.test(ch)) throw new SpiffeIdError(`the path has a character that is not allowed: ${describeChar(ch)}`);
      }
    }
  }
  return { trustDomain, path };
}

function checkTrustDomain(td: string): void {
  if (td.length === 0) throw new SpiffeIdError('the trust domain is empty');
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) throw new SpiffeIdError(`the trust domain is at most ${MAX_TRUST_DOMAIN_LENGTH} characters`);
  for (const ch of td) {
    if (TRUST_DOMAIN_CHAR.test(ch)) continue;
    if (ch === ':') throw new SpiffeIdError('the trust domain must not have a port');
    if (ch === '@') throw new SpiffeIdError('the trust domain must not have user info');
    if (ch === '?' || ch === '#') throw new SpiffeIdError('a SPIFFE ID has no query or fragment');
    if (/[A-Z]/.test(ch)) throw new SpiffeIdError('the trust domain must be lowercase');
    throw new SpiffeIdError(`the trust domain has a character that is not allowed: ${describeChar(ch)}`);
  }
}

/** A trust domain name alone (`acme.test`), as in an issuer's `spiffe://acme.test`. */
export function isValidTrustDomain(td: string): boolean {
  try {
    checkTrustDomain(td);
    return true;
  } catch {
    return false;
  }
}

function describeChar(ch: string): string {
  if (ch === '?' || ch === '#') return `\`${ch}\` (a SPIFFE ID has no query or fragment)`;
  const cp = ch.codePointAt(0)!;
  return cp >= 0x21 && cp <= 0x7e ? `\`${ch}\`` : `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

export function isSpiffeId(id: string): boolean {
  try {
    parseSpiffeId(id);
    return true;
  } catch {
    return false;
  }
}

/** True for ids that claim to be SPIFFE IDs (any case of the scheme): those must validate. */
export function looksLikeSpiffeId(id: string): boolean {
  return id.slice(0, SPIFFE_SCHEME_PREFIX.length).toLowerCase() === SPIFFE_SCHEME_PREFIX;
}

/**
 * Agent ids: any id that starts with `spiffe://` (in any case) must be a valid SPIFFE
 * ID; 400 `invalid_agent_id` otherwise. Other ids keep the edge's generic rules.
 */
export function checkAgentId(id: string): void {
  if (!looksLikeSpiffeId(id)) return;
  try {
    parseSpiffeId(id);
  } catch (err) {
    throw new InvalidRequestError(`agent id \`${id.slice(0, 200)}\` is not a valid SPIFFE ID: ${(err as Error).message}`, undefined, 'invalid_agent_id');
  }
}
