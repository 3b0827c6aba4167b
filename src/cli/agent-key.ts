import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { DpopKey } from '@writ/sdk';
import { UsageError } from './args.js';
import { CliError } from './client.js';

export type KeyAlg = 'EdDSA' | 'ES256';

/** The public members of an Ed25519 or P-256 JWK, plus kid and alg. */
function publicOf(jwk: JWK): JWK {
  const out: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  if (jwk.kty === 'EC') out.y = jwk.y;
  if (jwk.kid) out.kid = jwk.kid;
  if (jwk.alg) out.alg = jwk.alg;
  return out;
}

/** Generates a key pair; writes the private JWK (kid = thumbprint) to `out` with mode 0600. */
export async function generateAgentKey(alg: KeyAlg, out: string, force: boolean): Promise<{ keys: JWK[] }> {
  const { privateKey, publicKey } = await generateKeyPair(alg === 'ES256' ? 'ES256' : 'Ed25519', { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, 'sha256');
  const priv = { ...(await exportJWK(privateKey)), kid, alg };
  if (force) rmSync(out, { force: true });
  try {
    // `wx`: a fresh file, so the mode applies and no existing key is overwritten
    writeFileSync(out, `${JSON.stringify(priv, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new CliError('file_exists', `\`${out}\` exists; pass --force to replace it`);
    throw new CliError('write_failed', `cannot write \`${out}\`: ${code ?? (err as Error).message}`);
  }
  chmodSync(out, 0o600);
  return { keys: [{ ...publicOf(priv), use: 'sig' }] };
}

function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw new CliError('read_failed', `cannot read ${what} \`${path}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new CliError('invalid_json', `${what} \`${path}\` is not JSON`);
  }
}

export interface AgentKey {
  key: CryptoKey;
  alg: string;
  kid: string;
  publicJwk: JWK;
}

function algOf(jwk: JWK, what: string): string {
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') {
    if (jwk.alg !== undefined && jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519') throw new CliError('invalid_key', `${what} has alg \`${jwk.alg}\`, which does not fit an Ed25519 key`);
    return jwk.alg ?? 'EdDSA';
  }
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') {
    if (jwk.alg !== undefined && jwk.alg !== 'ES256') throw new CliError('invalid_key', `${what} has alg \`${jwk.alg}\`, which does not fit a P-256 key`);
    return 'ES256';
  }
  throw new CliError('invalid_key', `${what} is not an Ed25519 (OKP) or P-256 (EC) JWK`);
}

/** Reads a private JWK written by `writ agent keygen` (or any Ed25519/P-256 private JWK). */
export async function loadPrivateKey(path: string): Promise<AgentKey> {
  return importPrivateKey(readJsonFile(path, 'key file'), `key file \`${path}\``);
}

/**
 * A private JWK given as JSON text (`WRIT_AGENT_KEY`): the same checks as a key file.
 * The text is never repeated in an error.
 */
export async function parsePrivateKey(text: string, what: string): Promise<AgentKey> {
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new CliError('invalid_json', `${what} is not JSON (a private JWK, as \`writ agent keygen\` writes)`);
  }
  return importPrivateKey(jwk, what);
}

async function importPrivateKey(value: unknown, what: string): Promise<AgentKey> {
  const jwk = value as JWK;
  if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk)) throw new CliError('invalid_key', `${what} is not a JWK`);
  if (typeof jwk.d !== 'string') throw new CliError('invalid_key', `${what} holds no private key (\`d\`)`);
  const alg = algOf(jwk, what);
  const pub = publicOf(jwk);
  const kid = jwk.kid ?? (await calculateJwkThumbprint(pub, 'sha256'));
  let key: CryptoKey;
  try {
    key = (await importJWK({ ...jwk, alg: undefined, key_ops: undefined, ext: undefined }, alg)) as CryptoKey;
  } catch (err) {
    throw new CliError('invalid_key', `${what} does not import: ${(err as Error).message}`);
  }
  return { key, alg, kid, publicJwk: { ...pub, kid } };
}

/** The public JWKS for `agent register`: from a JWKS file (or one public JWK), or a private key file. */
export async function readJwks(opts: { jwks?: string; key?: string }): Promise<{ keys: JWK[] }> {
  if ((opts.jwks === undefined) === (opts.key === undefined)) throw new UsageError('give exactly one of `--jwks FILE` and `--key FILE`');
  if (opts.key !== undefined) return { keys: [(await loadPrivateKey(opts.key)).publicJwk] };
  const v = readJsonFile(opts.jwks!, 'JWKS file') as { keys?: unknown; kty?: unknown };
  if (v && typeof v === 'object' && Array.isArray(v.keys)) return v as { keys: JWK[] };
  if (v && typeof v === 'object' && typeof v.kty === 'string') return { keys: [v as JWK] };
  throw new CliError('invalid_jwks', `\`${opts.jwks}\` is neither a JWKS (\`{"keys": [...]}\`) nor a JWK`);
}

/**
 * The agent's DPoP key (RFC 9449) from a private JWK file (`writ agent keygen` writes
 * one): for `writ token --dpop-key` and the gateways' `writ.dpop_key_file`/`--dpop-key`.
 */
export async function loadDpopKey(path: string): Promise<DpopKey> {
  const jwk = readJsonFile(path, 'DPoP key file') as JWK;
  if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk)) throw new CliError('invalid_key', `DPoP key file \`${path}\` is not a JWK`);
  if (typeof jwk.d !== 'string') throw new CliError('invalid_key', `DPoP key file \`${path}\` holds no private key (\`d\`)`);
  algOf(jwk, path);
  try {
    return await DpopKey.fromJwk(jwk);
  } catch (err) {
    throw new CliError('invalid_key', `DPoP key file \`${path}\` does not import: ${(err as Error).message}`);
  }
}
