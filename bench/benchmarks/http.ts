import { freshData, type Backend } from '../lib/backend.js';
import { startServerChild, type ServerChild } from '../lib/child.js';
import type { CommitStats } from '../lib/commit-probe.js';
import { withCpu } from '../lib/cpu.js';
import { TASK_MAX_ACTIONS } from '../lib/fixture.js';
import { authorizeLoad, BenchApi, prepareAgentTasks, type LoadResult, type LoadTarget } from '../lib/http-client.js';
import { benchAction, POLICIES_20 } from '../lib/policies.js';
import { round } from '../lib/stats.js';
import { atLeast, atMost, type BenchOutput, type RunOptions } from '../lib/types.js';

/** Pre-serialized authorize bodies (distinct titles, so distinct argument digests). */
export function authorizeBodies(n = 1024): (i: number) => string {
  const bodies = Array.from({ length: n }, (_, i) => JSON.stringify(benchAction(i)));
  return (i) => bodies[i % n]!;
}

export function loadView(r: LoadResult, serverCpuUs: number | null, selfCpuUs: number, commits: (CommitStats | null)[] = []) {
  return {
    concurrency: r.concurrency,
    duration_s: r.duration_s,
    requests: r.requests,
    decisions_per_s: r.decisions_per_s,
    latency_us: r.samples.summary(),
    allow: r.allow,
    deny: r.deny,
    errors: r.errors,
    statuses: r.statuses,
    server_cpu_us_per_decision: serverCpuUs === null || r.requests === 0 ? null : round(serverCpuUs / r.requests),
    client_cpu_us_per_decision: r.requests === 0 ? null : round(selfCpuUs / r.requests),
    /** group-commit batches in the server (one entry per instance) */
    group_commit: commits,
  };
}

/** Runs one load phase and reports it with the CPU the server processes and this one used, and their commit batches. */
export async function phase(servers: ServerChild[], targets: LoadTarget[], concurrency: number, ms: number, body: (i: number) => string) {
  await Promise.all(servers.map((s) => s.commitStats()));
  const { value, serverCpuUs, selfCpuUs } = await withCpu(servers.map((s) => s.pid), () => authorizeLoad(targets, concurrency, ms, body));
  const commits = await Promise.all(servers.map((s) => s.commitStats()));
  return loadView(value, serverCpuUs, selfCpuUs, commits);
}

/**
 * POST /v1/authorize over loopback HTTP with keep-alive, against a server in a
 * child process (one core for it, one for this load generator), at concurrency 1
 * and 32 for a fixed duration each.
 */
export async function authorizeHttp(opts: RunOptions, backend: Backend): Promise<BenchOutput> {
  const q = opts.quick;
  const p = { backend, policies: 20, warmup_s: q ? 0.3 : 1, duration_s: q ? 1 : 5, concurrency: [1, 32], tasks: 8, keep_alive: true, server: 'child process (bench/server-child.ts), createHttpServer', policy_workers: Number(process.env.WRIT_BENCH_POLICY_WORKERS ?? 1) };
  const data = freshData(backend, opts.dataRoot);
  const child = await startServerChild(data.spec);
  const api = new BenchApi(child.url, child.adminToken!);
  try {
    await api.putPolicies(POLICIES_20);
    const { tokens } = await prepareAgentTasks(api, p.tasks, TASK_MAX_ACTIONS);
    const targets = [{ url: child.url, tokens }];
    const body = authorizeBodies();
    await authorizeLoad(targets, 32, p.warmup_s * 1000, body);
    const c1 = await phase([child], targets, 1, p.duration_s * 1000, body);
    const c32 = await phase([child], targets, 32, p.duration_s * 1000, body);
    // Where one decision's CPU goes: per-stage accounting at one request in flight
    // (src/core/stage-profile.ts), beside the server's whole CPU in the same phase.
    child.profileOn();
    const profiled = await phase([child], targets, 1, p.duration_s * 1000, body);
    const stages = await child.takeProfile();
    const stageSum = stages ? round(Object.values(stages).reduce((a, s) => a + s.mean_cpu_us, 0)) : null;
    const stageView = {
      note: 'mean CPU (user + system) per allowed decision at concurrency 1, by stage; commit is the group commit of the decision (SQLite/PostgreSQL client work), http_in is node:http parsing and routing',
      stages_cpu_us: stages,
      sum_of_stages_cpu_us: stageSum,
      server_cpu_us_per_decision: profiled.server_cpu_us_per_decision,
      decisions: profiled.requests,
    };
    if (stages) opts.log(`authorize_http[${backend}]: CPU per decision by stage (c1): ${Object.entries(stages).map(([k, v]) => `${k} ${v.mean_cpu_us}`).join(', ')} us (sum ${stageSum}, server ${profiled.server_cpu_us_per_decision})`);
    opts.log(
      `authorize_http[${backend}]: c1 ${c1.decisions_per_s}/s p50 ${c1.latency_us.p50} us p99 ${c1.latency_us.p99} us; ` +
        `c32 ${c32.decisions_per_s}/s p50 ${c32.latency_us.p50} us p99 ${c32.latency_us.p99} us; server CPU/decision ${c32.server_cpu_us_per_decision} us, mean commit batch ${c32.group_commit[0]?.mean_batch ?? '-'}`,
    );
    return {
      result: { params: p, c1, c32, cpu_by_stage: stageView },
      targets: {
        [`authorize_http.${backend}.c32_decisions_per_s`]: {
          ...atLeast('HTTP loopback decisions/s at concurrency 32 (two cores)', c32.decisions_per_s, backend === 'sqlite' ? 4000 : 3000),
          figures: { c32_decisions_per_s: c32.decisions_per_s, c1_decisions_per_s: c1.decisions_per_s },
        },
        ...(backend === 'sqlite' && c32.server_cpu_us_per_decision !== null
          ? {
              [`authorize_http.${backend}.c32_server_cpu_us_per_decision`]: {
                ...atMost('server CPU per decision at concurrency 32, us (all threads)', c32.server_cpu_us_per_decision, 300),
                figures: { server_cpu_us_per_decision: c32.server_cpu_us_per_decision, wall_us_per_decision: Math.round(1e6 / c32.decisions_per_s) },
              },
            }
          : {}),
      },
    };
  } finally {
    api.close();
    await child.stop();
    await data.destroy();
  }
}
