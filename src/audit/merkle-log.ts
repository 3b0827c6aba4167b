import { auditLeafBytes } from '../core/audit-hash.js';
import { treeNodeKey } from '../core/tree-node-key.js';
import type { AuditTreeNode, Store } from '../store/store.js';
import { consistencyProof, hashChildren, hashLeaf, inclusionProof, treeRoot, type SubtreeReader } from './merkle-tree.js';

/**
 * The audit log seen as an RFC 9162 Merkle tree: leaf i is entry seq i+1. The store
 * keeps the hash of every complete subtree (on average two rows per entry), written
 * by `extendTree` after the entries commit, off the decision path. Roots and proofs
 * then cost O(log n) node reads, never a rehash of the log.
 */

const PAGE = 1000;

/**
 * Hashes entries the stored tree does not cover yet (up to `limit` of them) and stores
 * their leaves and every subtree they complete. Safe to run on several instances at
 * once: they compute identical nodes, and the store keeps the first copy. Returns the
 * size the tree now covers.
 */
export async function extendTree(store: Store, limit = Number.MAX_SAFE_INTEGER): Promise<number> {
  let size = await store.auditTreeSize();
  let left = limit;
  while (left > 0) {
    const entries = await store.listAudit({ after: size, limit: Math.min(PAGE, left) });
    if (entries.length === 0) break;
    if (entries[0]!.seq !== size + 1) throw new Error(`the audit log has a gap: entry ${size + 1} is missing`);
    const fresh = new Map<string, Buffer>();
    const nodes: AuditTreeNode[] = [];
    const add = (level: number, index: number, hash: Buffer) => {
      fresh.set(treeNodeKey(level, index), hash);
      nodes.push({ level, index, hash });
    };
    // Left siblings that lie before this page: at most one per level.
    const needed: Array<{ level: number; index: number }> = [];
    for (let level = 1, n = size; n > 0; level++) {
      const i = Math.floor(size / 2 ** (level - 1));
      if (i % 2 === 1) needed.push({ level: level - 1, index: i - 1 });
      n = Math.floor(n / 2);
    }
    const stored = await store.getAuditTreeNodes(needed);
    const lookup = (level: number, index: number): Buffer => {
      const key = treeNodeKey(level, index);
      const h = fresh.get(key) ?? stored.get(key);
      if (!h) throw new Error(`the audit tree lacks node ${key}`);
      return h;
    };
    for (const e of entries) {
      const leafIndex = e.seq - 1;
      if (leafIndex !== size) throw new Error(`the audit log has a gap: entry ${size + 1} is missing`);
      add(0, leafIndex, hashLeaf(auditLeafBytes(e)));
      // Each parent completed by this leaf: a right child at every level where the
      // leaf count is divisible by 2^level.
      for (let level = 1; (leafIndex + 1) % 2 ** level === 0; level++) {
        const index = (leafIndex + 1) / 2 ** level - 1;
        add(level, index, hashChildren(lookup(level - 1, 2 * index), lookup(level - 1, 2 * index + 1)));
      }
      size += 1;
    }
    await store.putAuditTreeNodes(nodes);
    left -= entries.length;
    if (entries.length < PAGE) break;
  }
  return size;
}

/** A SubtreeReader backed by the store, with a small per-call cache. */
export function storeReader(store: Store): SubtreeReader {
  const cache = new Map<string, Buffer>();
  return async (level, index) => {
    const key = treeNodeKey(level, index);
    const hit = cache.get(key);
    if (hit) return hit;
    const got = (await store.getAuditTreeNodes([{ level, index }])).get(key);
    if (!got) throw new RangeError(`the audit tree has no node ${key} yet`);
    cache.set(key, got);
    return got;
  };
}

export async function logRoot(store: Store, size: number): Promise<Buffer> {
  return treeRoot(storeReader(store), size);
}

export async function logInclusionProof(store: Store, index: number, size: number): Promise<Buffer[]> {
  return inclusionProof(storeReader(store), index, size);
}

export async function logConsistencyProof(store: Store, from: number, to: number): Promise<Buffer[]> {
  return consistencyProof(storeReader(store), from, to);
}
