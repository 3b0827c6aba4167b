import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { ManualClock } from '../src/core/clock.js';
import { DEFAULT_POLICY } from '../src/policy/schema.js';
import { Api, backends, makeAgentKeys, makeAssertion, setup, type AgentKeys } from './helpers/harness.js';

const AUD = 'https://tools.example/github';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
type Env = Awaited<ReturnType<typeof setup>>;

let serial = 0;

/** Registers a fresh agent (ids are unique per store). */
async function newAgent(env: Env, name: string): Promise<AgentKeys> {
  const a = await makeAgentKeys(`spiffe://acme.test/agent/${name}-${++serial}`);
  const r = await env.admin.call('POST', '/v1/agents', { id: a.id, name, jwks: { keys: [a.publicJwk] } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return a;
}

const ROOT_SCOPE = { tools: ['github.*', 'billing.read'], resources: ['repo:acme/*'], destinations: [] };

function delegation(over: Record<string, unknown> & { agent_id: string }) {
  return {
    intent: 'triage the api repo issues',
    scope: { tools: ['github.issues.*'], resources: ['repo:acme/api'], destinations: [] },
    ttl_seconds: 300,
    max_actions: 3,
    ...over,
  };
}

async function delegate(env: Env, token: string, parentId: string, body: Record<string, unknown>) {
  return new Api(env.url, token).call('POST', `/v1/tasks/${parentId}/delegations`, body);
}

async function authorize(env: Env, token: string, tool: string, extra: Record<string, unknown> = {}) {
  // the tasks here list resources, so every action names one (the scope bounds every action)
  return new Api(env.url, token).call('POST', '/v1/authorize', { tool, arguments: { n: 1 }, audience: AUD, resource: 'repo:acme/api', ...extra });
}

async function verifyAction(env: Env, actionToken: string) {
  const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
  return (await jwtVerify(actionToken, createLocalJWKSet(jwks), { issuer: env.url, audience: AUD, typ: 'writ-action+jwt', algorithms: ['EdDSA'] })).payload;
}

function assertRefused(r: { status: number; body: any }, status: number, code: string): void {
  assert.equal(r.status, status, `${code}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error.code, code, JSON.stringify(r.body));
}

for (const { backend, skip } of backends()) {
  describe(`delegation end to end (${backend})`, { skip }, () => {
    let env: Env;
    before(async () => {
      env = await setup(backend);
    });
    after(async () => env?.teardown());

    it('delegates a narrower sub-task; the child gets its own token; action tokens carry the chain as nested `act`; the tree shows it', async () => {
      const b = await newAgent(env, 'triage');
      const c = await newAgent(env, 'reader');
      const root = await env.createTask({ max_actions: 10, scope: ROOT_SCOPE });
      const aToken = await env.taskToken(root.id);

      const r1 = await delegate(env, aToken, root.id, delegation({ agent_id: b.id, max_actions: 4 }));
      assert.equal(r1.status, 201, JSON.stringify(r1.body));
      const child = r1.body;
      assert.equal(child.agent_id, b.id);
      assert.equal(child.parent_id, root.id);
      assert.equal(child.root_id, root.id);
      assert.equal(child.depth, 1);
      assert.equal(child.max_actions, 4);
      assert.equal(child.owner, (await env.admin.call('GET', `/v1/tasks/${root.id}`)).body.owner, 'the owner is the root task\'s');
      assert.ok(Date.parse(child.expires_at) <= Date.parse(root.expires_at));

      // the child agent gets its own task token the usual way; the parent's token is not the child's
      const bToken = await env.taskToken(child.id, b);
      await assert.rejects(env.taskToken(child.id), /invalid_grant/);
      const allowed = await authorize(env, bToken, 'github.issues.create', { resource: 'repo:acme/api' });
      assert.equal(allowed.body.decision, 'allow', JSON.stringify(allowed.body));
      const claims = await verifyAction(env, allowed.body.action_token);
      assert.equal(claims.sub, b.id);
      assert.equal(claims.txn, child.id);
      assert.deepEqual(claims.act, { sub: env.agent.id });
      // the child's scope binds it, not the parent's
      const outside = await authorize(env, bToken, 'github.repos.delete');
      assert.equal(outside.body.decision, 'deny');
      assert.equal(outside.body.reasons[0].code, 'tool_out_of_scope');
      const otherRepo = await authorize(env, bToken, 'github.issues.create', { resource: 'repo:acme/web' });
      assert.equal(otherRepo.body.reasons[0].code, 'resource_out_of_scope');

      // a second hop: depth 2, the chain nests root-most innermost
      const r2 = await delegate(env, bToken, child.id, delegation({ agent_id: c.id, scope: { tools: ['github.issues.get'], resources: ['repo:acme/api'] }, ttl_seconds: 200, max_actions: 2 }));
      assert.equal(r2.status, 201, JSON.stringify(r2.body));
      assert.equal(r2.body.depth, 2);
      assert.equal(r2.body.root_id, root.id);
      const cToken = await env.taskToken(r2.body.id, c);
      const a2 = await authorize(env, cToken, 'github.issues.get');
      assert.equal(a2.body.decision, 'allow', JSON.stringify(a2.body));
      const c2 = await verifyAction(env, a2.body.action_token);
      assert.deepEqual(c2.act, { sub: b.id, act: { sub: env.agent.id } });
      assert.equal(c2.sub, c.id);
      // the root agent's own action tokens carry no `act`
      const a0 = await authorize(env, aToken, 'github.get');
      assert.equal((await verifyAction(env, a0.body.action_token)).act, undefined);

      // the consume endpoint answers the chain too
      const consumed = await env.admin.call('POST', '/v1/actions/consume', { action_token: a2.body.action_token, audience: AUD }, { token: null });
      assert.equal(consumed.status, 200);
      assert.deepEqual(consumed.body.claims.act, { sub: b.id, act: { sub: env.agent.id } });

      // the tree: nested, each node's state and usage
      const detail = await env.admin.call('GET', `/v1/tasks/${root.id}`);
      assert.equal(detail.status, 200);
      const tree = detail.body.tree;
      assert.equal(tree.id, root.id);
      assert.equal(tree.status, 'active');
      assert.equal(tree.actions_used, 1);
      assert.equal(tree.actions_reserved, 4);
      assert.equal(tree.actions_left, 5);
      assert.equal(tree.children.length, 1);
      const tb = tree.children[0];
      assert.deepEqual(
        { id: tb.id, agent: tb.agent_id, depth: tb.depth, status: tb.status, used: tb.actions_used, reserved: tb.actions_reserved, left: tb.actions_left },
        { id: child.id, agent: b.id, depth: 1, status: 'active', used: 1, reserved: 2, left: 1 },
      );
      assert.equal(tb.children.length, 1);
      assert.deepEqual([tb.children[0].id, tb.children[0].actions_used, tb.children[0].children], [r2.body.id, 1, []]);
      assert.deepEqual(detail.body.delegations.map((d: any) => d.id), [child.id]);
      // the subtree of a child is its own tree
      const sub = await env.admin.call('GET', `/v1/tasks/${child.id}`);
      assert.equal(sub.body.tree.id, child.id);
      assert.equal(sub.body.tree.children[0].id, r2.body.id);

      // the audit log records the delegation with its chain
      const entries = (await env.admin.call('GET', `/v1/audit?type=task.delegated&task_id=${r2.body.id}`)).body.entries;
      assert.equal(entries.length, 1);
      assert.equal(entries[0].actor, `agent:${b.id}`);
      assert.deepEqual(entries[0].data.chain, [env.agent.id, b.id]);
      assert.equal(entries[0].data.parent_id, child.id);
      assert.equal((await env.admin.call('GET', '/v1/audit/verify')).body.ok, true);
    });

    it('policy sees the chain, the depth and the root task, and can refuse a tool at depth >= 2', async () => {
      const b = await newAgent(env, 'policy-b');
      const c = await newAgent(env, 'policy-c');
      const root = await env.createTask({ intent: 'quarterly close', max_actions: 10, scope: ROOT_SCOPE });
      const owner = (await env.admin.call('GET', `/v1/tasks/${root.id}`)).body.owner;
      const policy = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource);

@id("no-deletes-at-depth-2")
forbid (principal, action == Writ::Action::"call", resource)
when { context.delegation.depth >= 2 && resource.name like "*.delete" };

@id("delegated-facts-are-right")
forbid (principal, action == Writ::Action::"call", resource)
when {
  context.delegation.depth == 2 &&
  !(context.delegation.chain.contains("${env.agent.id}") &&
    context.delegation.chain.contains("${b.id}") &&
    !context.delegation.chain.contains("${c.id}") &&
    context.task.depth == 2 &&
    context.task.root_id == "${root.id}" &&
    context.task.root_owner == "${owner}" &&
    context.task.root_intent == "quarterly close" &&
    context.task.intent == "read only")
};
`;
      assert.equal((await env.admin.call('PUT', '/v1/policies', { policies: policy })).status, 200);
      try {
        const aToken = await env.taskToken(root.id);
        const r1 = await delegate(env, aToken, root.id, delegation({ agent_id: b.id, scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, max_actions: 5 }));
        const bToken = await env.taskToken(r1.body.id, b);
        const r2 = await delegate(env, bToken, r1.body.id, delegation({ agent_id: c.id, intent: 'read only', scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, ttl_seconds: 100, max_actions: 3 }));
        assert.equal(r2.status, 201, JSON.stringify(r2.body));
        const cToken = await env.taskToken(r2.body.id, c);

        // depth 1 may delete; depth 2 may not
        assert.equal((await authorize(env, bToken, 'github.issues.delete')).body.decision, 'allow');
        const denied = await authorize(env, cToken, 'github.issues.delete');
        assert.equal(denied.body.decision, 'deny');
        assert.equal(denied.body.reasons[0].code, 'policy_forbids');
        assert.match(denied.body.reasons[0].message, /no-deletes-at-depth-2/);
        // every fact the last policy checks is as expected, or this would be denied
        const ok = await authorize(env, cToken, 'github.issues.get');
        assert.equal(ok.body.decision, 'allow', JSON.stringify(ok.body));
      } finally {
        await env.admin.call('PUT', '/v1/policies', { policies: DEFAULT_POLICY });
      }
    });

    it('refuses every escalation with a clear 403 code, audits it, and creates nothing', async () => {
      const b = await newAgent(env, 'esc-b');
      const c = await newAgent(env, 'esc-c');
      const d = await newAgent(env, 'esc-d');
      const e = await newAgent(env, 'esc-e');
      const root = await env.createTask({ ttl_seconds: 600, max_actions: 10, scope: ROOT_SCOPE });
      const aToken = await env.taskToken(root.id);
      const tried = async (body: Record<string, unknown>, code: string, token = aToken, parent = root.id) => {
        const before = (await env.admin.call('GET', `/v1/tasks/${parent}`)).body;
        const r = await delegate(env, token, parent, body);
        assertRefused(r, 403, code);
        const afterwards = (await env.admin.call('GET', `/v1/tasks/${parent}`)).body;
        assert.deepEqual(afterwards.tree, before.tree, `${code}: nothing created or reserved`);
        return r;
      };

      // wider scope, field by field, including patterns that match only by prefix
      const wide = await tried(delegation({ agent_id: b.id, scope: { tools: ['*'] } }), 'scope_not_subset');
      assert.deepEqual(wide.body.error.details.excess, [{ field: 'tools', patterns: ['*'] }]);
      await tried(delegation({ agent_id: b.id, scope: { tools: ['github*'] } }), 'scope_not_subset');
      await tried(delegation({ agent_id: b.id, scope: { tools: ['git*'] } }), 'scope_not_subset');
      await tried(delegation({ agent_id: b.id, scope: { tools: ['billing.*'] } }), 'scope_not_subset');
      await tried(delegation({ agent_id: b.id, scope: { tools: ['github.get', 'slack.post'] } }), 'scope_not_subset');
      await tried(delegation({ agent_id: b.id, scope: { tools: ['github.get'], resources: ['repo:*'] } }), 'scope_not_subset');
      await tried(delegation({ agent_id: b.id, scope: { tools: ['github.get'], resources: ['repo:acme*'] } }), 'scope_not_subset');
      await tried(delegation({ agent_id: b.id, scope: { tools: ['github.get'], destinations: ['*.github.com'] } }), 'scope_not_subset');
      // a longer lifetime, a bigger budget
      await tried(delegation({ agent_id: b.id, ttl_seconds: 601 }), 'ttl_exceeds_parent');
      await tried(delegation({ agent_id: b.id, ttl_seconds: 86_400 }), 'ttl_exceeds_parent');
      await tried(delegation({ agent_id: b.id, max_actions: 11 }), 'budget_exceeds_parent');
      // to itself
      const self = await tried(delegation({ agent_id: env.agent.id }), 'delegation_cycle');
      assert.match(self.body.error.message, /itself/);

      // within bounds is fine, and the budget left shrinks by what is reserved
      const r1 = await delegate(env, aToken, root.id, delegation({ agent_id: b.id, scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, max_actions: 8 }));
      assert.equal(r1.status, 201, JSON.stringify(r1.body));
      await tried(delegation({ agent_id: c.id, max_actions: 3 }), 'budget_exceeds_parent');
      const bToken = await env.taskToken(r1.body.id, b);
      // a cycle back to an agent already in the chain
      await tried(delegation({ agent_id: env.agent.id, max_actions: 1 }), 'delegation_cycle', bToken, r1.body.id);
      await tried(delegation({ agent_id: b.id, max_actions: 1 }), 'delegation_cycle', bToken, r1.body.id);
      // the child's lifetime bounds its own children
      await tried(delegation({ agent_id: c.id, ttl_seconds: 301 }), 'ttl_exceeds_parent', bToken, r1.body.id);

      // depth: root (0) -> b (1) -> c (2) -> d (3) is the limit; d -> e (4) is refused
      const r2 = await delegate(env, bToken, r1.body.id, delegation({ agent_id: c.id, ttl_seconds: 200, max_actions: 4 }));
      assert.equal(r2.status, 201, JSON.stringify(r2.body));
      const cToken = await env.taskToken(r2.body.id, c);
      await tried(delegation({ agent_id: env.agent.id, ttl_seconds: 100, max_actions: 1 }), 'delegation_cycle', cToken, r2.body.id);
      const r3 = await delegate(env, cToken, r2.body.id, delegation({ agent_id: d.id, ttl_seconds: 100, max_actions: 2 }));
      assert.equal(r3.status, 201, JSON.stringify(r3.body));
      assert.equal(r3.body.depth, 3);
      const dToken = await env.taskToken(r3.body.id, d);
      const deep = await tried(delegation({ agent_id: e.id, ttl_seconds: 50, max_actions: 1 }), 'depth_exceeded', dToken, r3.body.id);
      assert.match(deep.body.error.message, /depth 4; the limit is 3/);

      // the task token names its task: no delegating from someone else's
      assertRefused(await delegate(env, bToken, root.id, delegation({ agent_id: c.id, max_actions: 1 })), 403, 'wrong_task');
      assertRefused(await delegate(env, aToken, root.id, delegation({ agent_id: 'spiffe://acme.test/agent/nobody', max_actions: 1 })), 404, 'agent_not_found');
      assert.equal((await env.admin.call('POST', `/v1/agents/${encodeURIComponent(e.id)}/disable`)).status, 200);
      assertRefused(await delegate(env, aToken, root.id, delegation({ agent_id: e.id, max_actions: 1 })), 409, 'agent_disabled');
      // no token, an operator token: not an agent's task token
      assertRefused(await new Api(env.url).call('POST', `/v1/tasks/${root.id}/delegations`, delegation({ agent_id: c.id })), 401, 'unauthorized');
      assert.equal((await env.admin.call('POST', `/v1/tasks/${root.id}/delegations`, delegation({ agent_id: c.id }))).status, 401);
      // unknown fields are refused at the edge
      assertRefused(await delegate(env, aToken, root.id, { ...delegation({ agent_id: c.id }), depth: 0 }), 400, 'invalid_request');

      const refusals = (await env.admin.call('GET', `/v1/audit?type=delegation.refused&limit=1000`)).body.entries;
      const codes = new Set(refusals.map((x: any) => x.data.reason));
      for (const code of ['scope_not_subset', 'ttl_exceeds_parent', 'budget_exceeds_parent', 'delegation_cycle', 'depth_exceeded']) assert.ok(codes.has(code), code);
    });

    it('reserves budget atomically: concurrent delegations never over-reserve; a child\'s completion returns what it did not use', async () => {
      const b = await newAgent(env, 'budget-b');
      const root = await env.createTask({ max_actions: 10, scope: ROOT_SCOPE });
      const aToken = await env.taskToken(root.id);
      const results = await Promise.all(Array.from({ length: 8 }, () => delegate(env, aToken, root.id, delegation({ agent_id: b.id, max_actions: 3 }))));
      const created = results.filter((r) => r.status === 201);
      assert.equal(created.length, 3, results.map((r) => r.status).join(','));
      for (const r of results.filter((x) => x.status !== 201)) assertRefused(r, 403, 'budget_exceeds_parent');
      let t = (await env.admin.call('GET', `/v1/tasks/${root.id}`)).body;
      assert.equal(t.actions_reserved, 9);
      // the parent itself has 1 left
      assert.equal((await authorize(env, aToken, 'github.get')).body.decision, 'allow');
      assert.equal((await authorize(env, aToken, 'github.get')).body.reasons[0].code, 'budget_exhausted');

      // the child uses 1 of its 3, then completes itself: 2 return to the parent
      const child = created[0]!.body;
      const bToken = await env.taskToken(child.id, b);
      assert.equal((await authorize(env, bToken, 'github.issues.create', { resource: 'repo:acme/api' })).body.decision, 'allow');
      const done = await new Api(env.url, bToken).call('POST', `/v1/tasks/${child.id}/complete`);
      assert.equal(done.status, 200, JSON.stringify(done.body));
      t = (await env.admin.call('GET', `/v1/tasks/${root.id}`)).body;
      assert.equal(t.actions_reserved, 6);
      assert.equal(t.actions_used, 2, 'its own action and the one the child used');
      assert.equal(t.tree.actions_left, 2);
      assert.equal(t.tree.children.find((n: any) => n.id === child.id).status, 'completed');
      // the returned budget is usable: exactly 2 more
      const r = await delegate(env, aToken, root.id, delegation({ agent_id: b.id, max_actions: 2 }));
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assertRefused(await delegate(env, aToken, root.id, delegation({ agent_id: b.id, max_actions: 1 })), 403, 'budget_exceeds_parent');
    });

    it('ending a task ends every descendant at once: a revoked parent\'s child is refused everywhere', async () => {
      const b = await newAgent(env, 'rev-b');
      const c = await newAgent(env, 'rev-c');
      const root = await env.createTask({ max_actions: 10, scope: ROOT_SCOPE });
      const aToken = await env.taskToken(root.id);
      const r1 = await delegate(env, aToken, root.id, delegation({ agent_id: b.id, scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, max_actions: 5 }));
      const bToken = await env.taskToken(r1.body.id, b);
      const r2 = await delegate(env, bToken, r1.body.id, delegation({ agent_id: c.id, scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, ttl_seconds: 100, max_actions: 2 }));
      const cToken = await env.taskToken(r2.body.id, c);
      const pending = await authorize(env, cToken, 'github.get');
      assert.equal(pending.body.decision, 'allow');

      const rev = await env.admin.call('POST', `/v1/tasks/${root.id}/revoke`, { reason: 'compromised' });
      assert.equal(rev.status, 200);
      assert.deepEqual(rev.body.ended, [root.id, r1.body.id, r2.body.id]);

      for (const tok of [bToken, cToken]) {
        const r = await authorize(env, tok, 'github.get');
        assertRefused(r, 401, 'task_not_active');
      }
      // the grandchild's unconsumed action token is dead, new task tokens are refused, no new delegation
      assertRefused(await env.admin.call('POST', '/v1/actions/consume', { action_token: pending.body.action_token, audience: AUD }, { token: null }), 403, 'task_not_active');
      await assert.rejects(env.taskToken(r2.body.id, c), /invalid_grant/);
      assertRefused(await delegate(env, bToken, r1.body.id, delegation({ agent_id: c.id, max_actions: 1 })), 401, 'task_not_active');
      const intro = await env.admin.form('/oauth/introspect', { token: cToken }, env.admin.token);
      assert.deepEqual(intro.body, { active: false });
      const tree = (await env.admin.call('GET', `/v1/tasks/${root.id}`)).body.tree;
      assert.deepEqual([tree.status, tree.children[0].status, tree.children[0].children[0].status], ['revoked', 'revoked', 'revoked']);
      const why = (await env.admin.call('GET', `/v1/audit?type=task.revoked&task_id=${r2.body.id}`)).body.entries[0];
      assert.equal(why.data.reason, 'ancestor_ended');
      assert.equal(why.data.ancestor, root.id);
    });

    it('an agent completing its own task ends what it delegated; disabling an agent ends its tasks and their descendants', async () => {
      const b = await newAgent(env, 'end-b');
      const c = await newAgent(env, 'end-c');
      const root = await env.createTask({ max_actions: 10, scope: ROOT_SCOPE });
      const aToken = await env.taskToken(root.id);
      const r1 = await delegate(env, aToken, root.id, delegation({ agent_id: b.id, scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, max_actions: 5 }));
      const bToken = await env.taskToken(r1.body.id, b);
      const r2 = await delegate(env, bToken, r1.body.id, delegation({ agent_id: c.id, scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, ttl_seconds: 100, max_actions: 2 }));
      const cToken = await env.taskToken(r2.body.id, c);

      // b completes its sub-task: c's is revoked, the root goes on
      const done = await new Api(env.url, bToken).call('POST', `/v1/tasks/${r1.body.id}/complete`);
      assert.deepEqual(done.body.ended, [r1.body.id, r2.body.id]);
      assertRefused(await authorize(env, cToken, 'github.get'), 401, 'task_not_active');
      assert.equal((await authorize(env, aToken, 'github.get')).body.decision, 'allow');
      const t = (await env.admin.call('GET', `/v1/tasks/${root.id}`)).body;
      assert.equal(t.actions_reserved, 0, 'all reserved budget returned');

      // disabling b revokes the task b holds and everything delegated from it, not the root
      const r3 = await delegate(env, aToken, root.id, delegation({ agent_id: b.id, scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, max_actions: 4 }));
      const b2 = await env.taskToken(r3.body.id, b);
      const r4 = await delegate(env, b2, r3.body.id, delegation({ agent_id: c.id, scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, ttl_seconds: 100, max_actions: 2 }));
      const c2 = await env.taskToken(r4.body.id, c);
      const dis = await env.admin.call('POST', `/v1/agents/${encodeURIComponent(b.id)}/disable`);
      assert.equal(dis.status, 200);
      assert.ok(dis.body.revoked_task_ids.includes(r3.body.id) && dis.body.revoked_task_ids.includes(r4.body.id), JSON.stringify(dis.body));
      assertRefused(await authorize(env, c2, 'github.get'), 401, 'task_not_active');
      assert.equal((await authorize(env, aToken, 'github.get')).body.decision, 'allow');
    });
  });

  describe(`delegation: expiry cascades (${backend})`, { skip }, () => {
    let env: Env;
    const clock = new ManualClock();
    before(async () => {
      clock.set(Date.now());
      env = await setup(backend, { clock, config: { maxDelegationDepth: 1 } });
    });
    after(async () => env?.teardown());

    it('an expired parent takes its children with it, through the API and the sweeper; the depth limit is configurable', async () => {
      const b = await newAgent(env, 'exp-b');
      const c = await newAgent(env, 'exp-c');
      const root = await env.createTask({ ttl_seconds: 120, max_actions: 10, scope: ROOT_SCOPE });
      const aToken = await env.taskToken(root.id);
      const r1 = await delegate(env, aToken, root.id, delegation({ agent_id: b.id, scope: { tools: ['github.*'] }, ttl_seconds: 120, max_actions: 3 }));
      assert.equal(r1.status, 201, JSON.stringify(r1.body));
      const bToken = await env.taskToken(r1.body.id, b);
      // maxDelegationDepth 1: b may not delegate further
      assertRefused(await delegate(env, bToken, r1.body.id, delegation({ agent_id: c.id, ttl_seconds: 60, max_actions: 1 })), 403, 'depth_exceeded');

      clock.advance(121_000);
      assertRefused(await authorize(env, bToken, 'github.get'), 401, 'task_not_active');
      const before = (await env.admin.call('GET', `/v1/tasks/${root.id}`)).body.tree;
      assert.deepEqual([before.status, before.children[0].status], ['expired', 'expired']);
      const ended = await env.store.expireTasks(clock.now());
      assert.ok(ended.includes(root.id) && ended.includes(r1.body.id));
      const tree = (await env.admin.call('GET', `/v1/tasks/${root.id}`)).body.tree;
      assert.equal(tree.status, 'expired');
      assert.ok(['expired', 'revoked'].includes(tree.children[0].status));
      assert.equal(tree.actions_reserved, 0);
      // a fresh client assertion for the expired task is refused
      const assertion = await makeAssertion(b, env.url, { iat: Math.floor(clock.now() / 1000) });
      const r = await env.admin.form('/oauth/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion, task_id: r1.body.id });
      assert.equal(r.body.error, 'invalid_grant');
    });
  });
}
