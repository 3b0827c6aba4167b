import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { PrivateKeyJwtProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { exportJWK } from 'jose';
import { HttpAuthorizer, InProcessAuthorizer } from '../src/gateway/authorizer.js';
import { parseGatewayConfig } from '../src/gateway/config.js';
import { silentLog } from '../src/gateway/log.js';
import { McpGateway } from '../src/gateway/mcp-gateway.js';
import { serveMcpHttp, type RunningHttp } from '../src/gateway/mcp-serve.js';
import { approveCatalogs, emptyPins, writePinFile } from '../src/gateway/pins.js';
import { Redactor } from '../src/gateway/secrets.js';
import { createUpstreams } from '../src/gateway/upstream.js';
import { GATEWAY_ROUTES } from '../src/wire/openapi.js';
import { startHttpMcpFixture, textOf, type HttpMcpFixture } from './helpers/gateway-fixtures.js';
import { makeAssertion, setup } from './helpers/harness.js';

/**
 * The MCP authorization spec (2025-06-18) at the HTTP gateway: RFC 9728 protected resource
 * metadata naming Writ as the authorization server, a 401 that points at it, RFC 8414
 * metadata at Writ a stock client accepts, and the MCP SDK's own `Client` with its
 * `PrivateKeyJwtProvider` discovering all of it, getting a task token and calling a tool.
 */

type Env = Awaited<ReturnType<typeof setup>>;
const METRICS_TOKEN = 'm'.repeat(40);

describe('MCP authorization: protected resource metadata at the gateway, a stock MCP client', () => {
  let env: Env;
  let dir: string;
  let upstream: HttpMcpFixture;
  let config: ReturnType<typeof parseGatewayConfig>;
  let gateways: { gw: McpGateway; running: RunningHttp }[] = [];

  async function startGateway(mode: 'http' | 'in-process'): Promise<RunningHttp> {
    const authorizer = mode === 'http' ? new HttpAuthorizer({ url: env.url }) : new InProcessAuthorizer(env.writ, { dpopProvenAtEdge: true });
    const gw = new McpGateway({ config, authorizer, log: silentLog });
    await gw.start();
    const running = await serveMcpHttp(gw, { metricsToken: METRICS_TOKEN });
    gateways.push({ gw, running });
    return running;
  }

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-prm-'));
    upstream = await startHttpMcpFixture();
    config = parseGatewayConfig({ writ: { url: env.url }, pins_file: join(dir, 'pins.json'), upstreams: [{ name: 'docs', transport: 'http', url: upstream.url, destination: null }] }, join(dir, 'gateway.json'));
    const ups = createUpstreams(config, { redactor: new Redactor(), log: silentLog });
    await ups.get('docs')!.refresh();
    writePinFile(config.pins_file, approveCatalogs(emptyPins(), new Map([['docs', [...ups.get('docs')!.cached().values()].map((t) => t.tool)]])).pins);
    await ups.get('docs')!.close();
  });
  after(async () => {
    for (const g of gateways) {
      await g.running.close();
      await g.gw.close();
    }
    gateways = [];
    await upstream?.close();
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves RFC 9728 metadata (for the MCP endpoint and for the origin) naming Writ, and every 401 points at it', async () => {
    const gw = await startGateway('http');
    const origin = new URL(gw.url).origin;
    const forEndpoint = await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`);
    assert.equal(forEndpoint.status, 200);
    const meta = (await forEndpoint.json()) as Record<string, unknown>;
    assert.equal(meta.resource, gw.url, 'the resource is the MCP endpoint (RFC 9728 §3.3: the URL the metadata URL was built from)');
    assert.deepEqual(meta.authorization_servers, [env.writ.config.issuer]);
    assert.deepEqual(meta.bearer_methods_supported, ['header']);
    assert.deepEqual(meta.dpop_signing_alg_values_supported, ['EdDSA', 'ES256']);
    const forOrigin = (await (await fetch(`${origin}/.well-known/oauth-protected-resource`)).json()) as Record<string, unknown>;
    assert.equal(forOrigin.resource, origin);
    assert.equal((await fetch(`${origin}/.well-known/oauth-protected-resource/other`)).status, 404, 'only the endpoint\'s path');
    assert.equal((await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`, { method: 'POST' })).status, 405);

    const challenge = `resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`;
    const none = await fetch(gw.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(none.status, 401);
    const h = none.headers.get('www-authenticate') ?? '';
    assert.match(h, /^Bearer /, 'Bearer first: what a stock client reads');
    assert.ok(h.includes(challenge), h);
    assert.match(h, /DPoP algs="EdDSA ES256"/);
    const bad = await fetch(gw.url, { method: 'POST', headers: { authorization: 'Bearer not-a-token', 'content-type': 'application/json' }, body: '{}' });
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('www-authenticate') ?? '', /^Bearer realm="writ-gateway", error="invalid_token", resource_metadata="/);
    const dpopBad = await fetch(gw.url, { method: 'POST', headers: { authorization: 'DPoP not-a-token', 'content-type': 'application/json' }, body: '{}' });
    assert.equal(dpopBad.status, 401);

    // every gateway route listed in src/wire/openapi.ts is answered (here without credentials)
    const expected: Record<string, number> = { 'GET /.well-known/oauth-protected-resource': 200, 'GET /.well-known/oauth-protected-resource{path}': 200, 'POST {path}': 401, 'GET {path}': 401, 'DELETE {path}': 401, 'GET /metrics': 401 };
    assert.deepEqual(Object.keys(GATEWAY_ROUTES).sort(), Object.keys(expected).sort());
    for (const [key, status] of Object.entries(expected)) {
      const [method, p] = key.split(' ') as [string, string];
      const r = await fetch(`${origin}${p.replace('{path}', '/mcp')}`, { method });
      assert.equal(r.status, status, key);
      await r.arrayBuffer();
    }
  });

  it('Writ\'s RFC 8414 metadata fits a stock client; its authorization endpoint is a typed refusal', async () => {
    const meta = (await (await fetch(`${env.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, any>;
    assert.equal(meta.issuer, env.writ.config.issuer);
    assert.equal(meta.token_endpoint, `${meta.issuer}/oauth/token`);
    assert.equal(meta.authorization_endpoint, `${meta.issuer}/oauth/authorize`);
    assert.deepEqual(meta.response_types_supported, []);
    assert.ok(meta.grant_types_supported.includes('client_credentials'));
    assert.deepEqual(meta.token_endpoint_auth_methods_supported, ['private_key_jwt']);
    for (const init of [{ method: 'GET' }, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'response_type=code&client_id=x' }]) {
      const r: Response = await fetch(`${meta.authorization_endpoint}?response_type=code&client_id=x&redirect_uri=https%3A%2F%2Fevil.example%2Fcb`, { ...init, redirect: 'manual' });
      assert.equal(r.status, 400, init.method);
      assert.equal(r.headers.get('location'), null, 'never redirected: no redirect URI is trusted');
      assert.equal(((await r.json()) as any).error, 'unsupported_response_type');
    }
  });

  it('the token endpoint takes the task as scope `task:<id>` and a `resource` indicator; other scopes and bad resources are refused', async () => {
    const task = await env.createTask();
    const token = async (fields: Record<string, string>): Promise<{ status: number; body: any }> =>
      env.admin.form('/oauth/token', {
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await makeAssertion(env.agent, env.url),
        ...fields,
      });
    const ok = await token({ scope: `task:${task.id}`, resource: 'http://127.0.0.1:1/mcp' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.token_type, 'Bearer');
    assert.equal((await token({ scope: `task:${task.id}`, task_id: task.id })).status, 200, 'both, agreeing');
    const cases: [Record<string, string>, string][] = [
      [{ scope: 'mcp:tools' }, 'invalid_scope'],
      [{ scope: `task:${task.id} admin` }, 'invalid_scope'],
      [{ scope: `task:${task.id} task:tsk_other` }, 'invalid_scope'],
      [{ scope: 'task:' }, 'invalid_scope'],
      [{ scope: 'task:tsk_other', task_id: task.id }, 'invalid_request'],
      [{ scope: `task:${task.id}`, resource: 'not a uri' }, 'invalid_target'],
      [{ scope: `task:${task.id}`, resource: 'https://gw.example/mcp#frag' }, 'invalid_target'],
      [{}, 'invalid_request'],
    ];
    for (const [fields, code] of cases) {
      const r = await token(fields);
      assert.equal(r.status, 400, JSON.stringify(fields));
      assert.equal(r.body.error, code, JSON.stringify({ fields, body: r.body }));
    }
    // a task named by scope is checked as `task_id` is: a revoked one is refused
    const other = await env.createTask();
    await env.admin.call('POST', `/v1/tasks/${other.id}/revoke`, {});
    assert.equal((await token({ scope: `task:${other.id}` })).body.error, 'invalid_grant');
  });

  for (const mode of ['http', 'in-process'] as const) {
    it(`the MCP SDK's Client with its PrivateKeyJwtProvider discovers Writ through the 401, gets a task token and calls a tool (${mode} gateway)`, async () => {
      const gw = await startGateway(mode);
      const task = await env.createTask({ scope: { tools: ['docs.*'], resources: [], destinations: [] } });
      const provider = new PrivateKeyJwtProvider({
        clientId: env.agent.id,
        privateKey: { ...(await exportJWK(env.agent.privateKey)) },
        algorithm: 'EdDSA',
        expectedIssuer: env.writ.config.issuer,
        scope: `task:${task.id}`,
      });
      const requests: string[] = [];
      const spy: typeof fetch = async (input, init) => {
        requests.push(`${init?.method ?? 'GET'} ${String(input instanceof Request ? input.url : input)}`);
        return fetch(input, init);
      };
      const client = new Client({ name: 'stock-client', version: '1' });
      try {
        await client.connect(new StreamableHTTPClientTransport(new URL(gw.url), { authProvider: provider, fetch: spy }));
        const tools = await client.listTools();
        assert.ok(tools.tools.some((t) => t.name === 'docs.search'), JSON.stringify(tools));
        assert.equal(textOf(await client.callTool({ name: 'docs.search', arguments: { q: 'oauth' } })), 'results for oauth');
        assert.equal(provider.tokens()?.token_type?.toLowerCase(), 'bearer');
        // the discovery went as the spec says: 401, the resource metadata, Writ's metadata, its token endpoint
        const origin = new URL(gw.url).origin;
        const seq = requests.map((r) => r.replace(origin, 'GW').replace(env.url, 'WRIT'));
        assert.ok(seq.indexOf('GET GW/.well-known/oauth-protected-resource/mcp') > 0, seq.join('\n'));
        assert.ok(seq.includes('GET WRIT/.well-known/oauth-authorization-server'), seq.join('\n'));
        assert.ok(seq.includes('POST WRIT/oauth/token'), seq.join('\n'));
        assert.ok(!seq.some((r) => r.includes('/oauth/authorize')), 'the authorization endpoint is never used');
      } finally {
        await client.close();
      }
    });
  }
});
