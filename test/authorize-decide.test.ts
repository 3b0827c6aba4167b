import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { bounds, decide } from '../src/authorize/decide.js';
import { decideLifting } from '../src/authorize/decide-lifting.js';
import type { Store } from '../src/store/store.js';
import type { Evaluator } from '../src/authorize/escalation.js';
import type { Facts } from '../src/authorize/facts.js';
import type { AgentRecord, TaskRecord } from '../src/core/types.js';
import { PolicyEngine } from '../src/policy/engine.js';
import type { ActionInput, RequestFacts } from '../src/policy/request.js';

// The decide step of the one authorize pipeline (issue 11 item 4) is pure: it sees the
// facts gathered before it and an evaluator, nothing else (no store, no clock).

const POLICY = `
@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };

@id("treasury-needs-two")
@approvals("2")
@four_eyes("true")
permit (principal, action == Writ::Action::"call", resource == Writ::Tool::"payments.treasury_move")
when { context.approval.granted && context.approval.approvers >= 2 };

@id("prod-only-under-break-glass")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"prod")
when { context.break_glass };

@id("never-drop-the-database")
forbid (principal, action, resource == Writ::Tool::"prod.drop_database");
`;

const agent: AgentRecord = { id: 'spiffe://t/a', name: 'a', jwks: { keys: [] }, labels: [], status: 'active', createdAt: 0, createdBy: 'op' };
const task: TaskRecord = {
  id: 'task_1', agentId: agent.id, owner: 'owner', intent: 'x', scope: { tools: ['payments.*', 'prod.*'], resources: [], destinations: [] }, status: 'active',
  createdAt: 0, expiresAt: 10_000, endedAt: null, maxActions: 5, actionsUsed: 0, actionsReserved: 0, parentId: null, rootId: 'task_1', depth: 0,
};

const engine = new PolicyEngine();
after(() => engine.close());
const set = engine.prepare(POLICY);

function factsFor(tool: string, extra: Partial<Facts> = {}): Facts {
  const action: ActionInput = { tool, arguments: {}, audience: 'https://tools.example' };
  const request: RequestFacts = { agent, task, chain: [], action, argsDigest: 'd', now: 1000, withArgs: set.readsArgs, toolLabels: [] };
  return { request, problem: null, breakGlass: null, ...extra };
}

/** An evaluator that must not be reached. */
const untouchable: Evaluator = {
  evaluate: () => assert.fail('evaluated'),
  evaluateAsync: () => assert.fail('evaluated'),
};

describe('authorize: the pure decide step', () => {
  it('escalates a deny no forbid caused to an approval request, with the rule of the policies that allow it', async () => {
    assert.deepEqual(await decide(engine, set, factsFor('payments.pay')), { decision: 'approval_required', policies: ['payments-need-approval'], quorum: 1, fourEyes: false });
    const two = await decide(engine, set, factsFor('payments.treasury_move'));
    assert.equal(two.decision, 'approval_required');
    assert.deepEqual(two.decision === 'approval_required' && [two.quorum, two.fourEyes], [2, true]);
  });

  it('allows under an active break-glass only when it is a fact, and never lifts a forbid', async () => {
    assert.equal((await decide(engine, set, factsFor('prod.deploy'))).decision, 'deny');
    const v = await decide(engine, set, factsFor('prod.deploy', { breakGlass: { id: 'bg_1' } }));
    assert.equal(v.decision, 'allow');
    assert.equal(v.decision === 'allow' && v.breakGlassId, 'bg_1');
    assert.equal(v.decision === 'allow' && v.reasons?.[0]?.code, 'break_glass');
    const forbidden = await decide(engine, set, factsFor('prod.drop_database', { breakGlass: { id: 'bg_1' } }));
    assert.deepEqual(forbidden.decision === 'deny' && forbidden.policies, ['never-drop-the-database']);
  });

  it('denies on an argument problem without evaluating', async () => {
    const problem = { code: 'arguments_unrepresentable', message: 'x' };
    assert.deepEqual(await decide(untouchable, set, factsFor('payments.pay', { problem })), { decision: 'deny', reasons: [problem], policies: [] });
  });

  it('with the approval as one more fact: the rule in force counts the approvers, four eyes leave the owners out', async () => {
    const approval = (approvers: string[], owners: string[]) => factsFor('payments.treasury_move', { approval: { id: 'apr_1', recordedFourEyes: false, approvers, owners } });
    const short = await decide(engine, set, approval(['op1', 'owner'], ['owner']));
    assert.equal(short.decision, 'deny');
    assert.equal(short.decision === 'deny' && short.reasons[0]?.code, 'approval_insufficient');
    const ok = await decide(engine, set, approval(['op1', 'owner', 'op2'], ['owner']));
    assert.equal(ok.decision, 'allow');
    assert.deepEqual(ok.decision === 'allow' && ok.approvers, ['op1', 'op2']);
    assert.equal(ok.decision === 'allow' && ok.reasons?.[0]?.code, 'approved');
    // one approver suffices where the policy asks for one (no four eyes: the owner counts)
    const one = await decide(engine, set, factsFor('payments.pay', { approval: { id: 'apr_2', recordedFourEyes: false, approvers: ['owner'], owners: ['owner'] } }));
    assert.equal(one.decision, 'allow');
    // an approved action a forbid denies is still denied
    const forbidden = await decide(engine, set, factsFor('prod.drop_database', { approval: { id: 'apr_3', recordedFourEyes: false, approvers: ['op1'], owners: [] } }));
    assert.equal(forbidden.decision, 'deny');
  });

  it('checks the hard bounds before any fact: task state, scope, budget', () => {
    const action = (tool: string): ActionInput => ({ tool, arguments: {}, audience: 'a' });
    const ctx = { task, agent };
    assert.equal(bounds(ctx, action('payments.pay'), 1000, { active: true, budget: true }), null);
    assert.equal(bounds(ctx, action('mail.send'), 1000, { active: true, budget: true })?.decision, 'deny');
    const spent = { task: { ...task, actionsUsed: 4, actionsReserved: 1 }, agent };
    const b = bounds(spent, action('payments.pay'), 1000, { active: false, budget: true });
    assert.equal(b?.decision === 'deny' && b.reasons[0]?.code, 'budget_exhausted');
    assert.equal(bounds(spent, action('payments.pay'), 1000, { active: true, budget: false }), null, 'the approval read leaves the budget to the commit');
    const ended = bounds(ctx, action('payments.pay'), 10_000, { active: true, budget: false });
    assert.equal(ended?.decision === 'deny' && ended.reasons[0]?.code, 'task_not_active');
    assert.equal(bounds(ctx, action('payments.pay'), 10_000, { active: false, budget: true }), null);
  });
});

describe('authorize: the break-glass lookup after the decide step (decideLifting)', () => {
  const storeWith = (active: { id: string; tools: string[] }[]) => {
    const calls: string[] = [];
    const store = {
      findActiveBreakGlass: async (agentId: string, taskId: string) => {
        calls.push(`${agentId} ${taskId}`);
        return active.map((a) => ({ id: a.id, scope: { tools: a.tools } }));
      },
    } as unknown as Store;
    return { store, calls };
  };

  it('an allow, and a set that never mentions break-glass, read nothing', async () => {
    const { store, calls } = storeWith([{ id: 'bg_1', tools: ['prod.*'] }]);
    const plain = engine.prepare('@id("all") permit (principal, action, resource);');
    assert.equal((await decideLifting(engine, plain, factsFor('prod.restart'), store)).decision, 'allow');
    const noMention = engine.prepare('@id("none") permit (principal, action, resource) when { false };');
    assert.equal((await decideLifting(engine, noMention, factsFor('prod.restart'), store)).decision, 'deny');
    assert.deepEqual(calls, []);
  });

  it('a refusal is looked at again: lifted by a break-glass that covers the tool; an approval request it cannot lift stands; never past a forbid', async () => {
    const { store, calls } = storeWith([{ id: 'bg_1', tools: ['prod.restart', 'payments.*'] }]);
    const lifted = await decideLifting(engine, set, factsFor('prod.restart'), store);
    assert.equal(lifted.decision, 'allow');
    assert.equal(lifted.decision === 'allow' && lifted.breakGlassId, 'bg_1');
    // a break-glass that covers a tool no policy allows under it lifts nothing: the approval request stands
    const pay = await decideLifting(engine, set, factsFor('payments.pay'), store);
    assert.equal(pay.decision, 'approval_required');
    // the tool outside the break-glass scope stays refused; the forbid stays a forbid
    assert.equal((await decideLifting(engine, set, factsFor('prod.scale'), store)).decision, 'deny');
    const drop = await decideLifting(engine, set, factsFor('prod.drop_database'), store);
    assert.equal(drop.decision, 'deny');
    assert.equal(calls.length, 4);
  });

  it('a store fault on the lookup is thrown, never an allow', async () => {
    const store = { findActiveBreakGlass: async () => { throw new Error('store down'); } } as unknown as Store;
    await assert.rejects(decideLifting(engine, set, factsFor('prod.restart'), store), /store down/);
  });
});
