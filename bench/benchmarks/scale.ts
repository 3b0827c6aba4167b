import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { digestArguments } from '../../src/core/digest.js';
import type { LoadedPolicySet } from '../../src/policy/engine.js';
import { buildCedarRequest } from '../../src/policy/request.js';
import { freshData, type Backend } from '../lib/backend.js';
import { startInProcess, type AuthCtx } from '../lib/fixture.js';
import { makeAgentKey } from '../lib/identity.js';
import { ACTIONS_PER_TASK, makeTasks, registerAgent } from '../lib/fixture.js';
import { benchAction, BENCH_AGENT, BENCH_SCOPE, largeAction, largeAgentId, largePolicySet, largeTeamPolicies, POLICIES_20, teamOf } from '../lib/policies.js';
import { ratio, round, timeConcurrent, timeInterleaved, timeSequential, timeSync } from '../lib/stats.js';
import { atMost, type BenchOutput, type RunOptions } from '../lib/types.js';
import { cedarCall, measureRaw } from './raw-limit.js';

const LARGE_SCOPE = { tools: ['svc*'], resources: ['proj:*'], destinations: [] };

/**
 * 1,000 policies in one set and 10,000 agents in the store, against the 20-policy set
 * (issue 12, item 7: c1 p99 at most 2x the 20-policy p99). The two run side by side,
 * each on its own store of the same backend, in interleaved rounds (so load on a shared
 * machine falls on both alike). Writ passes Cedar only the request's entities (agent,
 * its groups, tool, argument tags), so the agent count matters to the store, not to
 * Cedar; the policy count matters to Cedar, which checks only the part of the set that
 * can match the tool (src/policy/engine.ts splits sets by tool).
 */
export async function scale(opts: RunOptions, backend: Backend): Promise<BenchOutput> {
  const q = opts.quick;
  const p = {
    backend,
    policies: 1000,
    agents: q ? 500 : 10_000,
    agents_with_tasks: q ? 20 : 100,
    sequential_iterations: q ? 200 : 1500,
    concurrent_iterations: q ? 300 : 2000,
    concurrency: 32,
    warmup: q ? 50 : 200,
    raw_iterations: q ? 200 : 1000,
    register_concurrency: 16,
  };
  const data = freshData(backend, opts.dataRoot);
  const small = freshData(backend, opts.dataRoot);
  const t0 = performance.now();
  const ip = await startInProcess(data.spec, largePolicySet(p.policies));
  const loadMs = performance.now() - t0;
  const ip20 = await startInProcess(small.spec, POLICIES_20);
  try {
    const { writ, admin } = ip;
    const set: LoadedPolicySet = writ.policy.engine.active();
    const key = makeAgentKey();
    const t1 = performance.now();
    // Several registrations in flight: PostgreSQL overlaps their round trips (SQLite runs them one by one anyway).
    let nextAgent = 0;
    await Promise.all(
      Array.from({ length: p.register_concurrency }, async () => {
        while (nextAgent < p.agents) {
          const i = nextAgent++;
          await writ.identity.registerAgent(admin, { id: largeAgentId(i), name: `a${i}`, labels: [`team-${teamOf(i)}`, 'staff'], jwks: { keys: [key.publicJwk] } });
        }
      }),
    );
    const seedMs = performance.now() - t1;
    opts.log(`scale[${backend}]: ${p.policies} policies loaded in ${Math.round(loadMs)} ms; ${p.agents} agents registered in ${Math.round(seedMs)} ms`);

    const stride = Math.floor(p.agents / p.agents_with_tasks);
    const chosen = Array.from({ length: p.agents_with_tasks }, (_, k) => k * stride + (k % stride));
    const ctxs: { index: number; ctx: AuthCtx }[] = [];
    for (const index of chosen) {
      const t = await writ.tasks.createTask(admin, { agent_id: largeAgentId(index), intent: 'benchmark: large policy set', scope: LARGE_SCOPE, ttl_seconds: 3600, max_actions: 100_000 });
      ctxs.push({ index, ctx: (await writ.store.getTaskWithAgent(t.id))! });
    }

    const outcomes = { allow: 0, deny: 0, approval_required: 0 };
    const authorize = async (i: number) => {
      const c = ctxs[i % ctxs.length]!;
      outcomes[(await writ.authz.authorize(c.ctx, largeAction(c.index, i))).decision] += 1;
    };
    // the 20-policy set, as authorize_in_process runs it
    const agent20 = await registerAgent(ip20, BENCH_AGENT);
    const ctxs20 = await makeTasks(ip20, agent20.id, BENCH_SCOPE, 2 * (p.warmup + p.sequential_iterations));
    let used20 = 0;
    const authorize20 = async (i: number) => {
      const r = await ip20.writ.authz.authorize(ctxs20[Math.floor(used20++ / ACTIONS_PER_TASK)]!, benchAction(i));
      if (r.decision !== 'allow') throw new Error(`the 20-policy bench action was not allowed: ${JSON.stringify(r)}`);
    };

    await timeInterleaved(p.warmup, [authorize, authorize20]);
    const [seqLarge, seqSmall] = await timeInterleaved(p.sequential_iterations, [authorize, authorize20]);
    const seq = { samples: seqLarge! };
    const conc = await timeConcurrent(p.concurrent_iterations, p.concurrency, authorize);

    // The floor on this set, and on a per-team split of it (what a split engine would evaluate).
    const requests = ctxs.slice(0, 64).map((c, i) => {
      const action = largeAction(c.index, i);
      return buildCedarRequest({ agent: c.ctx.agent, task: c.ctx.task, action, argsDigest: digestArguments(action.arguments), now: Date.now(), withArgs: set.readsArgs });
    });
    const raw = measureRaw(writ, set, requests, p.raw_iterations, Math.round(p.raw_iterations / 10));
    const team = teamOf(ctxs[0]!.index);
    const splitId = `bench-split-team-${team}-${p.policies}`;
    const parts = largeTeamPolicies(p.policies, team);
    const pre = cedar.preparsePolicySet(splitId, { staticPolicies: parts });
    let split: Record<string, unknown> | null = null;
    if (pre.type === 'success') {
      const call = cedarCall(requests[0]!, { ...set, version: splitId });
      const s = timeSync(p.raw_iterations, () => cedar.statefulIsAuthorized(call)).summary();
      const whole = timeSync(p.raw_iterations, () => cedar.statefulIsAuthorized(cedarCall(requests[0]!, set))).summary();
      const check = cedar.statefulIsAuthorized(call);
      split = {
        policies_in_split_set: Object.keys(parts).length,
        same_decision: check.type === 'success' && check.response.decision === 'allow',
        cedar_whole_set_us: whole,
        cedar_split_set_us: s,
      };
    }

    const seqS = seq.samples.summary();
    const smallS = seqSmall!.summary();
    const p99Ratio = ratio(seqS.p99, smallS.p99);
    const concS = conc.samples.summary();
    const result = {
      params: { ...p, entities_passed_per_request: requests[0]!.entities.length },
      setup_ms: { policy_load_and_validate: Math.round(loadMs), register_agents: Math.round(seedMs) },
      sequential: { latency_us: seqS },
      sequential_20_policies: { latency_us: smallS, note: 'the 20-policy set (authorize_in_process) on a store of its own, interleaved with the 1,000-policy calls' },
      ratio_p99_vs_20_policies: p99Ratio,
      concurrent: { concurrency: p.concurrency, latency_us: concS, ops_per_s: Math.round((p.concurrent_iterations / conc.elapsedMs) * 1000) },
      outcomes,
      raw_limit_same_set: { latency_us: raw.total, cedar_us: raw.cedarOnly },
      ratio_p50_vs_raw_same_set: ratio(seqS.p50, raw.total.p50),
      per_team_split: split,
      p99_us: seqS.p99,
      note:
        'src/policy/engine.ts splits a large set by tool: Cedar checks only the part that can match the call\'s tool; ' +
        'the 10,000 agents are in the store only (Writ passes the request\'s entities, ' +
        `${requests[0]!.entities.length} here). per_team_split measures Cedar alone on the ${Object.keys(parts).length} policies that name the request's team.`,
    };
    opts.log(
      `scale_1000_policies[${backend}]: c1 p50 ${seqS.p50} us p99 ${seqS.p99} us; 20 policies p50 ${smallS.p50} us p99 ${smallS.p99} us (x${p99Ratio}) (cedar alone p50 ${raw.cedarOnly.p50} us` +
        (split ? `, split set ${round((split.cedar_split_set_us as { p50: number }).p50)} us)` : ')'),
    );
    return {
      result,
      targets: {
        [`scale_1000_policies.${backend}.p99_vs_20_policies`]: {
          ...atMost('authorize p99 (concurrency 1): 1,000 policies / 10,000 agents over the 20-policy set, interleaved', p99Ratio, 2),
          figures: { p99_1000_policies_us: seqS.p99, p99_20_policies_us: smallS.p99 },
        },
      },
    };
  } finally {
    await ip20.close();
    await small.destroy();
    await ip.close();
    await data.destroy();
  }
}
