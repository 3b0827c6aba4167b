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
