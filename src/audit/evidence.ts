import { auditLeafBytes, GENESIS_HASH } from '../core/audit-hash.js';
import type { AuditEntry } from '../core/types.js';
import type { AuditCheckpointRecord, Store } from '../store/store.js';
import { EXPORT_FORMAT, type ExportHeader } from './audit-export.js';
import { prefixNodes } from './compact-range.js';
import { extendTree, logConsistencyProof, logInclusionProof, logRoot } from './merkle-log.js';
import { signNote, type NoteSigner } from './signed-note.js';
import { formatCheckpoint } from './tlog-checkpoint.js';
import { formatTlogProof } from './tlog-proof.js';
import { treeNodeKey } from '../core/tree-node-key.js';

/**
 * Evidence over the audit log for investigators: signed C2SP checkpoints of the Merkle
 * tree, inclusion and consistency proofs, self-contained proof files and exports.
 */
export interface EvidenceContext {
  store: Store;
  /** the note signer (the audit checkpoint key, never a token key) */
  signer: NoteSigner;
  /** the checkpoint origin line: the issuer without its scheme, `/audit` appended */
  origin: string;
  now: () => number;
}

/** The checkpoint origin for an issuer URL (C2SP: a schema-less URL, no trailing slash). */
export function checkpointOrigin(issuer: string): string {
  return `${issuer.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '')}/audit`;
}

/**
 * Extends the tree to the chain's head and signs a checkpoint of it, unless the latest
 * stored checkpoint already covers that size (then that one is returned). Instances
 * signing at once store the first checkpoint of a size; both have the same root.
 */
export async function signCheckpoint(ctx: EvidenceContext): Promise<AuditCheckpointRecord | null> {
  const size = await extendTree(ctx.store);
  if (size === 0) return null;
  const latest = await ctx.store.latestAuditCheckpoint();
  if (latest && latest.size >= size) return latest;
  const root = await logRoot(ctx.store, size);
  const note = signNote(formatCheckpoint({ origin: ctx.origin, size, root, extensions: [] }), [ctx.signer]);
  await ctx.store.putAuditCheckpoint({ size, note, createdAt: ctx.now() });
  return (await ctx.store.listAuditCheckpoints(size - 1, 1))[0] ?? null;
}

/** The latest checkpoint, signing one first when none covers an entry at `seq` yet. */
export async function checkpointCovering(ctx: EvidenceContext, seq: number): Promise<AuditCheckpointRecord | null> {
  const latest = await ctx.store.latestAuditCheckpoint();
  if (latest && latest.size >= seq) return latest;
  return signCheckpoint(ctx);
}


export async function inclusion(ctx: EvidenceContext, index: number, size: number): Promise<{ index: number; size: number; leaf_hash: string; root: string; proof: string[] }> {
  await ensureTree(ctx, size);
  const [proof, root, leaf] = await Promise.all([
    logInclusionProof(ctx.store, index, size),
    logRoot(ctx.store, size),
    ctx.store.getAuditTreeNodes([{ level: 0, index }]),
  ]);
  return {
    index,
    size,
    leaf_hash: leaf.get(treeNodeKey(0, index))!.toString('base64'),
    root: root.toString('base64'),
    proof: proof.map((p) => p.toString('base64')),
  };
}

export async function consistency(ctx: EvidenceContext, from: number, to: number): Promise<{ from: number; to: number; from_root: string; to_root: string; proof: string[] }> {
  await ensureTree(ctx, to);
  const [proof, a, b] = await Promise.all([logConsistencyProof(ctx.store, from, to), logRoot(ctx.store, from), logRoot(ctx.store, to)]);
  return { from, to, from_root: a.toString('base64'), to_root: b.toString('base64'), proof: proof.map((p) => p.toString('base64')) };
}

async function ensureTree(ctx: EvidenceContext, size: number): Promise<void> {
  if ((await ctx.store.auditTreeSize()) < size) await extendTree(ctx.store);
}

/** A `.tlog-proof` file for the entry at `seq`: the entry, its inclusion proof, the signed checkpoint. */
export async function proofFile(ctx: EvidenceContext, entry: AuditEntry): Promise<string | null> {
  const cp = await checkpointCovering(ctx, entry.seq);
  if (!cp) return null;
  const proof = await logInclusionProof(ctx.store, entry.seq - 1, cp.size);
  return formatTlogProof({ extra: Buffer.from(auditLeafBytes(entry), 'utf8'), index: entry.seq - 1, proof, checkpoint: cp.note });
}

/**
 * Streams an export of the entries with seq in [firstSeq, lastSeq] (see audit-export.ts
 * for the format), with the checkpoints that fall inside that range.
 */
export async function* exportLines(ctx: EvidenceContext, range: { firstSeq: number; lastSeq: number }, header: { verifierKey?: string }): AsyncGenerator<string> {
  const { firstSeq, lastSeq } = range;
  await extendTree(ctx.store);
  // An export that reaches the head carries a signed checkpoint of its last entry, so no
  // tail of it is covered by the chain alone (which a database writer can recompute).
  const head = await ctx.store.auditHead();
  if (head && head.seq === lastSeq) await checkpointCovering(ctx, lastSeq);
  const h: ExportHeader = {
    format: EXPORT_FORMAT,
    origin: ctx.origin,
    ...(header.verifierKey ? { verifier_key: header.verifierKey } : {}),
    first_seq: firstSeq,
    last_seq: lastSeq,
    exported_at: new Date(ctx.now()).toISOString(),
  };
  yield JSON.stringify(h);
  if (firstSeq > 1) {
    const before = await ctx.store.listAudit({ after: firstSeq - 2, limit: 1 });
    const keys = prefixNodes(firstSeq - 1);
    const got = await ctx.store.getAuditTreeNodes(keys);
    const nodes = keys.map((k) => got.get(treeNodeKey(k.level, k.index)));
    if (nodes.some((n) => !n)) throw new Error('the audit tree does not cover the export prefix');
    yield JSON.stringify({ prefix: { size: firstSeq - 1, prev_hash: before[0]?.hash ?? GENESIS_HASH, nodes: nodes.map((n) => n!.toString('base64')) } });
  }
  for (let after = firstSeq - 2; ; ) {
    const cps = await ctx.store.listAuditCheckpoints(after, 500);
    for (const c of cps) if (c.size >= firstSeq && c.size <= lastSeq) yield JSON.stringify({ checkpoint: c.note });
    if (cps.length < 500 || cps.at(-1)!.size > lastSeq) break;
    after = cps.at(-1)!.size;
  }
  for (let after = firstSeq - 1; after < lastSeq; ) {
    const page = await ctx.store.listAudit({ after, limit: 1000 });
    if (page.length === 0) break;
    for (const e of page) {
      if (e.seq > lastSeq) return;
      yield auditLeafBytes(e);
    }
    after = page.at(-1)!.seq;
  }
}

/**
 * The seq range of entries whose time lies in [sinceMs, untilMs]: the first and last
 * found by binary search over seq (entry times rise with seq; an export is always one
 * contiguous run of the log, so that it can be verified).
 */
export async function seqRangeForTime(store: Store, sinceMs: number | null, untilMs: number | null): Promise<{ firstSeq: number; lastSeq: number } | null> {
  const head = await store.auditHead();
  if (!head) return null;
  const tsAt = async (seq: number) => (await store.listAudit({ after: seq - 1, limit: 1 }))[0]!.ts;
  // first seq with ts >= since
  let lo = 1;
  let hi = head.seq + 1;
  if (sinceMs !== null) {
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if ((await tsAt(mid)) >= sinceMs) hi = mid;
      else lo = mid + 1;
    }
  }
  const firstSeq = sinceMs === null ? 1 : lo;
  // last seq with ts <= until
  let lastSeq = head.seq;
  if (untilMs !== null) {
    let a = firstSeq - 1;
    let b = head.seq;
    while (a < b) {
      const mid = Math.ceil((a + b) / 2);
      if ((await tsAt(mid)) <= untilMs) a = mid;
      else b = mid - 1;
    }
    lastSeq = a;
  }
  if (firstSeq > lastSeq) return null;
  return { firstSeq, lastSeq };
}
