import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { Api, backends, setup } from './helpers/harness.js';

const TE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const AUD = 'https://tools.example/github';
const K8S = 'https://k8s.acme.test';
const CI = 'https://ci.acme.test';
const K8S_SUB = 'system:serviceaccount:billing:agent';
type Env = Awaited<ReturnType<typeof setup>>;

interface Key {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function makeKey(alg: 'RS256' | 'RS384' | 'ES256' | 'EdDSA' | 'ES384', kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid } };
}

/** A real issuer's JWKS endpoint on loopback: serves the current public keys, counts fetches. */
class JwksServer {
  hits = 0;
  keys: JWK[] = [];
  private constructor(
    readonly server: Server,
    readonly url: string,
  ) {}
  static async start(keys: JWK[]): Promise<JwksServer> {
    let self: JwksServer | undefined;
    const server = createServer((req, res) => {
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      self!.hits++;
      const body = JSON.stringify({ keys: self!.keys });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    self = new JwksServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`);
    self.keys = keys;
    return self;
  }
  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
}

/** A JWKS URL that accepts the connection and never answers. */
async function hangingServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer(() => {
    /* never answers */
  });
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

/** A loopback port with nothing listening. */
async function closedPortUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return `http://127.0.0.1:${port}/.well-known/jwks.json`;
}

const now = () => Math.floor(Date.now() / 1000);

async function sign(key: Key, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey);
}

function k8sClaims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = now();
  return {
    iss: K8S,
    sub: K8S_SUB,
    aud: ['writ'],
    iat,
    nbf: iat,
    exp: iat + 600,
    jti: randomBytes(12).toString('base64url'),
    'kubernetes.io': { namespace: 'billing', serviceaccount: { name: 'agent', uid: 'b1d2' }, pod: { name: 'agent-0' } },
    ...over,
  };
}

function b64(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

for (const { backend, skip } of backends()) {
  describe(`federated workload identity end to end (${backend})`, { skip }, () => {
    let env: Env;
    let k8sJwks: JwksServer;
    let hanging: Awaited<ReturnType<typeof hangingServer>>;
    let k8sKey: Key; // the Kubernetes issuer's signing key (served from its JWKS URL)
    let ciKey: Key; // the CI issuer's key: same kid, registered inline
    let svidKey: Key; // the SPIFFE trust domain's key
    let k8sIssuer: any;
    let cursor = 0;
    const svidAgent = 'spiffe://acme.test/agent/svid-worker';
    const ciAgent = 'spiffe://acme.test/agent/ci';

    const exchange = (subjectToken: string, taskId: string, over: Record<string, string> = {}) =>
      env.admin.form('/oauth/token', { grant_type: TE, subject_token: subjectToken, subject_token_type: JWT_TYPE, task_id: taskId, ...over });

    /** The newest audit entries since the last call. */
    async function since(type: string): Promise<any[]> {
      const r = await env.admin.call('GET', `/v1/audit?type=${type}&after=${cursor}&limit=1000`);
      return r.body.entries;
    }
    async function mark(): Promise<void> {
      const all = (await env.admin.call('GET', `/v1/audit?after=${cursor}&limit=1000`)).body.entries;
      if (all.length) cursor = all[all.length - 1].seq;
    }
    /** invalid_grant, audited as token.refused with `reason` */
    async function refused(r: { status: number; body: any }, reason: string, status = 400, error = 'invalid_grant'): Promise<void> {
      assert.equal(r.status, status, `${reason}: ${JSON.stringify(r.body)}`);
      assert.deepEqual(Object.keys(r.body).sort(), ['error', 'error_description'], JSON.stringify(r.body));
      assert.equal(r.body.error, error, `${reason}: ${JSON.stringify(r.body)}`);
      assert.doesNotMatch(r.body.error_description, /eyJ/, 'no token echoed');
      const entries = await since('token.refused');
      assert.ok(entries.length >= 1, `${reason}: a token.refused entry`);
      assert.equal(entries[entries.length - 1].data.reason, reason, JSON.stringify(entries[entries.length - 1].data));
      assert.equal((await since('token.issued')).length, 0, `${reason}: nothing issued`);
      await mark();
    }

    before(async () => {
      env = await setup(backend, { config: { jwksTimeoutMs: 400, jwksCooldownMs: 0 } });
      k8sKey = await makeKey('RS256', 'shared-kid');
      ciKey = await makeKey('RS256', 'shared-kid');
      svidKey = await makeKey('ES256', 'svid-1');
      k8sJwks = await JwksServer.start([k8sKey.publicJwk]);
      hanging = await hangingServer();
      // agents that prove themselves only through a trusted issuer: no keys
      for (const id of [svidAgent, ciAgent]) {
        const r = await env.admin.call('POST', '/v1/agents', { id, name: id.split('/').pop() });
        assert.equal(r.status, 201, JSON.stringify(r.body));
      }
      const reg = async (body: Record<string, unknown>) => {
        const r = await env.admin.call('POST', '/v1/issuers', body);
        assert.equal(r.status, 201, JSON.stringify(r.body));
        return r.body;
      };
      k8sIssuer = await reg({
        issuer: K8S,
        audience: 'writ',
        jwks_uri: k8sJwks.url,
        rules: [{ claims: { sub: K8S_SUB, '/kubernetes.io/namespace': 'billing' }, agent_id: env.agent.id }],
      });
      await reg({
        issuer: CI,
        audience: 'writ',
        jwks: { keys: [ciKey.publicJwk] },
        rules: [{ claims: { sub: 'repo:acme/api:ref:refs/heads/main', repository: 'acme/api', ref_protected: true }, agent_id: ciAgent }],
      });
      await reg({
        issuer: 'spiffe://acme.test',
        audience: 'writ',
        jwks: { keys: [svidKey.publicJwk] },
        rules: [{ claims: { sub: svidAgent }, agent_id: svidAgent }],
      });
      await reg({ issuer: 'https://slow.acme.test', audience: 'writ', jwks_uri: hanging.url, rules: [{ claims: { sub: 'x' }, agent_id: env.agent.id }] });
      await reg({ issuer: 'https://down.acme.test', audience: 'writ', jwks_uri: await closedPortUrl(), rules: [{ claims: { sub: 'x' }, agent_id: env.agent.id }] });
      await mark();
    });
    after(async () => {
      await env?.teardown();
      await k8sJwks?.close();
      await hanging?.close();
    });

    it('manages issuers: register (admin), list and show (admin, auditor), refuse bad registrations, disable', async () => {
      const list = await env.admin.call('GET', '/v1/issuers');
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.issuers.map((i: any) => i.issuer).sort(), [CI, 'https://down.acme.test', K8S, 'https://slow.acme.test', 'spiffe://acme.test'].sort());
      const spiffe = list.body.issuers.find((i: any) => i.issuer === 'spiffe://acme.test');
      assert.equal(spiffe.kind, 'spiffe');
      assert.equal(spiffe.jwks_uri, null);
      assert.deepEqual(spiffe.rules, [{ claims: { sub: svidAgent }, agent_id: svidAgent }]);
      const one = await env.admin.call('GET', `/v1/issuers/${k8sIssuer.id}`);
      assert.equal(one.body.jwks_uri, k8sJwks.url);
      assert.equal(one.body.status, 'active');
      assert.equal((await env.admin.call('GET', '/v1/issuers/iss_nope')).body.error.code, 'issuer_not_found');

      // an auditor reads, cannot write
      const aud = await env.admin.call('POST', '/v1/operators', { name: 'auditor', roles: ['auditor'] });
      const auditor = new Api(env.url, aud.body.token);
      assert.equal((await auditor.call('GET', '/v1/issuers')).status, 200);
      const denied = await auditor.call('POST', '/v1/issuers', { issuer: 'https://x.test', audience: 'writ', jwks_uri: 'https://x.test/jwks', rules: [{ claims: { sub: 'a' }, agent_id: 'b' }] });
      assert.equal(denied.status, 403);
      assert.equal(denied.body.error.code, 'insufficient_role');
      assert.equal((await new Api(env.url).call('GET', '/v1/issuers')).status, 401);

      const rsaPriv = await exportJWK(k8sKey.privateKey);
      const ok = { issuer: 'https://new.acme.test', audience: 'writ', jwks_uri: 'https://new.acme.test/jwks', rules: [{ claims: { sub: 's' }, agent_id: 'a' }] };
      const bad: [string, Record<string, unknown>, string][] = [
        ['both jwks and jwks_uri', { ...ok, jwks: { keys: [ciKey.publicJwk] } }, 'invalid_request'],
        ['neither', { ...ok, jwks_uri: undefined }, 'invalid_request'],
        ['http jwks_uri off loopback', { ...ok, jwks_uri: 'http://jwks.example/keys' }, 'invalid_request'],
        ['jwks_uri with user info', { ...ok, jwks_uri: 'https://u:p@jwks.example/keys' }, 'invalid_request'],
        ['http issuer off loopback', { ...ok, issuer: 'http://new.acme.test' }, 'invalid_request'],
        ['issuer not a URL', { ...ok, issuer: 'acme' }, 'invalid_request'],
        ['private key', { ...ok, jwks_uri: undefined, jwks: { keys: [rsaPriv] } }, 'invalid_jwks'],
        ['symmetric key', { ...ok, jwks_uri: undefined, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }, 'invalid_jwks'],
        ['HS256 alg on a key', { ...ok, jwks_uri: undefined, jwks: { keys: [{ ...ciKey.publicJwk, alg: 'HS256' }] } }, 'invalid_jwks'],
        ['garbage key', { ...ok, jwks_uri: undefined, jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }] } }, 'invalid_jwks'],
        ['rule without sub', { ...ok, rules: [{ claims: { repository: 'acme/api' }, agent_id: 'a' }] }, 'invalid_request'],
        ['no rules', { ...ok, rules: [] }, 'invalid_request'],
        ['rule for a malformed SPIFFE agent id', { ...ok, rules: [{ claims: { sub: 's' }, agent_id: 'spiffe://acme.test/a/../b' }] }, 'invalid_agent_id'],
        ['same claims, two agents', { ...ok, rules: [{ claims: { sub: 's' }, agent_id: 'a' }, { claims: { sub: 's' }, agent_id: 'b' }] }, 'invalid_request'],
        ['spiffe issuer with a path', { ...ok, issuer: 'spiffe://acme.test/x', kind: 'spiffe' }, 'invalid_request'],
        ['spiffe rule outside the trust domain', { ...ok, issuer: 'spiffe://other.test', rules: [{ claims: { sub: 'spiffe://acme.test/a' }, agent_id: 'a' }] }, 'invalid_request'],
        ['oidc kind with a spiffe issuer', { ...ok, issuer: 'spiffe://x.test', kind: 'oidc' }, 'invalid_request'],
        ['unknown field', { ...ok, algorithms: ['HS256'] }, 'invalid_request'],
        ['a claim pointer with an empty member name', { ...ok, rules: [{ claims: { sub: 's', '/a//b': 'x' }, agent_id: 'a' }] }, 'invalid_request'],
        ['a claim pointer with a trailing slash', { ...ok, rules: [{ claims: { sub: 's', '/a/': 'x' }, agent_id: 'a' }] }, 'invalid_request'],
        ['a claim pointer that is only a slash', { ...ok, rules: [{ claims: { sub: 's', '/': 'x' }, agent_id: 'a' }] }, 'invalid_request'],
        ['a claim pointer with a bad escape', { ...ok, rules: [{ claims: { sub: 's', '/a~2b': 'x' }, agent_id: 'a' }] }, 'invalid_request'],
        ['a claim pointer ending in a lone tilde', { ...ok, rules: [{ claims: { sub: 's', '/a~': 'x' }, agent_id: 'a' }] }, 'invalid_request'],
        ['one claim named twice (literal and pointer)', { ...ok, rules: [{ claims: { sub: 's', role: 'x', '/role': 'y' }, agent_id: 'a' }] }, 'invalid_request'],
        ['an empty claim name', { ...ok, rules: [{ claims: { sub: 's', '': 'x' }, agent_id: 'a' }] }, 'invalid_request'],
      ];
      for (const [name, body, code] of bad) {
        const r = await env.admin.call('POST', '/v1/issuers', body);
        assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, code, `${name}: ${JSON.stringify(r.body)}`);
        assert.doesNotMatch(JSON.stringify(r.body), /"d"/, 'no key material echoed');
      }
      const dup = await env.admin.call('POST', '/v1/issuers', { ...ok, issuer: K8S });
      assert.equal(dup.status, 409);
      assert.equal(dup.body.error.code, 'issuer_exists');

      // register, then disable (DELETE): the record stays, as disabled; twice is a conflict
      const created = await env.admin.call('POST', '/v1/issuers', ok);
      assert.equal(created.status, 201);
      assert.equal(created.body.kind, 'oidc');
      const del = await env.admin.call('DELETE', `/v1/issuers/${created.body.id}`);
      assert.equal(del.status, 200);
      assert.equal(del.body.status, 'disabled');
      assert.ok(del.body.disabled_at);
      assert.equal((await env.admin.call('DELETE', `/v1/issuers/${created.body.id}`)).body.error.code, 'issuer_not_active');
      const types = (await since('issuer.registered')).length + (await since('issuer.disabled')).length;
      assert.ok(types >= 2);
      await mark();
    });

    it('exchanges a Kubernetes service-account token (JWKS URL, cached) for a task token that works', async () => {
      const task = await env.createTask();
      const hits = k8sJwks.hits;
      const claims = k8sClaims({ exp: now() + 120 });
      const r = await exchange(await sign(k8sKey, claims, { typ: 'JWT' }), task.id);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.token_type, 'Bearer');
      assert.equal(r.body.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
      assert.ok(r.body.expires_in <= 120, 'never past the subject token');
      const ok = await new Api(env.url, r.body.access_token).call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: AUD });
      assert.equal(ok.body.decision, 'allow', JSON.stringify(ok.body));

      const issued = await since('token.issued');
      assert.equal(issued.length, 1);
      assert.equal(issued[0].agent_id, env.agent.id);
      assert.equal(issued[0].task_id, task.id);
      assert.equal(issued[0].data.grant, 'token-exchange');
      assert.equal(issued[0].data.issuer, K8S);
      assert.equal(issued[0].data.issuer_id, k8sIssuer.id);
      assert.equal(issued[0].data.subject, K8S_SUB);
      assert.equal(issued[0].data.subject_jti, claims.jti);
      await mark();

      // a second exchange (another jti) uses the cached JWKS
      const r2 = await exchange(await sign(k8sKey, k8sClaims()), task.id);
      assert.equal(r2.status, 200, JSON.stringify(r2.body));
      assert.ok(k8sJwks.hits - hits <= 1, `JWKS fetched at most once (${k8sJwks.hits - hits})`);
      await mark();
      // metadata advertises the grant
      const meta = await (await fetch(`${env.url}/.well-known/oauth-authorization-server`)).json();
      assert.ok(meta.grant_types_supported.includes(TE));
    });

    it('exchanges a SPIFFE JWT-SVID (no `iss`, matched by trust domain) for an agent with no keys of its own', async () => {
      const task = await env.createTask({ agent_id: svidAgent });
      const svid = await sign(svidKey, { sub: svidAgent, aud: ['writ', 'other'], exp: now() + 300, iat: now() }, { typ: 'JWT' });
      const r = await exchange(svid, task.id);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const ok = await new Api(env.url, r.body.access_token).call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: AUD });
      assert.equal(ok.body.decision, 'allow');
      const issued = await since('token.issued');
      assert.equal(issued[0].data.issuer, 'spiffe://acme.test');
      assert.equal(issued[0].data.subject, svidAgent);
      assert.equal(issued[0].data.subject_jti, null);
      await mark();
      // an SVID with `iss` equal to the trust domain is accepted too
      const r2 = await exchange(await sign(svidKey, { iss: 'spiffe://acme.test', sub: svidAgent, aud: 'writ', exp: now() + 300 }), task.id);
      assert.equal(r2.status, 200, JSON.stringify(r2.body));
      await mark();
      // the key-less agent cannot use client_credentials
      const cc = await env.admin.form('/oauth/token', { grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: svid, task_id: task.id });
      assert.equal(cc.body.error, 'invalid_client');
      await mark();
    });

    it('refuses issuer spoofing: a token claiming one issuer, signed by another issuer\'s key with the same kid', async () => {
      const task = await env.createTask();
      const ciTask = await env.createTask({ agent_id: ciAgent });
      // claims the Kubernetes issuer (JWKS URL), signed by the CI issuer's key, kid `shared-kid`
      await refused(await exchange(await sign(ciKey, k8sClaims()), task.id), 'bad_signature');
      // claims the CI issuer (inline keys), signed with the Kubernetes key
      const ciClaims = { iss: CI, sub: 'repo:acme/api:ref:refs/heads/main', repository: 'acme/api', ref_protected: true, aud: 'writ', exp: now() + 300 };
      await refused(await exchange(await sign(k8sKey, ciClaims), ciTask.id), 'bad_signature');
      // a fresh key with the same kid, or another key type
      await refused(await exchange(await sign(await makeKey('RS256', 'shared-kid'), k8sClaims()), task.id), 'bad_signature');
      await refused(await exchange(await sign(await makeKey('ES256', 'shared-kid'), k8sClaims()), task.id), 'no_matching_key');
      // a key carried in the token's own header is never used
      const attacker = await makeKey('RS256', 'shared-kid');
      await refused(await exchange(await sign(attacker, k8sClaims(), { jwk: attacker.publicJwk }), task.id), 'header_not_allowed');
      await refused(await exchange(await sign(attacker, k8sClaims(), { jku: 'http://127.0.0.1:1/evil.json' }), task.id), 'header_not_allowed');
      // the genuine CI token maps as registered
      const good = await exchange(await sign(ciKey, ciClaims), ciTask.id);
      assert.equal(good.status, 200, JSON.stringify(good.body));
      await mark();
    });

    it('refuses a wrong audience, claims that match only by prefix, case or shape, and ambiguous claim paths', async () => {
      const task = await env.createTask();
      await refused(await exchange(await sign(k8sKey, k8sClaims({ aud: 'not-writ' })), task.id), 'wrong_audience');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ aud: ['writ-staging'] })), task.id), 'wrong_audience');
      const ns = (namespace: unknown) => ({ 'kubernetes.io': { namespace, serviceaccount: { name: 'agent' } } });
      const cases: [string, Record<string, unknown>][] = [
        ['sub extended', { sub: `${K8S_SUB}-evil` }],
        ['sub shortened (a prefix of the rule)', { sub: K8S_SUB.slice(0, -1) }],
        ['sub with trailing space', { sub: `${K8S_SUB} ` }],
        ['sub in another case', { sub: K8S_SUB.toUpperCase() }],
        ['namespace extended', ns('billing-2')],
        ['namespace a prefix', ns('bill')],
        ['namespace in another case', ns('Billing')],
        ['namespace as a list', ns(['billing'])],
        ['namespace missing', { 'kubernetes.io': { serviceaccount: { name: 'agent' } } }],
        ['namespace as a flat key with a dot path', { 'kubernetes.io': undefined, 'kubernetes.io.namespace': 'billing' }],
        // the rule names a pointer: a literal top-level claim spelled like the path is not it
        ['namespace as a literal top-level name spelled like the path', { 'kubernetes.io': undefined, 'kubernetes.io/namespace': 'billing' }],
        ['namespace under a list', { 'kubernetes.io': [{ namespace: 'billing' }] }],
        ['namespace inherited, not own', { 'kubernetes.io': JSON.parse('{"__proto__": {"namespace": "billing"}}') }],
      ];
      for (const [name, over] of cases) {
        const r = await exchange(await sign(k8sKey, k8sClaims(over)), task.id);
        await refused(r, 'no_matching_rule').catch((e) => assert.fail(`${name}: ${e.message}`));
      }
      // a literal top-level claim spelled like the path, beside the nested one, changes nothing
      const both = await exchange(await sign(k8sKey, k8sClaims({ 'kubernetes.io/namespace': 'other' })), task.id);
      assert.equal(both.status, 200, JSON.stringify(both.body));
      await mark();
      // a number or boolean rule value needs the same JSON type
      const ciTask = await env.createTask({ agent_id: ciAgent });
      const ci = { iss: CI, sub: 'repo:acme/api:ref:refs/heads/main', repository: 'acme/api', aud: 'writ', exp: now() + 300 };
      await refused(await exchange(await sign(ciKey, { ...ci, ref_protected: 'true' }), ciTask.id), 'no_matching_rule');
      await refused(await exchange(await sign(ciKey, { ...ci, ref_protected: true, repository: 'acme/api-fork' }), ciTask.id), 'no_matching_rule');
      await refused(await exchange(await sign(ciKey, { ...ci, ref_protected: true, repository: 'acme' }), ciTask.id), 'no_matching_rule');
    });

    it('refuses expired, over-long, replayed and malformed subject tokens, unknown and disabled issuers', async () => {
      const task = await env.createTask();
      await refused(await exchange(await sign(k8sKey, k8sClaims({ iat: now() - 900, nbf: now() - 900, exp: now() - 120 })), task.id), 'subject_token_expired');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ exp: now() + 25 * 3600 })), task.id), 'lifetime_too_long');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ iat: undefined, exp: now() + 25 * 3600 })), task.id), 'lifetime_too_long');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ exp: undefined })), task.id), 'bad_claims');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ nbf: now() + 600 })), task.id), 'not_yet_valid');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ iat: now() + 600, exp: now() + 900 })), task.id), 'issued_in_future');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ iss: `${K8S}/` })), task.id), 'unknown_issuer');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ iss: 'https://evil.test' })), task.id), 'unknown_issuer');
      await refused(await exchange(await sign(k8sKey, k8sClaims({ iss: undefined })), task.id), 'unknown_issuer');
      await refused(await exchange('not-a-jwt', task.id), 'malformed_subject_token');
      // replay of the same token (same jti)
      const once = await sign(k8sKey, k8sClaims());
      assert.equal((await exchange(once, task.id)).status, 200);
      await mark();
      await refused(await exchange(once, task.id), 'subject_token_replayed');
      // a platform token is reused for its lifetime (Kubernetes refreshes it in place): once per task
      const otherTask = await env.createTask();
      assert.equal((await exchange(once, otherTask.id)).status, 200);
      await mark();
      await refused(await exchange(once, otherTask.id), 'subject_token_replayed');
      // tampered payload
      const [h, , s] = (await sign(k8sKey, k8sClaims())).split('.');
      await refused(await exchange(`${h}.${b64(k8sClaims({ sub: K8S_SUB }))}.${s}`, task.id), 'bad_signature');
      // OIDC: algorithms outside RS256/ES256/EdDSA/PS256
      await refused(await exchange(await sign(await makeKey('RS384', 'shared-kid'), k8sClaims()), task.id), 'alg_not_accepted');
      const hs = await new SignJWT(k8sClaims()).setProtectedHeader({ alg: 'HS256', kid: 'shared-kid' }).sign(new TextEncoder().encode('x'.repeat(32)));
      await refused(await exchange(hs, task.id), 'alg_not_accepted');
      await refused(await exchange(`${b64({ alg: 'none', kid: 'shared-kid' })}.${b64(k8sClaims())}.`, task.id), 'alg_not_accepted');
      await refused(await exchange(await sign(k8sKey, k8sClaims(), { typ: 'writ-task+jwt' }), task.id), 'typ_not_accepted');

      // the issuer disabled: its tokens are refused at once
      const other = await env.admin.call('POST', '/v1/issuers', { issuer: 'https://temp.acme.test', audience: 'writ', jwks: { keys: [k8sKey.publicJwk] }, rules: [{ claims: { sub: K8S_SUB }, agent_id: env.agent.id }] });
      assert.equal(other.status, 201);
      const tempToken = () => sign(k8sKey, k8sClaims({ iss: 'https://temp.acme.test' }));
      assert.equal((await exchange(await tempToken(), task.id)).status, 200);
      await env.admin.call('DELETE', `/v1/issuers/${other.body.id}`);
      await mark();
      await refused(await exchange(await tempToken(), task.id), 'unknown_issuer');
    });

    it('refuses JWT-SVIDs with an unlisted header or alg, or a subject outside the trust domain', async () => {
      const task = await env.createTask({ agent_id: svidAgent });
      const svid = (over: Record<string, unknown> = {}) => ({ sub: svidAgent, aud: 'writ', exp: now() + 300, ...over });
      for (const extra of [{ jku: 'https://evil.test/jwks' }, { x5u: 'https://evil.test/cert' }, { cty: 'JWT' }, { x5t: 'abc' }, { jwk: svidKey.publicJwk }]) {
        await refused(await exchange(await sign(svidKey, svid(), extra), task.id), 'header_not_allowed');
      }
      await refused(await exchange(await sign(svidKey, svid(), { typ: 'at+jwt' }), task.id), 'typ_not_accepted');
      const hs = await new SignJWT(svid()).setProtectedHeader({ alg: 'HS256', kid: 'svid-1' }).sign(new TextEncoder().encode('k'.repeat(32)));
      await refused(await exchange(hs, task.id), 'alg_not_accepted');
      await refused(await exchange(`${b64({ alg: 'none' })}.${b64(svid())}.`, task.id), 'alg_not_accepted');
      // EdDSA is fine for OIDC issuers, not in the JWT-SVID profile
      await refused(await exchange(await sign(await makeKey('EdDSA', 'svid-1'), svid()), task.id), 'alg_not_accepted');
      // another trust domain: by `sub` nothing is found; by `iss` the subject does not belong
      await refused(await exchange(await sign(svidKey, svid({ sub: 'spiffe://evil.test/agent/svid-worker' })), task.id), 'unknown_issuer');
      await refused(await exchange(await sign(svidKey, svid({ iss: 'spiffe://acme.test', sub: 'spiffe://evil.test/agent/svid-worker' })), task.id), 'wrong_trust_domain');
      await refused(await exchange(await sign(svidKey, svid({ aud: 'other' })), task.id), 'wrong_audience');
      await refused(await exchange(await sign(svidKey, svid({ sub: 'spiffe://acme.test/agent/svid-worker/x' })), task.id), 'no_matching_rule');
      await refused(await exchange(await sign(svidKey, svid({ exp: now() - 60 })), task.id), 'subject_token_expired');
      // an ES384 key the trust domain did not register
      await refused(await exchange(await sign(await makeKey('ES384', 'svid-1'), svid()), task.id), 'no_matching_key');
    });

    it('checks the mapped agent and the task: registered, active, and this agent\'s', async () => {
      const task = await env.createTask();
      const svidTask = await env.createTask({ agent_id: svidAgent });
      // the token maps to the billing agent; the task is someone else's
      await refused(await exchange(await sign(k8sKey, k8sClaims()), svidTask.id), 'task_not_for_agent');
      await refused(await exchange(await sign(k8sKey, k8sClaims()), 'task_missing'), 'task_not_for_agent');
      await env.admin.call('POST', `/v1/tasks/${task.id}/revoke`, {});
      await mark();
      await refused(await exchange(await sign(k8sKey, k8sClaims()), task.id), 'task_not_active');
      // a rule naming an agent that is not registered, or is disabled
      const ghostTd = await env.admin.call('POST', '/v1/issuers', { issuer: 'spiffe://ghost.test', audience: 'writ', jwks: { keys: [svidKey.publicJwk] }, rules: [{ claims: { sub: 'spiffe://ghost.test/a' }, agent_id: 'spiffe://ghost.test/a' }] });
      assert.equal(ghostTd.status, 201);
      await mark();
      await refused(await exchange(await sign(svidKey, { sub: 'spiffe://ghost.test/a', aud: 'writ', exp: now() + 60 }), svidTask.id), 'unknown_agent');
      const r = await env.admin.call('POST', '/v1/agents', { id: 'spiffe://ghost.test/a' });
      assert.equal(r.status, 201);
      const ghostTask = await env.createTask({ agent_id: 'spiffe://ghost.test/a' });
      await env.admin.call('POST', `/v1/agents/${encodeURIComponent('spiffe://ghost.test/a')}/disable`);
      await mark();
      await refused(await exchange(await sign(svidKey, { sub: 'spiffe://ghost.test/a', aud: 'writ', exp: now() + 60 }), ghostTask.id), 'agent_disabled');
    });

    it('answers malformed exchange requests with invalid_request', async () => {
      const task = await env.createTask();
      const token = await sign(k8sKey, k8sClaims());
      const cases: Record<string, string>[] = [
        { grant_type: TE, subject_token_type: JWT_TYPE, task_id: task.id },
        { grant_type: TE, subject_token: token, task_id: task.id },
        { grant_type: TE, subject_token: token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', task_id: task.id },
        { grant_type: TE, subject_token: token, subject_token_type: JWT_TYPE },
        { grant_type: TE, subject_token: token, subject_token_type: JWT_TYPE, task_id: task.id, actor_token: token, actor_token_type: JWT_TYPE },
        { grant_type: TE, subject_token: token, subject_token_type: JWT_TYPE, task_id: task.id, requested_token_type: 'urn:ietf:params:oauth:token-type:id_token' },
      ];
      for (const form of cases) {
        const r = await env.admin.form('/oauth/token', form);
        assert.equal(r.status, 400, JSON.stringify([form, r.body]));
        assert.equal(r.body.error, 'invalid_request', JSON.stringify(r.body));
      }
      assert.equal((await since('token.issued')).length, 0);
      await mark();
    });

    it('fails closed when the JWKS URL times out or cannot be reached: 503 temporarily_unavailable, never a token', async () => {
      const task = await env.createTask();
      const slow = await sign(k8sKey, k8sClaims({ iss: 'https://slow.acme.test', sub: 'x' }));
      const t0 = Date.now();
      const r = await exchange(slow, task.id);
      const took = Date.now() - t0;
      await refused(r, 'issuer_unavailable', 503, 'temporarily_unavailable');
      // the JWKS server never answers: an answer at all shows the 400 ms timeout applied (the
      // upper bound is loose on purpose, a loaded machine is slow)
      assert.ok(took >= 350 && took < 30_000, `answered after the ${400} ms timeout (${took} ms)`);
      const down = await sign(k8sKey, k8sClaims({ iss: 'https://down.acme.test', sub: 'x' }));
      await refused(await exchange(down, task.id), 'issuer_unavailable', 503, 'temporarily_unavailable');
      // the service itself stays up
      assert.equal((await fetch(`${env.url}/healthz`)).status, 200);
    });

    it('follows key rotation at the issuer: an unknown kid refetches the JWKS (after the cooldown)', async () => {
      const task = await env.createTask();
      const rotated = await makeKey('ES256', 'rotated-2');
      k8sJwks.keys = [k8sKey.publicJwk, rotated.publicJwk];
      const r = await exchange(await sign(rotated, k8sClaims()), task.id);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await mark();
      // a key removed at the issuer stops working once the set is refetched
      k8sJwks.keys = [rotated.publicJwk];
      await refused(await exchange(await sign(await makeKey('ES256', 'never-published'), k8sClaims()), task.id), 'no_matching_key');
      await refused(await exchange(await sign(k8sKey, k8sClaims()), task.id), 'no_matching_key');
      k8sJwks.keys = [k8sKey.publicJwk];
    });

    it('validates SPIFFE agent ids at registration (400 invalid_agent_id)', async () => {
      for (const id of ['spiffe://Acme.test/agent/x', 'spiffe://acme.test/agent/', 'spiffe://acme.test:443/agent', 'spiffe://acme.test/a/./b', 'SPIFFE://acme.test/a', 'spiffe://acme.test/a%2Fb']) {
        const r = await env.admin.call('POST', '/v1/agents', { id });
        assert.equal(r.status, 400, `${id}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, 'invalid_agent_id', `${id}: ${JSON.stringify(r.body)}`);
      }
      assert.equal((await env.admin.call('POST', '/v1/agents', { id: 'spiffe://acme.test/ns/prod/sa/valid_agent-1.x' })).status, 201);
      await mark();
    });
  });
}
