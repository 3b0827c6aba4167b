/**
 * The forms a secret commonly takes when an upstream echoes it: what the gateway and
 * the proxy mask besides the secret itself. An upstream (or an agent steering one) that
 * hands back `base64(secret)`, the secret in a URL or in a JSON string must not get it
 * past the masking. What this cannot catch is in docs/gateway.md ("What masking cannot
 * catch"): encryption, compression inside the body, hashing, splitting, other encodings.
 */

const B64 = /[+/=]/g;
const toUrl = (b64: string) => b64.replace(B64, (c) => (c === '+' ? '-' : c === '/' ? '_' : ''));

/**
 * Base64 of the secret at each of the three alignments it can have inside a longer
 * base64 string (RFC 4648 §4: 3 bytes per 4 characters): with k = 0, 1, 2 bytes before
 * it, only the characters that depend on the secret's bytes alone are kept (the
 * first 0, 2 or 3 characters mix in the bytes before, the last partial group the bytes
 * after). So `base64("Authorization: Bearer <secret>...")` is caught wherever the
 * secret falls.
 */
export function base64Cores(secret: Buffer): string[] {
  const out: string[] = [];
  for (const k of [0, 1, 2]) {
    const len = k + secret.length;
    const enc = Buffer.concat([Buffer.alloc(k), secret]).toString('base64').replace(/=+$/, '');
    const start = [0, 2, 3][k]!;
    const end = Math.floor(len / 3) * 4 + (len % 3);
    const core = enc.slice(start, end);
    out.push(core, toUrl(core));
  }
  return out;
}

function jsonEscaped(s: string): string[] {
  const plain = JSON.stringify(s).slice(1, -1);
  // the other escapes JSON allows (RFC 8259 §7): `\/`, and `\uXXXX` for non-ASCII (Python's default)
  const ascii = plain.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return [plain, plain.replace(/\//g, '\\/'), ascii, ascii.replace(/\//g, '\\/')];
}

function percentEncoded(s: string): string[] {
  const uri = encodeURIComponent(s);
  const form = new URLSearchParams({ s }).toString().slice(2);
  const all = [...Buffer.from(s)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  const lower = (x: string) => x.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
  return [uri, lower(uri), form, lower(form), all, lower(all)];
}

/**
 * The secret and its common transforms: base64 and base64url (padded, unpadded, and
 * at the three alignments inside longer strings), percent-encoding (URI component,
 * form encoding, every byte; upper- and lower-case hex), JSON string escaping, and
 * hex. Distinct, each at least `minLength` long, longest first (so a longer form is
 * masked whole before a shorter one inside it).
 */
export function secretForms(secret: string, minLength: number): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const b64 = bytes.toString('base64');
  const forms = new Set<string>([
    secret,
    b64,
    b64.replace(/=+$/, ''),
    bytes.toString('base64url'),
    toUrl(b64) + b64.slice(b64.replace(/=+$/, '').length),
    ...base64Cores(bytes),
    ...percentEncoded(secret),
    ...jsonEscaped(secret),
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
  ]);
  return [...forms].filter((f) => f.length >= minLength).sort((a, b) => b.length - a.length);
}
