import { secretForms } from './secret-forms.js';

/**
 * Whether a text the gateway or the proxy would pass to a tool carries the agent's task
 * token. Not only as typed: a receiver undoes some escapes by itself, so the token must
 * not pass in them either. A URL or form parser decodes percent-encoding (RFC 3986 §2.1;
 * `eyJ…%2EeyJ…` is the token once the upstream reads it, and `%252E` to one that decodes
 * twice), and a JSON parser decodes `\uXXXX` escapes (RFC 8259 §7: `"\u0065yJ…"` is the
 * token to it). Those are undone here (ASCII only: a token is ASCII), up to three rounds,
 * before looking. The token's common transforms (base64 at each alignment, base64url,
 * hex, every byte percent-encoded: what secret masking looks for, secret-forms.ts) are
 * looked for too. A token split across values, encrypted or otherwise transformed is not
 * found (docs/gateway.md). A string is read as UTF-8, a buffer as its bytes.
 */
export function carriesTaskToken(text: string | Buffer, token: string): boolean {
  if (token === '') return false;
  if (text.includes(token)) return true;
  const { strings, buffers } = formsOf(token);
  // a string without escapes (most tool arguments): its forms, as strings, and done
  if (typeof text === 'string' && !text.includes('%') && !text.includes('\\u')) return strings.some((f) => text.includes(f));
  let bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  for (let round = 0; ; round++) {
    if (buffers.some((f) => bytes.includes(f))) return true;
    if (round === 3) return false;
    const next = unescapeAscii(bytes);
    if (next === bytes) return false;
    bytes = next;
  }
}

const PERCENT = 0x25;
const BACKSLASH = 0x5c;

/**
 * `%XX` and `\u00XX` escapes of ASCII characters decoded, every other byte as it is; the
 * same buffer when there is none. One pass over bytes (bodies can be large).
 */
function unescapeAscii(s: Buffer): Buffer {
  if (!s.includes(PERCENT) && !s.includes('\\u')) return s;
  const out = Buffer.allocUnsafe(s.length);
  let n = 0;
  let changed = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    let at = -1;
    if (c === PERCENT) at = i + 1;
    else if (c === BACKSLASH && s[i + 1] === 0x75 && s[i + 2] === 0x30 && s[i + 3] === 0x30) at = i + 4;
    if (at >= 0) {
      const hi = hexValue(s[at]);
      const lo = hexValue(s[at + 1]);
      if (hi >= 0 && hi < 8 && lo >= 0) {
        out[n++] = hi * 16 + lo;
        i = at + 1;
        changed = true;
        continue;
      }
    }
    out[n++] = c;
  }
  return changed ? out.subarray(0, n) : s;
}

function hexValue(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

/** the forms of the tokens seen last (a task's token is used for many calls) */
const seenForms = new Map<string, { strings: string[]; buffers: Buffer[] }>();
const MAX_SEEN = 256;

function formsOf(token: string): { strings: string[]; buffers: Buffer[] } {
  let forms = seenForms.get(token);
  if (forms) return forms;
  // the token itself, and its transforms no shorter than 16 characters (a token is hundreds long)
  const strings = secretForms(token, 16);
  forms = { strings, buffers: strings.map((f) => Buffer.from(f, 'utf8')) };
  if (seenForms.size >= MAX_SEEN) seenForms.clear();
  seenForms.set(token, forms);
  return forms;
}
