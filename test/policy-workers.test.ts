import { availableParallelism } from 'node:os';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { UsageError } from '../src/cli/args.js';
import { limitsConfigFromEnv } from '../src/cli/limits-env.js';
import { UnavailableError } from '../src/core/errors.js';
import { PolicyEngine } from '../src/policy/engine.js';
import { cedar } from '../src/policy/cedar-runtime.js';
import { buildCedarRequest } from '../src/policy/request.js';
import type { AgentRecord, TaskRecord } from '../src/core/types.js';
import { backends, setup } from './helpers/harness.js';

const agent: AgentRecord = { id: 'a1', name: 'a1', jwks: { keys: [] }, labels: ['team0'], status: 'active', createdAt: 0, createdBy: 'op' };
const task: TaskRecord = {
  id: 't1', agentId: 'a1', owner: 'op', intent: 'x', scope: { tools: ['*'], resources: [], destinations: [] }, status: 'active',
  createdAt: 0, expiresAt: 1e15, endedAt: null, maxActions: 100, actionsUsed: 3, actionsReserved: 0, parentId: null, rootId: 't1', depth: 0,
};
const POLICY = `
@id("p") permit (principal in Writ::AgentGroup::"team0", action, resource in Writ::ToolGroup::"git") when { context.args.hasTag("branch") };
@id("f") forbid (principal, action, resource == Writ::Tool::"git.push") when { context.args.hasTag("branch") && context.args.getTag("branch") == "main" };`;

function request(engine: PolicyEngine, tool: string, args: Record<string, unknown>) {
  const set = engine.active();
  return buildCedarRequest({ agent, task, action: { tool, arguments: args, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: true, argReads: { numeric: set.numericTagsRead, strings: set.stringTagsRead } });
}

/** Until `check` holds, polling every 20 ms for up to 60 s (a worker restarts on a busy machine). */
async function until(check: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 60_000;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('policy workers: Cedar on worker threads, failing closed', () => {
  it('WRIT_POLICY_WORKERS and WRIT_POLICY_WORKER_TIMEOUT_MS: whole numbers in range, anything else refused', () => {
    assert.deepEqual(limitsConfigFromEnv({ WRIT_POLICY_WORKERS: '1', WRIT_POLICY_WORKER_TIMEOUT_MS: '500' }), { policyWorkers: 1, policyWorkerTimeoutMs: 500 });
    assert.deepEqual(limitsConfigFromEnv({ WRIT_POLICY_WORKERS: '0' }), { policyWorkers: 0 });
    // auto (writ serve's default): one worker with a second core, none on one
    assert.deepEqual(limitsConfigFromEnv({ WRIT_POLICY_WORKERS: 'auto' }), { policyWorkers: availableParallelism() >= 2 ? 1 : 0 });
    for (const [name, bad] of [
      ['WRIT_POLICY_WORKERS', '65'], ['WRIT_POLICY_WORKERS', '-1'], ['WRIT_POLICY_WORKERS', '1.5'], ['WRIT_POLICY_WORKERS', 'two'], ['WRIT_POLICY_WORKERS', ' 1'],
      ['WRIT_POLICY_WORKER_TIMEOUT_MS', '0'], ['WRIT_POLICY_WORKER_TIMEOUT_MS', '1e3'], ['WRIT_POLICY_WORKER_TIMEOUT_MS', '-5'],
    ] as const) {
      assert.throws(() => limitsConfigFromEnv({ [name]: bad }), UsageError, `${name}=${bad}`);
    }
  });

  it('answers exactly as the main thread does, allows and denies alike', async () => {
    const engine = new PolicyEngine({ workers: 2, workerTimeoutMs: 60_000 });
    try {
      engine.load(POLICY);
      for (const [tool, args] of [['git.pull', { branch: 'dev' }], ['git.push', { branch: 'main' }], ['git.push', { branch: 'dev' }], ['git.pull', {}], ['db.x', { branch: 'x' }]] as const) {
        const req = request(engine, tool, args);
        assert.deepEqual(await engine.evaluateAsync(req), engine.evaluate(req), `${tool} ${JSON.stringify(args)}`);
      }
      assert.equal((await engine.evaluateAsync(request(engine, 'git.push', { branch: 'main' }))).decision, 'deny');
      assert.equal((await engine.evaluateAsync(request(engine, 'git.push', { branch: 'dev' }))).decision, 'allow');
      // Cedar's failure answers come back as they are too (the worker hands JSON text through)
      const unknown = { ...PolicyEngine.statefulCall(request(engine, 'git.push', { branch: 'dev' }), engine.active()), preparsedPolicySetId: 'no-such-set' };
      const failed = await engine.pool!.evaluate(unknown);
      assert.deepEqual(failed, { answer: cedar().statefulIsAuthorized(unknown) });
      assert.equal((failed as { answer: { type: string } }).answer.type, 'failure');
    } finally {
      await engine.close();
    }
  });

  it('a lone call (`inline`) is evaluated on this thread while no worker holds a call, and by the workers otherwise', async () => {
    const engine = new PolicyEngine({ workers: 1, workerTimeoutMs: 60_000 });
    try {
      engine.load(POLICY);
      const pool = engine.pool!;
      let hops = 0;
      const hop = pool.evaluateText.bind(pool);
      pool.evaluateText = (call) => {
        hops += 1;
        return hop(call);
      };
      // each a call never decided before (a decided one is answered from the engine's memo)
      const req = request(engine, 'git.push', { branch: 'dev' });
      assert.deepEqual(await engine.evaluateAsync(req, undefined, { inline: true }), engine.evaluate(req));
      assert.equal(hops, 0, 'no hop to a worker');
      await engine.evaluateAsync(request(engine, 'git.push', { branch: 'dev2' }));
      assert.equal(hops, 1, 'without the hint, the worker');
      await engine.evaluateAsync(req);
      assert.equal(hops, 1, 'a call decided before: no hop');
      // a worker holding a call (here one that hangs): the lone call goes to the workers
      // too, and fails closed with them
      pool.stallForTest(0, 60_000);
      const queued = engine.evaluateAsync(request(engine, 'git.push', { branch: 'dev3' }), undefined, { inline: true });
      assert.equal(hops, 2);
      await engine.close();
      await assert.rejects(queued, (err: unknown) => err instanceof UnavailableError && err.code === 'policy_unavailable');
    } finally {
      await engine.close();
    }
  });

  it('the calls of one turn go to a worker in one message, each answered as on this thread; a crash fails every one of them', async () => {
    const engine = new PolicyEngine({ workers: 1, workerTimeoutMs: 60_000 });
    try {
      engine.load(POLICY);
      const worker = engine.pool!.workersForTest()[0]!;
      const post = worker.postMessage.bind(worker);
      const sent: { t: string; calls?: string[] }[] = [];
      worker.postMessage = (m: { t: string; calls?: string[] }) => {
        sent.push(m);
        post(m);
      };
      const cases = [['git.push', { branch: 'main' }], ['git.push', { branch: 'b1' }], ['git.pull', {}], ['db.x', { branch: 'x' }], ['git.pull', { branch: 'b2' }]] as const;
      const reqs = cases.map(([tool, args]) => request(engine, tool, args));
      const unknown = { ...PolicyEngine.statefulCall(request(engine, 'git.push', { branch: 'b3' }), engine.active()), preparsedPolicySetId: 'no-such-set' };
      const [failed, ...got] = await Promise.all([engine.pool!.evaluate(unknown), ...reqs.map((r) => engine.evaluateAsync(r))]);
      assert.deepEqual(sent.map((m) => [m.t, m.calls?.length]), [['eval', 6]], 'one message for the six calls');
      assert.deepEqual(got, reqs.map((r) => engine.evaluate(r)));
      assert.deepEqual(got.map((e) => e.decision), ['deny', 'allow', 'deny', 'deny', 'allow']);
      assert.deepEqual(failed, { answer: cedar().statefulIsAuthorized(unknown) });

      // a batch in the hands of a worker that dies: every call in it fails closed
      engine.pool!.stallForTest(0, 30_000);
      const pending = ['c1', 'c2', 'c3'].map((b) => engine.evaluateAsync(request(engine, 'git.push', { branch: b })));
      await new Promise((r) => setImmediate(r));
      await worker.terminate();
      for (const p of pending) await assert.rejects(p, (err: unknown) => err instanceof UnavailableError && err.code === 'policy_unavailable');
    } finally {
      await engine.close();
    }
  });

  it('a worker that crashes with a call in hand fails it with 503 policy_unavailable, and its replacement answers the next', async () => {
    const engine = new PolicyEngine({ workers: 1, workerTimeoutMs: 60_000 });
    try {
      engine.load(POLICY);
      engine.pool!.stallForTest(0, 30_000); // the call below waits behind this
      const pending = engine.evaluateAsync(request(engine, 'git.push', { branch: 'dev' }));
      await engine.pool!.workersForTest()[0]!.terminate();
      await assert.rejects(pending, (err: unknown) => err instanceof UnavailableError && err.status === 503 && err.code === 'policy_unavailable');
      await until(() => engine.pool!.replaced === 1, 'the replacement');
      // the replacement has every set preparsed again: same answers
      assert.equal((await engine.evaluateAsync(request(engine, 'git.push', { branch: 'dev' }))).decision, 'allow');
      assert.equal((await engine.evaluateAsync(request(engine, 'git.push', { branch: 'main' }))).decision, 'deny');
    } finally {
      await engine.close();
    }
  });

  it('a worker that does not answer in time fails the call with 503 (never allow) and is replaced', async () => {
    const engine = new PolicyEngine({ workers: 1, workerTimeoutMs: 300 });
    try {
      engine.load(POLICY);
      engine.pool!.stallForTest(0, 60_000);
      const started = Date.now();
      await assert.rejects(engine.evaluateAsync(request(engine, 'git.push', { branch: 'dev' })), (err: unknown) => err instanceof UnavailableError && err.code === 'policy_unavailable');
      assert.ok(Date.now() - started < 30_000, 'the timeout fired, not the stall');
      assert.equal(engine.pool!.replaced, 1);
      // a new worker, with a fresh WebAssembly start: give it the generous timeout a busy machine needs
      const again = new PolicyEngine({ workers: 1, workerTimeoutMs: 60_000 });
      again.load(POLICY);
      assert.equal((await again.evaluateAsync(request(again, 'git.push', { branch: 'dev' }))).decision, 'allow');
      await again.close();
    } finally {
      await engine.close();
    }
  });

  it('after close, calls fail closed', async () => {
    const engine = new PolicyEngine({ workers: 1, workerTimeoutMs: 60_000 });
    engine.load(POLICY);
    await engine.close();
    await assert.rejects(engine.evaluateAsync(request(engine, 'git.push', { branch: 'dev' })), (err: unknown) => err instanceof UnavailableError);
  });
});

for (const { backend, skip } of backends()) {
  describe(`authorize with policy workers (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    before(async () => {
      env = await setup(backend, { config: { policyWorkers: 1, policyWorkerTimeoutMs: 500 } });
    });
    after(async () => env?.teardown());

    const ACTION = { tool: 'github.create_issue', arguments: { title: 'x' }, audience: 'https://tools.example/github', resource: 'repo:acme/api', destination: 'api.github.com' };

    it('allows through a worker; a stalled worker answers 503 with nothing allowed or recorded, then the replacement allows', async () => {
      const task = await env.createTask({ scope: { tools: ['github.*'], resources: ['repo:acme/*'], destinations: ['api.github.com'] } });
      const agentApi = new (env.admin.constructor as any)(env.url, await env.taskToken(task.id));
      const ok = await agentApi.call('POST', '/v1/authorize', ACTION);
      assert.equal(ok.status, 200);
      assert.equal(ok.body.decision, 'allow');

      env.writ.policy.engine.pool!.stallForTest(0, 60_000);
      // a call never decided before (the one above is answered from the engine's memo, worker or not)
      const failed = await agentApi.call('POST', '/v1/authorize', { ...ACTION, tool: 'github.create_pr' });
      assert.equal(failed.status, 503);
      assert.equal(failed.body.error.code, 'policy_unavailable', JSON.stringify(failed.body));
      assert.equal(failed.body.action_token, undefined);
      const decisions = await env.store.listDecisions(task.id);
      assert.equal(decisions.length, 1, 'only the first decision was recorded');

      // the replacement worker starts cold: retry until it answers within the short timeout
      let again: any;
      const end = Date.now() + 60_000;
      do again = await agentApi.call('POST', '/v1/authorize', { ...ACTION, tool: 'github.create_pr' });
      while (again.status === 503 && Date.now() < end);
      assert.equal(again.status, 200);
      assert.equal(again.body.decision, 'allow');
    });
  });
}
