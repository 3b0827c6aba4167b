import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WritError } from '../src/core/errors.js';
import { checkAgentId, isSpiffeId, parseSpiffeId, SpiffeIdError } from '../src/identity/spiffe-id.js';

describe('SPIFFE ID syntax', () => {
  it('accepts valid ids and splits trust domain and path', () => {
    assert.deepEqual(parseSpiffeId('spiffe://acme.test/agent/billing'), { trustDomain: 'acme.test', path: '/agent/billing' });
    assert.deepEqual(parseSpiffeId('spiffe://acme.test'), { trustDomain: 'acme.test', path: '' });
    for (const ok of [
      'spiffe://example.org/ns/prod/sa/default',
      'spiffe://a_b-c.9/x',
      'spiffe://td/Upper.Case_path-1/...x/.hidden/x..',
      `spiffe://${'a'.repeat(255)}/x`,
      `spiffe://td/${'a'.repeat(2048 - 'spiffe://td/'.length)}`,
    ]) {
      assert.equal(isSpiffeId(ok), true, ok);
    }
  });

  it('refuses every malformed id with a reason', () => {
    const bad: [string, RegExp][] = [
      ['', /empty/],
      ['http://acme.test/x', /starts with/],
      ['SPIFFE://acme.test/x', /lowercase/],
      ['spiffe:acme.test/x', /starts with/],
      ['spiffe:///x', /trust domain is empty/],
      ['spiffe://', /trust domain is empty/],
      ['spiffe://Acme.test/x', /lowercase/],
      ['spiffe://acme.test:8443/x', /port/],
      ['spiffe://user@acme.test/x', /user info/],
      ['spiffe://acme.test?x=1', /query or fragment/],
      ['spiffe://acme.test/x?y=1', /query or fragment/],
      ['spiffe://acme.test/x#frag', /query or fragment/],
      ['spiffe://acme.test/', /empty segment/],
      ['spiffe://acme.test/x/', /empty segment/],
      ['spiffe://acme.test//x', /empty segment/],
      ['spiffe://acme.test/./x', /`\.` or `\.\.`/],
      ['spiffe://acme.test/x/..', /`\.` or `\.\.`/],
      ['spiffe://acme.test/x%20y', /not allowed: `%`/],
      ['spiffe://acme.test/x y', /not allowed: U\+0020/],
      ['spiffe://acme.test/ü', /not allowed: U\+00FC/],
      ['spiffe://acme~test/x', /not allowed: `~`/],
      ['spiffe://acme.test/x:y', /not allowed: `:`/],
      [`spiffe://${'a'.repeat(256)}/x`, /at most 255/],
      [`spiffe://td/${'a'.repeat(2049 - 'spiffe://td/'.length)}`, /at most 2048 bytes/],
    ];
    for (const [id, why] of bad) {
      assert.throws(() => parseSpiffeId(id), (e: unknown) => e instanceof SpiffeIdError && why.test(e.message), `${id} -> ${why}`);
      assert.equal(isSpiffeId(id), false, id);
    }
  });

  it('agent ids: spiffe-looking ids must validate (400 invalid_agent_id); other ids pass through', () => {
    assert.doesNotThrow(() => checkAgentId('spiffe://acme.test/agent/billing'));
    assert.doesNotThrow(() => checkAgentId('billing-bot'));
    assert.doesNotThrow(() => checkAgentId('urn:agent:billing'));
    for (const id of ['spiffe://acme.test/agent/', 'Spiffe://acme.test/a', 'spiffe://ACME/x', 'spiffe://acme.test/a/../b']) {
      assert.throws(() => checkAgentId(id), (e: unknown) => e instanceof WritError && e.status === 400 && e.code === 'invalid_agent_id', id);
    }
  });
});
