import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { verifyChain } from '../src/audit/verify-chain.js';
import { withDefaultUser } from '../src/store/postgres/postgres-store.js';
import type { Store } from '../src/store/store.js';
import { Api, BOOT_TOKEN, makeAgentKeys, makeAssertion, startInstance, type Instance } from './helpers/harness.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

const skip = process.env.WRIT_SKIP_POSTGRES ? `PostgreSQL suites skipped: ${process.env.WRIT_SKIP_POSTGRES}` : false;
const ISSUER = 'http://writ.test';

describe('several instances on one PostgreSQL database', { skip }, () => {
  const url = process.env.WRIT_TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
  const schema = `writ_mi_${randomBytes(6).toString('hex')}`;
  const stores: Store[] = [];
  let a: Instance;
  let b: Instance;
  let proxied: Instance;
  let proxy: TcpProxy;
  let apiA: Api;
  let apiB: Api;
  const agent = makeAgentKeys('spiffe://acme.test/agent/multi');

  const open = async (connectionString: string) => {
    const { PostgresStore } = await import('../src/store/postgres/postgres-store.js');
    const s = new PostgresStore({ connectionString, schema });
    stores.push(s);
    return s;
  };

  before(async () => {
    a = await startInstance(await open(url), { issuer: ISSUER });
    await a.writ.identity.bootstrapAdmin(BOOT_TOKEN);
    b = await startInstance(await open(url), { issuer: ISSUER });
    proxy = new TcpProxy(new URL(url).hostname || '127.0.0.1', Number(new URL(url).port || 5432));
    const port = await proxy.start();
    const viaProxy = new URL(url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(port);
    proxied = await startInstance(await open(viaProxy.toString()), { issuer: ISSUER });
    apiA = new Api(a.url, BOOT_TOKEN);
    apiB = new Api(b.url, BOOT_TOKEN);
    const k = await agent;
    const r = await apiA.call('POST', '/v1/agents', { id: k.id, jwks: { keys: [k.publicJwk] } });
    assert.equal(r.status, 201);
  });

  after(async () => {
    for (const i of [a, b, proxied]) await i?.close();
    await proxy?.close();
    for (const s of stores) await s.close().catch(() => undefined);
    const c = new pg.Client({ connectionString: withDefaultUser(url, process.env.PGUSER) });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.end();
  });

  const newTask = async (maxActions = 100) => {
    const r = await apiA.call('POST', '/v1/tasks', { agent_id: (await agent).id, intent: 'multi', scope: { tools: ['*'] }, ttl_seconds: 600, max_actions: maxActions });
    assert.equal(r.status, 201);
    return r.body.id as string;
  };
  const tokenVia = async (api: Api, taskId: string) => {
    const r = await api.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(await agent, ISSUER),
      task_id: taskId,
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };
  const authorize = (base: string, token: string, args: Record<string, unknown> = {}) =>
    new Api(base, token).call('POST', '/v1/authorize', { tool: 'github.get', arguments: args, audience: 'aud' });

  it('a token from A works on B, and a revoke through A is refused by B on its next request', async () => {
    const task = await newTask();
    const token = await tokenVia(apiA, task);
    assert.equal((await authorize(b.url, token)).body.decision, 'allow');
    const rev = await apiA.call('POST', `/v1/tasks/${task}/revoke`, {});
    assert.equal(rev.status, 200);
    const next = await authorize(b.url, token);
    assert.equal(next.status, 401);
    assert.equal(next.body.error.code, 'task_not_active');
  });

  it('one action token consumed 100 times across both instances succeeds once', async () => {
    const task = await newTask();
    const token = await tokenVia(apiB, task);
    const at = (await authorize(a.url, token)).body.action_token;
    const tries = await Promise.all(
      Array.from({ length: 100 }, (_, i) => (i % 2 ? apiA : apiB).call('POST', '/v1/actions/consume', { action_token: at, audience: 'aud' }, { token: null })),
    );
    assert.equal(tries.filter((t) => t.status === 200).length, 1);
    assert.equal(tries.filter((t) => t.status === 409).length, 99);
  });

  it('the last units of a budget are never overspent across instances', async () => {
    const task = await newTask(5);
    const token = await tokenVia(apiA, task);
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => authorize(i % 2 ? a.url : b.url, token, { i })));
    assert.equal(rs.filter((r) => r.body.decision === 'allow').length, 5);
    assert.ok(rs.every((r) => r.status === 200));
  });

  it('concurrent appends from both instances form one chain that verifies', async () => {
    const task = await newTask(10_000);
    const token = await tokenVia(apiA, task);
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => authorize(i % 2 ? a.url : b.url, token, { i })));
    assert.ok(rs.every((r) => r.body.decision === 'allow'));
    const report = await verifyChain(stores[0]!);
    assert.equal(report.ok, true, JSON.stringify(report));
    const v = await apiB.call('GET', '/v1/audit/verify');
    assert.equal(v.body.ok, true);
  });

  it('a policy put through A decides on B within a second', async () => {
    const task = await newTask();
    const token = await tokenVia(apiA, task);
    const text = '@id("only-reads")\npermit (principal, action, resource) when { resource.name like "*.get" };\n';
    const put = await apiA.call('PUT', '/v1/policies', { policies: text });
    assert.equal(put.status, 200);
    await new Promise((r) => setTimeout(r, 1100));
    const r = await new Api(b.url, token).call('POST', '/v1/authorize', { tool: 'github.delete', arguments: {}, audience: 'aud' });
    assert.equal(r.body.decision, 'deny');
    const d = await apiB.call('GET', `/v1/tasks/${task}`);
    assert.equal(d.body.decisions[0].policy_version, put.body.version);
    const back = await apiA.call('PUT', '/v1/policies', { policies: '@id("all")\npermit (principal, action, resource);\n' });
    assert.equal(back.status, 200);
  });

  it('with the database unreachable, requests fail closed with 503 and recover by themselves', async () => {
    const task = await newTask(10_000);
    const token = await tokenVia(apiA, task);
    assert.equal((await authorize(proxied.url, token)).body.decision, 'allow');
    proxy.cut();
    try {
      for (let i = 0; i < 5; i++) {
        const r = await authorize(proxied.url, token, { i });
        assert.equal(r.status, 503, JSON.stringify(r.body));
        assert.equal(r.body.error.code, 'store_unavailable');
        assert.equal(r.body.decision, undefined);
      }
      const ready = await fetch(`${proxied.url}/readyz`);
      assert.equal(ready.status, 503);
    } finally {
      proxy.restore();
    }
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      const r = await authorize(proxied.url, token, { after: i });
      ok = r.status === 200 && r.body.decision === 'allow';
      if (!ok) await new Promise((res) => setTimeout(res, 200));
    }
    assert.ok(ok, 'the instance recovered');
  });

  it('connections killed mid-load leave no partial record: every allow handed out is in the audit log', async () => {
    const task = await newTask(10_000);
    const token = await tokenVia(apiA, task);
    const pending = Array.from({ length: 150 }, (_, i) => authorize(proxied.url, token, { i }));
    setTimeout(() => proxy.cut(), 15);
    setTimeout(() => proxy.restore(), 300);
    const rs = await Promise.all(pending);
    const allows = rs.filter((r) => r.status === 200 && r.body.decision === 'allow');
    assert.ok(rs.every((r) => r.status === 200 || r.status === 503 || r.status === 500), rs.map((r) => r.status).join(','));
    const detail = await apiA.call('GET', `/v1/tasks/${task}`);
    const recorded = new Set(detail.body.decisions.filter((d: any) => d.decision === 'allow').map((d: any) => d.id));
    for (const r of allows) assert.ok(recorded.has(r.body.decision_id), `allow ${r.body.decision_id} has its record`);
    for (const r of allows) {
      const audit = await apiA.call('GET', `/v1/audit?decision_id=${r.body.decision_id}&type=decision`);
      assert.equal(audit.body.entries.length, 1);
    }
    assert.equal(detail.body.actions_used, recorded.size);
    // and the other way: no decision row without its audit entry, no audit entry without its row
    const decisionRows = new Set(detail.body.decisions.map((d: any) => d.id));
    const audited = (await apiA.call('GET', `/v1/audit?task_id=${task}&type=decision&limit=1000`)).body.entries.map((e: any) => e.decision_id);
    assert.equal(audited.length, new Set(audited).size, 'one audit entry per decision');
    assert.deepEqual([...decisionRows].sort(), [...audited].sort());
    const report = await verifyChain(stores[0]!);
    assert.equal(report.ok, true, JSON.stringify(report));
  });
});
