import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { ForbiddenError, UnauthorizedError } from '../core/errors.js';
import type { ClientAddresses } from './client-address.js';

/**
 * Console sessions (issue 16). The browser never holds the operator token: it is
 * exchanged once, at sign-in, for a random session id in a cookie that scripts cannot
 * read (HttpOnly), that no other site's request carries (SameSite=Strict), that only
 * `/console` sees (Path), and that travels over TLS only where the console is served over
 * TLS (Secure). The operator token stays in this process's memory, so each request is
 * authenticated exactly as the `/v1` API authenticates it: a disabled operator or an
 * expired token ends the session at once.
 *
 * Sessions live in one process: behind several instances, a load balancer keeps a
 * browser on one of them (sticky sessions), or the operator signs in again.
 *
 * Every state change carries the session's CSRF token (`X-Writ-CSRF`, compared in
 * constant time) and an `Origin` that is this server's own (OWASP CSRF cheat sheet:
 * synchronizer token plus origin verification).
 */

export const SESSION_COOKIE = 'writ_console';
export const CSRF_HEADER = 'x-writ-csrf';
/** A session ends after this long without a request. */
export const IDLE_MS = 30 * 60_000;
/** …and after this long in any case (then the operator signs in again). */
export const ABSOLUTE_MS = 8 * 3600_000;
/** Sessions one process keeps at most; the oldest go first. */
const MAX_SESSIONS = 10_000;

export interface ConsoleSession {
  id: string;
  operatorId: string;
  /** the operator token, only ever in this process's memory */
  token: string;
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  /** when the operator token expires: the session never outlives it */
  tokenExpiresAt: number;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class ConsoleSessions {
  /** keyed by the SHA-256 of the session id, so a timing leak of the map says nothing */
  private readonly sessions = new Map<string, ConsoleSession>();

  constructor(private readonly now: () => number) {}

  create(operatorId: string, token: string, tokenExpiresAt: number): ConsoleSession {
    const now = this.now();
    // one session per operator per sign-in; a full table drops the oldest
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const s: ConsoleSession = {
      id: randomBytes(32).toString('base64url'),
      operatorId,
      token,
      csrf: randomBytes(32).toString('base64url'),
      createdAt: now,
      lastSeenAt: now,
      tokenExpiresAt,
    };
    this.sessions.set(digest(s.id).toString('hex'), s);
    return s;
  }

  /** The live session a request's cookie names, or null; a used session's idle clock restarts. */
  get(req: IncomingMessage): ConsoleSession | null {
    const id = cookieValue(req, SESSION_COOKIE);
    if (!id || id.length > 100) return null;
    const key = digest(id).toString('hex');
    const s = this.sessions.get(key);
    if (!s) return null;
    const now = this.now();
    if (now - s.lastSeenAt > IDLE_MS || now - s.createdAt > ABSOLUTE_MS || now >= s.tokenExpiresAt) {
      this.sessions.delete(key);
      return null;
    }
    s.lastSeenAt = now;
    return s;
  }

  /** The request's session, or 401. */
  require(req: IncomingMessage): ConsoleSession {
    const s = this.get(req);
    if (!s) throw new UnauthorizedError(cookieValue(req, SESSION_COOKIE) ? 'the console session has ended: sign in again' : 'sign in to the console first', cookieValue(req, SESSION_COOKIE) ? 'invalid_token' : 'unauthorized');
    return s;
  }

  end(s: ConsoleSession): void {
    this.sessions.delete(digest(s.id).toString('hex'));
  }

  /** Ends every session of an operator (its token stopped working). */
  endOperator(operatorId: string): void {
    for (const [k, s] of this.sessions) if (s.operatorId === operatorId) this.sessions.delete(k);
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** One cookie's value from the `Cookie` header (RFC 6265 §5.4), or null. */
export function cookieValue(req: IncomingMessage, name: string): string | null {
  const header = req.headers.cookie;
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/**
 * Whether the browser reached us over TLS: the socket is TLS, or a trusted proxy
 * (`WRIT_TRUSTED_PROXIES`) says so in `X-Forwarded-Proto`. The header of any other peer
 * is not read: a client could otherwise turn the Secure flag off, or on for a plain
 * connection so the cookie never comes back.
 */
export function isHttps(req: IncomingMessage, proxies: ClientAddresses): boolean {
  if ((req.socket as TLSSocket).encrypted) return true;
  if (!proxies.isTrusted(req.socket.remoteAddress ?? '')) return false;
  const proto = req.headers['x-forwarded-proto'];
  const first = (Array.isArray(proto) ? proto[0] : proto)?.split(',')[0]?.trim().toLowerCase();
  return first === 'https';
}

/** `Set-Cookie` for a session (or, with `value` null, its removal). */
export function sessionCookie(value: string | null, secure: boolean): string {
  const attrs = [`${SESSION_COOKIE}=${value ?? ''}`, 'Path=/console', 'HttpOnly', 'SameSite=Strict'];
  attrs.push(value === null ? 'Max-Age=0' : `Max-Age=${Math.floor(ABSOLUTE_MS / 1000)}`);
  if (secure) attrs.push('Secure');
  return attrs.join('; ');
}

/**
 * A state change must come from a page of this server: its `Origin` is the origin the
 * request was addressed to (`Host`, over http or https as `isHttps` says), or the
 * configured issuer's. A request without `Origin` passes only when the browser marks it
 * same-origin (`Sec-Fetch-Site`); anything else is refused.
 */
export function checkOrigin(req: IncomingMessage, proxies: ClientAddresses, issuer: string): void {
  const origin = req.headers.origin;
  if (origin === undefined) {
    if (req.headers['sec-fetch-site'] === 'same-origin') return;
    throw new ForbiddenError('a console change must carry an `Origin` header', 'origin_not_allowed');
  }
  const allowed = new Set<string>();
  const host = req.headers.host;
  if (host) allowed.add(`${isHttps(req, proxies) ? 'https' : 'http'}://${host}`.toLowerCase());
  try {
    allowed.add(new URL(issuer).origin.toLowerCase());
  } catch {
    // an issuer that is no URL names no origin
  }
  if (!allowed.has(origin.toLowerCase())) throw new ForbiddenError('the request comes from another origin', 'origin_not_allowed');
}

/** The session's CSRF token must be in `X-Writ-CSRF`. */
export function checkCsrf(req: IncomingMessage, s: ConsoleSession): void {
  const h = req.headers[CSRF_HEADER];
  const presented = Array.isArray(h) ? h[0] : h;
  if (!presented || !timingSafeEqual(digest(presented), digest(s.csrf))) {
    throw new ForbiddenError('the console CSRF token is missing or wrong: reload the console', 'csrf_token_invalid');
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
export function isStateChange(method: string | undefined): boolean {
  return !SAFE_METHODS.has(method ?? 'GET');
}
