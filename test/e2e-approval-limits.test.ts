import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { backends, setup, type Api } from './helpers/harness.js';
import { agentFor, auditTypes, makeOperator, registerAgent, secondInstance, setPolicy, type Env } from './helpers/escalations.js';

const POLICY = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"payments" };

@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };
`;

const SCOPE = { tools: ['payments.*', 'github.*'] };
const AUD = 'https://tools.example/payments';
const pay = (amount: number, to = 'acme') => ({ tool: 'payments.transfer', arguments: { amount, to }, audience: AUD });

/**
 * Approval flooding (issue 10, item 12): open approvals are capped per task and per
 * agent (429 `approval_limit`, counted by the store, so across instances too), and
 * denies and approval requests count against a per-task rate (429 with Retry-After).
 */
for (const { backend, skip } of backends()) {
  describe(`open approvals are capped per task and per agent (${backend})`, { skip }, () => {
    let env: Env;
    let clock: ManualClock;
    let approver: Api;
    before(async () => {
      clock = new ManualClock(Date.now());
      env = await setup(backend, { clock, config: { approvalOpenMaxPerTask: 3, approvalOpenMaxPerAgent: 5, taskRefusalLimit: { max: 1000, windowMs: 1000 } } });
      await setPolicy(env, POLICY);
      approver = await makeOperator(env, 'alice', ['approver']);
    });
    after(async () => env?.teardown());

    it('a task with max_actions 1 opens at most the cap; then 429 `approval_limit`; asking again for an open one is not a new one', async () => {
      const task = await env.createTask({ scope: SCOPE, max_actions: 1 });
      const agent = await agentFor(env, task.id, clock);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await agent.call('POST', '/v1/authorize', pay(100 + i));
        assert.equal(r.body.decision, 'approval_required', JSON.stringify(r.body));
        ids.push(r.body.approval_id);
      }
      // near variants of "another action": other amount, other recipient, other audience
      for (const action of [pay(104), pay(100, 'mallory'), { ...pay(100), audience: 'https://other.example' }]) {
        const r = await agent.call('POST', '/v1/authorize', action);
        assert.equal(r.status, 429, JSON.stringify(r.body));
        assert.equal(r.body.error.code, 'approval_limit');
        assert.match(r.body.error.message, /3 open approvals/);
        assert.ok(Number(r.headers.get('retry-after')) >= 1);
      }
      // the very same action again returns its open approval: no new place is taken
      const again = await agent.call('POST', '/v1/authorize', pay(100));
      assert.equal(again.body.decision, 'approval_required');
      assert.equal(again.body.approval_id, ids[0]);
      // what is not an approval request is not limited by it (a deny here: the budget of 1 is untouched, the tool out of scope)
      const denied = await agent.call('POST', '/v1/authorize', { tool: 'slack.post', arguments: {}, audience: 'https://tools.example/slack' });
      assert.equal(denied.body.decision, 'deny');
      // a settled approval frees its place
      assert.equal((await approver.call('POST', `/v1/approvals/${ids[1]}/deny`, {})).status, 200);
      assert.equal((await agent.call('POST', '/v1/authorize', pay(105))).body.decision, 'approval_required');
      assert.equal((await agent.call('POST', '/v1/authorize', pay(106))).body.error?.code, 'approval_limit');
      // an expired one too (by time, before any sweep)
      clock.advance(15 * 60_000 + 1000);
      const agent2 = await agentFor(env, (await env.createTask({ scope: SCOPE })).id, clock);
      assert.equal((await agent2.call('POST', '/v1/authorize', pay(1))).body.decision, 'approval_required');
      const limited = (await auditTypes(env, 'type=approval.limited')).filter((e) => e.data.limit === 'task');
      assert.equal(limited.length, 4);
      assert.equal(limited[0]!.data.max, 3);
      // nothing half-written: no decision without its approval
      const decisions = (await env.admin.call('GET', `/v1/tasks/${task.id}`)).body.decisions as { decision: string }[];
      assert.equal(decisions.filter((d) => d.decision === 'approval_required').length, 5, '4 new + the repeated one');
    });

    it('the agent cap counts over all its tasks; another agent is not touched', async () => {
      const a = await env.createTask({ scope: SCOPE });
      const b = await env.createTask({ scope: SCOPE });
      const c = await env.createTask({ scope: SCOPE });
      const [ta, tb, tc] = await Promise.all([a, b, c].map((t) => agentFor(env, t.id, clock)));
      // the earlier test left the agent with 1 open (agent2's); 3 + 1 more reach 5
      for (let i = 0; i < 3; i++) assert.equal((await ta!.call('POST', '/v1/authorize', pay(200 + i))).body.decision, 'approval_required');
      assert.equal((await tb!.call('POST', '/v1/authorize', pay(300))).body.decision, 'approval_required');
      const over = await tc!.call('POST', '/v1/authorize', pay(400));
      assert.equal(over.status, 429);
      assert.equal(over.body.error.code, 'approval_limit');
      assert.match(over.body.error.message, /agent/);
      const other = await registerAgent(env, 'spiffe://acme.test/agent/other');
      const ot = await env.admin.call('POST', '/v1/tasks', { agent_id: other.id, intent: 'x', scope: SCOPE, ttl_seconds: 600, max_actions: 5 });
      const otherApi = await agentFor(env, ot.body.id, clock, other);
      assert.equal((await otherApi.call('POST', '/v1/authorize', pay(1))).body.decision, 'approval_required');
    });

    it('two instances flooding one task at once never open more than the cap', async () => {
      const second = await secondInstance(env, clock, { approvalOpenMaxPerTask: 3, approvalOpenMaxPerAgent: 1000, taskRefusalLimit: { max: 1000, windowMs: 1000 } });
      try {
        const other = await registerAgent(env, 'spiffe://acme.test/agent/flood');
        const t = await env.admin.call('POST', '/v1/tasks', { agent_id: other.id, intent: 'x', scope: SCOPE, ttl_seconds: 600, max_actions: 1 });
        const one = await agentFor(env, t.body.id, clock, other);
        const token = one.token!;
        const results = await Promise.all(
          Array.from({ length: 24 }, (_, i) => (i % 2 ? second.api(token) : one).call('POST', '/v1/authorize', pay(1000 + i))),
        );
        const opened = results.filter((r) => r.status === 200 && r.body.decision === 'approval_required').length;
        const refused = results.filter((r) => r.status === 429 && r.body.error.code === 'approval_limit').length;
        assert.equal(opened, 3, `opened ${opened}`);
        assert.equal(refused, 21);
        const listed = await approver.call('GET', `/v1/approvals?status=pending&task_id=${t.body.id}`);
        assert.equal(listed.body.approvals.length, 3);
      } finally {
        await second.stop();
      }
    });
  });

  describe(`denies and approval requests count against a per-task rate (${backend})`, { skip }, () => {
    let env: Env;
    let clock: ManualClock;
    before(async () => {
      clock = new ManualClock(Date.now());
      env = await setup(backend, { clock, config: { taskRefusalLimit: { max: 5, windowMs: 1000 } } });
      await setPolicy(env, POLICY);
    });
    after(async () => env?.teardown());

    it('past the rate: 429 with Retry-After, for every request of that task until the window ends; allows do not count', async () => {
      const task = await env.createTask({ scope: SCOPE, max_actions: 50 });
      const agent = await agentFor(env, task.id, clock);
      const allow = { tool: 'github.get', arguments: {}, audience: 'https://tools.example/github' };
      for (let i = 0; i < 8; i++) assert.equal((await agent.call('POST', '/v1/authorize', allow)).body.decision, 'allow');
      // denies (out of scope) and approval requests count together
      const seen: string[] = [];
      for (const action of [{ ...allow, tool: 'slack.post' }, pay(1), { ...allow, tool: 'slack.post' }, pay(2), pay(1)]) {
        const r = await agent.call('POST', '/v1/authorize', action);
        assert.equal(r.status, 200);
        seen.push(r.body.decision);
      }
      assert.deepEqual(seen, ['deny', 'approval_required', 'deny', 'approval_required', 'approval_required']);
      for (const action of [{ ...allow, tool: 'slack.post' }, pay(3), allow]) {
        const r = await agent.call('POST', '/v1/authorize', action);
        assert.equal(r.status, 429, JSON.stringify(r.body));
        assert.equal(r.body.error.code, 'rate_limited');
        assert.equal(r.headers.get('retry-after'), '1');
      }
      // requests sent together are counted as they are decided: a burst does not slip past
      const burstTask = await env.createTask({ scope: SCOPE, max_actions: 50 });
      const burst = await agentFor(env, burstTask.id, clock);
      const all = await Promise.all(Array.from({ length: 30 }, (_, i) => burst.call('POST', '/v1/authorize', i % 2 ? { ...allow, tool: 'slack.post' } : pay(i))));
      assert.equal(all.filter((r) => r.status === 200).length, 5, all.map((r) => r.status).join(','));
      assert.equal(all.filter((r) => r.status === 429).length, 25);
      // ... and concurrent allows are never slowed by it
      const allowTask = await env.createTask({ scope: SCOPE, max_actions: 50 });
      const allower = await agentFor(env, allowTask.id, clock);
      const allows = await Promise.all(Array.from({ length: 30 }, () => allower.call('POST', '/v1/authorize', allow)));
      assert.ok(allows.every((r) => r.status === 200 && r.body.decision === 'allow'));
      // another task of the same agent has its own rate
      const other = await agentFor(env, (await env.createTask({ scope: SCOPE })).id, clock);
      assert.equal((await other.call('POST', '/v1/authorize', { ...allow, tool: 'slack.post' })).body.decision, 'deny');
      // one audit entry for the window, not one per refused request
      const limited = (await auditTypes(env, 'type=security.rate_limited')).filter((e) => e.data.task_id === task.id);
      assert.equal(limited.length, 1);
      // the next window
      clock.advance(1000);
      assert.equal((await agent.call('POST', '/v1/authorize', allow)).body.decision, 'allow');
      assert.equal((await agent.call('POST', '/v1/authorize', { ...allow, tool: 'slack.post' })).body.decision, 'deny');
    });
  });
}
