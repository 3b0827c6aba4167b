import http from 'node:http';
import https from 'node:https';

/**
 * The one client for Writ's HTTP API: the agent client, the `writ` CLI, the gateway's HTTP
 * authorizer and the benchmarks all call Writ through it. One way to build a request (bearer
 * token, JSON or form body, query), one reading of an answer, one error type:
 *
 * - redirects are never followed (a bearer token must not travel anywhere else): `send`
 *   answers the 3xx as it is, `request` refuses it (`unexpected_redirect`);
 * - every call has a timeout (`timeoutMs`, default 30 s): `timeout`;
 * - a connection that fails, or an answer over `maxResponseBytes`: `unreachable`;
 * - an error answer maps to its `code` (`{error: {code, message, details}}`, or the OAuth
 *   `{error, error_description}` of RFC 6749 §5.2), else `http_<status>`.
 *
 * Two transports: `fetch` (the default; a caller may pass its own) and node:http(s) with a
 * keep-alive agent (`http: {keepAlive: true}`), for callers that call Writ on every request
 * and where `fetch` costs more per call than the decision itself.
 */

/** An error answer from Writ (`code` from its body), or `timeout`, `unreachable`, `unexpected_redirect`, `bad_response`. */
export class WritApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** the HTTP status; 0 when no answer came */
    readonly status: number,
    readonly details?: unknown,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'WritApiError';
  }
}

export interface ApiCall {
  method: string;
  /** the path from Writ's base URL, starting with `/` (segments escaped by the caller) */
  path: string;
  /** sent as `Authorization: Bearer …` (or `DPoP …` with `dpop`) */
  token?: string;
  /** a DPoP proof (RFC 9449) for this call: the token goes as `Authorization: DPoP …`, the proof in the `DPoP` header */
  dpop?: string;
  /** a JSON body */
  json?: unknown;
  /** a JSON body already serialized */
  jsonText?: string;
  /** an `application/x-www-form-urlencoded` body (the OAuth endpoints) */
  form?: Record<string, string>;
  /** query parameters; `undefined` values are left out */
  query?: Record<string, string | number | undefined>;
  /** this call's timeout (default: the client's) */
  timeoutMs?: number;
  /**
   * conditional-request headers (`If-Match`, RFC 9110 §13.1), `Prefer` (RFC 7240) and W3C
   * Trace Context (`traceparent`, `tracestate`); the ones set above win
   */
  headers?: { 'if-match'?: string; prefer?: string; traceparent?: string; tracestate?: string };
}

export interface ApiResponse {
  status: number;
  /** the body as text */
  text: string;
  /** the body parsed as JSON, or `undefined` when it is empty or not JSON */
  readonly body: any;
  /** the answer's headers (a `DPoP-Nonce`, RFC 9449 §8, is read from here) */
  headers: Headers;
}

export interface WritClientOptions {
  /** Writ's base URL */
  url: string;
  /** each call's timeout in milliseconds (default 30 000) */
  timeoutMs?: number;
  /** the fetch transport's implementation (default: the global `fetch`) */
  fetch?: typeof fetch;
  /** use node:http(s) instead of fetch, with this agent setting */
  http?: { keepAlive: boolean; maxSockets?: number };
  /** refuse a larger answer (`unreachable`); default: no limit */
  maxResponseBytes?: number;
}

/** `headers`: the answer's headers, or how to build them (node:http's are turned into a `Headers` only when read) */
type Transport = (url: URL, init: { method: string; headers: Record<string, string>; body?: string; timeoutMs: number }) => Promise<{ status: number; text: string; headers: Headers | (() => Headers) }>;

function response(status: number, text: string, headersOf: Headers | (() => Headers)): ApiResponse {
  let parsed: unknown;
  let done = false;
  let headers = typeof headersOf === 'function' ? undefined : headersOf;
  return {
    status,
    text,
    get headers() {
      headers ??= (headersOf as () => Headers)();
      return headers;
    },
    get body() {
      if (!done) {
        done = true;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch {
          parsed = undefined;
        }
      }
      return parsed;
    },
  };
}

class TransportTimeout extends Error {
  readonly code = 'ETIMEDOUT';
}

export class WritClient {
  /** the base URL, without a trailing slash */
  readonly url: string;
  private readonly timeoutMs: number;
  private readonly transport: Transport;
  private readonly agent: http.Agent | null = null;

  constructor(readonly opts: WritClientOptions) {
    // normalized (`new URL`), without a trailing slash; an invalid URL throws a TypeError here
    this.url = new URL(opts.url.replace(/\/+$/, '') + '/').href.replace(/\/$/, '');
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    if (opts.http) {
      const secure = new URL(this.url).protocol === 'https:';
      const agentOpts = { keepAlive: opts.http.keepAlive, maxSockets: opts.http.maxSockets ?? 64, maxFreeSockets: opts.http.maxSockets ?? 64 };
      const agent = secure ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
      this.agent = agent;
      this.transport = nodeTransport(secure ? https : http, agent, opts.maxResponseBytes);
    } else {
      this.transport = fetchTransport(opts.fetch ?? fetch, opts.maxResponseBytes);
    }
  }

  /** One call; answers whatever Writ answered (any status, a 3xx unfollowed). Throws only `timeout` or `unreachable`. */
  async send(call: ApiCall): Promise<ApiResponse> {
    const url = new URL(this.url + call.path);
    for (const [k, v] of Object.entries(call.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (call.headers?.['if-match'] !== undefined) headers['if-match'] = call.headers['if-match'];
    if (call.headers?.prefer !== undefined) headers.prefer = call.headers.prefer;
    if (call.headers?.traceparent !== undefined) headers.traceparent = call.headers.traceparent;
    if (call.headers?.tracestate !== undefined) headers.tracestate = call.headers.tracestate;
    if (call.token) headers.authorization = `${call.dpop === undefined ? 'Bearer' : 'DPoP'} ${call.token}`;
    if (call.dpop !== undefined) headers.dpop = call.dpop;
    let body: string | undefined;
    if (call.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(call.form).toString();
    } else if (call.jsonText !== undefined) {
      headers['content-type'] = 'application/json';
      body = call.jsonText;
    } else if (call.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(call.json);
    }
    const timeoutMs = call.timeoutMs ?? this.timeoutMs;
    try {
      const r = await this.transport(url, { method: call.method, headers, body, timeoutMs });
      return response(r.status, r.text, r.headers);
    } catch (err) {
      const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
      if (e instanceof TransportTimeout || e.name === 'TimeoutError') {
        throw new WritApiError('timeout', `${this.url} did not answer within ${timeoutMs / 1000} s`, 0, undefined, { cause: e instanceof TransportTimeout ? e : Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }) });
      }
      const reason = e.code ?? e.cause?.code ?? e.cause?.message ?? e.message;
      throw new WritApiError('unreachable', `cannot reach ${this.url}: ${reason}`, 0, undefined, { cause: e.code ? e : e.cause && typeof e.cause === 'object' ? e.cause : e });
    }
  }

  /** One call that must succeed: the parsed JSON body of a 2xx answer, or a `WritApiError`. */
  async request<T = any>(call: ApiCall): Promise<T> {
    return bodyOf<T>(await this.send(call), call);
  }

  /** Closes the keep-alive connections (node:http transport). */
  close(): void {
    this.agent?.destroy();
  }
}

/** The parsed JSON body of a 2xx answer to `call`, or a `WritApiError` (what `WritClient.request` answers). */
export function bodyOf<T = any>(r: ApiResponse, call: { method: string; path: string }): T {
  const what = `${call.method} ${call.path}`;
  if (r.status >= 300 && r.status < 400) throw new WritApiError('unexpected_redirect', `${what} answered ${r.status} (redirects are not followed)`, r.status);
  if (r.status < 200 || r.status >= 300) throw apiErrorOf(r.status, r.body, what);
  if (r.body === undefined) throw new WritApiError('bad_response', `${what} answered ${r.status} without a JSON body`, r.status);
  return r.body as T;
}

/** Maps `{error: {code, message, details}}` and the OAuth `{error, error_description}`. */
export function apiErrorOf(status: number, body: unknown, what: string): WritApiError {
  const b = (body ?? {}) as { error?: unknown; error_description?: unknown };
  if (b.error && typeof b.error === 'object') {
    const e = b.error as { code?: unknown; message?: unknown; details?: unknown };
    const code = typeof e.code === 'string' ? e.code : `http_${status}`;
    const message = typeof e.message === 'string' ? e.message : `${what} failed with status ${status}`;
    return new WritApiError(code, message, status, e.details);
  }
  if (typeof b.error === 'string') {
    const message = typeof b.error_description === 'string' ? b.error_description : `${what} failed with status ${status}`;
    return new WritApiError(b.error, message, status);
  }
  return new WritApiError(`http_${status}`, `${what} failed with status ${status}`, status);
}

function fetchTransport(fetchImpl: typeof fetch, maxBytes?: number): Transport {
  return async (url, init) => {
    const res = await fetchImpl(url, { method: init.method, headers: init.headers, body: init.body, redirect: 'manual', signal: AbortSignal.timeout(init.timeoutMs) });
    if (maxBytes !== undefined && Number(res.headers.get('content-length') ?? 0) > maxBytes) {
      await res.body?.cancel();
      throw new Error('response too large');
    }
    const text = await res.text();
    if (maxBytes !== undefined && Buffer.byteLength(text) > maxBytes) throw new Error('response too large');
    return { status: res.status, text, headers: res.headers };
  };
}

function nodeTransport(mod: typeof http | typeof https, agent: http.Agent, maxBytes?: number): Transport {
  return (url, init) =>
    new Promise((resolve, reject) => {
      const payload = init.body === undefined ? undefined : Buffer.from(init.body);
      const headers = payload ? { ...init.headers, 'content-length': String(payload.length) } : init.headers;
      const req = mod.request(url, { method: init.method, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (maxBytes !== undefined && size > maxBytes) {
            // settle first, then drop the connection without an error of its own: an error
            // passed to destroy() here would surface as an uncaught exception once the
            // answer has started
            clearTimeout(timer);
            reject(new Error('response too large'));
            res.removeAllListeners('data');
            req.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          // most callers never read the headers (an authorize answer is its body): built when read
          const headers = () => {
            const h = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
            return h;
          };
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
      const timer = setTimeout(() => req.destroy(new TransportTimeout(`no answer within ${init.timeoutMs} ms`)), init.timeoutMs);
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.end(payload);
    });
}
