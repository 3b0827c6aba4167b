import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { backends, setup } from './helpers/harness.js';
import { agentFor, auditTypes, makeOperator, setPolicy, type Env } from './helpers/escalations.js';

/** The README's presence example: payments need the owner there, or a person's approval; wires need the owner. */
const POLICY = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"payments" };

@id("payments-while-owner-present")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.owner_present };

@id("payments-owner-away-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { !context.owner_present && context.approval.granted };

@id("wires-only-with-owner")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"wire")
unless { context.owner_present };
`;

const SCOPE = { tools: ['payments.*', 'wire.*', 'github.*'], resources: [], destinations: [] };
const SEC = 1000;

for (const { backend, skip } of backends()) {
  describe(`owner presence end to end (${backend})`, { skip }, () => {
    let env: Env;
    let clock: ManualClock;
    const pay = { tool: 'payments.transfer', arguments: { amount: 10 }, audience: 'https://tools.example/payments' };
    const wire = { tool: 'wire.send', arguments: { amount: 10 }, audience: 'https://tools.example/wire' };
    const harmless = { tool: 'github.get_issue', arguments: { number: 1 }, audience: 'https://tools.example/github' };

    before(async () => {
      clock = new ManualClock(Date.now());
      env = await setup(backend, { clock });
      await setPolicy(env, POLICY);
    });
    after(async () => env?.teardown());

    it('while the lease holds the owner is present; when it lapses, sensitive actions need approval (or are denied) and harmless ones go on', async () => {
      const t = await env.createTask({ scope: SCOPE, ttl_seconds: 3600, max_actions: 50, require_owner_presence: true });
      const agent = await agentFor(env, t.id, clock);
      const p0 = await env.admin.call('GET', `/v1/tasks/${t.id}/presence`);
      assert.equal(p0.status, 200);
      assert.equal(p0.body.required, true);
      assert.equal(p0.body.owner_present, true, 'creating the task counts as being there');
      assert.equal((await agent.call('POST', '/v1/authorize', pay)).body.decision, 'allow');
      assert.equal((await agent.call('POST', '/v1/authorize', wire)).body.decision, 'allow');

      clock.advance(300 * SEC); // the initial lease (300 s) lapses
      assert.equal((await env.admin.call('GET', `/v1/tasks/${t.id}/presence`)).body.owner_present, false);
      const away = await agent.call('POST', '/v1/authorize', pay);
      assert.equal(away.body.decision, 'approval_required', JSON.stringify(away.body));
      const w = await agent.call('POST', '/v1/authorize', wire);
      assert.equal(w.body.decision, 'deny');
      assert.equal(w.body.reasons[0].code, 'policy_forbids');
      assert.equal((await agent.call('POST', '/v1/authorize', harmless)).body.decision, 'allow', 'harmless actions continue');

      // someone else approves the payment meanwhile; the token comes with the owner still away
      const approver = await makeOperator(env, `approver-${backend}`, ['approver']);
      assert.equal((await approver.call('POST', `/v1/approvals/${away.body.approval_id}/approve`, {})).body.status, 'approved');
      const read = await agent.call('GET', `/v1/approvals/${away.body.approval_id}`);
      assert.equal(read.body.decision, 'allow');

      // the owner is back
      const renew = await env.admin.call('POST', `/v1/tasks/${t.id}/presence`, { ttl_seconds: 120 });
      assert.equal(renew.status, 200, JSON.stringify(renew.body));
      assert.equal(renew.body.owner_present, true);
      assert.equal(new Date(renew.body.expires_at).getTime(), clock.now() + 120 * SEC);
      assert.equal((await agent.call('POST', '/v1/authorize', { ...pay, arguments: { amount: 11 } })).body.decision, 'allow');
      assert.equal((await agent.call('POST', '/v1/authorize', wire)).body.decision, 'allow');
      clock.advance(120 * SEC);
      assert.equal((await agent.call('POST', '/v1/authorize', wire)).body.decision, 'deny', 'lapsed again after its ttl');

      // "stepping away now"
      await env.admin.call('POST', `/v1/tasks/${t.id}/presence`, { ttl_seconds: 300 });
      assert.equal((await agent.call('POST', '/v1/authorize', wire)).body.decision, 'allow');
      const gone = await env.admin.call('POST', `/v1/tasks/${t.id}/presence`, { ttl_seconds: 0 });
      assert.equal(gone.body.owner_present, false);
      assert.equal((await agent.call('POST', '/v1/authorize', wire)).body.decision, 'deny');

      const renewed = await auditTypes(env, `task_id=${t.id}&type=presence.renewed`);
      assert.equal(renewed.length, 3);
      const created = (await auditTypes(env, `task_id=${t.id}&type=task.created`))[0]!;
      assert.equal(created.data.require_owner_presence, true);
    });

    it('only the owning operator renews, at most 300 s at a time; tasks without the requirement have no lease', async () => {
      const t = await env.createTask({ scope: SCOPE, ttl_seconds: 3600, require_owner_presence: true });
      const tooLong = await env.admin.call('POST', `/v1/tasks/${t.id}/presence`, { ttl_seconds: 301 });
      assert.equal(tooLong.status, 400);
      const negative = await env.admin.call('POST', `/v1/tasks/${t.id}/presence`, { ttl_seconds: -1 });
      assert.equal(negative.status, 400);
      const otherAdmin = await makeOperator(env, `admin2-${backend}`, ['admin']);
      const notOwner = await otherAdmin.call('POST', `/v1/tasks/${t.id}/presence`, { ttl_seconds: 60 });
      assert.equal(notOwner.status, 403);
      assert.equal(notOwner.body.error.code, 'not_task_owner');
      const requester = await makeOperator(env, `req-${backend}`, ['requester']);
      const hidden = await requester.call('POST', `/v1/tasks/${t.id}/presence`, { ttl_seconds: 60 });
      assert.equal(hidden.status, 404, 'a requester sees only its own tasks');
      const noBody = await env.admin.call('POST', `/v1/tasks/${t.id}/presence`);
      assert.equal(noBody.status, 200, 'the default is the longest lease');
      assert.equal(new Date(noBody.body.expires_at).getTime(), clock.now() + 300 * SEC);

      const plain = await env.createTask({ scope: SCOPE, ttl_seconds: 3600 });
      const none = await env.admin.call('POST', `/v1/tasks/${plain.id}/presence`, { ttl_seconds: 60 });
      assert.equal(none.status, 409);
      assert.equal(none.body.error.code, 'presence_not_required');
      assert.equal((await env.admin.call('GET', `/v1/tasks/${plain.id}/presence`)).body.required, false);
      // a task that does not require presence: the owner counts as present, always
      clock.advance(3000 * SEC);
      const agent = await agentFor(env, plain.id, clock);
      assert.equal((await agent.call('POST', '/v1/authorize', wire)).body.decision, 'allow');

      // a requester's own task: it renews its own lease
      const mine = await requester.call('POST', '/v1/tasks', {
        agent_id: env.agent.id, intent: 'mine', scope: SCOPE, ttl_seconds: 600, max_actions: 5, require_owner_presence: true,
      });
      assert.equal(mine.status, 201);
      assert.equal((await requester.call('POST', `/v1/tasks/${mine.body.id}/presence`, { ttl_seconds: 30 })).status, 200);
      const byAdmin = await env.admin.call('POST', `/v1/tasks/${mine.body.id}/presence`, { ttl_seconds: 30 });
      assert.equal(byAdmin.status, 403, 'not even an admin renews someone else\'s presence');
    });
  });
}
