import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { ManualClock } from '../src/core/clock.js';
import { UnavailableError } from '../src/core/errors.js';
import { Writ } from '../src/app/writ.js';
import { TASK_TOKEN_TYP } from '../src/tokens/token-types.js';
import {
  decodePart,
  flipSignature,
  freshEd25519,
  hmacWithPublicKey,
  JWT_PATTERN,
  signWith,
  standardClaims,
  tamperPayload,
  unsignedJwt,
} from './helpers/bad-tokens.js';
import { Api, backends, makeAgentKeys, makeAssertion, openTestStore, setup, type AgentKeys, type Backend } from './helpers/harness.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const AUD = 'https://tools.example/github';

/** Entry types that record a refused or suspicious request; anything else is a change of state. */
const SECURITY_EVENTS = new Set(['token.refused', 'action.refused', 'action.replayed', 'auth.refused', 'request.refused']);

const postgresStoreLanded = existsSync(new URL('../src/store/postgres/postgres-store.ts', import.meta.url));

function skipFor(backend: Backend, skip: string | false): string | false {
  if (skip) return skip;
  if (backend === 'postgres' && !postgresStoreLanded) return 'the PostgreSQL store has not landed yet';
  return false;
}

type Env = Awaited<ReturnType<typeof setup>>;
type Res = { status: number; body: any; headers?: Headers };

/** No error body carries a stack trace, a source path or a token (design §4). */
function assertClean(r: Res): void {
  const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
  assert.doesNotMatch(text, /\bat \S+ \(|\n\s+at |\bat (file|node):/, `stack trace in ${text}`);
  assert.doesNotMatch(text, /(\/[\w.@-]+)+\.(ts|js|mjs|cjs)\b|node_modules|node:internal/, `file path in ${text}`);
  assert.doesNotMatch(text, JWT_PATTERN, `token in ${text}`);
}

/** `{error: {code, message}}`, nothing else at the top level. */
function assertError(r: Res, status: number, code: string): void {
  assert.equal(r.status, status, `status for ${code}: ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body, 'object', `JSON body: ${String(r.body)}`);
  assert.deepEqual(Object.keys(r.body), ['error'], JSON.stringify(r.body));
  assert.equal(r.body.error.code, code, JSON.stringify(r.body));
  assert.equal(typeof r.body.error.message, 'string');
  assertClean(r);
}

/** RFC 6749 §5.2: `{error, error_description}` at the top level. */
function assertOAuthError(r: Res, status: number, error: string): void {
  assert.equal(r.status, status, `status for ${error}: ${JSON.stringify(r.body)}`);
  assert.deepEqual(Object.keys(r.body).sort(), ['error', 'error_description'], JSON.stringify(r.body));
  assert.equal(r.body.error, error, JSON.stringify(r.body));
  assert.equal(typeof r.body.error_description, 'string');
  assertClean(r);
}

interface Snapshot {
  seq: number;
  agents: number;
  tasks: number;
}

async function snapshot(env: Env): Promise<Snapshot> {
  const head = await env.store.auditHead();
  return {
    seq: head?.seq ?? 0,
    agents: (await env.store.listAgents()).length,
    tasks: (await env.store.listTasks({ limit: 10_000 })).length,
  };
}

async function newEntries(env: Env, since: Snapshot) {
  return env.store.listAudit({ after: since.seq, limit: 10_000 });
}

/** Nothing changed but, at most, security events were recorded. */
async function assertNoChange(env: Env, since: Snapshot): Promise<void> {
  const now = await snapshot(env);
  assert.equal(now.agents, since.agents, 'no agent was written');
  assert.equal(now.tasks, since.tasks, 'no task was written');
  const types = (await newEntries(env, since)).map((e) => e.type);
  assert.ok(types.every((t) => SECURITY_EVENTS.has(t)), `only security events were audited: ${types.join(',')}`);
}

/** Exactly these audit entry types were written, and nothing else changed. */
async function assertAudited(env: Env, since: Snapshot, expected: string[]) {
  const entries = await newEntries(env, since);
  assert.deepEqual(entries.map((e) => e.type), expected);
  const now = await snapshot(env);
  assert.equal(now.agents, since.agents, 'no agent was written');
  assert.equal(now.tasks, since.tasks, 'no task was written');
  return entries;
}

/** A raw HTTP/1.1 request (fetch cannot send a chunked body without a length, or a bad path). */
function raw(url: string, opts: { method: string; path: string; headers?: Record<string, string>; chunks?: Buffer[] }): Promise<Res> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: opts.method, path: opts.path, headers: opts.headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let body: any = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* not json */
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    const write = async () => {
      for (const c of opts.chunks ?? []) {
        if (req.destroyed) return;
        const ok = req.write(c);
        if (!ok) await new Promise((r) => req.once('drain', r));
      }
      req.end();
    };
    write().catch(() => undefined);
  });
}

for (const { backend, skip: harnessSkip } of backends()) {
  const skip = skipFor(backend, harnessSkip);

  describe(`bad input end to end (${backend})`, { skip }, () => {
    let env: Env;
    let otherAgent: AgentKeys;
    const tokenForm = (assertion: string, taskId: string) => ({
      grant_type: 'client_credentials',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion,
      task_id: taskId,
    });
    const askToken = (assertion: string, taskId: string) => env.admin.form('/oauth/token', tokenForm(assertion, taskId));
    const register = (id: string, keys: unknown[]) => env.admin.call('POST', '/v1/agents', { id, jwks: { keys } });
    const agentApi = (token: string) => new Api(env.url, token);
    const okAction = { tool: 'github.get', arguments: { n: 1 }, audience: AUD };

    before(async () => {
      env = await setup(backend);
      otherAgent = await makeAgentKeys('spiffe://acme.test/agent/other');
      const r = await register(otherAgent.id, [otherAgent.publicJwk]);
      assert.equal(r.status, 201);
    });
    after(async () => env?.teardown());

    describe('body and transport', () => {
      it('refuses malformed JSON with 400 invalid_json', async () => {
        const s = await snapshot(env);
        for (const raw of ['{', '{"agent_id": }', 'nul', '{"a":1}}', '\u0000']) {
          assertError(await env.admin.call('POST', '/v1/tasks', undefined, { raw }), 400, 'invalid_json');
        }
        const task = await env.createTask();
        const s2 = await snapshot(env);
        const agent = agentApi(await env.taskToken(task.id));
        const s3 = await snapshot(env);
        assertError(await agent.call('POST', '/v1/authorize', undefined, { raw: '{"tool": "github.get",' }), 400, 'invalid_json');
        await assertAudited(env, s3, []);
        assert.ok(s2.seq > s.seq);
      });

      it('refuses a body over 64 KiB with 413 payload_too_large (declared length)', async () => {
        const s = await snapshot(env);
        const big = { agent_id: env.agent.id, intent: 'x'.repeat(65 * 1024), scope: { tools: ['github.*'] }, ttl_seconds: 60, max_actions: 1 };
        assertError(await env.admin.call('POST', '/v1/tasks', big), 413, 'payload_too_large');
        // exactly one byte too many
        const justOver = `{"pad":"${'x'.repeat(64 * 1024 - 9)}"}`;
        assert.equal(Buffer.byteLength(justOver), 64 * 1024 + 1);
        assertError(await env.admin.call('POST', '/v1/tasks', undefined, { raw: justOver }), 413, 'payload_too_large');
        const form = await fetch(`${env.url}/oauth/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: `grant_type=client_credentials&client_assertion=${'a'.repeat(70 * 1024)}`,
        });
        assertOAuthError({ status: form.status, body: await form.json() }, 413, 'payload_too_large');
        await assertNoChange(env, s);
      });

      it('refuses a chunked body that grows past 64 KiB with 413, and keeps serving', async () => {
        const s = await snapshot(env);
        const chunk = Buffer.alloc(16 * 1024, 'a');
        const r = await raw(env.url, {
          method: 'POST',
          path: '/v1/tasks',
          headers: { authorization: `Bearer ${env.admin.token}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
          chunks: [Buffer.from('{"intent":"'), chunk, chunk, chunk, chunk, chunk],
        });
        assertError(r, 413, 'payload_too_large');
        await assertNoChange(env, s);
        const ok = await env.admin.call('GET', '/v1/agents');
        assert.equal(ok.status, 200);
      });

      it('refuses unknown fields with 400 invalid_request', async () => {
        const s = await snapshot(env);
        const task = {
          agent_id: env.agent.id,
          intent: 'x',
          scope: { tools: ['github.*'] },
          ttl_seconds: 60,
          max_actions: 1,
        };
        assertError(await env.admin.call('POST', '/v1/tasks', { ...task, admin: true }), 400, 'invalid_request');
        assertError(await env.admin.call('POST', '/v1/tasks', { ...task, scope: { ...task.scope, everything: true } }), 400, 'invalid_request');
        assertError(
          await env.admin.call('POST', '/v1/agents', { id: 'spiffe://acme.test/agent/x', jwks: { keys: [env.agent.publicJwk] }, status: 'active' }),
          400,
          'invalid_request',
        );
        assertError(await env.admin.call('PUT', '/v1/policies', { policies: 'permit(principal, action, resource);', force: true }), 400, 'invalid_request');
        await assertNoChange(env, s);

        const t = await env.createTask();
        const agent = agentApi(await env.taskToken(t.id));
        const s2 = await snapshot(env);
        const r = await agent.call('POST', '/v1/authorize', { ...okAction, break_glass: true });
        assertError(r, 400, 'invalid_request');
        assert.ok(Array.isArray(r.body.error.details?.issues));
        assertError(await env.admin.call('POST', '/v1/actions/consume', { action_token: 'x', audience: AUD, force: 1 }, { token: null }), 400, 'invalid_request');
        await assertAudited(env, s2, []);
        assert.equal((await env.store.listDecisions(t.id)).length, 0, 'no decision was recorded');
      });

      it('refuses a wrong content type with 415 unsupported_media_type', async () => {
        const s = await snapshot(env);
        const body = JSON.stringify({ agent_id: env.agent.id, intent: 'x', scope: { tools: ['a'] }, ttl_seconds: 60, max_actions: 1 });
        for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx', 'multipart/form-data; boundary=x']) {
          assertError(await env.admin.call('POST', '/v1/tasks', undefined, { raw: body, contentType: ct }), 415, 'unsupported_media_type');
        }
        // the token endpoint takes a form, not JSON; it answers in the OAuth shape
        const r = await env.admin.call('POST', '/oauth/token', { grant_type: 'client_credentials' }, { token: null });
        assertOAuthError(r, 415, 'unsupported_media_type');
        await assertNoChange(env, s);
      });

      it('answers 404 for an unknown route and 405 (with Allow) for a wrong method', async () => {
        const s = await snapshot(env);
        assertError(await env.admin.call('GET', '/v1/nothing-here'), 404, 'not_found');
        assertError(await env.admin.call('GET', '/v2/tasks'), 404, 'not_found');
        const r = await env.admin.call('DELETE', '/v1/tasks');
        assertError(r, 405, 'method_not_allowed');
        assert.match(r.headers?.get('allow') ?? '', /GET/);
        assert.match(r.headers?.get('allow') ?? '', /POST/);
        const r2 = await env.admin.call('GET', '/v1/authorize');
        assertError(r2, 405, 'method_not_allowed');
        assert.equal(r2.headers?.get('allow'), 'POST');
        await assertNoChange(env, s);
      });

      it('answers a malformed percent-encoding in a path with a 4xx, not a 500', async () => {
        const s = await snapshot(env);
        for (const path of ['/v1/tasks/%E0%A4%A', '/v1/agents/%ZZ', '/v1/tasks/%', '/v1/agents/%C0%AF']) {
          const r = await raw(env.url, { method: 'GET', path, headers: { authorization: `Bearer ${env.admin.token}` } });
          assert.ok(r.status >= 400 && r.status < 500, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
          assertError(r, r.status, r.body.error.code);
        }
        const r = await raw(env.url, { method: 'POST', path: '/v1/tasks/%E0%A4%A/complete', headers: { authorization: `Bearer ${env.admin.token}` } });
        assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${JSON.stringify(r.body)}`);
        assertClean(r);
        await assertNoChange(env, s);
      });

      it('never echoes a token, even one sent in a path or a field name', async () => {
        const t = await env.createTask();
        const token = await env.taskToken(t.id);
        const s = await snapshot(env);
        const r1 = await env.admin.call('GET', `/v1/tasks/${token}`);
        assertError(r1, 404, 'task_not_found');
        const r2 = await env.admin.call('GET', `/v1/nowhere/${token}`);
        assertError(r2, 404, 'not_found');
        const r3 = await env.admin.call('GET', `/v1/agents/${token}`);
        assertError(r3, 404, 'agent_not_found');
        const r4 = await env.admin.call('POST', '/v1/tasks', { [token]: 1 });
        assertError(r4, 400, 'invalid_request');
        const r5 = await env.admin.form('/oauth/token', { grant_type: token });
        assertOAuthError(r5, 400, 'unsupported_grant_type');
        await assertNoChange(env, s);
      });
    });

    describe('operator authentication', () => {
      it('refuses a missing operator token with 401', async () => {
        const s = await snapshot(env);
        for (const [method, path, body] of [
          ['GET', '/v1/agents', undefined],
          ['POST', '/v1/agents', { id: 'spiffe://acme.test/agent/new', jwks: { keys: [env.agent.publicJwk] } }],
          ['POST', '/v1/tasks', { agent_id: env.agent.id, intent: 'x', scope: { tools: ['a'] }, ttl_seconds: 60, max_actions: 1 }],
          ['GET', '/v1/audit', undefined],
          ['PUT', '/v1/policies', { policies: 'permit(principal, action, resource);' }],
        ] as const) {
          const r = await env.admin.call(method, path, body, { token: null });
          assertError(r, 401, 'unauthorized');
          assert.match(r.headers?.get('www-authenticate') ?? '', /^Bearer/);
        }
        const rAuthz = await env.admin.call('POST', '/v1/authorize', okAction, { token: null });
        assertError(rAuthz, 401, 'unauthorized');
        await assertNoChange(env, s);
      });

      it('refuses a wrong operator token with 401 invalid_token', async () => {
        const s = await snapshot(env);
        for (const bad of ['wop_not_a_real_token_0000000000000', `${env.admin.token}x`, env.admin.token!.slice(0, -1)]) {
          assertError(await env.admin.call('GET', '/v1/agents', undefined, { token: bad }), 401, 'invalid_token');
          assertError(
            await env.admin.call('POST', '/v1/tasks', { agent_id: env.agent.id, intent: 'x', scope: { tools: ['a'] }, ttl_seconds: 60, max_actions: 1 }, { token: bad }),
            401,
            'invalid_token',
          );
        }
        // a task token is not an operator token
        const t = await env.createTask();
        const taskToken = await env.taskToken(t.id);
        const s2 = await snapshot(env);
        assertError(await env.admin.call('GET', '/v1/agents', undefined, { token: taskToken }), 401, 'invalid_token');
        await assertNoChange(env, s2);
        assert.ok(s2.tasks === s.tasks + 1);
      });
    });

    describe('OAuth token endpoint', () => {
      let task: { id: string };
      before(async () => {
        task = await env.createTask({ ttl_seconds: 3600 });
      });

      /** A refused token request writes one `token.refused` and no `token.issued`. */
      async function refused(assertion: string, taskId: string, status: number, error: string, reason?: string) {
        const s = await snapshot(env);
        const r = await askToken(assertion, taskId);
        assertOAuthError(r, status, error);
        const [entry] = await assertAudited(env, s, ['token.refused']);
        if (reason) assert.equal(entry!.data.reason, reason, JSON.stringify(entry!.data));
        assert.doesNotMatch(JSON.stringify(entry!.data), JWT_PATTERN, 'the audit entry does not hold the assertion');
        return entry!;
      }

      it('refuses an `alg: none` assertion', async () => {
        const claims = standardClaims(env.agent.id, env.url);
        await refused(unsignedJwt(claims), task.id, 401, 'invalid_client');
        await refused(unsignedJwt(claims, { alg: 'None' }), task.id, 401, 'invalid_client');
        // a valid signature bolted onto an alg:none header
        const good = await makeAssertion(env.agent, env.url);
        const [, p, sig] = good.split('.');
        const noneHeader = Buffer.from(JSON.stringify({ alg: 'none', kid: 'k1' })).toString('base64url');
        await refused(`${noneHeader}.${p}.${sig}`, task.id, 401, 'invalid_client');
      });

      it('refuses HS256 signed with the agent\'s public key as the HMAC secret', async () => {
        for (const form of ['raw', 'x', 'jwk-json'] as const) {
          const jwt = await hmacWithPublicKey(standardClaims(env.agent.id, env.url), env.agent.publicJwk, form);
          await refused(jwt, task.id, 401, 'invalid_client');
        }
      });

      it('refuses an assertion signed by a key that is not the agent\'s', async () => {
        // another registered agent's key, claiming to be this agent
        await refused(await makeAssertion(env.agent, env.url, { key: otherAgent.privateKey }), task.id, 401, 'invalid_client', 'bad_assertion');
        // a fresh key, same kid
        const fresh = await freshEd25519();
        await refused(await makeAssertion(env.agent, env.url, { key: fresh.privateKey }), task.id, 401, 'invalid_client', 'bad_assertion');
        // a fresh key carried in the header (`jwk`): never trusted
        await refused(
          await signWith(fresh.privateKey, standardClaims(env.agent.id, env.url), { alg: 'EdDSA', jwk: fresh.publicJwk }),
          task.id,
          401,
          'invalid_client',
          'bad_assertion',
        );
        // a P-256 key where the agent registered Ed25519
        const ec = await generateKeyPair('ES256');
        await refused(await makeAssertion(env.agent, env.url, { key: ec.privateKey, alg: 'ES256' }), task.id, 401, 'invalid_client', 'bad_assertion');
        // the agent's own signature over claims changed afterwards
        const good = await makeAssertion(env.agent, env.url);
        await refused(tamperPayload(good, { jti: 'changed' }), task.id, 401, 'invalid_client', 'bad_assertion');
      });

      it('refuses an expired assertion', async () => {
        const now = Math.floor(Date.now() / 1000);
        await refused(await makeAssertion(env.agent, env.url, { iat: now - 400, exp: now - 120 }), task.id, 401, 'invalid_client', 'bad_assertion');
      });

      it('refuses a future-dated assertion', async () => {
        const now = Math.floor(Date.now() / 1000);
        await refused(await makeAssertion(env.agent, env.url, { iat: now + 3600, exp: now + 3660 }), task.id, 401, 'invalid_client', 'bad_assertion');
        // iat well in the future, exp near: still refused
        await refused(await makeAssertion(env.agent, env.url, { iat: now + 120, exp: now + 180 }), task.id, 401, 'invalid_client', 'bad_assertion');
      });

      it('refuses an assertion living longer than 5 minutes, and takes one of exactly 5 minutes', async () => {
        const now = Math.floor(Date.now() / 1000);
        await refused(await makeAssertion(env.agent, env.url, { iat: now, exp: now + 301 }), task.id, 401, 'invalid_client', 'bad_assertion');
        await refused(await makeAssertion(env.agent, env.url, { iat: now, exp: now + 3600 }), task.id, 401, 'invalid_client', 'bad_assertion');
        const ok = await askToken(await makeAssertion(env.agent, env.url, { iat: now, exp: now + 300 }), task.id);
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
      });

      it('refuses a reused assertion jti, even for a different task', async () => {
        const jti = `reuse-${Date.now()}`;
        const first = await askToken(await makeAssertion(env.agent, env.url, { jti }), task.id);
        assert.equal(first.status, 200);
        await refused(await makeAssertion(env.agent, env.url, { jti }), task.id, 401, 'invalid_client', 'assertion_replayed');
        const task2 = await env.createTask();
        await refused(await makeAssertion(env.agent, env.url, { jti }), task2.id, 401, 'invalid_client', 'assertion_replayed');
        // the very same assertion string, replayed
        const a = await makeAssertion(env.agent, env.url);
        assert.equal((await askToken(a, task.id)).status, 200);
        await refused(a, task2.id, 401, 'invalid_client', 'assertion_replayed');
        const issued = await env.store.listAudit({ type: 'token.issued', agentId: env.agent.id, limit: 10_000 });
        assert.equal(issued.filter((e) => e.data.assertion_jti === jti).length, 1);
      });

      it('refuses a wrong audience', async () => {
        for (const aud of ['https://evil.example', `${env.url}/v1/authorize`, `${env.url}/`, 'http://127.0.0.1']) {
          await refused(await makeAssertion(env.agent, env.url, { aud }), task.id, 401, 'invalid_client');
        }
        // the token endpoint URL is accepted as well as the issuer
        const r = await askToken(await makeAssertion(env.agent, `${env.url}/oauth/token`), task.id);
        assert.equal(r.status, 200);
      });

      it('refuses iss != sub', async () => {
        await refused(await makeAssertion(env.agent, env.url, { iss: otherAgent.id }), task.id, 401, 'invalid_client');
        await refused(await makeAssertion(env.agent, env.url, { sub: otherAgent.id }), task.id, 401, 'invalid_client');
        // signed by the other agent, naming it as iss, but this agent as sub
        await refused(await makeAssertion(otherAgent, env.url, { sub: env.agent.id }), task.id, 401, 'invalid_client');
      });

      it('refuses an unknown agent', async () => {
        const ghost = await makeAgentKeys('spiffe://acme.test/agent/ghost');
        await refused(await makeAssertion(ghost, env.url), task.id, 401, 'invalid_client', 'unknown_agent');
      });

      it('refuses a disabled agent', async () => {
        const a = await makeAgentKeys('spiffe://acme.test/agent/to-disable');
        assert.equal((await register(a.id, [a.publicJwk])).status, 201);
        const t = await env.admin.call('POST', '/v1/tasks', { agent_id: a.id, intent: 'x', scope: { tools: ['github.*'] }, ttl_seconds: 600, max_actions: 5 });
        assert.equal(t.status, 201);
        const tok = await askToken(await makeAssertion(a, env.url), t.body.id);
        assert.equal(tok.status, 200);
        const d = await env.admin.call('POST', `/v1/agents/${encodeURIComponent(a.id)}/disable`);
        assert.equal(d.status, 200, JSON.stringify(d.body));
        assert.deepEqual(d.body.revoked_task_ids, [t.body.id]);
        await refused(await makeAssertion(a, env.url), t.body.id, 401, 'invalid_client', 'agent_disabled');
        // its existing task token stops working too
        const s = await snapshot(env);
        const r = await agentApi(tok.body.access_token).call('POST', '/v1/authorize', okAction);
        assert.equal(r.status, 401);
        assert.ok(['agent_disabled', 'task_not_active'].includes(r.body.error.code), r.body.error.code);
        await assertNoChange(env, s);
      });

      it('refuses a task of another agent, and an unknown task, with invalid_grant', async () => {
        const theirs = await env.admin.call('POST', '/v1/tasks', { agent_id: otherAgent.id, intent: 'x', scope: { tools: ['github.*'] }, ttl_seconds: 600, max_actions: 5 });
        assert.equal(theirs.status, 201);
        await refused(await makeAssertion(env.agent, env.url), theirs.body.id, 400, 'invalid_grant', 'task_not_for_agent');
        await refused(await makeAssertion(env.agent, env.url), 'task_does_not_exist', 400, 'invalid_grant', 'task_not_for_agent');
        // a task that has ended
        const ended = await env.createTask();
        assert.equal((await env.admin.call('POST', `/v1/tasks/${ended.id}/revoke`, {})).status, 200);
        await refused(await makeAssertion(env.agent, env.url), ended.id, 400, 'invalid_grant', 'task_not_active');
      });

      it('refuses malformed token requests in the OAuth shape', async () => {
        const s = await snapshot(env);
        const a = await makeAssertion(env.agent, env.url);
        assertOAuthError(await env.admin.form('/oauth/token', { ...tokenForm(a, task.id), grant_type: 'password' }), 400, 'unsupported_grant_type');
        assertOAuthError(await env.admin.form('/oauth/token', { ...tokenForm(a, task.id), client_assertion_type: 'x' }), 401, 'invalid_client');
        const { task_id: _t, ...noTask } = tokenForm(a, task.id);
        assertOAuthError(await env.admin.form('/oauth/token', noTask), 400, 'invalid_request');
        assertOAuthError(await env.admin.form('/oauth/token', {}), 400, 'invalid_request');
        const dup = await fetch(`${env.url}/oauth/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: `${new URLSearchParams(tokenForm(a, task.id)).toString()}&task_id=other`,
        });
        assertOAuthError({ status: dup.status, body: await dup.json() }, 400, 'invalid_request');
        await assertNoChange(env, s);
        // not a JWT at all
        await refused('not-a-jwt', task.id, 401, 'invalid_client');
        await refused('eyJ.eyJ.', task.id, 401, 'invalid_client');
      });

      it('issues a token to an ES256 (P-256) agent', async () => {
        const es = await makeAgentKeys('spiffe://acme.test/agent/es256', 'ES256');
        assert.equal((await register(es.id, [{ ...es.publicJwk, alg: 'ES256' }])).status, 201);
        const t = await env.admin.call('POST', '/v1/tasks', { agent_id: es.id, intent: 'x', scope: { tools: ['github.*'] }, ttl_seconds: 600, max_actions: 5 });
        const s = await snapshot(env);
        const r = await askToken(await makeAssertion(es, env.url), t.body.id);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.token_type, 'Bearer');
        await assertAudited(env, s, ['token.issued']);
        const a = await agentApi(r.body.access_token).call('POST', '/v1/authorize', okAction);
        assert.equal(a.body.decision, 'allow');
        // an ES256 agent cannot switch to EdDSA with some other key
        const fresh = await freshEd25519();
        await refused(await makeAssertion(es, env.url, { key: fresh.privateKey, alg: 'EdDSA' }), t.body.id, 401, 'invalid_client', 'bad_assertion');
      });

      it('accepts the fully-specified alg `Ed25519` (RFC 9864), also for a key registered with `alg: EdDSA`', async () => {
        const s = await snapshot(env);
        const r = await askToken(await makeAssertion(env.agent, env.url, { alg: 'Ed25519' }), task.id);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        await assertAudited(env, s, ['token.issued']);

        const ed = await makeAgentKeys('spiffe://acme.test/agent/eddsa-alg');
        assert.equal((await register(ed.id, [{ ...ed.publicJwk, alg: 'EdDSA' }])).status, 201);
        const t = await env.admin.call('POST', '/v1/tasks', { agent_id: ed.id, intent: 'x', scope: { tools: ['github.*'] }, ttl_seconds: 600, max_actions: 5 });
        for (const alg of ['Ed25519', 'EdDSA']) {
          const r2 = await askToken(await makeAssertion(ed, env.url, { alg }), t.body.id);
          assert.equal(r2.status, 200, `${alg}: ${JSON.stringify(r2.body)}`);
        }
      });
    });

    describe('task and action tokens', () => {
      let taskA: { id: string };
      let taskB: { id: string };
      let tokenA: string;
      before(async () => {
        taskA = await env.createTask();
        taskB = await env.createTask();
        tokenA = await env.taskToken(taskA.id);
      });

      it('refuses a task token for another task on /complete with 403 wrong_task', async () => {
        const s = await snapshot(env);
        assertError(await agentApi(tokenA).call('POST', `/v1/tasks/${taskB.id}/complete`), 403, 'wrong_task');
        await assertNoChange(env, s);
        assert.equal((await env.store.getTask(taskB.id))!.status, 'active');
        // a token of another agent's task, too
        const theirs = await env.admin.call('POST', '/v1/tasks', { agent_id: otherAgent.id, intent: 'x', scope: { tools: ['github.*'] }, ttl_seconds: 600, max_actions: 5 });
        const s2 = await snapshot(env);
        assertError(await agentApi(tokenA).call('POST', `/v1/tasks/${theirs.body.id}/complete`), 403, 'wrong_task');
        await assertNoChange(env, s2);
      });

      it('refuses an action token presented as a task token with 401 invalid_token', async () => {
        const allow = await agentApi(tokenA).call('POST', '/v1/authorize', okAction);
        assert.equal(allow.body.decision, 'allow');
        const s = await snapshot(env);
        assertError(await agentApi(allow.body.action_token).call('POST', '/v1/authorize', okAction), 401, 'invalid_token');
        assertError(await agentApi(allow.body.action_token).call('POST', `/v1/tasks/${taskA.id}/complete`), 401, 'invalid_token');
        await assertNoChange(env, s);
        assert.equal((await env.store.listAudit({ type: 'decision', taskId: taskA.id, after: s.seq })).length, 0);
      });

      it('refuses a task token presented to /v1/actions/consume with 401', async () => {
        const s = await snapshot(env);
        const r = await env.admin.call('POST', '/v1/actions/consume', { action_token: tokenA, audience: AUD }, { token: null });
        assertError(r, 401, 'invalid_token');
        await assertAudited(env, s, ['action.refused']);
      });

      it('refuses a tampered task token', async () => {
        const s = await snapshot(env);
        assertError(await agentApi(flipSignature(tokenA)).call('POST', '/v1/authorize', okAction), 401, 'invalid_token');
        // claims changed (another task) under the original signature
        assertError(await agentApi(tamperPayload(tokenA, { txn: taskB.id })).call('POST', '/v1/authorize', okAction), 401, 'invalid_token');
        // alg swapped to none, signature stripped
        const [, p] = tokenA.split('.');
        const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: TASK_TOKEN_TYP })).toString('base64url')}.${p}.`;
        assertError(await agentApi(none).call('POST', '/v1/authorize', okAction), 401, 'invalid_token');
        // HS256 with the server's public key
        const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
        const hs = await new SignJWT(decodePart(tokenA, 1))
          .setProtectedHeader({ alg: 'HS256', typ: TASK_TOKEN_TYP, kid: jwks.keys[0].kid })
          .sign(new Uint8Array(Buffer.from(jwks.keys[0].x, 'base64url')));
        assertError(await agentApi(hs).call('POST', '/v1/authorize', okAction), 401, 'invalid_token');
        await assertNoChange(env, s);
        assert.equal((await env.store.listAudit({ type: 'decision', after: s.seq })).length, 0);
      });

      it('refuses a token signed by another Writ instance\'s key (same issuer)', async () => {
        const other = await openTestStore(backend);
        const rogue = new Writ(other.store, { issuer: env.url });
        try {
          await rogue.init();
          const now = Math.floor(Date.now() / 1000);
          const claims = { iss: env.url, sub: env.agent.id, aud: env.url, iat: now, exp: now + 300, jti: 'tt_rogue', txn: taskA.id };
          const forged = rogue.tokens.keys.signJwt(TASK_TOKEN_TYP, claims);
          const s = await snapshot(env);
          assertError(await agentApi(forged).call('POST', '/v1/authorize', okAction), 401, 'invalid_token');
          // the same, claiming our kid
          const ourKid = (await (await fetch(`${env.url}/.well-known/jwks.json`)).json()).keys[0].kid;
          const fresh = await freshEd25519();
          const withOurKid = await signWith(fresh.privateKey, claims, { alg: 'EdDSA', typ: TASK_TOKEN_TYP, kid: ourKid });
          assertError(await agentApi(withOurKid).call('POST', '/v1/authorize', okAction), 401, 'invalid_token');
          // a forged action token is not consumed
          const forgedAction = rogue.tokens.keys.signJwt('writ-action+jwt', {
            ...claims,
            aud: AUD,
            jti: 'act_rogue',
            decision_id: 'dec_rogue',
            tool: 'github.get',
            args_digest: 'x',
            exp: now + 30,
          });
          const c = await env.admin.call('POST', '/v1/actions/consume', { action_token: forgedAction, audience: AUD }, { token: null });
          assertError(c, 401, 'invalid_token');
          await assertAudited(env, s, ['action.refused']);
        } finally {
          await rogue.close().catch(() => undefined);
          await other.cleanup().catch(() => undefined);
        }
      });

      it('refuses consume with a wrong audience (401 wrong_audience), and does not spend the token', async () => {
        const allow = await agentApi(tokenA).call('POST', '/v1/authorize', okAction);
        assert.equal(allow.body.decision, 'allow');
        const s = await snapshot(env);
        const r = await env.admin.call('POST', '/v1/actions/consume', { action_token: allow.body.action_token, audience: 'https://tools.example/slack' }, { token: null });
        assertError(r, 401, 'wrong_audience');
        await assertAudited(env, s, ['action.refused']);
        const ok = await env.admin.call('POST', '/v1/actions/consume', { action_token: allow.body.action_token, audience: AUD }, { token: null });
        assert.equal(ok.status, 200);
      });

      it('refuses a tampered action token on consume', async () => {
        const allow = await agentApi(tokenA).call('POST', '/v1/authorize', okAction);
        const s = await snapshot(env);
        for (const bad of [flipSignature(allow.body.action_token), tamperPayload(allow.body.action_token, { tool: 'github.delete_repo' })]) {
          assertError(await env.admin.call('POST', '/v1/actions/consume', { action_token: bad, audience: AUD }, { token: null }), 401, 'invalid_token');
        }
        await assertAudited(env, s, ['action.refused', 'action.refused']);
      });
    });

    describe('agent registration', () => {
      it('refuses bad JWKS with 400 invalid_jwks', async () => {
        const rsa = await generateKeyPair('RS256', { extractable: true });
        const rsaPub = await exportJWK(rsa.publicKey);
        const ed = await generateKeyPair('Ed25519', { extractable: true });
        const edPriv = await exportJWK(ed.privateKey);
        const ec = await generateKeyPair('ES256', { extractable: true });
        const ecPriv = await exportJWK(ec.privateKey);
        const cases: [string, unknown[]][] = [
          ['oct with k', [{ kty: 'oct', k: Buffer.from('secret-secret-secret-secret-1234').toString('base64url') }]],
          ['oct without k', [{ kty: 'oct' }]],
          ['RSA public', [rsaPub]],
          ['Ed25519 private (d)', [edPriv]],
          ['P-256 private (d)', [ecPriv]],
          ['good + private', [env.agent.publicJwk, edPriv]],
          ['Ed25519 with alg ES256', [{ ...env.agent.publicJwk, alg: 'ES256' }]],
          ['Ed25519 with alg HS256', [{ ...env.agent.publicJwk, alg: 'HS256' }]],
          ['X25519', [{ kty: 'OKP', crv: 'X25519', x: env.agent.publicJwk.x }]],
          ['P-384', [{ kty: 'EC', crv: 'P-384', x: 'a'.repeat(64), y: 'a'.repeat(64) }]],
          ['short x', [{ kty: 'OKP', crv: 'Ed25519', x: 'abc' }]],
        ];
        for (const [name, keys] of cases) {
          const s = await snapshot(env);
          const r = await register(`spiffe://acme.test/agent/bad-${name.replace(/\W+/g, '-')}`, keys);
          assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`);
          assertError(r, 400, 'invalid_jwks');
          assert.doesNotMatch(JSON.stringify(r.body), /"d"|secret/, `${name}: the key material is not echoed`);
          await assertAudited(env, s, []);
        }
        const s = await snapshot(env);
        assertError(await register('spiffe://acme.test/agent/no-keys', []), 400, 'invalid_request');
        await assertAudited(env, s, []);
      });

      it('refuses a duplicate agent with 409 agent_exists', async () => {
        const s = await snapshot(env);
        const fresh = await freshEd25519();
        const r = await register(env.agent.id, [{ ...fresh.publicJwk, kid: 'k1' }]);
        assertError(r, 409, 'agent_exists');
        await assertAudited(env, s, []);
        // the registered keys are unchanged: the agent's own assertions still work
        const t = await env.createTask();
        await env.taskToken(t.id);
      });
    });

    describe('policies', () => {
      it('refuses Cedar that does not parse with 400 invalid_policy and diagnostics', async () => {
        const before = await env.admin.call('GET', '/v1/policies');
        const s = await snapshot(env);
        const r = await env.admin.call('PUT', '/v1/policies', { policies: 'permit (principal, action, resource) when { ;' });
        assertError(r, 400, 'invalid_policy');
        assert.ok(Array.isArray(r.body.error.details?.diagnostics) && r.body.error.details.diagnostics.length > 0, JSON.stringify(r.body));
        await assertAudited(env, s, []);
        const after = await env.admin.call('GET', '/v1/policies');
        assert.equal(after.body.version, before.body.version);
      });

      it('refuses a policy that names an unknown context attribute with 400', async () => {
        const before = await env.admin.call('GET', '/v1/policies');
        const s = await snapshot(env);
        const r = await env.admin.call('PUT', '/v1/policies', {
          policies: '@id("p") permit (principal, action == Writ::Action::"call", resource) when { context.no_such_attribute == true };',
        });
        assertError(r, 400, 'invalid_policy');
        assert.ok(r.body.error.details.diagnostics.length > 0);
        const r2 = await env.admin.call('PUT', '/v1/policies', {
          policies: '@id("p") permit (principal == Writ::Nobody::"x", action, resource);',
        });
        assertError(r2, 400, 'invalid_policy');
        await assertAudited(env, s, []);
        assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, before.body.version);
        // authorization still runs on the old policy
        const t = await env.createTask();
        const a = await agentApi(await env.taskToken(t.id)).call('POST', '/v1/authorize', okAction);
        assert.equal(a.body.decision, 'allow');
      });
    });

    describe('expired task token', () => {
      it('refuses a task token past its expiry with 401', async () => {
        const clock = new ManualClock(Date.now());
        const local = await setup(backend, { clock });
        try {
          const t = await local.createTask({ ttl_seconds: 3600 });
          const token = await local.taskToken(t.id);
          const api = new Api(local.url, token);
          assert.equal((await api.call('POST', '/v1/authorize', okAction)).body.decision, 'allow');
          clock.advance(601_000 + 5_000 + 1_000); // past the 600 s token lifetime and the 5 s skew
          const head = (await local.store.auditHead())!.seq;
          const r = await api.call('POST', '/v1/authorize', okAction);
          assertError(r, 401, 'token_expired');
          assert.equal((await local.store.listAudit({ after: head, type: 'decision' })).length, 0);
          assert.equal((await local.store.getTask(t.id))!.status, 'active');
          const c = await api.call('POST', `/v1/tasks/${t.id}/complete`);
          assertError(c, 401, 'token_expired');
        } finally {
          await local.teardown();
        }
      });

      it('refuses an action token past its expiry on consume', async () => {
        const clock = new ManualClock(Date.now());
        const local = await setup(backend, { clock });
        try {
          const t = await local.createTask();
          const api = new Api(local.url, await local.taskToken(t.id));
          const allow = await api.call('POST', '/v1/authorize', okAction);
          clock.advance(120_000);
          const r = await local.admin.call('POST', '/v1/actions/consume', { action_token: allow.body.action_token, audience: AUD }, { token: null });
          assertError(r, 401, 'token_expired');
          assert.equal((await local.store.listAudit({ type: 'action.consumed', limit: 100 })).length, 0);
        } finally {
          await local.teardown();
        }
      });
    });

    describe('store faults', () => {
      const faults: [string, () => Error][] = [
        ['UnavailableError', () => new UnavailableError('the store is unavailable', new Error('disk gone'))],
        ['plain Error', () => new Error('SQLITE_IOERR at /var/lib/writ/writ.db:12:3')],
      ];
      for (const [name, make] of faults) {
        for (const method of ['commitDecisions', 'getTaskWithAgent'] as const) {
          it(`fails closed when ${method} throws ${name}`, async () => {
            const t = await env.createTask();
            const api = agentApi(await env.taskToken(t.id));
            const store = env.store as unknown as Record<string, unknown>;
            const s = await snapshot(env);
            store[method] = async () => {
              throw make();
            };
            try {
              const results = await Promise.all([
                api.call('POST', '/v1/authorize', okAction),
                api.call('POST', '/v1/authorize', { ...okAction, arguments: { n: 2 } }),
                api.call('POST', '/v1/authorize', { tool: 'slack.post', arguments: {}, audience: AUD }), // a deny
              ]);
              for (const r of results) {
                assert.ok(r.status === 503 || r.status === 500, `${r.status} ${JSON.stringify(r.body)}`);
                assertError(r, r.status, r.status === 503 ? 'store_unavailable' : 'internal_error');
                assert.equal(r.body.decision, undefined);
                assert.equal(r.body.action_token, undefined);
                assert.doesNotMatch(JSON.stringify(r.body), /SQLITE|disk gone|\/var\/lib/);
                if (r.status === 503) assert.equal(r.headers?.get('retry-after'), '1');
              }
            } finally {
              delete store[method];
            }
            const entries = await newEntries(env, s);
            assert.ok(!entries.some((e) => e.type === 'decision'), 'no decision was recorded');
            assert.equal((await env.store.listDecisions(t.id)).length, 0);
            assert.equal((await env.store.getTask(t.id))!.actionsUsed, 0, 'no budget was spent');
            // and once the store is back, the next request is decided normally
            const ok = await api.call('POST', '/v1/authorize', okAction);
            assert.equal(ok.status, 200);
            assert.equal(ok.body.decision, 'allow');
          });
        }
      }

      it('fails closed when the token endpoint cannot reach the store', async () => {
        const t = await env.createTask();
        const store = env.store as unknown as Record<string, unknown>;
        const s = await snapshot(env);
        store.useOnce = async () => {
          throw new UnavailableError();
        };
        try {
          const r = await askToken(await makeAssertion(env.agent, env.url), t.id);
          assertOAuthError(r, 503, 'store_unavailable');
          assert.equal(r.body.access_token, undefined);
        } finally {
          delete store.useOnce;
        }
        assert.ok(!(await newEntries(env, s)).some((e) => e.type === 'token.issued'));
      });
    });
  });
}
