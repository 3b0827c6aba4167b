/**
 * Writ benchmarks (DESIGN.md §7). One run measures everything the targets compare,
 * so ratios are taken between figures from the same machine and the same moment:
 *
 *   raw_limit             Cedar statefulIsAuthorized (preparsed 20-policy set, sliced
 *                         entities) + one Ed25519 JWS sign: the floor of an authorize
 *   authorize_in_process  writ.authz.authorize on a real store (durable, group commit), c1 and c32
 *   authorize_http        POST /v1/authorize on loopback, server in a child process, c1 and c32
 *   scale_1000_policies   1,000 policies / 10,000 agents
 *   http_two_instances    two server processes on one PostgreSQL schema
 *   revoke_propagation    revoke through A -> refusal on B
 *   cli_startup           `writ --help` (compiled) against `node -e 0`: time ratio and peak RSS
 *   cli_startup           `writ --help` (compiled) against `node -e 0`: time ratio and peak RSS
 *   audit_evidence        offline verification of 1,000,000 exported entries; proof and checkpoint cost
 *   memory                RSS after 1,000,000 in-process decisions against RSS after 10,000 (c32, minutes)
 *
 * Usage: npm run bench -- [--quick|--smoke] [--only a,b] [--backend sqlite|postgres|both]
 *                         [--data-dir DIR] [--out FILE] [--multi-instance-sqlite]
 *
 * Prints progress and a summary on stderr; the JSON report is stdout's last line and
 * is written to bench/report.json (or --out). Figures are percentiles and ratios;
 * targets are reported as met or not, never as a failure: the exit code is non-zero
 * only when a benchmark could not run.
 */
import { COMPILED, REPO_ROOT } from './lib/runtime.js';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { authorizeHttp } from './benchmarks/http.js';
import { authorizeInProcess } from './benchmarks/in-process.js';
import { httpTwoInstances, revokePropagation } from './benchmarks/multi-instance.js';
import { rawLimit } from './benchmarks/raw-limit.js';
import { scale } from './benchmarks/scale.js';
import { POSTGRES_URL, postgresUnavailable, type Backend } from './lib/backend.js';
import { calibrationUs, machine } from './lib/machine.js';
import { atMost, type BenchOutput, type RunOptions, type TargetCheck } from './lib/types.js';

export const BENCHMARKS = ['raw_limit', 'authorize_in_process', 'authorize_http', 'scale_1000_policies', 'http_two_instances', 'revoke_propagation', 'mcp_gateway', 'audit_evidence', 'cli_startup', 'memory'] as const;
type Name = (typeof BENCHMARKS)[number];
const MULTI: Name[] = ['http_two_instances', 'revoke_propagation'];

class UsageError extends Error {}

function parseCli(argv: string[]) {
  const o = { quick: false, smoke: false, only: [...BENCHMARKS] as Name[], backend: 'sqlite', dataDir: tmpdir(), out: join(REPO_ROOT, 'bench', 'report.json'), multiSqlite: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--quick':
        o.quick = true;
        break;
      case '--smoke':
        // the test suite's run (test/bench-smoke.test.ts): --quick with the fewest iterations
        // that still produce every figure; its numbers mean nothing
        o.quick = true;
        o.smoke = true;
        break;
      case '--only': {
        const names = value().split(',').map((s) => s.trim()).filter(Boolean);
        for (const n of names) if (!(BENCHMARKS as readonly string[]).includes(n)) throw new UsageError(`unknown benchmark \`${n}\` (known: ${BENCHMARKS.join(', ')})`);
        o.only = names as Name[];
        break;
      }
      case '--backend':
        o.backend = value();
        if (!['sqlite', 'postgres', 'both'].includes(o.backend)) throw new UsageError('--backend is sqlite, postgres or both');
        break;
      case '--data-dir':
        o.dataDir = resolve(value());
        break;
      case '--out':
        o.out = resolve(value());
        break;
      case '--multi-instance-sqlite':
        o.multiSqlite = true;
        break;
      case '--help':
      case '-h':
        throw new UsageError('');
      default:
        throw new UsageError(`unknown option ${a}`);
    }
  }
  const backends: Backend[] = o.backend === 'both' ? ['sqlite', 'postgres'] : [o.backend as Backend];
  return { ...o, backends };
}

async function postgresReachable(): Promise<string | null> {
  const missing = postgresUnavailable();
  if (missing) return missing;
  let u: URL;
  try {
    u = new URL(POSTGRES_URL);
  } catch {
    return 'WRIT_BENCH_DATABASE_URL is not a URL';
  }
  return new Promise((ok) => {
    const s = net.connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 5432) });
    const t = setTimeout(() => (s.destroy(), ok(`no answer from ${u.host} within 2 s`)), 2000);
    s.on('connect', () => (clearTimeout(t), s.end(), ok(null)));
    s.on('error', (e: NodeJS.ErrnoException) => (clearTimeout(t), ok(`${u.host}: ${e.code ?? e.message}`)));
  });
}

function fmt(n: unknown): string {
  return typeof n === 'number' ? String(n) : '-';
}

async function main(): Promise<number> {
  let cli: ReturnType<typeof parseCli>;
  try {
    cli = parseCli(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (err.message) console.error(err.message);
    console.error('usage: npm run bench -- [--quick|--smoke] [--only ' + BENCHMARKS.join(',') + '] [--backend sqlite|postgres|both] [--data-dir DIR] [--out FILE] [--multi-instance-sqlite]');
    return err.message ? 2 : 0;
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const opts: RunOptions = { quick: cli.quick, smoke: cli.smoke, backends: cli.backends, dataRoot: cli.dataDir, log };
  const started = new Date();
  const host = { ...machine(cli.dataDir), calibration_us_at_start: calibrationUs() };
  if (host.load_average_at_start[0]! > 0.5 * host.cpus) {
    log(`warning: load average ${host.load_average_at_start[0]} on ${host.cpus} cpus: other work is running, figures will be skewed`);
  }
  const t0 = performance.now();
  const results: Record<string, unknown> = {};
  const targets: Record<string, TargetCheck> = {};
  const skipped: Record<string, string> = {};
  const errors: Record<string, string> = {};
  const perBackend = (name: string, backend: Backend, out: BenchOutput, elapsedS: number) => {
    const slot = (results[name] ??= {}) as Record<string, unknown>;
    slot[backend] = { ...out.result, elapsed_s: elapsedS };
    Object.assign(targets, out.targets ?? {});
  };
  const attempt = async (key: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      errors[key] = err instanceof Error ? (err.stack ?? err.message) : String(err);
      log(`${key}: FAILED: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  const pgWhy = cli.backends.includes('postgres') ? await postgresReachable() : null;
  const usable = (b: Backend, name: string): boolean => {
    if (b === 'postgres' && pgWhy) {
      skipped[`${name}.postgres`] = pgWhy;
      return false;
    }
    return true;
  };

  log(`writ bench${cli.quick ? ' (quick)' : ''}: ${cli.only.join(', ')} on ${cli.backends.join(', ')}`);
  const selected = new Set<Name>(cli.only);
  // The in-process ratio is against the raw limit of this same run.
  const needRaw = selected.has('raw_limit') || selected.has('authorize_in_process');
  let rawP50 = 0;
  if (needRaw) {
    await attempt('raw_limit', async () => {
      const t = performance.now();
      const r = await rawLimit(opts);
      results.raw_limit = { ...r.result, elapsed_s: Math.round(performance.now() - t) / 1000, ...(selected.has('raw_limit') ? {} : { ran_for: 'authorize_in_process ratio' }) };
      rawP50 = r.p50;
      Object.assign(targets, r.targets ?? {});
    });
  }
  if (selected.has('mcp_gateway')) {
    // backend-independent: Writ on its default SQLite store, MCP over stdio and streamable HTTP
    await attempt('mcp_gateway', async () => {
      const t = performance.now();
      const { runGatewayBench } = await import('./gateway.js');
      // 2,000 warm-up calls of each variant before the measured ones: with 200, every party
      // was still running much of its per-call code unoptimized (V8 tiers a function up to
      // TurboFan after thousands of runs of code run once per call), and its CPU per call
      // was about twice the steady state (pass-through 440 -> 215 us, gateway 1,115 -> 668,
      // Writ per decision 977 -> 724, 3 Dec): a gateway serves far more calls than that.
      // BENCH_GW_WARMUP=N sets it.
      const warmup = cli.smoke ? 10 : cli.quick ? 50 : Number(process.env.BENCH_GW_WARMUP ?? 2000);
      const g = await runGatewayBench({ iterations: cli.smoke ? 30 : cli.quick ? 200 : 1500, warmup });
      results.mcp_gateway = { ...g, elapsed_s: Math.round(performance.now() - t) / 1000 };
      const o = g.own_work;
      log(
        `mcp_gateway: the gateway's own work per call, decision apart (in-process, CPU): ${o.own_work_us} us over the pass-through (${o.cpu_us_per_call.gateway_instant} / ${o.cpu_us_per_call.passthrough}); ` +
          `going idle 1 ms mid-call adds ${o.resume_after_idle_us} us to the same work`,
      );
      for (const k of ['stdio', 'http'] as const) {
        const x = g[k];
        targets[`mcp_gateway.${k}.added_vs_http_decision`] = {
          ...atMost(`what \`writ gateway mcp\` adds over a pass-through proxy / one HTTP decision, p50 (${k})`, x.gateway_added_vs_decision, 1.2),
          figures: {
            gateway_minus_passthrough_p50_us: x.gateway_added_us,
            http_decision_p50_us: x.decision_http.p50_us,
            // the same ratio in CPU per call (gateway + Writ - proxy, over Writ + client of one decision): what the load on the machine skews less
            added_cpu_vs_decision: x.gateway_added_cpu_vs_decision,
          },
        };
        targets[`mcp_gateway.${k}.in_process_added_vs_decision`] = {
          ...atMost(`what the in-process gateway adds over a pass-through proxy / one in-process decision, p50 (${k})`, x.gateway_in_process_added_vs_decision, 1.2),
          figures: { gateway_minus_passthrough_p50_us: x.gateway_in_process_added_us, in_process_decision_p50_us: x.decision_in_process.p50_us, added_cpu_vs_decision: x.gateway_in_process_added_cpu_vs_decision },
        };
      }
    });
  }
  // backend-independent benchmarks that report their own targets
  const standalone = {
    cli_startup: async () => (await import('./benchmarks/cli.js')).cliStartup(opts),
    // an export file verified offline, proofs from a SQLite store
    audit_evidence: async () => (await import('./benchmarks/audit.js')).auditEvidence(opts),
  } as const;
  for (const [name, run] of Object.entries(standalone)) {
    if (!selected.has(name as Name)) continue;
    await attempt(name, async () => {
      const t = performance.now();
      const out = await run();
      results[name] = { ...out.result, elapsed_s: Math.round(performance.now() - t) / 1000 };
      Object.assign(targets, out.targets ?? {});
    });
  }
  for (const name of BENCHMARKS) {
    if (name === 'raw_limit' || name === 'mcp_gateway' || name === 'audit_evidence' || name === 'cli_startup' || !selected.has(name)) continue;
    for (const b of cli.backends) {
      if (!usable(b, name)) continue;
      if (MULTI.includes(name) && b === 'sqlite' && !cli.multiSqlite) {
        skipped[`${name}.sqlite`] = 'several instances share state through PostgreSQL: use --backend postgres (or --multi-instance-sqlite for two processes on one SQLite file)';
        continue;
      }
      await attempt(`${name}.${b}`, async () => {
        const t = performance.now();
        const out = await (() => {
          switch (name) {
            case 'authorize_in_process':
              if (!(rawP50 > 0)) throw new Error('raw_limit did not run');
              return authorizeInProcess(opts, b, rawP50);
            case 'authorize_http':
              return authorizeHttp(opts, b);
            case 'scale_1000_policies':
              return scale(opts, b);
            case 'http_two_instances':
              return httpTwoInstances(opts, b);
            case 'revoke_propagation':
              return revokePropagation(opts, b);
            case 'memory':
              return import('./benchmarks/memory.js').then((m) => m.memory(opts, b));
          }
        })();
        perBackend(name, b, out, Math.round(performance.now() - t) / 1000);
      });
    }
  }

  const report = {
    report: 'writ-bench',
    version: 1,
    started_at: started.toISOString(),
    duration_s: Math.round(performance.now() - t0) / 1000,
    options: { quick: cli.quick, only: cli.only, backends: cli.backends, data_dir: cli.dataDir, runtime: COMPILED ? 'compiled' : 'tsx' },
    machine: { ...host, load_average_at_end: os.loadavg().map((x) => Math.round(x * 100) / 100), calibration_us_at_end: calibrationUs() },
    results,
    targets,
    skipped,
    errors,
  };

  // Summary (stderr).
  const r = results as any;
  log('');
  log(`--- summary (${report.machine.cpu_model}, ${report.machine.cpus} cpus, node ${report.machine.node}, ${report.duration_s} s) ---`);
  if (r.raw_limit) log(`raw limit (cedar + sign)         p50 ${fmt(r.raw_limit.latency_us.p50)} us  p99 ${fmt(r.raw_limit.latency_us.p99)} us`);
  for (const b of cli.backends) {
    const ip = r.authorize_in_process?.[b];
    if (ip) log(`in-process [${b}]  c1 p50 ${ip.sequential.latency_us.p50} us p99 ${ip.sequential.latency_us.p99} us (x${ip.ratio_p50_vs_raw} raw) | c32 ${ip.concurrent.ops_per_s}/s p99 ${ip.concurrent.latency_us.p99} us`);
    const h = r.authorize_http?.[b];
    if (h) log(`http [${b}]        c1 ${h.c1.decisions_per_s}/s p99 ${h.c1.latency_us.p99} us | c32 ${h.c32.decisions_per_s}/s p50 ${h.c32.latency_us.p50} us p99 ${h.c32.latency_us.p99} us`);
    const s = r.scale_1000_policies?.[b];
    if (s) log(`1000 policies [${b}] c1 p50 ${s.sequential.latency_us.p50} us p99 ${s.sequential.latency_us.p99} us | 20 policies p99 ${s.sequential_20_policies.latency_us.p99} us (x${s.ratio_p99_vs_20_policies})`);
    const t = r.http_two_instances?.[b];
    if (t) log(`two instances [${b}] c32 ${t.c32.decisions_per_s}/s p99 ${t.c32.latency_us.p99} us`);
    const v = r.revoke_propagation?.[b];
    const m = r.memory?.[b];
    if (m) log(`memory [${b}]        rss after ${m.params.total} decisions ${m.marks.at(-1).rss_mb} MB, after ${m.params.early} ${m.marks[0].rss_mb} MB (x${m.ratio_rss_total_vs_early})`);
    if (v) log(`revoke A->B [${b}]   p50 ${v.refusal_from_ack_us.p50} us max ${v.refusal_from_ack_us.max} us after ack; allows after ack ${v.allows_after_revoke_ack}`);
  }
  for (const [k, t] of Object.entries(targets)) {
    const figures = t.figures ? ` [${Object.entries(t.figures).map(([f, v]) => `${f} ${v}`).join(', ')}]` : '';
    log(`target ${t.met ? 'met    ' : 'NOT met'} ${k}: ${t.value} (${t.max !== undefined ? `<= ${t.max}` : `>= ${t.min}`})${figures}`);
  }
  for (const [k, why] of Object.entries(skipped)) log(`skipped ${k}: ${why}`);
  for (const k of Object.keys(errors)) log(`error   ${k} (see report.errors)`);

  writeFileSync(cli.out, `${JSON.stringify(report, null, 2)}\n`);
  log(`report written to ${cli.out}`);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  return Object.keys(errors).length > 0 ? 1 : 0;
}

process.exitCode = await main();
