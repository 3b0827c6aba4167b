import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { backends, setup } from './helpers/harness.js';
import { agentFor, secondInstance, setPolicy, type Env } from './helpers/escalations.js';

/**
 * Ending break-glass while decisions that rely on it are in flight, the way it happens
 * in production: the end and the decisions start together, on two instances sharing the
 * store. No allow under the break-glass may be recorded after its end (an answer may
 * still reach its client after the end's does: the wire does not order them).
 */

const POLICY = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"prod" };

@id("prod-only-under-break-glass")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"prod")
when { context.break_glass };
`;

for (const { backend, skip } of backends()) {
  describe(`break-glass ended while decisions are in flight (${backend})`, { skip }, () => {
    let env: Env;
    let other: Awaited<ReturnType<typeof secondInstance>>;
    before(async () => {
      env = await setup(backend);
      await setPolicy(env, POLICY);
      other = await secondInstance(env);
    });
    after(async () => {
      await other?.stop();
      await env?.teardown();
    });

    it('every allow under it is audited before its end; the decisions after it are denies', async () => {
      for (let round = 0; round < 3; round++) {
        // one task per worker: the per-task limit on denials (20 a second) is not what is tested
        const tasks = await Promise.all(Array.from({ length: 8 }, () => env.createTask({ scope: { tools: ['prod.*'], resources: [], destinations: [] }, ttl_seconds: 3600, max_actions: 1000 })));
        const apis = await Promise.all(tasks.map(async (t, i) => {
          const a = await agentFor(env, t.id);
          return i % 2 ? other.api(a.token!) : a;
        }));
        const started = await env.admin.call('POST', '/v1/break-glass', {
          agent_id: env.agent.id,
          justification: 'INC-4711: checkout is down, the on-call agent must restart workers',
          scope: { tools: ['prod.*'] },
          duration_seconds: 600,
        });
        assert.equal(started.status, 201, JSON.stringify(started.body));
        const bgId = started.body.id as string;
        const answers: { decision: string; id: string }[] = [];
        const decide = async (api: (typeof apis)[number]) => {
          const r = await api.call('POST', '/v1/authorize', { tool: 'prod.restart', arguments: { n: Math.random() }, audience: 'https://tools.example/prod' });
          assert.equal(r.status, 200, JSON.stringify(r.body));
          answers.push({ decision: r.body.decision, id: r.body.decision_id });
        };
        const workers = Array.from({ length: 8 }, (_, i) => (async () => {
          for (let k = 0; k < 6; k++) await decide(apis[i]!);
        })());
        await new Promise((ok) => setTimeout(ok, 40 + round * 60));
        const end = env.admin.call('POST', `/v1/break-glass/${bgId}/end`, { reason: 'workers are back' });
        const [ended] = await Promise.all([end, ...workers]);
        assert.equal(ended.status, 200, JSON.stringify(ended.body));
        const entries = (await Promise.all(tasks.map(async (t) => (await env.admin.call('GET', `/v1/audit?task_id=${t.id}&limit=1000`)).body.entries as any[]))).flat();
        const all = (await env.admin.call('GET', `/v1/audit?agent_id=${encodeURIComponent(env.agent.id)}&type=break_glass.ended&limit=1000`)).body.entries as any[];
        const endSeq = all.find((e) => e.data.break_glass_id === bgId).seq;
        const allows = entries.filter((e) => e.type === 'decision' && e.data.decision === 'allow');
        for (const e of allows) {
          assert.equal(e.data.break_glass_id, bgId);
          assert.ok(e.seq < endSeq, `allow ${e.decision_id} (seq ${e.seq}) is recorded after the end (seq ${endSeq})`);
        }
        assert.equal(entries.filter((e) => e.type === 'decision').length, 48);
        for (const e of entries.filter((x) => x.type === 'decision' && x.seq > endSeq)) assert.equal(e.data.decision, 'deny');
        // what each client was told is what was recorded
        const recorded = new Map(entries.filter((e) => e.type === 'decision').map((e) => [e.decision_id, e.data.decision]));
        for (const a of answers) assert.equal(recorded.get(a.id), a.decision);
      }
    });
  });
}
