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
import { httpClient, ROOT, STDIO_FIXTURE, textOf } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

const METRICS_TOKEN = 'wmt_Vb7Nc2Kd9Ws6Tf3Yh0Jg5Pe_Ua-Io8RnEvQm4Zr8Lx1';

describe('MCP gateway /metrics: upstream latency and refusals per tool (issue 15 item 1)', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;
  let gateway: McpGateway;
  let running: RunningHttp;
  let closedByDefault: RunningHttp;
  let client: Client;
  let taskId: string;
  let taskToken: string;

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-gw-metrics-'));
    const configPath = join(dir, 'gateway.json');
    const raw = {
      writ: { url: env.url },
      pins_file: 'pins.json',
      upstreams: [{ name: 'local', transport: 'stdio', command: process.execPath, args: [STDIO_FIXTURE], cwd: ROOT, destination: 'stdio:local' }],
    };
    writeFileSync(configPath, JSON.stringify(raw));
    const config = parseGatewayConfig(raw, configPath);
    gateway = new McpGateway({ config, authorizer: new InProcessAuthorizer(env.writ), log: () => undefined });
    await gateway.start();
    const catalogs = new Map([...gateway.upstreams].map(([n, u]) => [n, [...u.cached().values()].map((t) => t.tool)]));
    writePinFile(config.pins_file, approveCatalogs(emptyPins(), catalogs).pins);
    gateway.pins.reload();
    running = await serveMcpHttp(gateway, { metricsToken: METRICS_TOKEN });
    closedByDefault = await serveMcpHttp(gateway, {});
    const task = await env.createTask({ scope: { tools: ['local.echo', 'local.fail'], resources: [], destinations: ['stdio:local'] }, max_actions: 100 });
    taskId = task.id;
    taskToken = await env.taskToken(task.id);
    client = await httpClient(running.url, taskToken);
  });

  after(async () => {
    await client?.close().catch(() => undefined);
    await running?.close();
    await closedByDefault?.close();
    await gateway?.close();
    await env?.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  const metricsUrl = (r: RunningHttp) => new URL('/metrics', r.url).toString();

  it('is served only with the metrics token, and not at all without one configured', async () => {
    assert.equal((await fetch(metricsUrl(running))).status, 401);
    for (const bad of [taskToken, `${METRICS_TOKEN}x`, METRICS_TOKEN.slice(1)]) {
      assert.equal((await fetch(metricsUrl(running), { headers: { authorization: `Bearer ${bad}` } })).status, 401);
    }
    assert.equal((await fetch(metricsUrl(running), { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status, 200);
    assert.equal((await fetch(metricsUrl(closedByDefault), { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status, 404);
  });

  it('times upstream calls and counts refusals by tool; labels carry no ids or arguments', async () => {
    const secret = 'gw_arg_secret_5521';
    assert.equal(textOf(await client.callTool({ name: 'local.echo', arguments: { text: secret } })), secret);
    const denied = await client.callTool({ name: 'local.delete_repo', arguments: { repo: secret } });
    assert.equal(denied.isError, true);
    await gateway.flush();
    const text = await (await fetch(metricsUrl(running), { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
    assert.match(text, /^writ_gateway_upstream_call_duration_seconds_count\{tool="local\.echo",result="ok"\} 1$/m);
    assert.match(text, /^writ_gateway_refusals_total\{tool="local\.delete_repo",code="deny"\} 1$/m);
    for (const leak of [secret, taskId, taskToken, env.agent.id, 'dec_']) assert.ok(!text.includes(leak), `the exposition holds \`${leak}\``);
  });
});
