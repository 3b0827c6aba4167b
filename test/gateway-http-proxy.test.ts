import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { digestArguments } from '../src/core/digest.js';
import { DEFAULT_POLICY } from '../src/policy/schema.js';
import { createHttpActionGuard } from '@writ/sdk';
import { eventually, spawnWrit, type WritProcess } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bytes: number;
  body: string;
}

/** A raw request (fetch would normalize the path and pick its own framing). */
function raw(url: string, opts: { method?: string; path: string; headers?: Record<string, string>; chunks?: Buffer[] }): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    (async () => {
      for (const c of opts.chunks ?? []) {
        if (!req.write(c)) await new Promise((ok) => req.once('drain', ok));
      }
      req.end();
    })().catch(reject);
  });
}

describe('HTTP tool proxy', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;
  let upstream: http.Server;
  let upstreamUrl: string;
  const seen: Seen[] = [];
  let proxy: WritProcess;
  let proxyUrl: string;
  let taskId: string;
  let token: string;
  const secret = `proxy-secret-${randomBytes(12).toString('hex')}`;
  let guardResults: { ok: boolean; tool?: string }[] = [];

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-proxy-'));
    let guard: ReturnType<typeof createHttpActionGuard> | null = null;
    upstream = http.createServer(async (req, res) => {
      if (req.url?.startsWith('/v2/guarded/')) {
        // a tool server that checks the action token itself (defense in depth)
        const ok = await guard!(req, res);
        guardResults.push({ ok: !!ok, tool: ok?.claims.tool });
        if (!ok) return;
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, bytes: ok.body.length, body: ok.body.toString() });
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ guarded: true, decision_id: ok.claims.decision_id }));
        return;
      }
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, bytes: body.length, body: body.length < 10_000 ? body.toString() : '' });
      if (req.url === '/echo-headers') {
        res.writeHead(200, { 'content-type': 'application/json', 'x-echo-auth': String(req.headers.authorization) });
        res.end(JSON.stringify({ headers: req.headers }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, url: req.url, bytes: body.length }));
    });
    await new Promise<void>((ok) => upstream.listen(0, '127.0.0.1', ok));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
    guard = createHttpActionGuard({ issuer: env.url, audience: upstreamUrl, jwks: jwks as never, tool: 'api.guarded' });

    const auth = { authorization: { env: 'PROXY_TEST_SECRET', prefix: 'Bearer ' } };
    const configPath = join(dir, 'proxy.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        writ: { url: env.url },
        listen: { host: '127.0.0.1', port: 0 },
        max_body_bytes: 4096,
        routes: [
          { name: 'api.items', methods: ['GET', 'POST'], path: '/api/items/:id', upstream: `${upstreamUrl}/v2`, strip_prefix: '/api', headers: auth, resource: 'item:{id}' },
          // the task scope lists resources, so every route names the resource it acts on
          { name: 'api.upload', methods: ['POST'], path: '/upload', upstream: upstreamUrl, headers: auth, body: 'any', resource: 'item:upload' },
          { name: 'api.admin', methods: ['DELETE'], path: '/api/admin/*', upstream: upstreamUrl, headers: auth },
          { name: 'api.echo', methods: ['GET'], path: '/echo-headers', upstream: upstreamUrl, headers: auth, resource: 'item:echo' },
          { name: 'api.guarded', methods: ['POST'], path: '/api/guarded/*', upstream: `${upstreamUrl}/v2`, strip_prefix: '/api', headers: auth, forward_action_token: true, resource: 'item:guarded' },
          { name: 'api.any', methods: ['GET'], path: '/api/*', upstream: upstreamUrl, headers: auth, resource: 'item:any' },
        ],
      }),
    );
    proxy = spawnWrit(['gateway', 'http', '--config', configPath], { PROXY_TEST_SECRET: secret });
    proxyUrl = (await proxy.waitFor('listening')).url;
    const task = await env.createTask({
      scope: { tools: ['api.items', 'api.upload', 'api.echo', 'api.guarded', 'api.any'], resources: ['item:*'], destinations: ['127.0.0.1:*'] },
      max_actions: 100,
    });
    taskId = task.id;
    token = await env.taskToken(task.id);
  });

  after(async () => {
    await proxy?.stop();
    upstream?.closeAllConnections();
    await new Promise<void>((ok) => (upstream ? upstream.close(() => ok()) : ok()));
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const bearer = () => ({ authorization: `Bearer ${token}` });
  const decision = async (id: string) => (await env.admin.call('GET', `/v1/tasks/${taskId}`)).body.decisions.find((d: any) => d.id === id);

  it('authorizes and forwards an allowed request with the route credentials, never the task token', async () => {
    const n = seen.length;
    const r = await fetch(`${proxyUrl}/api/items/42?x=1&x=2&y=z`, { headers: { ...bearer(), cookie: 'session=agent', 'x-trace': 't1' } });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { ok: true, url: '/v2/items/42?x=1&x=2&y=z', bytes: 0 });
    const decisionId = r.headers.get('writ-decision-id')!;
    assert.match(decisionId, /^dec_/);
    const got = seen[n]!;
    assert.equal(got.url, '/v2/items/42?x=1&x=2&y=z');
    assert.equal(got.headers.authorization, `Bearer ${secret}`, 'the upstream got the injected credential');
    assert.equal(got.headers.cookie, undefined);
    assert.equal(got.headers['x-trace'], undefined, 'headers pass only from the route\'s allow-list');
    assert.ok(!JSON.stringify(got.headers).includes(token), 'the task token is stripped');
    const d = await eventually(async () => {
      const x = await decision(decisionId);
      return x?.outcome ? x : null;
    });
    assert.equal(d.tool, 'api.items');
    assert.equal(d.resource, 'item:42');
    assert.equal(d.destination, new URL(upstreamUrl).host);
    assert.equal(d.audience, upstreamUrl);
    assert.equal(d.outcome, 'succeeded');
    // the action's arguments: method, upstream path, query (repeated names as arrays)
    assert.equal(d.args_digest, digestArguments({ method: 'GET', path: '/v2/items/42', query: { x: ['1', '2'], y: 'z' } }));
  });

  it('denies with 403 and the decision id, on scope and on policy over the JSON body, without reaching the upstream', async () => {
    const put = await env.admin.call('PUT', '/v1/policies', {
      policies: `${DEFAULT_POLICY}\n@id("no-big-items")\nforbid (principal, action == Writ::Action::"call", resource == Writ::Tool::"api.items")\nwhen { context.num_args.hasTag("body.amount") && context.num_args.getTag("body.amount") > 1000 };\n`,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const n = seen.length;
    const out = await fetch(`${proxyUrl}/api/admin/users/1`, { method: 'DELETE', headers: bearer() });
    assert.equal(out.status, 403);
    const ob = (await out.json()) as any;
    assert.equal(ob.error.code, 'action_denied');
    assert.match(ob.decision_id, /^dec_/);
    assert.equal(ob.reasons[0].code, 'tool_out_of_scope');
    assert.ok(ob.error.message.includes(ob.decision_id));
    assert.equal((await decision(ob.decision_id)).decision, 'deny');

    const big = await fetch(`${proxyUrl}/api/items/7`, { method: 'POST', headers: { ...bearer(), 'content-type': 'application/json' }, body: JSON.stringify({ amount: 5000 }) });
    assert.equal(big.status, 403);
    const bb = (await big.json()) as any;
    assert.equal(bb.reasons[0].code, 'policy_forbids');
    assert.equal(seen.length, n, 'the upstream saw no denied request');

    const small = await fetch(`${proxyUrl}/api/items/7`, { method: 'POST', headers: { ...bearer(), 'content-type': 'application/json' }, body: '{"amount": 5}' });
    assert.equal(small.status, 200);
    assert.equal(seen.at(-1)!.body, '{"amount": 5}', 'the JSON body is forwarded as sent');
    assert.equal(seen.at(-1)!.headers['content-type'], 'application/json');
  });

  it('reads bodies up to the limit and answers 413 past it', async () => {
    const stream = await raw(proxyUrl, { method: 'POST', path: '/upload', headers: { ...bearer(), 'content-type': 'application/octet-stream' }, chunks: [randomBytes(1500), randomBytes(1500)] });
    assert.equal(stream.status, 200, stream.body);
    assert.equal(seen.at(-1)!.bytes, 3000);
    // read whole (the action binds its digest), then sent with its length
    assert.equal(seen.at(-1)!.headers['transfer-encoding'], undefined);
    assert.equal(seen.at(-1)!.headers['content-length'], '3000');

    const n = seen.length;
    const declared = await raw(proxyUrl, { method: 'POST', path: '/upload', headers: { ...bearer(), 'content-type': 'application/octet-stream', 'content-length': '5000' }, chunks: [randomBytes(5000)] });
    assert.equal(declared.status, 413);
    assert.equal(JSON.parse(declared.body).error.code, 'payload_too_large');
    assert.equal(seen.length, n, 'a declared oversize body is refused before anything is forwarded');

    const chunked = await raw(proxyUrl, { method: 'POST', path: '/upload', headers: { ...bearer(), 'content-type': 'application/octet-stream' }, chunks: Array.from({ length: 6 }, () => randomBytes(1000)) });
    assert.equal(chunked.status, 413);
    assert.equal(JSON.parse(chunked.body).error.code, 'payload_too_large');
    assert.equal(seen.length, n, 'a chunked oversize body is refused before anything is forwarded');

    const bigJson = await raw(proxyUrl, { method: 'POST', path: '/api/items/1', headers: { ...bearer(), 'content-type': 'application/json' }, chunks: [Buffer.from(JSON.stringify({ pad: 'x'.repeat(5000) }))] });
    assert.equal(bigJson.status, 413);
    const text = await raw(proxyUrl, { method: 'POST', path: '/api/items/1', headers: { ...bearer(), 'content-type': 'text/plain' }, chunks: [Buffer.from('{"amount": 5000}')] });
    assert.equal(text.status, 415, 'a JSON route refuses bodies policy cannot see');
  });

  it('masks the injected secret in what the upstream echoes, and keeps it out of its own output', async () => {
    const r = await fetch(`${proxyUrl}/echo-headers`, { headers: bearer() });
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.ok(!text.includes(secret), 'the body is masked');
    assert.ok(text.includes('*'.repeat(`Bearer ${secret}`.length)), text);
    assert.ok(!String(r.headers.get('x-echo-auth')).includes(secret), 'response headers are masked');
    assert.equal(seen.at(-1)!.headers.authorization, `Bearer ${secret}`);
    assert.ok(!proxy.stderr().includes(secret) && !proxy.stdout().includes(secret));
    assert.ok(!proxy.stderr().includes(token));
  });

  it('refuses requests without a task token, unknown routes and path tricks', async () => {
    const none = await fetch(`${proxyUrl}/api/items/1`);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /Bearer/);
    const bad = await fetch(`${proxyUrl}/api/items/1`, { headers: { authorization: 'Bearer nope' } });
    assert.equal(bad.status, 401);
    assert.equal((await fetch(`${proxyUrl}/nowhere`, { headers: bearer() })).status, 404);
    assert.equal((await fetch(`${proxyUrl}/api/items/1`, { method: 'DELETE', headers: bearer() })).status, 405);
    for (const path of ['/api/items/..', '/api/items/%2e%2e', '/api/items/a%2Fb', '//evil.example/api/items/1', '/api//items/1']) {
      const r = await raw(proxyUrl, { path, headers: bearer() });
      assert.equal(r.status, 400, path);
    }
    const inUrl = await raw(proxyUrl, { path: `/api/items/1?t=${token}`, headers: bearer() });
    assert.equal(inUrl.status, 400);
    assert.equal(JSON.parse(inUrl.body).error.code, 'task_token_in_request');
  });

  it('judges the path policy sees in one canonical form: percent-encoding cannot get past a rule on the path', async () => {
    const put = await env.admin.call('PUT', '/v1/policies', {
      policies: `${DEFAULT_POLICY}\n@id("no-admin-paths")\nforbid (principal, action == Writ::Action::"call", resource == Writ::Tool::"api.any")\nwhen { context.args.hasTag("path") && context.args.getTag("path") like "/api/admin*" };\n`,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const n = seen.length;
    for (const path of ['/api/admin', '/api/%61dmin', '/api/%61%64%6D%69%6E/users', '/api/adm%69n?x=1']) {
      const r = await raw(proxyUrl, { path, headers: bearer() });
      assert.equal(r.status, 403, `${path}: ${r.body}`);
      const body = JSON.parse(r.body);
      assert.equal(body.error.code, 'action_denied', path);
      assert.equal(body.reasons[0].code, 'policy_forbids', path);
      assert.ok(body.error.message.includes('no-admin-paths'), body.error.message);
    }
    assert.equal(seen.length, n, 'no encoding of the path reached the upstream');

    // allowed: policy sees the decoded path, the upstream gets it re-encoded one way
    const ok = await raw(proxyUrl, { path: '/api/caf%c3%a9/x%20y/a%3Ab', headers: bearer() });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(seen.at(-1)!.url, '/api/caf%C3%A9/x%20y/a:b');
    const d = await eventually(async () => decision(ok.headers['writ-decision-id'] as string));
    assert.equal(d.args_digest, digestArguments({ method: 'GET', path: '/api/café/x y/a:b', query: {} }));
    const same = await raw(proxyUrl, { path: '/api/caf%C3%A9/x%20y/a:b', headers: bearer() });
    assert.equal(same.status, 200);
    assert.equal(seen.at(-1)!.url, '/api/caf%C3%A9/x%20y/a:b', 'the same path whatever the encoding');

    // ambiguous encodings are refused before routing, policy or the upstream
    const m = seen.length;
    for (const path of ['/api/%2e%2e/admin', '/api/x/%2e%2e', '/api/%2e/admin', '/api/%252e%252e/admin', '/api/%2561dmin', '/api/items/%E0%A4%A', '/api/%E0%A4%A', '/api/a%2Fdmin', '/api/a%5Cb', '/api/a%00b']) {
      const r = await raw(proxyUrl, { path, headers: bearer() });
      assert.equal(r.status, 400, `${path}: ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'invalid_path', path);
    }
    assert.equal(seen.length, m, 'nothing refused reached the upstream');
  });

  it('forwards the action token to a tool server that verifies it against the request and burns it', async () => {
    guardResults = [];
    const r = await fetch(`${proxyUrl}/api/guarded/run?mode=fast`, { method: 'POST', headers: { ...bearer(), 'content-type': 'application/json' }, body: '{"job": 1}' });
    assert.equal(r.status, 200, await r.clone().text());
    const body = (await r.json()) as any;
    assert.equal(body.guarded, true);
    assert.equal(body.decision_id, r.headers.get('writ-decision-id'));
    assert.deepEqual(guardResults, [{ ok: true, tool: 'api.guarded' }]);
    const at = seen.at(-1)!.headers['writ-action-token'] as string;
    assert.ok(at && at !== token);
    // replayed directly at the tool server: refused, the token was burned
    const replay = await fetch(`${upstreamUrl}/v2/guarded/run?mode=fast`, { method: 'POST', headers: { 'writ-action-token': at, 'content-type': 'application/json' }, body: '{"job": 1}' });
    assert.equal(replay.status, 409);
    assert.equal(((await replay.json()) as any).error.code, 'token_already_used');
    // an agent cannot plant its own action token through the proxy
    const planted = await fetch(`${proxyUrl}/api/items/3`, { headers: { ...bearer(), 'writ-action-token': 'planted' } });
    assert.equal(planted.status, 200);
    assert.equal(seen.at(-1)!.headers['writ-action-token'], undefined);
  });
});
