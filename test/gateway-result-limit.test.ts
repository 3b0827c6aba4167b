import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InProcessAuthorizer } from '../src/gateway/authorizer.js';
import { parseGatewayConfig } from '../src/gateway/config.js';
import { McpGateway } from '../src/gateway/mcp-gateway.js';
import { serveMcpHttp, type RunningHttp } from '../src/gateway/mcp-serve.js';
import { approveCatalogs, emptyPins, writePinFile } from '../src/gateway/pins.js';
import { LimitedReadBuffer, responseIdOf } from '../src/gateway/result-limit.js';
import { httpClient, ROOT, startHttpMcpFixture, STDIO_FIXTURE, textOf, type HttpMcpFixture } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

/**
 * One agent's oversized tool result fails that call alone: the shared upstream
 * connection (stdio and streamable HTTP) survives, and other agents' calls in flight
 * complete.
 */

describe('the stdio read buffer drops an oversized line alone', () => {
  it('answers the request it belonged to with result_too_large, and keeps reading the lines after it', () => {
    const dropped: unknown[] = [];
    const buf = new LimitedReadBuffer(100, (d) => dropped.push(d));
    const big = JSON.stringify({ result: { content: [{ type: 'text', text: 'x'.repeat(500) }] }, jsonrpc: '2.0', id: 7 });
    const ok = JSON.stringify({ result: { content: [] }, jsonrpc: '2.0', id: 8 });
    // split across chunks at awkward places, the oversized line in the middle
    const all = Buffer.from(`${ok}\n${big}\n${ok.replace('8', '9')}\n`);
    for (let i = 0; i < all.length; i += 37) buf.append(all.subarray(i, i + 37));
    const msgs = [];
    for (let m = buf.readMessage(); m; m = buf.readMessage()) msgs.push(m as any);
    assert.deepEqual(msgs.map((m) => m.id), [8, 7, 9]);
    assert.equal(msgs[1].error.data.writ, 'result_too_large');
    assert.deepEqual(dropped, [{ id: 7, bytes: big.length }]);
  });

  it('finds the id first or last, string or number, and not inside the result', () => {
    assert.equal(responseIdOf('{"jsonrpc":"2.0","id":"a\\"b","result":{', 'zzz'), 'a"b');
    assert.equal(responseIdOf('{"result":{"x"', '"x":1},"jsonrpc":"2.0","id":42}'), 42);
    assert.equal(responseIdOf('{"result":{"x"', '"id":5}},"jsonrpc":"2.0"}'), null);
  });
});

describe('MCP gateway: result size limit per call', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;
  let fixture: HttpMcpFixture;
  let gateway: McpGateway;
  let running: RunningHttp;
  let clients: Client[];
  const logged: { event: string; fields: Record<string, unknown> }[] = [];

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-gw-limit-'));
    fixture = await startHttpMcpFixture({ big: true });
    const configPath = join(dir, 'gateway.json');
    const raw = {
      writ: { url: env.url },
      pins_file: 'pins.json',
      upstreams: [
        { name: 'local', transport: 'stdio', command: process.execPath, args: [STDIO_FIXTURE], cwd: ROOT, destination: 'stdio:local', max_result_bytes: 64 * 1024 },
        { name: 'wide', transport: 'stdio', command: process.execPath, args: [STDIO_FIXTURE], cwd: ROOT, destination: 'stdio:local' },
        { name: 'docs', transport: 'http', url: fixture.url, max_result_bytes: 64 * 1024 },
      ],
    };
    writeFileSync(configPath, JSON.stringify(raw));
    const config = parseGatewayConfig(raw, configPath);
    gateway = new McpGateway({ config, authorizer: new InProcessAuthorizer(env.writ), log: (event, fields = {}) => void logged.push({ event, fields }) });
    await gateway.start();
    const catalogs = new Map([...gateway.upstreams].map(([n, u]) => [n, [...u.cached().values()].map((t) => t.tool)]));
    writePinFile(config.pins_file, approveCatalogs(emptyPins(), catalogs).pins);
    gateway.pins.reload();
    running = await serveMcpHttp(gateway, {});
    const scope = { tools: ['local.*', 'wide.*', 'docs.*'], resources: [], destinations: ['stdio:local', '127.0.0.1:*'] };
    const tasks = await Promise.all([1, 2].map(() => env.createTask({ scope, max_actions: 100 })));
    clients = await Promise.all(tasks.map(async (t) => httpClient(running.url, await env.taskToken(t.id))));
  });

  after(async () => {
    for (const c of clients ?? []) await c.close().catch(() => undefined);
    await running?.close();
    await gateway?.close();
    await fixture?.close();
    await env?.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  const code = (r: any) => r._meta?.['writ/error']?.code;

  it('stdio: the oversized result fails its call only; another agent\'s call in flight on the same connection completes', async () => {
    const [alice, bob] = clients as [Client, Client];
    const inFlight = bob.callTool({ name: 'local.slow', arguments: { ms: 1500 } }, undefined, { timeout: 120_000 });
    await new Promise((ok) => setTimeout(ok, 300));
    const big = await alice.callTool({ name: 'local.big', arguments: { bytes: 1024 * 1024 } }, undefined, { timeout: 120_000 });
    assert.equal(big.isError, true);
    assert.equal(code(big), 'result_too_large');
    assert.match(textOf(big), /max_result_bytes/);
    assert.equal(textOf(await inFlight), 'slept 1500');
    // the same connection carries on, and a result under the limit passes whole
    assert.equal(textOf(await alice.callTool({ name: 'local.big', arguments: { bytes: 32 * 1024 } })).length, 32 * 1024);
    assert.ok(logged.some((l) => l.event === 'upstream_result_too_large' && l.fields.upstream === 'local'));
    assert.ok(!logged.some((l) => l.event === 'upstream_error' && l.fields.upstream === 'local'), 'the connection was not closed');
  });

  it('stdio: past the MCP SDK\'s own 10 MiB buffer (the default limit is 4 MiB), the connection still survives', async () => {
    const [alice, bob] = clients as [Client, Client];
    const inFlight = bob.callTool({ name: 'wide.slow', arguments: { ms: 3000 } }, undefined, { timeout: 120_000 });
    await new Promise((ok) => setTimeout(ok, 300));
    const big = await alice.callTool({ name: 'wide.big', arguments: { bytes: 12 * 1024 * 1024 } }, undefined, { timeout: 120_000 });
    assert.equal(code(big), 'result_too_large');
    assert.equal(textOf(await inFlight), 'slept 3000');
    assert.equal(textOf(await alice.callTool({ name: 'wide.echo', arguments: { text: 'still here' } })), 'still here');
  });

  it('HTTP: the oversized answer fails its call only; the upstream keeps answering', async () => {
    const [alice] = clients as [Client, Client];
    const big = await alice.callTool({ name: 'docs.big', arguments: { bytes: 1024 * 1024 } }, undefined, { timeout: 120_000 });
    assert.equal(code(big), 'result_too_large');
    assert.equal(textOf(await alice.callTool({ name: 'docs.search', arguments: { q: 'after' } })), 'results for after');
    assert.equal(textOf(await alice.callTool({ name: 'docs.big', arguments: { bytes: 1000 } })).length, 1000);
  });

  it('records the call as allowed, with the outcome failed', async () => {
    await gateway.flush();
    const tasks = (await env.admin.call('GET', '/v1/tasks?status=active')).body.tasks;
    const decisions = (await Promise.all(tasks.map(async (t: any) => (await env.admin.call('GET', `/v1/tasks/${t.id}`)).body.decisions))).flat();
    const bigs = decisions.filter((d: any) => /\.big$/.test(d.tool) && d.outcome === 'failed');
    assert.equal(bigs.length, 3);
  });
});
