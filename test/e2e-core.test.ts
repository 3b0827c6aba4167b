import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { digestArguments } from '../src/core/digest.js';
import { backends, setup } from './helpers/harness.js';

for (const { backend, skip } of backends()) {
  describe(`core path end to end (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    before(async () => {
      env = await setup(backend);
    });
    after(async () => env?.teardown());

    const SCOPED = { scope: { tools: ['github.*', 'billing.read'], resources: ['repo:acme/*'], destinations: ['api.github.com'] } };

    it('registers, creates a task, issues a token, authorizes, verifies offline, consumes once, completes', async () => {
      const task = await env.createTask(SCOPED);
      const token = await env.taskToken(task.id);
      const agentApi = new (env.admin.constructor as any)(env.url, token);
      const args = { repo: 'acme/api', title: 'Weekly report', labels: ['report'] };
      const r = await agentApi.call('POST', '/v1/authorize', {
        tool: 'github.create_issue',
        arguments: args,
        audience: 'https://tools.example/github',
        resource: 'repo:acme/api',
        destination: 'api.github.com',
      });
      assert.equal(r.status, 200);
      assert.equal(r.body.decision, 'allow');
      assert.equal(r.body.args_digest, digestArguments(args));
      assert.ok(r.body.expires_in > 0 && r.body.expires_in <= 60);

      // offline verification with nothing but jose and the JWKS
      const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
      const { payload, protectedHeader } = await jwtVerify(r.body.action_token, createLocalJWKSet(jwks), {
        issuer: env.url,
        audience: 'https://tools.example/github',
        typ: 'writ-action+jwt',
        algorithms: ['EdDSA'],
      });
      assert.equal(protectedHeader.alg, 'EdDSA');
      assert.equal(payload.tool, 'github.create_issue');
      assert.equal(payload.txn, task.id);
      assert.equal(payload.decision_id, r.body.decision_id);
      assert.equal(payload.sub, env.agent.id);
      assert.equal(payload.resource, 'repo:acme/api');
      assert.equal(payload.destination, 'api.github.com');
      assert.ok((payload.exp as number) - (payload.iat as number) <= 60);

      const c1 = await env.admin.call('POST', '/v1/actions/consume', { action_token: r.body.action_token, audience: 'https://tools.example/github' }, { token: null });
      assert.equal(c1.status, 200);
      assert.equal(c1.body.claims.jti, payload.jti);
      const c2 = await env.admin.call('POST', '/v1/actions/consume', { action_token: r.body.action_token, audience: 'https://tools.example/github' }, { token: null });
      assert.equal(c2.status, 409);
      assert.equal(c2.body.error.code, 'token_already_used');

      const o = await agentApi.call('POST', `/v1/actions/${r.body.decision_id}/outcome`, { status: 'succeeded', detail: 'issue #12' });
      assert.equal(o.status, 200);
      const o2 = await agentApi.call('POST', `/v1/actions/${r.body.decision_id}/outcome`, { status: 'failed' });
      assert.equal(o2.status, 409);

      // `Prefer: respond-async`: 202 once checked and queued; written with the next commit
      const r2 = await agentApi.call('POST', '/v1/authorize', {
        tool: 'github.create_issue',
        arguments: { ...args, title: 'two' },
        audience: 'https://tools.example/github',
        resource: 'repo:acme/api',
        destination: 'api.github.com',
      });
      assert.equal(r2.body.decision, 'allow', JSON.stringify(r2.body));
      const queued = (status: string, decisionId = r2.body.decision_id) =>
        fetch(`${env.url}/v1/actions/${decisionId}/outcome`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', prefer: 'respond-async, wait=0' },
          body: JSON.stringify({ status }),
        });
      const q1 = await queued('succeeded');
      assert.equal(q1.status, 202);
      assert.deepEqual(await q1.json(), { decision_id: r2.body.decision_id, status: 'succeeded' });
      // a second report is refused whether the first is still queued or already written
      const q2 = await queued('failed');
      assert.equal(q2.status, 409);
      assert.equal((await q2.json()).error.code, 'outcome_already_reported');
      // the checks still run before the 202: a deny has no outcome, an unknown decision is 404
      assert.equal((await queued('succeeded', 'dec_unknown')).status, 404);
      // the outcome route verifies tokens through the decisions' token cache, keyed by the
      // whole token: the same claims under another signature are verified, and refused
      const [head, claims] = token.split('.');
      const forged = await fetch(`${env.url}/v1/actions/${r2.body.decision_id}/outcome`, {
        method: 'POST',
        headers: { authorization: `Bearer ${head}.${claims}.${Buffer.alloc(64, 7).toString('base64url')}`, 'content-type': 'application/json' },
        body: JSON.stringify({ status: 'failed' }),
      });
      assert.equal(forged.status, 401);
      for (let i = 0; ; i++) {
        const e = (await env.admin.call('GET', `/v1/audit?type=action.outcome&task_id=${task.id}&limit=100`)).body.entries.find((x: any) => x.decision_id === r2.body.decision_id);
        if (e) {
          assert.equal(e.data.status, 'succeeded');
          break;
        }
        assert.ok(i < 200, 'the queued outcome is written');
        await new Promise((ok) => setTimeout(ok, 25));
      }

      const done = await agentApi.call('POST', `/v1/tasks/${task.id}/complete`);
      assert.equal(done.status, 200);
      assert.equal(done.body.status, 'completed');

      const after = await agentApi.call('POST', '/v1/authorize', { tool: 'github.create_issue', arguments: {}, audience: 'https://tools.example/github' });
      assert.equal(after.status, 401);
      assert.equal(after.body.error.code, 'task_not_active');

      const types = (await env.admin.call('GET', `/v1/audit?task_id=${task.id}&limit=1000`)).body.entries.map((e: any) => e.type);
      for (const t of ['task.created', 'token.issued', 'decision', 'action.consumed', 'action.replayed', 'action.outcome', 'task.completed']) {
        assert.ok(types.includes(t), `audit has ${t}: ${types.join(',')}`);
      }
      const dec = (await env.admin.call('GET', `/v1/audit?type=decision&task_id=${task.id}`)).body.entries[0];
      assert.equal(dec.data.decision, 'allow');
      assert.match(dec.data.policy_version, /^[0-9a-f]{32}$/);
      assert.deepEqual(dec.data.policies, ['allow-within-task-scope']);
      const v = await env.admin.call('GET', '/v1/audit/verify');
      assert.equal(v.body.ok, true);
    });

    it('denies out-of-scope actions with reasons and a decision id, and records them', async () => {
      const task = await env.createTask(SCOPED);
      const agentApi = new (env.admin.constructor as any)(env.url, await env.taskToken(task.id));
      const cases = [
        [{ tool: 'slack.post', arguments: {}, audience: 'a' }, 'tool_out_of_scope'],
        [{ tool: 'github.create_issue', arguments: {}, audience: 'a', resource: 'repo:evil/x', destination: 'api.github.com' }, 'resource_out_of_scope'],
        [{ tool: 'github.create_issue', arguments: {}, audience: 'a', resource: 'repo:acme/api', destination: 'evil.example' }, 'destination_out_of_scope'],
        // a scope that lists resources and destinations bounds every action: naming none is refused
        [{ tool: 'github.create_issue', arguments: {}, audience: 'a', destination: 'api.github.com' }, 'resource_required'],
        [{ tool: 'github.create_issue', arguments: {}, audience: 'a', resource: 'repo:acme/api' }, 'destination_required'],
      ] as const;
      for (const [body, code] of cases) {
        const r = await agentApi.call('POST', '/v1/authorize', body);
        assert.equal(r.status, 200);
        assert.equal(r.body.decision, 'deny');
        assert.equal(r.body.reasons[0].code, code);
        assert.ok(r.body.decision_id);
        assert.equal(r.body.action_token, undefined);
      }
      const detail = await env.admin.call('GET', `/v1/tasks/${task.id}`);
      assert.equal(detail.body.decisions.length, 5);
      assert.ok(detail.body.decisions.every((d: any) => d.decision === 'deny'));
    });

    it('never allows more than max_actions, even concurrently', async () => {
      const task = await env.createTask({ max_actions: 3 });
      const agentApi = new (env.admin.constructor as any)(env.url, await env.taskToken(task.id));
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => agentApi.call('POST', '/v1/authorize', { tool: 'github.get', arguments: { i }, audience: 'a' })),
      );
      const allows = results.filter((r: any) => r.body.decision === 'allow').length;
      assert.equal(allows, 3);
      const denies = results.filter((r: any) => r.body.decision === 'deny');
      assert.ok(denies.every((r: any) => r.body.reasons[0].code === 'budget_exhausted'));
    });

    it('consumes a token exactly once under 100 concurrent attempts', async () => {
      const task = await env.createTask();
      const agentApi = new (env.admin.constructor as any)(env.url, await env.taskToken(task.id));
      const r = await agentApi.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: 'aud' });
      const attempts = await Promise.all(
        Array.from({ length: 100 }, () => env.admin.call('POST', '/v1/actions/consume', { action_token: r.body.action_token, audience: 'aud' }, { token: null })),
      );
      assert.equal(attempts.filter((a) => a.status === 200).length, 1);
      assert.equal(attempts.filter((a) => a.status === 409).length, 99);
    });

    it('revocation stops token exchange, authorize, consume and introspection at once', async () => {
      const task = await env.createTask();
      const token = await env.taskToken(task.id);
      const agentApi = new (env.admin.constructor as any)(env.url, token);
      const r = await agentApi.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: 'aud' });
      assert.equal(r.body.decision, 'allow');
      const i1 = await env.admin.form('/oauth/introspect', { token }, env.admin.token);
      assert.equal(i1.body.active, true);
      const rev = await env.admin.call('POST', `/v1/tasks/${task.id}/revoke`, { reason: 'test' });
      assert.equal(rev.status, 200);
      const a2 = await agentApi.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: 'aud' });
      assert.equal(a2.status, 401);
      const c = await env.admin.call('POST', '/v1/actions/consume', { action_token: r.body.action_token, audience: 'aud' }, { token: null });
      assert.equal(c.status, 403);
      assert.equal(c.body.error.code, 'task_not_active');
      const i2 = await env.admin.form('/oauth/introspect', { token }, env.admin.token);
      assert.deepEqual(i2.body, { active: false });
      const i3 = await env.admin.form('/oauth/introspect', { token: r.body.action_token }, env.admin.token);
      assert.deepEqual(i3.body, { active: false });
      await assert.rejects(env.taskToken(task.id), /invalid_grant/);
    });
  });
}
