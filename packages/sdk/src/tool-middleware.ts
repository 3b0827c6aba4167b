import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { ACTION_TOKEN_HEADER, httpActionArguments, InvalidQueryError, isJsonContentType } from './http-action.js';
import { canonicalPath, InvalidPathError } from './http-path.js';
import { ActionTokenError, consumeActionToken, createActionVerifier, type ActionClaims, type ActionVerifierOptions } from './verify-action-token.js';

/**
 * Tool-server side: check an action token against the call actually received (tool,
 * arguments digest, audience, expiry, signature) and burn it once at Writ, before
 * acting. Two places the token travels:
 *
 * - HTTP: the `Writ-Action-Token: <token>` header (what Writ's HTTP proxy sends with
 *   `forward_action_token`). The action's arguments are `{method, path, query, body}`
 *   for a JSON body, `{method, path, query, body_sha256, content_type}` for any other,
 *   built exactly as the proxy builds them (`httpActionArguments`): the token binds the
 *   whole request, and a body the authorization did not include is refused.
 * - MCP: the request's `params._meta["writ/action_token"]` (what Writ's MCP gateway
 *   sends with `forward_action_token`), checked against the tool call's arguments.
 */

export const MCP_ACTION_TOKEN_META = 'writ/action_token';

export interface ActionGuardOptions extends ActionVerifierOptions {
  /** Writ's base URL, for `POST /v1/actions/consume` (default: the issuer) */
  writUrl?: string;
  /** burn the token at Writ (default true); without it a token could be replayed within its seconds */
  consume?: boolean;
  fetch?: typeof fetch;
}

/** Why a call was refused: `code` is the token error, `status` the HTTP status that fits. */
export class ActionRefusedError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ActionRefusedError';
  }
}

const STATUS: Record<string, number> = {
  action_token_required: 401,
  invalid_token: 401,
  token_expired: 401,
  wrong_type: 401,
  wrong_issuer: 401,
  wrong_audience: 403,
  wrong_tool: 403,
  arguments_mismatch: 403,
  token_already_used: 409,
  task_not_active: 403,
};

/**
 * The common check: verify offline, then consume once. Resolves with the claims;
 * rejects with an `ActionRefusedError`.
 */
export function createActionGuard(opts: ActionGuardOptions) {
  const verify = createActionVerifier(opts);
  const writUrl = (opts.writUrl ?? opts.issuer).replace(/\/+$/, '');
  const refused = (err: unknown): never => {
    if (err instanceof ActionTokenError) throw new ActionRefusedError(err.code, err.message, STATUS[err.code] ?? 403);
    throw err;
  };
  /** The checks that need no arguments (signature, issuer, audience, expiry, tool), without consuming: before a body is read. */
  async function precheck(token: string | undefined | null, tool: string): Promise<void> {
    if (!token) throw new ActionRefusedError('action_token_required', 'this call needs a Writ action token', 401);
    await verify.verifyClaims(token, tool).catch(refused);
  }
  async function check(token: string | undefined | null, call: { tool: string; arguments: unknown }): Promise<ActionClaims> {
    if (!token) throw new ActionRefusedError('action_token_required', 'this call needs a Writ action token', 401);
    let claims: ActionClaims;
    try {
      claims = await verify(token, call);
    } catch (err) {
      return refused(err);
    }
    if (opts.consume !== false) {
      try {
        await consumeActionToken(writUrl, token, opts.audience, opts.fetch);
      } catch (err) {
        const e = err as { code?: string; status?: number; message?: string };
        // Writ not reached (or a redirect, never followed): the token could not be burnt
        const code = e.code === undefined || e.code === 'unreachable' || e.code === 'timeout' ? 'consume_failed' : e.code;
        throw new ActionRefusedError(code, e.message ?? 'the action token could not be consumed', STATUS[code] ?? (e.status && e.status >= 400 && e.status < 500 ? e.status : 503));
      }
    }
    return claims;
  }
  return Object.assign(check, { precheck });
}

export interface HttpGuardOptions extends ActionGuardOptions {
  /** the action's tool name (the proxy's route name), or a function of the request */
  tool: string | ((req: IncomingMessage) => string);
  /** JSON bodies are read whole, up to this (default 1 MiB) */
  maxBodyBytes?: number;
}

export interface GuardedRequest {
  claims: ActionClaims;
  /** the raw body (read to check its digest) */
  body: Buffer;
  /** the parsed JSON body, when it is JSON */
  json?: unknown;
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(new ActionRefusedError('payload_too_large', `the body is over ${max} bytes`, 413));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * For a Node `http` server: reads the body, checks the `Writ-Action-Token` header
 * against this request, consumes the token. On success answers the claims and the
 * body; otherwise it has already answered the request (401/403/409/413 JSON) and
 * answers null.
 *
 *     const guard = createHttpActionGuard({ issuer, audience, jwks, tool: 'github.issues' });
 *     http.createServer(async (req, res) => {
 *       const ok = await guard(req, res);
 *       if (!ok) return;
 *       // ... act, with ok.json / ok.claims
 *     });
 */
export function createHttpActionGuard(opts: HttpGuardOptions) {
  const check = createActionGuard(opts);
  const max = opts.maxBodyBytes ?? 1 << 20;
  return async function guard(req: IncomingMessage, res: ServerResponse): Promise<GuardedRequest | null> {
    try {
      const raw = req.headers[ACTION_TOKEN_HEADER];
      const token = Array.isArray(raw) ? undefined : raw;
      const tool = typeof opts.tool === 'function' ? opts.tool(req) : opts.tool;
      // a token that is missing, forged, expired or for another tool or audience is refused
      // before the body is read, so it cannot make the server buffer one
      await check.precheck(token, tool);
      const body = await readBody(req, max);
      const contentType = req.headers['content-type'];
      let json: unknown;
      let bodySha256: string | undefined;
      // a JSON body is bound as parsed; any other by its bytes and content type; an empty
      // body is no body. So a body added to a request authorized without one (a form
      // post, text, bytes) changes the digest and is refused
      if (body.length > 0 && isJsonContentType(contentType)) {
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch {
          throw new ActionRefusedError('invalid_json', 'the JSON body does not parse', 400);
        }
      } else if (body.length > 0) bodySha256 = createHash('sha256').update(body).digest('hex');
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      let args;
      try {
        // the path and query read as the proxy reads them (decoded once; refused when ambiguous)
        const { path } = canonicalPath(q < 0 ? url : url.slice(0, q));
        args = httpActionArguments({ method: req.method ?? 'GET', path, search: q < 0 ? '' : url.slice(q), body: json, bodySha256, contentType });
      } catch (err) {
        if (err instanceof InvalidQueryError || err instanceof InvalidPathError) throw new ActionRefusedError(err.code, err.message, 400);
        throw err;
      }
      const claims = await check(token, { tool, arguments: args });
      return { claims, body, json };
    } catch (err) {
      const e = err instanceof ActionRefusedError ? err : new ActionRefusedError('internal_error', 'the action token could not be checked', 500);
      if (!res.headersSent) {
        const text = JSON.stringify({ error: { code: e.code, message: e.message } });
        res.writeHead(e.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      }
      return null;
    }
  };
}

/** The same as connect/express-style middleware: sets `req.writ` (a `GuardedRequest`) and calls `next()`. */
export function writHttpMiddleware(opts: HttpGuardOptions) {
  const guard = createHttpActionGuard(opts);
  return (req: IncomingMessage & { writ?: GuardedRequest }, res: ServerResponse, next: (err?: unknown) => void): void => {
    guard(req, res).then((ok) => {
      if (!ok) return;
      req.writ = ok;
      next();
    }, next);
  };
}

/** What an MCP server SDK passes a tool handler as its last argument (the part used here). */
export interface McpHandlerExtra {
  _meta?: Record<string, unknown>;
}

type ToolResult = { content: { type: string; [k: string]: unknown }[]; isError?: boolean; [k: string]: unknown };

/**
 * Wraps an MCP server tool handler (`McpServer.registerTool(name, config, handler)` or
 * a low-level `tools/call` handler given `(args, extra)`): the call runs only when
 * `_meta["writ/action_token"]` holds a valid, unused action token for `tool` (the
 * name Writ authorized, e.g. `github.create_issue`) and these exact arguments. A
 * refused call answers an `isError` result naming the reason; the handler never runs.
 *
 * Note: the SDK hands the handler the arguments after its input schema parsed them;
 * a schema that adds defaults or strips fields changes them, and the digest then does
 * not match (a refusal, never a pass). Use schemas without defaults or transforms.
 */
export function withActionToken<A, E extends McpHandlerExtra, R extends ToolResult>(
  opts: ActionGuardOptions & { tool: string; onRefused?: (err: ActionRefusedError) => void },
  handler: (args: A, extra: E) => R | Promise<R>,
): (args: A, extra: E) => Promise<R> {
  const check = createActionGuard(opts);
  return async (args: A, extra: E) => {
    const meta = extra?._meta ?? {};
    const token = typeof meta[MCP_ACTION_TOKEN_META] === 'string' ? (meta[MCP_ACTION_TOKEN_META] as string) : undefined;
    try {
      await check(token, { tool: opts.tool, arguments: args ?? {} });
    } catch (err) {
      if (!(err instanceof ActionRefusedError)) throw err;
      opts.onRefused?.(err);
      const refused: ToolResult = { content: [{ type: 'text', text: `refused: ${err.code}: ${err.message}` }], isError: true, _meta: { 'writ/error': { code: err.code } } };
      return refused as R;
    }
    return handler(args, extra);
  };
}
