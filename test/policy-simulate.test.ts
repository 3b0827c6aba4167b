import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sinceTime } from '../src/cli/policy.js';
import { backends, BOOT_TOKEN, openTestStore, setup, type Api } from './helpers/harness.js';
import { ManualClock } from '../src/core/clock.js';
import { seqBefore } from '../src/service/policy-simulate.js';
import { agentFor, makeOperator, setPolicy, type Env } from './helpers/escalations.js';
import { writ } from './helpers/cli.js';

const LIVE = `@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource);
`;
const CANDIDATE = `${LIVE}
@id("no-large-payments")
forbid (principal, action, resource in Writ::ToolGroup::"payments")
when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 1000 };

@id("no-token-arguments")
forbid (principal, action, resource == Writ::Tool::"github.push")
when { context.args.hasTag("token") };
`;
const AUD = 'https://tools.example';

describe('sinceTime', () => {
  it('durations and RFC 3339; anything else is a usage error', () => {
    const now = Date.UTC(2026, 0, 8);
    assert.equal(sinceTime('7d', now), '2026-01-01T00:00:00.000Z');
    assert.equal(sinceTime('90s', now), '2026-01-07T23:58:30.000Z');
    assert.equal(sinceTime('2026-01-01T00:00:00Z', now), '2026-01-01T00:00:00Z');
    for (const bad of ['7', '7w', '-1d', 'yesterday', '2026-13-45T00:00:00Z', '']) assert.throws(() => sinceTime(bad, now), /--since/, bad);
  });
});

for (const { backend, skip } of backends()) {
  describe(`POST /v1/policies/simulate replays recorded decisions (${backend})`, { skip }, () => {
    let env: Env;
    let agent: Api;
    let dir: string;
    const ids: Record<string, string> = {};
    const since = new Date(Date.now() - 60_000).toISOString();
    before(async () => {
      env = await setup(backend);
      dir = mkdtempSync(join(tmpdir(), 'writ-sim-'));
      await setPolicy(env, LIVE);
      const task = await env.createTask({ scope: { tools: ['github.*', 'payments.*'], resources: [], destinations: [] }, max_actions: 20 });
      agent = await agentFor(env, task.id);
      const act = async (name: string, tool: string, args: Record<string, unknown>) => {
        const r = await agent.call('POST', '/v1/authorize', { tool, arguments: args, audience: AUD });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        ids[name] = r.body.decision_id;
        return r.body.decision;
      };
      assert.equal(await act('issue', 'github.create_issue', { title: 'x' }), 'allow');
      assert.equal(await act('big', 'payments.transfer', { amount: 5000, to: 'acme' }), 'allow');
      assert.equal(await act('small', 'payments.transfer', { amount: 50, to: 'acme' }), 'allow');
      // the token is masked in the audit entry (a secret-looking key), and the candidate reads it
      assert.equal(await act('push', 'github.push', { token: 'ghp_secret', branch: 'main' }), 'allow');
      // out of scope: decided before policy
      assert.equal(await act('slack', 'slack.post', { text: 'hi' }), 'deny');
    });
    after(async () => {
      await env?.teardown();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('lists what would change by tool and reason, with examples; what could not be replayed and why', async () => {
      const before = (await env.admin.call('GET', '/v1/policies')).body;
      const r = await env.admin.call('POST', '/v1/policies/simulate', { policies: CANDIDATE, since });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const s = r.body;
      assert.equal(s.considered, 5);
      assert.equal(s.decided_before_policy, 1);
      assert.equal(s.replayed, 3);
      assert.equal(s.unchanged, 2);
      assert.equal(s.changed, 1);
      assert.deepEqual(s.changes.by_tool, { 'payments.transfer': 1 });
      assert.deepEqual(s.changes.by_reason, { 'allow -> deny (policy_forbids)': 1 });
      assert.equal(s.changes.examples[0].decision_id, ids.big);
      assert.deepEqual(s.changes.examples[0].candidate, { decision: 'deny', reasons: ['policy_forbids'], policies: ['no-large-payments'] });
      assert.equal(s.not_replayed.count, 1);
      assert.deepEqual(s.not_replayed.by_reason, { arguments_masked: 1 });
      assert.equal(s.not_replayed.examples[0].decision_id, ids.push);
      assert.match(s.not_replayed.examples[0].why, /`token`/);
      assert.equal(s.truncated, false);
      // nothing was stored or activated
      const after = (await env.admin.call('GET', '/v1/policies')).body;
      assert.equal(after.version, before.version);
      assert.equal(after.history.length, before.history.length);
    });

    it('the live set replayed changes nothing', async () => {
      const r = await env.admin.call('POST', '/v1/policies/simulate', { policies: LIVE, since });
      assert.equal(r.status, 200);
      assert.equal(r.body.changed, 0);
      assert.equal(r.body.replayed, 4, 'LIVE reads no arguments: the masked one replays too');
    });

    it('a simulated candidate is released afterwards (no engine growth); the live set and a set made live later stay', async () => {
      const loaded = env.writ.policy.engine.loadedCount();
      for (let i = 0; i < 5; i++) {
        const r = await env.admin.call('POST', '/v1/policies/simulate', { policies: `${CANDIDATE}\n// variant ${i}\n`, since });
        assert.equal(r.status, 200);
        assert.equal(r.body.changed, 1, 'a released set is not the one evaluated: each replay still decides');
      }
      assert.equal(env.writ.policy.engine.loadedCount(), loaded, 'every simulated candidate was unloaded');
      // the live set simulated stays loaded, and still decides
      await env.admin.call('POST', '/v1/policies/simulate', { policies: LIVE, since });
      assert.equal(env.writ.policy.engine.loadedCount(), loaded);
      assert.equal((await env.admin.call('GET', '/v1/policies')).body.policies, LIVE);
      // the same candidate simulated again after its release loads again and gives the same answer
      const again = await env.admin.call('POST', '/v1/policies/simulate', { policies: `${CANDIDATE}\n// variant 0\n`, since });
      assert.equal(again.body.changed, 1);
      // simulations running at once: none releases the set under another
      const many = await Promise.all([0, 1, 2].map(() => env.admin.call('POST', '/v1/policies/simulate', { policies: `${CANDIDATE}\n// together\n`, since })));
      assert.deepEqual(many.map((r) => r.body.changed), [1, 1, 1]);
      assert.equal(env.writ.policy.engine.loadedCount(), loaded);
    });

    it('limit truncates; a future `since` replays nothing', async () => {
      const t = await env.admin.call('POST', '/v1/policies/simulate', { policies: CANDIDATE, since, limit: 2 });
      assert.equal(t.body.considered, 2);
      assert.equal(t.body.truncated, true);
      const f = await env.admin.call('POST', '/v1/policies/simulate', { policies: CANDIDATE, since: new Date(Date.now() + 3_600_000).toISOString() });
      assert.equal(f.body.considered, 0);
    });

    it('bad input: an invalid candidate (located diagnostics), a bad since, unknown fields, a requester', async () => {
      const bad = await env.admin.call('POST', '/v1/policies/simulate', { policies: 'permit (principal, action, resource) when { context.nope };', since });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_policy');
      assert.equal(bad.body.error.details.diagnostics[0].line, 1);
      for (const body of [{ policies: LIVE, since: 'last week' }, { policies: LIVE }, { policies: LIVE, since, limit: 0 }, { policies: LIVE, since, extra: 1 }]) {
        const r = await env.admin.call('POST', '/v1/policies/simulate', body);
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.equal(r.body.error.code, 'invalid_request', JSON.stringify(body));
      }
      const requester = await makeOperator(env, 'req', ['requester']);
      const denied = await requester.call('POST', '/v1/policies/simulate', { policies: LIVE, since });
      assert.equal(denied.status, 403);
    });

    it('CLI: writ policy simulate FILE --since', { skip: backend !== 'sqlite' && 'the CLI is the same on both stores', timeout: 240_000 }, async () => {
      const f = join(dir, 'candidate.cedar');
      writeFileSync(f, CANDIDATE);
      const r = await writ(['policy', 'simulate', f, '--since', '1h'], { WRIT_URL: env.url, WRIT_TOKEN: BOOT_TOKEN });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.json.changed, 1);
      const bad = await writ(['policy', 'simulate', f, '--since', 'lately'], { WRIT_URL: env.url, WRIT_TOKEN: BOOT_TOKEN });
      assert.equal(bad.code, 2);
    });
  });
}

describe('simulate when audit keeps only the argument digest (WRIT_AUDIT_ARGS=digest)', () => {
  let env: Env;
  before(async () => {
    env = await setup('sqlite', { config: { auditArgs: 'digest' } });
    await setPolicy(env, LIVE);
  });
  after(async () => env?.teardown());

  it('a candidate reading arguments cannot replay them, and says why; one reading none replays', async () => {
    const since = new Date(Date.now() - 60_000).toISOString();
    const task = await env.createTask({ scope: { tools: ['payments.*'], resources: [], destinations: [] } });
    const agent = await agentFor(env, task.id);
    const r = await agent.call('POST', '/v1/authorize', { tool: 'payments.transfer', arguments: { amount: 5000 }, audience: AUD });
    assert.equal(r.body.decision, 'allow');
    const s = (await env.admin.call('POST', '/v1/policies/simulate', { policies: CANDIDATE, since })).body;
    assert.equal(s.replayed, 0);
    assert.deepEqual(s.not_replayed.by_reason, { arguments_not_recorded: 1 });
    assert.match(s.not_replayed.examples[0].why, /digest/);
    const live = (await env.admin.call('POST', '/v1/policies/simulate', { policies: LIVE, since })).body;
    assert.equal(live.replayed, 1);
    assert.equal(live.changed, 0);
  });
});

describe('seqBefore: where a replay since a time starts reading the log', () => {
  for (const { backend, skip } of backends()) {
    it(`binary search on ${backend}: below every entry at or after the time, above the earlier ones`, { skip }, async () => {
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const opened = await openTestStore(backend, clock);
      try {
        await opened.store.migrate();
        const seqs: { seq: number; ts: number }[] = [];
        for (let i = 0; i < 40; i++) {
          const [e] = await opened.store.appendAudit([{ type: i % 3 ? 'decision' : 'other', actor: 'system', data: {} }]);
          seqs.push({ seq: e!.seq, ts: e!.ts });
          clock.advance(1000);
        }
        assert.equal(await seqBefore(opened.store, 0), 0);
        for (const k of [0, 1, 17, 39]) {
          const s = await seqBefore(opened.store, seqs[k]!.ts);
          assert.ok(s < seqs[k]!.seq && s >= (k > 0 ? seqs[k - 1]!.seq : 0), `k=${k} s=${s}`);
        }
        const after = await seqBefore(opened.store, seqs[39]!.ts + 1);
        assert.equal(after, seqs[39]!.seq);
      } finally {
        await opened.cleanup();
      }
    });
  }
});
