import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';

/**
 * C2SP signed-note (https://c2sp.org/signed-note), Ed25519 signatures only (type 0x01),
 * interoperable with Go's golang.org/x/mod/sumdb/note.
 *
 * A note is UTF-8 text ending in a newline, a blank line, then one line per signature:
 * "— <key name> <base64(4-byte key id || signature)>\n". The key id is the first four
 * bytes of SHA-256(key name || 0x0A || 0x01 || public key). A verifier key is written
 * "<name>+<hex key id>+<base64(0x01 || public key)>".
 */

const ED25519_TYPE = 0x01;
const SIG_PREFIX = '\u2014 ';
const MAX_SIGNATURES = 100;
// DER prefixes of an Ed25519 SubjectPublicKeyInfo and PKCS#8 key (RFC 8410).
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export class NoteError extends Error {
  readonly code = 'invalid_note';
}

function checkName(name: string): void {
  // A key name is non-empty, has no Unicode spaces and no plus signs.
  if (name.length === 0 || /[\s+]/u.test(name)) throw new NoteError(`invalid key name \`${name}\``);
}

export function keyId(name: string, publicKey: Uint8Array): number {
  const h = createHash('sha256').update(name).update(Buffer.from([0x0a, ED25519_TYPE])).update(publicKey).digest();
  return h.readUInt32BE(0);
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

export interface NoteSigner {
  name: string;
  id: number;
  /** the verifier key in note format */
  verifierKey: string;
  sign(message: Buffer): Buffer;
}

export interface NoteVerifier {
  name: string;
  id: number;
  verify(message: Buffer, signature: Buffer): boolean;
}

function rawPublicKey(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(SPKI_PREFIX.length));
}

/** A signer from a 32-byte Ed25519 seed (or a node KeyObject holding an Ed25519 private key). */
export function createNoteSigner(name: string, privateKey: Uint8Array | KeyObject): NoteSigner {
  checkName(name);
  const key =
    privateKey instanceof Uint8Array
      ? createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, Buffer.from(privateKey)]), format: 'der', type: 'pkcs8' })
      : privateKey;
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError('a note signer needs an Ed25519 private key');
  const pub = rawPublicKey(createPublicKey(key));
  const id = keyId(name, pub);
  return {
    name,
    id,
    verifierKey: `${name}+${hex8(id)}+${Buffer.concat([Buffer.from([ED25519_TYPE]), pub]).toString('base64')}`,
    sign: (message) => edSign(null, message, key),
  };
}

/** Parses a signer key as Go writes it: "PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>". */
export function parseNoteSignerKey(text: string): NoteSigner {
  // The base64 key may itself hold '+': cut the first four fields, as Go does.
  const parts = cutFields(text, 5);
  if (!parts || parts[0] !== 'PRIVATE' || parts[1] !== 'KEY') throw new NoteError('malformed signer key');
  const [, , name, idHex, b64] = parts as [string, string, string, string, string];
  const raw = strictBase64(b64);
  if (!/^[0-9a-f]{8}$/.test(idHex) || !raw || raw.length !== 33 || raw[0] !== ED25519_TYPE) throw new NoteError('malformed signer key');
  const signer = createNoteSigner(name, raw.subarray(1));
  if (signer.id !== parseInt(idHex, 16)) throw new NoteError('the signer key id does not match its key');
  return signer;
}

/** Parses a verifier key "<name>+<hex id>+<base64(0x01 || public key)>". */
export function parseNoteVerifierKey(text: string): NoteVerifier {
  const parts = cutFields(text, 3);
  if (!parts) throw new NoteError('malformed verifier key');
  const [name, idHex, b64] = parts as [string, string, string];
  checkName(name);
  const raw = strictBase64(b64);
  if (!/^[0-9a-f]{8}$/.test(idHex) || !raw || raw.length !== 33 || raw[0] !== ED25519_TYPE) throw new NoteError('malformed verifier key');
  const pub = raw.subarray(1);
  const id = keyId(name, pub);
  if (id !== parseInt(idHex, 16)) throw new NoteError('the verifier key id does not match its key');
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
  return { name, id, verify: (message, signature) => signature.length === 64 && edVerify(null, message, key, signature) };
}

/** Splits on the first `n - 1` plus signs; the last field keeps any further ones. */
function cutFields(text: string, n: number): string[] | null {
  const out: string[] = [];
  let rest = text;
  for (let i = 0; i < n - 1; i++) {
    const at = rest.indexOf('+');
    if (at < 0) return null;
    out.push(rest.slice(0, at));
    rest = rest.slice(at + 1);
  }
  out.push(rest);
  return out;
}

/** Standard base64 with padding, rejecting anything Buffer.from would silently skip. */
function strictBase64(s: string): Buffer | null {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) return null;
  return Buffer.from(s, 'base64');
}

function checkText(text: string): void {
  // As Go's note.Sign: the text ends in a newline; as Open reads it back, it holds no
  // ASCII control character but the newline.
  if (!text.endsWith('\n') || /[\u0000-\u0009\u000b-\u001f]/.test(text)) throw new NoteError('malformed note');
}

/** Signs `text` (which must end in a newline) with every signer; returns the note. */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  checkText(text);
  const lines = signers.map((s) => {
    const sig = s.sign(Buffer.from(text, 'utf8'));
    const id = Buffer.alloc(4);
    id.writeUInt32BE(s.id);
    return `${SIG_PREFIX}${s.name} ${Buffer.concat([id, sig]).toString('base64')}\n`;
  });
  return `${text}\n${lines.join('')}`;
}

export interface NoteSignature {
  name: string;
  id: number;
  base64: string;
}

export interface OpenedNote {
  text: string;
  /** signatures that verified with a known key */
  verified: NoteSignature[];
  /** signatures by keys the caller did not give */
  unverified: NoteSignature[];
}

/**
 * Opens a signed note: splits text from signatures, verifies every signature whose
 * key is known, and fails unless at least one verifies. A signature by a known key
 * name and id that does not verify fails the whole note.
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote {
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) throw new NoteError('malformed note');
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new NoteError('malformed note');
  const text = note.slice(0, split + 1);
  const sigLines = note.slice(split + 2, -1).split('\n');
  if (sigLines.length > MAX_SIGNATURES) throw new NoteError('too many signatures');
  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seen = new Set<number>();
  for (const line of sigLines) {
    if (!line.startsWith(SIG_PREFIX)) throw new NoteError('malformed note');
    const rest = line.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(' ');
    if (sp <= 0) throw new NoteError('malformed note');
    const name = rest.slice(0, sp);
    const b64 = rest.slice(sp + 1);
    checkName(name);
    const raw = strictBase64(b64);
    if (!raw || raw.length < 5) throw new NoteError('malformed note');
    const id = raw.readUInt32BE(0);
    const sig = { name, id, base64: b64 };
    const matching = verifiers.filter((v) => v.name === name && v.id === id);
    if (matching.length > 1) throw new NoteError(`ambiguous key ${name}+${hex8(id)}`);
    const v = matching[0];
    if (!v) {
      unverified.push(sig);
      continue;
    }
    if (seen.has(id)) continue;
    if (!v.verify(Buffer.from(text, 'utf8'), raw.subarray(4))) throw new NoteError(`invalid signature for key ${name}+${hex8(id)}`);
    seen.add(id);
    verified.push(sig);
  }
  if (verified.length === 0) throw new NoteError('no verifiable signature on the note');
  return { text, verified, unverified };
}
