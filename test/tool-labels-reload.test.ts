// The tool labels are re-read at most once a second (src/service/tool-labels.ts): the
// requests that find them stale at once share one read, a failed read fails those
// requests (never an answer without the labels), and a change made here is read again.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ToolLabelsRecord } from '../src/core/types.js';
import type { Store } from '../src/store/store.js';
import { ToolLabelRegistry } from '../src/service/tool-labels.js';

function fakeStore() {
  const reads: { resolve: (r: ToolLabelsRecord[]) => void; reject: (e: Error) => void }[] = [];
  const store = {
    listToolLabels: () => new Promise<ToolLabelsRecord[]>((resolve, reject) => reads.push({ resolve, reject })),
  } as unknown as Store;
  return { store, reads };
}
const rec = (pattern: string, labels: string[]): ToolLabelsRecord => ({ pattern, labels, updatedAt: 0, updatedBy: 'op' });
const tick = () => new Promise((r) => setImmediate(r));

describe('tool labels re-read', () => {
  it('requests that find the labels stale at once share one read', async () => {
    const { store, reads } = fakeStore();
    let now = 10_000;
    const reg = new ToolLabelRegistry(store, { now: () => now });
    const answers = Promise.all(Array.from({ length: 32 }, () => reg.labelsFor('github.delete_repo')));
    await tick();
    assert.equal(reads.length, 1);
    reads[0]!.resolve([rec('github.*', ['writes'])]);
    assert.deepEqual(await answers, Array.from({ length: 32 }, () => ['writes']));
    now += 999;
    assert.deepEqual(await reg.labelsFor('github.x'), ['writes']);
    assert.equal(reads.length, 1, 'fresh for a second: not read again');
    now += 1;
    const again = reg.labelsFor('github.x');
    await tick();
    assert.equal(reads.length, 2, 'stale after a second: read again');
    reads[1]!.resolve([]);
    assert.deepEqual(await again, []);
  });

  it('a failed read fails every request waiting on it, and the next request reads again', async () => {
    const { store, reads } = fakeStore();
    const reg = new ToolLabelRegistry(store, { now: () => 5_000 });
    const a = reg.labelsFor('t');
    const b = reg.labelsFor('t');
    await tick();
    assert.equal(reads.length, 1);
    reads[0]!.reject(new Error('store down'));
    await assert.rejects(a, /store down/);
    await assert.rejects(b, /store down/);
    const c = reg.labelsFor('t');
    await tick();
    assert.equal(reads.length, 2);
    reads[1]!.resolve([rec('t', ['sensitive'])]);
    assert.deepEqual(await c, ['sensitive']);
  });

  it('a change made here is read again, even while an older read is in flight', async () => {
    const { store, reads } = fakeStore();
    const reg = new ToolLabelRegistry(store, { now: () => 5_000 });
    const old = reg.labelsFor('t');
    await tick();
    reg.invalidate(); // a PUT committed after the read above was sent
    const fresh = reg.labelsFor('t');
    await tick();
    assert.equal(reads.length, 2, 'the request after the change does not wait on the older read');
    reads[1]!.resolve([rec('t', ['writes'])]);
    assert.deepEqual(await fresh, ['writes']);
    reads[0]!.resolve([]); // the older read answers last: its entries are not kept
    assert.deepEqual(await old, ['writes'], 'the older read\'s waiters see the newer entries, never fewer labels than are set');
    assert.deepEqual(await reg.labelsFor('t'), ['writes']);
    assert.equal(reads.length, 2);
  });
});
