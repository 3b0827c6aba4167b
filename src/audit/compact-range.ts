import { EMPTY_ROOT, hashChildren } from './merkle-tree.js';

/**
 * A compact range over leaves [0, size): the hashes of the complete subtrees that the
 * binary decomposition of `size` yields, largest first (RFC 9162 §2.1's recursion cuts
 * the tree the same way). Appending a leaf merges equal-sized neighbours, so a whole log
 * streams through in O(1) memory per level, and the root is a fold of at most log2(n)
 * hashes.
 */
export class CompactRange {
  private readonly hashes: Buffer[] = [];
  private readonly sizes: number[] = [];
  private count = 0;

  /** Starts from the nodes of an earlier prefix (largest subtree first), as `prefixNodes` lists them. */
  static fromPrefix(size: number, nodes: Buffer[]): CompactRange {
    const sizes = prefixSubtreeSizes(size);
    if (sizes.length !== nodes.length) throw new RangeError(`a prefix of ${size} leaves has ${sizes.length} subtrees, not ${nodes.length}`);
    const r = new CompactRange();
    r.hashes.push(...nodes);
    r.sizes.push(...sizes);
    r.count = size;
    return r;
  }

  get size(): number {
    return this.count;
  }

  append(leafHash: Buffer): void {
    let h = leafHash;
    let s = 1;
    while (this.sizes.length > 0 && this.sizes[this.sizes.length - 1] === s) {
      h = hashChildren(this.hashes.pop()!, h);
      this.sizes.pop();
      s *= 2;
    }
    this.hashes.push(h);
    this.sizes.push(s);
    this.count += 1;
  }

  root(): Buffer {
    if (this.hashes.length === 0) return EMPTY_ROOT;
    let r = this.hashes[this.hashes.length - 1]!;
    for (let i = this.hashes.length - 2; i >= 0; i--) r = hashChildren(this.hashes[i]!, r);
    return r;
  }
}

/** The sizes of the complete subtrees covering [0, size), largest first. */
export function prefixSubtreeSizes(size: number): number[] {
  const out: number[] = [];
  for (let bit = 2 ** Math.floor(Math.log2(Math.max(size, 1))); bit >= 1; bit /= 2) if (Math.floor(size / bit) % 2 === 1) out.push(bit);
  return out;
}

/** The (level, index) of each complete subtree covering [0, size), largest first. */
export function prefixNodes(size: number): Array<{ level: number; index: number }> {
  let offset = 0;
  return prefixSubtreeSizes(size).map((s) => {
    const node = { level: Math.log2(s), index: offset / s };
    offset += s;
    return node;
  });
}
