/**
 * Gateway benchmark: MCP tool-call latency (p50/p99, sequential calls) for
 *   direct       the client talks to the upstream MCP server
 *   passthrough  through a plain pass-through MCP proxy (bench/lib/mcp-passthrough.ts)
 *   gateway      through `writ gateway mcp`, which asks Writ (`writ serve`, SQLite,
 *                each write answered after its WAL fsync) over HTTP for every call and reports each outcome
 *   gateway_in_process  the same gateway with Writ in its own process (InProcessAuthorizer,
 *                its own SQLite store, durable writes): no hop to decide
 * for stdio (every hop stdio) and streamable HTTP (every hop HTTP on loopback). Every
 * party is its own process. Target (issue 12, item 6): the gateway adds at most 1.2x one
 * decision's cost over the pass-through proxy, (gateway p50 - passthrough p50) / decision
 * p50, all from the same interleaved rounds: the HTTP decision (POST /v1/authorize on a
 * kept-alive connection, as the gateway asks) for `writ gateway mcp`, the in-process
 * decision (timed inside the embedded gateway) for the gateway in Writ's process.
 *
 *   node --import tsx bench/gateway.ts [--iterations N] [--warmup N]   # prints JSON
 *
 * From bench/run.ts: `const { runGatewayBench } = await import('./gateway.js');
 * report.gateway = await runGatewayBench({ iterations: 2000 });`
 */
import { NODE_ARGS, REPO_ROOT, script } from './lib/runtime.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { approveCatalogs, emptyPins, writePinFile } from '../src/gateway/pins.js';
import { threadsCpuNs } from './lib/cpu.js';
import { measureGatewayOwnWork, type GatewayOwnWork } from './lib/gateway-own-work.js';
import { WritApiError, WritClient } from '@writ/sdk';

const ROOT = REPO_ROOT;
// every party runs as this benchmark does: compiled (npm run bench) or through tsx (bench/lib/runtime.ts)
const CLI = script('src/cli/main.ts');
const ECHO = script('bench/lib/mcp-echo-server.ts');
const PASS = script('bench/lib/mcp-passthrough.ts');
const EMBEDDED = script('bench/lib/gateway-embedded.ts');
const NODE = [process.execPath, ...NODE_ARGS];

/**
 * `BENCH_CPU_PROF_DIR=DIR`: Writ, the gateways and the pass-through proxies run with
 * `--cpu-prof`, each writing its profiles to DIR/<role>/ as it exits (what each spends per
 * call beyond forwarding; summarize with bench/lib/cpu-profile-top.ts). Node names them
 * CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread, the
 * others the module loader's (tsx) and Writ's policy workers. BENCH_CPU_PROF_INTERVAL_US sets
 * the sampling interval (default 1000).
 */
function nodeFor(role: string): string[] {
  const dir = process.env.BENCH_CPU_PROF_DIR;
  // BENCH_NODE_FLAGS: more node flags for these roles, e.g. `--perf-basic-prof` for `perf record -p`
  // (the MCP SDK starts stdio servers with a minimal environment: NODE_OPTIONS does not reach them)
  const extra = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  return dir ? [...NODE, ...extra, '--cpu-prof', `--cpu-prof-dir=${join(dir, role)}`, `--cpu-prof-interval=${process.env.BENCH_CPU_PROF_INTERVAL_US ?? 1000}`] : [...NODE, ...extra];
}

export interface Latency {
  n: number;
  p50_us: number;
  p99_us: number;
  mean_us: number;
}

export interface Section {
  direct: Latency;
  passthrough: Latency;
  gateway: Latency;
  gateway_in_process: Latency;
  /** POST /v1/authorize on a kept-alive connection, from the bench, in the same rounds */
  decision_http: Latency;
  /** writ.authz.authorize as the embedded gateway called it, timed in its process, same rounds */
  decision_in_process: Latency;
  gateway_vs_passthrough_p50: number;
  gateway_in_process_vs_passthrough_p50: number;
  /** gateway p50 - passthrough p50, us */
  gateway_added_us: number;
  gateway_in_process_added_us: number;
  /** what the gateway adds / one HTTP decision (target <= 1.2) */
  gateway_added_vs_decision: number;
  /** what the in-process gateway adds / one in-process decision (target <= 1.2) */
  gateway_in_process_added_vs_decision: number;
  /** CPU per call (us, every thread of each process, over the measured rounds): less skewed by other work on the machine than wall time */
  cpu_us_per_call: CpuPerCall;
  /** CPU the standalone gateway and Writ spend per call beyond the pass-through proxy / CPU of one HTTP decision (Writ's and its client's) */
  gateway_added_cpu_vs_decision: number;
  /** CPU the in-process gateway spends per call beyond the pass-through proxy / CPU of one in-process decision */
  gateway_in_process_added_cpu_vs_decision: number;
  target: 1.2;
  met: boolean;
}

export interface CpuPerCall {
  /** the pass-through proxy's process */
  passthrough: number;
  /** the standalone gateway's process */
  gateway: number;
  /** Writ's process during the standalone gateway's calls (its decisions and outcome reports) */
  gateway_writ: number;
  /** the in-process gateway's process (its decisions included) */
  gateway_in_process: number;
  /** Writ's process during the bench's own decisions */
  decision_http_writ: number;
  /** the bench's process during its own decisions: the client side of one, as the gateway pays it */
  decision_http_client: number;
  /** each in-process decision, timed in the embedded gateway (process CPU around writ.authz.authorize) */
  decision_in_process: number;
}

export interface GatewayBenchReport {
  benchmark: 'gateway';
  iterations: number;
  warmup: number;
  node: string;
  stdio: Section;
  http: Section;
  /** POST /v1/authorize alone (kept-alive connection, loopback), measured in the same rounds as http: the floor of the standalone gateway's overhead */
  writ_authorize_http: Latency;
  /** the gateway's own work per call apart from its decision, in this process beside the pass-through (bench/lib/gateway-own-work.ts) */
  own_work: GatewayOwnWork;
  /** 1-minute load average at start and end: other work on the machine skews every figure */
  load_average: [number, number];
  notes: string[];
}

function summarize(us: number[]): Latency {
  const s = [...us].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return { n: s.length, p50_us: Math.round(at(50)), p99_us: Math.round(at(99)), mean_us: Math.round(mean) };
}

/**
 * Measures the variants in interleaved rounds (a slice of each in turn), so that a
 * load change on the machine falls on all of them alike.
 */
async function measureInterleaved(variants: (() => Promise<void>)[], iterations: number, warmup: number, rounds = 10, pids: (number | null)[] = []): Promise<{ latency: Latency[]; cpuUsPerCall: number[][] }> {
  const call = (v: () => Promise<void>) => v();
  for (const v of variants) for (let i = 0; i < warmup; i++) await call(v);
  const samples: number[][] = variants.map(() => []);
  // cpuNs[k][j]: CPU of pids[j] during variant k's slices
  const cpuNs: number[][] = variants.map(() => pids.map(() => 0));
  const cpuNow = () => pids.map((pid) => (pid === null ? 0 : (threadsCpuNs(pid) ?? 0)));
  const per = Math.max(1, Math.ceil(iterations / rounds));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < variants.length; k++) {
      const before = cpuNow();
      for (let i = 0; i < per && samples[k]!.length < iterations; i++) {
        const t0 = process.hrtime.bigint();
        await call(variants[k]!);
        samples[k]!.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      const after = cpuNow();
      for (let j = 0; j < pids.length; j++) cpuNs[k]![j]! += after[j]! - before[j]!;
    }
  }
  return { latency: samples.map(summarize), cpuUsPerCall: cpuNs.map((row, k) => row.map((ns) => Math.round(ns / 1000 / Math.max(1, samples[k]!.length)))) };
}

interface Child {
  proc: ChildProcess;
  /** resolves with the first stderr/stdout line matching */
  line: (re: RegExp, timeoutMs?: number) => Promise<RegExpExecArray>;
  stop: () => Promise<void>;
}

function toolCall(client: Client, tool: string): () => Promise<void> {
  const args = { text: 'benchmark payload' };
  return async () => {
    const r = await client.callTool({ name: tool, arguments: args });
    if (r.isError) throw new Error(`${tool} failed: ${JSON.stringify(r.content)}`);
  };
}

function start(argv: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const waiters: { re: RegExp; ok: (m: RegExpExecArray) => void }[] = [];
  const feed = (c: Buffer) => {
    text += c.toString();
    for (const w of [...waiters]) {
      const m = w.re.exec(text);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.ok(m);
      }
    }
  };
  proc.stdout!.on('data', feed);
  proc.stderr!.on('data', feed);
  const exited = new Promise<void>((ok) => proc.once('exit', () => ok()));
  return {
    proc,
    line: (re, timeoutMs = 120_000) =>
      new Promise((ok, fail) => {
        const m = re.exec(text);
        if (m) return ok(m);
        const t = setTimeout(() => fail(new Error(`no ${re} from ${argv.join(' ')}:\n${text}`)), timeoutMs);
        waiters.push({ re, ok: (x) => (clearTimeout(t), ok(x)) });
      }),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** One setup call through the SDK's API client; throws on anything but a 2xx JSON answer. */
async function api(base: string, method: string, path: string, token: string | null, body?: unknown, form?: Record<string, string>): Promise<any> {
  try {
    return await new WritClient({ url: base }).request({ method, path, token: token ?? undefined, json: body, form });
  } catch (err) {
    if (err instanceof WritApiError) throw new Error(`${method} ${path}: ${err.status} ${err.code}: ${err.message}`);
    throw err;
  }
}

/** The embedded gateway's decision times (its --stats file, written as it exits): the last `n`, the measured rounds; and their mean CPU (sampled on one call in four: bench/lib/gateway-embedded.ts). */
async function decisionsOf(file: string, n: number): Promise<{ latency: Latency; cpuUs: number }> {
  for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((ok) => setTimeout(ok, 50));
  const all = JSON.parse(readFileSync(file, 'utf8')) as { wall_us: number[]; cpu_us: number[] };
  const cpu = all.cpu_us.slice(-Math.ceil(n / 4));
  return { latency: summarize(all.wall_us.slice(-n)), cpuUs: Math.round(cpu.reduce((a, b) => a + b, 0) / Math.max(1, cpu.length)) };
}

async function stdioClient(command: string[], env: Record<string, string> = {}): Promise<{ client: Client; pid: number | null }> {
  const c = new Client({ name: 'bench', version: '1' });
  const t = new StdioClientTransport({ command: command[0]!, args: command.slice(1), cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stderr: process.env.BENCH_STDERR ? 'inherit' : 'ignore' });
  await c.connect(t);
  return { client: c, pid: t.pid };
}

/** Per variant (direct, pass-through, gateway, in-process gateway, decision), per process (pass-through, gateway, in-process gateway, Writ, bench). */
function cpuPerCall(perVariant: number[][], decisionInProcessUs: number): CpuPerCall {
  const at = (variant: number, proc: number) => perVariant[variant]![proc]!;
  return {
    passthrough: at(1, 0),
    gateway: at(2, 1),
    gateway_writ: at(2, 3),
    gateway_in_process: at(3, 2),
    decision_http_writ: at(4, 3),
    decision_http_client: at(4, 4),
    decision_in_process: decisionInProcessUs,
  };
}

async function httpClient(url: string, token?: string): Promise<Client> {
  const c = new Client({ name: 'bench', version: '1' });
  await c.connect(new StreamableHTTPClientTransport(new URL(url), token ? { requestInit: { headers: { authorization: `Bearer ${token}` } } } : undefined));
  return c;
}

export async function runGatewayBench(opts: { iterations?: number; warmup?: number } = {}): Promise<GatewayBenchReport> {
  const iterations = opts.iterations ?? 2000;
  const warmup = opts.warmup ?? 200;
  const dir = mkdtempSync(join(tmpdir(), 'writ-bench-gw-'));
  const loadAtStart = Math.round(loadavg()[0]! * 100) / 100;
  const stops: (() => Promise<void>)[] = [];
  const clients: Client[] = [];
  try {
    // Writ, as a separate process
    const admin = `wop_bench_${randomBytes(32).toString('hex')}`;
    const writ = start([...nodeFor('writ'), CLI, 'serve', '--port', '0', '--data-dir', join(dir, 'writ')], { WRIT_BOOTSTRAP_TOKEN: admin });
    stops.push(writ.stop);
    const url = (await writ.line(/listening on (http:\/\/\S+)/))[1]!;
    const agentId = 'spiffe://bench.test/agent/gateway';
    const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
    await api(url, 'POST', '/v1/agents', admin, { id: agentId, jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] } });
    // the standalone gateway and the bare decision, in both sections
    const actions = 5 * (iterations + warmup) + 100;
    const task = await api(url, 'POST', '/v1/tasks', admin, { agent_id: agentId, intent: 'gateway benchmark', scope: { tools: ['bench.*'], destinations: ['127.0.0.1:*', 'stdio:local'] }, ttl_seconds: 3600, max_actions: actions });
    const iat = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({ jti: randomBytes(12).toString('hex') })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setIssuer(agentId)
      .setSubject(agentId)
      .setAudience(url)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .sign(privateKey);
    const token = (
      await api(url, 'POST', '/oauth/token', null, undefined, {
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
        task_id: task.id,
      })
    ).access_token as string;
    const auditor = (await api(url, 'POST', '/v1/operators', admin, { name: 'gateway', roles: ['auditor'] })).token as string;

    // the upstream's one tool, pinned as an operator would
    const echoTool = { name: 'echo', description: 'Echoes the text back.', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } };
    const pinsFile = join(dir, 'pins.json');
    writePinFile(pinsFile, approveCatalogs(emptyPins(), new Map([['bench', [echoTool]]])).pins);
    const gwConfig = (upstream: Record<string, unknown>) => {
      const p = join(dir, `gateway-${randomBytes(4).toString('hex')}.json`);
      writeFileSync(p, JSON.stringify({ writ: { url, operator_token_env: 'WRIT_BENCH_AUDITOR' }, listen: { port: 0 }, pins_file: pinsFile, upstreams: [{ name: 'bench', ...upstream }] }));
      return p;
    };
    const gwEnv = { WRIT_BENCH_AUDITOR: auditor };

    // --- stdio: client -(stdio)-> [proxy -(stdio)->] upstream
    const echoCmd = [...NODE, ECHO];
    const { client: stdioDirect } = await stdioClient(echoCmd);
    clients.push(stdioDirect);
    const { client: stdioPass, pid: stdioPassPid } = await stdioClient([...nodeFor('stdio-passthrough'), PASS, '--upstream-cmd', JSON.stringify(echoCmd)]);
    clients.push(stdioPass);
    const stdioCfg = gwConfig({ transport: 'stdio', command: process.execPath, args: [...NODE_ARGS, ECHO], cwd: ROOT, destination: 'stdio:local' });
    const { client: stdioGw, pid: stdioGwPid } = await stdioClient([...nodeFor('stdio-gateway'), CLI, 'gateway', 'mcp', '--stdio', '--config', stdioCfg], { ...gwEnv, WRIT_TASK_TOKEN: token });
    clients.push(stdioGw);
    const stdioStats = join(dir, 'stdio-decisions.json');
    const { client: stdioEmb, pid: stdioEmbPid } = await stdioClient([...nodeFor('stdio-gateway-in-process'), EMBEDDED, '--data-dir', mkdtempSync(join(dir, 'emb-')), '--pins', pinsFile, '--upstream-cmd', JSON.stringify(echoCmd), '--stats', stdioStats]);
    clients.push(stdioEmb);
    // what the standalone gateway waits for on every call: one decision over HTTP, on a
    // kept-alive connection as its authorizer holds one
    const writClient = new WritClient({ url, http: { keepAlive: true, maxSockets: 1 } });
    stops.push(async () => writClient.close());
    let n = 0;
    const authorizeOnce = async () => {
      const r = await writClient.send({ method: 'POST', path: '/v1/authorize', token, json: { tool: 'bench.echo', arguments: { text: 'benchmark payload', n: n++ }, audience: 'mcp:bench', destination: 'stdio:local' } });
      if (r.status !== 200 || (r.body as any)?.decision !== 'allow') throw new Error(JSON.stringify(r.body));
    };
    // CPU of: the pass-through proxy, the gateway, the in-process gateway, Writ, this process
    const stdioRun = await measureInterleaved(
      [toolCall(stdioDirect, 'echo'), toolCall(stdioPass, 'echo'), toolCall(stdioGw, 'bench.echo'), toolCall(stdioEmb, 'bench.echo'), authorizeOnce],
      iterations,
      warmup,
      10,
      [stdioPassPid, stdioGwPid, stdioEmbPid, writ.proc.pid ?? null, process.pid],
    );
    const [sd, sp, sg, se, sa] = stdioRun.latency;
    if (process.env.BENCH_WRIT_METRICS_DIR) writeFileSync(join(process.env.BENCH_WRIT_METRICS_DIR, 'stdio.prom'), (await new WritClient({ url }).send({ method: 'GET', path: '/metrics', token: admin })).text);
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    const stdioDecisions = await decisionsOf(stdioStats, iterations);
    const stdio = {
      direct: sd!,
      passthrough: sp!,
      gateway: sg!,
      gateway_in_process: se!,
      decision_http: sa!,
      decision_in_process: stdioDecisions.latency,
      cpu_us_per_call: cpuPerCall(stdioRun.cpuUsPerCall, stdioDecisions.cpuUs),
    };

    // --- streamable HTTP: client -(http)-> [proxy -(http)->] upstream
    const upstream = start([...NODE, ECHO, '--http']);
    stops.push(upstream.stop);
    const upstreamUrl = (await upstream.line(/"listening":"([^"]+)"/))[1]!;
    const pass = start([...nodeFor('http-passthrough'), PASS, '--upstream-url', upstreamUrl, '--http']);
    stops.push(pass.stop);
    const passUrl = (await pass.line(/"listening":"([^"]+)"/))[1]!;
    const gw = start([...nodeFor('http-gateway'), CLI, 'gateway', 'mcp', '--config', gwConfig({ transport: 'http', url: upstreamUrl })], gwEnv);
    stops.push(gw.stop);
    const gwUrl = (await gw.line(/"event":"listening","url":"([^"]+)"/))[1]!;
    const httpStats = join(dir, 'http-decisions.json');
    const emb = start([...nodeFor('http-gateway-in-process'), EMBEDDED, '--data-dir', mkdtempSync(join(dir, 'emb-')), '--pins', pinsFile, '--upstream-url', upstreamUrl, '--http', '--stats', httpStats]);
    stops.push(emb.stop);
    const embLine = await emb.line(/\{"listening":"([^"]+)","token":"([^"]+)"\}/);
    const httpEmb = await httpClient(embLine[1]!, embLine[2]!);
    clients.push(httpEmb);
    const httpDirect = await httpClient(upstreamUrl);
    const httpPass = await httpClient(passUrl);
    const httpGw = await httpClient(gwUrl, token);
    clients.push(httpDirect, httpPass, httpGw);
    const httpRun = await measureInterleaved(
      [toolCall(httpDirect, 'echo'), toolCall(httpPass, 'echo'), toolCall(httpGw, 'bench.echo'), toolCall(httpEmb, 'bench.echo'), authorizeOnce],
      iterations,
      warmup,
      10,
      [pass.proc.pid ?? null, gw.proc.pid ?? null, emb.proc.pid ?? null, writ.proc.pid ?? null, process.pid],
    );
    const [hd, hp, hg, he, ha] = httpRun.latency;
    if (process.env.BENCH_WRIT_METRICS_DIR) writeFileSync(join(process.env.BENCH_WRIT_METRICS_DIR, 'http.prom'), (await new WritClient({ url }).send({ method: 'GET', path: '/metrics', token: admin })).text);
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    await emb.stop();
    const httpDecisions = await decisionsOf(httpStats, iterations);
    const http = {
      direct: hd!,
      passthrough: hp!,
      gateway: hg!,
      gateway_in_process: he!,
      decision_http: ha!,
      decision_in_process: httpDecisions.latency,
      cpu_us_per_call: cpuPerCall(httpRun.cpuUsPerCall, httpDecisions.cpuUs),
    };
    const writAuthorize = ha!;

    const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
    const section = (x: { direct: Latency; passthrough: Latency; gateway: Latency; gateway_in_process: Latency; decision_http: Latency; decision_in_process: Latency; cpu_us_per_call: CpuPerCall }): Section => {
      const added = x.gateway.p50_us - x.passthrough.p50_us;
      const addedIp = x.gateway_in_process.p50_us - x.passthrough.p50_us;
      const r = ratio(added, x.decision_http.p50_us);
      const rIp = ratio(addedIp, x.decision_in_process.p50_us);
      const c = x.cpu_us_per_call;
      return {
        ...x,
        gateway_added_cpu_vs_decision: ratio(c.gateway + c.gateway_writ - c.passthrough, c.decision_http_writ + c.decision_http_client),
        gateway_in_process_added_cpu_vs_decision: ratio(c.gateway_in_process - c.passthrough, c.decision_in_process),
        gateway_vs_passthrough_p50: ratio(x.gateway.p50_us, x.passthrough.p50_us),
        gateway_in_process_vs_passthrough_p50: ratio(x.gateway_in_process.p50_us, x.passthrough.p50_us),
        gateway_added_us: added,
        gateway_in_process_added_us: addedIp,
        gateway_added_vs_decision: r,
        gateway_in_process_added_vs_decision: rIp,
        target: 1.2,
        met: r <= 1.2 && rIp <= 1.2,
      };
    };
    // the gateway's own work apart from the decision (the other parties idle meanwhile)
    const ownWork = await measureGatewayOwnWork({ echoCmd: [...NODE, ECHO], iterations, warmup });
    return {
      benchmark: 'gateway',
      iterations,
      warmup,
      node: process.version,
      stdio: section(stdio),
      http: section(http),
      writ_authorize_http: writAuthorize,
      own_work: ownWork,
      load_average: [loadAtStart, Math.round(loadavg()[0]! * 100) / 100],
      notes: [
        'sequential calls (concurrency 1), the three variants interleaved in rounds; every party is its own process on loopback',
        'gateway: one POST /v1/authorize per call (durable SQLite commit: answered after its WAL fsync) before forwarding; outcome reported off the call path (written with the next decision)',
        'target: (gateway p50 - passthrough p50) / decision p50 <= 1.2: the HTTP decision for the standalone gateway, the in-process decision (timed in the embedded gateway) for the in-process one',
      ],
    };
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const s of stops.reverse()) await s().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const at = (name: string) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const report = await runGatewayBench({ iterations: at('--iterations'), warmup: at('--warmup') });
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}
