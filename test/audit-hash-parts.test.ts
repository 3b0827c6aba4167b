import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { computeEntryHash, entryHashParts, GENESIS_HASH } from '../src/core/audit-hash.js';
import { canonicalJson, sha256Hex } from '../src/core/digest.js';

describe('entryHashParts (an entry hashed around a seq learnt later)', () => {
  const entries = [
    { ts: 1, type: 'decision.allow', actor: 'agent:a', taskId: 't', agentId: 'a', decisionId: 'd', data: {} },
    // a nested "seq" key and values that look like the split point must not fool it
    { ts: 2, type: ',"seq":0,', actor: ',"seq":0,"taskId":', taskId: ',"seq":0,', agentId: null, decisionId: null, data: { seq: 0, x: { seq: 0, taskId: 'y' }, ',"seq":0,': ',"seq":0,' } },
    { ts: 1733212345678, type: 'ü 🔐', actor: "it's \\ \"q\"", taskId: null, agentId: null, decisionId: null, data: { a: [1, 2.5, null, true], z: 'é' } },
  ];
  it('SHA-256 of prevHash, a newline, before + seq + after is the entry hash, for any seq', () => {
    for (const e of entries) {
      const { before, after } = entryHashParts(e);
      for (const seq of [1, 9, 10, 123456789, Number.MAX_SAFE_INTEGER]) {
        const prevHash = seq % 2 ? GENESIS_HASH : 'ab'.repeat(32);
        assert.equal(sha256Hex(`${prevHash}\n${before}${seq}${after}`), computeEntryHash({ ...e, seq, prevHash }));
      }
    }
  });
});

describe('computeEntryHash (the chain hash of an entry)', () => {
  // RFC 8785 of the entry's own fields, whole: what any verifier in any language recomputes
  const reference = (e: Parameters<typeof computeEntryHash>[0]) =>
    sha256Hex(`${e.prevHash}\n${canonicalJson({ seq: e.seq, ts: e.ts, type: e.type, actor: e.actor, taskId: e.taskId, agentId: e.agentId, decisionId: e.decisionId, data: e.data })}`);
  const entries: Parameters<typeof computeEntryHash>[0][] = [
    { seq: 1, ts: 1, type: 'decision', actor: 'agent:a', taskId: 't', agentId: 'a', decisionId: 'd', data: {}, prevHash: GENESIS_HASH },
    { seq: 2, ts: 1733212345678, type: 'ü 🔐 \u2028', actor: "it's \\ \"q\"\n", taskId: null, agentId: null, decisionId: null, data: { z: 1, a: [1, 2.5, null, true, 1e21, -0], '\u00e9': { b: 'x', a: null } }, prevHash: 'ab'.repeat(32) },
    { seq: Number.MAX_SAFE_INTEGER, ts: 0, type: 'x', actor: '', taskId: '', agentId: 'spiffe://a/b', decisionId: null, data: { n: null, e: [] }, prevHash: 'cd'.repeat(32) },
    { seq: 3, ts: 4, type: 'decision', actor: 'a', taskId: null, agentId: null, decisionId: null, data: { list: ['a', { y: 2, x: 1 }], '': 0, A: 1, a: 2 }, prevHash: GENESIS_HASH },
  ];
  it('is SHA-256 of prevHash, a newline and the RFC 8785 JSON of the entry fields, whatever their values', () => {
    for (const e of entries) assert.equal(computeEntryHash(e), reference(e));
  });
  it('an undefined field is left out and a seq that is not a number refused, as RFC 8785 of the whole entry does', () => {
    const e = { ...entries[0]!, taskId: undefined as unknown as null };
    assert.equal(computeEntryHash(e), reference(e));
    assert.throws(() => computeEntryHash({ ...entries[0]!, seq: Number.NaN }));
  });
});
