import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { DpopKey, sendWithDpop, WritAgentClient, WritClient } from '@writ/sdk';
import { HttpAuthorizer, InProcessAuthorizer } from '../src/gateway/authorizer.js';
import { parseGatewayConfig } from '../src/gateway/config.js';
import { silentLog } from '../src/gateway/log.js';
import { McpGateway } from '../src/gateway/mcp-gateway.js';
import { serveMcpHttp, type RunningHttp } from '../src/gateway/mcp-serve.js';
import { approveCatalogs, emptyPins, writePinFile } from '../src/gateway/pins.js';
import { Redactor } from '../src/gateway/secrets.js';
import { createUpstreams } from '../src/gateway/upstream.js';
import { TaskTokenKeeper } from '../src/gateway/task-token-keeper.js';
import { accessTokenHash } from '../src/tokens/dpop.js';
import { runWrit, spawnWrit, startHttpMcpFixture, stdioGatewayClient, textOf, type HttpMcpFixture, type WritProcess } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

/**
 * DPoP (RFC 9449) done for the agent: the SDK's agent client and the gateways hold its
 * key and prove possession to Writ on every call (answering Writ's nonce challenge), and
 * the HTTP gateway and proxy check a bound token's proof against their own URL, so a
 * copied bound token is useless there too. Writ runs with server nonces required.
 */

type Env = Awaited<ReturnType<typeof setup>>;

/** A private JWK as `writ agent keygen` writes it, and the SDK key made from it. */
async function agentDpopKey(): Promise<{ jwk: JWK; key: DpopKey }> {
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), alg: 'EdDSA' };
  return { jwk, key: await DpopKey.fromJwk(jwk) };
}

/** A hand-made proof, each claim open to a bad value. */
async function rawProof(k: { key: CryptoKey; jwk: JWK }, htm: string, htu: string, over: { ath?: string; iat?: number; jti?: string } = {}): Promise<string> {
  const claims: Record<string, unknown> = { jti: over.jti ?? randomBytes(12).toString('base64url'), htm, htu, iat: over.iat ?? Math.floor(Date.now() / 1000) };
  if (over.ath) claims.ath = over.ath;
  return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'dpop+jwt', jwk: k.jwk }).sign(k.key);
}

async function rawKey(jwk?: JWK): Promise<{ key: CryptoKey; jwk: JWK }> {
  if (jwk) {
    const { importJWK } = await import('jose');
    return { key: (await importJWK(jwk, 'EdDSA')) as CryptoKey, jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x } };
  }
  const { privateKey, publicKey } = await generateKeyPair('Ed25519');
  return { key: privateKey, jwk: await exportJWK(publicKey) };
}

const INIT = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };

describe('DPoP for the agent: the SDK, the MCP gateway and the HTTP proxy', () => {
  let env: Env;
  let dir: string;
  let upstream: HttpMcpFixture;
  let gatewayConfig: ReturnType<typeof parseGatewayConfig>;
  let agentJwk: JWK;
  let key: DpopKey;
  let agentClientJwk: JWK;

  before(async () => {
    env = await setup('sqlite', { config: { dpopNonces: true } });
    dir = mkdtempSync(join(tmpdir(), 'writ-dpop-gw-'));
    upstream = await startHttpMcpFixture();
    gatewayConfig = parseGatewayConfig(
      { writ: { url: env.url }, pins_file: join(dir, 'pins.json'), upstreams: [{ name: 'docs', transport: 'http', url: upstream.url, destination: null }] },
      join(dir, 'gateway.json'),
    );
    const ups = createUpstreams(gatewayConfig, { redactor: new Redactor(), log: silentLog });
    await ups.get('docs')!.refresh();
    writePinFile(gatewayConfig.pins_file, approveCatalogs(emptyPins(), new Map([['docs', [...ups.get('docs')!.cached().values()].map((t) => t.tool)]])).pins);
    await ups.get('docs')!.close();
    ({ jwk: agentJwk, key } = await agentDpopKey());
    // the harness agent's private key, as a JWK for the SDK client
    agentClientJwk = { ...(await exportJWK(env.agent.privateKey)), kid: 'k1' };
  });
  after(async () => {
    await upstream?.close();
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const newTask = () => env.createTask({ scope: { tools: ['docs.*', 'api.*'], resources: [], destinations: [] }, max_actions: 50 });
  const agentFor = (taskId: string, dpop: DpopKey | boolean = key) => new WritAgentClient({ url: env.url, agentId: env.agent.id, taskId, key: { jwk: agentClientJwk }, dpop });

  async function startGateway(authorizer: HttpAuthorizer | InProcessAuthorizer): Promise<{ gw: McpGateway; running: RunningHttp; close: () => Promise<void> }> {
    const gw = new McpGateway({ config: gatewayConfig, authorizer, log: silentLog });
    await gw.start();
    const running = await serveMcpHttp(gw, {});
    return { gw, running, close: async () => (await running.close(), await gw.close()) };
  }

  it('Writ asks for its nonce and the SDK sends the proof again with it (`use_dpop_nonce`, then allowed)', async () => {
    const task = await newTask();
    const agent = agentFor(task.id);
    const token = await agent.taskToken();
    const seen: { status: number; code?: string; nonce: string | null }[] = [];
    const client = new WritClient({ url: env.url });
    const r = await sendWithDpop(key, { method: 'GET', url: `${env.url}/v1/tasks/current`, accessToken: token }, async (dpop) => {
      const a = await client.send({ method: 'GET', path: '/v1/tasks/current', token, dpop });
      seen.push({ status: a.status, code: a.body?.error?.code, nonce: a.headers.get('dpop-nonce') });
      return a;
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.status, 401);
    assert.equal(seen[0]!.code, 'use_dpop_nonce');
    assert.ok(seen[0]!.nonce, 'the challenge names the nonce');
    // the agent client does the same for every call
    const d = await agent.authorize({ tool: 'docs.search', arguments: { q: 'x' }, audience: 'mcp:docs' });
    assert.equal(d.decision, 'allow');
    await agent.reportOutcome(d.decision_id, 'succeeded');
    // its token is bound: a bearer use is refused
    const asBearer = await client.send({ method: 'GET', path: '/v1/tasks/current', token });
    assert.equal(asBearer.status, 401);
    assert.equal(asBearer.body.error.code, 'invalid_token');
  });

  it('through the HTTP gateway holding the agent\'s key: the stock MCP client with the SDK\'s authorizedFetch lists and calls tools', async () => {
    const g = await startGateway(new HttpAuthorizer({ url: env.url, dpopKey: key }));
    const task = await newTask();
    const agent = agentFor(task.id);
    const client = new Client({ name: 'dpop-agent', version: '1' });
    try {
      await client.connect(new StreamableHTTPClientTransport(new URL(g.running.url), { fetch: agent.authorizedFetch() }));
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'docs.search'));
      const r = await client.callTool({ name: 'docs.search', arguments: { q: 'dpop' } });
      assert.equal(textOf(r), 'results for dpop');
      // the upstream never sees the agent's token or proof
      for (const h of upstream.seen) {
        assert.equal(h.dpop, undefined);
        assert.doesNotMatch(String(h.authorization ?? ''), /^DPoP/i);
      }
    } finally {
      await client.close();
      await g.close();
    }
  });

  it('the HTTP gateway refuses every bad proof for a bound token, each with a typed 401', async () => {
    const g = await startGateway(new HttpAuthorizer({ url: env.url, dpopKey: key }));
    try {
      const task = await newTask();
      const token = await agentFor(task.id).taskToken();
      const k = await rawKey(agentJwk);
      const gwUrl = g.running.url;
      const ath = accessTokenHash(token);
      const post = (proof: string | undefined, scheme = 'DPoP') =>
        fetch(gwUrl, {
          method: 'POST',
          headers: { authorization: `${scheme} ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...(proof === undefined ? {} : { dpop: proof }) },
          body: JSON.stringify(INIT),
        });
      const refused = async (r: Response, code: string, what: string) => {
        const body = (await r.json()) as { error?: { code?: string } };
        assert.equal(r.status, 401, `${what}: ${JSON.stringify(body)}`);
        assert.equal(body.error?.code, code, `${what}: ${JSON.stringify(body)}`);
        if (code === 'invalid_dpop_proof') assert.match(r.headers.get('www-authenticate') ?? '', /^DPoP error="invalid_dpop_proof"/, what);
      };
      // a good proof passes the edge (and Writ, through the gateway's own proof)
      const good = await rawProof(k, 'POST', gwUrl, { ath });
      const first = await post(good);
      assert.equal(first.status, 200, await first.clone().text());
      await first.arrayBuffer();
      await refused(await post(good), 'invalid_dpop_proof', 'a replayed proof');
      await refused(await post(await rawProof(k, 'POST', `${env.url}/v1/authorize`, { ath })), 'invalid_dpop_proof', 'a proof for Writ\'s URL, not the gateway\'s');
      await refused(await post(await rawProof(k, 'POST', gwUrl.replace('/mcp', '/other'), { ath })), 'invalid_dpop_proof', 'a proof for another path');
      await refused(await post(await rawProof(k, 'GET', gwUrl, { ath })), 'invalid_dpop_proof', 'a proof for another method');
      await refused(await post(await rawProof(k, 'POST', gwUrl)), 'invalid_dpop_proof', 'a proof without `ath`');
      await refused(await post(await rawProof(k, 'POST', gwUrl, { ath: accessTokenHash(`${token}x`) })), 'invalid_dpop_proof', 'a proof for another token');
      await refused(await post(await rawProof(await rawKey(), 'POST', gwUrl, { ath })), 'invalid_dpop_proof', 'a proof from another key');
      await refused(await post(await rawProof(k, 'POST', gwUrl, { ath, iat: Math.floor(Date.now() / 1000) - 600 })), 'invalid_dpop_proof', 'an expired proof');
      await refused(await post(undefined), 'invalid_dpop_proof', 'no proof');
      await refused(await post(undefined, 'Bearer'), 'invalid_token', 'the bound token as a bearer token');
      await refused(await post(await rawProof(k, 'POST', gwUrl, { ath }), 'Bearer'), 'invalid_token', 'the bound token as a bearer token, with a proof');
      // an unbound token sent as DPoP
      const unbound = await env.taskToken(task.id);
      const r = await fetch(gwUrl, { method: 'POST', headers: { authorization: `DPoP ${unbound}`, dpop: await rawProof(k, 'POST', gwUrl, { ath: accessTokenHash(unbound) }), 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(INIT) });
      await refused(r, 'invalid_token', 'an unbound token as DPoP');
    } finally {
      await g.close();
    }
  });

  it('a gateway that does not hold the token\'s key refuses it (401 `invalid_token`), in both modes; in-process it takes a proof checked at its edge', async () => {
    const task = await newTask();
    const token = await agentFor(task.id).taskToken();
    const other = await DpopKey.generate();
    for (const a of [new HttpAuthorizer({ url: env.url }), new HttpAuthorizer({ url: env.url, dpopKey: other }), new InProcessAuthorizer(env.writ), new InProcessAuthorizer(env.writ, { dpopKey: other })]) {
      await assert.rejects(a.task(token), (e: any) => e.status === 401 && e.code === 'invalid_token', a.mode);
      await assert.rejects(a.authorize(token, { tool: 'docs.search', arguments: {}, audience: 'mcp:docs' }), (e: any) => e.status === 401 && e.code === 'invalid_token', a.mode);
      await a.close();
    }
    for (const a of [new InProcessAuthorizer(env.writ, { dpopKey: key }), new InProcessAuthorizer(env.writ, { dpopProvenAtEdge: true }), new HttpAuthorizer({ url: env.url, dpopKey: key })]) {
      assert.equal((await a.task(token)).taskId, task.id, a.mode);
      const d = await a.authorize(token, { tool: 'docs.search', arguments: {}, audience: 'mcp:docs' });
      assert.equal(d.decision, 'allow', a.mode);
      await a.reportOutcome(token, d.decision_id, 'succeeded');
      await a.close();
    }
    // the in-process gateway (`writ serve --gateway`) checks the client's proof at its edge
    const g = await startGateway(new InProcessAuthorizer(env.writ, { dpopProvenAtEdge: true }));
    const client = new Client({ name: 'dpop-agent', version: '1' });
    try {
      await client.connect(new StreamableHTTPClientTransport(new URL(g.running.url), { fetch: agentFor(task.id).authorizedFetch() }));
      assert.equal(textOf(await client.callTool({ name: 'docs.search', arguments: { q: 'edge' } })), 'results for edge');
      const stolen = await fetch(g.running.url, { method: 'POST', headers: { authorization: `DPoP ${token}`, dpop: await rawProof(await rawKey(), 'POST', g.running.url, { ath: accessTokenHash(token) }), 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(INIT) });
      assert.equal(stolen.status, 401);
      assert.equal(((await stolen.json()) as any).error.code, 'invalid_dpop_proof');
    } finally {
      await client.close();
      await g.close();
    }
  });

  it('the CLI: `writ token --dpop-key` gets a bound token (answering the nonce), `writ authorize --dpop-key` uses it, and the stdio gateway with `writ.dpop_key_file` calls tools with it', async () => {
    const keyFile = join(dir, 'dpop.key.json');
    writeFileSync(keyFile, JSON.stringify(agentJwk), { mode: 0o600 });
    const agentKeyFile = join(dir, 'agent.key.json');
    writeFileSync(agentKeyFile, JSON.stringify({ ...agentClientJwk, alg: 'EdDSA' }), { mode: 0o600 });
    const task = await newTask();
    const tok = await runWrit(['token', '--url', env.url, '--agent', env.agent.id, '--key', agentKeyFile, '--task', task.id, '--dpop-key', keyFile]);
    assert.equal(tok.code, 0, tok.stderr);
    const issued = JSON.parse(tok.stdout);
    assert.equal(issued.token_type, 'DPoP');
    const token = issued.access_token as string;
    const auth = await runWrit(['authorize', '--url', env.url, '--task-token', token, '--tool', 'docs.search', '--audience', 'mcp:docs', '--dpop-key', keyFile]);
    assert.equal(auth.code, 0, auth.stderr);
    assert.equal(JSON.parse(auth.stdout).decision, 'allow');
    const without = await runWrit(['authorize', '--url', env.url, '--task-token', token, '--tool', 'docs.search', '--audience', 'mcp:docs']);
    assert.notEqual(without.code, 0, 'without the key the bound token is refused');
    assert.match(without.stderr + without.stdout, /invalid_token/);

    const tokenFile = join(dir, 'task.token');
    writeFileSync(tokenFile, token);
    const configPath = join(dir, 'gateway-stdio.json');
    writeFileSync(configPath, JSON.stringify({ writ: { url: env.url, task_token_file: tokenFile, dpop_key_file: 'dpop.key.json' }, pins_file: gatewayConfig.pins_file, upstreams: [{ name: 'docs', transport: 'http', url: upstream.url, destination: null }] }));
    const { client, stderr } = await stdioGatewayClient(configPath, {});
    try {
      const r = await client.callTool({ name: 'docs.search', arguments: { q: 'stdio' } });
      assert.equal(textOf(r), 'results for stdio', stderr());
    } finally {
      await client.close();
    }
  });

  it('the stdio gateway\'s own tokens (`--agent-key` with `--task`) are bound to its DPoP key, and used with proofs by it', async () => {
    const task = await newTask();
    const keeper = new TaskTokenKeeper({ url: env.url, agentId: env.agent.id, key: { key: env.agent.privateKey, alg: 'EdDSA', kid: 'k1' }, task: task.id, log: silentLog, dpopKey: key });
    const ready = new Promise<void>((ok) => {
      const off = keeper.onChange(() => {
        if (keeper.current().kind === 'ready') {
          off();
          ok();
        }
      });
    });
    keeper.start();
    try {
      await ready;
      const token = keeper.token()!;
      assert.equal((decodeJwt(token).cnf as { jkt?: string } | undefined)?.jkt, key.jkt, 'bound to the gateway\'s DPoP key (through Writ\'s nonce challenge)');
      const a = new HttpAuthorizer({ url: env.url, dpopKey: key });
      const d = await a.authorize(token, { tool: 'docs.search', arguments: {}, audience: 'mcp:docs' });
      assert.equal(d.decision, 'allow');
      await a.close();
      const bearer = await new WritClient({ url: env.url }).send({ method: 'GET', path: '/v1/tasks/current', token });
      assert.equal(bearer.status, 401, 'useless without the key');
    } finally {
      await keeper.close();
    }
  });

  describe('the HTTP proxy (`writ gateway http --dpop-key`)', () => {
    let api: http.Server;
    let proxy: WritProcess;
    let proxyUrl: string;
    before(async () => {
      api = http.createServer((req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, dpop: req.headers.dpop ?? null, authorization: req.headers.authorization ?? null }));
      });
      await new Promise<void>((ok) => api.listen(0, '127.0.0.1', ok));
      const keyFile = join(dir, 'proxy-dpop.key.json');
      writeFileSync(keyFile, JSON.stringify(agentJwk), { mode: 0o600 });
      const configPath = join(dir, 'proxy.json');
      writeFileSync(configPath, JSON.stringify({ writ: { url: env.url }, listen: { host: '127.0.0.1', port: 0 }, routes: [{ name: 'api.items', methods: ['GET'], path: '/items', upstream: `http://127.0.0.1:${(api.address() as AddressInfo).port}` }] }));
      proxy = spawnWrit(['gateway', 'http', '--config', configPath, '--dpop-key', keyFile], {});
      proxyUrl = (await proxy.waitFor('listening')).url;
    });
    after(async () => {
      await proxy?.stop();
      api?.closeAllConnections();
      await new Promise<void>((ok) => (api ? api.close(() => ok()) : ok()));
    });

    it('forwards a request with a good proof (the upstream sees neither token nor proof) and refuses a proof for another URL', async () => {
      const task = await env.createTask({ scope: { tools: ['api.*'], resources: [], destinations: ['127.0.0.1:*'] }, max_actions: 10 });
      const agent = agentFor(task.id);
      const r = await agent.authorizedFetch()(`${proxyUrl}/items`);
      const body = (await r.json()) as any;
      assert.equal(r.status, 200, JSON.stringify(body));
      assert.deepEqual([body.dpop, body.authorization], [null, null]);
      const token = await agent.taskToken();
      const k = await rawKey(agentJwk);
      const wrong = await fetch(`${proxyUrl}/items`, { headers: { authorization: `DPoP ${token}`, dpop: await rawProof(k, 'GET', `${proxyUrl}/other`, { ath: accessTokenHash(token) }) } });
      assert.equal(wrong.status, 401);
      assert.equal(((await wrong.json()) as any).error.code, 'invalid_dpop_proof');
      assert.match(wrong.headers.get('www-authenticate') ?? '', /^DPoP error="invalid_dpop_proof"/);
    });
  });
});
