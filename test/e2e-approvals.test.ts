import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { ManualClock } from '../src/core/clock.js';
import { digestArguments } from '../src/core/digest.js';
import { createActionVerifier } from '@writ/sdk';
import { backends, setup } from './helpers/harness.js';
import { agentFor, auditTypes, makeOperator, registerAgent, secondInstance, setPolicy, type Env } from './helpers/escalations.js';

const POLICY = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"payments" || resource in Writ::ToolGroup::"treasury" || resource in Writ::ToolGroup::"hr" };

@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };

@id("treasury-needs-two")
@approvals("2")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"treasury")
when { context.approval.granted };

@id("hr-four-eyes")
@four_eyes("true")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"hr")
when { context.approval.granted };

@id("no-huge-payments")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 1000000 };
`;

const SCOPE = { tools: ['payments.*', 'treasury.*', 'hr.*', 'github.*'], resources: ['acct:*'], destinations: ['bank.example'] };
const AUD = 'https://tools.example/payments';
const MIN = 60_000;

for (const { backend, skip } of backends()) {
  describe(`approvals end to end (${backend})`, { skip }, () => {
    let env: Env;
    let clock: ManualClock;
    let approver1: Awaited<ReturnType<typeof makeOperator>>;
    let approver2: Awaited<ReturnType<typeof makeOperator>>;
    let approver3: Awaited<ReturnType<typeof makeOperator>>;
    let auditor: Awaited<ReturnType<typeof makeOperator>>;

    const newTask = async (over: Record<string, unknown> = {}) => {
      const t = await env.createTask({ scope: SCOPE, intent: 'pay the March invoices', ttl_seconds: 3600, ...over });
      return { task: t, agent: await agentFor(env, t.id, clock) };
    };
    const pay = (amount: number, to = 'acme') => ({
      tool: 'payments.transfer',
      arguments: { amount, to, memo: { invoice: 'INV-7', lines: [1, 2] } },
      audience: AUD,
      resource: 'acct:ops',
      destination: 'bank.example',
    });

    before(async () => {
      clock = new ManualClock(Date.now());
      env = await setup(backend, { clock });
      await setPolicy(env, POLICY);
      approver1 = await makeOperator(env, 'alice', ['approver']);
      approver2 = await makeOperator(env, 'bob', ['approver']);
      approver3 = await makeOperator(env, 'carol', ['approver']);
      auditor = await makeOperator(env, 'audrey', ['auditor']);
    });
    after(async () => env?.teardown());

    it('approval_required, the approver sees the whole action, approves; the first read returns a token bound to it; then it is used', async () => {
      const { task, agent } = await newTask();
      const action = pay(5000);
      const r = await agent.call('POST', '/v1/authorize', action);
      assert.equal(r.status, 200);
      assert.equal(r.body.decision, 'approval_required', JSON.stringify(r.body));
      assert.match(r.body.approval_id, /^apr_/);
      assert.ok(r.body.decision_id);
      assert.equal(r.body.expires_in, 15 * 60, 'pending approvals wait 15 minutes by default');
      assert.equal(r.body.action_token, undefined);
      const id = r.body.approval_id;

      const pending = await agent.call('GET', `/v1/approvals/${id}`);
      assert.equal(pending.status, 200);
      assert.equal(pending.body.status, 'pending');
      assert.equal(pending.body.action_token, undefined);

      // the approver's list has everything needed to judge
      const list = await approver1.call('GET', '/v1/approvals?status=pending');
      assert.equal(list.status, 200);
      const item = list.body.approvals.find((a: any) => a.id === id);
      assert.ok(item, 'the pending approval is listed');
      assert.equal(item.agent_id, env.agent.id);
      assert.equal(item.task.intent, 'pay the March invoices');
      assert.equal(item.task.owner, (await env.admin.call('GET', `/v1/tasks/${task.id}`)).body.owner);
      assert.deepEqual(item.delegation_chain, [env.agent.id]);
      assert.equal(item.tool, 'payments.transfer');
      assert.deepEqual(item.arguments, action.arguments);
      assert.equal(item.canonical_arguments, '{"amount":5000,"memo":{"invoice":"INV-7","lines":[1,2]},"to":"acme"}');
      assert.equal(item.args_digest, digestArguments(action.arguments));
      assert.equal(item.audience, AUD);
      assert.equal(item.resource, 'acct:ops');
      assert.equal(item.destination, 'bank.example');
      assert.deepEqual(item.policies, ['payments-need-approval']);
      assert.equal(item.quorum, 1);
      assert.equal(item.four_eyes, false);
      // auditors read, but do not approve
      assert.equal((await auditor.call('GET', `/v1/approvals/${id}`)).body.status, 'pending');
      const notApprover = await auditor.call('POST', `/v1/approvals/${id}/approve`, {});
      assert.equal(notApprover.status, 403);
      assert.equal(notApprover.body.error.code, 'insufficient_role');

      const ok = await approver1.call('POST', `/v1/approvals/${id}/approve`, { comment: 'invoice checked' });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.body.status, 'approved');
      assert.deepEqual(ok.body.reviews.map((x: any) => [x.approver, x.verdict, x.comment]), [[approver1.id, 'approve', 'invoice checked']]);

      // an operator's read never issues the token
      const opRead = await approver1.call('GET', `/v1/approvals/${id}`);
      assert.equal(opRead.body.status, 'approved');
      assert.equal(opRead.body.action_token, undefined);

      const first = await agent.call('GET', `/v1/approvals/${id}`);
      assert.equal(first.status, 200);
      assert.equal(first.body.decision, 'allow', JSON.stringify(first.body));
      assert.equal(first.body.status, 'approved', 'the read that returns the token answers approved; later reads see used');
      assert.equal(first.body.approval_id, id);
      assert.equal(first.body.args_digest, digestArguments(action.arguments));
      const claims = decodeJwt(first.body.action_token);
      assert.equal(claims.approval_id, id);
      assert.equal(claims.tool, 'payments.transfer');
      assert.equal(claims.aud, AUD);
      assert.equal(claims.txn, task.id);
      assert.equal(claims.decision_id, first.body.decision_id);
      assert.equal(claims.break_glass, undefined);

      // the tool server: offline verification against the arguments it received, then consume once
      const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
      const verify = createActionVerifier({ issuer: env.url, audience: AUD, jwks, clockToleranceSeconds: 3600 });
      await verify(first.body.action_token, { tool: 'payments.transfer', arguments: action.arguments });
      await assert.rejects(verify(first.body.action_token, { tool: 'payments.transfer', arguments: { ...action.arguments, amount: 500000 } }), /not the ones that were authorized/);
      const c1 = await env.admin.call('POST', '/v1/actions/consume', { action_token: first.body.action_token, audience: AUD }, { token: null });
      assert.equal(c1.status, 200, JSON.stringify(c1.body));

      // replay: a second read is `used` and carries nothing
      const second = await agent.call('GET', `/v1/approvals/${id}`);
      assert.equal(second.status, 200);
      assert.equal(second.body.status, 'used');
      assert.equal(second.body.action_token, undefined);
      assert.equal(second.body.used_decision_id, first.body.decision_id);

      // the same arguments again need a new approval
      const again = await agent.call('POST', '/v1/authorize', action);
      assert.equal(again.body.decision, 'approval_required');
      assert.notEqual(again.body.approval_id, id);

      // every step is audited
      const entries = await auditTypes(env, `task_id=${task.id}`);
      const types = entries.map((e) => e.type);
      for (const t of ['approval.requested', 'approval.reviewed', 'approval.used', 'action.consumed']) assert.ok(types.includes(t), `audit has ${t}: ${types}`);
      const reviewed = entries.find((e) => e.type === 'approval.reviewed')!;
      assert.equal(reviewed.data.approver, approver1.id);
      assert.equal(reviewed.actor, `operator:${approver1.id}`);
      const allowEntry = entries.find((e) => e.type === 'decision' && e.data.decision === 'allow')!;
      assert.equal(allowEntry.data.approval_id, id);
      const requiredEntry = entries.find((e) => e.type === 'decision' && e.data.decision === 'approval_required')!;
      assert.equal(requiredEntry.data.approval_id, id);
      assert.deepEqual(requiredEntry.data.policies, ['payments-need-approval']);
      const detail = await env.admin.call('GET', `/v1/tasks/${task.id}`);
      assert.equal(detail.body.actions_used, 1, 'the budget is taken when the token is issued, not when approval is asked');
    });

    it('nothing the agent does turns approval_required into an allow: asking again gives the same open approval; swapped arguments need their own', async () => {
      const { agent } = await newTask();
      const a = await agent.call('POST', '/v1/authorize', pay(700));
      const b = await agent.call('POST', '/v1/authorize', pay(700));
      assert.equal(b.body.decision, 'approval_required');
      assert.equal(b.body.approval_id, a.body.approval_id, 'the open approval of the very same action is reused');
      assert.notEqual(b.body.decision_id, a.body.decision_id);
      assert.ok((await approver1.call('POST', `/v1/approvals/${a.body.approval_id}/approve`)).status === 200);
      // after approval, different arguments (or audience, destination) are a different action
      const swapped = await agent.call('POST', '/v1/authorize', pay(900_000));
      assert.equal(swapped.body.decision, 'approval_required');
      assert.notEqual(swapped.body.approval_id, a.body.approval_id);
      const otherTo = await agent.call('POST', '/v1/authorize', pay(700, 'mallory'));
      assert.notEqual(otherTo.body.approval_id, a.body.approval_id);
      const otherAudience = await agent.call('POST', '/v1/authorize', { ...pay(700), audience: 'https://evil.example' });
      assert.equal(otherAudience.body.decision, 'approval_required');
      assert.notEqual(otherAudience.body.approval_id, a.body.approval_id);
      // the approved one yields a token for the approved arguments only
      const read = await agent.call('GET', `/v1/approvals/${a.body.approval_id}`);
      assert.equal(read.body.decision, 'allow');
      assert.equal(decodeJwt(read.body.action_token).args_digest, digestArguments(pay(700).arguments));
      // a forbid is never lifted by an approval
      const huge = await agent.call('POST', '/v1/authorize', pay(2_000_000));
      assert.equal(huge.body.decision, 'deny');
      assert.equal(huge.body.reasons[0].code, 'policy_forbids');
      assert.equal(huge.body.approval_id, undefined);
      // an approval of another task's agent is invisible
      const other = await newTask();
      const foreign = await other.agent.call('GET', `/v1/approvals/${a.body.approval_id}`);
      assert.equal(foreign.status, 404);
      assert.equal(foreign.body.error.code, 'approval_not_found');
    });

    it('expiry: pending after 15 minutes, approved-but-unused after 5; neither issues a token, both are audited', async () => {
      const { task, agent } = await newTask({ ttl_seconds: 3600 });
      const p = await agent.call('POST', '/v1/authorize', pay(111));
      clock.advance(15 * MIN);
      const late = await approver1.call('POST', `/v1/approvals/${p.body.approval_id}/approve`);
      assert.equal(late.status, 409);
      assert.equal(late.body.error.code, 'approval_not_pending');
      const agent2 = await agentFor(env, task.id, clock); // the first task token has expired by now
      const r1 = await agent2.call('GET', `/v1/approvals/${p.body.approval_id}`);
      assert.equal(r1.body.status, 'expired');
      assert.equal(r1.body.action_token, undefined);

      const q = await agent2.call('POST', '/v1/authorize', pay(222));
      assert.equal((await approver1.call('POST', `/v1/approvals/${q.body.approval_id}/approve`)).body.status, 'approved');
      clock.advance(5 * MIN - 1000);
      const still = await approver1.call('GET', `/v1/approvals/${q.body.approval_id}`);
      assert.equal(still.body.status, 'approved', 'still usable one second before');
      clock.advance(1000);
      const r2 = await agent2.call('GET', `/v1/approvals/${q.body.approval_id}`);
      assert.equal(r2.body.status, 'expired');
      assert.equal(r2.body.action_token, undefined);
      const expired = (await auditTypes(env, `task_id=${task.id}&type=approval.expired`)).map((e) => e.data.approval_id);
      assert.deepEqual(expired.sort(), [p.body.approval_id, q.body.approval_id].sort());
      const list = await approver1.call('GET', `/v1/approvals?status=expired&task_id=${task.id}`);
      assert.equal(list.body.approvals.length, 2);
    });

    it('self-approval is refused: the agent (task token), the owner under four eyes, an agent of the delegation chain', async () => {
      const { agent } = await newTask();
      const r = await agent.call('POST', '/v1/authorize', pay(333));
      const bySelf = await agent.call('POST', `/v1/approvals/${r.body.approval_id}/approve`, {});
      assert.equal(bySelf.status, 403);
      assert.equal(bySelf.body.error.code, 'self_approval');
      const noToken = await agent.call('POST', `/v1/approvals/${r.body.approval_id}/approve`, {}, { token: null });
      assert.equal(noToken.status, 401);

      // four eyes: the owner (the admin who created the task) may not approve; another approver may
      const hr = await agent.call('POST', '/v1/authorize', { tool: 'hr.raise_salary', arguments: { employee: 'e-1', percent: 10 }, audience: 'https://tools.example/hr', resource: 'acct:hr', destination: 'bank.example' });
      assert.equal(hr.body.decision, 'approval_required');
      const byOwner = await env.admin.call('POST', `/v1/approvals/${hr.body.approval_id}/approve`, {});
      assert.equal(byOwner.status, 403);
      assert.equal(byOwner.body.error.code, 'self_approval');
      assert.equal((await approver1.call('GET', `/v1/approvals/${hr.body.approval_id}`)).body.four_eyes, true);
      // without four eyes the owner (an admin) may approve
      const byOwnerOk = await env.admin.call('POST', `/v1/approvals/${r.body.approval_id}/approve`, {});
      assert.equal(byOwnerOk.status, 200);
      const ok = await approver1.call('POST', `/v1/approvals/${hr.body.approval_id}/approve`, {});
      assert.equal(ok.status, 200);
      assert.equal(ok.body.status, 'approved');

      // delegation: an approver that is an agent of the chain (named as it) cannot approve the child's action
      const parentAgentId = env.agent.id;
      const childKeys = await registerAgent(env, `spiffe://acme.test/agent/payer-${backend}`);
      const { task: parent, agent: parentApi } = await newTask();
      const d = await parentApi.call('POST', `/v1/tasks/${parent.id}/delegations`, {
        agent_id: childKeys.id,
        intent: 'pay one invoice',
        scope: { tools: ['payments.*'], resources: ['acct:*'], destinations: ['bank.example'] },
        ttl_seconds: 300,
        max_actions: 2,
      });
      assert.equal(d.status, 201, JSON.stringify(d.body));
      const child = await agentFor(env, d.body.id, clock, childKeys);
      const cr = await child.call('POST', '/v1/authorize', pay(444));
      assert.equal(cr.body.decision, 'approval_required');
      const view = await approver1.call('GET', `/v1/approvals/${cr.body.approval_id}`);
      assert.deepEqual(view.body.delegation_chain, [parentAgentId, childKeys.id]);
      const chainOp = await makeOperator(env, parentAgentId, ['approver']);
      const byChain = await chainOp.call('POST', `/v1/approvals/${cr.body.approval_id}/approve`, {});
      assert.equal(byChain.status, 403);
      assert.equal(byChain.body.error.code, 'self_approval');
      const byParentAgent = await parentApi.call('POST', `/v1/approvals/${cr.body.approval_id}/approve`, {});
      assert.equal(byParentAgent.status, 403);
      assert.equal(byParentAgent.body.error.code, 'self_approval');
      assert.equal((await approver2.call('POST', `/v1/approvals/${cr.body.approval_id}/approve`, {})).status, 200);
      const token = await child.call('GET', `/v1/approvals/${cr.body.approval_id}`);
      assert.equal(token.body.decision, 'allow');
      assert.ok(decodeJwt(token.body.action_token).act, 'the delegated action token carries its chain');
    });

    it('quorum: one approver short stays pending with no token; the same approver twice does not count; one deny settles it', async () => {
      const { agent } = await newTask();
      const t = { tool: 'treasury.move', arguments: { amount: 1_000_000, from: 'a', to: 'b' }, audience: 'https://tools.example/treasury', resource: 'acct:treasury', destination: 'bank.example' };
      const r = await agent.call('POST', '/v1/authorize', t);
      assert.equal(r.body.decision, 'approval_required');
      const id = r.body.approval_id;
      assert.equal((await approver1.call('GET', `/v1/approvals/${id}`)).body.quorum, 2);
      const one = await approver1.call('POST', `/v1/approvals/${id}/approve`, { comment: 'ok by me' });
      assert.equal(one.body.status, 'pending');
      assert.equal(one.body.approvals, 1);
      const short = await agent.call('GET', `/v1/approvals/${id}`);
      assert.equal(short.body.status, 'pending');
      assert.equal(short.body.action_token, undefined);
      const twice = await approver1.call('POST', `/v1/approvals/${id}/approve`, {});
      assert.equal(twice.status, 409);
      assert.equal(twice.body.error.code, 'already_reviewed');
      const two = await approver2.call('POST', `/v1/approvals/${id}/approve`, {});
      assert.equal(two.body.status, 'approved');
      const read = await agent.call('GET', `/v1/approvals/${id}`);
      assert.equal(read.body.decision, 'allow');
      assert.equal(decodeJwt(read.body.action_token).approval_id, id);

      const r2 = await agent.call('POST', '/v1/authorize', { ...t, arguments: { ...t.arguments, amount: 2 } });
      assert.equal((await approver1.call('POST', `/v1/approvals/${r2.body.approval_id}/approve`, {})).body.status, 'pending');
      const no = await approver2.call('POST', `/v1/approvals/${r2.body.approval_id}/deny`, { comment: 'not this quarter' });
      assert.equal(no.body.status, 'denied');
      const late = await approver3.call('POST', `/v1/approvals/${r2.body.approval_id}/approve`, {});
      assert.equal(late.status, 409);
      assert.equal(late.body.error.code, 'approval_not_pending');
      const seen = await agent.call('GET', `/v1/approvals/${r2.body.approval_id}`);
      assert.equal(seen.body.status, 'denied');
      assert.equal(seen.body.action_token, undefined);
    });

    it('approve racing deny settles exactly once, also across two instances', async () => {
      const other = await secondInstance(env, clock);
      try {
        const { agent } = await newTask({ max_actions: 20 });
        for (let round = 0; round < 6; round++) {
          const r = await agent.call('POST', '/v1/authorize', pay(1000 + round));
          const id = r.body.approval_id;
          const viaOther = other.api(round % 2 ? approver2.token : approver1.token);
          const [a, d] = await Promise.all([
            (round % 2 ? approver1 : viaOther).call('POST', `/v1/approvals/${id}/approve`, {}),
            (round % 2 ? viaOther : approver2).call('POST', `/v1/approvals/${id}/deny`, {}),
          ]);
          const statuses = [a.status, d.status].sort();
          assert.deepEqual(statuses, [200, 409], `round ${round}: exactly one review settles it (${JSON.stringify([a.body, d.body])})`);
          const loser = a.status === 409 ? a : d;
          assert.equal(loser.body.error.code, 'approval_not_pending');
          const final = (await approver3.call('GET', `/v1/approvals/${id}`)).body;
          assert.equal(final.status, a.status === 200 ? 'approved' : 'denied');
          assert.equal(final.reviews.length, 1);
        }
      } finally {
        await other.stop();
      }
    });

    it('two reads of one approved approval (two instances at once): exactly one token', async () => {
      const other = await secondInstance(env, clock);
      try {
        const { task, agent } = await newTask({ max_actions: 20 });
        for (let round = 0; round < 4; round++) {
          const r = await agent.call('POST', '/v1/authorize', pay(50 + round));
          await approver1.call('POST', `/v1/approvals/${r.body.approval_id}/approve`, {});
          const token = agent.token!;
          const reads = await Promise.all([
            agent.call('GET', `/v1/approvals/${r.body.approval_id}`),
            other.api(token).call('GET', `/v1/approvals/${r.body.approval_id}`),
            agent.call('GET', `/v1/approvals/${r.body.approval_id}`),
          ]);
          const tokens = reads.filter((x) => x.body.action_token);
          assert.equal(tokens.length, 1, JSON.stringify(reads.map((x) => x.body)));
          assert.ok(reads.every((x) => x.status === 200));
          assert.deepEqual(reads.map((x) => x.body.status).sort(), ['approved', 'used', 'used'], 'the winner sees approved (with its token), the others used');
        }
        const detail = await env.admin.call('GET', `/v1/tasks/${task.id}`);
        assert.equal(detail.body.actions_used, 4, 'one budget unit per approval');
      } finally {
        await other.stop();
      }
    });

    it('long-poll: ?wait=N returns as soon as the approval is settled (and at most N seconds later)', async () => {
      const { agent } = await newTask();
      const r = await agent.call('POST', '/v1/authorize', pay(77));
      const t0 = Date.now();
      const waiting = agent.call('GET', `/v1/approvals/${r.body.approval_id}?wait=10`);
      await new Promise((ok) => setTimeout(ok, 300));
      await approver1.call('POST', `/v1/approvals/${r.body.approval_id}/approve`, {});
      const got = await waiting;
      assert.equal(got.body.decision, 'allow');
      assert.ok(Date.now() - t0 < 5000, 'returned on approval, not at the end of the wait');
      const r2 = await agent.call('POST', '/v1/authorize', pay(78));
      const t1 = Date.now();
      const timedOut = await agent.call('GET', `/v1/approvals/${r2.body.approval_id}?wait=1`);
      assert.equal(timedOut.body.status, 'pending');
      assert.ok(Date.now() - t1 >= 900);
      const tooLong = await agent.call('GET', `/v1/approvals/${r2.body.approval_id}?wait=31`);
      assert.equal(tooLong.status, 400);
    });

    it('an approval of a task that has ended takes no review', async () => {
      const { task, agent } = await newTask();
      const r = await agent.call('POST', '/v1/authorize', pay(99));
      assert.equal((await env.admin.call('POST', `/v1/tasks/${task.id}/revoke`, { reason: 'done' })).status, 200);
      const late = await approver1.call('POST', `/v1/approvals/${r.body.approval_id}/approve`, {});
      assert.equal(late.status, 409);
      assert.equal(late.body.error.code, 'task_not_active');
      const read = await agent.call('GET', `/v1/approvals/${r.body.approval_id}`);
      assert.equal(read.status, 401, 'the agent of an ended task reads nothing');
    });

    it('the audit chain verifies after all of it', async () => {
      const v = await env.admin.call('GET', '/v1/audit/verify');
      assert.equal(v.body.ok, true, JSON.stringify(v.body));
    });
  });
}
