import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Api, backends, setup } from './helpers/harness.js';

for (const { backend, skip } of backends()) {
  describe(`operator tool labels reach policy, and only operators set them (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    let agentApi: Api;
    before(async () => {
      env = await setup(backend);
      const put = await env.admin.call('PUT', '/v1/policies', {
        policies: `@id("allow") permit (principal, action, resource);
@id("no-sensitive-writes") forbid (principal, action, resource) when { resource.labels.contains("sensitive") && resource.labels.contains("writes") };`,
      });
      assert.equal(put.status, 200);
      const task = await env.createTask({ scope: { tools: ['*'] } });
      agentApi = new Api(env.url, await env.taskToken(task.id));
    });
    after(async () => env?.teardown());

    const decide = (tool: string) => agentApi.call('POST', '/v1/authorize', { tool, arguments: {}, audience: 'aud' });

    it('labels set on patterns are unioned and decide; removing them lifts the forbid', async () => {
      assert.equal((await decide('github.delete_repo')).body.decision, 'allow');
      const s1 = await env.admin.call('PUT', '/v1/tool-labels', { pattern: 'github.*', labels: ['writes'] });
      assert.equal(s1.status, 200);
      assert.deepEqual(s1.body.labels, ['writes']);
      assert.equal((await decide('github.delete_repo')).body.decision, 'allow', 'one of the two labels is not enough');
      await env.admin.call('PUT', '/v1/tool-labels', { pattern: 'github.delete_*', labels: ['sensitive'] });
      const denied = await decide('github.delete_repo');
      assert.equal(denied.body.decision, 'deny');
      assert.equal(denied.body.reasons[0].code, 'policy_forbids');
      assert.equal((await decide('github.get_issue')).body.decision, 'allow', 'other tools keep their labels');
      const list = await env.admin.call('GET', '/v1/tool-labels');
      assert.deepEqual(list.body.tool_labels.map((e: any) => [e.pattern, e.labels]), [['github.*', ['writes']], ['github.delete_*', ['sensitive']]]);
      await env.admin.call('PUT', '/v1/tool-labels', { pattern: 'github.delete_*', labels: [] });
      assert.equal((await decide('github.delete_repo')).body.decision, 'allow');
      const audit = await env.admin.call('GET', '/v1/audit?type=tool.labels_set');
      assert.equal(audit.body.entries.length, 3);
    });

    it('an agent cannot name labels, and a non-admin operator cannot set them', async () => {
      const r = await agentApi.call('POST', '/v1/authorize', { tool: 'github.x', arguments: {}, audience: 'aud', labels: [] });
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, 'invalid_request');
      const agentTry = await agentApi.call('PUT', '/v1/tool-labels', { pattern: 'github.*', labels: [] });
      assert.equal(agentTry.status, 401);
      const auditor = await env.admin.call('POST', '/v1/operators', { name: 'aud', roles: ['auditor'] });
      const asAuditor = await new Api(env.url, auditor.body.token).call('PUT', '/v1/tool-labels', { pattern: 'github.*', labels: [] });
      assert.equal(asAuditor.status, 403);
      assert.equal(asAuditor.body.error.code, 'insufficient_role');
      const bad = await env.admin.call('PUT', '/v1/tool-labels', { pattern: 'github.*', labels: ['has space'] });
      assert.equal(bad.status, 400);
    });
  });
}

describe('writ tool-labels (CLI)', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  before(async () => {
    env = await setup('sqlite');
  });
  after(async () => env?.teardown());

  it('sets, lists and removes labels', async () => {
    const { writ, ok } = await import('./helpers/cli.js');
    const e = { WRIT_URL: env.url, WRIT_TOKEN: env.admin.token };
    assert.deepEqual(ok(await writ(['tool-labels', 'set', 'payments.*', '--label', 'sensitive', '--label', 'external'], e)).labels, ['external', 'sensitive']);
    assert.deepEqual(ok(await writ(['tool-labels', 'list'], e)).tool_labels.map((x: any) => x.pattern), ['payments.*']);
    ok(await writ(['tool-labels', 'set', 'payments.*'], e));
    assert.deepEqual(ok(await writ(['tool-labels', 'list'], e)).tool_labels, []);
    const usage = await writ(['tool-labels', 'set'], e);
    assert.equal(usage.code, 2);
  });

  it('writ gateway labels stores a gateway configuration\'s tool labels in Writ', async () => {
    const { writ, ok } = await import('./helpers/cli.js');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'writ-gwl-'));
    try {
      const config = join(dir, 'gateway.json');
      writeFileSync(config, JSON.stringify({
        writ: { url: env.url },
        pins_file: join(dir, 'pins.json'),
        upstreams: [
          { name: 'ops', transport: 'http', url: 'http://127.0.0.1:9/mcp', tools: { deploy: { labels: ['writes', 'sensitive'] }, status: {} } },
          { name: 'echo', transport: 'stdio', command: 'node', args: [] },
        ],
      }));
      const e = { WRIT_URL: env.url, WRIT_TOKEN: env.admin.token };
      const r = ok(await writ(['gateway', 'labels', '--config', config], e));
      assert.deepEqual(r.tool_labels, [{ pattern: 'ops.deploy', labels: ['sensitive', 'writes'] }]);
      assert.deepEqual(await env.writ.policy.toolLabels.labelsFor('ops.deploy'), ['sensitive', 'writes']);
      assert.deepEqual(await env.writ.policy.toolLabels.labelsFor('ops.status'), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
