import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { tracingOn } from '../src/core/tracing.js';
import { startTracing, type RunningTracing } from '../src/core/tracing-sdk.js';
import { tracesUrlOf, tracingFromSettings } from '../src/cli/tracing-env.js';
import { UsageError } from '../src/cli/args.js';
import { HttpAuthorizer } from '../src/gateway/authorizer.js';
import { parseGatewayConfig, parseProxyConfig } from '../src/gateway/config.js';
import { HttpProxy } from '../src/gateway/http-proxy.js';
import { McpGateway } from '../src/gateway/mcp-gateway.js';
import { serveMcpHttp, type RunningHttp } from '../src/gateway/mcp-serve.js';
import { approveCatalogs, emptyPins, writePinFile } from '../src/gateway/pins.js';
import { eventually, httpClient, startHttpMcpFixture, textOf, type HttpMcpFixture } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

/**
 * OpenTelemetry tracing (issue 15 item 2): off unless configured (no provider, no spans);
 * on, one server span per request continuing the caller's W3C `traceparent`, the decision
 * span under it and the stages under that; and the trace carried through the MCP gateway
 * (`_meta`) and the HTTP proxy (headers) to Writ and the upstream. In-process, with the
 * SDK's InMemorySpanExporter (every span as it ends).
 */

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;
const silentLog = () => undefined;
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

interface World {
  env: Awaited<ReturnType<typeof setup>>;
  /** the `traceparent` header of every request Writ answered */
  writSeen: (string | undefined)[];
  fixture: HttpMcpFixture;
  gateway: McpGateway;
  running: RunningHttp;
  proxy: HttpProxy;
  proxyUrl: string;
  closeProxy: () => Promise<void>;
  upstream: http.Server;
  upstreamSeen: IncomingHttpHeaders[];
  /** a task without destinations, for direct decisions */
  token: string;
  /** a task whose scope lists the local upstreams' destination, for the gateway and the proxy */
  gwToken: string;
  dir: string;
}

/** Writ, an MCP gateway in front of an HTTP MCP fixture, and an HTTP proxy in front of a plain upstream, all in this process. */
async function world(): Promise<World> {
  const writSeen: (string | undefined)[] = [];
  const env = await setup('sqlite', { http: { log: silentLog, onResponse: ({ req }) => void writSeen.push(req.headers.traceparent as string | undefined) } });
  const dir = mkdtempSync(join(tmpdir(), 'writ-trace-'));
  const fixture = await startHttpMcpFixture();
  const config = parseGatewayConfig({ writ: { url: env.url }, pins_file: join(dir, 'pins.json'), upstreams: [{ name: 'docs', transport: 'http', url: fixture.url }] }, join(dir, 'gateway.json'));
  const gateway = new McpGateway({ config, authorizer: new HttpAuthorizer({ url: env.url }), log: silentLog });
  await gateway.start();
  const catalog = [...gateway.upstreams.get('docs')!.cached().values()].map((t) => t.tool);
  writePinFile(config.pins_file, approveCatalogs(emptyPins(), new Map([['docs', catalog]])).pins);
  const running = await serveMcpHttp(gateway, { path: '/mcp' });

  const upstreamSeen: IncomingHttpHeaders[] = [];
  const upstream = http.createServer((req, res) => {
    upstreamSeen.push(req.headers);
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((ok) => upstream.listen(0, '127.0.0.1', ok));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const proxy = new HttpProxy({
    config: parseProxyConfig({ writ: { url: env.url }, routes: [{ name: 'github.items', methods: ['GET'], path: '/items/:id', upstream: upstreamUrl }] }),
    authorizer: new HttpAuthorizer({ url: env.url }),
    log: silentLog,
  });
  const listening = await proxy.listen('127.0.0.1', 0);
  const task = await env.createTask({ scope: { tools: ['github.*'], resources: [], destinations: [] }, max_actions: 100 });
  const gwTask = await env.createTask({ scope: { tools: ['github.*', 'docs.*'], resources: [], destinations: ['127.0.0.1:*'] }, max_actions: 100 });
  return { env, writSeen, fixture, gateway, running, proxy, proxyUrl: listening.url, closeProxy: listening.close, upstream, upstreamSeen, token: await env.taskToken(task.id), gwToken: await env.taskToken(gwTask.id), dir };
}

async function closeWorld(w: World | undefined): Promise<void> {
  if (!w) return;
  await w.running.close();
  await w.gateway.close();
  await w.closeProxy();
  w.upstream.closeAllConnections();
  await new Promise<void>((ok) => w.upstream.close(() => ok()));
  await w.fixture.close();
  await w.env.teardown();
  rmSync(w.dir, { recursive: true, force: true });
}

/** One request to Writ with the agent's token and, when given, a `traceparent` header. */
async function callWrit(url: string, token: string, method: string, path: string, body?: unknown, traceparent?: string): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (traceparent !== undefined) headers.traceparent = traceparent;
  const r = await fetch(url + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: r.status, body: await r.json(), headers: r.headers };
}

const authorizeBody = (secret: string) => ({ tool: 'github.create_issue', arguments: { title: secret }, audience: 'https://api.github.com' });

describe('tracing off (no OTLP endpoint)', () => {
  let w: World;
  let client: Client;
  before(async () => {
    // what `writ serve` and `writ gateway` do at start: nothing, without an endpoint
    assert.equal(await tracingFromSettings({ OTEL_SERVICE_NAME: 'writ' }, 'writ'), null);
    w = await world();
    client = await httpClient(w.running.url, w.gwToken);
  });
  after(async () => {
    await client?.close();
    await closeWorld(w);
  });

  it('registers no tracer provider and records nothing; decisions work as before', async () => {
    assert.equal(tracingOn(), false);
    const span = trace.getTracer('probe').startSpan('probe');
    assert.equal(span.isRecording(), false, 'the global provider is the no-op one');
    span.end();
    const r = await callWrit(w.env.url, w.token, 'POST', '/v1/authorize', authorizeBody('x'), TRACEPARENT);
    assert.equal(r.body.decision, 'allow', JSON.stringify(r.body));
    assert.equal(r.headers.get('traceparent'), null);
  });

  it('the gateway still carries the client\'s traceparent unchanged: to Writ as a header, to the upstream in _meta', async () => {
    const n = w.writSeen.length;
    const r = await client.callTool({ name: 'docs.search', arguments: { q: 'off' }, _meta: { traceparent: TRACEPARENT, tracestate: 'vendor=1' } });
    assert.equal(textOf(r), 'results for off');
    assert.ok(w.writSeen.slice(n).includes(TRACEPARENT), 'Writ got the header');
    const meta = w.fixture.metas.at(-1) as Record<string, unknown>;
    assert.equal(meta.traceparent, TRACEPARENT);
    assert.equal(meta.tracestate, 'vendor=1');
    // a malformed one is not passed on
    for (const bad of ['00-zz-00f067aa0ba902b7-01', `00-${'0'.repeat(32)}-${PARENT_ID}-01`, `ff-${TRACE_ID}-${PARENT_ID}-01`, `00-${TRACE_ID}-${PARENT_ID}`]) {
      await client.callTool({ name: 'docs.search', arguments: { q: 'bad' }, _meta: { traceparent: bad } });
      assert.equal((w.fixture.metas.at(-1) as Record<string, unknown> | null)?.traceparent, undefined, bad);
    }
  });

  it('the HTTP proxy passes the agent\'s traceparent to Writ and to the upstream', async () => {
    const n = w.writSeen.length;
    const r = await fetch(`${w.proxyUrl}/items/7`, { headers: { authorization: `Bearer ${w.gwToken}`, traceparent: TRACEPARENT } });
    assert.equal(r.status, 200, await r.text());
    assert.ok(w.writSeen.slice(n).includes(TRACEPARENT));
    assert.equal(w.upstreamSeen.at(-1)!.traceparent, TRACEPARENT);
  });
});

describe('tracing on (in-memory exporter)', () => {
  let w: World;
  let client: Client;
  let tracing: RunningTracing;
  const exporter = new InMemorySpanExporter();
  const secret = `arg-secret-${randomBytes(8).toString('hex')}`;

  before(async () => {
    tracing = startTracing({ serviceName: 'writ-test', exporter });
    w = await world();
    client = await httpClient(w.running.url, w.gwToken);
  });
  after(async () => {
    await client?.close();
    await closeWorld(w);
    await tracing?.shutdown();
  });

  const spans = () => exporter.getFinishedSpans();
  /** waits for the span (server spans end when the response closes, just after the client has it) */
  const span = (pred: (s: ReadableSpan) => boolean) => eventually(async () => spans().find(pred), 10_000);
  const noSecrets = (ss: ReadableSpan[]) => {
    const text = JSON.stringify(ss.map((s) => [s.name, s.attributes]));
    assert.ok(!text.includes(secret), 'no argument value in any span');
    assert.ok(!text.includes(w.token) && !text.includes(w.gwToken), 'no token in any span');
  };

  it('a decision: the server span continues the traceparent; authenticate and authorize under it; policy, sign and store under authorize', async () => {
    exporter.reset();
    const r = await callWrit(w.env.url, w.token, 'POST', '/v1/authorize', authorizeBody(secret), TRACEPARENT);
    assert.equal(r.body.decision, 'allow', JSON.stringify(r.body));
    const server = await span((s) => s.name === 'POST /v1/authorize');
    assert.equal(server.spanContext().traceId, TRACE_ID, 'the caller\'s trace');
    assert.equal(parentOf(server), PARENT_ID, 'a child of the caller\'s span');
    assert.equal(server.attributes['http.route'], '/v1/authorize');
    assert.equal(server.attributes['http.response.status_code'], 200);
    const byName = (n: string) => spans().find((s) => s.name === n && s.spanContext().traceId === TRACE_ID);
    const authn = byName('writ.authenticate')!;
    const authz = byName('writ.authorize')!;
    assert.equal(parentOf(authn), server.spanContext().spanId);
    assert.equal(parentOf(authz), server.spanContext().spanId);
    for (const n of ['writ.policy', 'writ.sign', 'writ.store']) {
      const s = byName(n);
      assert.ok(s, `${n} span`);
      assert.equal(parentOf(s), authz.spanContext().spanId, `${n} is a child of the decision`);
      // the stage lies within the decision
      assert.ok(s.startTime[0] * 1e9 + s.startTime[1] >= authz.startTime[0] * 1e9 + authz.startTime[1] - 1e6, `${n} starts inside`);
    }
    assert.deepEqual(
      { agent: authz.attributes['writ.agent_id'], tool: authz.attributes['writ.tool'], decision: authz.attributes['writ.decision'], id: authz.attributes['writ.decision_id'] },
      { agent: w.env.agent.id, tool: 'github.create_issue', decision: 'allow', id: r.body.decision_id },
    );
    noSecrets(spans());
  });

  it('a deny carries its reason code; a request without traceparent, or a malformed one, starts a trace of its own', async () => {
    exporter.reset();
    const deny = await callWrit(w.env.url, w.token, 'POST', '/v1/authorize', { tool: 'shell.exec', arguments: { cmd: secret }, audience: 'local' }, `00-${TRACE_ID}-${'0'.repeat(16)}-01`);
    assert.equal(deny.body.decision, 'deny');
    const authz = await span((s) => s.name === 'writ.authorize' && s.attributes['writ.decision'] === 'deny');
    assert.equal(authz.attributes['writ.reason'], deny.body.reasons[0].code);
    const server = await span((s) => s.name === 'POST /v1/authorize');
    assert.notEqual(server.spanContext().traceId, TRACE_ID, 'the all-zero parent id is refused: a new trace');
    assert.equal(parentOf(server), undefined);
    await callWrit(w.env.url, w.token, 'GET', '/v1/tasks/current');
    const current = await span((s) => s.name === 'GET /v1/tasks/current');
    assert.equal(parentOf(current), undefined);
    noSecrets(spans());
  });

  it('through the MCP gateway: client _meta → gateway span → Writ\'s decision; the upstream gets the gateway\'s context in _meta', async () => {
    exporter.reset();
    const r = await client.callTool({ name: 'docs.search', arguments: { q: secret }, _meta: { traceparent: TRACEPARENT } });
    assert.equal(textOf(r), `results for ${secret}`);
    const call = await span((s) => s.name === 'gateway tools/call');
    assert.equal(call.spanContext().traceId, TRACE_ID);
    assert.equal(parentOf(call), PARENT_ID);
    assert.equal(call.attributes['writ.tool'], 'docs.search');
    assert.equal(call.attributes['writ.decision'], 'allow');
    const writSpan = await span((s) => s.name === 'POST /v1/authorize');
    assert.equal(writSpan.spanContext().traceId, TRACE_ID, 'Writ continues the gateway\'s trace (header)');
    assert.equal(parentOf(writSpan), call.spanContext().spanId);
    const up = await span((s) => s.name === 'gateway upstream');
    assert.equal(parentOf(up), call.spanContext().spanId);
    const meta = w.fixture.metas.at(-1) as Record<string, unknown>;
    assert.equal(meta.traceparent, `00-${TRACE_ID}-${up.spanContext().spanId}-01`, 'the upstream continues the upstream-call span');
    noSecrets(spans());
  });

  it('a refused gateway call is traced too, with the decision and no arguments', async () => {
    exporter.reset();
    const task = await w.env.createTask({ scope: { tools: ['github.*'], resources: [], destinations: ['127.0.0.1:*'] } });
    const narrow = await httpClient(w.running.url, await w.env.taskToken(task.id));
    try {
      const r = await narrow.callTool({ name: 'docs.search', arguments: { q: secret }, _meta: { traceparent: TRACEPARENT } });
      assert.equal(r.isError, true);
      const call = await span((s) => s.name === 'gateway tools/call');
      assert.equal(call.attributes['writ.decision'], 'deny');
      assert.equal(spans().some((s) => s.name === 'gateway upstream'), false, 'no upstream call');
      noSecrets(spans());
    } finally {
      await narrow.close();
    }
  });

  it('through the HTTP proxy: a server span continues the header; Writ and the upstream continue the proxy\'s span', async () => {
    exporter.reset();
    const r = await fetch(`${w.proxyUrl}/items/9`, { headers: { authorization: `Bearer ${w.gwToken}`, traceparent: TRACEPARENT } });
    assert.equal(r.status, 200, await r.text());
    const proxySpan = await span((s) => s.name === 'GET github.items');
    assert.equal(parentOf(proxySpan), PARENT_ID);
    const writSpan = await span((s) => s.name === 'POST /v1/authorize');
    assert.equal(parentOf(writSpan), proxySpan.spanContext().spanId);
    assert.equal(w.upstreamSeen.at(-1)!.traceparent, `00-${TRACE_ID}-${proxySpan.spanContext().spanId}-01`);
  });
});

describe('tracing settings', () => {
  it('the traces URL: the traces endpoint as given, else the base with /v1/traces; off without either; a bad URL refused', () => {
    assert.equal(tracesUrlOf({}), undefined);
    assert.equal(tracesUrlOf({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }), undefined);
    assert.equal(tracesUrlOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }), 'http://collector:4318/v1/traces');
    assert.equal(tracesUrlOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), 'http://collector:4318/v1/traces');
    assert.equal(tracesUrlOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://b/traces' }), 'https://b/traces');
    for (const bad of ['collector:4318', 'ftp://collector/', 'not a url']) {
      assert.throws(() => tracesUrlOf({ OTEL_EXPORTER_OTLP_ENDPOINT: bad }), UsageError, bad);
    }
  });
});
