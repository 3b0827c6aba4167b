import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { InProcessAuthorizer } from '../src/gateway/authorizer.js';
import { setup } from './helpers/harness.js';

/**
 * The in-process gateway's outcome reports (`writ serve --gateway`): an outcome for an
 * allow the authorizer was just answered, with the same token, is recorded without the
 * token checked again or the decision read back (issue 12 item 6); every other report
 * takes the outcome route's full check. Either way an outcome is recorded once, only
 * for an allow of the reporting token's task.
 */
describe('in-process gateway: outcomes', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  const clock = new ManualClock(Date.now());
  before(async () => {
    env = await setup('sqlite', { clock });
  });
  after(async () => env?.teardown());

  const SCOPE = { scope: { tools: ['github.*'], resources: [], destinations: ['api.github.com'] } };
  const action = (n: number) => ({ tool: 'github.create_issue', arguments: { n }, audience: 'a', destination: 'api.github.com' });
  const outcomeOf = async (id: string) => (await env.writ.store.getDecision(id))?.outcome ?? null;
  const auditOf = async (taskId: string) => (await env.admin.call('GET', `/v1/audit?type=action.outcome&task_id=${taskId}&limit=100`)).body.entries as any[];
  const refused = (code: string) => (e: any) => e.code === code;

  it('records the outcome of its own allow, durable once the report resolves, once', async () => {
    const task = await env.createTask(SCOPE);
    const token = await env.taskToken(task.id);
    const a = new InProcessAuthorizer(env.writ);
    const d = await a.authorize(token, action(1));
    assert.equal(d.decision, 'allow');
    const report = a.reportOutcome(token, d.decision_id, 'failed', 'upstream error');
    a.flushOutcomes(); // written now, not with the next decision
    await report;
    assert.equal(await outcomeOf(d.decision_id), 'failed');
    const entries = await auditOf(task.id);
    assert.equal(entries.length, 1);
    assert.equal(entries[0].decision_id, d.decision_id);
    assert.deepEqual(entries[0].data, { status: 'failed', detail: 'upstream error' });
    // again: refused, the first stands
    await assert.rejects(a.reportOutcome(token, d.decision_id, 'succeeded'), refused('outcome_already_reported'));
    assert.equal(await outcomeOf(d.decision_id), 'failed');
  });

  it('refuses a second report while the first is still queued', async () => {
    const task = await env.createTask(SCOPE);
    const token = await env.taskToken(task.id);
    const a = new InProcessAuthorizer(env.writ);
    const d = await a.authorize(token, action(2));
    const first = a.reportOutcome(token, d.decision_id, 'succeeded');
    const second = assert.rejects(a.reportOutcome(token, d.decision_id, 'failed'), refused('outcome_already_reported'));
    a.flushOutcomes();
    await first;
    await second;
    assert.equal(await outcomeOf(d.decision_id), 'succeeded');
  });

  it('refuses an outcome for a deny, an unknown decision, or an allow of another task (the full check)', async () => {
    const task = await env.createTask(SCOPE);
    const token = await env.taskToken(task.id);
    const other = await env.createTask(SCOPE);
    const otherToken = await env.taskToken(other.id);
    const a = new InProcessAuthorizer(env.writ);
    const deny = await a.authorize(token, { tool: 'slack.post', arguments: {}, audience: 'a' });
    assert.equal(deny.decision, 'deny');
    await assert.rejects(a.reportOutcome(token, deny.decision_id, 'succeeded'), refused('not_allowed_decision'));
    await assert.rejects(a.reportOutcome(token, 'dec_unknown', 'succeeded'), refused('decision_not_found'));
    // another task's token for this allow: not its decision
    const mine = await a.authorize(token, action(3));
    await assert.rejects(a.reportOutcome(otherToken, mine.decision_id, 'succeeded'), refused('decision_not_found'));
    // an allow answered to another authorizer: the full check, which takes it for its own task
    const b = new InProcessAuthorizer(env.writ);
    const theirs = await b.authorize(otherToken, action(4));
    await assert.rejects(a.reportOutcome(token, theirs.decision_id, 'succeeded'), refused('decision_not_found'));
    const report = a.reportOutcome(otherToken, theirs.decision_id, 'succeeded');
    a.flushOutcomes();
    await report;
    assert.equal(await outcomeOf(theirs.decision_id), 'succeeded');
    assert.equal(await outcomeOf(mine.decision_id), null);
    // a token that is not one: refused before anything is read
    await assert.rejects(a.reportOutcome('not-a-token', mine.decision_id, 'succeeded'), (e: any) => e.status === 401);
    assert.equal(await outcomeOf(mine.decision_id), null);
  });

  it('refuses the outcome of its own allow once the token has expired', async () => {
    const task = await env.createTask(SCOPE);
    const token = await env.taskToken(task.id);
    const a = new InProcessAuthorizer(env.writ);
    const d = await a.authorize(token, action(5));
    clock.advance(24 * 3600_000);
    await assert.rejects(a.reportOutcome(token, d.decision_id, 'succeeded'), (e: any) => e.status === 401);
    assert.equal(await outcomeOf(d.decision_id), null);
  });
});
