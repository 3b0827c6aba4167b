import { randomBytes, randomFillSync } from 'node:crypto';

/**
 * Random bytes for ids come from a pool refilled from the CSPRNG 4 KiB at a time:
 * one system call per 256 ids instead of one per id (ids are minted on every
 * decision). Every byte is used once.
 */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

function take(n: number): Buffer {
  if (offset + n > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  pool.fill(0, offset, offset + n);
  offset += n;
  return out;
}

/**
 * Ids are a short type prefix plus 128 random bits, base64url: unguessable, so an id
 * never grants anything by being known.
 */
export function newId(prefix: string): string {
  return `${prefix}_${take(16).toString('base64url')}`;
}

/** Secrets (operator tokens) take their 256 bits straight from the CSPRNG. */
export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}
