import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Api, backends, setup } from './helpers/harness.js';

/**
 * AuthZEN Authorization API 1.0 (openid/authzen api/authorization-api-1_0.md). The
 * interop cases below are the spec's own examples (§"Access Evaluation API", §"Default
 * values", §"Evaluations semantics"), with Writ's vocabulary for the entities: subject
 * `agent`, action `call`, resource `tool` (documents 1, 2, 3 become tools, document 2 out
 * of the task's scope, so the spec's answers `true, false, true` hold).
 */

const AUD = 'https://tools.example/docs';
type Env = Awaited<ReturnType<typeof setup>>;

const tool = (id: string, props: Record<string, unknown> = {}) => ({ type: 'tool', id, properties: { audience: AUD, ...props } });

async function auditCount(env: Env, taskId: string): Promise<number> {
  const r = await env.admin.call('GET', `/v1/audit?task_id=${encodeURIComponent(taskId)}&limit=1000`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body.entries ?? r.body.items ?? r.body).length;
}

for (const { backend, skip } of backends()) {
  describe(`AuthZEN PDP (${backend})`, { skip }, () => {
    let env: Env;
    let subject: { type: string; id: string };
    before(async () => {
      env = await setup(backend);
      subject = { type: 'agent', id: env.agent.id };
    });
    after(async () => env?.teardown());

    async function task(over: Record<string, unknown> = {}) {
      const t = await env.createTask({ scope: { tools: ['docs.1', 'docs.3'], resources: [], destinations: [] }, ...over });
      return { id: t.id, api: new Api(env.url, await env.taskToken(t.id)) };
    }

    it('publishes PDP metadata whose identifier is the issuer (§"Policy Decision Point Metadata")', async () => {
      const r = await new Api(env.url).call('GET', '/.well-known/authzen-configuration');
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type')!, /^application\/json/);
      assert.deepEqual(r.body, {
        policy_decision_point: env.url,
        access_evaluation_endpoint: `${env.url}/access/v1/evaluation`,
        access_evaluations_endpoint: `${env.url}/access/v1/evaluations`,
      });
    });

    it('single evaluation: an allow is `decision: true` with the action token; a deny `false` with reasons; both are audited', async () => {
      const t = await task();
      const before = await auditCount(env, t.id);
      // the spec's request example, in Writ's vocabulary; `time` in context is ignored
      const ok = await t.api.call('POST', '/access/v1/evaluation', {
        subject,
        resource: tool('docs.1'),
        action: { name: 'call', properties: { method: 'GET' } },
        context: { time: '1985-10-26T01:22-07:00', arguments: { page: 1 } },
      });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.body.decision, true);
      assert.match(ok.body.context.decision_id, /^dec_/);
      assert.equal(ok.body.context.task_id, t.id);
      const jwks = createLocalJWKSet(await (await fetch(`${env.url}/.well-known/jwks.json`)).json());
      const { payload } = await jwtVerify(ok.body.context.action_token, jwks, { issuer: env.url, audience: AUD, typ: 'writ-action+jwt' });
      assert.equal(payload.tool ?? (payload as any).act_tool ?? 'docs.1', 'docs.1');

      const no = await t.api.call('POST', '/access/v1/evaluation', { subject, resource: tool('docs.2'), action: { name: 'call' } });
      assert.equal(no.status, 200, 'a deny is a 200 (§"Error Responses")');
      assert.equal(no.body.decision, false);
      assert.equal(no.body.context.reasons[0].code, 'tool_out_of_scope');
      assert.equal(no.body.context.action_token, undefined);
      assert.ok((await auditCount(env, t.id)) >= before + 2, 'both decisions are in the audit log');
    });

    it('destinations and arguments go through the same checks as /v1/authorize', async () => {
      const t = await task({ scope: { tools: ['mail.send'], resources: [], destinations: ['*.acme.test'] } });
      const send = (destination: string) =>
        t.api.call('POST', '/access/v1/evaluation', { subject, action: { name: 'call' }, resource: tool('mail.send', { destination }), context: { arguments: { to: destination } } });
      assert.equal((await send('mail.acme.test')).body.decision, true);
      const out = await send('mail.evil.test');
      assert.equal(out.body.decision, false);
      assert.equal(out.body.context.reasons[0].code, 'destination_out_of_scope');
      // claims in the body's context are not the token's: they widen nothing
      const widened = await t.api.call('POST', '/access/v1/evaluation', {
        subject,
        action: { name: 'call' },
        resource: tool('docs.2', { destination: 'mail.acme.test' }),
        context: { scope: { tools: ['*'] }, task_id: 'tsk_other', claims: { scope: '*' } },
      });
      assert.equal(widened.body.decision, false);
      assert.equal(widened.body.context.task_id, t.id);
    });

    it('boxcar: three requests with no default values (§"Access Evaluations API Request")', async () => {
      const t = await task();
      const ctx = { time: '2024-05-31T15:22-07:00' };
      const r = await t.api.call('POST', '/access/v1/evaluations', {
        evaluations: ['docs.1', 'docs.2', 'docs.3'].map((id) => ({ subject, action: { name: 'call' }, resource: tool(id), context: ctx })),
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.evaluations.map((e: any) => e.decision), [true, false, true]);
      assert.equal(r.body.decision, undefined, 'the top-level decision is omitted (RECOMMENDED)');
    });

    it('boxcar: default subject and context; a default action overridden per evaluation (§"Default values")', async () => {
      const t = await task();
      const r = await t.api.call('POST', '/access/v1/evaluations', {
        subject,
        context: { time: '2024-05-31T15:22-07:00' },
        action: { name: 'call' },
        evaluations: [{ resource: tool('docs.1') }, { resource: tool('docs.2') }, { action: { name: 'call', properties: { x: 1 } }, resource: tool('docs.3') }],
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.evaluations.map((e: any) => e.decision), [true, false, true]);
      // an evaluation's key replaces the default whole: its own subject of another type is refused
      const bad = await t.api.call('POST', '/access/v1/evaluations', {
        subject,
        action: { name: 'call' },
        evaluations: [{ resource: tool('docs.1') }, { subject: { type: 'user', id: 'alice@example.com' }, resource: tool('docs.3') }],
      });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'unsupported_subject_type');
      assert.match(bad.body.error.message, /evaluations\.1\.subject\.type/);
    });

    for (const [semantic, expected] of [
      ['execute_all', [true, false, true]],
      ['deny_on_first_deny', [true, false]],
      ['permit_on_first_permit', [true]],
    ] as const) {
      it(`evaluations semantic \`${semantic}\` answers ${JSON.stringify(expected)} and decides nothing after a short circuit`, async () => {
        const t = await task();
        const r = await t.api.call('POST', '/access/v1/evaluations', {
          subject,
          action: { name: 'call' },
          options: { evaluations_semantic: semantic, another_option: 'value' },
          evaluations: [{ resource: tool('docs.1') }, { resource: tool('docs.2') }, { resource: tool('docs.3') }],
        });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.deepEqual(r.body.evaluations.map((e: any) => e.decision), expected);
        const decisions = (await env.admin.call('GET', `/v1/tasks/${t.id}`)).body;
        // allows reserve budget: only the evaluations that ran spent any
        assert.equal(decisions.actions_used + decisions.actions_reserved, expected.filter(Boolean).length);
      });
    }

    it('`permit_on_first_permit` after denies, and a default semantic of `execute_all`', async () => {
      const t = await task();
      const r = await t.api.call('POST', '/access/v1/evaluations', {
        subject,
        action: { name: 'call' },
        options: { evaluations_semantic: 'permit_on_first_permit' },
        evaluations: [{ resource: tool('docs.2') }, { resource: tool('docs.9') }, { resource: tool('docs.3') }, { resource: tool('docs.1') }],
      });
      assert.deepEqual(r.body.evaluations.map((e: any) => e.decision), [false, false, true]);
      const all = await t.api.call('POST', '/access/v1/evaluations', { subject, action: { name: 'call' }, evaluations: [{ resource: tool('docs.2') }, { resource: tool('docs.1') }] });
      assert.deepEqual(all.body.evaluations.map((e: any) => e.decision), [false, true]);
    });

    it('the task budget is the same one: an evaluation past `max_actions` is denied `budget_exhausted`', async () => {
      const t = await task({ max_actions: 2 });
      const r = await t.api.call('POST', '/access/v1/evaluations', {
        subject,
        action: { name: 'call' },
        evaluations: [{ resource: tool('docs.1') }, { resource: tool('docs.3') }, { resource: tool('docs.1') }],
      });
      assert.deepEqual(r.body.evaluations.map((e: any) => e.decision), [true, true, false]);
      assert.equal(r.body.evaluations[2].context.reasons[0].code, 'budget_exhausted');
      const direct = await t.api.call('POST', '/v1/authorize', { tool: 'docs.1', audience: AUD, arguments: {} });
      assert.equal(direct.body.decision, 'deny', JSON.stringify(direct.body));
    });

    it('no or an empty `evaluations` array is a single evaluation (backwards compatible)', async () => {
      const t = await task();
      for (const evaluations of [undefined, []]) {
        const r = await t.api.call('POST', '/access/v1/evaluations', { subject, action: { name: 'call' }, resource: tool('docs.1'), evaluations });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.decision, true);
        assert.equal(r.body.evaluations, undefined);
      }
    });

    it('echoes `X-Request-ID`, on errors too (§"Request Identification")', async () => {
      const t = await task();
      const id = 'bfe9eb29-ab87-4ca3-be83-a1d5d8305716';
      const call = (body: unknown) =>
        fetch(`${env.url}/access/v1/evaluation`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${t.api.token}`, 'x-request-id': id },
          body: JSON.stringify(body),
        });
      const ok = await call({ subject, action: { name: 'call' }, resource: tool('docs.1') });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('x-request-id'), id);
      const bad = await call({ subject, action: { name: 'call' } });
      assert.equal(bad.status, 400);
      assert.equal(bad.headers.get('x-request-id'), id);
    });

    it('bad input gets typed errors and records nothing', async () => {
      const t = await task();
      const before = await auditCount(env, t.id);
      const base = { subject, action: { name: 'call' }, resource: tool('docs.1') };
      const cases: [string, unknown, number, string, RegExp?][] = [
        ['no subject', { action: base.action, resource: base.resource }, 400, 'invalid_request', /subject/],
        ['no resource', { subject, action: base.action }, 400, 'invalid_request', /resource/],
        ['no action', { subject, resource: base.resource }, 400, 'invalid_request', /action/],
        ['subject id not a string', { ...base, subject: { type: 'agent', id: 7 } }, 400, 'invalid_request'],
        ['a user subject', { ...base, subject: { type: 'user', id: 'alice@example.com' } }, 400, 'unsupported_subject_type'],
        ['another agent', { ...base, subject: { type: 'agent', id: 'spiffe://acme.test/agent/other' } }, 403, 'subject_mismatch'],
        ['the agent id with a trailing space', { ...base, subject: { type: 'agent', id: `${env.agent.id} ` } }, 403, 'subject_mismatch'],
        ['a spec action name', { ...base, action: { name: 'can_read' } }, 400, 'unsupported_action'],
        ['`Call` in another case', { ...base, action: { name: 'Call' } }, 400, 'unsupported_action'],
        ['a document resource', { ...base, resource: { type: 'document', id: 'docs.1', properties: { audience: AUD } } }, 400, 'unsupported_resource_type'],
        ['no audience', { ...base, resource: { type: 'tool', id: 'docs.1' } }, 400, 'invalid_request', /resource\.properties\.audience/],
        ['audience as an array', { ...base, resource: tool('docs.1', { audience: [AUD] }) }, 400, 'invalid_request'],
        ['a tool name with a space', { ...base, resource: tool('docs 1') }, 400, 'invalid_request', /resource\.id/],
        ['a `..` resource', { ...base, resource: tool('docs.1', { resource: 'repo:acme/../x' }) }, 400, 'invalid_resource'],
        ['a non-canonical destination', { ...base, resource: tool('mail.send', { destination: 'Mail.ACME.test' }) }, 400, 'invalid_destination'],
        ['arguments as an array', { ...base, context: { arguments: [{ to: 'x' }] } }, 400, 'invalid_request', /context\.arguments/],
        ['a `__proto__` argument', { ...base, context: JSON.parse('{"arguments": {"a": {"__proto__": {"x": 1}}}}') }, 400, 'reserved_argument_key'],
        ['context not an object', { ...base, context: 'now' }, 400, 'invalid_request'],
        ['arguments null', { ...base, context: { arguments: null } }, 400, 'invalid_request'],
        ['properties not an object', { ...base, resource: { type: 'tool', id: 'docs.1', properties: [AUD] } }, 400, 'invalid_request'],
      ];
      for (const [name, body, status, code, message] of cases) {
        const r = await t.api.call('POST', '/access/v1/evaluation', body);
        assert.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, code, `${name}: ${JSON.stringify(r.body)}`);
        if (message) assert.match(r.body.error.message, message, name);
        assert.ok(!JSON.stringify(r.body).includes('    at '), 'no stack trace');
      }
      const boxes: [string, unknown, string][] = [
        ['an unknown semantic', { ...base, options: { evaluations_semantic: 'deny_all' }, evaluations: [{}] }, 'invalid_request'],
        ['an evaluation missing its resource with no default', { subject, action: base.action, evaluations: [{ resource: base.resource }, {}] }, 'invalid_request'],
        ['a bad evaluation after a good one', { subject, action: base.action, evaluations: [{ resource: base.resource }, { resource: tool('docs.1', { resource: 'a/%2e%2e/b' }) }] }, 'invalid_resource'],
        ['evaluations not an array', { ...base, evaluations: { resource: base.resource } }, 'invalid_request'],
        ['too many evaluations', { ...base, evaluations: Array.from({ length: 65 }, () => ({})) }, 'invalid_request'],
      ];
      for (const [name, body, code] of boxes) {
        const r = await t.api.call('POST', '/access/v1/evaluations', body);
        assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, code, `${name}: ${JSON.stringify(r.body)}`);
      }
      assert.equal(await auditCount(env, t.id), before, 'no refused request left a decision or audit entry');
      const task2 = (await env.admin.call('GET', `/v1/tasks/${t.id}`)).body;
      assert.equal(task2.actions_used + task2.actions_reserved, 0);

      // transport errors
      assert.equal((await new Api(env.url).call('POST', '/access/v1/evaluation', base)).status, 401);
      assert.equal((await new Api(env.url, 'eyJhbGciOiJub25lIn0.e30.').call('POST', '/access/v1/evaluation', base)).status, 401);
      assert.equal((await t.api.call('POST', '/access/v1/evaluation', base, { contentType: 'text/plain' })).status, 415);
      const notJson = await t.api.call('POST', '/access/v1/evaluation', undefined, { raw: '{"subject":' });
      assert.equal(notJson.body.error.code, 'invalid_json');
      assert.equal((await t.api.call('GET', '/access/v1/evaluation')).status, 405);
    });

    it('unknown fields are ignored (§"JSON Serialization")', async () => {
      const t = await task();
      const r = await t.api.call('POST', '/access/v1/evaluation', {
        subject: { ...subject, properties: { department: 'finance' }, extra: 1 },
        action: { name: 'call', extra: true },
        resource: { ...tool('docs.1'), extra: [] },
        unknown_top_level: { x: 1 },
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.decision, true);
    });

    it('a completed task answers 401 and decides nothing', async () => {
      const t = await task();
      const done = await env.admin.call('POST', `/v1/tasks/${t.id}/revoke`, { reason: 'done' });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      const r = await t.api.call('POST', '/access/v1/evaluation', { subject, action: { name: 'call' }, resource: tool('docs.1') });
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'task_not_active');
    });
  });
}
