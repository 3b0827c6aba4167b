import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Api, backends, setup } from './helpers/harness.js';

/**
 * Issue 10, "what is judged is what is done": argument keys, argument shapes,
 * delegation bounds, approval rules and canonical destinations/resources, on both stores.
 */

const AUD = 'https://tools.example/github';
type Env = Awaited<ReturnType<typeof setup>>;
type Res = { status: number; body: any };

function assertError(r: Res, status: number, code: string): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body?.error?.code, code, JSON.stringify(r.body));
  assert.equal(JSON.stringify(r.body).includes('    at '), false, 'no stack trace');
}

for (const { backend, skip } of backends()) {
  describe(`enforcement without gaps (${backend})`, { skip }, () => {
    let env: Env;
    before(async () => {
      env = await setup(backend);
    });
    after(async () => env?.teardown());

    async function agentFor(over: Record<string, unknown> = {}) {
      const task = await env.createTask(over);
      const token = await env.taskToken(task.id);
      return { task, token, api: new Api(env.url, token) };
    }

    describe('POST /v1/actions/consume needs the audience (item 9)', () => {
      it('refuses a consume without `audience` (or with an empty one) with 400, and the token stays unspent', async () => {
        const { api, task } = await agentFor();
        const allow = await api.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: AUD });
        assert.equal(allow.body.decision, 'allow', JSON.stringify(allow.body));
        const at = allow.body.action_token as string;
        assertError(await env.admin.call('POST', '/v1/actions/consume', { action_token: at }, { token: null }), 400, 'invalid_request');
        assertError(await env.admin.call('POST', '/v1/actions/consume', { action_token: at, audience: '' }, { token: null }), 400, 'invalid_request');
        assertError(await env.admin.call('POST', '/v1/actions/consume', { action_token: at, audience: null }, { token: null }), 400, 'invalid_request');
        // the service method refuses too (the in-process path)
        await assert.rejects(env.writ.consume(at, undefined as unknown as string), (e: any) => e.status === 400);
        assert.equal((await env.store.listAudit({ taskId: task.id, type: 'action.consumed', limit: 10 })).length, 0);
        const ok = await env.admin.call('POST', '/v1/actions/consume', { action_token: at, audience: AUD }, { token: null });
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        assertError(await env.admin.call('POST', '/v1/actions/consume', { action_token: at, audience: AUD }, { token: null }), 409, 'token_already_used');
      });
    });

    describe('reserved argument keys (item 8)', () => {
      const raw = (args: string) => `{"tool":"github.get","audience":"${AUD}","arguments":${args}}`;
      const refused = [
        '{"__proto__":{"admin":true}}',
        '{"constructor":{"prototype":{"admin":true}}}',
        '{"prototype":1}',
        '{"a":{"__proto__":{"x":1}}}',
        '{"a":{"b":{"c":{"constructor":"x"}}}}',
        '{"list":[{"__proto__":{"x":1}}]}',
        '{"list":[[{"prototype":1}]]}',
        '{"list":[1,2,{"ok":[{"constructor":null}]}]}',
        '{"ok":1,"__proto__":null}',
      ];
      for (const args of refused) {
        it(`refuses ${args} with 400 reserved_argument_key and records no decision`, async () => {
          const { api, task } = await agentFor();
          assertError(await api.call('POST', '/v1/authorize', undefined, { raw: raw(args) }), 400, 'reserved_argument_key');
          assert.equal((await env.store.listDecisions(task.id)).length, 0);
          // the in-process path (the embedded gateway) refuses the same arguments
          const ctx = await env.writ.authenticateTask(await env.taskToken(task.id));
          await assert.rejects(
            env.writ.authorize(ctx, { tool: 'github.get', arguments: JSON.parse(args), audience: AUD }),
            (e: any) => e.status === 400 && e.code === 'reserved_argument_key',
          );
          assert.equal((await env.store.listDecisions(task.id)).length, 0);
        });
      }

      it('allows keys that merely resemble them, and the words as values', async () => {
        const { api } = await agentFor();
        for (const args of ['{"constructor_id":1}', '{"Prototype":1}', '{"proto":1}', '{"__proto":1}', '{"v":"__proto__"}', '{"l":["constructor"]}']) {
          const r = await api.call('POST', '/v1/authorize', undefined, { raw: raw(args) });
          assert.equal(r.status, 200, `${args}: ${JSON.stringify(r.body)}`);
          assert.equal(r.body.decision, 'allow', `${args}: ${JSON.stringify(r.body)}`);
        }
      });
    });
  });
}
