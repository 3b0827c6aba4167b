import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { destinationProblem } from '../core/destination.js';
import { resourceProblem } from '../core/resource.js';
import { isNeverForwarded } from './forward-headers.js';

/**
 * Gateway and proxy configuration files (JSON). Unknown fields are errors; relative
 * paths are relative to the configuration file. Secrets never appear here, only
 * references to them (`{"env": "NAME"}`, `{"file": "path"}`), resolved at startup.
 */

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const valueRef = z.union([
  z.string(),
  z.strictObject({ env: z.string().min(1), prefix: z.string().optional() }),
  z.strictObject({ file: z.string().min(1), prefix: z.string().optional() }),
]);

/** Writ's tool-name syntax (see the authorize schema). */
export const TOOL_NAME = /^[A-Za-z0-9_.:/-]{1,256}$/;
const UPSTREAM_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const labels = z.array(z.string().min(1).max(64).regex(/^[A-Za-z0-9_.:-]+$/)).max(32);

const writSchema = z.strictObject({
  /** Writ's base URL (the gateway calls POST /v1/authorize and the outcome endpoint there) */
  url: z.url({ protocol: /^https?$/ }),
  /** env var holding an operator token with role `auditor`, used only to read the task's scope for tools/list */
  operator_token_env: z.string().min(1).optional(),
  /** stdio mode: env var holding the agent's task token (default WRIT_TASK_TOKEN) */
  task_token_env: z.string().min(1).default('WRIT_TASK_TOKEN'),
  /** stdio mode: a file holding the task token, re-read when it changes (takes precedence) */
  task_token_file: z.string().min(1).optional(),
  timeout_ms: z.number().int().min(100).max(60_000).default(10_000),
  /**
   * the agent's DPoP key (RFC 9449), a private JWK file as `writ agent keygen` writes it:
   * a task token bound to it is presented to Writ with a fresh proof on every call
   */
  dpop_key_file: z.string().min(1).optional(),
});

const headers = z.record(z.string().regex(HEADER_NAME, 'header names are HTTP tokens'), valueRef);

/** A configured destination is in the canonical form Writ accepts (README, "Destinations and resources"). */
function canonicalDestination(v: string, ctx: z.RefinementCtx): void {
  const why = destinationProblem(v);
  if (why) ctx.addIssue({ code: 'custom', message: `destination \`${v.slice(0, 200)}\`: ${why}` });
}

/** A resource template is a resource once its `{param}`s are filled (Writ refuses the filled one otherwise). */
function resourceTemplate(v: string, ctx: z.RefinementCtx): void {
  const why = resourceProblem(v.replace(/\{[A-Za-z0-9_*]+\}/g, 'x'));
  if (why) ctx.addIssue({ code: 'custom', message: `resource \`${v.slice(0, 200)}\`: ${why}` });
}

const toolSettings = z.strictObject({
  /** operator labels for this tool (what policy should see; see docs/gateway.md) */
  labels: labels.optional(),
});

const upstreamCommon = {
  name: z.string().regex(UPSTREAM_NAME, 'upstream names are letters, digits, `_` and `-` (no dots)'),
  /** the action's `audience` (default `mcp:<name>`) */
  audience: z.string().min(1).max(1024).optional(),
  /** the action's `destination`; default: the URL's host for HTTP upstreams, none for stdio; null: none */
  destination: z.string().superRefine(canonicalDestination).nullable().optional(),
  /** pass the action token to the upstream in `params._meta["writ/action_token"]` */
  forward_action_token: z.boolean().default(false),
  tools: z.record(z.string(), toolSettings).default({}),
  call_timeout_ms: z.number().int().min(100).max(600_000).default(60_000),
  /** the largest answer one call may get (bytes of its JSON-RPC message); a larger one fails that call alone */
  max_result_bytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(4 * 1024 * 1024),
};

const stdioUpstream = z.strictObject({
  ...upstreamCommon,
  transport: z.literal('stdio'),
  command: z.string().min(1),
  args: z.array(z.string()).default([]),
  /** the child's environment (besides PATH, HOME and a few others); values may be secret references */
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), valueRef).default({}),
  cwd: z.string().optional(),
});

const httpUpstream = z.strictObject({
  ...upstreamCommon,
  transport: z.literal('http'),
  url: z.url({ protocol: /^https?$/ }),
  /** headers sent on every request to the upstream; values may be secret references */
  headers: headers.default({}),
});

const upstream = z.discriminatedUnion('transport', [stdioUpstream, httpUpstream]);

const listen = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8090),
  path: z.string().startsWith('/').default('/mcp'),
  /**
   * the base URL clients address (scheme, host, port; no path), when it is not the
   * listening address (behind TLS termination or a load balancer): DPoP proofs are checked
   * against it, and it names the protected resource
   */
  public_url: z.url({ protocol: /^https?$/ }).refine((u) => new URL(u).pathname === '/' && !u.includes('?') && !u.includes('#'), 'a base URL without path, query or fragment').optional(),
});

export const gatewayConfigSchema = z
  .strictObject({
    writ: writSchema,
    /** streamable HTTP listener (for `writ gateway mcp` without --stdio) */
    listen: listen.optional(),
    /** the pin file written by `writ gateway tools approve` */
    pins_file: z.string().min(1).default('gateway.pins.json'),
    /** wait this long (polling the approval) when a call needs a person's approval; 0: answer at once */
    approval_wait_seconds: z.number().int().min(0).max(600).default(0),
    /**
     * Before a call, re-list the upstream's tools when its catalog is older than this
     * (ms), and refuse the call if the tool no longer matches its pin. This bounds how
     * long an upstream that changes a tool without `notifications/tools/list_changed`
     * (a silent rug pull) keeps being called under the approved definition. 0: re-list
     * before every call.
     */
    catalog_max_age_ms: z.number().int().min(0).max(60_000).default(5000),
    /** replaced by `catalog_max_age_ms` (refused with a message saying so) */
    catalog_max_age_seconds: z.unknown().optional(),
    /** sessions open at once over all agents (streamable HTTP) */
    max_sessions: z.number().int().min(1).max(100_000).default(1000),
    /** sessions one task may hold; a newcomer past it replaces the task's least recently used idle session */
    max_sessions_per_task: z.number().int().min(1).max(100_000).default(8),
    /** sessions one agent may hold over all its tasks (same rule) */
    max_sessions_per_agent: z.number().int().min(1).max(100_000).default(32),
    /** every session's task token is checked again this often; a refused one closes the session */
    session_check_seconds: z.number().int().min(1).max(3600).default(30),
    session_idle_seconds: z.number().int().min(10).max(86_400).default(1800),
    upstreams: z.array(upstream).min(1).max(100),
  })
  .superRefine((c, ctx) => {
    if (c.catalog_max_age_seconds !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['catalog_max_age_seconds'], message: 'replaced by `catalog_max_age_ms` (default 5000, at most 60000)' });
    }
    const seen = new Set<string>();
    c.upstreams.forEach((u, i) => {
      if (seen.has(u.name)) ctx.addIssue({ code: 'custom', path: ['upstreams', i, 'name'], message: `upstream \`${u.name}\` is configured twice` });
      seen.add(u.name);
    });
  });

export type GatewayConfig = z.infer<typeof gatewayConfigSchema> & { baseDir: string; path: string };
export type UpstreamConfig = z.infer<typeof upstream>;
export type StdioUpstreamConfig = z.infer<typeof stdioUpstream>;
export type HttpUpstreamConfig = z.infer<typeof httpUpstream>;
export type WritConnectionConfig = z.infer<typeof writSchema>;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

const route = z.strictObject({
  /** the action's tool name (Writ's tool-name syntax), e.g. `github.issues` */
  name: z.string().regex(TOOL_NAME, 'route names are tool names: letters, digits and `_ . : / -`'),
  methods: z.array(z.enum(METHODS)).min(1).default(['GET']),
  /** `/github/repos/:owner/:repo/issues`, `/github/*` (`*` only as the last segment) */
  path: z.string().startsWith('/'),
  /** the upstream base URL; the request path (less `strip_prefix`) is appended to its path */
  upstream: z.url({ protocol: /^https?$/ }),
  strip_prefix: z.string().startsWith('/').optional(),
  /** the action's `audience` (default: the upstream's origin) */
  audience: z.string().min(1).max(1024).optional(),
  /** the action's `destination` (default: the upstream URL's host); null: none */
  destination: z.string().superRefine(canonicalDestination).nullable().optional(),
  /** the action's `resource`, with `{param}` filled from the path pattern, e.g. `repo:{owner}/{repo}` */
  resource: z.string().superRefine(resourceTemplate).optional(),
  /** headers injected into the upstream request; values may be secret references */
  headers: headers.default({}),
  /**
   * the agent's request headers passed upstream (case-insensitive); default
   * `DEFAULT_FORWARD_HEADERS`. Headers that change the request's meaning upstream
   * (`isNeverForwarded`) are refused here: they never pass.
   */
  forward_headers: z.array(z.string().regex(HEADER_NAME, 'header names are HTTP tokens')).max(100).optional(),
  /**
   * request bodies: `json` (default; parsed and shown to policy, others get 415), `any`
   * (other bodies are read too, up to the limit, and bound by `body_sha256` and
   * `content_type`), `none` (a body gets 415)
   */
  body: z.enum(['json', 'any', 'none']).default('json'),
  /** pass the action token to the upstream in the `Writ-Action-Token` header */
  forward_action_token: z.boolean().default(false),
  labels: labels.optional(),
  timeout_ms: z.number().int().min(100).max(600_000).default(60_000),
});

export const proxyConfigSchema = z.strictObject({
  writ: writSchema,
  listen: listen.omit({ path: true }).optional(),
  /** request bodies past this get 413 (JSON bodies are read whole, up to this, to be authorized) */
  max_body_bytes: z.number().int().min(0).max(1 << 30).default(1 << 20),
  /** response bodies past this are cut off (the connection is reset); default: no limit */
  max_response_bytes: z.number().int().min(1).max(1 << 40).optional(),
  approval_wait_seconds: z.number().int().min(0).max(600).default(0),
  /** a client must send the request headers within this (slow-loris); 408 after it */
  headers_timeout_ms: z.number().int().min(100).max(600_000).default(10_000),
  /** a client must send the whole request (headers and body) within this; 408 after it */
  request_timeout_ms: z.number().int().min(100).max(3_600_000).default(30_000),
  routes: z.array(route).min(1).max(1000),
}).refine((c) => c.headers_timeout_ms <= c.request_timeout_ms, { path: ['headers_timeout_ms'], message: 'must not be more than `request_timeout_ms`' });

export type ProxyConfig = z.infer<typeof proxyConfigSchema> & { baseDir: string; path: string };
export type RouteConfig = z.infer<typeof route>;

function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read \`${path}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`\`${path}\` is not JSON: ${(err as Error).message}`);
  }
}

function issues(err: z.ZodError, path: string): ConfigError {
  const lines = err.issues.slice(0, 10).map((i) => `  ${i.path.join('.') || '(top)'}: ${i.message}`);
  return new ConfigError(`\`${path}\` is not a valid configuration:\n${lines.join('\n')}`);
}

export function parseGatewayConfig(raw: unknown, path = 'gateway.json'): GatewayConfig {
  const r = gatewayConfigSchema.safeParse(raw);
  if (!r.success) throw issues(r.error, path);
  const baseDir = dirname(resolve(path));
  return { ...r.data, pins_file: resolve(baseDir, r.data.pins_file), baseDir, path: resolve(path) };
}

export function loadGatewayConfig(path: string): GatewayConfig {
  return parseGatewayConfig(readConfigFile(path), path);
}

export function parseProxyConfig(raw: unknown, path = 'proxy.json'): ProxyConfig {
  const r = proxyConfigSchema.safeParse(raw);
  if (!r.success) throw issues(r.error, path);
  const seen = new Set<string>();
  for (const rt of r.data.routes) {
    if (seen.has(`${rt.name}`)) throw new ConfigError(`\`${path}\`: route \`${rt.name}\` is configured twice`);
    seen.add(rt.name);
    const segs = rt.path.split('/').slice(1);
    segs.forEach((s, i) => {
      if (s === '*' && i !== segs.length - 1) throw new ConfigError(`\`${path}\`: route \`${rt.name}\`: \`*\` may only be the last path segment`);
    });
    for (const h of rt.forward_headers ?? []) {
      if (isNeverForwarded(h)) throw new ConfigError(`\`${path}\`: route \`${rt.name}\`: header \`${h}\` is never forwarded from the agent (it changes what the upstream does, or the proxy sets it)`);
    }
  }
  return { ...r.data, baseDir: dirname(resolve(path)), path: resolve(path) };
}

export function loadProxyConfig(path: string): ProxyConfig {
  return parseProxyConfig(readConfigFile(path), path);
}

export function resolvePath(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/** The default audience of an upstream's actions. */
export function upstreamAudience(u: UpstreamConfig): string {
  return u.audience ?? `mcp:${u.name}`;
}

/** The destination of an upstream's actions: configured, the HTTP URL's host, or none. */
export function upstreamDestination(u: UpstreamConfig): string | undefined {
  if (u.destination === null) return undefined;
  if (u.destination !== undefined) return u.destination;
  return u.transport === 'http' ? new URL(u.url).host : undefined;
}
