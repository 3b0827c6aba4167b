import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Api, backends, setup } from './helpers/harness.js';

for (const { backend, skip } of backends()) {
  describe(`which tools a task could be allowed to call (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    let agentApi: Api;
    before(async () => {
      env = await setup(backend);
      const put = await env.admin.call('PUT', '/v1/policies', {
        policies: `@id("allow") permit (principal, action, resource);
@id("no-delete") forbid (principal, action, resource) when { resource.name like "*.delete*" };
@id("big-payments") forbid (principal, action, resource in Writ::ToolGroup::"pay") when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 100 };
@id("hr-needs-approval") forbid (principal, action, resource in Writ::ToolGroup::"hr") unless { context.approval.granted };
@id("no-sensitive") forbid (principal, action, resource) when { resource.labels.contains("blocked") };`,
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      await env.admin.call('PUT', '/v1/tool-labels', { pattern: 'pay.wire', labels: ['blocked'] });
      const task = await env.createTask({ scope: { tools: ['github.*', 'pay.*', 'hr.*'] } });
      agentApi = new Api(env.url, await env.taskToken(task.id));
    });
    after(async () => env?.teardown());

    it('hides what scope or policy rules out whatever the call; keeps what some call could do', async () => {
      const r = await agentApi.call('POST', '/v1/tools/visible', { tools: ['github.get', 'github.delete_repo', 'pay.send', 'pay.wire', 'hr.raise', 'slack.post'] });
      assert.equal(r.status, 200);
      // delete: forbidden outright; pay.wire: labelled blocked; slack: out of scope.
      // pay.send (allowed for small amounts) and hr.raise (allowed with approval) stay.
      assert.deepEqual(r.body.tools, ['github.get', 'pay.send', 'hr.raise']);
    });

    it('needs a task token, and writes no decision', async () => {
      assert.equal((await new Api(env.url).call('POST', '/v1/tools/visible', { tools: ['github.get'] })).status, 401);
      const before = (await env.admin.call('GET', '/v1/audit?type=decision&limit=1000')).body.entries.length;
      await agentApi.call('POST', '/v1/tools/visible', { tools: ['github.get'] });
      assert.equal((await env.admin.call('GET', '/v1/audit?type=decision&limit=1000')).body.entries.length, before);
      assert.equal((await agentApi.call('POST', '/v1/tools/visible', { tools: 'github.get' })).status, 400);
    });
  });
}
