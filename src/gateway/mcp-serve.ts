import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { AuthorizerError } from './authorizer.js';
import type { McpGateway } from './mcp-gateway.js';

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

/** Removes the agent's credentials from a request (headers and raw headers) before anything else reads it. */
export function stripCredentials(req: IncomingMessage): void {
  delete req.headers.authorization;
  delete req.headers['proxy-authorization'];
  const raw = req.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'authorization' || name === 'proxy-authorization') raw.splice(i, 2);
  }
}

interface Session {
  transport: StreamableHTTPServerTransport;
  server: Server;
  taskId: string;
  lastSeen: number;
}

export interface McpHttpOptions {
  host?: string;
  port?: number;
  path?: string;
  maxSessions?: number;
  idleSeconds?: number;
}

export interface RunningHttp {
  url: string;
  server: HttpServer;
  sessions: () => number;
  close: () => Promise<void>;
}

/**
 * Serves the gateway over MCP streamable HTTP. Every request needs the agent's task
 * token (`Authorization: Bearer`), checked before the MCP layer sees the request; a
 * session stays bound to the task that opened it. The header is removed from the
 * request before the MCP transport reads it, and the gateway never forwards it.
 */
export async function serveMcpHttp(gw: McpGateway, opts: McpHttpOptions = {}): Promise<RunningHttp> {
  const path = opts.path ?? '/mcp';
  const maxSessions = opts.maxSessions ?? 1000;
  const idleMs = (opts.idleSeconds ?? 1800) * 1000;
  const sessions = new Map<string, Session>();

  const closeSession = (id: string) => {
    const s = sessions.get(id);
    if (!s) return;
    sessions.delete(id);
    void s.server.close().catch(() => undefined);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    if (url.pathname !== path) return sendJson(res, 404, { error: { code: 'not_found', message: `the MCP endpoint is ${path}` } });
    const token = bearerOf(req);
    const challenge = { 'www-authenticate': 'Bearer realm="writ-gateway"' };
    if (!token) return sendJson(res, 401, { error: { code: 'unauthorized', message: 'send the task token as `Authorization: Bearer <task token>`' } }, challenge);
    let task;
    try {
      task = await gw.authorizer.task(token);
    } catch (err) {
      if (err instanceof AuthorizerError && err.unauthenticated) {
        return sendJson(res, 401, { error: { code: err.code, message: err.message } }, { 'www-authenticate': 'Bearer realm="writ-gateway", error="invalid_token"' });
      }
      gw.log('authenticate_failed', { error: err instanceof AuthorizerError ? err.code : 'error' });
      return sendJson(res, 503, { error: { code: 'writ_unavailable', message: 'Writ cannot be reached; try again' } });
    }
    stripCredentials(req);
    (req as IncomingMessage & { auth?: unknown }).auth = { token, clientId: task.agentId, scopes: [], extra: { taskId: task.taskId } };

    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') {
      const s = sessions.get(sid);
      if (!s) return sendJson(res, 404, { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
      if (s.taskId !== task.taskId) return sendJson(res, 403, { error: { code: 'wrong_task', message: 'this session belongs to another task' } });
      s.lastSeen = Date.now();
      await s.transport.handleRequest(req, res);
      return;
    }
    if (req.method !== 'POST') return sendJson(res, 400, { jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: no valid session ID provided' }, id: null });
    if (sessions.size >= maxSessions) return sendJson(res, 503, { error: { code: 'too_many_sessions', message: 'the gateway has too many open sessions' } });
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: true,
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server, taskId: task.taskId, lastSeen: Date.now() });
      },
      onsessionclosed: (id) => closeSession(id),
    });
    const server = gw.createServer((extra) => extra.authInfo?.token);
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res);
    if (!transport.sessionId || !sessions.has(transport.sessionId)) await server.close().catch(() => undefined);
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
    for (const [id, s] of sessions) if (now - s.lastSeen > idleMs) closeSession(id);
  }, Math.min(60_000, Math.max(1000, idleMs / 2)));
  sweep.unref();
  const addr = http.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}${path}`,
    server: http,
    sessions: () => sessions.size,
    close: async () => {
      clearInterval(sweep);
      for (const id of [...sessions.keys()]) closeSession(id);
      http.closeAllConnections();
      await new Promise<void>((ok) => http.close(() => ok()));
    },
  };
}

/**
 * The task token for stdio mode: from a file (re-read when it changes, so a
 * supervisor can refresh it) or from an environment variable.
 */
export function taskTokenSource(opts: { file?: string; envName: string; env?: NodeJS.ProcessEnv }): () => string | undefined {
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
  const value = (opts.env ?? process.env)[opts.envName]?.trim() || undefined;
  return () => value;
}

/** Serves the gateway on this process's stdin/stdout, for one agent whose task token is configured. */
export async function serveMcpStdio(gw: McpGateway, token: () => string | undefined): Promise<{ closed: Promise<void> }> {
  const transport = new StdioServerTransport();
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
  return { closed };
}
