import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Histogram, Registry } from 'prom-client';

/**
 * The HTTP tool proxy's Prometheus metrics (`writ gateway http`), named as the MCP
 * gateway's (src/gateway/metrics.ts) so one dashboard reads both. `tool` is a route name
 * from the proxy's configuration (`unmatched` for a request no route takes) and `code`
 * one of the proxy's own error codes: both bounded by the configuration and the code,
 * never by callers. No id, token, path or argument is ever a label.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly upstreamSeconds = new Histogram({
    name: 'writ_gateway_upstream_call_duration_seconds',
    help: 'Time from sending an allowed request upstream to the end of its answer, by route (tool) and result (ok, http_error for 4xx/5xx, failed).',
    labelNames: ['tool', 'result'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'writ_gateway_refusals_total',
    help: 'Requests the proxy answered itself, by route (tool) and error code (action_denied, approval_required, unauthorized, writ_unavailable, no_route, payload_too_large, …).',
    labelNames: ['tool', 'code'] as const,
    registers: [this.registry],
  });
}

/**
 * `GET /metrics` of a gateway listener: only with the metrics token (WRIT_METRICS_TOKEN),
 * compared by digest in constant time; 401 otherwise.
 */
export async function sendGatewayMetrics(req: IncomingMessage, res: ServerResponse, registry: Registry, token: string): Promise<void> {
  const m = /^Bearer +(\S+)$/i.exec(String(req.headers.authorization ?? ''));
  const presented = m?.[1];
  const digest = (s: string) => createHash('sha256').update(s).digest();
  if (!presented || !timingSafeEqual(digest(presented), digest(token))) {
    const body = JSON.stringify({ error: { code: 'unauthorized', message: 'send the metrics token as `Authorization: Bearer <token>`' } });
    res.writeHead(401, { 'content-type': 'application/json', 'cache-control': 'no-store', 'www-authenticate': 'Bearer realm="writ-gateway-metrics"' }).end(body);
    return;
  }
  const body = await registry.metrics();
  res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' }).end(body);
}
