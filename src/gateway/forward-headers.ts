import type { IncomingHttpHeaders } from 'node:http';

/**
 * Which of the agent's request headers the HTTP proxy passes upstream. Policy judges
 * `{method, path, query, body}`; a header that makes the upstream (or a framework or
 * load balancer in front of it) act on another method, path, host or body would let
 * the agent do something other than what was judged. So headers pass only from an
 * allow-list (per route, `forward_headers`), and the headers below never pass, even
 * when a route lists them (a configuration error).
 */

/** Forwarded when a route does not set `forward_headers`: content negotiation, preconditions, tracing. */
export const DEFAULT_FORWARD_HEADERS: readonly string[] = [
  'accept',
  'accept-language',
  'content-type',
  'content-language',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'user-agent',
  'traceparent',
  'tracestate',
  'x-request-id',
];

/**
 * Never forwarded from the agent:
 * - its own credentials and the proxy's (`Authorization`, its `DPoP` proof, `Cookie`, `Proxy-*`, `Writ-Action-Token`);
 * - framing, which the proxy sets itself (RFC 9112 §6: `Content-Length`, `Transfer-Encoding`,
 *   `TE`, `Trailer`, `Expect`, `Connection` and the other hop-by-hop headers of RFC 9110 §7.6.1);
 * - encodings: `Accept-Encoding` (the proxy asks for `identity` so it can mask secrets in
 *   the answer) and `Content-Encoding` (policy judges the bytes it reads);
 * - headers that change the method, path or host the upstream acts on: method overrides
 *   (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`), URL rewrites
 *   (`X-Original-URL`, `X-Rewrite-URL`, `X-Original-*`, `X-Rewrite-*`), `Host` and its
 *   stand-ins (`X-Host`, `X-Forwarded-*`, `Forwarded` (RFC 7239), `X-Real-IP`, `Via`), and
 *   framework-internal ones (`X-Middleware-Subrequest`).
 */
const NEVER = new Set([
  'host',
  'authorization',
  'dpop',
  'cookie',
  'writ-action-token',
  'content-length',
  'transfer-encoding',
  'te',
  'trailer',
  'trailers',
  'expect',
  'connection',
  'keep-alive',
  'upgrade',
  'accept-encoding',
  'content-encoding',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-url',
  'x-rewrite-url',
  'x-host',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'client-ip',
  'via',
  'max-forwards',
  'x-middleware-subrequest',
]);
const NEVER_PREFIXES = ['proxy-', 'x-forwarded-', 'x-original-', 'x-rewrite-', 'x-http-method'];

/** Whether a header may never pass from the agent to an upstream. */
export function isNeverForwarded(name: string): boolean {
  const n = name.toLowerCase();
  return NEVER.has(n) || NEVER_PREFIXES.some((p) => n.startsWith(p));
}

/**
 * The agent's headers to pass upstream: those on `allowed` (lower-case names), less
 * the never-forwarded ones, those the `Connection` header names (RFC 9110 §7.6.1) and
 * those the route injects.
 */
export function forwardedHeaders(incoming: IncomingHttpHeaders, allowed: ReadonlySet<string>, injected: ReadonlySet<string>): Record<string, string | string[]> {
  const listed = new Set(String(incoming.connection ?? '').toLowerCase().split(',').map((s) => s.trim()));
  const out: Record<string, string | string[]> = {};
  for (const name of allowed) {
    const v = incoming[name];
    if (v === undefined || isNeverForwarded(name) || listed.has(name) || injected.has(name)) continue;
    out[name] = v;
  }
  return out;
}
