import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newId, newSecret } from '../src/core/ids.js';

describe('ids', () => {
  it('are a prefix and 128 random bits, never repeated across many pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const id = newId('dec');
      assert.match(id, /^dec_[A-Za-z0-9_-]{22}$/);
      assert.equal(seen.has(id), false);
      seen.add(id);
    }
    assert.match(newSecret('wop'), /^wop_[A-Za-z0-9_-]{43}$/);
  });
});
