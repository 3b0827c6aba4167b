import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { SCOPE_LIMITS } from '../src/core/scope-limits.js';
import { Api, BOOT_TOKEN, makeAgentKeys, makeAssertion, startInstance, type AgentKeys, type Instance } from './helpers/harness.js';

/**
 * No single request can stall Writ: scope sizes are bounded (400 `scope_too_large`, for
 * task creation and delegation alike), and the subset check of a delegation at those
 * bounds costs milliseconds, so the event loop keeps turning while adversarial
 * delegations are processed.
 */
describe('scope bounds and the cost of the delegation check', () => {
  let dir: string;
  let store: SqliteStore;
  let inst: Instance;
  let admin: Api;
  let parent: AgentKeys;
  let child: AgentKeys;

  const token = async (a: AgentKeys, taskId: string) => {
    const r = await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(a, inst.url),
      task_id: taskId,
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };
  const createTask = (scope: unknown, maxActions = 10) =>
    admin.call('POST', '/v1/tasks', { agent_id: parent.id, intent: 'scope limits', scope, ttl_seconds: 600, max_actions: maxActions });

  before(async () => {
    // tmpfs where there is one: this suite measures the event loop, not the disk's fsync
    dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'writ-scope-'));
    store = new SqliteStore({ path: join(dir, 'writ.db') });
    inst = await startInstance(store);
    await inst.writ.identity.bootstrapAdmin(BOOT_TOKEN);
    admin = new Api(inst.url, BOOT_TOKEN);
    parent = await makeAgentKeys('spiffe://acme.test/agent/parent');
    child = await makeAgentKeys('spiffe://acme.test/agent/child');
    for (const a of [parent, child]) {
      const r = await admin.call('POST', '/v1/agents', { id: a.id, jwks: { keys: [a.publicJwk] } });
      assert.equal(r.status, 201);
    }
  });
  after(async () => {
    await inst?.close();
    await inst?.writ.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  const many = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i));
  const stars = (n: number) => `x${'*y'.repeat(n)}`;

  it('task creation: every bound gives 400 `scope_too_large`, in each list; exactly at the bound is accepted', async () => {
    const { patternsPerList: N, patternLength: L, starsPerPattern: S } = SCOPE_LIMITS;
    const over: [string, unknown][] = [
      ['too many tools', { tools: many(N + 1, (i) => `t${i}`) }],
      ['too many resources', { tools: ['a'], resources: many(N + 1, (i) => `r${i}`) }],
      ['too many destinations', { tools: ['a'], destinations: many(N + 1, (i) => `d${i}.example`) }],
      ['a long tool pattern', { tools: ['a'.repeat(L + 1)] }],
      ['a long resource pattern', { tools: ['a'], resources: ['ok', 'r'.repeat(L + 1)] }],
      ['a long destination pattern', { tools: ['a'], destinations: ['d'.repeat(L + 1)] }],
      ['too many `*` in a tool', { tools: [stars(S + 1)] }],
      ['too many `*` in a resource', { tools: ['a'], resources: [stars(S + 1)] }],
      ['too many `*` in a destination', { tools: ['a'], destinations: [stars(S + 1)] }],
      // near variants: a `*` at either end, runs of `*` apart
      ['`*` at both ends', { tools: [`*${'a*'.repeat(S)}`] }],
      ['a list far past the bound', { tools: many(5000, () => 'a') }],
    ];
    for (const [what, scope] of over) {
      const r = await createTask(scope);
      assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'scope_too_large', what);
      assert.match(r.body.error.message, /at most|limit/, what);
    }
    const atBound = await createTask({
      tools: many(N, (i) => `t${i}.${'*x'.repeat(S - 1)}*`),
      resources: many(N, (i) => `r${i}`.padEnd(L, 'r')),
      destinations: [stars(S)],
    });
    assert.equal(atBound.status, 201, JSON.stringify(atBound.body));
    // `**` matches what `*` matches: a run counts once
    assert.equal((await createTask({ tools: [`a${'**b'.repeat(S)}`] })).status, 201);
    // a malformed pattern is still `invalid_request`, not a size error
    const bad = await createTask({ tools: ['has space'] });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'invalid_request');
    const empty = await createTask({ tools: [] });
    assert.equal(empty.body.error.code, 'invalid_request');
  });

  it('delegation: the same bounds, checked before the subset check, with nothing audited as a refusal', async () => {
    const root = await createTask({ tools: ['*'], resources: ['*'], destinations: ['*'] }, 100);
    assert.equal(root.status, 201);
    const tt = await token(parent, root.body.id);
    const api = new Api(inst.url, tt);
    const before = (await admin.call('GET', '/v1/audit?type=delegation.refused&limit=1000')).body.entries.length;
    for (const scope of [
      { tools: many(SCOPE_LIMITS.patternsPerList + 1, (i) => `t${i}`) },
      { tools: ['a'], resources: [stars(SCOPE_LIMITS.starsPerPattern + 1)] },
      { tools: ['a'], destinations: ['d'.repeat(SCOPE_LIMITS.patternLength + 1)] },
    ]) {
      const r = await api.call('POST', `/v1/tasks/${root.body.id}/delegations`, { agent_id: child.id, intent: 'x', scope, ttl_seconds: 60, max_actions: 1 });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'scope_too_large');
    }
    assert.equal((await admin.call('GET', '/v1/audit?type=delegation.refused&limit=1000')).body.entries.length, before);
  });

  it('adversarial delegations at the bounds never block the event loop for more than 50 ms; /healthz keeps answering', async () => {
    const { patternsPerList: N, patternLength: L, starsPerPattern: S } = SCOPE_LIMITS;
    // Parent patterns whose literal runs almost match the child text everywhere: the
    // worst case for a check that searches each run in turn.
    const run = Math.floor((L - S - 1) / S);
    const parentPattern = (i: number) => `${'*'.concat('a'.repeat(run - 1), String.fromCharCode(98 + (i % 20))).repeat(S)}`.slice(0, L);
    // destinations must be canonical host patterns (labels of at most 63 characters, a
    // host of at most 253): the same patterns cut into labels
    const asHost = (p: string) => p.slice(0, 240).replace(/(.{60})(?=.)/g, '$1.');
    const parentScope = { tools: many(N, parentPattern), resources: many(N, parentPattern), destinations: many(N, (i) => asHost(parentPattern(i))) };
    const root = await createTask(parentScope, 1000);
    assert.equal(root.status, 201, JSON.stringify(root.body));
    const api = new Api(inst.url, await token(parent, root.body.id));
    const childPattern = (i: number) => `${'a'.repeat(L - S - 2)}${'*a'.repeat(S)}`.slice(0, L - (i % 3));
    const childScope = { tools: many(N, childPattern), resources: many(N, childPattern), destinations: many(N, (i) => asHost(childPattern(i))) };
    const delegateOnce = () => api.call('POST', `/v1/tasks/${root.body.id}/delegations`, { agent_id: child.id, intent: 'x', scope: childScope, ttl_seconds: 60, max_actions: 1 });

    // monitorEventLoopDelay counts wall-clock lateness, which includes the time a busy
    // machine holds the whole process off the CPU (the shared test machine often runs at
    // several times its core count). So the suite also measures, per turn of the loop,
    // the CPU time the process spent (a 1 ms timer reads process.cpuUsage): a request that
    // blocks the loop spends its block on the CPU, a descheduled process spends nothing.
    // The CPU figure is asserted always; the monitor's when the machine is not
    // oversubscribed. The 19 s check (the earlier dynamic program took seconds
    // at these sizes too) fails both.
    const oversubscribed = () => loadavg()[0]! > availableParallelism();
    let worst = { delayMs: Infinity, cpuMs: Infinity, busy: true };
    for (let attempt = 0; attempt < 5 && (worst.cpuMs > 50 || (worst.delayMs > 50 && !worst.busy)); attempt++) {
      const h = monitorEventLoopDelay({ resolution: 5 });
      let lastCpu = process.cpuUsage();
      let lastWall = performance.now();
      let cpuMax = 0;
      const sampler = setInterval(() => {
        const d = process.cpuUsage(lastCpu);
        const now = performance.now();
        lastCpu = process.cpuUsage();
        // process.cpuUsage counts every thread (GC helpers, the policy worker threads), so a
        // turn's CPU can exceed its wall time; the loop's own thread spent at most the smaller
        cpuMax = Math.max(cpuMax, Math.min((d.user + d.system) / 1000, now - lastWall));
        lastWall = now;
      }, 1);
      h.enable();
      let health = 0;
      let stop = false;
      const healthLoop = (async () => {
        while (!stop) {
          const r = await fetch(`${inst.url}/healthz`);
          await r.text();
          assert.equal(r.status, 200);
          health++;
        }
      })();
      const started = performance.now();
      const results = await Promise.all(Array.from({ length: 8 }, delegateOnce));
      const took = performance.now() - started;
      stop = true;
      await healthLoop;
      h.disable();
      clearInterval(sampler);
      for (const r of results) {
        assert.equal(r.status, 403, JSON.stringify(r.body).slice(0, 300));
        assert.equal(r.body.error.code, 'scope_not_subset');
      }
      assert.ok(health > 0, '/healthz answered while the delegations ran');
      worst = { delayMs: h.max / 1e6, cpuMs: cpuMax, busy: oversubscribed() };
      console.log(
        `# attempt ${attempt + 1}: 8 delegations of 3 x ${N} patterns in ${took.toFixed(0)} ms; event loop delay max ${worst.delayMs.toFixed(1)} ms; ` +
          `most CPU in one turn ${cpuMax.toFixed(1)} ms; ${health} /healthz answers; load ${loadavg()[0]!.toFixed(1)} on ${availableParallelism()} cores`,
      );
    }
    assert.ok(worst.cpuMs <= 50, `one turn of the event loop took ${worst.cpuMs.toFixed(1)} ms of CPU`);
    if (!worst.busy) assert.ok(worst.delayMs <= 50, `the event loop was blocked for ${worst.delayMs.toFixed(1)} ms`);
  });
});
