import { UsageError } from './args.js';

/**
 * Tracing from the standard OpenTelemetry variables, read at the CLI edge (through
 * src/config/settings.ts for `writ serve`): off, and the SDK never loaded, unless an OTLP
 * endpoint is set. The traces URL follows the specification ("OTLP Exporter
 * Configuration"): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
 * `OTEL_EXPORTER_OTLP_ENDPOINT` with `v1/traces` appended.
 */
export interface TracingSettings {
  OTEL_EXPORTER_OTLP_ENDPOINT?: string;
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string;
  OTEL_SERVICE_NAME?: string;
}

export function tracesUrlOf(settings: TracingSettings): string | undefined {
  const traces = settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = settings.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const url = traces || (base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined);
  if (url === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`the OTLP endpoint \`${url.slice(0, 200)}\` is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`the OTLP endpoint \`${url.slice(0, 200)}\` is not http(s)`);
  return url;
}

/** Starts tracing when configured; null (nothing loaded) otherwise. */
export async function tracingFromSettings(settings: TracingSettings, defaultServiceName: string): Promise<{ shutdown(): Promise<void> } | null> {
  const url = tracesUrlOf(settings);
  if (url === undefined) return null;
  const { startTracing } = await import('../core/tracing-sdk.js');
  return startTracing({ url, serviceName: settings.OTEL_SERVICE_NAME?.trim() || defaultServiceName });
}
