import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WritError } from '../src/core/errors.js';
import { checkPolicyComplexity, DEFAULT_COMPLEXITY_LIMITS } from '../src/policy/complexity.js';
import { cedar } from '../src/policy/cedar-runtime.js';
import { PolicyEngine } from '../src/policy/engine.js';
import { buildCedarRequest } from '../src/policy/request.js';
import { DEFAULT_POLICY } from '../src/policy/schema.js';
import { Writ } from '../src/app/writ.js';
import { Api, backends, setup } from './helpers/harness.js';

/**
 * A policy cannot take Cedar down: over-deep or over-large policies are refused by a
 * cheap scan before any text reaches Cedar; a new set is tried in a throwaway worker
 * before it is stored; a trap at run time replaces the engine's WebAssembly instance
 * and denies the request that hit it. Writ keeps deciding after every attempt.
 */

const nestIf = (n: number, inner = 'true') => {
  let c = inner;
  for (let i = 0; i < n; i++) c = `if true then ${c} else false`;
  return c;
};
const permitWhen = (cond: string, id = 'deep') => `@id("${id}")\npermit (principal, action == Writ::Action::"call", resource)\nwhen { ${cond} };\n`;

/** the two policies of the report, and the variants (each valid Cedar, or at least parseable) */
const TOO_COMPLEX: Record<string, string> = {
  '450 nested if': permitWhen(nestIf(450)),
  '130 nested parentheses': permitWhen(`${'('.repeat(130)}true${')'.repeat(130)}`),
  'a deep && chain': permitWhen(Array(200).fill('context.break_glass').join(' && ')),
  'a deep || chain': permitWhen(Array(200).fill('context.break_glass').join(' || ')),
  'a deep . chain': permitWhen(`context.task${'.id'.repeat(150)} == "x"`),
  'a deep has chain': permitWhen(`context has ${Array(150).fill('a').join('.')}`),
  'a long like pattern': permitWhen(`context.task.intent like "${'a'.repeat(5000)}"`),
  'a like pattern with many wildcards': permitWhen(`context.task.intent like "${'*a'.repeat(20)}"`),
  'a deep record': permitWhen(`${'{a: '.repeat(90)}1${'}'.repeat(90)} == {}`),
  'a deep set': permitWhen(`${'['.repeat(90)}1${']'.repeat(90)}.contains(1)`),
  'nested contains': permitWhen(Array.from({ length: 20 }, () => '[1].contains(').join('') + '1' + ')'.repeat(20)),
  'nested if on context facts': permitWhen(nestIf(150, 'context.owner_present').replaceAll('if true', 'if context.owner_present')),
  '10,000 unclosed parentheses': `permit (principal, action, resource) when { ${'('.repeat(10_000)}`,
  'a huge flat expression': permitWhen(`[${Array(12_000).fill('1').join(', ')}].contains(1)`),
};

/** parses, but converting it to JSON traps Cedar ("memory access out of bounds", cedar-wasm 4.13; 450 traps only sometimes) */
const TRAPPING = permitWhen(nestIf(1000));

describe('policy complexity scan', () => {
  for (const [name, text] of Object.entries(TOO_COMPLEX)) {
    it(`refuses ${name}, naming the policy and the limit`, () => {
      assert.throws(
        () => checkPolicyComplexity(text),
        (e: WritError) => e.code === 'policy_too_complex' && e.status === 400 && /policy `(deep|line \d+ \(no @id\))`/.test(e.message) && /\d/.test(e.message),
      );
    });
  }

  it('passes ordinary policies, brackets in strings and comments, escaped stars, and names an unnamed policy by its line, with a located diagnostic', () => {
    checkPolicyComplexity(DEFAULT_POLICY);
    const ordinary = permitWhen(
      Array.from({ length: 12 }, (_, i) => `(context has resource && context.resource like "repo:acme/*" && context.task.intent != "x${i}")`).join(' || '),
    );
    checkPolicyComplexity(ordinary);
    checkPolicyComplexity(permitWhen(`context.task.intent == "${'('.repeat(500)}" // ${'['.repeat(500)}\n && true`));
    checkPolicyComplexity(permitWhen(`context.task.intent like "${'\\*a'.repeat(40)}"`));
    checkPolicyComplexity(permitWhen(`context.task.intent like "${'*a'.repeat(DEFAULT_COMPLEXITY_LIMITS.maxLikeWildcards)}"`));
    const lines = DEFAULT_POLICY.split('\n').length;
    assert.throws(
      () => checkPolicyComplexity(DEFAULT_POLICY + `permit (principal, action, resource) when { ${nestIf(40)} };`),
      (e: WritError) => {
        assert.match(e.message, new RegExp(`policy \`line ${lines} \\(no @id\\)\``));
        const [d] = (e.details as { diagnostics: { line: number; column: number; excerpt: string }[] }).diagnostics;
        assert.equal(d!.line, lines);
        assert.ok(d!.column > 40 && /\^$/.test(d!.excerpt), JSON.stringify(d));
        return true;
      },
    );
  });

  it('scans without recursion: a megabyte of brackets is refused at once', () => {
    const t = performance.now();
    assert.throws(() => checkPolicyComplexity('['.repeat(1 << 20)), { code: 'policy_too_complex' });
    assert.throws(() => checkPolicyComplexity(`permit(principal, action, resource) when { ${'!'.repeat(1 << 20)}true };`), { code: 'policy_too_complex' });
    assert.ok(performance.now() - t < 5000);
  });
});

describe('a Cedar trap replaces the engine and denies the request that hit it', () => {
  const agent = { id: 'spiffe://acme.test/agent/a', name: 'a', jwks: { keys: [] }, labels: [], status: 'active' as const, createdAt: 0, createdBy: 'op' };
  const task = {
    id: 'task_1', agentId: agent.id, owner: 'op', intent: 'x', scope: { tools: ['*'], resources: [], destinations: [] },
    status: 'active' as const, createdAt: 0, expiresAt: Date.now() + 60_000, endedAt: null, maxActions: 10, actionsUsed: 0, actionsReserved: 0, parentId: null, rootId: 'task_1', depth: 0,
  };
  const request = buildCedarRequest({ agent, task, now: Date.now(), withArgs: false, argsDigest: 'd', action: { tool: 'github.x', arguments: {}, audience: 'a' } });
  it('a trap while loading (1000 nested if past a lax scan): refused, the instance replaced, every engine decides afterwards', () => {
    const other = new PolicyEngine();
    other.load(DEFAULT_POLICY);
    const engine = new PolicyEngine({ limits: { maxDepth: 100_000 } });
    const traps: string[] = [];
    engine.onTrap = (t) => traps.push(`${t.operation}: ${t.message}`);
    const before = cedar();
    assert.throws(() => engine.load(TRAPPING), { code: 'policy_too_complex' });
    assert.equal(traps.length, 1);
    assert.match(traps[0]!, /^load: /);
    assert.notEqual(cedar(), before, 'a new instance');
    const good = engine.load(DEFAULT_POLICY);
    assert.equal(engine.evaluate(request, good).decision, 'allow');
    assert.equal(other.evaluate(request).decision, 'allow', 'another engine preparses its sets into the new instance');
  });

  it('a trap while deciding or evaluating partially denies that request; the instance is never used again', () => {
    const engine = new PolicyEngine();
    const traps: string[] = [];
    engine.onTrap = (t) => traps.push(t.operation);
    const set = engine.load(DEFAULT_POLICY);
    for (const fn of ['statefulIsAuthorized', 'isAuthorizedPartial'] as const) {
      // fault injection: the current instance traps as cedar-wasm does on a stack overflow
      const poisoned = cedar();
      const calls: string[] = [];
      (poisoned as unknown as Record<string, unknown>)[fn] = () => {
        calls.push(fn);
        throw new WebAssembly.RuntimeError('memory access out of bounds');
      };
      if (fn === 'statefulIsAuthorized') {
        const d = engine.evaluate(request, set);
        assert.equal(d.decision, 'deny');
        assert.match(d.errors[0]!.message, /policy engine failed \(memory access out of bounds\)/);
      } else {
        assert.equal(engine.couldAllow(request, set), 'deny', 'fail closed: the tool is hidden');
      }
      assert.notEqual(cedar(), poisoned);
      assert.equal(engine.evaluate(request, set).decision, 'allow');
      assert.equal(engine.couldAllow(request, set), 'allow');
      assert.deepEqual(calls, [fn], 'the poisoned instance was not called again');
    }
    assert.deepEqual(traps, ['evaluate', 'partial evaluation']);
  });
});

for (const { backend, skip } of backends()) {
  describe(`Writ refuses policies that would break Cedar and keeps deciding (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    let agentApi: Api;
    let taskId: string;
    before(async () => {
      env = await setup(backend, { config: { policyMaxDepth: 32 } });
      const task = await env.createTask({ max_actions: 1000 });
      taskId = task.id;
      agentApi = new Api(env.url, await env.taskToken(task.id));
    });
    after(async () => env?.teardown());

    const stillDeciding = async () => {
      const r = await agentApi.call('POST', '/v1/authorize', { tool: 'github.create_issue', arguments: { title: 't' }, audience: 'https://tools.example/github' });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.decision, 'allow');
      const v = await agentApi.call('POST', '/v1/tools/visible', { tools: ['github.create_issue', 'billing.read'] });
      assert.equal(v.status, 200, JSON.stringify(v.body));
      assert.deepEqual(v.body.tools, ['github.create_issue', 'billing.read']);
    };

    it('refuses each over-complex policy with 400 policy_too_complex; the active policy stays', async () => {
      const before = (await env.admin.call('GET', '/v1/policies')).body.version;
      for (const [name, text] of Object.entries(TOO_COMPLEX)) {
        if (text.length > 60_000) continue; // over the 64 KiB body limit: 413 before the scan
        const r = await env.admin.call('PUT', '/v1/policies', { policies: text });
        assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body).slice(0, 200)}`);
        assert.equal(r.body.error.code, 'policy_too_complex', name);
        assert.match(r.body.error.message, /policy `(deep|line \d+ \(no @id\))`/, name);
        assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, before);
        await stillDeciding();
      }
    });

    it('a set past the scan is tried in a worker first: a trap there refuses it, and this process never runs it', async () => {
      const lax = new Writ(await env.opened.another(), { issuer: env.writ.config.issuer, policyMaxDepth: 100_000 });
      await lax.init();
      const admin = await lax.identity.authenticateOperator(env.admin.token!);
      const trapping = TRAPPING;
      await assert.rejects(lax.policy.putPolicy(admin, trapping), (e: WritError) => e.code === 'policy_too_complex' && /trial/.test(e.message));
      assert.equal(lax.policy.engine.traps, 0, 'the trap happened in the worker, not here');
      const ctx = await lax.tokens.authenticateTask(agentApi.token!);
      const d = await lax.authz.authorize(ctx, { tool: 'github.create_issue', arguments: {}, audience: 'https://tools.example/github' });
      assert.equal(d.decision, 'allow');
      await stillDeciding();
    });

    it('makes a new set active only once stored: a failed store leaves the previous one in force', async () => {
      const before = (await env.admin.call('GET', '/v1/policies')).body.version;
      const store = env.writ.store as { putPolicy: (...a: unknown[]) => Promise<void> };
      const put = store.putPolicy;
      store.putPolicy = async () => {
        throw new WritError('store_unavailable', 'down', 503);
      };
      try {
        const forbidAll = '@id("nothing")\nforbid (principal, action, resource);\n';
        const r = await env.admin.call('PUT', '/v1/policies', { policies: forbidAll });
        assert.equal(r.status, 503);
      } finally {
        store.putPolicy = put;
      }
      assert.equal(env.writ.policy.engine.active().version, before);
      await stillDeciding();
    });

    it('a restart on a store whose active set fails the checks: decisions fail closed until an admin stores a good one', async () => {
      const bad = permitWhen(nestIf(450));
      const { policyVersion } = await import('../src/policy/engine.js');
      await env.store.putPolicy({ version: policyVersion(bad), text: bad, createdAt: Date.now(), createdBy: 'test' }, { type: 'policy.updated', actor: 'system', data: {} });
      const restarted = new Writ(await env.opened.another(), { issuer: env.writ.config.issuer });
      await restarted.init();
      assert.equal((await restarted.ready()).policy, false);
      const ctx = await restarted.tokens.authenticateTask(agentApi.token!);
      await assert.rejects(restarted.authz.authorize(ctx, { tool: 'github.create_issue', arguments: {}, audience: 'x' }), { code: 'policy_unavailable', status: 503 });
      const admin = await restarted.identity.authenticateOperator(env.admin.token!);
      await restarted.policy.putPolicy(admin, DEFAULT_POLICY + '\n// restored\n');
      const d = await restarted.authz.authorize(ctx, { tool: 'github.create_issue', arguments: {}, audience: 'x' });
      assert.equal(d.decision, 'allow');
      // the running instance picks up the good set too
      for (let i = 0; i < 100; i++) {
        const r = await agentApi.call('POST', '/v1/authorize', { tool: 'github.create_issue', arguments: {}, audience: 'x' });
        if (r.status === 200 && r.body.decision === 'allow') break;
        await new Promise((ok) => setTimeout(ok, 200));
      }
      await stillDeciding();
      assert.ok(taskId);
    });
  });
}
