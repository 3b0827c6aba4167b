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
  const body = canonicalJson({
    seq: entry.seq,
    ts: entry.ts,
    type: entry.type,
    actor: entry.actor,
    taskId: entry.taskId,
    agentId: entry.agentId,
    decisionId: entry.decisionId,
    data: entry.data,
  });
  return sha256Hex(`${entry.prevHash}\n${body}`);
}

/**
 * The bytes of an entry as a leaf of the audit Merkle tree (RFC 9162 §2.1.1: leaf hash
 * = SHA-256(0x00 || these bytes)): the RFC 8785 canonical JSON of every field,
 * including the chain link and the entry's own chain hash, so that a proof over the
 * tree also pins the chain.
 */
export function auditLeafBytes(entry: AuditEntry): string {
  return canonicalJson({
    seq: entry.seq,
    ts: entry.ts,
    type: entry.type,
    actor: entry.actor,
    taskId: entry.taskId,
    agentId: entry.agentId,
    decisionId: entry.decisionId,
    data: entry.data,
    prevHash: entry.prevHash,
    hash: entry.hash,
  });
}
