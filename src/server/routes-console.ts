import type { IncomingMessage, ServerResponse } from 'node:http';
import { WritError } from '../core/errors.js';
import type { OperatorRecord } from '../core/types.js';
import type { Writ } from '../service/writ.js';
import { consoleEventsQuerySchema, consoleSignInSchema, parse } from '../wire/index.js';
import type { ClientAddresses } from './client-address.js';
import { CONSOLE_HEADERS, sendConsoleFile } from './console-assets.js';
import { checkCsrf, checkOrigin, ConsoleSessions, isHttps, isStateChange, sessionCookie, type ConsoleSession } from './console-session.js';
import type { Drain } from './drain.js';
import { readJson, sendError, sendJson } from './http-io.js';
import type { AddRoute } from './routes-delegation.js';
import { registerConsoleEndpoints } from './console-endpoints.js';

/**
 * The operator console at `/console` (issue 16; README "Console"):
 * - `GET /console`, `GET /console/assets/{name}`: the page and its bundle (strict CSP);
 * - `POST /console/api/session` signs in with an operator token, `GET` says who is signed
 *   in (and the CSRF token), `DELETE` signs out;
 * - `GET /console/api/events`: server-sent events when the pending approvals or the
 *   active break-glass change, so the inbox updates without a reload;
 * - `GET /console/api/audit`, `POST /console/api/policies/validate` (console-endpoints.ts);
 * - `/console/api/v1/...`: the `/v1` API itself, for the session's operator
 *   (`consoleBridge`): the console has no data path of its own, so every role check,
 *   validation and audit record is the API's.
 */
export interface ConsoleDeps {
  sessions: ConsoleSessions;
  proxies: ClientAddresses;
  drain?: Drain;
}

const BRIDGE_PREFIX = '/console/api/v1/';
/** How often an event stream looks for changes; and sends a comment so proxies keep it open. */
const EVENT_POLL_MS = 1000;
const HEARTBEAT_MS = 15_000;

function operatorInfo(op: OperatorRecord) {
  return { id: op.id, name: op.name, roles: op.roles, expires_at: new Date(op.expiresAt).toISOString() };
}

export function registerConsoleRoutes(writ: Writ, route: AddRoute, deps: ConsoleDeps): void {
  const { sessions, proxies } = deps;
  /** The session's operator, checked as the API checks a bearer token (disabled, expired: the session ends). */
  const sessionOperator = async (s: ConsoleSession): Promise<OperatorRecord> => {
    try {
      return await writ.identity.authenticateOperator(s.token);
    } catch (err) {
      if (err instanceof WritError && err.status === 401) sessions.end(s);
      throw err;
    }
  };

  const page = async ({ req, res }: { req: IncomingMessage; res: ServerResponse }) => sendConsoleFile(res, 'index.html', req.method ?? 'GET');
  route('GET', '/console', page);
  route('GET', '/console/', page);
  route('GET', '/console/assets/{name}', async ({ req, res, params }) => sendConsoleFile(res, params[0]!, req.method ?? 'GET'));

  route('POST', '/console/api/session', async ({ req, res }) => {
    // a sign-in from another site's page would sign the browser in as someone else (login CSRF)
    checkOrigin(req, proxies, writ.config.issuer);
    const body = parse(consoleSignInSchema, await readJson(req));
    const op = await writ.identity.authenticateOperator(body.token);
    const s = sessions.create(op.id, body.token, op.expiresAt);
    await writ.audit.securityEvent('console.signed_in', `operator:${op.id}`, {});
    sendJson(res, 201, { operator: operatorInfo(op), csrf: s.csrf }, { 'set-cookie': sessionCookie(s.id, isHttps(req, proxies)), ...CONSOLE_HEADERS });
  });
  route('GET', '/console/api/session', async ({ req, res }) => {
    const s = sessions.require(req);
    const op = await sessionOperator(s);
    sendJson(res, 200, { operator: operatorInfo(op), csrf: s.csrf }, CONSOLE_HEADERS);
  });
  route('DELETE', '/console/api/session', async ({ req, res }) => {
    const s = sessions.require(req);
    checkOrigin(req, proxies, writ.config.issuer);
    checkCsrf(req, s);
    sessions.end(s);
    await writ.audit.securityEvent('console.signed_out', `operator:${s.operatorId}`, {});
    sendJson(res, 200, { signed_out: true }, { 'set-cookie': sessionCookie(null, isHttps(req, proxies)), ...CONSOLE_HEADERS });
  });

  // the console's own endpoints (console-endpoints.ts): the session's operator, and for a change its Origin and CSRF token
  registerConsoleEndpoints(writ, route, async (req, change) => {
    const s = sessions.require(req);
    if (change) {
      checkOrigin(req, proxies, writ.config.issuer);
      checkCsrf(req, s);
    }
    return sessionOperator(s);
  });

  route('GET', '/console/api/events', async ({ req, res, url }) => {
    const s = sessions.require(req);
    parse(consoleEventsQuerySchema, Object.fromEntries(url.searchParams));
    await sessionOperator(s);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no', ...CONSOLE_HEADERS });
    let last = '';
    let busy = false;
    let lastWrite = Date.now();
    const stop = () => {
      clearInterval(timer);
      if (!res.writableEnded) res.end();
    };
    const tick = async () => {
      if (busy || res.writableEnded) return;
      busy = true;
      try {
        if (deps.drain?.draining) return stop();
        try {
          await sessionOperator(s);
        } catch {
          res.write('event: signed_out\ndata: {}\n\n');
          return stop();
        }
        const now = writ.clock.now();
        const pending = await writ.store.listApprovals({ status: 'pending', limit: 500 });
        const glass = await writ.store.listBreakGlass({ state: 'active', now, limit: 100 });
        const snapshot = JSON.stringify({
          approvals: pending.filter((a) => a.expiresAt > now).map((a) => `${a.id}:${a.reviews.length}`),
          break_glass: glass.map((g) => g.id),
        });
        if (snapshot !== last) {
          last = snapshot;
          res.write(`event: change\ndata: ${snapshot}\n\n`);
          lastWrite = Date.now();
        } else if (Date.now() - lastWrite >= HEARTBEAT_MS) {
          res.write(': keep-alive\n\n');
          lastWrite = Date.now();
        }
      } catch {
        // a store hiccup: the next tick tries again; the page keeps what it shows
      } finally {
        busy = false;
      }
    };
    const timer = setInterval(() => void tick(), EVENT_POLL_MS);
    timer.unref();
    res.once('close', () => clearInterval(timer));
    await tick();
  });
}

/** Whether a request is for the `/v1` API through a console session. */
export function isConsoleBridge(req: IncomingMessage): boolean {
  return req.url?.startsWith(BRIDGE_PREFIX) ?? false;
}

/**
 * `/console/api/v1/...` becomes `/v1/...` with the session's operator token as its bearer,
 * after the session, and for a state change its Origin and CSRF token, are checked. Answers
 * false after it sent the refusal itself.
 */
export function consoleBridge(writ: Writ, deps: ConsoleDeps) {
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    try {
      const s = deps.sessions.require(req);
      if (isStateChange(req.method)) {
        checkOrigin(req, deps.proxies, writ.config.issuer);
        checkCsrf(req, s);
      }
      req.url = req.url!.slice('/console/api'.length);
      // the browser's own Authorization header, if any, is never passed on
      req.headers.authorization = `Bearer ${s.token}`;
      return true;
    } catch (err) {
      for (const [k, v] of Object.entries(CONSOLE_HEADERS)) res.setHeader(k, v);
      sendError(res, err);
      if (!req.complete) req.resume();
      return false;
    }
  };
}
