import { enableStageProfile, takeStageProfile } from '../../src/core/stage-profile.js';
import { digestArguments } from '../../src/core/digest.js';
import { newId } from '../../src/core/ids.js';
import type { DecisionRecord } from '../../src/core/types.js';
import type { AuthorizeResult } from '../../src/service/writ.js';
import { freshData, type Backend } from '../lib/backend.js';
import { bareCommit } from '../lib/bare-commit.js';
import { probeCommits } from '../lib/commit-probe.js';
import { ACTIONS_PER_TASK, issueTaskToken, makeTasks, registerAgent, startInProcess, type AuthCtx } from '../lib/fixture.js';
import { benchAction, BENCH_AGENT, BENCH_SCOPE, POLICIES_20 } from '../lib/policies.js';
import { ratio, round, timeConcurrent, timeSequential } from '../lib/stats.js';
import { atMost, type BenchOutput, type RunOptions } from '../lib/types.js';

/**
 * `writ.authorize(ctx, action)` on a real store (SQLite: WAL, synchronous=NORMAL, answered after the WAL fsync, group
 * commit through DecisionCommitter), the 20-policy set loaded with putPolicy. The
 * sequential figure is the per-call latency the targets are about; the concurrent
 * one shows what group commit does for throughput.
 */
export async function authorizeInProcess(opts: RunOptions, backend: Backend, rawP50: number): Promise<BenchOutput> {
  const q = opts.quick;
  const p = {
    backend,
    policies: 20,
    sequential_iterations: opts.smoke ? 60 : q ? 300 : 3000,
    concurrent_iterations: opts.smoke ? 200 : q ? 1000 : 10000,
    concurrency: 32,
    authenticate_iterations: opts.smoke ? 40 : q ? 200 : 1000,
    commit_iterations: opts.smoke ? 30 : q ? 100 : 500,
    warmup: opts.smoke ? 20 : q ? 100 : 500,
    durability: backend === 'sqlite' ? 'WAL, synchronous=NORMAL + a group flush (fdatasync of the WAL) before each answer, group commit' : 'synchronous_commit on, group commit',
  };
  const data = freshData(backend, opts.dataRoot);
  const ip = await startInProcess(data.spec, POLICIES_20);
  try {
    const { writ } = ip;
    const probe = probeCommits(writ.store);
    const agent = await registerAgent(ip, BENCH_AGENT);
    const total = 2 * p.warmup + p.sequential_iterations + p.concurrent_iterations + 2 * p.authenticate_iterations;
    const ctxs = await makeTasks(ip, agent.id, BENCH_SCOPE, total);
    const tokens = await Promise.all(ctxs.map((c) => issueTaskToken(ip, agent, c.task.id)));
    let used = 0;
    const outcomes = { allow: 0, deny: 0, approval_required: 0 };
    const denyReasons: Record<string, number> = {};
    const count = (r: AuthorizeResult) => {
      outcomes[r.decision] += 1;
      if (r.decision === 'deny') for (const x of r.reasons) denyReasons[x.code] = (denyReasons[x.code] ?? 0) + 1;
    };
    const slot = () => Math.floor(used++ / ACTIONS_PER_TASK);
    const authorize = async (i: number) => count(await writ.authz.authorize(ctxs[slot()]!, benchAction(i)));

    await timeSequential(p.warmup, authorize);
    probe.take();
    const seq = await timeSequential(p.sequential_iterations, authorize);
    const seqCommits = probe.take();
    await timeConcurrent(p.warmup, p.concurrency, authorize);
    probe.take();
    const conc = await timeConcurrent(p.concurrent_iterations, p.concurrency, authorize);
    const concCommits = probe.take();
    const auth = await timeSequential(p.authenticate_iterations, async (i) => {
      const s = slot();
      const ctx: AuthCtx = await writ.tokens.authenticateTask(tokens[s]!);
      count(await writ.authz.authorize(ctx, benchAction(i)));
    });

    // The durable commit alone: one decision per transaction, straight to the store.
    // Where one decision's CPU goes, at one request in flight (src/core/stage-profile.ts).
    enableStageProfile(true);
    const cpu0 = process.cpuUsage();
    const profiled = await timeSequential(p.authenticate_iterations, authorize);
    const cpu = process.cpuUsage(cpu0);
    const stages = takeStageProfile();
    enableStageProfile(false);
    const stageView = {
      note: 'mean CPU (user + system) per decision at concurrency 1, by stage, beside this process\'s whole CPU per decision in the same phase',
      stages_cpu_us: stages,
      sum_of_stages_cpu_us: round(Object.values(stages).reduce((a, s) => a + s.mean_cpu_us, 0)),
      process_cpu_us_per_decision: round((cpu.user + cpu.system) / p.authenticate_iterations),
      latency_us: profiled.samples.summary(),
    };

    const decision = (): DecisionRecord => ({
      id: newId('dec'), taskId: ctxs[0]!.task.id, agentId: agent.id, tool: 'github.create_issue', audience: 'https://tools.example/github',
      resource: null, destination: null, argsDigest: digestArguments({}), decision: 'deny', reasons: [{ code: 'bench', message: 'bench' }],
      policies: [], policyVersion: writ.policy.engine.active().version, tokenJti: null, tokenExpiresAt: null, createdAt: Date.now(), outcome: null,
    });
    const commit = await timeSequential(p.commit_iterations, async () => {
      const d = decision();
      await writ.store.commitDecisions([{ decision: d, audit: { type: 'decision', actor: `agent:${agent.id}`, taskId: d.taskId, agentId: d.agentId, decisionId: d.id, data: { decision: 'deny' } } }], Date.now());
    });

    const bare = await bareCommit(writ.store, p.commit_iterations);
    const commitP50 = commit.samples.summary().p50;
    const commitVsBare = ratio(commitP50, bare.insert_commit_us.p50);

    // how often the policy engine answered from its memo rather than asking Cedar (src/policy/engine.ts)
    const engine = writ.policy.engine;
    const policyMemo = { hits: engine.memoHits, misses: engine.memoMisses, hit_rate: round(engine.memoHits / Math.max(1, engine.memoHits + engine.memoMisses), 4) };
    const seqS = seq.samples.summary();
    const concS = conc.samples.summary();
    const concOps = (p.concurrent_iterations / conc.elapsedMs) * 1000;
    const result = {
      params: p,
      sequential: { latency_us: seqS, ops_per_s: Math.round((p.sequential_iterations / seq.elapsedMs) * 1000), group_commit: seqCommits },
      concurrent: {
        concurrency: p.concurrency,
        latency_us: concS,
        ops_per_s: Math.round(concOps),
        wall_us_per_decision: round(1e6 / concOps),
        group_commit: concCommits,
      },
      authenticate_and_authorize: { latency_us: auth.samples.summary() },
      durable_commit_one_decision: { latency_us: commit.samples.summary() },
      bare_insert_commit: bare,
      ratio_commit_one_decision_vs_bare_insert_commit: commitVsBare,
      outcomes,
      deny_reasons: denyReasons,
      raw_p50_us: rawP50,
      ratio_p50_vs_raw: ratio(seqS.p50, rawP50),
      /** issue 12: the floor of one decision at concurrency 1 is the raw limit plus one durable commit */
      raw_plus_commit_p50_us: round(rawP50 + commit.samples.summary().p50),
      ratio_p50_vs_raw_plus_commit: ratio(seqS.p50, rawP50 + commit.samples.summary().p50),
      cpu_by_stage: stageView,
      policy_memo: policyMemo,
      ratio_c32_wall_per_decision_vs_raw: ratio(1e6 / concOps, rawP50),
      p50_us: seqS.p50,
      p99_us: seqS.p99,
    };
    opts.log(
      `authorize_in_process[${backend}]: c1 p50 ${seqS.p50} us p99 ${seqS.p99} us (x${result.ratio_p50_vs_raw} raw); ` +
        `x${result.ratio_p50_vs_raw_plus_commit} (raw + commit ${result.raw_plus_commit_p50_us} us); c32 ${result.concurrent.ops_per_s}/s p50 ${concS.p50} us p99 ${concS.p99} us; mean batch ${concCommits.mean_batch}; commit-one p50 ${result.durable_commit_one_decision.latency_us.p50} us`,
    );
    return {
      result,
      targets: {
        [`authorize_in_process.${backend}.p50_vs_raw`]: {
          ...atMost('in-process authorize p50 (concurrency 1) / raw-limit p50 (no durable commit in the raw limit)', result.ratio_p50_vs_raw, 1.5),
          figures: { authorize_p50_us: seqS.p50, raw_p50_us: rawP50 },
        },
        [`authorize_in_process.${backend}.p50_vs_raw_plus_commit`]: {
          ...atMost('in-process authorize p50 (concurrency 1) / (raw-limit p50 + one durable commit p50)', result.ratio_p50_vs_raw_plus_commit, 1.2),
          figures: { authorize_p50_us: seqS.p50, raw_plus_commit_p50_us: result.raw_plus_commit_p50_us },
        },
        [`authorize_in_process.${backend}.commit_vs_bare_insert_commit`]: {
          ...atMost(`one decision's durable commit p50 / a bare single-row INSERT + COMMIT p50 (${backend})`, commitVsBare, 2),
          figures: { commit_one_decision_p50_us: commitP50, bare_insert_commit_p50_us: bare.insert_commit_us.p50 },
        },
        [`authorize_in_process.${backend}.p99_us`]: atMost('in-process authorize p99 (concurrency 1), 20 policies, us', seqS.p99, 500),
      },
    };
  } finally {
    await ip.close();
    await data.destroy();
  }
}
