import { createHash, hash as oneShotHash } from 'node:crypto';

/**
 * RFC 9162 §2.1 Merkle tree hashing over SHA-256, written out because no maintained npm
 * library covers it. Hashes are raw 32-byte Buffers; sizes and indexes are plain numbers
 * (safe integers: a log of 2^53 entries is out of reach).
 *
 *   MTH({})       = SHA-256()
 *   leaf hash     = SHA-256(0x00 || entry)
 *   node hash     = SHA-256(0x01 || left || right)
 *   MTH(D[n])     = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n
 */

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

export const HASH_SIZE = 32;

/** SHA-256 of nothing: the root of the empty tree (RFC 9162 §2.1.1). */
export const EMPTY_ROOT = createHash('sha256').digest();

// crypto.hash (one shot) costs about half of a createHash object for inputs this small,
// which matters when a million entries are verified offline.
export function hashLeaf(entry: Uint8Array | string): Buffer {
  const bytes = typeof entry === 'string' ? Buffer.from(entry, 'utf8') : entry;
  return oneShotHash('sha256', Buffer.concat([LEAF_PREFIX, bytes]), 'buffer') as Buffer;
}

export function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  return oneShotHash('sha256', Buffer.concat([NODE_PREFIX, left, right]), 'buffer') as Buffer;
}

/** The largest power of two strictly smaller than `n` (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function checkSize(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`\`${name}\` must be a non-negative safe integer`);
}

/**
 * Reads the hash of the complete subtree at `level` (0 = leaves) and `index` (its
 * position among the subtrees of that level). A store that keeps these answers each
 * read from one row, so proofs cost O(log n) reads.
 */
export type SubtreeReader = (level: number, index: number) => Buffer | Promise<Buffer>;

/**
 * MTH of the leaves [start, end) where `end - start` need not be a power of two: the
 * range is cut into the complete subtrees that RFC 9162's recursion produces, each read
 * once through `read`.
 */
export async function rangeHash(read: SubtreeReader, start: number, end: number): Promise<Buffer> {
  const n = end - start;
  if (n === 0) return EMPTY_ROOT;
  // A complete, aligned subtree: one read.
  if ((n & (n - 1)) === 0 && start % n === 0) return await read(Math.log2(n), start / n);
  const k = splitPoint(n);
  return hashChildren(await rangeHash(read, start, start + k), await rangeHash(read, start + k, end));
}

/** The root of a tree of `size` leaves. */
export async function treeRoot(read: SubtreeReader, size: number): Promise<Buffer> {
  checkSize('size', size);
  return rangeHash(read, 0, size);
}

/**
 * RFC 9162 §2.1.3.1 PATH(m, D[n]): the inclusion proof of leaf `index` in the tree of
 * `size` leaves, from the leaf's sibling up to the root's child.
 */
export async function inclusionProof(read: SubtreeReader, index: number, size: number): Promise<Buffer[]> {
  checkSize('index', index);
  checkSize('size', size);
  if (index >= size) throw new RangeError(`index ${index} is not below size ${size}`);
  const path: Buffer[] = [];
  async function walk(m: number, start: number, end: number): Promise<void> {
    const n = end - start;
    if (n === 1) return;
    const k = splitPoint(n);
    if (m < k) {
      await walk(m, start, start + k);
      path.push(await rangeHash(read, start + k, end));
    } else {
      await walk(m - k, start + k, end);
      path.push(await rangeHash(read, start, start + k));
    }
  }
  await walk(index, 0, size);
  return path;
}

/**
 * RFC 9162 §2.1.4.1 PROOF(m, D[n]): the consistency proof that the tree of `from` leaves
 * is a prefix of the tree of `to` leaves.
 */
export async function consistencyProof(read: SubtreeReader, from: number, to: number): Promise<Buffer[]> {
  checkSize('from', from);
  checkSize('to', to);
  if (from > to) throw new RangeError(`size ${from} is larger than size ${to}`);
  if (from === 0 || from === to) return [];
  const proof: Buffer[] = [];
  async function subproof(m: number, start: number, end: number, complete: boolean): Promise<void> {
    const n = end - start;
    if (m === n) {
      if (!complete) proof.push(await rangeHash(read, start, end));
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      await subproof(m, start, start + k, complete);
      proof.push(await rangeHash(read, start + k, end));
    } else {
      await subproof(m - k, start + k, end, false);
      proof.push(await rangeHash(read, start, start + k));
    }
  }
  await subproof(from, 0, to, true);
  return proof;
}

export class ProofError extends Error {
  readonly code = 'invalid_proof';
}

function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === HASH_SIZE && b.length === HASH_SIZE && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

/**
 * RFC 9162 §2.1.3.2: verifies that `leafHash` is leaf `index` of the tree of `size`
 * leaves whose root is `root`. Throws ProofError on any mismatch.
 */
export function verifyInclusion(leafHash: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): void {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
    throw new ProofError(`index ${index} is not within a tree of size ${size}`);
  }
  if (leafHash.length !== HASH_SIZE) throw new ProofError('the leaf hash is not a SHA-256 hash');
  if (proof.some((p) => p.length !== HASH_SIZE)) throw new ProofError('a proof element is not a SHA-256 hash');
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leafHash);
  for (const p of proof) {
    if (sn === 0) throw new ProofError('the inclusion proof is longer than the tree is deep');
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new ProofError('the inclusion proof is shorter than the tree is deep');
  if (!sameHash(r, root)) throw new ProofError(`leaf ${index} does not lead to the root of the tree of size ${size}`);
}

/**
 * RFC 9162 §2.1.4.2: verifies that the tree of `from` leaves with root `fromRoot` is a
 * prefix of the tree of `to` leaves with root `toRoot`. Throws ProofError otherwise.
 */
export function verifyConsistency(from: number, to: number, proof: readonly Uint8Array[], fromRoot: Uint8Array, toRoot: Uint8Array): void {
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || to < 0) throw new ProofError('tree sizes must be non-negative integers');
  if (from > to) throw new ProofError(`the old size ${from} is larger than the new size ${to}`);
  if (proof.some((p) => p.length !== HASH_SIZE)) throw new ProofError('a proof element is not a SHA-256 hash');
  if (from === to) {
    if (proof.length !== 0) throw new ProofError('a proof between equal sizes must be empty');
    if (!sameHash(fromRoot, toRoot)) throw new ProofError(`two different roots for the same size ${from}`);
    return;
  }
  if (from === 0) {
    // Every tree extends the empty tree; RFC 9162 gives no proof for it.
    if (proof.length !== 0) throw new ProofError('a proof from the empty tree must be empty');
    return;
  }
  if (proof.length === 0) throw new ProofError('the consistency proof is empty');
  let path = [...proof];
  // If `from` is a power of two, the old root is itself the first node of the path.
  if ((from & (from - 1)) === 0) path = [Buffer.from(fromRoot), ...path];
  let fn = from - 1;
  let sn = to - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) throw new ProofError('the consistency proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new ProofError('the consistency proof is too short');
  if (!sameHash(fr, fromRoot)) throw new ProofError(`the proof does not lead to the old root of size ${from}`);
  if (!sameHash(sr, toRoot)) throw new ProofError(`the proof does not lead to the new root of size ${to}`);
}

/**
 * Builds every complete subtree hash of a list of leaf hashes in one pass, for callers
 * that hold the whole log in memory (offline verification of an export).
 * levels[0] are the leaf hashes; levels[h][i] covers leaves [i*2^h, (i+1)*2^h).
 */
export function buildLevels(leafHashes: readonly Buffer[]): Buffer[][] {
  const levels: Buffer[][] = [leafHashes.slice()];
  while (levels[levels.length - 1]!.length > 1) {
    const below = levels[levels.length - 1]!;
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < below.length; i += 2) next.push(hashChildren(below[i]!, below[i + 1]!));
    if (next.length === 0) break;
    levels.push(next);
  }
  return levels;
}

/** A SubtreeReader over levels from buildLevels. */
export function levelsReader(levels: Buffer[][]): SubtreeReader {
  return (level, index) => {
    const h = levels[level]?.[index];
    if (!h) throw new RangeError(`no subtree at level ${level}, index ${index}`);
    return h;
  };
}
