import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  buildLevels,
  consistencyProof,
  EMPTY_ROOT,
  hashChildren,
  hashLeaf,
  inclusionProof,
  levelsReader,
  ProofError,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
} from '../src/audit/merkle-tree.js';

// RFC 6962 / RFC 9162 test vectors, as published with the transparency-dev Merkle
// library (testonly/constants.go): eight leaf inputs and the root of every prefix.
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map((h) =>
  Buffer.from(h, 'hex'),
);
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map((h) => Buffer.from(h, 'hex'));

/** Reference MTH straight from RFC 9162 §2.1.1's recursive definition. */
function referenceRoot(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  if (leaves.length === 1) return hashLeaf(leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return hashChildren(referenceRoot(leaves.slice(0, k)), referenceRoot(leaves.slice(k)));
}

function randomLeaves(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(`entry-${i}`));
}

describe('merkle tree (RFC 9162)', () => {
  const levels = buildLevels(LEAVES.map((l) => hashLeaf(l)));
  const read = levelsReader(levels);

  it('matches the published root of every prefix of the 8-leaf vector', async () => {
    assert.deepEqual(EMPTY_ROOT, ROOTS[0]);
    for (let n = 0; n <= 8; n++) {
      const prefix = levelsReader(buildLevels(LEAVES.slice(0, n).map((l) => hashLeaf(l))));
      assert.equal((await treeRoot(prefix, n)).toString('hex'), ROOTS[n]!.toString('hex'), `size ${n}`);
      // The full tree's subtree reads give the same roots for every prefix.
      assert.equal((await treeRoot(read, n)).toString('hex'), ROOTS[n]!.toString('hex'), `size ${n} from the full tree`);
    }
  });

  it('matches the recursive definition for every size up to 70', async () => {
    const leaves = randomLeaves(70);
    const r = levelsReader(buildLevels(leaves.map((l) => hashLeaf(l))));
    for (let n = 0; n <= 70; n++) assert.deepEqual(await treeRoot(r, n), referenceRoot(leaves.slice(0, n)));
  });

  it('inclusion proofs verify for every leaf of every size up to 40, with O(log n) reads', async () => {
    const leaves = randomLeaves(40);
    const lv = buildLevels(leaves.map((l) => hashLeaf(l)));
    let reads = 0;
    const counting = (level: number, index: number) => (reads++, levelsReader(lv)(level, index));
    for (let size = 1; size <= 40; size++) {
      const root = referenceRoot(leaves.slice(0, size));
      for (let i = 0; i < size; i++) {
        reads = 0;
        const proof = await inclusionProof(counting, i, size);
        assert.ok(reads <= 2 * Math.ceil(Math.log2(size)) + 1, `reads ${reads} for size ${size}`);
        verifyInclusion(hashLeaf(leaves[i]!), i, size, proof, root);
      }
    }
  });

  it('consistency proofs verify for every pair of sizes up to 33', async () => {
    const leaves = randomLeaves(33);
    const r = levelsReader(buildLevels(leaves.map((l) => hashLeaf(l))));
    for (let to = 0; to <= 33; to++) {
      const toRoot = referenceRoot(leaves.slice(0, to));
      for (let from = 0; from <= to; from++) {
        const proof = await consistencyProof(r, from, to);
        verifyConsistency(from, to, proof, referenceRoot(leaves.slice(0, from)), toRoot);
      }
    }
  });

  describe('mutations are rejected (Trillian-style)', () => {
    const leaves = randomLeaves(13);
    const r = levelsReader(buildLevels(leaves.map((l) => hashLeaf(l))));
    const rootOf = (n: number) => referenceRoot(leaves.slice(0, n));

    it('inclusion: each element flipped, index ±1, size ×2, wrong root, truncated, extended, wrong leaf', async () => {
      for (const [index, size] of [
        [0, 1],
        [0, 13],
        [5, 13],
        [12, 13],
        [7, 8],
        [3, 6],
      ] as const) {
        const proof = await inclusionProof(r, index, size);
        const leaf = hashLeaf(leaves[index]!);
        const root = rootOf(size);
        verifyInclusion(leaf, index, size, proof, root);
        const bad: Array<[string, () => void]> = [];
        proof.forEach((_, k) => {
          const p = proof.map((x) => Buffer.from(x));
          p[k]![0]! ^= 1;
          bad.push([`element ${k} flipped`, () => verifyInclusion(leaf, index, size, p, root)]);
        });
        bad.push(['index + 1', () => verifyInclusion(leaf, index + 1, size, proof, root)]);
        if (index > 0) bad.push(['index - 1', () => verifyInclusion(leaf, index - 1, size, proof, root)]);
        bad.push(['size x 2', () => verifyInclusion(leaf, index, size * 2, proof, root)]);
        bad.push(['wrong root', () => verifyInclusion(leaf, index, size, proof, rootOf(size - 1))]);
        if (proof.length) bad.push(['truncated', () => verifyInclusion(leaf, index, size, proof.slice(0, -1), root)]);
        bad.push(['extended', () => verifyInclusion(leaf, index, size, [...proof, EMPTY_ROOT], root)]);
        bad.push(['wrong leaf', () => verifyInclusion(hashLeaf('x'), index, size, proof, root)]);
        bad.push(['leaf data instead of leaf hash', () => verifyInclusion(leaves[index]!, index, size, proof, root)]);
        if (proof.length) bad.push(['short element', () => verifyInclusion(leaf, index, size, proof.map((p) => p.subarray(1)), root)]);
        bad.push(['index = size', () => verifyInclusion(leaf, size, size, proof, root)]);
        bad.push(['negative index', () => verifyInclusion(leaf, -1, size, proof, root)]);
        for (const [what, f] of bad) assert.throws(f, ProofError, `${what} at ${index}/${size}`);
      }
    });

    it('consistency: each element flipped, sizes swapped or shifted, wrong roots, truncated, old > new', async () => {
      for (const [from, to] of [
        [1, 13],
        [4, 13],
        [5, 13],
        [7, 8],
        [6, 9],
        [12, 13],
      ] as const) {
        const proof = await consistencyProof(r, from, to);
        const a = rootOf(from);
        const b = rootOf(to);
        verifyConsistency(from, to, proof, a, b);
        const bad: Array<[string, () => void]> = [];
        proof.forEach((_, k) => {
          const p = proof.map((x) => Buffer.from(x));
          p[k]![31]! ^= 0x80;
          bad.push([`element ${k} flipped`, () => verifyConsistency(from, to, p, a, b)]);
        });
        bad.push(['old > new', () => verifyConsistency(to, from, proof, b, a)]);
        bad.push(['from + 1', () => verifyConsistency(from + 1, to, proof, a, b)]);
        bad.push(['to x 2', () => verifyConsistency(from, to * 2, proof, a, b)]);
        bad.push(['wrong old root', () => verifyConsistency(from, to, proof, rootOf(from + 1), b)]);
        bad.push(['wrong new root', () => verifyConsistency(from, to, proof, a, rootOf(to - 1))]);
        bad.push(['truncated', () => verifyConsistency(from, to, proof.slice(0, -1), a, b)]);
        bad.push(['extended', () => verifyConsistency(from, to, [...proof, EMPTY_ROOT], a, b)]);
        bad.push(['empty', () => verifyConsistency(from, to, [], a, b)]);
        for (const [what, f] of bad) assert.throws(f, ProofError, `${what} at ${from}->${to}`);
      }
      // A fork: the same size with two different roots.
      assert.throws(() => verifyConsistency(5, 5, [], rootOf(5), rootOf(4)), ProofError);
      assert.throws(() => verifyConsistency(0, 5, [EMPTY_ROOT], EMPTY_ROOT, rootOf(5)), ProofError);
    });
  });

  it('refuses to build proofs for impossible ranges', async () => {
    await assert.rejects(inclusionProof(read, 8, 8), RangeError);
    await assert.rejects(consistencyProof(read, 5, 4), RangeError);
    await assert.rejects(inclusionProof(read, -1, 8), TypeError);
  });
});
