import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { ACTION_TOKEN_HEADER, canonicalPath, encodePath, httpActionArguments, InvalidPathError, InvalidQueryError, isJsonContentType, parseQuery } from '@writ/sdk';

export { canonicalPath, encodePath } from '@writ/sdk';
import { AuthorizerError, type ActionRequest, type Authorizer } from './authorizer.js';
import { ConfigError, type ProxyConfig, type RouteConfig } from './config.js';
import { Decider, describeVerdict } from './decide.js';
import { DEFAULT_FORWARD_HEADERS, forwardedHeaders } from './forward-headers.js';
import { activeCarrier, carrierOnward, nameServerSpan, serverSpan, tracingOn } from '../core/tracing.js';
import { jsonLog, type Log } from './log.js';
import { WritError } from '../core/errors.js';
import { dpopChallenge, DpopEdge } from './dpop-edge.js';
import { Redactor, resolveValues, type Environment } from './secrets.js';
import { carriesTaskToken } from './task-token-forms.js';
import { duplicateJsonName } from './json-duplicate-names.js';
import { methodOverrideIn } from './method-override.js';
import { ProxyMetrics, sendGatewayMetrics } from './proxy-metrics.js';

type Segment = { lit: string } | { param: string } | { rest: true };

interface CompiledRoute {
  cfg: RouteConfig;
  methods: Set<string>;
  segments: Segment[];
  upstream: URL;
  /** the upstream URL's path, decoded (canonical form), without a trailing `/` */
  basePath: string;
  headers: Record<string, string>;
  injected: Set<string>;
  /** the agent's headers passed upstream (lower-case; see forward-headers.ts) */
  forward: Set<string>;
  audience: string;
  destination: string | undefined;
  agent: http.Agent;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'trailers', 'transfer-encoding', 'upgrade']);
/**
 * Codings the proxy decodes before masking (content codings, RFC 9110 §8.4.1, and the
 * same-named transfer codings, RFC 9112 §7.2); an answer in any other is refused (502).
 */
const DECODERS: Record<string, () => Transform> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
};

class ProxyError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

function compileRoute(cfg: RouteConfig, deps: { baseDir: string; redactor: Redactor; env: Environment }): CompiledRoute {
  const segments: Segment[] = cfg.path
    .split('/')
    .slice(1)
    .map((s) => (s === '*' ? { rest: true as const } : s.startsWith(':') ? { param: s.slice(1) } : { lit: s }));
  const upstream = new URL(cfg.upstream);
  const headers = resolveValues(cfg.headers, { baseDir: deps.baseDir, redactor: deps.redactor, env: deps.env, what: `route \`${cfg.name}\` header` });
  const lower: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v;
  const agentOpts = { keepAlive: true, maxSockets: 256 };
  return {
    cfg,
    methods: new Set(cfg.methods),
    segments,
    upstream,
    basePath: upstreamBasePath(cfg.name, upstream),
    headers: lower,
    injected: new Set(Object.keys(lower)),
    forward: new Set((cfg.forward_headers ?? DEFAULT_FORWARD_HEADERS).map((h) => h.toLowerCase())),
    audience: cfg.audience ?? upstream.origin,
    destination: cfg.destination === null ? undefined : (cfg.destination ?? upstream.host),
    agent: upstream.protocol === 'https:' ? new https.Agent(agentOpts) : new http.Agent(agentOpts),
  };
}

function upstreamBasePath(route: string, upstream: URL): string {
  try {
    return canonicalPath(upstream.pathname).path.replace(/\/+$/, '');
  } catch (err) {
    throw new ConfigError(`route \`${route}\`: the upstream URL's path is not canonical (${(err as Error).message})`);
  }
}

/** Matches decoded path segments; answers the `:params` (and `*` as `rest`). */
function match(route: CompiledRoute, segs: string[]): Record<string, string> | null {
  const params: Record<string, string> = {};
  const pat = route.segments;
  for (let i = 0; i < pat.length; i++) {
    const p = pat[i]!;
    if ('rest' in p) {
      params['*'] = segs.slice(i).join('/');
      return params;
    }
    const s = segs[i];
    if (s === undefined) return null;
    if ('lit' in p) {
      if (p.lit !== s) return null;
    } else {
      if (s === '') return null;
      params[p.param] = s;
    }
  }
  return segs.length === pat.length ? params : null;
}

/**
 * Masks secrets in a response body as it streams, keeping its length (each byte of a
 * secret becomes `*`), so `content-length` stays true. Holds back secret-length - 1
 * bytes between chunks so a secret split across chunks is still caught.
 */
export class MaskSecrets extends Transform {
  private carry = Buffer.alloc(0);
  private readonly keep: number;
  constructor(private readonly secrets: Buffer[]) {
    super();
    this.keep = Math.max(0, ...secrets.map((s) => s.length - 1));
  }
  private mask(buf: Buffer): void {
    for (const s of this.secrets) {
      let i = buf.indexOf(s);
      while (i >= 0) {
        buf.fill(0x2a, i, i + s.length);
        i = buf.indexOf(s, i + s.length);
      }
    }
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const buf = this.carry.length ? Buffer.concat([this.carry, chunk]) : Buffer.from(chunk);
    this.mask(buf);
    const cut = Math.max(0, buf.length - this.keep);
    this.carry = buf.subarray(cut);
    if (cut > 0) this.push(buf.subarray(0, cut));
    done();
  }
  override _flush(done: TransformCallback): void {
    if (this.carry.length) this.push(this.carry);
    done();
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

export interface ProxyOptions {
  config: ProxyConfig;
  authorizer: Authorizer;
  log?: Log;
  /** where `{"env": NAME}` secret references are resolved: passed in by the CLI; none given, none is set */
  env?: Environment;
  /** the bearer token that reads `GET /metrics` (WRIT_METRICS_TOKEN); unset, there is no `/metrics` and the path goes to the routes */
  metricsToken?: string;
  /**
   * The proxy's base URL as clients address it (`listen.public_url`); default: the
   * listening address. DPoP proofs are checked against it and the request's path.
   */
  publicUrl?: string;
}

/**
 * The HTTP tool proxy: each request to a configured route is one action (tool = route
 * name, arguments = {method, path, query, body}, destination = the upstream host),
 * decided by Writ with the agent's task token, then forwarded with the route's
 * credentials. The agent's `Authorization` is never forwarded. Bodies stream (JSON
 * bodies are read whole, up to the limit, because policy sees them); past
 * `max_body_bytes` the answer is 413.
 */
export class HttpProxy {
  readonly redactor = new Redactor();
  readonly log: Log;
  /** Prometheus metrics (src/gateway/proxy-metrics.ts), on `/metrics` with the metrics token */
  readonly metrics = new ProxyMetrics();
  private readonly routes: CompiledRoute[];
  private readonly decider: Decider;
  private readonly outcomes = new Set<Promise<void>>();
  private secretBufs: Buffer[] = [];
  private readonly edge = new DpopEdge();
  /** the base URL clients address (configured, or set by `listen`) */
  private publicUrl: string;

  constructor(readonly opts: ProxyOptions) {
    this.log = opts.log ?? jsonLog(this.redactor);
    this.routes = opts.config.routes.map((r) => compileRoute(r, { baseDir: opts.config.baseDir, redactor: this.redactor, env: opts.env ?? {} }));
    this.secretBufs = this.collectSecrets();
    this.decider = new Decider(opts.authorizer, { waitSeconds: opts.config.approval_wait_seconds });
    this.publicUrl = (opts.publicUrl ?? '').replace(/\/+$/, '');
  }

  private collectSecrets(): Buffer[] {
    return this.redactor.patterns().map((s) => Buffer.from(s));
  }

  handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.opts.metricsToken && req.method === 'GET' && (req.url ?? '').split('?')[0] === '/metrics') {
      void sendGatewayMetrics(req, res, this.metrics.registry, this.opts.metricsToken).catch(() => res.destroy());
      return;
    }
    const seen = { route: 'unmatched' };
    // tracing on: a server span per request, continuing its `traceparent` (src/core/tracing.ts)
    const handled = tracingOn() ? serverSpan(req, res, () => this.handle(req, res, seen)) : this.handle(req, res, seen);
    handled.catch((err) => {
      if (err instanceof InvalidPathError || err instanceof InvalidQueryError) err = new ProxyError(err.status, err.code, err.message);
      if (err instanceof ProxyError) this.metrics.refusals.inc({ tool: seen.route, code: err.code });
      else this.metrics.refusals.inc({ tool: seen.route, code: 'internal_error' });
      if (err instanceof ProxyError) {
        sendJson(res, err.status, { error: { code: err.code, message: this.redactor.redact(err.message) }, ...err.extra });
      } else {
        this.log('request_failed', { error: this.redactor.redact((err as Error)?.message ?? 'error').slice(0, 300) });
        sendJson(res, 500, { error: { code: 'internal_error', message: 'the proxy failed' } });
      }
      if (!req.complete) req.resume();
    });
  };

  private async handle(req: IncomingMessage, res: ServerResponse, seen: { route: string }): Promise<void> {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    // one canonical path for routing, policy and the upstream (see canonicalPath)
    const { segments: segs, path } = canonicalPath(rawPath);
    // one reading of the query for policy and the upstream (see parseQuery)
    let search: string;
    try {
      search = parseQuery(q < 0 ? '' : rawUrl.slice(q)).encoded;
    } catch (err) {
      if (err instanceof InvalidQueryError) throw new ProxyError(400, err.code, err.message);
      throw err;
    }
    const method = (req.method ?? 'GET').toUpperCase();
    let route: CompiledRoute | undefined;
    let params: Record<string, string> | null = null;
    let pathMatched = false;
    for (const r of this.routes) {
      const m = match(r, segs);
      if (!m) continue;
      pathMatched = true;
      if (!r.methods.has(method)) continue;
      route = r;
      params = m;
      break;
    }
    if (!route || !params) {
      if (pathMatched) throw new ProxyError(405, 'method_not_allowed', `method \`${method}\` is not allowed here`);
      throw new ProxyError(404, 'no_route', 'no route for this path');
    }
    seen.route = route.cfg.name;
    nameServerSpan(method, route.cfg.name);

    let token: string | null;
    try {
      // a bound token's proof is checked against the URL the client addressed (RFC 9449 §4.3)
      token = await this.edge.token(req, `${this.publicUrl}${rawPath}`);
    } catch (err) {
      if (!(err instanceof WritError)) throw err;
      res.setHeader('www-authenticate', dpopChallenge(err.code) ?? 'Bearer realm="writ-proxy", error="invalid_token"');
      throw new ProxyError(err.status, err.code, err.message);
    }
    if (!token) {
      res.setHeader('www-authenticate', 'Bearer realm="writ-proxy"');
      throw new ProxyError(401, 'unauthorized', 'send the task token as `Authorization: Bearer <task token>` (or `DPoP` with a proof when it is bound to a key)');
    }
    // the token in any form the upstream would read it in (see carriesTaskToken)
    if (carriesTaskToken(rawUrl, token) || carriesTaskToken(path, token)) {
      throw new ProxyError(400, 'task_token_in_request', 'the URL carries the task token; it is never passed to a tool');
    }
    for (const v of Object.values(forwardedHeaders(req.headers, route.forward, route.injected))) {
      if (carriesTaskToken(Array.isArray(v) ? v.join('\n') : v, token)) {
        throw new ProxyError(400, 'task_token_in_request', 'a header the route forwards carries the task token; it is never passed to a tool');
      }
    }

    // the path the upstream receives (canonical: what policy sees), and the body
    let upstreamPath = path;
    const strip = route.cfg.strip_prefix;
    if (strip && (path === strip || path.startsWith(`${strip}/`))) upstreamPath = path.slice(strip.length) || '/';
    upstreamPath = `${route.basePath}${upstreamPath}`;

    const max = this.opts.config.max_body_bytes;
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
    if (declared !== undefined && (!Number.isSafeInteger(declared) || declared < 0)) throw new ProxyError(400, 'invalid_request', 'bad content-length');
    const te = req.headers['transfer-encoding'];
    // only `chunked` framing (RFC 9112 §6.1: a transfer coding the server does not
    // implement gets 501); Node itself refuses `Transfer-Encoding` with `Content-Length`
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') throw new ProxyError(501, 'unsupported_transfer_coding', 'request bodies are taken with `Transfer-Encoding: chunked` or a `Content-Length` only');
    const hasBody = (declared !== undefined && declared > 0) || te !== undefined;
    if (declared !== undefined && declared > max) throw new ProxyError(413, 'payload_too_large', `the body is over ${max} bytes`);
    const contentType = req.headers['content-type'];
    const coding = String(req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (hasBody && coding !== 'identity') throw new ProxyError(415, 'unsupported_media_type', 'request bodies are taken without a content coding (policy judges the bytes it reads)');
    const json = hasBody && isJsonContentType(contentType);
    if (hasBody && route.cfg.body === 'none') throw new ProxyError(415, 'unsupported_media_type', `route \`${route.cfg.name}\` takes no body`);
    if (hasBody && !json && route.cfg.body === 'json') {
      throw new ProxyError(415, 'unsupported_media_type', `route \`${route.cfg.name}\` takes JSON bodies only (policy must be able to see them)`);
    }
    let buffered: Buffer | undefined;
    let body: unknown;
    let bodySha256: string | undefined;
    if (hasBody) {
      // who is asking, and is their task still active? before a byte of the body is read,
      // so a bad or ended token cannot make the proxy hold and buffer bodies
      await this.authenticate(token, res, route.cfg.name);
      // `Expect: 100-continue` (RFC 9110 §10.1.1): the client waits for this before it
      // sends the body, so it is sent only now, after the token and its task are checked
      if (/\b100-continue\b/i.test(String(req.headers.expect ?? ''))) res.writeContinue();
      // every body is read whole (up to the limit): policy sees a JSON body, and the
      // action binds any other by its SHA-256 and content type (what a tool server's
      // guard checks, src/sdk/tool-middleware.ts)
      buffered = await readBody(req, max);
      if (carriesTaskToken(buffered, token)) {
        throw new ProxyError(400, 'task_token_in_request', 'the body carries the task token; it is never passed to a tool');
      }
      if (buffered.length > 0 && json) {
        const text = buffered.toString('utf8');
        try {
          body = JSON.parse(text);
        } catch {
          throw new ProxyError(400, 'invalid_json', 'the JSON body does not parse');
        }
        // policy sees the last of a repeated name; the upstream's parser may take the first
        const twice = duplicateJsonName(text);
        if (twice !== null) throw new ProxyError(400, 'invalid_json', `the JSON body has the name \`${twice.slice(0, 100)}\` twice in one object; parsers read that differently (RFC 8259 §4)`);
      } else if (buffered.length > 0) bodySha256 = createHash('sha256').update(buffered).digest('hex');
    }

    const args = httpActionArguments({ method, path: upstreamPath, search, body, bodySha256, contentType });
    const override = methodOverrideIn({ queryNames: Object.keys(args.query), json, body, raw: buffered, contentType });
    if (override) throw new ProxyError(400, 'method_override', `the ${override} has a \`_method\` parameter, with which the upstream may act on another method than the one judged (send the request with that method)`);
    const action: ActionRequest = { tool: route.cfg.name, arguments: args as unknown as Record<string, unknown>, audience: route.audience };
    if (route.destination !== undefined) action.destination = route.destination;
    if (route.cfg.resource) action.resource = route.cfg.resource.replace(/\{([A-Za-z0-9_*]+)\}/g, (_, k: string) => params![k] ?? '');

    let verdict;
    try {
      // the request's trace context goes to Writ (tracing off: as the agent sent it)
      verdict = await this.decider.decide(token, action, carrierOnward({ traceparent: req.headers.traceparent, tracestate: req.headers.tracestate }));
    } catch (err) {
      throw this.authorizerFailure(err, res, route.cfg.name);
    }
    if (verdict.kind === 'deny') {
      this.log('request_refused', { route: route.cfg.name, decision_id: verdict.decisionId });
      throw new ProxyError(403, 'action_denied', describeVerdict(route.cfg.name, verdict), { decision_id: verdict.decisionId, reasons: verdict.reasons });
    }
    if (verdict.kind === 'approval_pending') {
      throw new ProxyError(403, 'approval_required', describeVerdict(route.cfg.name, verdict), { decision_id: verdict.decisionId, approval_id: verdict.approvalId, expires_in: verdict.expiresIn });
    }
    if (verdict.kind === 'approval_refused') {
      throw new ProxyError(403, 'approval_refused', describeVerdict(route.cfg.name, verdict), { decision_id: verdict.decisionId, approval_id: verdict.approvalId, status: verdict.status });
    }
    await this.forward(req, res, route, encodePath(upstreamPath) + search, buffered, token, verdict.decisionId, verdict.actionToken);
  }

  /** Authenticates the task token and checks its task is active (401), or fails closed (503). */
  private async authenticate(token: string, res: ServerResponse, route: string): Promise<void> {
    try {
      await this.opts.authorizer.task(token);
    } catch (err) {
      throw this.authorizerFailure(err, res, route);
    }
  }

  private authorizerFailure(err: unknown, res: ServerResponse, route: string): ProxyError {
    if (err instanceof AuthorizerError && err.unauthenticated) {
      res.setHeader('www-authenticate', 'Bearer realm="writ-proxy", error="invalid_token"');
      return new ProxyError(401, err.code, err.message);
    }
    this.log('authorize_failed', { route, error: err instanceof AuthorizerError ? err.code : 'error' });
    return new ProxyError(503, 'writ_unavailable', 'Writ could not decide; the request was not forwarded');
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    route: CompiledRoute,
    target: string,
    buffered: Buffer | undefined,
    token: string,
    decisionId: string,
    actionToken: string,
  ): Promise<void> {
    const headers: Record<string, string | string[]> = forwardedHeaders(req.headers, route.forward, route.injected);
    Object.assign(headers, route.headers);
    if (route.cfg.forward_action_token) headers[ACTION_TOKEN_HEADER] = actionToken;
    // tracing on: the upstream continues the proxy's span (off: the agent's headers, when the route forwards them)
    if (tracingOn()) Object.assign(headers, activeCarrier());
    if (buffered) headers['content-length'] = String(buffered.length);
    // ask for the answer uncompressed, so masking sees the bytes (RFC 9110 §12.5.3);
    // an upstream that compresses anyway is decoded below
    headers['accept-encoding'] = 'identity';
    const up = route.upstream;
    const mod = up.protocol === 'https:' ? https : http;
    const maxResponse = this.opts.config.max_response_bytes;
    const masking = this.secretBufs.length > 0;

    const sentAt = performance.now();
    return new Promise<void>((resolve) => {
      let settled = false;
      const done = (status: 'succeeded' | 'failed', detail: string) => {
        if (settled) return;
        settled = true;
        const result = status === 'succeeded' ? 'ok' : detail.startsWith('HTTP ') ? 'http_error' : 'failed';
        this.metrics.upstreamSeconds.observe({ tool: route.cfg.name, result }, (performance.now() - sentAt) / 1000);
        this.outcome(token, decisionId, status, detail);
        resolve();
      };
      // the canonical path, re-encoded (never resolved as a URL: `//host/...` must not change the host)
      const upReq = mod.request({ protocol: up.protocol, hostname: up.hostname, port: up.port || undefined, path: target, method: req.method, headers, agent: route.agent, timeout: route.cfg.timeout_ms }, (upRes) => {
        const status = upRes.statusCode ?? 502;
        // the codings applied, in order: content codings, then transfer codings other than
        // `chunked` (RFC 9112 §7: Node's client removes only the chunking, so a `gzip`
        // transfer coding would reach the agent still compressed, past the masking)
        const codings = [...codingList(upRes.headers['content-encoding']), ...codingList(upRes.headers['transfer-encoding']).filter((c) => c !== 'chunked')];
        const bodyless = req.method === 'HEAD' || status === 204 || status === 304;
        const decode = masking && !bodyless && codings.length > 0;
        // own keys only: `constructor` or `__proto__` is no decoder (`in` would find Object.prototype's)
        if (decode && !codings.every((c) => Object.hasOwn(DECODERS, c))) {
          upRes.resume();
          this.log('response_refused', { route: route.cfg.name, decision_id: decisionId, content_encoding: codings.join(',').slice(0, 100) });
          sendJson(res, 502, { error: { code: 'upstream_unsupported_encoding', message: `the upstream of \`${route.cfg.name}\` answered in a content coding the proxy cannot decode to mask secrets` }, decision_id: decisionId });
          done('failed', 'unsupported content coding');
          return;
        }
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(upRes.headers)) {
          if (v === undefined || HOP_BY_HOP.has(k)) continue;
          if (decode && (k === 'content-encoding' || k === 'content-length')) continue;
          out[k] = Array.isArray(v) ? v.map((x) => this.mask(x)) : this.mask(v);
        }
        out['writ-decision-id'] = decisionId;
        res.writeHead(status, out);
        const fail = (detail: string) => {
          upRes.destroy();
          res.destroy();
          done('failed', detail);
        };
        // decode the codings in the reverse of the order they were applied (RFC 9110 §8.4)
        let plain: Readable = upRes;
        if (decode) {
          for (const c of [...codings].reverse()) {
            const d = DECODERS[c]!();
            d.on('error', () => fail('the response does not decode'));
            plain = plain.pipe(d);
          }
        }
        if (maxResponse !== undefined) {
          let sent = 0;
          plain.on('data', (c: Buffer) => {
            sent += c.length;
            if (sent > maxResponse) {
              this.log('response_too_large', { route: route.cfg.name, decision_id: decisionId });
              fail(`response over ${maxResponse} bytes`);
            }
          });
        }
        const stream = masking ? plain.pipe(new MaskSecrets(this.secretBufs)) : plain;
        stream.pipe(res);
        res.on('finish', () => done(status < 400 ? 'succeeded' : 'failed', `HTTP ${status}`));
        res.on('close', () => {
          if (!res.writableFinished) {
            upRes.destroy();
            done('failed', 'the response was cut off');
          }
        });
      });
      upReq.on('timeout', () => upReq.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      upReq.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        const timeout = err.code === 'ETIMEDOUT';
        if (!res.headersSent) {
          sendJson(res, timeout ? 504 : 502, { error: { code: timeout ? 'upstream_timeout' : 'upstream_unavailable', message: `the upstream of \`${route.cfg.name}\` ${timeout ? 'did not answer in time' : 'cannot be reached'}` }, decision_id: decisionId });
        } else res.destroy();
        done('failed', timeout ? 'upstream timeout' : 'upstream unavailable');
      });
      upReq.end(buffered);
    });
  }

  private mask(v: string): string {
    if (!this.redactor.leaks(v)) return v;
    let out = v;
    for (const t of this.redactor.patterns()) out = out.split(t).join('*'.repeat(t.length));
    return out;
  }

  private outcome(token: string, decisionId: string, status: 'succeeded' | 'failed', detail: string): void {
    const p = this.opts.authorizer
      .reportOutcome(token, decisionId, status, detail)
      .catch((err) => this.log('outcome_failed', { decision_id: decisionId, error: err instanceof AuthorizerError ? err.code : 'error' }))
      .finally(() => this.outcomes.delete(p));
    this.outcomes.add(p);
  }

  async flush(): Promise<void> {
    while (this.outcomes.size > 0) {
      // the reports started on the next turn (after their calls' answers) reach the authorizer first
      await new Promise<void>((ok) => setImmediate(ok));
      // and the ones it gathers to send together go now
      this.opts.authorizer.flushOutcomes?.();
      await Promise.allSettled([...this.outcomes]);
    }
  }

  async listen(host = '127.0.0.1', port = 0): Promise<{ url: string; server: http.Server; close: () => Promise<void> }> {
    const { headers_timeout_ms: headersTimeout, request_timeout_ms: requestTimeout } = this.opts.config;
    // a client gets headersTimeout for its headers and requestTimeout for the whole request
    // (body included; the answer may take longer, e.g. waiting for an approval), then 408;
    // Node checks them every connectionsCheckingInterval, so that is kept well under them
    const server = http.createServer(
      { keepAliveTimeout: 5000, headersTimeout, requestTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))) },
      this.handler,
    );
    // with a listener, Node leaves `100 Continue` to the handler instead of sending it at once
    server.on('checkContinue', this.handler);
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(port, host, () => ok());
    });
    const addr = server.address() as AddressInfo;
    const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    this.publicUrl ||= `http://${h}:${addr.port}`;
    return {
      url: `http://${h}:${addr.port}`,
      server,
      close: async () => {
        server.closeAllConnections();
        await new Promise<void>((ok) => server.close(() => ok()));
        await this.close();
      },
    };
  }

  async close(): Promise<void> {
    await this.flush();
    for (const r of this.routes) r.agent.destroy();
    await this.opts.authorizer.close();
  }
}

/** A `Content-Encoding` or `Transfer-Encoding` value as a list of codings (lower-case, `identity` left out). */
function codingList(value: string | string[] | undefined): string[] {
  return String(value ?? '')
    .toLowerCase()
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c !== 'identity');
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > max) {
        failed = true;
        req.resume();
        reject(new ProxyError(413, 'payload_too_large', `the body is over ${max} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on('error', (e) => {
      if (!failed) reject(e);
    });
  });
}
