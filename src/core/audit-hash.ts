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
  return sha256Hex(`${entry.prevHash}\n${ownFieldsText(entry)}`);
}

/**
 * `canonicalJson(ownFields(entry))`, built around the canonical JSON of `data` alone (the
 * hot path of every audit append: no second walk, no sort of the outer keys). The other
 * fields are a string or null each and two integers, whose RFC 8785 forms are what
 * JSON.stringify gives (§3.2.2.2, §3.2.2.3), here in RFC 8785's key order (§3.2.3: by
 * UTF-16 code units). Anything else (a field left undefined, a seq that is not an
 * integer) goes the general way, which drops or refuses it as before.
 */
function ownFieldsText(entry: Omit<AuditEntry, 'hash' | 'prevHash'>): string {
  const { seq, ts, type, actor, taskId, agentId, decisionId, data } = entry;
  if (!(Number.isSafeInteger(seq) && Number.isSafeInteger(ts) && typeof type === 'string' && typeof actor === 'string' && isText(taskId) && isText(agentId) && isText(decisionId) && data !== undefined)) {
    return canonicalJson(ownFields(entry));
  }
  return `{"actor":${JSON.stringify(actor)},"agentId":${JSON.stringify(agentId)},"data":${canonicalJson(data)},"decisionId":${JSON.stringify(decisionId)},"seq":${seq},"taskId":${JSON.stringify(taskId)},"ts":${ts},"type":${JSON.stringify(type)}}`;
}

function isText(v: unknown): boolean {
  return v === null || typeof v === 'string';
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
  const text = ownFieldsText({ ...entry, seq: 0 });
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
