import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Api, setup } from './helpers/harness.js';

describe('arguments are judged as the call is made: shapes that would hide a value from policy deny', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let agentApi: Api;
  before(async () => {
    env = await setup('sqlite');
    const put = await env.admin.call('PUT', '/v1/policies', {
      policies: `@id("allow") permit (principal, action, resource);
@id("cap-amount") forbid (principal, action, resource) when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 100 };
@id("no-admin-ref") forbid (principal, action, resource) when { context.args.hasTag("a.b") && context.args.getTag("a.b") == "admin" };`,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const task = await env.createTask({ scope: { tools: ['*'] }, max_actions: 1000 });
    agentApi = new Api(env.url, await env.taskToken(task.id));
  });
  after(async () => env?.teardown());

  const decide = (args: Record<string, unknown>) => agentApi.call('POST', '/v1/authorize', { tool: 'payments.send', arguments: args, audience: 'aud' });
  const reason = async (args: Record<string, unknown>) => {
    const r = await decide(args);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.decision === 'allow' ? 'allow' : r.body.reasons[0].code;
  };

  it('integers are compared; the same amount as a string, a fraction or out of range is refused', async () => {
    assert.equal(await reason({ amount: 50 }), 'allow');
    assert.equal(await reason({ amount: 1000 }), 'policy_forbids');
    assert.equal(await reason({ amount: '1000' }), 'argument_type_mismatch');
    assert.equal(await reason({ amount: 1000.5 }), 'argument_type_mismatch');
    assert.equal(await reason({ amount: 1e30 }), 'argument_type_mismatch');
    assert.equal(await reason({ amount: 50, temperature: 0.7, note: 'x' }), 'allow', 'arguments no policy reads as integers may be anything');
  });

  it('a literal dotted key cannot shadow a nested one', async () => {
    assert.equal(await reason({ a: { b: 'admin' } }), 'policy_forbids');
    assert.equal(await reason({ a: { b: 'admin' }, 'a.b': 'user' }), 'ambiguous_arguments');
    assert.equal(await reason({ 'a.b': 'user', a: { b: 'admin' } }), 'ambiguous_arguments');
  });

  it('padding does not push a value out of sight: many values are read, too many deny', async () => {
    const pad = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, 0]));
    assert.equal(await reason({ ...pad(600), amount: 1000 }), 'policy_forbids');
    assert.equal(await reason({ ...pad(2100), amount: 1 }), 'arguments_too_complex');
    let deep: Record<string, unknown> = { amount: 1000 };
    for (let i = 0; i < 40; i++) deep = { d: deep };
    assert.equal(await reason(deep), 'arguments_too_complex');
  });

  it('non-finite numbers and absurd depth are bad requests, not faults', async () => {
    const inf = await agentApi.call('POST', '/v1/authorize', undefined, { raw: '{"tool":"payments.send","arguments":{"amount":1e400},"audience":"aud"}' });
    assert.equal(inf.status, 400);
    assert.equal(inf.body.error.code, 'invalid_request');
    const deep = `{"tool":"payments.send","audience":"aud","arguments":${'{"d":'.repeat(200)}1${'}'.repeat(200)}}`;
    const r = await agentApi.call('POST', '/v1/authorize', undefined, { raw: deep });
    assert.equal(r.status, 400);
  });
});

describe('an approved action read under a policy that now reads its arguments is judged by that policy', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  const base = `@id("others") permit (principal, action, resource) unless { resource in Writ::ToolGroup::"hr" };
@id("hr-approved") permit (principal, action, resource in Writ::ToolGroup::"hr") when { context.approval.granted };`;
  before(async () => {
    env = await setup('sqlite');
  });
  after(async () => env?.teardown());

  it('a string amount approved before a cap on amounts is refused at the read, not issued', async () => {
    assert.equal((await env.admin.call('PUT', '/v1/policies', { policies: base })).status, 200);
    const task = await env.createTask({ scope: { tools: ['hr.*'] } });
    const agentApi = new Api(env.url, await env.taskToken(task.id));
    const asked = await agentApi.call('POST', '/v1/authorize', { tool: 'hr.pay', arguments: { amount: '1000' }, audience: 'aud' });
    assert.equal(asked.body.decision, 'approval_required', JSON.stringify(asked.body));
    const approver = await env.admin.call('POST', '/v1/operators', { name: 'approver', roles: ['approver'] });
    const ok = await new Api(env.url, approver.body.token).call('POST', `/v1/approvals/${asked.body.approval_id}/approve`, {});
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const capped = `${base}\n@id("cap") forbid (principal, action, resource) when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 100 };`;
    assert.equal((await env.admin.call('PUT', '/v1/policies', { policies: capped })).status, 200);
    const read = await agentApi.call('GET', `/v1/approvals/${asked.body.approval_id}`);
    assert.equal(read.body.action_token, undefined, JSON.stringify(read.body));
    assert.equal(read.body.decision, 'deny');
    assert.equal(read.body.reasons[0].code, 'argument_type_mismatch');
  });
});
