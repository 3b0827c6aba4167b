import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GroupCommit } from '../src/audit/group-commit.js';

/** A commit function that records its batches and answers after `ms`. */
function recorder(ms = 5, fail?: (items: string[]) => boolean) {
  const batches: string[][] = [];
  const commit = async (items: string[]) => {
    batches.push([...items]);
    await new Promise((ok) => setTimeout(ok, ms));
    if (fail?.(items)) throw new Error('commit failed');
    return items.map((i) => `ok:${i}`);
  };
  return { batches, commit };
}

describe('GroupCommit', () => {
  it('groups items that arrive while a commit is in flight; answers each in order', async () => {
    const r = recorder();
    const g = new GroupCommit(r.commit, 256);
    const first = g.submit('a');
    await new Promise((ok) => setImmediate(ok));
    const rest = ['b', 'c', 'd'].map((x) => g.submit(x));
    assert.deepEqual(await Promise.all([first, ...rest]), ['ok:a', 'ok:b', 'ok:c', 'ok:d']);
    assert.deepEqual(r.batches, [['a'], ['b', 'c', 'd']]);
  });

  it('a lazy item rides with the next eager one and starts no commit of its own', async () => {
    const r = recorder(1);
    const g = new GroupCommit(r.commit, 256, 10_000);
    const lazy = g.submit('outcome', { lazy: true });
    await new Promise((ok) => setTimeout(ok, 30));
    assert.deepEqual(r.batches, [], 'nothing committed for the lazy item alone');
    assert.equal(await g.submit('decision'), 'ok:decision');
    assert.equal(await lazy, 'ok:outcome');
    assert.deepEqual(r.batches, [['outcome', 'decision']], 'one commit for both');
  });

  it('a lazy item is committed after lingerMs when nothing eager comes', async () => {
    const r = recorder(1);
    const g = new GroupCommit(r.commit, 256, 20);
    const t0 = performance.now();
    assert.equal(await g.submit('outcome', { lazy: true }), 'ok:outcome');
    assert.ok(performance.now() - t0 >= 15, 'it waited for its linger');
    assert.deepEqual(r.batches, [['outcome']]);
  });

  it('drain commits lingering lazy items at once', async () => {
    const r = recorder(1);
    const g = new GroupCommit(r.commit, 256, 60_000);
    const lazy = g.submit('outcome', { lazy: true });
    await g.drain();
    assert.equal(await lazy, 'ok:outcome');
    assert.deepEqual(r.batches, [['outcome']]);
  });

  it('a failed batch rejects every caller in it, lazy ones too (fail closed)', async () => {
    const r = recorder(1, (items) => items.includes('bad'));
    const g = new GroupCommit(r.commit, 256, 60_000);
    const lazy = g.submit('outcome', { lazy: true });
    const bad = g.submit('bad');
    await assert.rejects(bad, /commit failed/);
    await assert.rejects(lazy, /commit failed/);
    assert.equal(await g.submit('next'), 'ok:next', 'the next batch commits');
  });

  it('keeps batches to maxBatch and commits what is left', async () => {
    const r = recorder(1);
    const g = new GroupCommit(r.commit, 3, 60_000);
    const all = Array.from({ length: 7 }, (_, i) => g.submit(`x${i}`));
    assert.equal((await Promise.all(all)).length, 7);
    assert.deepEqual(r.batches.map((b) => b.length), [3, 3, 1]);
    // lazy items beyond a full batch are not stranded
    const lazies = Array.from({ length: 4 }, (_, i) => g.submit(`l${i}`, { lazy: true }));
    const eager = g.submit('e');
    assert.equal((await Promise.all([...lazies, eager])).length, 5);
  });
});
