/**
 * The HTTP tool proxy's /metrics (issue 15 item 1), and the PostgreSQL pool gauges of the
 * service's /metrics.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { InProcessAuthorizer } from '../src/gateway/authorizer.js';
import { parseProxyConfig } from '../src/gateway/config.js';
import { HttpProxy } from '../src/gateway/http-proxy.js';
import { backends, setup } from './helpers/harness.js';

const METRICS_TOKEN = 'wmt_Pq4Lx8Nc2Vb7Ks1Dh9Wf3Tg6Rm_Zy-Ej5Ua0Oi2Qs';

describe('HTTP proxy /metrics: upstream latency and refusals per route', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let upstream: http.Server;
  let proxy: HttpProxy;
  let closedProxy: HttpProxy;
  let running: Awaited<ReturnType<HttpProxy['listen']>>;
  let closedRunning: Awaited<ReturnType<HttpProxy['listen']>>;
  let token: string;
  let taskId: string;

  before(async () => {
    env = await setup('sqlite');
    upstream = http.createServer((req, res) => {
      req.resume();
      res.writeHead(req.url?.startsWith('/api/missing') ? 404 : 200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((ok) => upstream.listen(0, '127.0.0.1', ok));
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const config = parseProxyConfig(
      {
        writ: { url: env.url },
        routes: [
          { name: 'api.read', methods: ['GET'], path: '/api/*', upstream: upstreamUrl },
          { name: 'api.write', methods: ['POST'], path: '/write', upstream: upstreamUrl },
        ],
      },
      '/tmp/proxy-metrics.json',
    );
    proxy = new HttpProxy({ config, authorizer: new InProcessAuthorizer(env.writ), log: () => undefined, metricsToken: METRICS_TOKEN });
    running = await proxy.listen();
    closedProxy = new HttpProxy({ config, authorizer: new InProcessAuthorizer(env.writ), log: () => undefined });
    closedRunning = await closedProxy.listen();
    const task = await env.createTask({ scope: { tools: ['api.read'], resources: [], destinations: ['127.0.0.1:*'] }, max_actions: 100 });
    taskId = task.id;
    token = await env.taskToken(task.id);
  });
  after(async () => {
    await running?.close();
    await closedRunning?.close();
    upstream?.closeAllConnections();
    await new Promise((ok) => upstream?.close(ok));
    await env?.teardown();
  });

  const scrape = (bearer?: string, url = running.url) => fetch(`${url}/metrics`, bearer ? { headers: { authorization: `Bearer ${bearer}` } } : {});

  it('is served only with the metrics token; without one configured, /metrics is an ordinary path', async () => {
    assert.equal((await scrape()).status, 401);
    for (const bad of [token, `${METRICS_TOKEN}x`, METRICS_TOKEN.slice(1), METRICS_TOKEN.toLowerCase()]) assert.equal((await scrape(bad)).status, 401, bad.slice(0, 8));
    const ok = await scrape(METRICS_TOKEN);
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('content-type') ?? '', /^text\/plain/);
    // no route takes /metrics on the proxy without a metrics token: 404 no_route, no exposition
    const closed = await scrape(METRICS_TOKEN, closedRunning.url);
    assert.equal(closed.status, 404);
    assert.doesNotMatch(await closed.text(), /writ_gateway/);
  });

  it('times upstream answers and counts refusals by route and code; labels carry no ids, paths or tokens', async () => {
    const secretPath = 'acct-7731-secret';
    const get = (path: string, bearer: string | null = token, method = 'GET') => fetch(`${running.url}${path}`, { method, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });
    assert.equal((await get(`/api/${secretPath}`)).status, 200);
    assert.equal((await get('/api/missing')).status, 404);
    assert.equal((await get('/write', token, 'POST')).status, 403, 'out of scope: denied');
    assert.equal((await get('/api/x', null)).status, 401);
    assert.equal((await get('/api/x', 'not-a-token')).status, 401);
    assert.equal((await get(`/nowhere/${secretPath}`)).status, 404);
    await proxy.flush();
    const text = await (await scrape(METRICS_TOKEN)).text();
    assert.match(text, /^writ_gateway_upstream_call_duration_seconds_count\{tool="api\.read",result="ok"\} 1$/m);
    assert.match(text, /^writ_gateway_upstream_call_duration_seconds_count\{tool="api\.read",result="http_error"\} 1$/m);
    assert.match(text, /^writ_gateway_refusals_total\{tool="api\.write",code="action_denied"\} 1$/m);
    assert.match(text, /^writ_gateway_refusals_total\{tool="api\.read",code="unauthorized"\} 1$/m);
    assert.match(text, /^writ_gateway_refusals_total\{tool="api\.read",code="invalid_token"\} 1$/m);
    assert.match(text, /^writ_gateway_refusals_total\{tool="unmatched",code="no_route"\} 1$/m);
    for (const leak of [secretPath, taskId, token, env.agent.id, 'dec_', 'not-a-token']) assert.ok(!text.includes(leak), `the exposition holds \`${leak}\``);
  });
});

for (const { backend, skip } of backends()) {
  describe(`service /metrics: store pool gauges (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    before(async () => {
      env = await setup(backend);
    });
    after(async () => env?.teardown());

    it(backend === 'postgres' ? 'exposes the PostgreSQL pool: connections, idle, waiting, max' : 'has no pool series on SQLite', async () => {
      const r = await env.admin.call('GET', '/metrics');
      assert.equal(r.status, 200);
      const text = String(r.body);
      if (backend === 'sqlite') {
        assert.doesNotMatch(text, /writ_store_pool_/);
        return;
      }
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      const total = value('writ_store_pool_connections');
      const idle = value('writ_store_pool_idle_connections');
      const waiting = value('writ_store_pool_waiting_requests');
      const max = value('writ_store_pool_max_connections');
      assert.ok(total >= 1 && total <= max, `total ${total} of ${max}`);
      assert.ok(idle >= 0 && idle <= total, `idle ${idle}`);
      assert.equal(waiting, 0);
      assert.ok(max >= 1);
      assert.match(text, /# TYPE writ_store_pool_connections gauge/);
    });
  });
}
