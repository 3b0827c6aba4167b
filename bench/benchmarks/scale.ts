import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { digestArguments } from '../../src/core/digest.js';
import type { LoadedPolicySet } from '../../src/policy/engine.js';
import { buildCedarRequest } from '../../src/policy/request.js';
import { freshData, type Backend } from '../lib/backend.js';
import { startInProcess, type AuthCtx } from '../lib/fixture.js';
import { makeAgentKey } from '../lib/identity.js';
import { largeAction, largeAgentId, largePolicySet, largeTeamPolicies, teamOf } from '../lib/policies.js';
import { ratio, round, timeConcurrent, timeSequential, timeSync } from '../lib/stats.js';
import { atMost, type BenchOutput, type RunOptions } from '../lib/types.js';
import { cedarCall, measureRaw } from './raw-limit.js';

const LARGE_SCOPE = { tools: ['svc*'], resources: ['proj:*'], destinations: [] };

/**
 * 1,000 policies in one set and 10,000 agents in the store. Writ passes Cedar only
 * the request's entities (agent, its groups, tool, argument tags), so the agent
 * count matters to the store, not to Cedar; the policy count matters to Cedar,
 * which checks every policy of the one active set.
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
  const t0 = performance.now();
  const ip = await startInProcess(data.spec, largePolicySet(p.policies));
  const loadMs = performance.now() - t0;
  try {
    const { writ, admin } = ip;
    const set: LoadedPolicySet = writ.policy.active();
    const key = makeAgentKey();
    const t1 = performance.now();
    // Several registrations in flight: PostgreSQL overlaps their round trips (SQLite runs them one by one anyway).
    let nextAgent = 0;
    await Promise.all(
      Array.from({ length: p.register_concurrency }, async () => {
        while (nextAgent < p.agents) {
          const i = nextAgent++;
          await writ.registerAgent(admin, { id: largeAgentId(i), name: `a${i}`, labels: [`team-${teamOf(i)}`, 'staff'], jwks: { keys: [key.publicJwk] } });
        }
      }),
    );
    const seedMs = performance.now() - t1;
    opts.log(`scale[${backend}]: ${p.policies} policies loaded in ${Math.round(loadMs)} ms; ${p.agents} agents registered in ${Math.round(seedMs)} ms`);

    const stride = Math.floor(p.agents / p.agents_with_tasks);
    const chosen = Array.from({ length: p.agents_with_tasks }, (_, k) => k * stride + (k % stride));
    const ctxs: { index: number; ctx: AuthCtx }[] = [];
    for (const index of chosen) {
      const t = await writ.createTask(admin, { agent_id: largeAgentId(index), intent: 'benchmark: large policy set', scope: LARGE_SCOPE, ttl_seconds: 3600, max_actions: 100_000 });
      ctxs.push({ index, ctx: (await writ.store.getTaskWithAgent(t.id))! });
    }

    const outcomes = { allow: 0, deny: 0, approval_required: 0 };
    const authorize = async (i: number) => {
      const c = ctxs[i % ctxs.length]!;
      outcomes[(await writ.authorize(c.ctx, largeAction(c.index, i))).decision] += 1;
    };
    await timeSequential(p.warmup, authorize);
    const seq = await timeSequential(p.sequential_iterations, authorize);
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
    const concS = conc.samples.summary();
    const result = {
      params: { ...p, entities_passed_per_request: requests[0]!.entities.length },
      setup_ms: { policy_load_and_validate: Math.round(loadMs), register_agents: Math.round(seedMs) },
      sequential: { latency_us: seqS },
      concurrent: { concurrency: p.concurrency, latency_us: concS, ops_per_s: Math.round((p.concurrent_iterations / conc.elapsedMs) * 1000) },
      outcomes,
      raw_limit_same_set: { latency_us: raw.total, cedar_us: raw.cedarOnly },
      ratio_p50_vs_raw_same_set: ratio(seqS.p50, raw.total.p50),
      per_team_split: split,
      p99_us: seqS.p99,
      note:
        'src/policy/engine.ts evaluates one preparsed set holding all policies on every request (no split by tool, team or tenant), ' +
        'so Cedar checks all 1,000; the 10,000 agents are in the store only (Writ passes the request\'s entities, ' +
        `${requests[0]!.entities.length} here). per_team_split measures Cedar alone on the ${Object.keys(parts).length} policies that name the request's team, ` +
        'the figure a per-request set choice in the engine would approach.',
    };
    opts.log(
      `scale_1000_policies[${backend}]: c1 p50 ${seqS.p50} us p99 ${seqS.p99} us (cedar alone p50 ${raw.cedarOnly.p50} us` +
        (split ? `, split set ${round((split.cedar_split_set_us as { p50: number }).p50)} us)` : ')'),
    );
    return {
      result,
      targets: { [`scale_1000_policies.${backend}.p99_us`]: atMost('authorize p99 (concurrency 1), 1,000 policies / 10,000 agents, us', seqS.p99, 500) },
    };
  } finally {
    await ip.close();
    await data.destroy();
  }
}
