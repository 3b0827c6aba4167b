import { UsageError } from './args.js';
import { flag, hasSwitch, intFlag, list, parseArgs, positionals, requireFlag } from './args.js';
import { print } from './client.js';
import { group, type CommandContext } from './command.js';
import { GATEWAY_USAGE } from './usage-gateway.js';
import { readSettings } from '../config/settings.js';
import { tracingFromSettings } from './tracing-env.js';

/** OpenTelemetry for the gateway and the proxy: on only with an OTLP endpoint (`OTEL_*`, src/cli/tracing-env.ts). */
function gatewayTracing() {
  return tracingFromSettings(readSettings({ env: process.env }), 'writ-gateway');
}

const TOOLS_USAGE: Record<string, string> = {
  approve: GATEWAY_USAGE.tools!.split('\n').slice(0, 2).join('\n'),
  list: 'writ gateway tools list --config FILE',
};

/** Runs until SIGINT/SIGTERM (or, for stdio, until the client goes away), then closes cleanly. */
function untilStopped(close: () => Promise<void>, extra?: Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      const force = setTimeout(() => process.exit(0), 5000);
      force.unref();
      void close()
        .catch(() => undefined)
        .then(() => {
          resolve();
          process.exit(0);
        });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    void extra?.then(stop);
  });
}

/** The agent's DPoP key: `--dpop-key FILE`, else the configuration's `writ.dpop_key_file` (relative to it). */
async function dpopKeyOf(args: ReturnType<typeof parseArgs>, config: { baseDir: string; writ: { dpop_key_file?: string } }) {
  const [{ resolvePath }, { loadDpopKey }] = await Promise.all([import('../gateway/config.js'), import('./agent-key.js')]);
  const file = flag(args, 'dpop-key') ?? (config.writ.dpop_key_file ? resolvePath(config.baseDir, config.writ.dpop_key_file) : undefined);
  return file === undefined ? undefined : loadDpopKey(file);
}

async function mcp(argv: string[]): Promise<void> {
  const args = parseArgs(argv, { values: ['config', 'host', 'port', 'dpop-key', 'agent', 'agent-key', 'task'], switches: ['stdio', 'follow-agent-tasks'] });
  positionals(args, []);
  // the agent's key and the task(s) it works on: the gateway gets and renews its own task token
  const own = await ownTokenOptions(args);
  const [{ loadGatewayConfig }, { HttpAuthorizer }, { McpGateway }, serve] = await Promise.all([
    import('../gateway/config.js'),
    import('../gateway/authorizer.js'),
    import('../gateway/mcp-gateway.js'),
    import('../gateway/mcp-serve.js'),
  ]);
  const config = loadGatewayConfig(requireFlag(args, 'config'));
  const tracing = await gatewayTracing();
  const opName = config.writ.operator_token_env;
  const operatorToken = opName ? process.env[opName] : undefined;
  const dpopKey = await dpopKeyOf(args, config);
  const authorizer = new HttpAuthorizer({ url: config.writ.url, operatorToken, timeoutMs: config.writ.timeout_ms, dpopKey });
  // the CLI is the edge: the gateway resolves its `{"env": NAME}` references in the environment given here
  let keeper: import('../gateway/task-token-keeper.js').TaskTokenKeeper | undefined;
  const gw = new McpGateway({
    config,
    authorizer,
    env: process.env,
    tokenProblem: () => {
      const c = keeper?.current();
      return c && c.kind === 'refused' ? { code: c.code, message: c.message } : null;
    },
  });
  if (dpopKey) gw.log('dpop_key', { jkt: dpopKey.jkt });
  if (opName && !operatorToken) gw.log('operator_token_missing', { env: opName, note: 'tools/list is not narrowed to the task scope' });
  else if (!opName) gw.log('no_operator_token', { note: 'tools/list is not narrowed to the task scope (set writ.operator_token_env)' });
  if (gw.pins.count === 0) gw.log('no_pins', { path: config.pins_file, note: 'no tool is approved: run `writ gateway tools approve`' });
  await gw.start();
  if (own) {
    const { TaskTokenKeeper } = await import('../gateway/task-token-keeper.js');
    // with a DPoP key, the tokens it gets are bound to it (the authorizer above proves them)
    keeper = new TaskTokenKeeper({ url: config.writ.url, agentId: own.agentId, key: own.key, ...(own.task !== undefined ? { task: own.task } : { follow: true }), log: gw.log, timeoutMs: config.writ.timeout_ms, dpopKey });
    // a new task can show other tools: tell the client to list them again
    keeper.onChange(() => gw.notifyToolsChanged());
    gw.log('agent_key_loaded', { agent_id: own.agentId, kid: own.key.kid, ...(own.task !== undefined ? { task_id: own.task } : { follow_agent_tasks: true }) });
    keeper.start();
    const k = keeper;
    const { closed } = await serve.serveMcpStdio(gw, () => k.token());
    gw.log('serving_stdio', { upstreams: [...gw.upstreams.keys()] });
    await untilStopped(async () => {
      await gw.close();
      await k.close();
      await tracing?.shutdown();
    }, closed);
    return;
  }
  if (hasSwitch(args, 'stdio')) {
    const token = serve.taskTokenSource({ file: config.writ.task_token_file ? config.writ.task_token_file : undefined, envName: config.writ.task_token_env, env: process.env });
    if (!token()) gw.log('no_task_token', { env: config.writ.task_token_env, file: config.writ.task_token_file ?? null });
    const { closed } = await serve.serveMcpStdio(gw, token);
    gw.log('serving_stdio', { upstreams: [...gw.upstreams.keys()] });
    await untilStopped(async () => {
      await gw.close();
      await tracing?.shutdown();
    }, closed);
    return;
  }
  const port = intFlag(args, 'port') ?? config.listen?.port ?? 8090;
  const host = flag(args, 'host') ?? config.listen?.host ?? '127.0.0.1';
  const metricsToken = process.env.WRIT_METRICS_TOKEN || undefined;
  if (metricsToken !== undefined && metricsToken.length < 32) throw new UsageError('WRIT_METRICS_TOKEN must be at least 32 characters (`openssl rand -base64 32`)');
  const running = await serve.serveMcpHttp(gw, {
    host,
    port,
    path: config.listen?.path ?? '/mcp',
    maxSessions: config.max_sessions,
    maxSessionsPerTask: config.max_sessions_per_task,
    maxSessionsPerAgent: config.max_sessions_per_agent,
    sessionCheckSeconds: config.session_check_seconds,
    idleSeconds: config.session_idle_seconds,
    metricsToken,
    publicUrl: config.listen?.public_url ? `${config.listen.public_url.replace(/\/+$/, '')}${config.listen.path}` : undefined,
  });
  gw.log('listening', { url: running.url, authorizer: authorizer.mode });
  console.log(`writ gateway listening on ${running.url}`);
  await untilStopped(async () => {
    await running.close();
    await gw.close();
    await tracing?.shutdown();
  });
}

/**
 * `--task ID` or `--follow-agent-tasks`, with `--agent ID` (or WRIT_AGENT_ID) and the agent's
 * private JWK from `--agent-key FILE` or WRIT_AGENT_KEY (the JWK itself): the stdio gateway
 * obtains and renews its own task tokens (src/gateway/task-token-keeper.ts). Null without
 * either task option.
 */
async function ownTokenOptions(args: ReturnType<typeof parseArgs>) {
  const task = flag(args, 'task');
  const follow = hasSwitch(args, 'follow-agent-tasks');
  const keyFile = flag(args, 'agent-key');
  if (task === undefined && !follow) {
    if (keyFile !== undefined || flag(args, 'agent') !== undefined) throw new UsageError('`--agent` and `--agent-key` go with `--task ID` or `--follow-agent-tasks`');
    return null;
  }
  if (task !== undefined && follow) throw new UsageError('give one of `--task ID` and `--follow-agent-tasks`');
  if (!hasSwitch(args, 'stdio')) throw new UsageError('`--task` and `--follow-agent-tasks` serve one agent: they go with `--stdio`');
  if (task !== undefined && (task.trim() === '' || task.length > 256)) throw new UsageError('`--task` takes a task id');
  const agentId = flag(args, 'agent') ?? process.env.WRIT_AGENT_ID;
  if (!agentId) throw new UsageError('the gateway needs the agent id: `--agent ID` (or WRIT_AGENT_ID)');
  const envKey = process.env.WRIT_AGENT_KEY;
  if (keyFile === undefined && !envKey) throw new UsageError('the gateway needs the agent\'s private key: `--agent-key FILE` or WRIT_AGENT_KEY (the JWK)');
  const { loadPrivateKey, parsePrivateKey } = await import('./agent-key.js');
  const key = keyFile !== undefined ? await loadPrivateKey(keyFile) : await parsePrivateKey(envKey!, 'WRIT_AGENT_KEY');
  return { agentId, key, ...(task !== undefined ? { task } : {}) };
}

async function httpProxy(argv: string[]): Promise<void> {
  const args = parseArgs(argv, { values: ['config', 'host', 'port', 'dpop-key'] });
  positionals(args, []);
  const [{ loadProxyConfig }, { HttpAuthorizer }, { HttpProxy }] = await Promise.all([
    import('../gateway/config.js'),
    import('../gateway/authorizer.js'),
    import('../gateway/http-proxy.js'),
  ]);
  const config = loadProxyConfig(requireFlag(args, 'config'));
  const tracing = await gatewayTracing();
  const authorizer = new HttpAuthorizer({ url: config.writ.url, timeoutMs: config.writ.timeout_ms, dpopKey: await dpopKeyOf(args, config) });
  const metricsToken = process.env.WRIT_METRICS_TOKEN || undefined;
  if (metricsToken !== undefined && metricsToken.length < 32) throw new UsageError('WRIT_METRICS_TOKEN must be at least 32 characters (`openssl rand -base64 32`)');
  const proxy = new HttpProxy({ config, authorizer, metricsToken, env: process.env, publicUrl: config.listen?.public_url });
  const running = await proxy.listen(flag(args, 'host') ?? config.listen?.host ?? '127.0.0.1', intFlag(args, 'port') ?? config.listen?.port ?? 8091);
  proxy.log('listening', { url: running.url, routes: config.routes.map((r) => r.name) });
  console.log(`writ gateway http listening on ${running.url}`);
  await untilStopped(async () => {
    await running.close();
    await tracing?.shutdown();
  });
}

/** Connects to the selected upstreams and reads their catalogs. */
async function readCatalogs(configPath: string, only: string[]) {
  const [{ loadGatewayConfig }, { createUpstreams }, { Redactor }, { jsonLog }] = await Promise.all([
    import('../gateway/config.js'),
    import('../gateway/upstream.js'),
    import('../gateway/secrets.js'),
    import('../gateway/log.js'),
  ]);
  const config = loadGatewayConfig(configPath);
  for (const name of only) if (!config.upstreams.some((u) => u.name === name)) throw new Error(`no upstream named \`${name}\` in ${configPath}`);
  const redactor = new Redactor();
  const log = jsonLog(redactor);
  const ups = createUpstreams(config, { redactor, log, env: process.env, only: only.length ? only : undefined });
  const catalogs = new Map<string, { name: string; description?: string; inputSchema?: unknown }[]>();
  try {
    for (const u of ups.values()) {
      await u.refresh();
      catalogs.set(u.name, [...u.cached().values()].map((t) => t.tool));
    }
  } finally {
    await Promise.all([...ups.values()].map((u) => u.close()));
  }
  return { config, catalogs };
}

const tools = group('gateway tools', TOOLS_USAGE, {
  async approve(argv) {
    const args = parseArgs(argv, { values: ['config'], lists: ['upstream', 'tool'] });
    positionals(args, []);
    const toolsWanted = list(args, 'tool');
    const upstreamsWanted = [...new Set([...list(args, 'upstream'), ...toolsWanted.map((t) => t.split('.')[0]!)])];
    const { config, catalogs } = await readCatalogs(requireFlag(args, 'config'), upstreamsWanted);
    const { readPinFile, writePinFile, approveCatalogs } = await import('../gateway/pins.js');
    const existing = readPinFile(config.pins_file);
    const { pins, report } = approveCatalogs(existing, catalogs, { only: toolsWanted.length ? new Set(toolsWanted) : undefined });
    for (const t of toolsWanted) {
      if (!report.some((r) => `${r.upstream}.${r.tool}` === t)) throw new Error(`the upstream has no tool \`${t}\``);
    }
    writePinFile(config.pins_file, pins);
    print({ pins_file: config.pins_file, tools: report.map((r) => ({ tool: `${r.upstream}.${r.tool}`, status: r.status, sha256: r.sha256 })) });
  },
  async list(argv) {
    const args = parseArgs(argv, { values: ['config'] });
    positionals(args, []);
    const { config, catalogs } = await readCatalogs(requireFlag(args, 'config'), []);
    const { readPinFile, toolDigest } = await import('../gateway/pins.js');
    const pins = readPinFile(config.pins_file);
    const out: { tool: string; status: string; sha256: string | null; pinned_sha256: string | null }[] = [];
    for (const [u, list_] of catalogs) {
      for (const t of list_) {
        const digest = toolDigest(t);
        const pin = pins.upstreams[u]?.[t.name];
        out.push({ tool: `${u}.${t.name}`, status: !pin ? 'unpinned' : pin.sha256 === digest ? 'pinned' : 'changed', sha256: digest, pinned_sha256: pin?.sha256 ?? null });
      }
      for (const name of Object.keys(pins.upstreams[u] ?? {})) {
        if (!list_.some((t) => t.name === name)) out.push({ tool: `${u}.${name}`, status: 'gone', sha256: null, pinned_sha256: pins.upstreams[u]![name]!.sha256 });
      }
    }
    print({ pins_file: config.pins_file, tools: out });
  },
});

/**
 * Labels live in Writ (PUT /v1/tool-labels), never in the authorize request, so that
 * no caller picks the labels its own call is judged by; this mirrors a gateway or
 * proxy configuration's labels there, with an admin's token.
 */
async function labels(argv: string[]): Promise<void> {
  const args = parseArgs(argv, { values: ['config', 'url', 'token'] });
  positionals(args, []);
  const path = requireFlag(args, 'config');
  const { readFileSync } = await import('node:fs');
  const { parseGatewayConfig, parseProxyConfig } = await import('../gateway/config.js');
  const { baseUrl, operatorToken, request } = await import('./client.js');
  const raw = JSON.parse(readFileSync(path, 'utf8')) as { routes?: unknown };
  const wanted = new Map<string, string[]>();
  if (raw.routes !== undefined) {
    for (const r of parseProxyConfig(raw, path).routes) if (r.labels) wanted.set(r.name, r.labels);
  } else {
    for (const u of parseGatewayConfig(raw, path).upstreams) {
      for (const [tool, settings] of Object.entries(u.tools)) if (settings.labels) wanted.set(`${u.name}.${tool}`, settings.labels);
    }
  }
  const token = operatorToken(args);
  const url = flag(args, 'url') ?? baseUrl(args);
  const set: { pattern: string; labels: string[] }[] = [];
  for (const [pattern, l] of wanted) set.push(await request(url, 'PUT', '/v1/tool-labels', { token, json: { pattern, labels: l } }));
  print({ tool_labels: set.map((e) => ({ pattern: e.pattern, labels: e.labels })) });
}

/** `writ gateway mcp|http|tools|labels`. */
export const gateway = group('gateway', GATEWAY_USAGE, {
  labels,
  mcp,
  http: httpProxy,
  tools: (argv: string[], ctx: CommandContext) => tools(argv, ctx),
});
