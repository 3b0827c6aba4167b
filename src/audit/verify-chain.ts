import { computeEntryHash, GENESIS_HASH } from '../core/audit-hash.js';
import type { Store } from '../store/store.js';

export type ChainReport =
  | { ok: true; entries: number; head: { seq: number; hash: string } | null }
  | { ok: false; entries: number; first_bad_seq: number; problem: string };

/**
 * Walks the whole chain in order and recomputes every link. Reports the first
 * sequence number at which the chain breaks: an edited entry (its hash no longer
 * matches its content), a deleted one (a gap, or a `prev_hash` that names some other
 * entry), reordered entries, or a tail cut off (the store's head names a later entry).
 */
export async function verifyChain(store: Store, pageSize = 1000, options: { checkpoints?: { seq: number; hash: string }[] } = {}): Promise<ChainReport> {
  // Checkpoints (see checkpoint.ts) pin `hash` at `seq`: they catch a rewrite that
  // recomputed every hash, and a tail cut off together with the head.
  const pinned = new Map<number, string>();
  for (const c of options.checkpoints ?? []) {
    const other = pinned.get(c.seq);
    if (other !== undefined && other !== c.hash) {
      return { ok: false, entries: 0, first_bad_seq: c.seq, problem: `two checkpoints disagree about entry ${c.seq}` };
    }
    pinned.set(c.seq, c.hash);
  }
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let count = 0;
  let after = 0;
  for (;;) {
    const page = await store.listAudit({ after, limit: pageSize });
    for (const e of page) {
      if (e.seq !== expectedSeq) {
        return { ok: false, entries: count, first_bad_seq: expectedSeq, problem: `entry ${expectedSeq} is missing (found ${e.seq} next)` };
      }
      if (e.prevHash !== prevHash) {
        return { ok: false, entries: count, first_bad_seq: e.seq, problem: `entry ${e.seq} does not link to entry ${e.seq - 1}` };
      }
      const { hash: _h, ...rest } = e;
      if (computeEntryHash(rest) !== e.hash) {
        return { ok: false, entries: count, first_bad_seq: e.seq, problem: `entry ${e.seq} was altered (its hash does not match its content)` };
      }
      const pin = pinned.get(e.seq);
      if (pin !== undefined && pin !== e.hash) {
        return { ok: false, entries: count, first_bad_seq: firstAltered(pinned, e.seq), problem: `entry ${e.seq} does not match its signed checkpoint: the chain was rewritten at or before it` };
      }
      prevHash = e.hash;
      expectedSeq += 1;
      count += 1;
    }
    if (page.length < pageSize) break;
    after = page[page.length - 1]!.seq;
  }
  const lastPinned = Math.max(0, ...pinned.keys());
  if (lastPinned > expectedSeq - 1) {
    return { ok: false, entries: count, first_bad_seq: expectedSeq, problem: `entries from ${expectedSeq} are missing: a signed checkpoint names entry ${lastPinned}` };
  }
  const head = await store.auditHead();
  if (head && (head.seq !== expectedSeq - 1 || head.hash !== prevHash)) {
    const lastSeq = expectedSeq - 1;
    if (head.seq > lastSeq) {
      return { ok: false, entries: count, first_bad_seq: lastSeq + 1, problem: `entries after ${lastSeq} are missing (the head is at ${head.seq})` };
    }
    return { ok: false, entries: count, first_bad_seq: Math.min(head.seq, lastSeq) || 1, problem: 'the chain head does not match the last entry' };
  }
  if (!head && count > 0) return { ok: false, entries: count, first_bad_seq: 1, problem: 'the chain head is missing' };
  return { ok: true, entries: count, head };
}

/** The first seq after the last checkpoint that still matched: where a rewrite can have begun. */
function firstAltered(pinned: Map<number, string>, badSeq: number): number {
  let from = 1;
  for (const seq of pinned.keys()) if (seq < badSeq && seq + 1 > from) from = seq + 1;
  return from;
}
