import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { InProcessAuthorizer } from '../src/gateway/authorizer.js';
import { accessTokenHash } from '../src/tokens/dpop.js';
import { Api, backends, makeAssertion, setup } from './helpers/harness.js';

/** DPoP (RFC 9449): task tokens bound to the agent's key; every check of §4.3 has a negative case. */

const AUD = 'https://tools.example/docs';
type Env = Awaited<ReturnType<typeof setup>>;

interface ProofKey {
  key: CryptoKey;
  jwk: JWK;
  alg: string;
}
async function proofKey(alg: 'EdDSA' | 'ES256' = 'EdDSA'): Promise<ProofKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg === 'ES256' ? 'ES256' : 'Ed25519', { extractable: true });
  return { key: privateKey, jwk: await exportJWK(publicKey), alg };
}

async function proof(k: ProofKey, htm: string, htu: string, over: { ath?: string | null; iat?: number; jti?: string; nonce?: string; typ?: string; jwk?: JWK; signWith?: CryptoKey } = {}): Promise<string> {
  const claims: Record<string, unknown> = { jti: over.jti ?? randomBytes(12).toString('base64url'), htm, htu, iat: over.iat ?? Math.floor(Date.now() / 1000) };
  if (over.ath) claims.ath = over.ath;
  if (over.nonce) claims.nonce = over.nonce;
  return new SignJWT(claims).setProtectedHeader({ alg: k.alg, typ: over.typ ?? 'dpop+jwt', jwk: over.jwk ?? k.jwk }).sign(over.signWith ?? k.key);
}

async function boundToken(env: Env, taskId: string, k: ProofKey, nonce?: string): Promise<{ status: number; body: any; headers: Headers }> {
  const r = await fetch(`${env.url}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proof(k, 'POST', `${env.url}/oauth/token`, { nonce }) },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(env.agent, env.url),
      task_id: taskId,
    }),
  });
  return { status: r.status, body: await r.json(), headers: r.headers };
}

async function call(env: Env, method: string, path: string, auth: string, dpop: string | undefined, body?: unknown) {
  const headers: Record<string, string> = { authorization: auth };
  if (dpop !== undefined) headers.dpop = dpop;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(env.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, headers: r.headers };
}

const action = { tool: 'docs.read', audience: AUD, arguments: {} };

for (const { backend, skip } of backends()) {
  describe(`DPoP-bound task tokens (${backend})`, { skip }, () => {
    let env: Env;
    before(async () => {
      env = await setup(backend);
    });
    after(async () => env?.teardown());

    async function bound() {
      const t = await env.createTask({ scope: { tools: ['docs.*'], resources: [], destinations: [] } });
      const k = await proofKey();
      const r = await boundToken(env, t.id, k);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const token = r.body.access_token as string;
      const authorize = (p: string | undefined, scheme = 'DPoP') => call(env, 'POST', '/v1/authorize', `${scheme} ${token}`, p, action);
      const good = (over: Parameters<typeof proof>[3] = {}) => proof(k, 'POST', `${env.url}/v1/authorize`, { ath: accessTokenHash(token), ...over });
      return { task: t, k, token, tokenResponse: r.body, authorize, good };
    }

    function assertProofRefused(r: { status: number; body: any; headers: Headers }, what: string, code = 'invalid_dpop_proof') {
      assert.equal(r.status, 401, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, `${what}: ${JSON.stringify(r.body)}`);
    }

    it('a proof on the token request binds the token: `token_type: DPoP`, `cnf.jkt` the key\'s thumbprint; each call with a fresh proof works', async () => {
      const b = await bound();
      assert.equal(b.tokenResponse.token_type, 'DPoP');
      assert.equal((decodeJwt(b.token).cnf as { jkt: string }).jkt, await calculateJwkThumbprint(b.k.jwk, 'sha256'));
      for (let i = 0; i < 2; i++) {
        const r = await b.authorize(await b.good());
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.decision, 'allow');
      }
      const current = await call(env, 'GET', '/v1/tasks/current', `DPoP ${b.token}`, await proof(b.k, 'GET', `${env.url}/v1/tasks/current`, { ath: accessTokenHash(b.token) }));
      assert.equal(current.status, 200, JSON.stringify(current.body));
      // AuthZEN takes the same proof rules
      const az = await call(env, 'POST', '/access/v1/evaluation', `dpop ${b.token}`, await proof(b.k, 'POST', `${env.url}/access/v1/evaluation`, { ath: accessTokenHash(b.token) }), {
        subject: { type: 'agent', id: env.agent.id },
        action: { name: 'call' },
        resource: { type: 'tool', id: 'docs.read', properties: { audience: AUD } },
      });
      assert.equal(az.body.decision, true, JSON.stringify(az.body));
      // introspection names the binding (RFC 9449 §6.2); the metadata names the algorithms
      const intro = await env.admin.form('/oauth/introspect', { token: b.token }, (await env.admin.call('POST', '/v1/operators', { name: 'intro', roles: ['auditor'] })).body.token);
      assert.equal(intro.body.cnf?.jkt, await calculateJwkThumbprint(b.k.jwk, 'sha256'), JSON.stringify(intro.body));
      const meta = await new Api(env.url).call('GET', '/.well-known/oauth-authorization-server');
      assert.deepEqual(meta.body.dpop_signing_alg_values_supported, ['EdDSA', 'ES256']);
    });

    it('a stolen bound token is useless without the key: as Bearer, with no proof, or with a proof by another key', async () => {
      const b = await bound();
      const asBearer = await b.authorize(undefined, 'Bearer');
      assert.equal(asBearer.status, 401);
      assert.equal(asBearer.body.error.code, 'invalid_token');
      const asBearerWithProof = await b.authorize(await b.good(), 'Bearer');
      assert.equal(asBearerWithProof.status, 401, 'a proof does not help the Bearer scheme');
      const noProof = await b.authorize(undefined);
      assertProofRefused(noProof, 'no proof');
      assert.match(noProof.headers.get('www-authenticate') ?? '', /^DPoP error="invalid_dpop_proof"/);
      const thief = await proofKey();
      assertProofRefused(await b.authorize(await proof(thief, 'POST', `${env.url}/v1/authorize`, { ath: accessTokenHash(b.token) })), 'a proof from another key');
      // the thief's key in the header, signed by the real key: the signature does not verify
      assertProofRefused(await b.authorize(await b.good({ jwk: thief.jwk })), 'a header key that did not sign');
      // a P-256 thief
      const p256 = await proofKey('ES256');
      assertProofRefused(await b.authorize(await proof(p256, 'POST', `${env.url}/v1/authorize`, { ath: accessTokenHash(b.token) })), 'a P-256 proof from another key');
      // a gateway holding neither the key nor a proof checked at its edge fails closed, in both modes (test/gateway-dpop.test.ts)
      const current = await call(env, 'GET', '/v1/tasks/current', `Bearer ${b.token}`, undefined);
      assert.equal(current.status, 401, 'the HTTP gateway\'s task check (GET /v1/tasks/current as Bearer) refuses it');
      const inProcess = new InProcessAuthorizer(env.writ);
      await assert.rejects(inProcess.task(b.token), (e: any) => e.status === 401);
      await assert.rejects(inProcess.authorize(b.token, action), (e: any) => e.status === 401);
      // the outcome route, which works after a task ends, holds to the same rule
      const outcome = await call(env, 'POST', '/v1/actions/dec_x/outcome', `Bearer ${b.token}`, undefined, { status: 'succeeded' });
      assert.equal(outcome.status, 401, JSON.stringify(outcome.body));
    });

    it('a replayed proof is refused', async () => {
      const b = await bound();
      const p = await b.good();
      assert.equal((await b.authorize(p)).status, 200);
      assertProofRefused(await b.authorize(p), 'the same proof again');
      // sent together: exactly one is accepted
      const q = await b.good();
      const both = await Promise.all([b.authorize(q), b.authorize(q)]);
      assert.deepEqual(both.map((r) => r.status).sort(), [200, 401]);
    });

    it('`htu` and `htm` must be this request\'s; the query is ignored, nothing else is', async () => {
      const b = await bound();
      const at = (htu: string, htm = 'POST') => proof(b.k, htm, htu, { ath: accessTokenHash(b.token) });
      for (const [what, htu] of [
        ['another path', `${env.url}/v1/tools/visible`],
        ['a trailing slash', `${env.url}/v1/authorize/`],
        ['another port', env.url.replace(/:(\d+)$/, (_m, p) => `:${Number(p) + 1}`)+'/v1/authorize'],
        ['another scheme', `${env.url.replace('http:', 'https:')}/v1/authorize`],
        ['another case in the path', `${env.url}/v1/Authorize`],
        ['not a URL', 'v1/authorize'],
      ]) {
        assertProofRefused(await b.authorize(await at(htu!)), what!);
      }
      assertProofRefused(await b.authorize(await at(`${env.url}/v1/authorize`, 'GET')), 'a GET proof on a POST');
      assertProofRefused(await b.authorize(await at(`${env.url}/v1/authorize`, 'post')), 'a lowercase method');
      const withQuery = await b.authorize(await at(`${env.url}/v1/authorize?x=1#f`));
      assert.equal(withQuery.status, 200, `query and fragment are ignored (§4.3): ${JSON.stringify(withQuery.body)}`);
    });

    it('`ath` is required and must hash this token; `iat` must be fresh; the proof must be one well-formed `dpop+jwt`', async () => {
      const b = await bound();
      const now = Math.floor(Date.now() / 1000);
      assertProofRefused(await b.authorize(await b.good({ ath: null })), 'a missing ath');
      assertProofRefused(await b.authorize(await b.good({ ath: accessTokenHash(`${b.token}x`) })), 'the ath of another token');
      assertProofRefused(await b.authorize(await b.good({ iat: now - 120 })), 'a stale iat');
      assertProofRefused(await b.authorize(await b.good({ iat: now + 120 })), 'an iat in the future');
      assertProofRefused(await b.authorize(await b.good({ typ: 'JWT' })), 'typ JWT');
      assertProofRefused(await b.authorize(await b.good({ jti: 'short' })), 'a short jti');
      const priv = await exportJWK(b.k.key);
      assertProofRefused(await b.authorize(await b.good({ jwk: priv })), 'a private key in jwk');
      const p = await b.good();
      assertProofRefused(await b.authorize(`${p}, ${await b.good()}`), 'two proofs');
      assertProofRefused(await b.authorize(`${p.split('.').slice(0, 2).join('.')}.`), 'no signature');
      const [h, c] = p.split('.');
      const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: b.k.jwk })).toString('base64url')}.${c}.x`;
      assertProofRefused(await b.authorize(none), 'alg none');
      assert.ok(h);
      // still works with a good one after all of these
      assert.equal((await b.authorize(await b.good())).status, 200);
    });

    it('an unbound token sent in the DPoP scheme is refused; a bad proof at the token endpoint is a 400 in the OAuth shape', async () => {
      const t = await env.createTask({ scope: { tools: ['docs.*'], resources: [], destinations: [] } });
      const plain = await env.taskToken(t.id);
      const k = await proofKey();
      const r = await call(env, 'POST', '/v1/authorize', `DPoP ${plain}`, await proof(k, 'POST', `${env.url}/v1/authorize`, { ath: accessTokenHash(plain) }), action);
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'invalid_token');
      assert.equal((await new Api(env.url, plain).call('POST', '/v1/authorize', action)).body.decision, 'allow', 'as Bearer it works as before');
      const bad = await fetch(`${env.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proof(k, 'POST', `${env.url}/v1/authorize`) },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await makeAssertion(env.agent, env.url), task_id: t.id }),
      });
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as any).error, 'invalid_dpop_proof');
    });
  });
}

describe('DPoP server nonces (WRIT_DPOP_NONCES=1)', () => {
  let env: Env;
  before(async () => {
    env = await setup('sqlite', { config: { dpopNonces: true } });
  });
  after(async () => env?.teardown());

  it('a proof without the nonce gets `use_dpop_nonce` and a `DPoP-Nonce`; with it, the call goes through', async () => {
    const t = await env.createTask({ scope: { tools: ['docs.*'], resources: [], destinations: [] } });
    const k = await proofKey();
    const first = await boundToken(env, t.id, k);
    assert.equal(first.status, 400, JSON.stringify(first.body));
    assert.equal(first.body.error, 'use_dpop_nonce');
    const nonce = first.headers.get('dpop-nonce');
    assert.ok(nonce);
    const second = await boundToken(env, t.id, k, nonce);
    assert.equal(second.status, 200, JSON.stringify(second.body));
    const token = second.body.access_token as string;
    const p = (n?: string) => proof(k, 'POST', `${env.url}/v1/authorize`, { ath: accessTokenHash(token), nonce: n });
    const noNonce = await call(env, 'POST', '/v1/authorize', `DPoP ${token}`, await p(), action);
    assert.equal(noNonce.status, 401);
    assert.equal(noNonce.body.error.code, 'use_dpop_nonce');
    assert.match(noNonce.headers.get('www-authenticate') ?? '', /DPoP error="use_dpop_nonce"/);
    const wrong = await call(env, 'POST', '/v1/authorize', `DPoP ${token}`, await p(`${nonce}x`), action);
    assert.equal(wrong.body.error.code, 'use_dpop_nonce');
    const ok = await call(env, 'POST', '/v1/authorize', `DPoP ${token}`, await p(noNonce.headers.get('dpop-nonce')!), action);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.decision, 'allow');
  });
});

describe('the SDK agent client with `dpop: true`', () => {
  let env: Env;
  before(async () => {
    env = await setup('sqlite');
  });
  after(async () => env?.teardown());

  it('gets a bound token and proves every call; the token copied out of it is refused as Bearer', async () => {
    const { WritAgentClient } = await import('@writ/sdk');
    const t = await env.createTask({ scope: { tools: ['docs.*'], resources: [], destinations: [] } });
    const agent = new WritAgentClient({ url: env.url, agentId: env.agent.id, taskId: t.id, key: { key: env.agent.privateKey, alg: 'EdDSA', kid: 'k1' }, dpop: true });
    const d = await agent.authorize(action);
    assert.equal(d.decision, 'allow', JSON.stringify(d));
    await agent.reportOutcome(d.decision_id, 'succeeded');
    const token = await agent.taskToken();
    assert.ok((decodeJwt(token).cnf as { jkt?: string })?.jkt, 'the token is bound');
    const stolen = await new Api(env.url, token).call('POST', '/v1/authorize', action);
    assert.equal(stolen.status, 401);
    await agent.complete();
    assert.equal((await env.admin.call('GET', `/v1/tasks/${t.id}`)).body.status, 'completed');
  });
});
