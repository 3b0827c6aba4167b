import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { ManualClock } from '../../src/core/clock.js';
import type { ApprovalRecord, BreakGlassRecord } from '../../src/core/escalation-types.js';
import { newId } from '../../src/core/ids.js';
import type { AgentRecord, AuditEntry, AuditInput, DecisionRecord, TaskRecord } from '../../src/core/types.js';
import type { DecisionWrite, Store } from '../../src/store/store.js';

/**
 * The part of the store contract (test/store-contract/contract.ts) for approvals, break-glass
 * and presence leases. Registered inside `runStoreContract`; `get` answers the
 * fixture once `before` has opened it.
 */

const MIN = 60_000;
const HOUR = 60 * MIN;

interface Ctx {
  store: Store;
  clock: ManualClock;
}

function audit(type: string, over: Partial<AuditInput> = {}): AuditInput {
  return { type, actor: 'system', data: {}, ...over };
}

async function audited<T>(store: Store, fn: () => Promise<T>): Promise<{ result: T; entries: AuditEntry[] }> {
  const before = (await store.auditHead())?.seq ?? 0;
  const result = await fn();
  return { result, entries: await store.listAudit({ after: before, limit: 10_000 }) };
}

async function agentAndTask(store: Store, clock: ManualClock, over: Partial<TaskRecord> = {}): Promise<{ agent: AgentRecord; task: TaskRecord }> {
  const agent: AgentRecord = {
    id: newId('agt'),
    name: 'escalation agent',
    jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'x', kid: 'k1' }] },
    labels: [],
    status: 'active',
    createdAt: clock.now(),
    createdBy: 'op_1',
  };
  await store.createAgent(agent, audit('agent.created', { agentId: agent.id }));
  const id = newId('tsk');
  const task: TaskRecord = {
    id,
    agentId: agent.id,
    owner: 'op_owner',
    intent: 'pay the invoice',
    scope: { tools: ['payments.*'], resources: [], destinations: [] },
    status: 'active',
    createdAt: clock.now(),
    expiresAt: clock.now() + 24 * HOUR,
    endedAt: null,
    maxActions: 10,
    actionsUsed: 0,
    actionsReserved: 0,
    parentId: null,
    rootId: id,
    depth: 0,
    ...over,
  };
  await store.createTask(task, audit('task.created', { taskId: id, agentId: agent.id }));
  return { agent, task };
}

function decision(clock: ManualClock, task: TaskRecord, over: Partial<DecisionRecord> = {}): DecisionRecord {
  return {
    id: newId('dec'),
    taskId: task.id,
    agentId: task.agentId,
    tool: 'payments.transfer',
    audience: 'https://tools.example/payments',
    resource: null,
    destination: null,
    argsDigest: 'args-digest',
    decision: 'approval_required',
    reasons: [{ code: 'approval_required', message: 'needs a yes' }],
    policies: ['payments-need-approval'],
    policyVersion: 'v1',
    tokenJti: null,
    tokenExpiresAt: null,
    createdAt: clock.now(),
    outcome: null,
    ...over,
  };
}

function approvalFor(clock: ManualClock, task: TaskRecord, decisionId: string, over: Partial<ApprovalRecord> = {}): ApprovalRecord {
  return {
    id: newId('apr'),
    taskId: task.id,
    agentId: task.agentId,
    decisionId,
    actionDigest: `digest-${newId('d')}`,
    tool: 'payments.transfer',
    arguments: '{"amount":5000,"to":"acme"}',
    argsDigest: 'args-digest',
    audience: 'https://tools.example/payments',
    resource: null,
    destination: 'bank.example',
    policies: ['payments-need-approval'],
    policyVersion: 'v1',
    quorum: 1,
    fourEyes: false,
    status: 'pending',
    createdAt: clock.now(),
    expiresAt: clock.now() + 15 * MIN,
    settledAt: null,
    usedAt: null,
    usedDecisionId: null,
    reviews: [],
    ...over,
  };
}

async function newApproval(ctx: Ctx, task: TaskRecord, over: Partial<ApprovalRecord> = {}): Promise<ApprovalRecord> {
  const d = decision(ctx.clock, task);
  const a = approvalFor(ctx.clock, task, d.id, over);
  await ctx.store.createApproval(a, d, [
    audit('decision', { taskId: task.id, agentId: task.agentId, decisionId: d.id }),
    audit('approval.requested', { taskId: task.id, agentId: task.agentId, decisionId: d.id, data: { approval_id: a.id } }),
  ]);
  return a;
}

function review(ctx: Ctx, id: string, approver: string, verdict: 'approve' | 'deny', ttl = 5 * MIN) {
  return ctx.store.reviewApproval(id, { approver, verdict, comment: `${verdict} by ${approver}`, at: ctx.clock.now() }, { approvedTtlMs: ttl }, (after) => [
    audit('approval.reviewed', { taskId: after.taskId, data: { approval_id: id, approver, verdict, status: after.status } }),
  ]);
}

/** An allow that uses `approvalId`, with its deny fallback, as the approval read path writes it. */
function useWrite(ctx: Ctx, task: TaskRecord, approvalId: string): DecisionWrite & { calls: string[] } {
  const allow = decision(ctx.clock, task, { decision: 'allow', reasons: [], tokenJti: newId('jti'), tokenExpiresAt: ctx.clock.now() + 30_000 });
  const calls: string[] = [];
  return {
    decision: allow,
    audit: audit('decision', { taskId: task.id, decisionId: allow.id, data: { approval_id: approvalId } }),
    guard: { taskId: task.id },
    approval: { id: approvalId, audit: audit('approval.used', { taskId: task.id, decisionId: allow.id, data: { approval_id: approvalId } }) },
    calls,
    fallback: (reason) => {
      calls.push(reason);
      const d = decision(ctx.clock, task, { decision: 'deny', reasons: [{ code: reason, message: reason }] });
      return { decision: d, audit: audit('decision', { taskId: task.id, decisionId: d.id, data: { reason } }) };
    },
  };
}

function breakGlass(ctx: Ctx, agentId: string, over: Partial<BreakGlassRecord> = {}): BreakGlassRecord {
  const now = ctx.clock.now();
  return {
    id: newId('bg'),
    agentId,
    taskId: null,
    justification: 'production incident INC-1234: payments stuck',
    scope: { tools: ['payments.*'] },
    durationMs: 30 * MIN,
    status: 'active',
    requestedBy: 'op_admin1',
    confirmedBy: null,
    endedBy: null,
    createdAt: now,
    confirmDeadline: null,
    startsAt: now,
    endsAt: now + 30 * MIN,
    endedAt: null,
    reviewedBy: null,
    reviewedAt: null,
    reviewNotes: null,
    ...over,
  };
}

const bgAudit = (type: string) => (r: BreakGlassRecord) => audit(type, { agentId: r.agentId, taskId: r.taskId, data: { break_glass_id: r.id } });

export function escalationContract(get: () => Ctx): void {
  it('approvals: open-approval caps per task and per agent are checked with the write; a refusal writes nothing', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { agent, task } = await agentAndTask(store, clock);
    const limits = () => ({ maxOpenPerTask: 2, maxOpenPerAgent: 5, now: clock.now() });
    const create = (t: TaskRecord, over: Partial<ApprovalRecord> = {}) => {
      const d = decision(clock, t);
      const a = approvalFor(clock, t, d.id, over);
      return { a, d, run: () => store.createApproval(a, d, [audit('decision', { decisionId: d.id }), audit('approval.requested', { decisionId: d.id })], limits()) };
    };
    assert.deepEqual(await create(task).run(), { ok: true });
    assert.deepEqual(await create(task).run(), { ok: true });
    const third = create(task);
    const { result, entries } = await audited(store, third.run);
    assert.deepEqual(result, { ok: false, limit: 'task', open: 2 });
    assert.deepEqual(entries, [], 'no audit entry');
    assert.equal(await store.getApproval(third.a.id), null, 'no approval');
    assert.equal(await store.getDecision(third.d.id), null, 'no decision');
    // without limits (the argument left out) there is no cap
    const free = create(task);
    assert.deepEqual(await store.createApproval(free.a, free.d, [audit('decision')]), { ok: true });
    // only open ones count: an expired one (by time, not yet swept) and a denied one free their place
    const { task: t2 } = await agentAndTask(store, clock, { agentId: agent.id, id: newId('tsk') });
    assert.deepEqual(await create(t2, { expiresAt: clock.now() + 1000 }).run(), { ok: true });
    const denied = create(t2);
    assert.deepEqual(await denied.run(), { ok: true });
    assert.deepEqual(await create(t2).run(), { ok: false, limit: 'task', open: 2 });
    clock.advance(1000);
    await review(ctx, denied.a.id, 'op_rev', 'deny');
    // t2 has none open again; the agent has 3 (task's 2 capped + 1 uncapped)
    assert.deepEqual(await create(t2).run(), { ok: true });
    assert.deepEqual(await create(t2).run(), { ok: true });
    // five open over its tasks: the agent cap refuses on a third task too
    const { task: t4 } = await agentAndTask(store, clock, { agentId: agent.id, id: newId('tsk') });
    assert.deepEqual(await create(t4).run(), { ok: false, limit: 'agent', open: 5 });
    // another agent is not affected
    const { task: t3 } = await agentAndTask(store, clock);
    assert.deepEqual(await create(t3).run(), { ok: true });
  });

  it('approvals: concurrent creates never exceed a cap (the count and the write are atomic)', async () => {
    const { store, clock } = get();
    const { agent, task } = await agentAndTask(store, clock);
    const { task: other } = await agentAndTask(store, clock, { agentId: agent.id, id: newId('tsk') });
    const limits = { maxOpenPerTask: 5, maxOpenPerAgent: 7, now: clock.now() };
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => {
        const t = i % 2 ? task : other;
        const d = decision(clock, t);
        return store.createApproval(approvalFor(clock, t, d.id), d, [audit('decision', { decisionId: d.id })], limits);
      }),
    );
    const ok = results.filter((r) => r.ok).length;
    assert.equal(ok, 7, `${ok} created under an agent cap of 7`);
    const perTask = await Promise.all([task, other].map(async (t) => (await store.listApprovals({ taskId: t.id, limit: 1000 })).length));
    assert.ok(perTask.every((n) => n <= 5), `per task ${perTask}`);
    assert.equal(perTask[0]! + perTask[1]!, 7);
  });

  it('approvals: create writes the decision, the approval and both audit entries; get, findOpen, list', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { task } = await agentAndTask(store, clock);
    const d = decision(clock, task);
    const a = approvalFor(clock, task, d.id, { quorum: 2, fourEyes: true, resource: 'acct:1' });
    const { entries } = await audited(store, () =>
      store.createApproval(a, d, [audit('decision', { decisionId: d.id }), audit('approval.requested', { decisionId: d.id, data: { approval_id: a.id } })]),
    );
    assert.deepEqual(entries.map((e) => e.type), ['decision', 'approval.requested']);
    assert.deepEqual(await store.getApproval(a.id), a);
    assert.deepEqual(await store.getDecision(d.id), d);
    assert.equal(await store.getApproval('apr_missing'), null);
    assert.deepEqual(await store.findOpenApproval(task.id, a.actionDigest, clock.now()), a);
    assert.equal(await store.findOpenApproval(task.id, 'other-digest', clock.now()), null);
    assert.equal(await store.findOpenApproval(task.id, a.actionDigest, a.expiresAt), null, 'an expired one is not open');
    const b = await newApproval(ctx, task);
    const listed = await store.listApprovals({ taskId: task.id });
    assert.deepEqual(listed.map((x) => x.id).sort(), [a.id, b.id].sort());
    assert.ok((await store.listApprovals({ status: 'pending', limit: 1000 })).some((x) => x.id === b.id));
    assert.equal((await store.listApprovals({ status: 'used', taskId: task.id })).length, 0);
  });

  it('approvals: quorum of distinct approvers, one review per approver, settled ones take no more reviews', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { task } = await agentAndTask(store, clock);
    const a = await newApproval(ctx, task, { quorum: 2 });
    const r1 = await review(ctx, a.id, 'op_a', 'approve');
    assert.ok(r1.ok);
    assert.equal(r1.approval.status, 'pending', 'one approver short of the quorum');
    assert.equal(r1.approval.reviews.length, 1);
    const { result: again, entries: none } = await audited(store, () => review(ctx, a.id, 'op_a', 'approve'));
    assert.deepEqual(again.ok ? 'ok' : again.reason, 'already_reviewed');
    assert.deepEqual(none, [], 'a refused review writes nothing');
    clock.advance(1000);
    const { result: r2, entries } = await audited(store, () => review(ctx, a.id, 'op_b', 'approve', 5 * MIN));
    assert.ok(r2.ok);
    assert.equal(r2.approval.status, 'approved');
    assert.equal(r2.approval.settledAt, clock.now());
    assert.equal(r2.approval.expiresAt, clock.now() + 5 * MIN);
    assert.deepEqual(entries.map((e) => e.type), ['approval.reviewed']);
    const stored = (await store.getApproval(a.id))!;
    assert.deepEqual(stored, r2.approval);
    assert.deepEqual(stored.reviews.map((r) => [r.approver, r.verdict, r.comment]), [['op_a', 'approve', 'approve by op_a'], ['op_b', 'approve', 'approve by op_b']]);
    const late = await review(ctx, a.id, 'op_c', 'deny');
    assert.equal(late.ok ? 'ok' : late.reason, 'not_pending');
    assert.equal((await store.getApproval(a.id))!.status, 'approved');
    assert.equal((await review(ctx, 'apr_missing', 'op_a', 'approve')).ok ? 'ok' : 'refused', 'refused');
  });

  it('approvals: a review under the rule of the policy in force records it (quorum, four eyes) and counts only who it counts', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { task } = await agentAndTask(store, clock);
    const a = await newApproval(ctx, task, { quorum: 1, fourEyes: false });
    const ruled = (approver: string) => {
      clock.advance(1000);
      return store.reviewApproval(
        a.id,
        { approver, verdict: 'approve', comment: null, at: clock.now() },
        { approvedTtlMs: 5 * MIN, rule: { quorum: 2, fourEyes: true, uncounted: ['op_owner'] } },
        (after) => [audit('approval.reviewed', { taskId: after.taskId, data: { approval_id: a.id, approver, status: after.status } })],
      );
    };
    // the owner's yes does not count under four eyes; one other is short of the new quorum of 2
    const r0 = await ruled('op_owner');
    assert.ok(r0.ok);
    assert.equal(r0.approval.status, 'pending');
    assert.equal(r0.approval.quorum, 2);
    assert.equal(r0.approval.fourEyes, true);
    const r1 = await ruled('op_a');
    assert.ok(r1.ok);
    assert.equal(r1.approval.status, 'pending', 'quorum 1 when asked for, 2 now: one counted approval is short');
    const stored = (await store.getApproval(a.id))!;
    assert.equal(stored.quorum, 2);
    assert.equal(stored.fourEyes, true);
    assert.equal(stored.status, 'pending');
    const r2 = await ruled('op_b');
    assert.ok(r2.ok);
    assert.equal(r2.approval.status, 'approved');
    assert.deepEqual(await store.getApproval(a.id), r2.approval);
  });

  it('approvals: one deny settles it denied, even after approvals short of the quorum', async () => {
    const ctx = get();
    const { task } = await agentAndTask(ctx.store, ctx.clock);
    const a = await newApproval(ctx, task, { quorum: 3 });
    assert.ok((await review(ctx, a.id, 'op_a', 'approve')).ok);
    const d = await review(ctx, a.id, 'op_b', 'deny');
    assert.ok(d.ok);
    assert.equal(d.approval.status, 'denied');
    const after = await review(ctx, a.id, 'op_c', 'approve');
    assert.equal(after.ok ? 'ok' : after.reason, 'not_pending');
    assert.equal((await ctx.store.getApproval(a.id))!.status, 'denied');
  });

  it('approvals: expiry of pending and approved ones, with one approval.expired entry each; a review past expiry is refused', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { task } = await agentAndTask(store, clock);
    const pending = await newApproval(ctx, task, { expiresAt: clock.now() + 10 * MIN });
    const approved = await newApproval(ctx, task, { expiresAt: clock.now() + 10 * MIN });
    assert.ok((await review(ctx, approved.id, 'op_a', 'approve', 2 * MIN)).ok);
    const untouched = await newApproval(ctx, task, { expiresAt: clock.now() + 60 * MIN });
    clock.advance(3 * MIN);
    const { result: first, entries } = await audited(store, () => store.expireApprovals(clock.now()));
    assert.ok(first.some((a) => a.id === approved.id && a.status === 'expired'));
    assert.ok(!first.some((a) => a.id === pending.id || a.id === untouched.id));
    assert.ok(entries.some((e) => e.type === 'approval.expired' && e.data.approval_id === approved.id && e.data.previous_status === 'approved'));
    assert.equal((await store.getApproval(approved.id))!.status, 'expired');
    clock.advance(10 * MIN);
    const late = await review(ctx, pending.id, 'op_a', 'approve');
    assert.equal(late.ok ? 'ok' : late.reason, 'not_pending', 'a pending approval past its expiry takes no review');
    const only = await store.expireApprovals(clock.now(), [pending.id]);
    assert.deepEqual(only.map((a) => a.id), [pending.id]);
    assert.equal((await store.getApproval(untouched.id))!.status, 'pending', 'expiry by id touches only those ids');
    assert.deepEqual(await store.expireApprovals(clock.now(), [pending.id]), [], 'expiring twice does nothing');
    assert.deepEqual(await store.expireApprovals(clock.now(), []), []);
  });

  it('approvals: an approved one is used once, atomically with its decision, budget unit and audit', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { task } = await agentAndTask(store, clock);
    const pending = await newApproval(ctx, task);
    const early = useWrite(ctx, task, pending.id);
    const [r0] = await store.commitDecisions([early], clock.now());
    assert.deepEqual(r0, { written: 'fallback', reason: 'approval_unavailable' }, 'a pending approval cannot be used');
    assert.equal((await store.getTask(task.id))!.actionsUsed, 0, 'no budget is taken');

    const a = await newApproval(ctx, task);
    assert.ok((await review(ctx, a.id, 'op_a', 'approve')).ok);
    const w1 = useWrite(ctx, task, a.id);
    const w2 = useWrite(ctx, task, a.id);
    const { result, entries } = await audited(store, () => store.commitDecisions([w1, w2], clock.now()));
    assert.deepEqual(result, [{ written: 'primary' }, { written: 'fallback', reason: 'approval_unavailable' }], 'two uses in one batch: the first wins');
    assert.deepEqual(entries.map((e) => e.type), ['decision', 'approval.used', 'decision']);
    const used = (await store.getApproval(a.id))!;
    assert.equal(used.status, 'used');
    assert.equal(used.usedDecisionId, w1.decision.id);
    assert.equal(used.usedAt, clock.now());
    assert.equal((await store.getTask(task.id))!.actionsUsed, 1);
    assert.equal((await store.getDecision(w1.decision.id))!.decision, 'allow');
    const [r3] = await store.commitDecisions([useWrite(ctx, task, a.id)], clock.now());
    assert.deepEqual(r3, { written: 'fallback', reason: 'approval_unavailable' }, 'a used approval cannot be used again');

    const b = await newApproval(ctx, task);
    assert.ok((await review(ctx, b.id, 'op_a', 'approve', MIN)).ok);
    clock.advance(MIN);
    const [r4] = await store.commitDecisions([useWrite(ctx, task, b.id)], clock.now());
    assert.deepEqual(r4, { written: 'fallback', reason: 'approval_unavailable' }, 'an approved one past its expiry cannot be used');
    assert.equal((await store.getTask(task.id))!.actionsUsed, 1);
  });

  it('approvals: an approval whose task has no budget left stays approved (the budget guard still holds)', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { task } = await agentAndTask(store, clock, { maxActions: 1, actionsUsed: 1 });
    const a = await newApproval(ctx, task);
    assert.ok((await review(ctx, a.id, 'op_a', 'approve')).ok);
    const [r] = await store.commitDecisions([useWrite(ctx, task, a.id)], clock.now());
    assert.deepEqual(r, { written: 'fallback', reason: 'budget_exhausted' });
    assert.equal((await store.getApproval(a.id))!.status, 'approved');
  });

  it('approvals: concurrent approve and deny reviews settle exactly once', async () => {
    const ctx = get();
    const { task } = await agentAndTask(ctx.store, ctx.clock);
    for (let round = 0; round < 5; round++) {
      const a = await newApproval(ctx, task);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => review(ctx, a.id, `op_${i}`, i % 2 === 0 ? 'approve' : 'deny')),
      );
      const settled = results.filter((r) => r.ok);
      assert.equal(settled.length, 1, `round ${round}: exactly one review settles it`);
      const stored = (await ctx.store.getApproval(a.id))!;
      assert.equal(stored.status, settled[0]!.approval!.status);
      assert.equal(stored.reviews.length, 1);
      assert.ok(results.filter((r) => !r.ok).every((r) => !r.ok && r.reason === 'not_pending'));
    }
  });

  it('approvals: concurrent uses of one approved approval: exactly one allow', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { task } = await agentAndTask(store, clock);
    const a = await newApproval(ctx, task);
    assert.ok((await review(ctx, a.id, 'op_a', 'approve')).ok);
    const results = (await Promise.all(Array.from({ length: 12 }, () => store.commitDecisions([useWrite(ctx, task, a.id)], clock.now())))).flat();
    assert.equal(results.filter((r) => r.written === 'primary').length, 1);
    assert.equal((await store.getTask(task.id))!.actionsUsed, 1);
  });

  it('break-glass: create, refuse a second while active, end, review once; list by state', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { agent, task } = await agentAndTask(store, clock);
    const cap = HOUR;
    const bg = breakGlass(ctx, agent.id, { durationMs: 20 * MIN, endsAt: clock.now() + 20 * MIN });
    const { result: created, entries } = await audited(store, () => store.createBreakGlass(bg, { capMs: cap, now: clock.now() }, audit('break_glass.started', { agentId: agent.id })));
    assert.ok(created.ok);
    assert.deepEqual(entries.map((e) => e.type), ['break_glass.started']);
    assert.deepEqual(await store.getBreakGlass(bg.id), bg);
    const second = await store.createBreakGlass(breakGlass(ctx, agent.id), { capMs: cap, now: clock.now() }, audit('break_glass.started'));
    assert.equal(second.ok ? 'ok' : second.reason, 'already_active');
    const forTask = await store.createBreakGlass(breakGlass(ctx, agent.id, { taskId: task.id }), { capMs: cap, now: clock.now() }, audit('break_glass.started'));
    assert.equal(forTask.ok ? 'ok' : forTask.reason, 'already_active', 'a task-scoped one of the same agent is refused too');

    assert.deepEqual((await store.findActiveBreakGlass(agent.id, task.id, clock.now())).map((r) => r.id), [bg.id]);
    assert.ok((await store.listBreakGlass({ state: 'active', now: clock.now(), limit: 1000 })).some((r) => r.id === bg.id));
    const early = await store.reviewBreakGlass(bg.id, 'op_admin2', 'looked fine', clock.now(), bgAudit('break_glass.reviewed'));
    assert.equal(early.ok ? 'ok' : early.reason, 'still_active');

    clock.advance(5 * MIN);
    const ended = await store.endBreakGlass(bg.id, 'op_admin2', clock.now(), bgAudit('break_glass.ended'));
    assert.ok(ended.ok);
    assert.equal(ended.record.status, 'ended');
    assert.equal(ended.record.endsAt, clock.now());
    assert.equal(ended.record.endedBy, 'op_admin2');
    assert.deepEqual(await store.findActiveBreakGlass(agent.id, task.id, clock.now()), []);
    const twice = await store.endBreakGlass(bg.id, 'op_admin2', clock.now(), bgAudit('break_glass.ended'));
    assert.equal(twice.ok ? 'ok' : twice.reason, 'not_active');
    const unreviewed = await store.listBreakGlass({ state: 'unreviewed', now: clock.now(), limit: 1000 });
    assert.ok(unreviewed.some((r) => r.id === bg.id));
    assert.ok((await store.listBreakGlass({ state: 'ended', agentId: agent.id, now: clock.now() })).some((r) => r.id === bg.id));
    const rev = await store.reviewBreakGlass(bg.id, 'op_admin2', 'justified: INC-1234', clock.now(), bgAudit('break_glass.reviewed'));
    assert.ok(rev.ok);
    assert.equal((await store.getBreakGlass(bg.id))!.reviewNotes, 'justified: INC-1234');
    const rev2 = await store.reviewBreakGlass(bg.id, 'op_admin3', 'again', clock.now(), bgAudit('break_glass.reviewed'));
    assert.equal(rev2.ok ? 'ok' : rev2.reason, 'already_reviewed');
    assert.ok(!(await store.listBreakGlass({ state: 'unreviewed', now: clock.now(), limit: 1000 })).some((r) => r.id === bg.id));
    assert.equal((await store.endBreakGlass('bg_missing', 'op', clock.now(), bgAudit('x'))).ok, false);
  });

  it('break-glass: an allow under it commits only while it is active; not after its end or expiry, even racing the end', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { agent, task } = await agentAndTask(store, clock, { maxActions: 1000 });
    const under = (id: string): DecisionWrite & { calls: string[] } => {
      const w = useWrite(ctx, task, 'unused');
      delete w.approval;
      w.breakGlass = { id };
      return w;
    };
    const bg = breakGlass(ctx, agent.id, { durationMs: 10 * MIN, endsAt: clock.now() + 10 * MIN });
    assert.ok((await store.createBreakGlass(bg, { capMs: HOUR, now: clock.now() }, audit('break_glass.started'))).ok);
    assert.deepEqual(await store.commitDecisions([under(bg.id)], clock.now()), [{ written: 'primary' }]);
    assert.deepEqual(await store.commitDecisions([under('bg_missing')], clock.now()), [{ written: 'fallback', reason: 'break_glass_inactive' }]);
    assert.equal((await store.getTask(task.id))!.actionsUsed, 1);

    // expiry: still `active` in its row (no sweep yet), but past its end
    clock.advance(10 * MIN);
    const expired = under(bg.id);
    assert.deepEqual(await store.commitDecisions([expired], clock.now()), [{ written: 'fallback', reason: 'break_glass_inactive' }]);
    assert.deepEqual(expired.calls, ['break_glass_inactive']);
    assert.equal((await store.getTask(task.id))!.actionsUsed, 1, 'no budget is taken');

    // the end races decisions, started together: every allow recorded precedes the end's entry
    clock.advance(2 * HOUR);
    const bg2 = breakGlass(ctx, agent.id, { durationMs: 10 * MIN, endsAt: clock.now() + 10 * MIN });
    assert.ok((await store.createBreakGlass(bg2, { capMs: HOUR, now: clock.now() }, audit('break_glass.started'))).ok);
    const from = (await store.auditHead())!.seq;
    const writes = Array.from({ length: 40 }, () => under(bg2.id));
    const settled = await Promise.all([
      ...writes.slice(0, 20).map((w) => store.commitDecisions([w], clock.now())),
      store.endBreakGlass(bg2.id, 'op_admin2', clock.now(), bgAudit('break_glass.ended')),
      ...writes.slice(20).map((w) => store.commitDecisions([w], clock.now())),
    ]);
    assert.ok((settled[20] as { ok: boolean }).ok);
    const entries = await store.listAudit({ after: from, limit: 10_000 });
    const endSeq = entries.find((e) => e.type === 'break_glass.ended')!.seq;
    const allowed = new Set(writes.filter((w) => w.calls.length === 0).map((w) => w.decision.id));
    for (const e of entries.filter((x) => x.type === 'decision')) {
      if (allowed.has(e.decisionId!)) assert.ok(e.seq < endSeq, 'an allow under break-glass is recorded before its end');
      else assert.ok(e.seq > endSeq, 'a decision refused for the end is recorded after it');
    }
    assert.equal(entries.filter((x) => x.type === 'decision').length, 40, 'every decision is recorded, allowed or not');
  });

  it('break-glass: no chaining past the cap; a session well after the cap window is allowed', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { agent } = await agentAndTask(store, clock);
    const cap = HOUR;
    const create = (durationMs: number) => {
      const now = clock.now();
      return store.createBreakGlass(breakGlass(ctx, agent.id, { durationMs, startsAt: now, endsAt: now + durationMs }), { capMs: cap, now }, audit('break_glass.started'));
    };
    const over = await create(cap + 1000);
    assert.equal(over.ok ? 'ok' : over.reason, 'cap_exceeded', 'one longer than the cap');
    const first = await create(40 * MIN);
    assert.ok(first.ok);
    clock.advance(40 * MIN); // it runs out
    const chained = await create(30 * MIN);
    assert.equal(chained.ok ? 'ok' : chained.reason, 'cap_exceeded', 'right after one that ran 40 min, 30 more would make 70 > 60');
    const fits = await create(20 * MIN);
    assert.ok(fits.ok, '40 + 20 fits the cap');
    clock.advance(20 * MIN);
    const third = await create(5 * MIN);
    assert.equal(third.ok ? 'ok' : third.reason, 'cap_exceeded', 'the cap is full');
    clock.advance(cap + MIN);
    const later = await create(30 * MIN);
    assert.ok(later.ok, 'a cap window after the last one ended');
  });

  it('break-glass: two-person confirmation (another admin, before the deadline, within the cap); pending ones lapse', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { agent } = await agentAndTask(store, clock);
    const cap = HOUR;
    const pending = breakGlass(ctx, agent.id, { status: 'pending', startsAt: null, endsAt: null, confirmDeadline: clock.now() + 15 * MIN });
    assert.ok((await store.createBreakGlass(pending, { capMs: cap, now: clock.now() }, audit('break_glass.requested'))).ok);
    assert.deepEqual(await store.findActiveBreakGlass(agent.id, 'any', clock.now()), [], 'pending is not active');
    const blocked = await store.createBreakGlass(breakGlass(ctx, agent.id), { capMs: cap, now: clock.now() }, audit('break_glass.started'));
    assert.equal(blocked.ok ? 'ok' : blocked.reason, 'already_active', 'a pending one blocks another');
    const self = await store.confirmBreakGlass(pending.id, pending.requestedBy, { capMs: cap, now: clock.now() }, bgAudit('break_glass.confirmed'));
    assert.equal(self.ok ? 'ok' : self.reason, 'same_admin');
    clock.advance(MIN);
    const { result: ok, entries } = await audited(store, () => store.confirmBreakGlass(pending.id, 'op_admin2', { capMs: cap, now: clock.now() }, bgAudit('break_glass.confirmed')));
    assert.ok(ok.ok);
    assert.deepEqual(entries.map((e) => e.type), ['break_glass.confirmed']);
    assert.equal(ok.record.status, 'active');
    assert.equal(ok.record.startsAt, clock.now(), 'the duration counts from the confirmation');
    assert.equal(ok.record.endsAt, clock.now() + pending.durationMs);
    const again = await store.confirmBreakGlass(pending.id, 'op_admin3', { capMs: cap, now: clock.now() }, bgAudit('break_glass.confirmed'));
    assert.equal(again.ok ? 'ok' : again.reason, 'not_pending');
    assert.ok((await store.endBreakGlass(pending.id, 'op_admin2', clock.now(), bgAudit('break_glass.ended'))).ok);

    clock.advance(2 * HOUR);
    const lapsing = breakGlass(ctx, agent.id, { status: 'pending', startsAt: null, endsAt: null, confirmDeadline: clock.now() + 15 * MIN });
    assert.ok((await store.createBreakGlass(lapsing, { capMs: cap, now: clock.now() }, audit('break_glass.requested'))).ok);
    clock.advance(16 * MIN);
    const late = await store.confirmBreakGlass(lapsing.id, 'op_admin2', { capMs: cap, now: clock.now() }, bgAudit('break_glass.confirmed'));
    assert.equal(late.ok ? 'ok' : late.reason, 'not_pending');
    const { result: swept, entries: lapsed } = await audited(store, () => store.expireBreakGlass(clock.now()));
    const mine = swept.find((r) => r.id === lapsing.id);
    assert.equal(mine?.status, 'cancelled');
    assert.ok(lapsed.some((e) => e.type === 'break_glass.cancelled' && e.data.break_glass_id === lapsing.id));
  });

  it('break-glass: task-scoped ones cover only their task; expiry marks active ones expired once', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { agent, task } = await agentAndTask(store, clock);
    const bg = breakGlass(ctx, agent.id, { taskId: task.id, durationMs: 10 * MIN, endsAt: clock.now() + 10 * MIN });
    assert.ok((await store.createBreakGlass(bg, { capMs: HOUR, now: clock.now() }, audit('break_glass.started'))).ok);
    assert.deepEqual((await store.findActiveBreakGlass(agent.id, task.id, clock.now())).map((r) => r.id), [bg.id]);
    assert.deepEqual(await store.findActiveBreakGlass(agent.id, 'tsk_other', clock.now()), []);
    assert.deepEqual(await store.findActiveBreakGlass('agt_other', task.id, clock.now()), []);
    clock.advance(10 * MIN);
    assert.deepEqual(await store.findActiveBreakGlass(agent.id, task.id, clock.now()), [], 'not active at its end');
    const { result, entries } = await audited(store, () => store.expireBreakGlass(clock.now()));
    assert.ok(result.some((r) => r.id === bg.id && r.status === 'expired' && r.endedAt === bg.endsAt));
    assert.ok(entries.some((e) => e.type === 'break_glass.expired' && e.data.break_glass_id === bg.id));
    assert.ok(!(await store.expireBreakGlass(clock.now())).some((r) => r.id === bg.id), 'once');
    assert.equal((await store.getBreakGlass(bg.id))!.status, 'expired');
  });

  it('break-glass: concurrent starts for one agent: exactly one succeeds', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { agent } = await agentAndTask(store, clock);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => store.createBreakGlass(breakGlass(ctx, agent.id), { capMs: HOUR, now: clock.now() }, audit('break_glass.started'))),
    );
    assert.equal(results.filter((r) => r.ok).length, 1);
    assert.equal((await store.listBreakGlass({ agentId: agent.id, now: clock.now() })).length, 1);
  });

  it('presence: a task created with a lease; only its owner renews it, with an audit entry', async () => {
    const ctx = get();
    const { store, clock } = ctx;
    const { agent } = await agentAndTask(store, clock);
    const id = newId('tsk');
    const t: TaskRecord = {
      id, agentId: agent.id, owner: 'op_owner', intent: 'x', scope: { tools: ['*'], resources: [], destinations: [] }, status: 'active',
      createdAt: clock.now(), expiresAt: clock.now() + HOUR, endedAt: null, maxActions: 5, actionsUsed: 0, actionsReserved: 0, parentId: null, rootId: id, depth: 0,
    };
    const lease = { taskId: id, owner: 'op_owner', expiresAt: clock.now() + 2 * MIN, renewedAt: clock.now() };
    await store.createTask(t, audit('task.created', { taskId: id }), { presence: lease });
    assert.deepEqual(await store.getPresence(id), lease);
    assert.equal(await store.getPresence('tsk_without'), null);
    clock.advance(MIN);
    const { result: renewed, entries } = await audited(store, () => store.renewPresence(id, 'op_owner', clock.now() + 5 * MIN, clock.now(), audit('presence.renewed', { taskId: id })));
    assert.deepEqual(renewed, { taskId: id, owner: 'op_owner', expiresAt: clock.now() + 5 * MIN, renewedAt: clock.now() });
    assert.deepEqual(entries.map((e) => e.type), ['presence.renewed']);
    const { result: other, entries: none } = await audited(store, () => store.renewPresence(id, 'op_someone_else', clock.now() + 5 * MIN, clock.now(), audit('presence.renewed')));
    assert.equal(other, null);
    assert.deepEqual(none, []);
    assert.equal(await store.renewPresence('tsk_without', 'op_owner', clock.now() + MIN, clock.now(), audit('presence.renewed')), null);
  });
}
