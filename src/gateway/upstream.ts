import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, ToolListChangedNotificationSchema, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import type { GatewayConfig, UpstreamConfig } from './config.js';
import { resolvePath, upstreamAudience, upstreamDestination } from './config.js';
import { errorText, type Log } from './log.js';
import { toolDigest } from './pins.js';
import { isResultTooLarge, LimitedReadBuffer, limitedFetch, ResultTooLargeError } from './result-limit.js';
import { resolveValues, type Environment, type Redactor } from './secrets.js';

export const GATEWAY_VERSION = '0.1.0';
const MAX_TOOLS = 2000;
const CONNECT_TIMEOUT_MS = 15_000;

export interface UpstreamTool {
  tool: Tool;
  digest: string;
}

export class UpstreamUnavailableError extends Error {
  constructor(
    readonly upstream: string,
    detail: string,
  ) {
    super(`upstream \`${upstream}\` is unavailable: ${detail}`);
    this.name = 'UpstreamUnavailableError';
  }
}

/**
 * One upstream MCP server: a stdio child process or a streamable HTTP URL, reached
 * with the credentials the operator configured (resolved once, here). Holds the
 * upstream's current tool catalog, refreshed on `notifications/tools/list_changed`,
 * on every client `tools/list`, and before a call when older than the configured age.
 * Reconnects on demand after the connection drops.
 */
export class Upstream {
  readonly name: string;
  /** the `audience` and `destination` of every call's decision (computed once: the destination parses a URL) */
  readonly audience: string;
  readonly destination: string | undefined;
  private client: Client | null = null;
  private connecting: Promise<Client> | null = null;
  private lastAttempt = 0;
  private tools = new Map<string, UpstreamTool>();
  private fetchedAt = 0;
  private stale = true;
  private refreshing: Promise<void> | null = null;
  private closed = false;
  private readonly env: Record<string, string>;
  private readonly headers: Record<string, string>;

  constructor(
    readonly config: UpstreamConfig,
    private readonly deps: { baseDir: string; redactor: Redactor; log: Log; env: Environment; onToolsChanged?: (upstream: string) => void },
  ) {
    this.name = config.name;
    this.audience = upstreamAudience(config);
    this.destination = upstreamDestination(config);
    const ctx = { baseDir: deps.baseDir, redactor: deps.redactor, env: deps.env };
    this.env = config.transport === 'stdio' ? resolveValues(config.env, { ...ctx, what: `upstream \`${config.name}\` env` }) : {};
    this.headers = config.transport === 'http' ? resolveValues(config.headers, { ...ctx, what: `upstream \`${config.name}\` header` }) : {};
  }

  private async connect(): Promise<Client> {
    if (this.client) return this.client;
    if (this.connecting) return this.connecting;
    if (this.closed) throw new UpstreamUnavailableError(this.name, 'the gateway is closing');
    const wait = this.lastAttempt + 1000 - Date.now();
    this.connecting = (async () => {
      if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
      this.lastAttempt = Date.now();
      const client = new Client({ name: 'writ-gateway', version: GATEWAY_VERSION }, { capabilities: {} });
      client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
        this.stale = true;
        this.deps.onToolsChanged?.(this.name);
      });
      const c = this.config;
      let transport;
      if (c.transport === 'stdio') {
        // Only the configured environment (plus PATH, HOME and the like): never the
        // gateway's own, which may hold the agent's task token or an operator token.
        const t = new StdioClientTransport({
          command: c.command,
          args: c.args,
          env: this.env,
          cwd: c.cwd ? resolvePath(this.deps.baseDir, c.cwd) : undefined,
          stderr: 'pipe',
        });
        // the SDK's read buffer closes the shared connection on one oversized answer; this one drops that answer alone
        (t as unknown as { _readBuffer: LimitedReadBuffer })._readBuffer = new LimitedReadBuffer(c.max_result_bytes, (d) => this.dropped(d));
        t.stderr?.on('data', (chunk: Buffer) => {
          for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) this.deps.log('upstream_stderr', { upstream: this.name, line: line.slice(0, 2000) });
        });
        transport = t;
      } else {
        // `redirect: 'error'`: an injected credential must never follow a redirect elsewhere
        transport = new StreamableHTTPClientTransport(new URL(c.url), {
          requestInit: { headers: this.headers, redirect: 'error' },
          fetch: limitedFetch(c.max_result_bytes, (d) => this.dropped(d)),
        });
      }
      client.onclose = () => {
        if (this.client === client) this.client = null;
        this.stale = true;
      };
      client.onerror = (err) => !this.closed && this.deps.log('upstream_error', { upstream: this.name, error: errorText(err, this.deps.redactor) });
      const timer = setTimeout(() => void transport.close().catch(() => undefined), CONNECT_TIMEOUT_MS);
      try {
        await client.connect(transport);
      } catch (err) {
        await transport.close().catch(() => undefined);
        throw new UpstreamUnavailableError(this.name, errorText(err, this.deps.redactor, 200));
      } finally {
        clearTimeout(timer);
      }
      if (this.closed) {
        await client.close().catch(() => undefined);
        throw new UpstreamUnavailableError(this.name, 'the gateway is closing');
      }
      this.client = client;
      this.stale = true;
      return client;
    })();
    try {
      return await this.connecting;
    } finally {
      this.connecting = null;
    }
  }

  /** Re-lists the upstream's tools (concurrent callers share one listing). */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      const client = await this.connect();
      const next = new Map<string, UpstreamTool>();
      let cursor: string | undefined;
      do {
        let page;
        try {
          page = await client.listTools(cursor ? { cursor } : undefined, { timeout: this.config.call_timeout_ms });
        } catch (err) {
          throw new UpstreamUnavailableError(this.name, errorText(err, this.deps.redactor, 200));
        }
        for (const tool of page.tools) {
          if (next.size >= MAX_TOOLS) break;
          next.set(tool.name, { tool, digest: toolDigest(tool) });
        }
        cursor = page.nextCursor;
      } while (cursor && next.size < MAX_TOOLS);
      this.tools = next;
      this.fetchedAt = Date.now();
      this.stale = false;
    })();
    const p = this.refreshing;
    void p.then(
      () => (this.refreshing = null),
      () => (this.refreshing = null),
    );
    return p;
  }

  /**
   * The catalog for a call: never older than `maxAgeMs` (the bound on a silent rug pull,
   * docs/gateway.md). Re-listed first when stale (the upstream said its tools changed,
   * or the connection was lost), never read, or past the bound; once it is half that
   * old, a call uses it and re-lists beside it, so calls that keep coming never wait for
   * a listing (issue 12: no catalog re-listing on the call path).
   */
  async catalog(maxAgeMs: number): Promise<Map<string, UpstreamTool>> {
    const age = Date.now() - this.fetchedAt;
    if (this.stale || !this.client || this.fetchedAt === 0 || age > maxAgeMs) await this.refresh();
    else if (age > maxAgeMs / 2 && !this.refreshing) {
      void this.refresh().catch((err) => this.deps.log('upstream_unavailable', { upstream: this.name, error: errorText(err, this.deps.redactor) }));
    }
    return this.tools;
  }

  /** The last catalog fetched, without touching the upstream. */
  cached(): Map<string, UpstreamTool> {
    return this.tools;
  }

  private dropped(d: { id: string | number | null; bytes: number }): void {
    this.deps.log('upstream_result_too_large', { upstream: this.name, request_id: d.id, bytes: d.bytes, max_result_bytes: this.config.max_result_bytes });
  }

  /** Calls a tool; an answer over `max_result_bytes` rejects with ResultTooLargeError (this call only). */
  async call(name: string, args: Record<string, unknown>, meta: Record<string, unknown> | undefined, signal?: AbortSignal): Promise<CallToolResult> {
    const client = this.client ?? (await this.connect());
    const params: Record<string, unknown> = { name, arguments: args };
    if (meta) params._meta = meta;
    try {
      return (await client.request({ method: 'tools/call', params: params as never }, CallToolResultSchema, {
        timeout: this.config.call_timeout_ms,
        signal,
      })) as CallToolResult;
    } catch (err) {
      if (isResultTooLarge(err)) throw new ResultTooLargeError(this.name, this.config.max_result_bytes);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client ?? (await this.connecting?.catch(() => null)) ?? null;
    this.client = null;
    await c?.close().catch(() => undefined);
  }
}

/** `deps.env`: where secret references are resolved (the CLI passes it in; none given, none is set). */
export function createUpstreams(
  config: Pick<GatewayConfig, 'upstreams' | 'baseDir'>,
  deps: { redactor: Redactor; log: Log; env?: Environment; onToolsChanged?: (upstream: string) => void; only?: string[] },
): Map<string, Upstream> {
  const out = new Map<string, Upstream>();
  for (const u of config.upstreams) {
    if (deps.only && !deps.only.includes(u.name)) continue;
    out.set(u.name, new Upstream(u, { baseDir: config.baseDir, ...deps, env: deps.env ?? {} }));
  }
  return out;
}
