/**
 * A conservative estimate of how many bits of guessing a secret someone chose costs
 * (WRIT_BOOTSTRAP_TOKEN). Not a proof of randomness: it cannot see that a long string
 * was copied from somewhere. It counts length times log2 of the alphabet the character
 * classes suggest (NIST SP 800-63B's guidance is to screen chosen secrets against
 * weak patterns; this is that screen), then discounts what a guesser tries first:
 * - a string made of a repeated unit costs what its unit costs (`aaaa…`, `abcabc…`);
 * - runs of one character or of a step of one (`aaa`, `abc`, `987`), common words and
 *   stretches of keyboard rows (also with the usual swaps, `p4ssw0rd`) cost one bit a
 *   character, wherever they occur;
 * - a character costs at most the string's own empirical entropy per character (with
 *   the Miller–Madow correction), so a string of few distinct characters, however long
 *   and whatever its classes, costs what its variety allows (`abba…` one bit a character);
 * - a string of letters only in (mostly) one case is scored as text: 2.5 bits a letter at
 *   most (Shannon's estimate for English is lower still), so a long word or phrase is
 *   refused too; random letters in mixed case are not text and keep their score.
 * A random token of 32 bytes (`openssl rand -hex 32` or `-base64 32`) scores far above
 * 128; so does what Writ generates itself.
 */
export const MIN_BOOTSTRAP_TOKEN_BITS = 128;

const WORDS = [
  'password', 'passwd', 'secret', 'admin', 'administrator', 'root', 'token', 'bootstrap', 'changeme', 'change', 'default',
  'letmein', 'welcome', 'login', 'master', 'qwerty', 'azerty', 'dragon', 'monkey', 'shadow', 'sunshine', 'princess',
  'football', 'baseball', 'iloveyou', 'trustno', 'superman', 'batman', 'access', 'hello', 'test', 'testing', 'example',
  'writ', 'operator', 'prod', 'production', 'staging', 'local', 'localhost', 'server', 'service', 'database', 'postgres',
  'random', 'value', 'long', 'strong', 'correct', 'horse', 'battery', 'staple', 'abcdef', 'company', 'summer', 'winter',
  'spring', 'autumn', 'january', 'december', 'key', 'pass', 'user', 'guest', 'demo',
];
/** bits a letter of a letters-only secret costs at most (it is likely text) */
const LETTERS_ONLY_BITS = 2.5;
const KEYBOARD_ROWS = ['1234567890', 'qwertyuiop', 'asdfghjkl', 'zxcvbnm', 'abcdefghijklmnopqrstuvwxyz'];
const LEET: Record<string, string> = { '0': 'o', '1': 'l', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's', '!': 'i' };

function alphabetSize(s: string): number {
  if (/^[0-9a-f]+$/.test(s) || /^[0-9A-F]+$/.test(s)) return 16;
  let n = 0;
  if (/[a-z]/.test(s)) n += 26;
  if (/[A-Z]/.test(s)) n += 26;
  if (/[0-9]/.test(s)) n += 10;
  if (/[^a-zA-Z0-9]/.test(s)) n += 33;
  return n;
}

/** Shannon entropy of the string's own character frequencies, bits a character, Miller–Madow corrected. */
function empiricalEntropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) h -= (n / s.length) * Math.log2(n / s.length);
  return h + (counts.size - 1) / (2 * s.length * Math.LN2);
}

/** Letters only, 80% or more of them in one case: likely words, not random letters. */
function looksLikeText(s: string): boolean {
  if (!/^[a-zA-Z]+$/.test(s)) return false;
  const upper = s.replace(/[^A-Z]/g, '').length;
  return upper >= 0.8 * s.length || upper <= 0.2 * s.length;
}

/** The shortest unit `s` is a repetition of (the whole string when it is none). */
function repeatedUnit(s: string): string {
  const i = (s + s).indexOf(s, 1);
  return i < s.length ? s.slice(0, i) : s;
}

/** Marks (true) the characters a guesser would try first: word and keyboard matches, runs. */
function predictable(s: string): boolean[] {
  const marks = new Array<boolean>(s.length).fill(false);
  const lower = [...s.toLowerCase()].map((c) => LEET[c] ?? c).join('');
  const literal = s.toLowerCase();
  const mark = (from: number, len: number) => {
    for (let k = from; k < from + len; k++) marks[k] = true;
  };
  for (const text of [lower, literal]) {
    for (const w of WORDS) {
      for (let at = text.indexOf(w); at >= 0; at = text.indexOf(w, at + 1)) mark(at, w.length);
    }
    for (const row of KEYBOARD_ROWS) {
      for (const r of [row, [...row].reverse().join('')]) {
        // every stretch of 4 or more along the row
        for (let i = 0; i + 4 <= r.length; i++) {
          for (let at = text.indexOf(r.slice(i, i + 4)); at >= 0; at = text.indexOf(r.slice(i, i + 4), at + 1)) mark(at, 4);
        }
      }
    }
  }
  // runs: a character equal to, or one step from, the one before, continuing a run of 3+
  for (let i = 2; i < s.length; i++) {
    const d1 = s.charCodeAt(i) - s.charCodeAt(i - 1);
    const d2 = s.charCodeAt(i - 1) - s.charCodeAt(i - 2);
    if (d1 === d2 && Math.abs(d1) <= 1) marks[i] = marks[i - 1] = true;
  }
  return marks;
}

/** Estimated bits of a secret someone chose; see the file comment. */
export function estimateSecretBits(secret: string): number {
  if (secret.length === 0) return 0;
  const s = repeatedUnit(secret);
  let perChar = Math.min(Math.log2(alphabetSize(s)), empiricalEntropy(s));
  if (looksLikeText(s)) perChar = Math.min(perChar, LETTERS_ONLY_BITS);
  const marks = predictable(s);
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += marks[i] ? 1 : perChar;
  // the repetition itself adds little: the count of repeats
  if (s.length < secret.length) bits += Math.log2(secret.length / s.length);
  return Math.floor(bits);
}

/** Refuses (TypeError, at start) a WRIT_BOOTSTRAP_TOKEN estimated under 128 bits (core/token-strength.ts). */
export function checkBootstrapToken(token: string): void {
  const bits = estimateSecretBits(token);
  if (bits < MIN_BOOTSTRAP_TOKEN_BITS) {
    throw new TypeError(
      `WRIT_BOOTSTRAP_TOKEN is too weak: about ${bits} bits estimated, at least ${MIN_BOOTSTRAP_TOKEN_BITS} needed ` +
        '(repeats, runs, words and letters-only text count for little); use a random value such as `openssl rand -base64 32`',
    );
  }
}
