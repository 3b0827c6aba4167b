import { Counter, Histogram, Registry } from 'prom-client';

/**
 * The MCP gateway's Prometheus metrics. `tool` is a namespaced tool name from a
 * configured upstream's catalog: calls to tools no catalog lists never reach a labelled
 * metric, so a caller cannot grow the series count. No id, token or
 * argument is ever a label.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly upstreamSeconds = new Histogram({
    name: 'writ_gateway_upstream_call_duration_seconds',
    help: 'Time an upstream took to answer an allowed tools/call, by tool and result (ok, tool_error, failed).',
    labelNames: ['tool', 'result'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'writ_gateway_refusals_total',
    help: 'tools/call refused by the gateway, by tool and code (deny, approval_required, approval_refused, tool_not_approved, tool_changed, task_token_in_arguments, result_too_large).',
    labelNames: ['tool', 'code'] as const,
    registers: [this.registry],
  });

  /** the histogram's series by tool and result: a call's observation skips prom-client's label check and hashing */
  private readonly upstreamSeries = new Map<string, { observe: (seconds: number) => void }>();

  /** One allowed call's upstream time (`tool` from a catalog, `result` one of three: the series stay bounded). */
  observeUpstream(tool: string, result: 'ok' | 'tool_error' | 'failed', seconds: number): void {
    const key = `${result}\n${tool}`;
    let series = this.upstreamSeries.get(key);
    if (!series) {
      if (this.upstreamSeries.size >= 10_000) this.upstreamSeries.clear();
      series = this.upstreamSeconds.labels({ tool, result });
      this.upstreamSeries.set(key, series);
    }
    series.observe(seconds);
  }
}
