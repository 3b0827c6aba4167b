import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { ManualClock } from '../../src/core/clock.js';
import { hashLeaf } from '../../src/audit/merkle-tree.js';
import { extendTree, logConsistencyProof, logInclusionProof, logRoot } from '../../src/audit/merkle-log.js';
import { hashChildren as hashPair, verifyConsistency, verifyInclusion } from '../../src/audit/merkle-tree.js';
import { auditLeafBytes } from '../../src/core/audit-hash.js';
import { treeNodeKey, type Store } from '../../src/store/store.js';

/**
 * The part of the store contract (test/store-contract/contract.ts) for the audit Merkle tree and
 * its checkpoints. Registered inside `runStoreContract`; the store already holds the
 * entries earlier contract tests wrote, which is fine: the tree covers whatever is there.
 */
export function auditTreeContract(get: () => { store: Store; clock: ManualClock }): void {
  it('audit tree: nodes are stored once, the first copy stands, lookups miss cleanly', async () => {
    const { store } = get();
    const a = { level: 30, index: 7, hash: Buffer.alloc(32, 1) };
    await store.putAuditTreeNodes([a]);
    await store.putAuditTreeNodes([{ ...a, hash: Buffer.alloc(32, 2) }]);
    const got = await store.getAuditTreeNodes([{ level: 30, index: 7 }, { level: 30, index: 8 }]);
    assert.deepEqual(got.get(treeNodeKey(30, 7)), Buffer.alloc(32, 1));
    assert.equal(got.has(treeNodeKey(30, 8)), false);
    await store.putAuditTreeNodes([]);
    assert.deepEqual(await store.getAuditTreeNodes([]), new Map());
  });

  it('audit tree: extends in pieces to the same root as one pass, proofs verify, concurrent builders agree', async () => {
    const { store } = get();
    const appendMany = async (n: number) => {
      for (let i = 0; i < n; i += 50) {
        await store.appendAudit(Array.from({ length: Math.min(50, n - i) }, (_, k) => ({ type: 'tree.test', actor: 'system', data: { k: i + k } })));
      }
    };
    await appendMany(37);
    const before = await store.auditTreeSize();
    assert.equal(await extendTree(store, 5), before + 5);
    assert.equal(await store.auditTreeSize(), before + 5);
    // Two builders at once (as two instances would), in uneven steps.
    const [x, y] = await Promise.all([extendTree(store, 11), extendTree(store, 3)]);
    assert.ok(x >= 5 && y >= 5);
    await appendMany(1234);
    const sizes = await Promise.all([extendTree(store), extendTree(store)]);
    const head = (await store.auditHead())!;
    assert.deepEqual(sizes, [head.seq, head.seq]);
    assert.equal(await store.auditTreeSize(), head.seq);

    // The root from stored nodes equals the root from the entries themselves.
    const leaves: Buffer[] = [];
    for (let after = 0; ; ) {
      const page = await store.listAudit({ after, limit: 1000 });
      leaves.push(...page.map((e) => hashLeaf(auditLeafBytes(e))));
      if (page.length < 1000) break;
      after = page.at(-1)!.seq;
    }
    const reference = (ls: Buffer[]): Buffer => {
      if (ls.length === 1) return ls[0]!;
      let k = 1;
      while (k * 2 < ls.length) k *= 2;
      return hashPair(reference(ls.slice(0, k)), reference(ls.slice(k)));
    };
    const size = head.seq;
    const root = await logRoot(store, size);
    assert.deepEqual(root, reference(leaves));
    for (const index of [0, 1, Math.floor(size / 2), size - 2, size - 1]) {
      verifyInclusion(leaves[index]!, index, size, await logInclusionProof(store, index, size), root);
    }
    for (const from of [1, 5, 37, 64, size - 1]) {
      verifyConsistency(from, size, await logConsistencyProof(store, from, size), await logRoot(store, from), root);
    }
  });

  it('audit checkpoints: stored once per size, listed in order, latest', async () => {
    const { store, clock } = get();
    assert.equal(await store.latestAuditCheckpoint(), null);
    await store.putAuditCheckpoint({ size: 10, note: 'ten\n', createdAt: clock.now() });
    await store.putAuditCheckpoint({ size: 3, note: 'three\n', createdAt: clock.now() });
    await store.putAuditCheckpoint({ size: 10, note: 'other ten\n', createdAt: clock.now() + 1 });
    assert.deepEqual((await store.listAuditCheckpoints(0, 10)).map((c) => [c.size, c.note]), [
      [3, 'three\n'],
      [10, 'ten\n'],
    ]);
    assert.deepEqual((await store.listAuditCheckpoints(3, 10)).map((c) => c.size), [10]);
    assert.equal((await store.latestAuditCheckpoint())?.note, 'ten\n');
  });
}
