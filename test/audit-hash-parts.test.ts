import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { computeEntryHash, entryHashParts, GENESIS_HASH } from '../src/core/audit-hash.js';
import { sha256Hex } from '../src/core/digest.js';

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
