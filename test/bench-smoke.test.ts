import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runChild, type RunResult } from './helpers/child.js';
import { REPO } from './helpers/serve-process.js';

const ROOT = REPO;

/**
 * Runs the benchmark to completion: as `npm run bench` does (compiled, scripts/bench.mjs), or
 * from the sources through tsx. No time bound: on a loaded machine it is slow, and that is
 * not what this checks.
 */
function run(args: string[], how: 'compiled' | 'tsx' = 'compiled'): Promise<RunResult> {
  const entry = how === 'compiled' ? ['scripts/bench.mjs'] : ['--import', 'tsx', 'bench/run.ts'];
  return runChild(process.execPath, [...entry, ...args], { cwd: ROOT, timeoutMs: Infinity });
}

function positive(value: unknown, what: string): void {
  assert.equal(typeof value, 'number', `${what} is a number`);
  assert.ok((value as number) > 0, `${what} is positive (got ${String(value)})`);
}

// Checks the benchmark runs and writes its report; never how fast anything is, nor how long it takes.
// the two runs at once: each mostly waits on the processes it starts (Writ, gateways, proxies)
describe('bench smoke', { concurrency: true }, () => {
  it('runs --quick raw_limit and authorize_in_process and reports the expected figures', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'writ-bench-smoke-'));
    try {
      const out = join(dir, 'report.json');
      const r = await run(['--smoke', '--only', 'raw_limit,authorize_in_process', '--out', out, '--data-dir', dir]);
      assert.equal(r.code, 0, `bench exited with ${r.code}: ${r.stderr.slice(-2000)}`);
      const lines = r.stdout.trim().split('\n');
      const report = JSON.parse(lines[lines.length - 1]!);
      assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), report, 'the report file holds the same report');
      assert.equal(report.report, 'writ-bench');
      assert.equal(report.options.runtime, 'compiled', 'npm run bench measures the compiled code, as production runs it');
      assert.deepEqual(report.errors, {});
      assert.equal(typeof report.machine.cpu_model, 'string');
      positive(report.machine.cpus, 'machine.cpus');
      assert.match(report.machine.node, /^v\d+/);

      const raw = report.results.raw_limit;
      for (const k of ['p50', 'p90', 'p99', 'max', 'mean']) positive(raw.latency_us[k], `raw_limit.latency_us.${k}`);
      positive(raw.params.iterations, 'raw_limit.params.iterations');
      positive(raw.params.policies, 'raw_limit.params.policies');
      positive(raw.components_us.cedar_stateful_is_authorized.p50, 'raw_limit cedar p50');
      positive(raw.components_us.ed25519_sign.p50, 'raw_limit sign p50');

      const ip = report.results.authorize_in_process.sqlite;
      assert.equal(ip.params.backend, 'sqlite');
      for (const k of ['p50', 'p99']) {
        positive(ip.sequential.latency_us[k], `in-process sequential ${k}`);
        positive(ip.concurrent.latency_us[k], `in-process concurrent ${k}`);
      }
      positive(ip.sequential.ops_per_s, 'in-process sequential ops/s');
      positive(ip.concurrent.ops_per_s, 'in-process concurrent ops/s');
      assert.equal(ip.concurrent.concurrency, 32);
      positive(ip.ratio_p50_vs_raw, 'ratio_p50_vs_raw');
      positive(ip.p99_us, 'p99_us');
      positive(ip.outcomes.allow, 'allowed decisions');
      assert.equal(ip.outcomes.deny, 0, 'the benchmark action is allowed every time');

      for (const key of ['authorize_in_process.sqlite.p50_vs_raw', 'authorize_in_process.sqlite.p99_us']) {
        const t = report.targets[key];
        assert.ok(t, `target ${key} is reported`);
        assert.equal(typeof t.met, 'boolean');
        positive(t.value, `${key}.value`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs --quick mcp_gateway and reports direct, pass-through and gateway figures', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'writ-bench-smoke-gw-'));
    try {
      const out = join(dir, 'report.json');
      // from the sources this time: the tsx way (node --import tsx bench/run.ts) keeps working
      const r = await run(['--smoke', '--only', 'mcp_gateway', '--out', out, '--data-dir', dir], 'tsx');
      assert.equal(r.code, 0, `bench exited with ${r.code}: ${r.stderr.slice(-2000)}`);
      const report = JSON.parse(readFileSync(out, 'utf8'));
      assert.deepEqual(report.errors, {});
      for (const k of ['stdio', 'http']) {
        const sec = report.results.mcp_gateway[k];
        for (const v of ['direct', 'passthrough', 'gateway', 'gateway_in_process', 'decision_http', 'decision_in_process']) positive(sec[v].p50_us, `${k}.${v}.p50_us`);
        positive(sec.gateway_vs_passthrough_p50, `${k} ratio`);
        for (const t of ['added_vs_http_decision', 'in_process_added_vs_decision']) {
          const target = report.targets[`mcp_gateway.${k}.${t}`];
          assert.equal(typeof target.met, 'boolean');
          // the two p50s the ratio divides (and beside them, the same ratio in CPU)
          const p50s = Object.keys(target.figures).filter((f) => f.endsWith('_p50_us'));
          assert.equal(p50s.length, 2, 'a ratio target carries its two figures');
          for (const f of p50s) positive(target.figures[f], `${k}.${t}.${f}`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
