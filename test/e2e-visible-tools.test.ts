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

  describe(`visible tools: a bounded, cached, rate-limited question (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    let evaluations = 0;
    const POLICY = `@id("allow") permit (principal, action, resource);
@id("no-blocked") forbid (principal, action, resource) when { resource.labels.contains("blocked") };`;
    before(async () => {
      env = await setup(backend, { config: { visibleToolsMax: 8, visibleToolsLimit: { max: 6, windowMs: 60_000 } } });
      assert.equal((await env.admin.call('PUT', '/v1/policies', { policies: POLICY })).status, 200);
      const original = env.writ.policy.engine.couldAllow.bind(env.writ.policy.engine);
      env.writ.policy.engine.couldAllow = (...args: Parameters<typeof original>) => {
        evaluations++;
        return original(...args);
      };
    });
    after(async () => env?.teardown());
    const tools = (n: number, prefix = 'github.t') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

    it('more tools than the cap: 400 `too_many_tools`; at the cap, and duplicates, are fine', async () => {
      const api = new Api(env.url, await env.taskToken((await env.createTask({ scope: { tools: ['github.*'] } })).id));
      const over = await api.call('POST', '/v1/tools/visible', { tools: tools(9) });
      assert.equal(over.status, 400);
      assert.equal(over.body.error.code, 'too_many_tools');
      assert.match(over.body.error.message, /at most 8/);
      assert.equal((await api.call('POST', '/v1/tools/visible', { tools: tools(8) })).status, 200);
      assert.equal((await api.call('POST', '/v1/tools/visible', { tools: Array(8).fill('github.t0') })).status, 200);
      // far past the cap is refused at the edge, before any work
      assert.equal((await api.call('POST', '/v1/tools/visible', { tools: Array(10_001).fill('g') })).status, 400);
      assert.equal((await api.call('POST', '/v1/tools/visible', { tools: [] })).body.tools.length, 0);
    });

    it('answers are cached per task and policy version; a label change or a new policy is seen at once', async () => {
      const task = await env.createTask({ scope: { tools: ['github.*'] } });
      const api = new Api(env.url, await env.taskToken(task.id));
      const list = tools(6);
      evaluations = 0;
      assert.deepEqual((await api.call('POST', '/v1/tools/visible', { tools: list })).body.tools, list);
      assert.equal(evaluations, 6, 'one partial evaluation per tool');
      assert.deepEqual((await api.call('POST', '/v1/tools/visible', { tools: list })).body.tools, list);
      assert.equal(evaluations, 6, 'the second ask is answered from the cache');
      // a label that policy forbids hides the tool at once (only that tool is evaluated again)
      assert.equal((await env.admin.call('PUT', '/v1/tool-labels', { pattern: 'github.t2', labels: ['blocked'] })).status, 200);
      assert.deepEqual((await api.call('POST', '/v1/tools/visible', { tools: list })).body.tools, list.filter((t) => t !== 'github.t2'));
      assert.equal(evaluations, 7);
      // a new policy version: everything is asked again
      assert.equal((await env.admin.call('PUT', '/v1/policies', { policies: `${POLICY}\n@id("no-t3") forbid (principal, action, resource == Writ::Tool::"github.t3");` })).status, 200);
      assert.deepEqual((await api.call('POST', '/v1/tools/visible', { tools: list })).body.tools, ['github.t0', 'github.t1', 'github.t4', 'github.t5']);
      assert.equal(evaluations, 13);
      // another task has its own answers (its scope may differ)
      const narrow = await env.createTask({ scope: { tools: ['github.t1'] } });
      const other = new Api(env.url, await env.taskToken(narrow.id));
      assert.deepEqual((await other.call('POST', '/v1/tools/visible', { tools: list })).body.tools, ['github.t1']);
      assert.equal(evaluations, 14, 'out-of-scope tools cost no evaluation');
    });

    it('past the per-task rate: 429 `rate_limited` with Retry-After; another task is not touched', async () => {
      const api = new Api(env.url, await env.taskToken((await env.createTask({ scope: { tools: ['github.*'] } })).id));
      for (let i = 0; i < 6; i++) assert.equal((await api.call('POST', '/v1/tools/visible', { tools: ['github.t0'] })).status, 200);
      const r = await api.call('POST', '/v1/tools/visible', { tools: ['github.t0'] });
      assert.equal(r.status, 429);
      assert.equal(r.body.error.code, 'rate_limited');
      const retry = Number(r.headers.get('retry-after'));
      assert.ok(retry >= 1 && retry <= 60, `retry-after ${retry}`);
      // a bad request is refused before it counts, and a refused one does not count either
      const other = new Api(env.url, await env.taskToken((await env.createTask({ scope: { tools: ['github.*'] } })).id));
      assert.equal((await other.call('POST', '/v1/tools/visible', { tools: tools(9) })).status, 400);
      for (let i = 0; i < 6; i++) assert.equal((await other.call('POST', '/v1/tools/visible', { tools: ['github.t0'] })).status, 200, `request ${i}`);
    });
  });
}
