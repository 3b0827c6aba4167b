import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type TextMapPropagator, type Tracer } from '@opentelemetry/api';

/**
 * OpenTelemetry spans, off unless configured (issue 15 item 2). Off, every function here
 * is one branch on `active` and nothing else: no span objects, no context, no SDK (the
 * SDK is imported only by src/core/tracing-sdk.ts, which the CLI loads when an OTLP
 * endpoint is set). On, the request's span lives in the active OpenTelemetry context
 * (AsyncLocalStorage), and the stage hooks that already time a decision (the metrics'
 * `observeStage`) turn into child spans with the same start and end.
 *
 * Attributes never carry secrets, tokens, arguments or values derived from them: the
 * agent id, the tool name, the decision, its id and first reason code, HTTP method,
 * route template and status only.
 *
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) is how a trace crosses a
 * process: the `traceparent` (and `tracestate`) HTTP headers, and the same keys in MCP
 * `_meta` between an MCP client, the gateway and an upstream tool.
 */

interface Active {
  tracer: Tracer;
  propagator: TextMapPropagator;
}

let active: Active | null = null;

/** Turns tracing on with this tracer and W3C propagator, or off (`null`). */
export function setTracing(t: Active | null): void {
  active = t;
}

export function tracingOn(): boolean {
  return active !== null;
}

/** The span names of the decision stages (src/service/metrics.ts `observeStage`). */
const STAGE_SPANS: Record<string, string> = {
  authenticate: 'writ.authenticate',
  cedar: 'writ.policy',
  sign: 'writ.sign',
  commit: 'writ.store',
};

/**
 * A stage that just ended, as a child span of the active one: started at `startMs` (a
 * `performance.now()` reading, which OpenTelemetry takes as such) and ended now.
 */
export function stageSpan(stage: string, startMs: number): void {
  if (active === null) return;
  const name = STAGE_SPANS[stage];
  if (name === undefined) return;
  active.tracer.startSpan(name, { startTime: startMs, kind: SpanKind.INTERNAL }).end();
}

/** The context a W3C `traceparent` (and `tracestate`) continues; the root context when absent or malformed. */
export function contextOf(carrier: { traceparent?: unknown; tracestate?: unknown }): Context {
  if (active === null || typeof carrier.traceparent !== 'string') return ROOT_CONTEXT;
  const headers: Record<string, string> = { traceparent: carrier.traceparent };
  if (typeof carrier.tracestate === 'string') headers.tracestate = carrier.tracestate;
  return active.propagator.extract(ROOT_CONTEXT, headers, {
    get: (c, k) => (c as Record<string, string>)[k],
    keys: (c) => Object.keys(c as Record<string, string>),
  });
}

/** The `traceparent`/`tracestate` of the active span, to send onward; empty when tracing is off or no span is active. */
export function activeCarrier(): { traceparent?: string; tracestate?: string } {
  if (active === null) return {};
  const out: Record<string, string> = {};
  active.propagator.inject(context.active(), out, { set: (c, k, v) => ((c as Record<string, string>)[k] = v) });
  return out;
}

/** A syntactically valid W3C `traceparent` (version 00 form, §3.2.2), passed on as is when tracing is off. */
export function isTraceparent(v: unknown): v is string {
  return typeof v === 'string' && /^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/.test(v) && !v.startsWith('ff');
}

export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

/**
 * What a hop sends onward (to Writ, to an upstream tool): its own span's context when
 * tracing is on; off, the incoming `traceparent`/`tracestate` unchanged when well formed,
 * so a gateway that does not trace does not break its client's trace.
 */
export function carrierOnward(incoming: { traceparent?: unknown; tracestate?: unknown } | undefined): TraceCarrier {
  if (active !== null) return activeCarrier();
  if (!incoming || !isTraceparent(incoming.traceparent)) return {};
  const state = incoming.tracestate;
  // W3C Trace Context §3.3: at most 32 list members of printable ASCII; 512 characters is the size a hop must propagate
  const keep = typeof state === 'string' && state.length <= 512 && /^[\x20-\x7e]*$/.test(state);
  return { traceparent: incoming.traceparent, ...(keep ? { tracestate: state } : {}) };
}

/**
 * Runs `fn` inside a new span (a child of `parent`, else of the active context), ending
 * it when `fn` settles; an error marks the span and is rethrown. Off, `fn(null)`.
 */
export async function inSpan<T>(
  name: string,
  opts: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
  fn: (span: Span | null) => Promise<T>,
): Promise<T> {
  if (active === null) return fn(null);
  const span = active.tracer.startSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, ...(opts.attributes ? { attributes: opts.attributes } : {}) }, opts.parent ?? context.active());
  try {
    return await context.with(trace.setSpan(opts.parent ?? context.active(), span), () => fn(span));
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.name : 'error' });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * An HTTP server span around one request (OpenTelemetry HTTP semantic conventions:
 * `{method} {route}`, `http.request.method`, `http.route`, `http.response.status_code`),
 * continuing the request's `traceparent`; it ends when the response is finished or the
 * connection closes, not when the handler returns. Off, `fn()`.
 */
export function serverSpan(
  req: { method?: string; headers: Record<string, string | string[] | undefined> },
  res: { once(event: 'close', listener: () => void): unknown; statusCode: number },
  fn: () => Promise<void>,
): Promise<void> {
  if (active === null) return fn();
  const method = (req.method ?? 'GET').slice(0, 16);
  const parent = contextOf(req.headers);
  const span = active.tracer.startSpan(method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method } }, parent);
  res.once('close', () => {
    span.setAttribute('http.response.status_code', res.statusCode);
    if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
  return context.with(trace.setSpan(parent, span), fn);
}

/** Names the active server span after the route's template (never the raw path: ids and junk stay out). */
export function nameServerSpan(method: string, route: string): void {
  if (active === null) return;
  const span = trace.getActiveSpan();
  span?.updateName(`${method.slice(0, 16)} ${route}`);
  span?.setAttribute('http.route', route);
}

/** Sets attributes on the active span (only what the module comment allows). */
export function annotate(attributes: Attributes): void {
  if (active === null) return;
  trace.getActiveSpan()?.setAttributes(attributes);
}

export { SpanKind };
