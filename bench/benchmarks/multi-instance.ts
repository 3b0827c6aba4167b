/**
 * ---------------------------------------------------------------------------------
 * Several Writ instances on one database (PostgreSQL; design §3, §6, §7).
 *
 *  - http_two_instances: POST /v1/authorize throughput with two server processes on
 *    the same schema, the load split evenly between them; beside it, the same scaling
 *    of the decision commits alone (two store instances in this process, no HTTP or
 *    Cedar: what the instances' commits cost each other, apart from the CPU).
 *  - revoke_propagation: revoke a task through instance A, while an agent keeps
 *    asking instance B; the time until B answers 401 `task_not_active`, and whether
 *    any allow was handed out for a request sent after A acknowledged the revoke
 *    (the target: "revocation is effective on the next request on every instance").
 *
 * Both run for `--backend postgres|both`. SQLite can also host two processes on one
 * file (IMMEDIATE transactions and a busy timeout); `--multi-instance-sqlite` runs
 * them there too, for comparison.
 * ---------------------------------------------------------------------------------
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { withDefaultUser } from '../../src/store/postgres/db.js';
import { freshData, type Backend, type StoreSpec } from '../lib/backend.js';
import { processCpuUs } from '../lib/cpu.js';
import { startServerChild, type ServerChild } from '../lib/child.js';
import { TASK_MAX_ACTIONS } from '../lib/fixture.js';
import { authorizeLoad, authorizeOnce, BenchApi, loadClient, prepareAgentTasks } from '../lib/http-client.js';
import { makeAgentKey } from '../lib/identity.js';
import { BENCH_AGENT, BENCH_SCOPE, POLICIES_20 } from '../lib/policies.js';
import { round, summarize } from '../lib/stats.js';
import { storeCommitScaling } from '../lib/store-commits.js';
import { atLeast, atMost, type BenchOutput, type RunOptions, type TargetCheck } from '../lib/types.js';
import { authorizeBodies, phase } from './http.js';

async function twoInstances(backend: Backend, opts: RunOptions) {
  const data = freshData(backend, opts.dataRoot);
  const started: ServerChild[] = [];
  try {
    // A first: it creates the signing key and the admin; B then loads them from the store.
    const a = await startServerChild(data.spec);
    started.push(a);
    const api = new BenchApi(a.url, a.adminToken!);
    await api.putPolicies(POLICIES_20);
    const b = await startServerChild(data.spec);
    started.push(b);
    return { a, b, api, data, started };
  } catch (err) {
    for (const c of started) await c.stop();
    await data.destroy();
    throw err;
  }
}

export async function httpTwoInstances(opts: RunOptions, backend: Backend): Promise<BenchOutput> {
  const q = opts.quick;
  const p = { backend, instances: 2, policies: 20, concurrency: 32, per_instance_concurrency: 16, warmup_s: q ? 0.3 : 1, duration_s: q ? 1 : 5, tasks: 8 };
  const { a, b, api, data, started } = await twoInstances(backend, opts);
  try {
    const { tokens } = await prepareAgentTasks(api, p.tasks, TASK_MAX_ACTIONS);
    const targets = [{ url: a.url, tokens }, { url: b.url, tokens }];
    const body = authorizeBodies();
    // Both instances warmed as long as each is then measured: a process's first seconds
    // (JIT tiers, its policy memo) cost it more CPU per decision, and the phase that ran
    // first used to take all of that (the two-instance one: 2,087 vs 2,653/s later in the run).
    await authorizeLoad(targets, p.concurrency, 2 * p.warmup_s * 1000, body);
    // Two, one, one, two (half the duration each): drift and what is left of the warm-up
    // weigh on both alike; the ratio is of the decisions of all rounds of each.
    const half = (p.duration_s * 1000) / 2;
    const two1 = await measured(data.spec, [a, b], () => phase([a, b], targets, p.concurrency, half, body));
    const one1 = await measured(data.spec, [a, b], () => phase([a], [targets[0]!], p.concurrency, half, body));
    const one = await measured(data.spec, [a, b], () => phase([a], [targets[0]!], p.concurrency, half, body));
    const c32 = await measured(data.spec, [a, b], () => phase([a, b], targets, p.concurrency, half, body));
    const rate = (xs: { requests: number; duration_s: number }[]) => xs.reduce((s, x) => s + x.requests, 0) / xs.reduce((s, x) => s + x.duration_s, 0);
    const twoRate = Math.round(rate([two1, c32]));
    const oneRate = Math.round(rate([one1, one]));
    const scaling = oneRate > 0 ? Math.round((twoRate / oneRate) * 100) / 100 : 0;
    opts.log(
      `http_two_instances[${backend}]: c32 over 2 instances ${twoRate}/s (rounds ${two1.decisions_per_s}, ${c32.decisions_per_s}) p50 ${c32.latency_us.p50} us p99 ${c32.latency_us.p99} us; ` +
        `one instance ${oneRate}/s (rounds ${one1.decisions_per_s}, ${one.decisions_per_s}) (x${scaling})`,
    );
    for (const [name, v] of [['two instances', c32], ['one instance', one]] as const) {
      opts.log(
        `http_two_instances[${backend}]: ${name} (last round): CPU us/decision server ${v.server_cpu_us_per_decision}, PostgreSQL ${v.cpu.postgres_cpu_us_per_decision}, load generator ${v.client_cpu_us_per_decision}; ` +
          `cores server ${v.cpu.server_cores.join(' + ')}, PostgreSQL ${v.cpu.postgres_cores}, load generator ${v.cpu.load_generator_cores}, machine busy ${v.cpu.machine_busy_cores}; ` +
          `mean commit batch ${v.group_commit.map((g) => g?.mean_batch ?? '-').join(', ')}`,
      );
    }
    // What this machine allows at most: were every decision to cost each party (servers,
    // PostgreSQL, this load generator) what it costs with one instance, two instances could
    // do no better than the machine's cores over the cores one instance's round kept busy.
    const oneBusyCores = one.cpu.server_cores.reduce((a, x) => a + x, 0) + one.cpu.postgres_cores + one.cpu.load_generator_cores;
    const machineCeiling = oneBusyCores > 0 ? Math.round((cpus().length / oneBusyCores) * 100) / 100 : null;
    opts.log(`http_two_instances[${backend}]: one instance keeps ${Math.round(oneBusyCores * 100) / 100} of ${cpus().length} cores busy: two instances can reach at most x${machineCeiling} here at its cost per decision`);
    const commits = await storeCommitScaling(data.spec, { phaseMs: opts.smoke ? 200 : q ? 500 : 1500, rounds: opts.smoke ? 1 : 2, batch: 8, tasks: p.tasks });
    opts.log(
      `http_two_instances[${backend}]: decision commits alone (batches of ${commits.batch} on ${p.tasks} shared tasks, one batch in flight per instance): ` +
        `two instances ${commits.two_instances_commits_per_s}/s, one ${commits.one_instance_commits_per_s}/s (x${commits.two_vs_one})`,
    );
    return {
      result: {
        params: { ...p, rounds: 'two, one, one, two; each duration_s / 2' },
        two_instances_per_s: twoRate,
        one_instance_per_s: oneRate,
        rounds: { two_instances: [two1.decisions_per_s, c32.decisions_per_s], one_instance: [one1.decisions_per_s, one.decisions_per_s] },
        /** the last round of each */
        c32,
        one_instance_c32: one,
        two_vs_one: scaling,
        /** cores / the cores one instance's round kept busy (all parties): the most two instances could reach on this machine at one instance's cost per decision */
        machine_ceiling: machineCeiling,
        store_commits: commits,
      },
      targets: {
        [`http_two_instances.${backend}.two_vs_one`]: {
          ...atLeast('two instances / one instance, decisions/s at concurrency 32 (same data, same run)', scaling, 1.7),
          figures: { two_instances_per_s: twoRate, one_instance_per_s: oneRate, ...(machineCeiling === null ? {} : { machine_ceiling: machineCeiling }) },
        },
      },
    };
  } finally {
    api.close();
    for (const c of started) await c.stop();
    await data.destroy();
  }
}

/** The machine's busy and total jiffies, all CPUs (/proc/stat); null where unavailable. */
function machineJiffies(): { busy: number; total: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((s, x) => s + x, 0);
    return { busy: total - f[3]! - (f[4] ?? 0), total };
  } catch {
    return null;
  }
}

/**
 * A load phase with where the machine's cores went: each server, the PostgreSQL backends
 * of these instances (by application_name, db.ts), this load generator, and the whole
 * machine (other work included). On 2 cores shared by all of them, what bounds the ratio.
 */
async function measured<T extends { requests: number; duration_s: number; client_cpu_us_per_decision: number | null }>(spec: StoreSpec, servers: ServerChild[], run: () => Promise<T>) {
  const pids = spec.backend === 'postgres' ? await backendPids(spec) : [];
  const pg0 = pids.map((p) => processCpuUs(p) ?? 0);
  const s0 = servers.map((c) => processCpuUs(c.pid) ?? 0);
  const m0 = machineJiffies();
  const v = await run();
  const m1 = machineJiffies();
  const s1 = servers.map((c) => processCpuUs(c.pid) ?? 0);
  const pgUs = pids.reduce((s, p, i) => s + (processCpuUs(p) ?? pg0[i]!) - pg0[i]!, 0);
  const cores = (us: number) => Math.round((us / 1e6 / v.duration_s) * 100) / 100;
  return {
    ...v,
    cpu: {
      /** each instance, the idle one included in the one-instance rounds */
      server_cores: s1.map((x, i) => cores(x - s0[i]!)),
      postgres_cpu_us_per_decision: v.requests ? round(pgUs / v.requests) : null,
      postgres_cores: cores(pgUs),
      load_generator_cores: cores((v.client_cpu_us_per_decision ?? 0) * v.requests),
      machine_busy_cores: m0 && m1 ? Math.round(((m1.busy - m0.busy) / (m1.total - m0.total)) * cpus().length * 100) / 100 : null,
    },
  };
}

/** The PostgreSQL backends serving this benchmark's schema (src/store/postgres/db.ts names them `writ:<schema>`). */
async function backendPids(spec: Extract<StoreSpec, { backend: 'postgres' }>): Promise<number[]> {
  const pg = await import('pg');
  const client = new pg.default.Client({ connectionString: withDefaultUser(spec.url) });
  await client.connect();
  try {
    const r = await client.query('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [`writ:${spec.schema}`.slice(0, 63)]);
    return r.rows.map((x) => Number(x.pid));
  } finally {
    await client.end();
  }
}

interface Trial {
  /** first refusal received, measured from the revoke request being sent / its answer received */
  refusal_from_send_us: number;
  refusal_from_ack_us: number;
  /** allows answered to requests sent after the revoke was acknowledged */
  allows_after_ack: number;
  /** whether the first request B received after the acknowledgement was refused */
  next_request_refused: boolean;
  refusal_code: string;
  /** what B answered to the first request sent after the acknowledgement */
  first_after_ack: string;
}

/** One agent polling B sequentially until it is refused (or `timeoutMs`). */
async function revokeTrial(api: BenchApi, bUrl: string, agentId: string, key: ReturnType<typeof makeAgentKey>, warmupCalls: number, timeoutMs: number): Promise<Trial> {
  const taskId = await api.createTask(agentId, BENCH_SCOPE, 10_000);
  const token = await api.taskToken(agentId, key, taskId);
  const client = loadClient(bUrl, 1);
  const body = authorizeBodies(64);
  let revokeSent = Infinity;
  let revokeAcked = Infinity;
  let calls = 0;
  let allowsAfterAck = 0;
  let nextRefused: boolean | null = null;
  let firstAfterAck = 'none';
  let refusal: { at: number; code: string } | null = null;
  let warmed!: () => void;
  const warm = new Promise<void>((resolve) => (warmed = resolve));
  const poll = async () => {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const sent = performance.now();
      const r = await authorizeOnce(client, token, body(calls));
      const got = performance.now();
      calls += 1;
      if (calls === warmupCalls) warmed();
      const allowed = r.status === 200 && r.text.startsWith('{"decision":"allow"');
      if (sent > revokeAcked) {
        if (nextRefused === null) {
          nextRefused = r.status === 401;
          firstAfterAck = `${r.status} ${r.text.slice(0, 160)}`;
        }
        if (allowed) allowsAfterAck += 1;
      }
      if (r.status === 401) {
        let code = 'unknown';
        try {
          code = JSON.parse(r.text).error.code;
        } catch {
          /* keep unknown */
        }
        refusal = { at: got, code };
        return;
      }
    }
  };
  const finished = poll();
  await Promise.race([warm, finished]);
  if (refusal) throw new Error('the task was refused before it was revoked');
  revokeSent = performance.now();
  await api.ok('POST', `/v1/tasks/${taskId}/revoke`, { reason: 'benchmark' });
  revokeAcked = performance.now();
  await finished;
  client.close();
  const r = refusal as { at: number; code: string } | null;
  return {
    refusal_from_send_us: r ? round((r.at - revokeSent) * 1000) : Infinity,
    refusal_from_ack_us: r ? round((r.at - revokeAcked) * 1000) : Infinity,
    allows_after_ack: allowsAfterAck,
    next_request_refused: nextRefused ?? false,
    refusal_code: r?.code ?? 'none',
    first_after_ack: firstAfterAck,
  };
}

export async function revokePropagation(opts: RunOptions, backend: Backend): Promise<BenchOutput> {
  const q = opts.quick;
  const p = { backend, instances: 2, trials: q ? 3 : 20, warmup_calls_per_trial: 20, timeout_ms: 5000, revoke_via: 'A (POST /v1/tasks/{id}/revoke)', poll_on: 'B (POST /v1/authorize, sequential)' };
  const { a, b, api, data, started } = await twoInstances(backend, opts);
  try {
    const key = makeAgentKey();
    await api.registerAgent({ id: BENCH_AGENT.id, name: BENCH_AGENT.name, labels: BENCH_AGENT.labels }, key);
    const trials: Trial[] = [];
    for (let i = 0; i < p.trials; i++) trials.push(await revokeTrial(api, b.url, BENCH_AGENT.id, key, p.warmup_calls_per_trial, p.timeout_ms));
    const refused = trials.filter((t) => Number.isFinite(t.refusal_from_ack_us));
    const allowsAfterAck = trials.reduce((s, t) => s + t.allows_after_ack, 0);
    const codes: Record<string, number> = {};
    for (const t of trials) codes[t.refusal_code] = (codes[t.refusal_code] ?? 0) + 1;
    const result = {
      params: { ...p, instance_a: a.url, instance_b: b.url },
      refused_trials: refused.length,
      refusal_codes: codes,
      refusal_from_ack_us: summarize(refused.map((t) => t.refusal_from_ack_us)),
      refusal_from_send_us: summarize(refused.map((t) => t.refusal_from_send_us)),
      allows_after_revoke_ack: allowsAfterAck,
      next_request_refused: trials.filter((t) => t.next_request_refused).length,
      /** answers to the first request after the acknowledgement that were not a 401 */
      next_request_other: trials.filter((t) => !t.next_request_refused).map((t) => t.first_after_ack),
    };
    opts.log(
      `revoke_propagation[${backend}]: ${refused.length}/${p.trials} refused (${JSON.stringify(codes)}), from ack p50 ${result.refusal_from_ack_us.p50} us max ${result.refusal_from_ack_us.max} us; ` +
        `allows after ack ${allowsAfterAck}`,
    );
    const targets: Record<string, TargetCheck> = {
      [`revoke_propagation.${backend}.allows_after_ack`]: atMost('allows answered by B to requests sent after A acknowledged the revoke', allowsAfterAck, 0),
      [`revoke_propagation.${backend}.next_request_not_refused`]: atMost('trials in which B did not answer 401 to the first request sent after the revoke was acknowledged', p.trials - result.next_request_refused, 0),
      [`revoke_propagation.${backend}.unrefused_trials`]: atMost('trials in which B never refused within the timeout', p.trials - refused.length, 0),
    };
    return { result, targets };
  } finally {
    api.close();
    for (const c of started) await c.stop();
    await data.destroy();
  }
}
