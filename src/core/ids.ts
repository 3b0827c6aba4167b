import { randomBytes } from 'node:crypto';

/**
 * Ids are a short type prefix plus 128 random bits, base64url: unguessable, so an id
 * never grants anything by being known, and sortable only by nothing (use timestamps).
 */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(16).toString('base64url')}`;
}

export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}
