import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkIssuerInput, claimPath, readClaim, ruleMatches, type IssuerInput } from '../src/identity/issuers.js';
import { issuerIdentity, replayKey } from '../src/identity/token-exchange.js';
import { issuerParams, toIssuer, upgradeLegacyClaimName } from '../src/store/issuer-rows.js';
import type { IssuerRecord } from '../src/core/types.js';

const ROLE = 'https://example.com/claims/role';

describe('rule claim names: literal names and JSON Pointers (RFC 6901)', () => {
  it('a name without a leading `/` is one literal top-level name, URLs and dots included', () => {
    for (const name of ['sub', ROLE, `${ROLE}/`, 'kubernetes.io', 'kubernetes.io/namespace', 'a.b.c', '..', '.', 'a//b', 'a~1b', ' sub']) {
      assert.deepEqual(claimPath(name), [name], name);
    }
  });

  it('a name with a leading `/` is a pointer: members split on `/`, `~1` and `~0` unescaped in that order', () => {
    assert.deepEqual(claimPath('/kubernetes.io/namespace'), ['kubernetes.io', 'namespace']);
    assert.deepEqual(claimPath('/https:~1~1example.com~1claims~1role'), [ROLE]);
    assert.deepEqual(claimPath('/a~01'), ['a~1'], '`~01` is `~` then `1`, not `/`');
    assert.deepEqual(claimPath('/a~10'), ['a/0']);
    assert.deepEqual(claimPath('/org/..'), ['org', '..']);
    assert.deepEqual(claimPath('/org/./team'), ['org', '.', 'team']);
  });

  it('refuses empty names, empty pointer members and bad escapes', () => {
    for (const bad of ['', '/', '//', '/a/', '/a//b', '//a', '/a~', '/a~2', '/~', '/a~b']) {
      assert.throws(() => claimPath(bad), Error, JSON.stringify(bad));
    }
  });

  it('reads own members of plain objects only; never a list, a prototype, or a guess', () => {
    const claims = JSON.parse(
      JSON.stringify({
        [ROLE]: 'deployer',
        'a.b': 1,
        a: { b: 2, '..': 'up', list: ['x'] },
        'a/b': 3,
        org: JSON.parse('{"__proto__": {"team": "billing"}}'),
      }),
    );
    assert.equal(readClaim(claims, ROLE), 'deployer');
    assert.equal(readClaim(claims, `${ROLE}/`), undefined, 'a trailing slash is another name');
    assert.equal(readClaim(claims, '/https:~1~1example.com~1claims~1role'), 'deployer');
    assert.equal(readClaim(claims, 'a.b'), 1);
    assert.equal(readClaim(claims, '/a/b'), 2, 'the pointer reads the nested member');
    assert.equal(readClaim(claims, 'a/b'), 3, 'the literal name reads the top-level member spelled with a slash');
    assert.equal(readClaim(claims, '/a~1b'), 3);
    assert.equal(readClaim(claims, '/a/..'), 'up');
    assert.equal(readClaim(claims, '/a/list/0'), undefined, 'lists are not entered');
    assert.equal(readClaim(claims, '/org/team'), undefined, 'a member named `__proto__` is not a prototype');
    assert.equal(readClaim(claims, '/a/b/c'), undefined, 'a number has no members');
    assert.equal(readClaim(claims, 'constructor'), undefined);
    assert.equal(readClaim(claims, '/constructor/name'), undefined);
    assert.equal(readClaim(claims, '/a//b'), undefined, 'a stored bad pointer matches nothing');
  });

  it('matches rules exactly on either form', () => {
    const rule = { claims: { sub: 's', [ROLE]: 'deployer', '/kubernetes.io/namespace': 'billing' }, agentId: 'a' };
    const token = { sub: 's', [ROLE]: 'deployer', 'kubernetes.io': { namespace: 'billing' } };
    assert.equal(ruleMatches(rule, token), true);
    assert.equal(ruleMatches(rule, { ...token, 'kubernetes.io': undefined, 'kubernetes.io/namespace': 'billing' }), false);
    assert.equal(ruleMatches(rule, { ...token, [ROLE]: ['deployer'] }), false);
  });

  it('registration: URL names accepted; one claim named twice, empty members and bad escapes refused', () => {
    const base: IssuerInput = { issuer: 'https://idp.test', audience: 'writ', jwks_uri: 'https://idp.test/jwks', rules: [] };
    const ok = checkIssuerInput({ ...base, rules: [{ claims: { sub: 's', [ROLE]: 'x', '/a/b': 'y', 'c.d': true }, agent_id: 'agent' }] });
    assert.deepEqual(ok.rules[0]!.claims, { sub: 's', [ROLE]: 'x', '/a/b': 'y', 'c.d': true });
    const refused: Record<string, string>[] = [{ sub: 's', '/a//b': 'x' }, { sub: 's', '/a~2': 'x' }, { sub: 's', role: 'x', '/role': 'y' }, { sub: 's', '/sub': 's' }, { sub: 's', [ROLE]: 'x', '/https:~1~1example.com~1claims~1role': 'x' }];
    for (const claims of refused) {
      assert.throws(() => checkIssuerInput({ ...base, rules: [{ claims, agent_id: 'agent' }] }), { code: 'invalid_request' }, JSON.stringify(claims));
    }
    // two rules naming one claim in two spellings, for two agents: refused as the same claims
    assert.throws(
      () => checkIssuerInput({ ...base, rules: [{ claims: { sub: 's', role: 'x' }, agent_id: 'a' }, { claims: { sub: 's', '/role': 'x' }, agent_id: 'b' }] }),
      { code: 'invalid_request' },
    );
  });
});

describe('stored rules', () => {
  const record: IssuerRecord = {
    id: 'iss_1',
    kind: 'oidc',
    issuer: 'https://idp.test',
    audience: 'writ',
    jwks: null,
    jwksUri: 'https://idp.test/jwks',
    rules: [{ claims: { sub: 's', [ROLE]: 'x', '/a/b': 'y', 'kubernetes.io/namespace': 'literal' }, agentId: 'a' }],
    status: 'active',
    createdAt: 1,
    createdBy: 'op',
    disabledAt: null,
  };
  const row = (rules: string) => {
    const p = issuerParams(record);
    return { id: p[0], kind: p[1], issuer: p[2], audience: p[3], jwks: p[4], jwks_uri: p[5], rules, status: p[7], created_at: p[8], created_by: p[9], disabled_at: p[10] };
  };

  it('round-trip as written', () => {
    assert.deepEqual(toIssuer(row(issuerParams(record)[6] as string)), record);
  });

  it('rules written before the two forms read a name with `/` as the nested path', () => {
    const legacy = JSON.stringify([{ claims: { sub: 's', 'kubernetes.io/namespace': 'billing', 'a~b/c': 1, plain: true }, agentId: 'a' }]);
    assert.deepEqual(toIssuer(row(legacy)).rules, [{ claims: { sub: 's', '/kubernetes.io/namespace': 'billing', '/a~0b/c': 1, plain: true }, agentId: 'a' }]);
    assert.equal(upgradeLegacyClaimName('x'), 'x');
    assert.deepEqual(claimPath(upgradeLegacyClaimName('a~b/c')), ['a~b', 'c']);
  });
});

describe('replay memory key', () => {
  const oidc = (issuer: string) => ({ kind: 'oidc' as const, issuer });
  it('one issuer in several spellings is one identity; a path, a scheme or another host is another', () => {
    const same = ['https://idp.example.com', 'https://IDP.Example.com', 'https://idp.example.com/', 'https://idp.example.com:443', 'https://idp.example.com:443/', 'HTTPS://idp.example.com'];
    for (const s of same) assert.equal(issuerIdentity(oidc(s)), 'https://idp.example.com', s);
    assert.equal(issuerIdentity(oidc('https://idp.example.com/tenant/')), issuerIdentity(oidc('https://idp.example.com/tenant')));
    const distinct = ['https://idp.example.com/tenant', 'https://idp.example.com/Tenant', 'http://idp.example.com', 'https://idp.example.com:8443', 'https://idp2.example.com'];
    assert.equal(new Set(distinct.map((d) => issuerIdentity(oidc(d)))).size, distinct.length);
    assert.ok(!distinct.map((d) => issuerIdentity(oidc(d))).includes('https://idp.example.com'));
    assert.equal(issuerIdentity({ kind: 'spiffe', issuer: 'spiffe://acme.test' }), 'spiffe://acme.test');
  });

  it('keys by issuer identity, subject, task and jti, with no separator ambiguity', () => {
    const k = (iss: string, sub: string, task: string, jti: string) => replayKey(oidc(iss), sub, task, jti);
    assert.equal(k('https://idp.test', 's', 't', 'j'), k('https://IDP.test/', 's', 't', 'j'));
    const variants = [k('https://idp.test', 's', 't', 'j'), k('https://idp.test', 's2', 't', 'j'), k('https://idp.test', 's', 't2', 'j'), k('https://idp.test', 's', 't', 'j2'), k('https://idp2.test', 's', 't', 'j')];
    assert.equal(new Set(variants).size, variants.length);
    // shifting a `:` between fields never gives the same key
    assert.notEqual(k('https://idp.test', 'a:b', 't', 'j'), k('https://idp.test', 'a', 'b:t', 'j'));
    assert.match(k('https://idp.test', 's', 't', 'j'), /^subject:[0-9a-f]{64}$/);
  });
});
