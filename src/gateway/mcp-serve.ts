import { createHash, timingSafeEqual } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { WritError } from '../core/errors.js';
import { AuthorizerError } from './authorizer.js';
import { dpopChallenge, DpopEdge } from './dpop-edge.js';
import {
  BATCH_REFUSED,
  BatchRefusingReadBuffer,
  duplicateIdMessage,
  errorResponse,
  guardRequestIds,
  INVALID_REQUEST,
  OpenRequests,
  PARSE_ERROR,
  requestIdOf,
} from './jsonrpc-guard.js';
import type { McpGateway } from './mcp-gateway.js';
import type { Environment } from './secrets.js';

/** RFC 9728 §3: the well-known path of protected resource metadata. */
export const PRM_PATH = '/.well-known/oauth-protected-resource';

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

export function bearerOf(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (!h) return null;
  const m = /^Bearer +([\x21-\x7e]+)\s*$/i.exec(h);
  return m ? m[1]! : null;
}

/** Removes the agent's credentials (and its DPoP proof) from a request, headers and raw headers, before anything else reads it. */
export function stripCredentials(req: IncomingMessage): void {
  delete req.headers.authorization;
  delete req.headers['proxy-authorization'];
  delete req.headers.dpop;
  const raw = req.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'authorization' || name === 'proxy-authorization' || name === 'dpop') raw.splice(i, 2);
  }
}

interface Session {
  transport: StreamableHTTPServerTransport;
  server: Server;
  taskId: string;
  agentId: string;
  /** the last task token this session's requests carried: re-checked by the sweep */
  token: string;
  lastSeen: number;
  /** ids of the session's requests in flight (src/gateway/jsonrpc-guard.ts) */
  open: OpenRequests;
  /** set once the transport has a session id */
  id: string | null;
}

export interface McpHttpOptions {
  /** the bearer token that reads `GET /metrics` (WRIT_METRICS_TOKEN); unset, there is no `/metrics` */
  metricsToken?: string;
  host?: string;
  port?: number;
  path?: string;
  /** sessions open at once, over all agents */
  maxSessions?: number;
  /** sessions one task may hold */
  maxSessionsPerTask?: number;
  /** sessions one agent may hold (over all its tasks) */
  maxSessionsPerAgent?: number;
  idleSeconds?: number;
  /** how often each session's task token is checked again (a refused one closes the session) */
  sessionCheckSeconds?: number;
  /** request bodies past this get 413 */
  maxRequestBytes?: number;
  /**
   * The MCP endpoint's URL as clients address it (behind a TLS terminator or a load
   * balancer); default: the listening address and `path`. DPoP proofs are checked against it.
   */
  publicUrl?: string;
}

export interface RunningHttp {
  url: string;
  server: HttpServer;
  sessions: () => number;
  /** checks every session's task now (what the periodic sweep does); resolves to the ids closed */
  checkSessions: () => Promise<string[]>;
  close: () => Promise<void>;
}

const DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/** Reads a request body up to `max` bytes; null past that. */
async function readBody(req: IncomingMessage, max: number): Promise<string | null> {
  if (Number(req.headers['content-length']) > max) return null;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isJsonContentType(value: string | undefined): boolean {
  return !!value && /^application\/(?:[\w.+-]*\+)?json\s*(?:;|$)/i.test(value.trim());
}

/**
 * Serves the gateway over MCP streamable HTTP. Every request needs the agent's task
 * token (`Authorization: Bearer`), checked before the MCP layer sees the request; a
 * session stays bound to the task that opened it. The header is removed from the
 * request before the MCP transport reads it, and the gateway never forwards it.
 *
 * Sessions are a shared resource, so no agent may take them all: each task and each
 * agent holds at most a configured number. A newcomer past a limit (its task's, its
 * agent's or the gateway's) takes the place of the least recently used session in
 * that group with no request in flight; that session is closed (its client gets 404
 * and, as MCP streamable HTTP requires, starts a new session). Only when every session
 * of the group is busy is the newcomer refused (503 `too_many_sessions`). A session
 * whose task token is refused (revoked or completed task, disabled agent, expired
 * token) is closed at once: when a request brings the refused token, and by a sweep
 * that checks every session's task every `sessionCheckSeconds`.
 */
export async function serveMcpHttp(gw: McpGateway, opts: McpHttpOptions = {}): Promise<RunningHttp> {
  const path = opts.path ?? '/mcp';
  const maxSessions = opts.maxSessions ?? 1000;
  const perTask = opts.maxSessionsPerTask ?? 8;
  const perAgent = opts.maxSessionsPerAgent ?? 32;
  const maxBody = opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const idleMs = (opts.idleSeconds ?? 1800) * 1000;
  const checkMs = (opts.sessionCheckSeconds ?? 30) * 1000;
  const edge = new DpopEdge();
  /** the endpoint's URL as clients address it (set once listening, unless configured) */
  let endpointUrl = opts.publicUrl ?? '';
  /** every session, also those still initializing (they count against the limits) */
  const all = new Set<Session>();
  const sessions = new Map<string, Session>();

  const closeSession = (s: Session, why: string) => {
    if (!all.delete(s)) return;
    if (s.id) sessions.delete(s.id);
    gw.log('session_closed', { session: s.id, task_id: s.taskId, reason: why });
    void s.server.close().catch(() => undefined);
  };

  /** Makes room for one more session in `group` (at most `limit`); false when every one is busy. */
  const makeRoom = (group: Session[], limit: number, why: string): boolean => {
    if (group.length < limit) return true;
    const idle = group.filter((s) => s.id !== null && s.open.size === 0).sort((a, b) => a.lastSeen - b.lastSeen);
    const drop = group.length - limit + 1;
    if (idle.length < drop) return false;
    for (const s of idle.slice(0, drop)) closeSession(s, why);
    return true;
  };

  const admit = (task: { taskId: string; agentId: string }): string | null => {
    if (!makeRoom([...all].filter((s) => s.taskId === task.taskId), perTask, 'task_session_limit')) {
      return `task \`${task.taskId}\` has ${perTask} sessions with requests in flight; close one first`;
    }
    if (!makeRoom([...all].filter((s) => s.agentId === task.agentId), perAgent, 'agent_session_limit')) {
      return `agent \`${task.agentId}\` has ${perAgent} sessions with requests in flight; close one first`;
    }
    if (!makeRoom([...all], maxSessions, 'gateway_session_limit')) return 'the gateway has too many sessions with requests in flight';
    return null;
  };

  /** where this endpoint's RFC 9728 metadata is (the path-suffixed form, §3.1) */
  const metadataUrl = () => `${new URL(endpointUrl).origin}${PRM_PATH}${path}`;
  /**
   * The 401 challenge (RFC 6750 §3, MCP authorization: `resource_metadata` per RFC 9728
   * §5.1), then a DPoP one (RFC 9449 §7.1): a stock client reads the first, Bearer.
   */
  const bearerChallenge = (error?: string) => `Bearer realm="writ-gateway"${error ? `, error="${error}"` : ''}, resource_metadata="${metadataUrl()}", DPoP algs="EdDSA ES256"`;
  let issuer: string | null = null;
  const sendMetadata = async (res: ServerResponse, resource: string) => {
    try {
      issuer ??= (await gw.authorizer.issuer?.()) ?? null;
    } catch {
      return sendJson(res, 503, { error: { code: 'writ_unavailable', message: 'Writ cannot be reached; try again' } });
    }
    if (issuer === null) return sendJson(res, 404, { error: { code: 'not_found', message: 'this gateway names no authorization server' } });
    sendJson(
      res,
      200,
      {
        resource,
        // Writ issues the task tokens this resource takes (RFC 8414 metadata at its issuer)
        authorization_servers: [issuer],
        bearer_methods_supported: ['header'],
        resource_name: 'Writ MCP gateway',
        // a token bound to a key (RFC 9449 §5.2) comes with a proof checked against this resource's URL
        dpop_signing_alg_values_supported: ['EdDSA', 'ES256'],
        dpop_bound_access_tokens_required: false,
      },
      { 'cache-control': 'public, max-age=300' },
    );
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    // Prometheus metrics: never open; only with the metrics token, compared by digest in constant time
    if (url.pathname === '/metrics' && opts.metricsToken && req.method === 'GET') {
      const presented = bearerOf(req);
      if (!presented || !timingSafeEqual(createHash('sha256').update(presented).digest(), createHash('sha256').update(opts.metricsToken).digest())) {
        return sendJson(res, 401, { error: { code: 'unauthorized', message: 'send the metrics token as `Authorization: Bearer <token>`' } }, { 'www-authenticate': 'Bearer realm="writ-gateway-metrics"' });
      }
      const body = await gw.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': gw.metrics.registry.contentType, 'cache-control': 'no-store' });
      return void res.end(body);
    }
    // RFC 9728 §3: the protected resource metadata, for the MCP endpoint (the path-suffixed
    // form the MCP authorization spec's discovery asks first) and for the origin
    if (url.pathname === PRM_PATH || url.pathname === `${PRM_PATH}${path}`) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: { code: 'method_not_allowed', message: 'GET the metadata' } }, { allow: 'GET, HEAD' });
      return sendMetadata(res, url.pathname === PRM_PATH ? new URL(endpointUrl).origin : endpointUrl);
    }
    if (url.pathname !== path) return sendJson(res, 404, { error: { code: 'not_found', message: `the MCP endpoint is ${path}` } });
    const challenge = { 'www-authenticate': bearerChallenge() };
    let token: string | null;
    try {
      token = await edge.token(req, endpointUrl);
    } catch (err) {
      if (!(err instanceof WritError)) throw err;
      const dpop = dpopChallenge(err.code);
      return sendJson(res, err.status, { error: { code: err.code, message: err.message } }, { 'www-authenticate': dpop ? `${dpop}, resource_metadata="${metadataUrl()}"` : bearerChallenge('invalid_token') });
    }
    if (!token) return sendJson(res, 401, { error: { code: 'unauthorized', message: 'send the task token as `Authorization: Bearer <task token>` (or `DPoP` with a proof when it is bound to a key)' } }, challenge);
    const sid = req.headers['mcp-session-id'];
    let task;
    try {
      task = await gw.authorizer.task(token);
    } catch (err) {
      if (err instanceof AuthorizerError && err.unauthenticated) {
        // the session that carried this very token has lost its task: close it now
        const s = typeof sid === 'string' ? sessions.get(sid) : undefined;
        if (s && s.token === token) closeSession(s, err.code);
        return sendJson(res, 401, { error: { code: err.code, message: err.message } }, { 'www-authenticate': bearerChallenge('invalid_token') });
      }
      gw.log('authenticate_failed', { error: err instanceof AuthorizerError ? err.code : 'error' });
      return sendJson(res, 503, { error: { code: 'writ_unavailable', message: 'Writ cannot be reached; try again' } });
    }
    stripCredentials(req);
    (req as IncomingMessage & { auth?: unknown }).auth = { token, clientId: task.agentId, scopes: [], extra: { taskId: task.taskId } };

    // The body is read here, not by the transport, so that batches and reused ids are
    // refused before the MCP server sees them (src/gateway/jsonrpc-guard.ts).
    let body: unknown;
    if (req.method === 'POST' && isJsonContentType(req.headers['content-type'])) {
      const text = await readBody(req, maxBody);
      if (text === null) return sendJson(res, 413, errorResponse(null, -32000, `the request body is larger than ${maxBody} bytes`));
      try {
        body = JSON.parse(text);
      } catch {
        return sendJson(res, 400, errorResponse(null, PARSE_ERROR, 'Parse error: Invalid JSON'));
      }
      if (Array.isArray(body)) return sendJson(res, 400, errorResponse(null, INVALID_REQUEST, BATCH_REFUSED));
    }

    if (typeof sid === 'string') {
      const s = sessions.get(sid);
      if (!s) return sendJson(res, 404, { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
      if (s.taskId !== task.taskId) return sendJson(res, 403, { error: { code: 'wrong_task', message: 'this session belongs to another task' } });
      s.lastSeen = Date.now();
      s.token = token;
      s.open.noteCancel(body);
      const id = requestIdOf(body);
      if (id !== undefined) {
        if (!s.open.add(id)) return sendJson(res, 400, errorResponse(id, INVALID_REQUEST, duplicateIdMessage(id)));
        res.once('close', () => s.open.delete(id));
      }
      await s.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== 'POST') return sendJson(res, 400, { jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: no valid session ID provided' }, id: null });
    const refused = admit(task);
    if (refused) return sendJson(res, 503, { error: { code: 'too_many_sessions', message: refused } });
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: true,
      onsessioninitialized: (id) => {
        session.id = id;
        if (all.has(session)) sessions.set(id, session);
      },
      onsessionclosed: () => closeSession(session, 'client_closed'),
    });
    const server = gw.createServer((extra) => extra.authInfo?.token);
    const session: Session = { transport, server, taskId: task.taskId, agentId: task.agentId, token, lastSeen: Date.now(), open: new OpenRequests(), id: null };
    all.add(session);
    transport.onclose = () => {
      all.delete(session);
      if (session.id) sessions.delete(session.id);
    };
    try {
      await server.connect(transport);
      session.open.track(transport);
      await transport.handleRequest(req, res, body);
    } finally {
      if (!session.id || !sessions.has(session.id)) {
        all.delete(session);
        await server.close().catch(() => undefined);
      }
    }
  };

  /** Checks every session's last token with Writ; closes those refused. */
  const checkSessions = async (): Promise<string[]> => {
    const byToken = new Map<string, Session[]>();
    for (const s of all) if (s.id) byToken.set(s.token, [...(byToken.get(s.token) ?? []), s]);
    const closed: string[] = [];
    for (const [token, group] of byToken) {
      try {
        await gw.authorizer.task(token);
      } catch (err) {
        // only a refusal closes; Writ being unreachable does not (every call is refused anyway)
        if (!(err instanceof AuthorizerError && err.unauthenticated)) continue;
        for (const s of group) {
          // a request since may have brought a fresh token
          if (s.token !== token) continue;
          closed.push(s.id!);
          closeSession(s, err.code);
        }
      }
    }
    return closed;
  };

  const http = createServer({ keepAliveTimeout: 5000, headersTimeout: 10_000, requestTimeout: 0 }, (req, res) => {
    handle(req, res).catch((err) => {
      gw.log('request_failed', { error: gw.redactor.redact((err as Error)?.message ?? 'error').slice(0, 300) });
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'internal_error', message: 'the gateway failed' } });
      else res.destroy();
    });
  });
  await new Promise<void>((ok, fail) => {
    http.once('error', fail);
    http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => ok());
  });
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const s of all) if (s.id && now - s.lastSeen > idleMs) closeSession(s, 'idle');
  }, Math.min(60_000, Math.max(1000, idleMs / 2)));
  sweep.unref();
  // in-process: the sessions of a task Writ ends here close at once, not at the next check
  const unsubscribe =
    gw.authorizer.onTasksEnded?.((ids) => {
      const ended = new Set(ids);
      for (const s of [...all]) if (ended.has(s.taskId)) closeSession(s, 'task_ended');
    }) ?? (() => undefined);
  let checking = false;
  const check = setInterval(() => {
    if (checking) return;
    checking = true;
    void checkSessions()
      .catch(() => undefined)
      .finally(() => (checking = false));
  }, checkMs);
  check.unref();
  const addr = http.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  endpointUrl ||= `http://${host}:${addr.port}${path}`;
  return {
    url: `http://${host}:${addr.port}${path}`,
    server: http,
    sessions: () => sessions.size,
    checkSessions,
    close: async () => {
      clearInterval(sweep);
      clearInterval(check);
      unsubscribe();
      for (const s of [...all]) closeSession(s, 'gateway_closing');
      http.closeAllConnections();
      await new Promise<void>((ok) => http.close(() => ok()));
    },
  };
}

/**
 * The task token for stdio mode: from a file (re-read when it changes, so a
 * supervisor can refresh it) or from an environment variable of `env`, the
 * environment the CLI passes in (the gateway reads no process environment).
 */
export function taskTokenSource(opts: { file?: string; envName: string; env: Environment }): () => string | undefined {
  if (opts.file) {
    const file = opts.file;
    let stamp = '';
    let value: string | undefined;
    return () => {
      try {
        const st = statSync(file);
        const s = `${st.ino}:${st.size}:${st.mtimeMs}`;
        if (s !== stamp) {
          stamp = s;
          value = readFileSync(file, 'utf8').trim() || undefined;
        }
      } catch {
        stamp = '';
        value = undefined;
      }
      return value;
    };
  }
  const value = opts.env[opts.envName]?.trim() || undefined;
  return () => value;
}

/** Serves the gateway on this process's stdin/stdout, for one agent whose task token is configured. */
export async function serveMcpStdio(gw: McpGateway, token: () => string | undefined): Promise<{ closed: Promise<void> }> {
  const transport = new StdioServerTransport(process.stdin, process.stdout);
  // batches are answered by the read buffer and never reach the server; reused ids by guardRequestIds
  (transport as unknown as { _readBuffer: BatchRefusingReadBuffer })._readBuffer = new BatchRefusingReadBuffer((line) => process.stdout.write(line));
  const server = gw.createServer(() => token());
  let done!: () => void;
  const closed = new Promise<void>((ok) => (done = ok));
  const prev = server.onclose;
  server.onclose = () => {
    prev?.();
    done();
  };
  process.stdin.once('end', () => void server.close().catch(() => undefined));
  await server.connect(transport);
  guardRequestIds(transport);
  return { closed };
}
