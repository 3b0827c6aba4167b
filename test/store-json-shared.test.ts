import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonShared } from '../src/store/rows.js';

/**
 * The JSON columns of the per-request task read are parsed once per distinct text
 * (src/store/rows.ts `jsonShared`). What the cache must never do: answer a value for a
 * text that differs (by one character, or only in spacing or key order), or hand out a
 * value a reader could change for the next one.
 */
describe('jsonShared: JSON columns parsed once per exact text', () => {
  it('the same text answers the same frozen value; a parsed value (PostgreSQL jsonb) passes through', () => {
    const text = JSON.stringify({ tools: ['github.*'], resources: [], destinations: ['api.github.com'] });
    const a = jsonShared<{ tools: string[] }>(text);
    assert.equal(jsonShared(String(text)), a);
    assert.deepEqual(a, JSON.parse(text));
    assert.ok(Object.isFrozen(a) && Object.isFrozen(a.tools));
    assert.throws(() => a.tools.push('*'), TypeError);
    assert.throws(() => { (a as { tools: string[] }).tools = ['*']; }, TypeError);
    assert.deepEqual(jsonShared(text), JSON.parse(text));
    const parsed = { keys: [] };
    assert.equal(jsonShared(parsed), parsed);
    assert.equal(Object.isFrozen(parsed), false);
  });

  it('a text that differs in any way is parsed afresh: one character, spacing, key order', () => {
    const base = '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"aaaa","kid":"k1"}]}';
    const a = jsonShared<{ keys: { x: string; kid: string }[] }>(base);
    const b = jsonShared<{ keys: { x: string; kid: string }[] }>(base.replace('aaaa', 'aaab'));
    assert.notEqual(a, b);
    assert.equal(a.keys[0]!.x, 'aaaa');
    assert.equal(b.keys[0]!.x, 'aaab');
    const spaced = jsonShared<{ keys: { kid: string }[] }>(base.replace('"kid":"k1"', '"kid": "k2"'));
    assert.equal(spaced.keys[0]!.kid, 'k2');
    assert.deepEqual(jsonShared('["a","b"]'), ['a', 'b']);
    assert.deepEqual(jsonShared('["b","a"]'), ['b', 'a']);
  });

  it('bad JSON throws every time (nothing cached)', () => {
    assert.throws(() => jsonShared('{"keys":'), SyntaxError);
    assert.throws(() => jsonShared('{"keys":'), SyntaxError);
  });

  it('stays bounded: past its size it starts over, and values stay correct', () => {
    const big = 'x'.repeat(100_000);
    for (let i = 0; i < 60; i++) assert.equal(jsonShared<string[]>(JSON.stringify([big, i]))[1], i);
    assert.equal(jsonShared<string[]>(JSON.stringify([big, 3]))[1], 3);
  });
});
