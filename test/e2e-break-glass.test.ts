import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { ManualClock } from '../src/core/clock.js';
import { backends, setup } from './helpers/harness.js';
import { agentFor, auditTypes, makeOperator, setPolicy, type Env } from './helpers/escalations.js';

const POLICY = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"prod" };

@id("prod-only-under-break-glass")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"prod")
when { context.break_glass };

@id("never-drop-the-database")
forbid (principal, action, resource == Writ::Tool::"prod.drop_database");
`;

const SCOPE = { tools: ['prod.*', 'github.*'], resources: [], destinations: [] };
const AUD = 'https://tools.example/prod';
const JUSTIFICATION = 'INC-4711: checkout is down, the on-call agent must restart the payment workers';
const SEC = 1000;
const MIN = 60 * SEC;

interface Hook {
  url: string;
  events: any[];
  close: () => Promise<void>;
}

async function webhookReceiver(): Promise<Hook> {
  const events: any[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      events.push({ contentType: req.headers['content-type'], ...JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    events,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

for (const { backend, skip } of backends()) {
  describe(`break-glass end to end (${backend})`, { skip }, () => {
    let env: Env;
    let clock: ManualClock;
    let hook: Hook;
    const act = (tool: string, args: Record<string, unknown> = { service: 'payments-worker' }) => ({ tool, arguments: args, audience: AUD });
    const start = (body: Record<string, unknown>, api = env.admin) =>
      api.call('POST', '/v1/break-glass', { agent_id: env.agent.id, justification: JUSTIFICATION, scope: { tools: ['prod.restart', 'prod.scale'] }, duration_seconds: 900, ...body });
    const newTask = async () => {
      const t = await env.createTask({ scope: SCOPE, ttl_seconds: 6 * 3600, max_actions: 100, intent: 'keep checkout up' });
      return { task: t, agent: await agentFor(env, t.id, clock) };
    };

    before(async () => {
      hook = await webhookReceiver();
      clock = new ManualClock(Date.now());
      env = await setup(backend, { clock, config: { breakGlassWebhookUrl: hook.url, taskTokenTtlSeconds: 900 } });
      await setPolicy(env, POLICY);
    });
    after(async () => {
      await env?.teardown();
      await hook?.close();
    });

    it('refuses a start without a justification (20..4096 characters), past the cap, for two targets, or by a non-admin', async () => {
      const cases: [Record<string, unknown>, number, string][] = [
        [{ justification: undefined }, 400, 'invalid_request'],
        [{ justification: 'because' }, 400, 'invalid_request'],
        [{ justification: '                         ' }, 400, 'invalid_request'],
        [{ justification: 'x'.repeat(4097) }, 400, 'invalid_request'],
        [{ duration_seconds: 3601 }, 400, 'invalid_request'],
        [{ duration_seconds: 0 }, 400, 'invalid_request'],
        [{ task_id: 'task_x' }, 400, 'invalid_request'],
        [{ scope: { tools: [] } }, 400, 'invalid_request'],
        [{ agent_id: 'spiffe://acme.test/agent/nobody' }, 404, 'agent_not_found'],
      ];
      for (const [over, status, code] of cases) {
        const body = { agent_id: env.agent.id, justification: JUSTIFICATION, scope: { tools: ['prod.*'] }, duration_seconds: 600, ...over };
        if (over.justification === undefined && 'justification' in over) delete (body as Record<string, unknown>).justification;
        const r = await env.admin.call('POST', '/v1/break-glass', body);
        assert.equal(r.status, status, `${JSON.stringify(over).slice(0, 80)}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, code);
      }
      const approver = await makeOperator(env, 'ann', ['approver']);
      const r = await start({}, approver);
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'insufficient_role');
      assert.equal((await env.admin.call('GET', '/v1/break-glass?state=active')).body.break_glass.length, 0, 'nothing was started');
    });

    it('while active, only the actions break-glass alone allows are allowed, and each is flagged in the token and the audit entry', async () => {
      const { task, agent } = await newTask();
      const before = await agent.call('POST', '/v1/authorize', act('prod.restart'));
      assert.equal(before.body.decision, 'deny');
      assert.equal(before.body.reasons[0].code, 'no_policy_permits');

      const s = await start({});
      assert.equal(s.status, 201, JSON.stringify(s.body));
      assert.equal(s.body.status, 'active');
      assert.equal(s.body.justification, JUSTIFICATION);
      const bgId = s.body.id;

      const r = await agent.call('POST', '/v1/authorize', act('prod.restart'));
      assert.equal(r.body.decision, 'allow', JSON.stringify(r.body));
      const claims = decodeJwt(r.body.action_token);
      assert.equal(claims.break_glass, true);
      const entry = (await auditTypes(env, `decision_id=${r.body.decision_id}&type=decision`))[0]!;
      assert.equal(entry.data.break_glass, true);
      assert.equal(entry.data.break_glass_id, bgId);
      assert.deepEqual(entry.data.policies, ['prod-only-under-break-glass']);
      const decisions = (await env.admin.call('GET', `/v1/tasks/${task.id}`)).body.decisions;
      assert.equal(decisions.find((d: any) => d.id === r.body.decision_id).reasons[0].code, 'break_glass');

      // what policy allows anyway is not flagged, and costs no break-glass lookup: only a
      // refused request can be lifted by one (the lookup is off the allow path)
      const store = env.writ.store;
      const lookup = store.findActiveBreakGlass.bind(store);
      let lookups = 0;
      store.findActiveBreakGlass = async (...a: Parameters<typeof lookup>) => (lookups++, lookup(...a));
      let harmless;
      try {
        harmless = await agent.call('POST', '/v1/authorize', act('github.get_issue', { number: 1 }));
        assert.equal(lookups, 0, 'an allow reads no break-glass');
        assert.equal((await agent.call('POST', '/v1/authorize', act('prod.scale'))).body.decision, 'allow');
        assert.equal(lookups, 1, 'a refusal that break-glass lifts reads it once');
      } finally {
        store.findActiveBreakGlass = lookup;
      }
      assert.equal(harmless.body.decision, 'allow');
      assert.equal(decodeJwt(harmless.body.action_token).break_glass, undefined);
      const harmlessEntry = (await auditTypes(env, `decision_id=${harmless.body.decision_id}&type=decision`))[0]!;
      assert.equal(harmlessEntry.data.break_glass, undefined);
      // a forbid stays a forbid, and a tool outside the break-glass scope stays denied
      const drop = await agent.call('POST', '/v1/authorize', act('prod.drop_database'));
      assert.equal(drop.body.decision, 'deny');
      assert.equal(drop.body.reasons[0].code, 'policy_forbids');
      const outside = await agent.call('POST', '/v1/authorize', act('prod.rotate_keys'));
      assert.equal(outside.body.decision, 'deny');

      // used after end: an action one second after the end is denied
      clock.advance(10 * SEC);
      const ended = await env.admin.call('POST', `/v1/break-glass/${bgId}/end`, { reason: 'workers are back' });
      assert.equal(ended.status, 200);
      assert.equal(ended.body.status, 'ended');
      clock.advance(SEC);
      const afterEnd = await agent.call('POST', '/v1/authorize', act('prod.restart'));
      assert.equal(afterEnd.body.decision, 'deny');
      assert.equal(afterEnd.body.reasons[0].code, 'no_policy_permits');
      const endTwice = await env.admin.call('POST', `/v1/break-glass/${bgId}/end`, {});
      assert.equal(endTwice.status, 409);
      assert.equal(endTwice.body.error.code, 'break_glass_not_active');

      // the review item stays open until an admin records a review
      const unreviewed = (await env.admin.call('GET', '/v1/break-glass?state=unreviewed')).body.break_glass;
      assert.ok(unreviewed.some((b: any) => b.id === bgId && b.needs_review));
      const rev = await env.admin.call('POST', `/v1/break-glass/${bgId}/review`, { notes: 'justified; restart fixed INC-4711' });
      assert.equal(rev.status, 200);
      assert.equal(rev.body.needs_review, false);
      const twice = await env.admin.call('POST', `/v1/break-glass/${bgId}/review`, { notes: 'again' });
      assert.equal(twice.status, 409);
      assert.ok(!(await env.admin.call('GET', '/v1/break-glass?state=unreviewed')).body.break_glass.some((b: any) => b.id === bgId));
      assert.ok((await env.admin.call('GET', '/v1/break-glass?state=ended')).body.break_glass.some((b: any) => b.id === bgId));

      const types = (await auditTypes(env, `agent_id=${encodeURIComponent(env.agent.id)}&after=0`)).map((e) => e.type);
      for (const t of ['break_glass.started', 'break_glass.ended', 'break_glass.reviewed']) assert.ok(types.includes(t), `audit has ${t}`);
      await env.writ.breakGlass.settle();
      const mine = hook.events.filter((e) => e.break_glass.id === bgId);
      assert.deepEqual(mine.map((e) => e.event), ['break_glass.started', 'break_glass.ended']);
      assert.equal(mine[0].contentType, 'application/json');
      assert.equal(mine[0].break_glass.justification, JUSTIFICATION);
      clock.advance(2 * 3600 * SEC); // out of this test's cap window
    });

    it('no extension or chaining past the cap; it ends by itself; the review waits until it is over', async () => {
      const { task } = await newTask();
      const a = await start({ duration_seconds: 2400 });
      assert.equal(a.status, 201);
      const second = await start({ duration_seconds: 60 });
      assert.equal(second.status, 409, 'no second one while one is active (no extension)');
      assert.equal(second.body.error.code, 'break_glass_active');
      const early = await env.admin.call('POST', `/v1/break-glass/${a.body.id}/review`, { notes: 'too early' });
      assert.equal(early.status, 409);
      assert.equal(early.body.error.code, 'break_glass_active');
      clock.advance(2400 * SEC - SEC);
      const agent = await agentFor(env, task.id, clock); // task tokens last 15 minutes
      assert.equal((await agent.call('POST', '/v1/authorize', act('prod.scale'))).body.decision, 'allow', 'active until its last second');
      clock.advance(SEC);
      const atEnd = await agent.call('POST', '/v1/authorize', act('prod.scale'));
      assert.equal(atEnd.body.decision, 'deny', 'it ended by itself');
      clock.advance(SEC);
      const list = (await env.admin.call('GET', '/v1/break-glass?state=ended')).body.break_glass;
      const expired = list.find((b: any) => b.id === a.body.id);
      assert.equal(expired.status, 'expired');
      assert.equal(expired.needs_review, true);
      // chaining: 40 minutes just ran, so at most 20 more within the hour
      const chained = await start({ duration_seconds: 1500 });
      assert.equal(chained.status, 409);
      assert.equal(chained.body.error.code, 'break_glass_cap_exceeded');
      const fits = await start({ duration_seconds: 1200 });
      assert.equal(fits.status, 201, JSON.stringify(fits.body));
      clock.advance(1200 * SEC);
      const full = await start({ duration_seconds: 60 });
      assert.equal(full.status, 409);
      assert.equal(full.body.error.code, 'break_glass_cap_exceeded', '40 + 20 minutes: the cap window is full');
      // the review
      assert.equal((await env.admin.call('POST', `/v1/break-glass/${a.body.id}/review`, { notes: 'ok' })).status, 200);
      const types = (await auditTypes(env, 'type=break_glass.expired')).map((e) => e.data.break_glass_id);
      assert.ok(types.includes(a.body.id), 'the natural end is audited');
      await env.writ.breakGlass.settle();
      assert.ok(hook.events.some((e) => e.event === 'break_glass.ended' && e.break_glass.id === a.body.id), 'the natural end is announced');
      clock.advance(3 * 3600 * SEC);
    });

    it('a task-scoped break-glass covers that task only', async () => {
      const one = await newTask();
      const two = await newTask();
      const s = await start({ agent_id: undefined, task_id: one.task.id, duration_seconds: 300 });
      assert.equal(s.status, 201, JSON.stringify(s.body));
      assert.equal(s.body.task_id, one.task.id);
      assert.equal((await one.agent.call('POST', '/v1/authorize', act('prod.restart'))).body.decision, 'allow');
      assert.equal((await two.agent.call('POST', '/v1/authorize', act('prod.restart'))).body.decision, 'deny');
      assert.equal((await env.admin.call('POST', `/v1/break-glass/${s.body.id}/end`, {})).status, 200);
      clock.advance(3 * 3600 * SEC);
    });

    it('warns when the active policy never reads context.break_glass (and not when it does)', async () => {
      const other = await setup(backend, { clock });
      try {
        const body = { agent_id: other.agent.id, justification: JUSTIFICATION, scope: { tools: ['prod.*'] }, duration_seconds: 60 };
        const r = await other.admin.call('POST', '/v1/break-glass', body);
        assert.equal(r.status, 201);
        assert.equal(r.body.warnings?.[0]?.code, 'policy_ignores_break_glass');
        assert.equal((await other.admin.call('POST', `/v1/break-glass/${r.body.id}/end`, {})).status, 200);
        clock.advance(3 * 3600 * SEC);
        await setPolicy(other, POLICY);
        const r2 = await other.admin.call('POST', '/v1/break-glass', body);
        assert.equal(r2.status, 201, JSON.stringify(r2.body));
        assert.equal(r2.body.warnings, undefined);
      } finally {
        await other.teardown();
      }
    });

    it('an unreachable webhook is audited and blocks nothing', async () => {
      const other = await setup(backend, { clock, config: { breakGlassWebhookUrl: 'http://127.0.0.1:1/unreachable' } });
      try {
        await setPolicy(other, POLICY);
        const r = await other.admin.call('POST', '/v1/break-glass', { agent_id: other.agent.id, justification: JUSTIFICATION, scope: { tools: ['prod.*'] }, duration_seconds: 60 });
        assert.equal(r.status, 201);
        await other.writ.breakGlass.settle();
        const failed = (await other.admin.call('GET', '/v1/audit?type=break_glass.webhook_failed')).body.entries;
        assert.equal(failed.length, 1);
        assert.equal(failed[0].data.break_glass_id, r.body.id);
        assert.equal(failed[0].data.event, 'break_glass.started');
      } finally {
        await other.teardown();
      }
    });

    it('two-person rule: a second admin confirms before it takes effect; not the one who started it', async () => {
      const other = await setup(backend, { clock, config: { breakGlassRequiresConfirmation: true } });
      try {
        await setPolicy(other, POLICY);
        const t = await other.createTask({ scope: SCOPE, ttl_seconds: 3600 });
        const agent = await agentFor(other, t.id, clock);
        const admin2 = await makeOperator(other, 'second admin', ['admin']);
        const s = await other.admin.call('POST', '/v1/break-glass', { agent_id: other.agent.id, justification: JUSTIFICATION, scope: { tools: ['prod.*'] }, duration_seconds: 600 });
        assert.equal(s.status, 201);
        assert.equal(s.body.status, 'pending');
        assert.equal((await agent.call('POST', '/v1/authorize', act('prod.restart'))).body.decision, 'deny', 'not in effect before confirmation');
        const self = await other.admin.call('POST', `/v1/break-glass/${s.body.id}/confirm`);
        assert.equal(self.status, 403);
        assert.equal(self.body.error.code, 'same_admin');
        clock.advance(MIN);
        const ok = await admin2.call('POST', `/v1/break-glass/${s.body.id}/confirm`);
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        assert.equal(ok.body.status, 'active');
        assert.equal(ok.body.confirmed_by, admin2.id);
        assert.equal(new Date(ok.body.ends_at).getTime() - new Date(ok.body.starts_at).getTime(), 600 * SEC);
        const r = await agent.call('POST', '/v1/authorize', act('prod.restart'));
        assert.equal(r.body.decision, 'allow');
        assert.equal(decodeJwt(r.body.action_token).break_glass, true);
        const again = await admin2.call('POST', `/v1/break-glass/${s.body.id}/confirm`);
        assert.equal(again.status, 409);
        const types = (await other.admin.call('GET', '/v1/audit?type=break_glass.confirmed')).body.entries;
        assert.equal(types.length, 1);
      } finally {
        await other.teardown();
      }
    });

    it('the audit chain verifies', async () => {
      assert.equal((await env.admin.call('GET', '/v1/audit/verify')).body.ok, true);
    });
  });
}
