import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReadBatcher } from '../src/store/postgres/read-batcher.js';

/** A fetch whose batches the test answers by hand, in any order. */
function manual(rows: Record<string, string>) {
  const batches: { keys: string[]; answer: () => void; fail: (err: Error) => void }[] = [];
  const fetch = (keys: string[]) =>
    new Promise<Map<string, string>>((resolve, reject) => {
      batches.push({
        keys,
        answer: () => resolve(new Map(keys.filter((k) => k in rows).map((k) => [k, rows[k]!]))),
        fail: reject,
      });
    });
  return { batches, fetch };
}

describe('ReadBatcher (PostgreSQL task reads)', () => {
  it('a read asked while batches are out waits for a batch sent after it; keys of one batch are read once', async () => {
    const m = manual({ a: 'A', b: 'B' });
    const r = new ReadBatcher(m.fetch, 1);
    const first = r.read('a');
    assert.deepEqual(m.batches.map((b) => b.keys), [['a']]);
    // asked after the first batch was sent: never answered by it
    const later = [r.read('a'), r.read('b'), r.read('a'), r.read('zz')];
    assert.equal(m.batches.length, 1);
    let laterDone = false;
    void Promise.all(later).then(() => (laterDone = true));
    m.batches[0]!.answer();
    assert.equal(await first, 'A');
    await new Promise((ok) => setImmediate(ok));
    assert.equal(laterDone, false, 'the later reads wait for their own batch');
    assert.deepEqual(m.batches.map((b) => b.keys), [['a'], ['a', 'b', 'zz']]);
    m.batches[1]!.answer();
    assert.deepEqual(await Promise.all(later), ['A', 'B', 'A', undefined]);
  });

  it('sends up to maxInFlight batches at once', async () => {
    const m = manual({ a: 'A', b: 'B', c: 'C' });
    const r = new ReadBatcher(m.fetch, 2);
    const reads = [r.read('a'), r.read('b'), r.read('c')];
    assert.deepEqual(m.batches.map((b) => b.keys), [['a'], ['b']]);
    m.batches[1]!.answer();
    await new Promise((ok) => setImmediate(ok));
    assert.deepEqual(m.batches.map((b) => b.keys), [['a'], ['b'], ['c']]);
    m.batches[0]!.answer();
    m.batches[2]!.answer();
    assert.deepEqual(await Promise.all(reads), ['A', 'B', 'C']);
  });

  it("a failed batch rejects each of its reads with the store's error; the next batch still runs", async () => {
    const m = manual({ a: 'A' });
    const r = new ReadBatcher(m.fetch, 1);
    const first = r.read('a');
    const second = [r.read('a'), r.read('b')];
    m.batches[0]!.fail(new Error('store down'));
    await assert.rejects(first, /store down/);
    await new Promise((ok) => setImmediate(ok));
    m.batches[1]!.fail(new Error('still down'));
    for (const p of second) await assert.rejects(p, /still down/);
    const third = r.read('a');
    m.batches[2]!.answer();
    assert.equal(await third, 'A');
  });

  it('a fetch that throws at once rejects its reads', async () => {
    const r = new ReadBatcher<string, string>(() => {
      throw new Error('no pool');
    });
    await assert.rejects(r.read('a'), /no pool/);
  });
});
