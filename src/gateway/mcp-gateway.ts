import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { MCP_ACTION_TOKEN_META } from '@writ/sdk';
import { matchesAny } from '../core/scope.js';
import { annotate, carrierOnward, contextOf, inSpan, SpanKind, tracingOn, type TraceCarrier } from '../core/tracing.js';
import { AuthorizerError, type ActionRequest, type Authorizer } from './authorizer.js';
import { TOOL_NAME, type GatewayConfig } from './config.js';
import { Decider, describeVerdict, type Verdict } from './decide.js';
import { configuredToolLabels, labelsNotInWrit } from './labels.js';
import { GatewayMetrics } from './metrics.js';
import { errorText, jsonLog, type Log } from './log.js';
import { PinStore } from './pins.js';
import { Redactor, type Environment } from './secrets.js';
import { carriesTaskToken } from './task-token-forms.js';
import { ResultTooLargeError } from './result-limit.js';
import { createUpstreams, GATEWAY_VERSION, Upstream, UpstreamUnavailableError } from './upstream.js';

/** tools per `POST /v1/tools/visible` request: Writ's default `visibleToolsMax` */
const VISIBLE_TOOLS_BATCH = 256;

/** `_meta` keys the gateway sets on results and (optionally) on upstream calls. */
export const META_DECISION = 'writ/decision';
export const META_ERROR = 'writ/error';
export const META_ACTION_TOKEN = MCP_ACTION_TOKEN_META;

export interface McpGatewayOptions {
  config: GatewayConfig;
  authorizer: Authorizer;
  log?: Log;
  /**
   * Why there is no task token, when the gateway holds the agent's key and gets tokens
   * itself (src/gateway/task-token-keeper.ts): calls are then refused with this code
   * (`no_active_task`, `task_token_unavailable`, `agent_key_refused`) in the error's data.
   */
  tokenProblem?: () => { code: string; message: string } | null;
  /** where `{"env": NAME}` secret references are resolved: passed in by the CLI; none given, none is set */
  env?: Environment;
}

/** Reads the task token of the request being handled (HTTP: the request's bearer; stdio: configured). */
export type TokenOf = (extra: { authInfo?: { token: string } }) => string | undefined;

/**
 * The MCP gateway: one MCP server facing agents, MCP clients facing the upstreams.
 * Tools are namespaced `<upstream>.<tool>`. `tools/list` shows only approved (pinned),
 * unchanged tools inside the task's scope; every `tools/call` is decided by Writ with
 * the task token of the request and its exact arguments, forwarded only on allow, and
 * its outcome reported back. The agent's token never goes upstream; the upstream
 * credentials never come back (everything returned is redacted).
 */
export class McpGateway {
  readonly redactor: Redactor;
  readonly log: Log;
  readonly upstreams: Map<string, Upstream>;
  readonly pins: PinStore;
  readonly authorizer: Authorizer;
  private readonly decider: Decider;
  private readonly servers = new Set<Server>();
  private readonly outcomes = new Set<Promise<void>>();
  private readonly reported = new Set<string>();
  private readonly maxAgeMs: number;
  /** Prometheus metrics (src/gateway/metrics.ts), served on the HTTP listener's `/metrics` */
  readonly metrics = new GatewayMetrics();

  constructor(readonly opts: McpGatewayOptions) {
    this.redactor = new Redactor();
    this.log = opts.log ?? jsonLog(this.redactor);
    this.authorizer = opts.authorizer;
    this.maxAgeMs = opts.config.catalog_max_age_ms;
    this.upstreams = createUpstreams(opts.config, {
      redactor: this.redactor,
      log: this.log,
      env: opts.env ?? {},
      onToolsChanged: (u) => {
        this.log('upstream_tools_changed', { upstream: u });
        this.notifyToolsChanged();
      },
    });
    this.pins = new PinStore(opts.config.pins_file, (error) => {
      if (error) this.log('pins_invalid', { path: opts.config.pins_file, error });
      else this.log('pins_loaded', { path: opts.config.pins_file });
      this.notifyToolsChanged();
    });
    this.decider = new Decider(this.authorizer, { waitSeconds: opts.config.approval_wait_seconds });
  }

  /**
   * Connects to every upstream and reads its catalog (an unreachable upstream is logged
   * and retried on use), and checks the configuration's tool labels against Writ's.
   */
  async start(): Promise<void> {
    await Promise.all([
      this.checkLabels(),
      ...[...this.upstreams.values()].map(async (u) => {
        try {
          await u.refresh();
          let pinned = 0;
          for (const t of u.cached().values()) {
            const st = this.pins.status(u.name, t.tool, t.digest);
            if (st === 'pinned') pinned += 1;
            else this.noteUnpinned(u.name, t.tool.name, st, t.digest);
          }
          this.log('upstream_ready', { upstream: u.name, tools: u.cached().size, pinned });
        } catch (err) {
          this.log('upstream_unavailable', { upstream: u.name, error: errorText(err, this.redactor) });
        }
      }),
    ]);
  }

  /**
   * Policy sees the labels Writ holds, not the ones in this configuration (they are
   * stored there with `writ gateway labels --config FILE`). Logs `labels_not_in_writ`
   * naming each tool whose configured labels are not all in Writ, or
   * `labels_not_checked` when Writ's labels cannot be read. Never fails the start.
   */
  async checkLabels(): Promise<{ tool: string; missing: string[] }[] | null> {
    const wanted = configuredToolLabels(this.opts.config);
    if (wanted.size === 0) return [];
    const fix = `store them with \`writ gateway labels --config ${this.opts.config.path}\``;
    let entries;
    try {
      entries = this.authorizer.toolLabels ? await this.authorizer.toolLabels() : null;
    } catch (err) {
      this.log('labels_not_checked', { error: err instanceof AuthorizerError ? `${err.code}: ${err.message}` : errorText(err, this.redactor), note: `Writ's tool labels could not be read; policy sees only those (${fix})` });
      return null;
    }
    if (!entries) {
      this.log('labels_not_checked', {
        note: `without an operator token (writ.operator_token_env) the gateway cannot read Writ's tool labels (GET /v1/tool-labels) to check the configured ones; policy sees only Writ's (${fix})`,
      });
      return null;
    }
    const missing = labelsNotInWrit(wanted, entries);
    if (missing.length) this.log('labels_not_in_writ', { tools: missing, note: `policy does not see these labels: ${fix}` });
    return missing;
  }

  private noteUnpinned(upstream: string, tool: string, status: 'changed' | 'unpinned', digest: string): void {
    const key = `${upstream}\n${tool}\n${digest}`;
    if (this.reported.has(key)) return;
    if (this.reported.size > 10_000) this.reported.clear();
    this.reported.add(key);
    this.log(status === 'changed' ? 'tool_changed' : 'tool_not_approved', {
      upstream,
      tool: `${upstream}.${tool}`,
      sha256: digest,
      pinned_sha256: this.pins.pin(upstream, tool)?.sha256 ?? null,
    });
  }

  notifyToolsChanged(): void {
    for (const s of this.servers) void s.sendToolListChanged().catch(() => undefined);
  }

  /** The tools this task may see. */
  async listTools(token: string | undefined): Promise<Tool[]> {
    const task = await this.task(token);
    this.pins.reload();
    await Promise.all(
      [...this.upstreams.values()].map((u) =>
        u.refresh().catch((err) => this.log('upstream_unavailable', { upstream: u.name, error: errorText(err, this.redactor) })),
      ),
    );
    const out: Tool[] = [];
    for (const u of this.upstreams.values()) {
      for (const { tool, digest } of u.cached().values()) {
        const full = `${u.name}.${tool.name}`;
        if (!TOOL_NAME.test(full)) continue;
        const st = this.pins.status(u.name, tool, digest);
        if (st !== 'pinned') {
          this.noteUnpinned(u.name, tool.name, st, digest);
          continue;
        }
        if (task.scope && !matchesAny(task.scope.tools, full)) continue;
        // Only what was pinned is shown: titles, annotations and output schemas are not
        // part of the approved definition, and upstream annotations are not trusted.
        const t: Tool = { name: full, inputSchema: tool.inputSchema };
        if (tool.description !== undefined) t.description = tool.description;
        out.push(t);
      }
    }
    // Policy too: hide the tools no call could be allowed (Writ's partial evaluation).
    // Every call is still authorized on its own; this only keeps the list honest.
    if (this.authorizer.visibleTools && out.length > 0) {
      let visible: Set<string>;
      try {
        // Writ takes at most 256 tools per request by default (`WRIT_VISIBLE_TOOLS_MAX`): ask in batches
        const names = out.map((t) => t.name);
        visible = new Set();
        for (let i = 0; i < names.length; i += VISIBLE_TOOLS_BATCH) {
          for (const name of await this.authorizer.visibleTools(token!, names.slice(i, i + VISIBLE_TOOLS_BATCH))) visible.add(name);
        }
      } catch (err) {
        throw this.authError(err);
      }
      return this.redactor.redactDeep(out.filter((t) => visible.has(t.name)));
    }
    return this.redactor.redactDeep(out);
  }

  private async task(token: string | undefined) {
    if (!token) throw this.noToken();
    try {
      return await this.authorizer.task(token);
    } catch (err) {
      throw this.authError(err);
    }
  }

  /** A call without a task token: refused, with why (never passed on). */
  private noToken(): McpError {
    const p = this.opts.tokenProblem?.();
    if (p) return new McpError(ErrorCode.InvalidRequest, `the call was not made: ${p.message} (${p.code})`, { code: p.code });
    return new McpError(ErrorCode.InvalidRequest, 'no task token: the gateway needs the agent\'s task token', { code: 'no_task_token' });
  }

  private authError(err: unknown): McpError {
    if (err instanceof AuthorizerError) {
      if (err.unauthenticated) return new McpError(ErrorCode.InvalidRequest, `the task token was refused: ${err.code}: ${err.message}`, { code: err.code });
      return new McpError(ErrorCode.InternalError, `Writ could not decide (${err.code}); the call was not made`, { code: err.code });
    }
    return new McpError(ErrorCode.InternalError, 'Writ could not decide; the call was not made');
  }

  /*
   * Why a refusal is a tool result with `isError: true` and not a JSON-RPC error.
   *
   * The MCP specification gives tools two error channels (2025-06-18, Server > Tools >
   * Error Handling, https://modelcontextprotocol.io/specification/2025-06-18/server/tools#error-handling):
   * "Protocol Errors: Standard JSON-RPC errors for issues like: Unknown tools, Invalid
   * arguments, Server errors" and "Tool Execution Errors: Reported in tool results with
   * `isError: true`: API failures, Invalid input data, Business logic errors". The schema
   * says why (CallToolResult.isError, schema.ts of the same version): "Any errors that
   * originate from the tool SHOULD be reported inside the result object, with `isError`
   * set to true, _not_ as an MCP protocol-level error response. Otherwise, the LLM would
   * not be able to see that an error occurred and self-correct."
   *
   * A deny (or a pending or refused approval, or a changed tool) is the call being
   * refused by the tool's owner, a business-logic answer the model must see to stop,
   * choose another action or wait for a person: a JSON-RPC error is typically surfaced
   * to the host application instead, and the model would retry blind. So refusals are
   * `isError` results, and the client recognizes them without parsing text: the
   * decision id and the reasons are in `structuredContent` and in
   * `_meta["writ/decision"]` (`_meta["writ/error"]` for the gateway's own refusals).
   * What the spec lists as protocol errors stays JSON-RPC: unknown tools, arguments that
   * are not an object, a refused task token, Writ or an upstream unavailable.
   */
  private refusal(tool: string, code: string, text: string, extra: Record<string, unknown> = {}): CallToolResult {
    this.metrics.refusals.inc({ tool, code });
    const error = { [META_ERROR]: { code, tool, ...extra } };
    return { content: [{ type: 'text', text }], structuredContent: error, isError: true, _meta: error };
  }

  private verdictResult(tool: string, v: Exclude<Verdict, { kind: 'allow' }>): CallToolResult {
    this.metrics.refusals.inc({ tool, code: v.kind === 'deny' ? 'deny' : v.kind === 'approval_pending' ? 'approval_required' : 'approval_refused' });
    const meta: Record<string, unknown> =
      v.kind === 'deny'
        ? { decision: 'deny', decision_id: v.decisionId, reasons: v.reasons }
        : v.kind === 'approval_pending'
          ? { decision: 'approval_required', decision_id: v.decisionId, approval_id: v.approvalId, expires_in: v.expiresIn }
          : { decision: 'approval_refused', decision_id: v.decisionId, approval_id: v.approvalId, status: v.status };
    const decision = this.redactor.redactDeep({ [META_DECISION]: { ...meta, tool } });
    return { content: [{ type: 'text', text: this.redactor.redact(describeVerdict(tool, v)) }], structuredContent: decision, isError: true, _meta: decision };
  }

  /**
   * Decides and, on allow, forwards one call. `meta` is the request's `_meta`: its W3C
   * `traceparent` (and `tracestate`) continue the client's trace through the gateway to
   * Writ (HTTP headers) and to the upstream (its `_meta`); with tracing on, the call is a
   * span of its own, the upstream call a child span.
   */
  callTool(token: string | undefined, name: string, rawArgs: unknown, signal?: AbortSignal, meta?: Record<string, unknown>): Promise<CallToolResult> {
    // the trace context the agent sent goes on to the upstream (tracing off: as sent; on: its `tracestate` carried by the spans)
    const sent = [meta?.traceparent, meta?.tracestate].filter((v): v is string => typeof v === 'string').join('\n');
    if (!tracingOn()) return this.callToolTraced(token, name, rawArgs, signal, carrierOnward(meta), sent);
    return inSpan('gateway tools/call', { kind: SpanKind.SERVER, parent: contextOf(meta ?? {}) }, () => this.callToolTraced(token, name, rawArgs, signal, null, sent));
  }

  /** `passOn`: the incoming trace context to send onward (tracing off), or null (on: the active span's); `sentTrace`: the one the agent sent */
  private async callToolTraced(token: string | undefined, name: string, rawArgs: unknown, signal: AbortSignal | undefined, passOn: TraceCarrier | null, sentTrace: string): Promise<CallToolResult> {
    const onward = (): TraceCarrier => passOn ?? carrierOnward(undefined);
    if (!token) throw this.noToken();
    const dot = name.indexOf('.');
    const upstream = dot > 0 ? this.upstreams.get(name.slice(0, dot)) : undefined;
    if (!upstream) throw new McpError(ErrorCode.InvalidParams, `unknown tool \`${name.slice(0, 200)}\``);
    const local = name.slice(dot + 1);
    this.pins.reload();
    let catalog;
    try {
      catalog = await upstream.catalog(this.maxAgeMs);
    } catch (err) {
      throw new McpError(ErrorCode.InternalError, this.redactor.redact(err instanceof UpstreamUnavailableError ? err.message : `upstream \`${upstream.name}\` is unavailable`));
    }
    const entry = catalog.get(local);
    if (!entry || !TOOL_NAME.test(name)) throw new McpError(ErrorCode.InvalidParams, `unknown tool \`${name.slice(0, 200)}\``);
    // a tool of the catalog: its name may go on the span (unknown names never do)
    annotate({ 'writ.tool': name });
    const st = this.pins.status(upstream.name, entry.tool, entry.digest);
    if (st !== 'pinned') {
      this.noteUnpinned(upstream.name, local, st, entry.digest);
      return st === 'changed'
        ? this.refusal(name, 'tool_changed', `tool \`${name}\` changed since an operator approved it (tool_changed); calls are refused until it is approved again (\`writ gateway tools approve\`)`)
        : this.refusal(name, 'tool_not_approved', `tool \`${name}\` has not been approved by an operator (tool_not_approved); see \`writ gateway tools approve\``);
    }
    if (rawArgs !== undefined && (rawArgs === null || typeof rawArgs !== 'object' || Array.isArray(rawArgs))) {
      throw new McpError(ErrorCode.InvalidParams, 'tool arguments must be an object');
    }
    const args = (rawArgs ?? {}) as Record<string, unknown>;
    // in any form the tool would read back as the token (percent- or JSON-escaped, base64, hex: see carriesTaskToken)
    // a W3C `tracestate` (up to 512 characters) can hold a whole token, and it goes upstream too
    if (carriesTaskToken(JSON.stringify(args), token) || (sentTrace !== '' && carriesTaskToken(sentTrace, token))) {
      this.log('task_token_in_arguments', { tool: name });
      return this.refusal(name, 'task_token_in_arguments', 'the arguments carry the task token; the gateway never passes it to a tool');
    }

    const action: ActionRequest = { tool: name, arguments: args, audience: upstream.audience };
    if (upstream.destination !== undefined) action.destination = upstream.destination;
    // Tool labels are not sent: Writ holds them (`writ gateway labels` mirrors this
    // configuration's labels there), so no caller chooses the labels it is judged by.
    let verdict: Verdict;
    try {
      verdict = await this.decider.decide(token, action, onward());
    } catch (err) {
      this.log('authorize_failed', { tool: name, error: err instanceof AuthorizerError ? err.code : 'error' });
      throw this.authError(err);
    }
    if (verdict.kind !== 'allow') {
      annotate({ 'writ.decision': verdict.kind, 'writ.decision_id': verdict.decisionId });
      this.log('call_refused', { tool: name, decision: verdict.kind, decision_id: verdict.decisionId });
      return this.verdictResult(name, verdict);
    }

    annotate({ 'writ.decision': 'allow', 'writ.decision_id': verdict.decisionId });
    let result: CallToolResult;
    const upstreamStart = performance.now();
    const upstreamSeconds = () => (performance.now() - upstreamStart) / 1000;
    try {
      // the upstream call: a child span (tracing on), its context in `_meta` beside the action token
      result = await inSpan('gateway upstream', { kind: SpanKind.CLIENT, attributes: { 'writ.tool': name } }, () => {
        const meta = { ...onward(), ...(upstream.config.forward_action_token ? { [META_ACTION_TOKEN]: verdict.actionToken } : {}) };
        return upstream.call(local, args, Object.keys(meta).length > 0 ? meta : undefined, signal);
      });
      this.metrics.observeUpstream(name, result.isError ? 'tool_error' : 'ok', upstreamSeconds());
    } catch (err) {
      this.metrics.observeUpstream(name, 'failed', upstreamSeconds());
      if (err instanceof ResultTooLargeError) {
        // the tool ran; its answer is too large to pass on: this call fails, the connection and other calls do not
        this.outcome(token, verdict.decisionId, 'failed', 'result too large');
        this.log('result_too_large', { tool: name, decision_id: verdict.decisionId, max_result_bytes: err.maxBytes });
        return this.refusal(name, 'result_too_large', `${err.message} (decision ${verdict.decisionId})`, { decision_id: verdict.decisionId, max_result_bytes: err.maxBytes });
      }
      const detail = err instanceof McpError ? `upstream error ${err.code}` : 'upstream unavailable';
      this.outcome(token, verdict.decisionId, 'failed', detail);
      if (err instanceof McpError) {
        const msg = err.message.replace(/^MCP error -?\d+: /, '');
        throw new McpError(err.code, this.redactor.redact(`upstream \`${upstream.name}\`: ${msg}`).slice(0, 2000));
      }
      throw new McpError(ErrorCode.InternalError, `upstream \`${upstream.name}\` is unavailable (${errorText(err, this.redactor, 200)})`);
    }
    this.outcome(token, verdict.decisionId, result.isError ? 'failed' : 'succeeded', result.isError ? 'the tool answered isError' : undefined);
    const out = this.redactor.redactDeep(result);
    return { ...out, _meta: { ...(out._meta ?? {}), [META_DECISION]: { decision: 'allow', decision_id: verdict.decisionId } } };
  }

  /**
   * Reports an outcome off the call's path; `close` waits for the ones in flight. The
   * reports start on the next turn of the event loop (setImmediate), after the call's
   * answer has been written: started here, its request to Writ (building it, the socket
   * write; in-process, queuing it for Writ's next commit) ran before the answer went out.
   * The outcomes of one turn share that one setImmediate.
   */
  private outcome(token: string, decisionId: string, status: 'succeeded' | 'failed', detail?: string): void {
    this.queuedOutcomes.push({ token, decisionId, status, detail });
    if (this.queuedOutcomes.length === 1) setImmediate(this.startOutcomes);
  }

  private readonly queuedOutcomes: { token: string; decisionId: string; status: 'succeeded' | 'failed'; detail?: string }[] = [];

  private readonly startOutcomes = (): void => {
    for (const o of this.queuedOutcomes.splice(0)) {
      let p: Promise<void>;
      try {
        p = this.authorizer.reportOutcome(o.token, o.decisionId, o.status, o.detail);
      } catch (err) {
        p = Promise.reject(err);
      }
      const tracked: Promise<void> = p
        .catch((err) => this.log('outcome_failed', { decision_id: o.decisionId, error: err instanceof AuthorizerError ? err.code : 'error' }))
        .finally(() => this.outcomes.delete(tracked));
      this.outcomes.add(tracked);
    }
  };

  /** Waits for outcome reports in flight. */
  async flush(): Promise<void> {
    while (this.outcomes.size > 0 || this.queuedOutcomes.length > 0) {
      // the reports started on the next turn (after their calls' answers) reach the authorizer first
      await new Promise<void>((ok) => setImmediate(ok));
      // and the ones it gathers to send together go now
      this.authorizer.flushOutcomes?.();
      await Promise.allSettled([...this.outcomes]);
    }
  }

  /** An MCP server for one client connection (session). */
  createServer(tokenOf: TokenOf): Server {
    const server = new Server({ name: 'writ-gateway', version: GATEWAY_VERSION }, { capabilities: { tools: { listChanged: true } } });
    server.setRequestHandler(ListToolsRequestSchema, async (_req, extra) => ({ tools: await this.listTools(tokenOf(extra)) }));
    server.setRequestHandler(CallToolRequestSchema, (req, extra) => this.callTool(tokenOf(extra), req.params.name, req.params.arguments, extra.signal, req.params._meta));
    this.servers.add(server);
    server.onclose = () => this.servers.delete(server);
    return server;
  }

  async close(): Promise<void> {
    for (const s of [...this.servers]) await s.close().catch(() => undefined);
    await this.flush();
    await Promise.all([...this.upstreams.values()].map((u) => u.close()));
    await this.authorizer.close();
  }
}
