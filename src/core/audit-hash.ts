import { canonicalJson, sha256Hex } from './digest.js';
import type { AuditEntry } from './types.js';

/** The hash that precedes the first entry of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * An entry's hash covers its own fields (RFC 8785 canonical JSON, so that any
 * backend or language recomputes the same bytes) and the previous entry's hash:
 * editing, deleting or reordering any entry breaks every later link.
 */
export function computeEntryHash(entry: Omit<AuditEntry, 'hash'>): string {
  return sha256Hex(`${entry.prevHash}\n${canonicalJson(ownFields(entry))}`);
}

/**
 * The hashed text of an entry around its `seq`: `computeEntryHash` is SHA-256 of
 * `prevHash + "\n" + before + seq + after`. So a store can chain entries whose place
 * it learns only under its lock (PostgreSQL does it in the statement that takes the
 * chain head: src/store/postgres/decisions.ts). `seq` is a plain integer in RFC 8785 JSON;
 * it is found as the last `,"seq":` key, since only `taskId`, `ts` and `type` (a string,
 * a number, a string: no unescaped quote) follow it in key order.
 */
export function entryHashParts(entry: Omit<AuditEntry, 'hash' | 'prevHash' | 'seq'>): { before: string; after: string } {
  const text = canonicalJson(ownFields({ ...entry, seq: 0 }));
  const at = text.lastIndexOf(',"seq":0,');
  if (at < 0) throw new TypeError('the entry has no seq in its canonical form');
  return { before: text.slice(0, at + ',"seq":'.length), after: text.slice(at + ',"seq":0'.length) };
}

/** The fields an entry's chain hash covers (not its link or its own hash). */
function ownFields(entry: Omit<AuditEntry, 'hash' | 'prevHash'>): Omit<AuditEntry, 'hash' | 'prevHash'> {
  const { seq, ts, type, actor, taskId, agentId, decisionId, data } = entry;
  return { seq, ts, type, actor, taskId, agentId, decisionId, data };
}

/**
 * The bytes of an entry as a leaf of the audit Merkle tree (RFC 9162 §2.1.1: leaf hash
 * = SHA-256(0x00 || these bytes)): the RFC 8785 canonical JSON of every field,
 * including the chain link and the entry's own chain hash, so that a proof over the
 * tree also pins the chain.
 */
export function auditLeafBytes(entry: AuditEntry): string {
  return canonicalJson({ ...ownFields(entry), prevHash: entry.prevHash, hash: entry.hash });
}
