import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { setTracing } from './tracing.js';

/**
 * The OpenTelemetry SDK, loaded only when tracing is configured (the CLI imports this
 * module dynamically when `OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT` is set;
 * otherwise it is never loaded and src/core/tracing.ts stays a branch per hook).
 *
 * Registers, process-wide: the tracer provider (spans batched to the OTLP/HTTP exporter,
 * or handed one by one to the exporter a test gives), the AsyncLocalStorage context
 * manager (a request's span follows its awaits) and the W3C Trace Context propagator.
 */
export interface RunningTracing {
  /** exports what is buffered and stops (on shutdown, after the drain) */
  shutdown(): Promise<void>;
}

export function startTracing(opts: { serviceName: string; url?: string; exporter?: SpanExporter }): RunningTracing {
  const exporter = opts.exporter ?? new OTLPTraceExporter(opts.url !== undefined ? { url: opts.url } : {});
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': opts.serviceName }),
    // a test's in-memory exporter sees each span as it ends; a collector gets batches
    spanProcessors: [opts.exporter ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter)],
  });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const propagator = new W3CTraceContextPropagator();
  propagation.setGlobalPropagator(propagator);
  trace.setGlobalTracerProvider(provider);
  setTracing({ tracer: provider.getTracer('writ'), propagator });
  return {
    async shutdown() {
      setTracing(null);
      await provider.shutdown().catch(() => undefined);
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}
