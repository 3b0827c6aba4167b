import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { httpClient, ROOT, runWrit, spawnWrit, STDIO_FIXTURE, textOf, type WritProcess } from './helpers/gateway-fixtures.js';
import { Api, makeAgentKeys, makeAssertion } from './helpers/harness.js';

const ADMIN = 'wop_VakeJFc0D0VokVQvZiJar4OJIv8Omy7BzoezrfGF7ZE';

describe('writ serve --gateway: the MCP gateway inside the service, deciding in-process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-embedded-gw-'));
  let writ: WritProcess;
  let url: string;
  let gatewayUrl: string;

  before(async () => {
    const config = join(dir, 'gateway.json');
    writeFileSync(config, JSON.stringify({
      writ: { url: 'http://127.0.0.1:9' }, // unused in-process
      listen: { host: '127.0.0.1', port: 0, path: '/mcp' },
      pins_file: join(dir, 'pins.json'),
      upstreams: [{ name: 'local', transport: 'stdio', command: process.execPath, args: [STDIO_FIXTURE], cwd: ROOT, destination: 'stdio:local' }],
    }));
    const approved = await runWrit(['gateway', 'tools', 'approve', '--config', config, '--tool', 'local.echo', '--tool', 'local.delete_repo']);
    assert.equal(approved.code, 0, approved.stderr);
    writ = spawnWrit(['serve', '--port', '0', '--data-dir', join(dir, 'data'), '--gateway', config], { WRIT_BOOTSTRAP_TOKEN: ADMIN, WRIT_DATABASE_URL: '' });
    url = await writ.stdoutMatch(/writ listening on (http:\/\/\S+)/);
    gatewayUrl = await writ.stdoutMatch(/writ gateway \(in-process\) listening on (http:\/\/\S+)/);
  });
  after(async () => {
    await writ?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('authorizes each call with the service itself and records the decision', async () => {
    const admin = new Api(url, ADMIN);
    const put = await admin.call('PUT', '/v1/policies', {
      policies: '@id("allow") permit (principal, action, resource);\n@id("no-delete") forbid (principal, action, resource) when { resource.name like "*.delete*" };',
    });
    assert.equal(put.status, 200);
    const agent = await makeAgentKeys('spiffe://acme.test/agent/embedded');
    assert.equal((await admin.call('POST', '/v1/agents', { id: agent.id, jwks: { keys: [agent.publicJwk] } })).status, 201);
    const task = (await admin.call('POST', '/v1/tasks', { agent_id: agent.id, intent: 'echo', scope: { tools: ['local.*'], destinations: ['stdio:local'] }, ttl_seconds: 600, max_actions: 5 })).body;
    const tok = await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(agent, url),
      task_id: task.id,
    });
    assert.equal(tok.status, 200);
    const client = await httpClient(gatewayUrl, tok.body.access_token);
    try {
      // both are pinned and in scope; policy forbids every delete, so it is not listed
      const tools = (await client.listTools()).tools.map((t) => t.name);
      assert.deepEqual(tools, ['local.echo']);
      const refused = await client.callTool({ name: 'local.delete_repo', arguments: { repo: 'acme/api' } });
      assert.equal(refused.isError, true);
      assert.match(textOf(refused), /policy_forbids/);
      const r = await client.callTool({ name: 'local.echo', arguments: { text: 'hello' } });
      assert.match(textOf(r), /hello/);
      const detail = (await admin.call('GET', `/v1/tasks/${task.id}`)).body;
      assert.deepEqual(detail.decisions.map((d: any) => [d.tool, d.decision]).sort(), [['local.delete_repo', 'deny'], ['local.echo', 'allow']]);
    } finally {
      await client.close();
    }
  });
});
