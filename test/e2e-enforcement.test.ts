import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { DEFAULT_POLICY } from '../src/policy/schema.js';
import { makeOperator } from './helpers/escalations.js';
import { Api, backends, makeAgentKeys, setup, type AgentKeys } from './helpers/harness.js';

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
        await assert.rejects(env.writ.tokens.consume(at, undefined as unknown as string), (e: any) => e.status === 400);
        assert.equal((await env.store.listAudit({ taskId: task.id, type: 'action.consumed', limit: 10 })).length, 0);
        const ok = await env.admin.call('POST', '/v1/actions/consume', { action_token: at, audience: AUD }, { token: null });
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        assertError(await env.admin.call('POST', '/v1/actions/consume', { action_token: at, audience: AUD }, { token: null }), 409, 'token_already_used');
      });
    });

    describe('argument shape where policy reads a key (item 1)', () => {
      const POLICY = `
@id("allow-all")
permit (principal, action == Writ::Action::"call", resource);

@id("no-large-payments")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 1000 };

@id("no-payments-to-mallory")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.args.hasTag("to") && context.args.getTag("to") == "mallory" };

@id("no-large-nested-payments")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.num_args.hasTag("payment.amount") && context.num_args.getTag("payment.amount") > 1000 };

@id("first-item-small")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.num_args.hasTag("items.0.amount") && context.num_args.getTag("items.0.amount") > 1000 };
`;
      let api: Api;
      before(async () => {
        const put = await env.admin.call('PUT', '/v1/policies', { policies: POLICY });
        assert.equal(put.status, 200, JSON.stringify(put.body));
      });
      // a task per test: denies count against a per-task rate (20 a second by default)
      beforeEach(async () => {
        ({ api } = await agentFor({ scope: { tools: ['payments.*'] }, max_actions: 1000 }));
      });
      after(async () => {
        await env.admin.call('PUT', '/v1/policies', { policies: DEFAULT_POLICY });
      });
      const decide = (args: unknown) => api.call('POST', '/v1/authorize', { tool: 'payments.transfer', arguments: args, audience: AUD });

      const mismatches: unknown[] = [
        // the example and its wrappers
        { amount: [5000], to: ['mallory'] },
        { amount: [5000] },
        { amount: [[5000]] },
        { amount: { value: 5000 } },
        { amount: [{ value: 5000 }] },
        { amount: [] },
        { amount: {} },
        { amount: ['5000'] },
        { to: ['mallory'] },
        { to: [['mallory']] },
        { to: { 0: 'mallory' } },
        { to: [] },
        // through arrays, at depth
        { payment: [{ amount: 5000 }] },
        { payment: [[{ amount: 5000 }]] },
        { payment: { amount: [5000] } },
        { payment: [{ amount: [5000] }] },
        { payment: { amount: { v: 5000 } } },
        { 'payment.amount': [5000] },
        { items: [[{ amount: 5000 }]] },
        { items: [{ amount: [5000] }] },
        { items: { 0: { amount: [5000] } } },
      ];
      for (const args of mismatches) {
        it(`denies ${JSON.stringify(args)} with argument_type_mismatch`, async () => {
          const r = await decide(args);
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.equal(r.body.decision, 'deny', JSON.stringify(r.body));
          assert.equal(r.body.reasons[0].code, 'argument_type_mismatch', JSON.stringify(r.body));
        });
      }

      it('still judges scalars as before: small allowed, large or to mallory forbidden', async () => {
        for (const [args, want] of [
          [{ amount: 500, to: 'alice' }, 'allow'],
          [{ payment: { amount: 10 } }, 'allow'],
          [{ items: [{ amount: 10 }, { amount: 5000 }] }, 'allow'],
          [{ memo: { lines: [1, 2, [3]] }, tags: ['a', 'b'] }, 'allow'],
          [{ amount: 5000 }, 'policy_forbids'],
          [{ to: 'mallory' }, 'policy_forbids'],
          [{ payment: { amount: 5000 } }, 'policy_forbids'],
          [{ items: [{ amount: 5000 }] }, 'policy_forbids'],
          [{ items: { 0: { amount: 5000 } } }, 'policy_forbids'],
          [{ amount: '5000' }, 'argument_type_mismatch'],
        ] as const) {
          const r = await decide(args);
          const got = r.body.decision === 'allow' ? 'allow' : r.body.reasons?.[0]?.code;
          assert.equal(got, want, `${JSON.stringify(args)}: ${JSON.stringify(r.body)}`);
        }
      });

      it('with tag names computed by policy, refuses every array or object argument', async () => {
        const dynamic = `${POLICY}
@id("computed-name")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.args.hasTag(context.task.intent) };
`;
        assert.equal((await env.admin.call('PUT', '/v1/policies', { policies: dynamic })).status, 200);
        try {
          const r = await decide({ memo: { a: 1 } });
          assert.equal(r.body.reasons?.[0]?.code, 'argument_type_mismatch', JSON.stringify(r.body));
          const r2 = await decide({ memo: [1] });
          assert.equal(r2.body.reasons?.[0]?.code, 'argument_type_mismatch', JSON.stringify(r2.body));
          const ok = await decide({ memo: 'x', amount: 3 });
          assert.equal(ok.body.decision, 'allow', JSON.stringify(ok.body));
        } finally {
          assert.equal((await env.admin.call('PUT', '/v1/policies', { policies: POLICY })).status, 200);
        }
      });
    });

    describe('delegation never widens through empty or missing lists (item 2)', () => {
      let serial = 0;
      async function newAgent(name: string): Promise<AgentKeys> {
        const a = await makeAgentKeys(`spiffe://acme.test/agent/${name}-${++serial}`);
        const r = await env.admin.call('POST', '/v1/agents', { id: a.id, name, jwks: { keys: [a.publicJwk] } });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        return a;
      }
      const PARENT = { tools: ['db.*'], resources: ['db:staging/*'], destinations: ['db.staging.internal:5432'] };
      const childScopes: [string, Record<string, unknown>][] = [
        ['empty lists', { tools: ['db.query'], resources: [], destinations: [] }],
        ['lists left out', { tools: ['db.query'] }],
        ['empty resources only', { tools: ['db.query'], resources: [], destinations: ['db.staging.internal:5432'] }],
        ['empty destinations only', { tools: ['db.query'], resources: ['db:staging/reports'], destinations: [] }],
      ];
      for (const [name, scope] of childScopes) {
        it(`a child with ${name} inherits the parent's bound: no resource or destination is refused as for the parent`, async () => {
          const parent = await env.createTask({ scope: PARENT, max_actions: 20 });
          const pToken = await env.taskToken(parent.id);
          const pApi = new Api(env.url, pToken);
          // the parent itself is refused an action naming no resource
          const pr = await pApi.call('POST', '/v1/authorize', { tool: 'db.query', arguments: {}, audience: AUD });
          assert.equal(pr.body.reasons?.[0]?.code, 'resource_required', JSON.stringify(pr.body));

          const b = await newAgent('child');
          const d = await pApi.call('POST', `/v1/tasks/${parent.id}/delegations`, { agent_id: b.id, intent: 'query staging', scope, ttl_seconds: 300, max_actions: 5 });
          assert.equal(d.status, 201, JSON.stringify(d.body));
          const want = {
            resources: (scope.resources as string[] | undefined)?.length ? scope.resources : PARENT.resources,
            destinations: (scope.destinations as string[] | undefined)?.length ? scope.destinations : PARENT.destinations,
          };
          assert.deepEqual(d.body.scope.resources, want.resources);
          assert.deepEqual(d.body.scope.destinations, want.destinations);
          // stored so: the operator's view and the store agree
          const stored = await env.store.getTask(d.body.id);
          assert.deepEqual(stored!.scope.resources, want.resources);
          assert.deepEqual(stored!.scope.destinations, want.destinations);

          const cApi = new Api(env.url, await env.taskToken(d.body.id, b));
          const decide = (extra: Record<string, unknown>) => cApi.call('POST', '/v1/authorize', { tool: 'db.query', arguments: {}, audience: AUD, ...extra });
          const dest = { destination: (want.destinations as string[])[0] };
          const res = { resource: (want.resources as string[])[0]!.replace('*', 'reports') };
          assert.equal((await decide(dest)).body.reasons?.[0]?.code, 'resource_required');
          assert.equal((await decide(res)).body.reasons?.[0]?.code, 'destination_required');
          assert.equal((await decide({ ...dest, resource: 'db:prod/users' })).body.reasons?.[0]?.code, 'resource_out_of_scope');
          assert.equal((await decide({ ...res, destination: 'db.prod.internal:5432' })).body.reasons?.[0]?.code, 'destination_out_of_scope');
          const ok = await decide({ ...res, ...dest });
          assert.equal(ok.body.decision, 'allow', JSON.stringify(ok.body));
        });
      }

      it('a grandchild with empty lists inherits through the chain; a root task with [] still may name none', async () => {
        const parent = await env.createTask({ scope: PARENT, max_actions: 20 });
        const pApi = new Api(env.url, await env.taskToken(parent.id));
        const b = await newAgent('mid');
        const c = await newAgent('leaf');
        const d1 = await pApi.call('POST', `/v1/tasks/${parent.id}/delegations`, { agent_id: b.id, intent: 'mid', scope: { tools: ['db.*'], resources: ['db:staging/a*'] }, ttl_seconds: 300, max_actions: 5 });
        assert.equal(d1.status, 201, JSON.stringify(d1.body));
        const bApi = new Api(env.url, await env.taskToken(d1.body.id, b));
        const d2 = await bApi.call('POST', `/v1/tasks/${d1.body.id}/delegations`, { agent_id: c.id, intent: 'leaf', scope: { tools: ['db.query'], resources: [], destinations: [] }, ttl_seconds: 200, max_actions: 2 });
        assert.equal(d2.status, 201, JSON.stringify(d2.body));
        assert.deepEqual(d2.body.scope.resources, ['db:staging/a*']);
        assert.deepEqual(d2.body.scope.destinations, PARENT.destinations);
        const cApi = new Api(env.url, await env.taskToken(d2.body.id, c));
        const r = await cApi.call('POST', '/v1/authorize', { tool: 'db.query', arguments: {}, audience: AUD, destination: PARENT.destinations[0] });
        assert.equal(r.body.reasons?.[0]?.code, 'resource_required', JSON.stringify(r.body));
        const r2 = await cApi.call('POST', '/v1/authorize', { tool: 'db.query', arguments: {}, audience: AUD, destination: PARENT.destinations[0], resource: 'db:staging/b1' });
        assert.equal(r2.body.reasons?.[0]?.code, 'resource_out_of_scope', JSON.stringify(r2.body));

        // a root task: [] means the task may name none (and naming one is out of scope)
        const root = await env.createTask({ scope: { tools: ['db.*'], resources: [], destinations: [] } });
        const rApi = new Api(env.url, await env.taskToken(root.id));
        assert.equal((await rApi.call('POST', '/v1/authorize', { tool: 'db.query', arguments: {}, audience: AUD })).body.decision, 'allow');
        const named = await rApi.call('POST', '/v1/authorize', { tool: 'db.query', arguments: {}, audience: AUD, resource: 'db:staging/x' });
        assert.equal(named.body.reasons?.[0]?.code, 'resource_out_of_scope', JSON.stringify(named.body));
      });

      it('a child of a root task with [] that names a resource is refused (scope_not_subset)', async () => {
        const root = await env.createTask({ scope: { tools: ['db.*'], resources: [], destinations: [] } });
        const rApi = new Api(env.url, await env.taskToken(root.id));
        const b = await newAgent('wider');
        const d = await rApi.call('POST', `/v1/tasks/${root.id}/delegations`, { agent_id: b.id, intent: 'x', scope: { tools: ['db.query'], resources: ['db:prod/*'] }, ttl_seconds: 60, max_actions: 1 });
        assertError(d, 403, 'scope_not_subset');
      });
    });

    describe('approval rule of the policy in force (item 3)', () => {
      const base = `
@id("allow-others")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"payments" };
`;
      const LENIENT = `${base}
@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };
`;
      const STRICT = `${base}
@id("payments-need-approval")
@approvals("2")
@four_eyes("true")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };
`;
      const FOUR_EYES_ONLY = `${base}
@id("payments-need-approval")
@four_eyes("true")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };
`;
      let alice: Api & { id: string };
      let bob: Api & { id: string };
      const setPolicy = async (text: string) => assert.equal((await env.admin.call('PUT', '/v1/policies', { policies: text })).status, 200);
      before(async () => {
        alice = await makeOperator(env, 'alice', ['approver']);
        bob = await makeOperator(env, 'bob', ['approver']);
      });
      after(async () => setPolicy(DEFAULT_POLICY));

      async function requestUnder(policy: string, amount: number) {
        await setPolicy(policy);
        const { api } = await agentFor({ scope: { tools: ['payments.*'] } });
        const r = await api.call('POST', '/v1/authorize', { tool: 'payments.transfer', arguments: { amount }, audience: AUD });
        assert.equal(r.body.decision, 'approval_required', JSON.stringify(r.body));
        return { api, id: r.body.approval_id as string };
      }

      it('the issue: asked under quorum 1, policy adds @approvals("2") and @four_eyes; the owner alone cannot approve, one approver leaves it pending, two issue', async () => {
        const { api, id } = await requestUnder(LENIENT, 101);
        await setPolicy(STRICT);
        // the owner (the admin who created the task) is refused under four eyes now
        assertError(await env.admin.call('POST', `/v1/approvals/${id}/approve`, {}), 403, 'self_approval');
        const one = await alice.call('POST', `/v1/approvals/${id}/approve`, {});
        assert.equal(one.status, 200, JSON.stringify(one.body));
        assert.equal(one.body.status, 'pending', 'one approval of two: still pending');
        assert.equal(one.body.quorum, 2);
        assert.equal(one.body.four_eyes, true);
        const stored = await env.store.getApproval(id);
        assert.equal(stored!.quorum, 2);
        assert.equal(stored!.fourEyes, true);
        const read = await api.call('GET', `/v1/approvals/${id}`);
        assert.equal(read.body.status, 'pending');
        assert.equal(read.body.action_token, undefined);
        const two = await bob.call('POST', `/v1/approvals/${id}/approve`, {});
        assert.equal(two.body.status, 'approved', JSON.stringify(two.body));
        const got = await api.call('GET', `/v1/approvals/${id}`);
        assert.equal(got.body.decision, 'allow', JSON.stringify(got.body));
        assert.equal(typeof got.body.action_token, 'string');
      });

      for (const [name, approvers, policy] of [
        ['the owner alone, then four eyes and quorum 2', ['owner'], STRICT],
        ['one approver, then quorum 2', ['alice'], STRICT],
        ['the owner alone, then four eyes only', ['owner'], FOUR_EYES_ONLY],
      ] as const) {
        it(`approved under the lenient rule by ${name}: the token read is refused (approval_insufficient), nothing issued`, async () => {
          const { api, id } = await requestUnder(LENIENT, 102);
          for (const who of approvers) {
            const r = await (who === 'owner' ? env.admin : alice).call('POST', `/v1/approvals/${id}/approve`, {});
            assert.equal(r.body.status, 'approved', JSON.stringify(r.body));
          }
          await setPolicy(policy);
          const read = await api.call('GET', `/v1/approvals/${id}`);
          assert.equal(read.status, 200, JSON.stringify(read.body));
          assert.equal(read.body.decision, 'deny', JSON.stringify(read.body));
          assert.equal(read.body.reasons[0].code, 'approval_insufficient');
          assert.equal(read.body.action_token, undefined);
          assert.equal((await env.store.getApproval(id))!.usedAt, null, 'the approval is not used');
          // back under the rule it was approved by, the same approval issues once
          await setPolicy(LENIENT);
          const again = await api.call('GET', `/v1/approvals/${id}`);
          assert.equal(again.body.decision, 'allow', JSON.stringify(again.body));
        });
      }

      it('who may approve is checked again: an approver disabled since approving no longer counts, at the token read and at later reviews', async () => {
        const carol = await makeOperator(env, `carol-${Date.now()}`, ['approver']);
        const dave = await makeOperator(env, `dave-${Date.now()}`, ['approver']);
        const { api, id } = await requestUnder(LENIENT, 104);
        assert.equal((await carol.call('POST', `/v1/approvals/${id}/approve`, {})).body.status, 'approved');
        const disable = (op: { id: string }) =>
          env.store.disableOperator(op.id, Date.now(), { type: 'operator.disabled', actor: 'system', data: { operator_id: op.id } });
        assert.equal(await disable(carol), 'disabled');
        const read = await api.call('GET', `/v1/approvals/${id}`);
        assert.equal(read.body.decision, 'deny', JSON.stringify(read.body));
        assert.equal(read.body.reasons[0].code, 'approval_insufficient');

        // pending under quorum 2: a disabled approver's yes does not count toward it
        const p = await requestUnder(STRICT, 105);
        assert.equal((await dave.call('POST', `/v1/approvals/${p.id}/approve`, {})).body.status, 'pending');
        assert.equal(await disable(dave), 'disabled');
        assert.equal((await alice.call('POST', `/v1/approvals/${p.id}/approve`, {})).body.status, 'pending', 'one counted approval of two');
        assert.equal((await bob.call('POST', `/v1/approvals/${p.id}/approve`, {})).body.status, 'approved');
        const got = await p.api.call('GET', `/v1/approvals/${p.id}`);
        assert.equal(got.body.decision, 'allow', JSON.stringify(got.body));
      });

      it('four eyes only: a non-owner approval still satisfies it', async () => {
        const { api, id } = await requestUnder(LENIENT, 103);
        await setPolicy(FOUR_EYES_ONLY);
        const r = await alice.call('POST', `/v1/approvals/${id}/approve`, {});
        assert.equal(r.body.status, 'approved', JSON.stringify(r.body));
        const got = await api.call('GET', `/v1/approvals/${id}`);
        assert.equal(got.body.decision, 'allow', JSON.stringify(got.body));
      });
    });

    describe('destinations and resources in canonical form (item 4)', () => {
      const SCOPE = { tools: ['github.*'], resources: ['repo:acme/*'], destinations: ['*.github.com', 'stdio:*'] };
      const badDestinations = [
        'evil.example#.github.com',
        'evil.example/.github.com',
        'evil.example?.github.com',
        'evil.example\\.github.com',
        'evil.example@api.github.com',
        'API.github.com',
        'api.github.com.',
        'xn--zz.github.com',
        'bücher.github.com',
        'evil%2eexample.github.com',
        'api.github.com:0443',
        'https://api.github.com',
        'stdio:Local',
        'stdio:x/../y',
      ];
      const badResources = ['repo:acme/../other/secrets', 'repo:acme/%2e%2e/other', 'repo:acme/..;/other', 'repo:acme\\..\\other', 'repo:acme/./api', 'repo:acme/a b'];

      it('authorize refuses each non-canonical destination with 400 invalid_destination, records nothing, and the in-process path agrees', async () => {
        const { api, task, token } = await agentFor({ scope: SCOPE });
        const ctx = await env.writ.tokens.authenticateTask(token);
        for (const destination of badDestinations) {
          const r = await api.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: AUD, resource: 'repo:acme/api', destination });
          assertError(r, 400, 'invalid_destination');
          await assert.rejects(
            env.writ.authz.authorize(ctx, { tool: 'github.get', arguments: {}, audience: AUD, resource: 'repo:acme/api', destination }),
            (e: any) => e.code === 'invalid_destination',
            destination,
          );
        }
        assert.equal((await env.store.listDecisions(task.id)).length, 0);
        for (const destination of ['api.github.com', 'stdio:local']) {
          const ok = await api.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: AUD, resource: 'repo:acme/api', destination });
          assert.equal(ok.body.decision, 'allow', `${destination}: ${JSON.stringify(ok.body)}`);
        }
        // canonical, but not what `*.github.com` means: `*` does not cross `:`
        const named = await api.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: AUD, resource: 'repo:acme/api', destination: 'evil:x.github.com' });
        assert.equal(named.body.reasons?.[0]?.code, 'destination_out_of_scope', JSON.stringify(named.body));
      });

      it('authorize refuses resources with dot segments (also encoded, `..;`, backslashes) with 400 invalid_resource', async () => {
        const { api, task, token } = await agentFor({ scope: SCOPE });
        const ctx = await env.writ.tokens.authenticateTask(token);
        for (const resource of badResources) {
          const r = await api.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: AUD, resource, destination: 'api.github.com' });
          assertError(r, 400, 'invalid_resource');
          await assert.rejects(env.writ.authz.authorize(ctx, { tool: 'github.get', arguments: {}, audience: AUD, resource, destination: 'api.github.com' }), (e: any) => e.code === 'invalid_resource');
        }
        assert.equal((await env.store.listDecisions(task.id)).length, 0);
      });

      it('task scopes and delegations refuse non-canonical patterns with the same codes', async () => {
        const create = (scope: Record<string, unknown>) =>
          env.admin.call('POST', '/v1/tasks', { agent_id: env.agent.id, intent: 'x', scope: { tools: ['github.*'], ...scope }, ttl_seconds: 60, max_actions: 1 });
        for (const destinations of [['*.GitHub.com'], ['evil#*.github.com'], ['*.github.com.'], ['https://*.github.com'], ['*@github.com']]) {
          assertError(await create({ destinations }), 400, 'invalid_destination');
        }
        for (const resources of [['repo:acme/../*'], ['repo:acme/%2e%2e/*'], ['repo:*\\x']]) {
          assertError(await create({ resources }), 400, 'invalid_resource');
        }
        assert.equal((await create({ destinations: ['*.github.com:*', 'stdio:*'], resources: ['repo:acme/*'] })).status, 201);

        const { api, task } = await agentFor({ scope: SCOPE });
        const b = await makeAgentKeys(`spiffe://acme.test/agent/canon-${backend}-${Date.now()}`);
        assert.equal((await env.admin.call('POST', '/v1/agents', { id: b.id, name: 'canon', jwks: { keys: [b.publicJwk] } })).status, 201);
        const delegate = (scope: Record<string, unknown>) =>
          api.call('POST', `/v1/tasks/${task.id}/delegations`, { agent_id: b.id, intent: 'x', scope: { tools: ['github.get'], ...scope }, ttl_seconds: 60, max_actions: 1 });
        assertError(await delegate({ destinations: ['evil.example#.github.com'] }), 400, 'invalid_destination');
        assertError(await delegate({ resources: ['repo:acme/../other/*'] }), 400, 'invalid_resource');
        // canonical but wider: `*:x.github.com` is not within `*.github.com`
        assertError(await delegate({ destinations: ['*:x.github.com'] }), 403, 'scope_not_subset');
        assert.equal((await delegate({ destinations: ['api.github.com'], resources: ['repo:acme/api'] })).status, 201);
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
          const ctx = await env.writ.tokens.authenticateTask(await env.taskToken(task.id));
          await assert.rejects(
            env.writ.authz.authorize(ctx, { tool: 'github.get', arguments: JSON.parse(args), audience: AUD }),
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
