import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolStats } from '../store/store.js';
import { stageSpan } from '../core/tracing.js';

/**
 * The service's Prometheus metrics (prom-client, a registry of its own: two Writ
 * instances in one process, as in tests, never share counters). Names follow the
 * Prometheus conventions (`_total` counters, `_seconds` durations, base units).
 *
 * Labels never carry ids, tokens or arguments: only values from small fixed sets
 * (results, stages, reason codes, HTTP methods, route patterns, status codes), so a
 * caller cannot grow the series count or read anything private from a scrape. A reason
 * code that is not a plain snake_case word is counted as `other`.
 */
export const DECISION_STAGES = ['authenticate', 'cedar', 'sign', 'commit', 'total'] as const;
export type DecisionStage = (typeof DECISION_STAGES)[number];

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export function labelValue(v: string | undefined): string {
  return v !== undefined && /^[a-z][a-z0-9_]{0,63}$/.test(v) ? v : 'other';
}

export class WritMetrics {
  readonly registry = new Registry();
  readonly decisions = new Counter({
    name: 'writ_decisions_total',
    help: 'Decisions made, by result (allow, deny, approval_required) and first reason code (none for a plain allow).',
    labelNames: ['result', 'reason'] as const,
    registers: [this.registry],
  });
  readonly stageSeconds = new Histogram({
    name: 'writ_decision_stage_duration_seconds',
    help: 'Wall-clock time of the stages of POST /v1/authorize: authenticate, cedar, sign (an allow\'s action token), commit (an allow\'s write) and total.',
    labelNames: ['stage'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'writ_group_commit_batch_size',
    help: 'Decisions written per group commit (one transaction).',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });
  readonly revocations = new Counter({
    name: 'writ_revocations_total',
    help: 'Tasks revoked by an operator (descendants ended with them not counted).',
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'writ_store_errors_total',
    help: 'Requests that failed because the store was unavailable or failed (503 store_unavailable, 500 store errors).',
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: 'writ_http_requests_total',
    help: 'HTTP requests by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpSeconds = new Histogram({
    name: 'writ_http_request_duration_seconds',
    help: 'HTTP request latency by method and route pattern.',
    labelNames: ['method', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /**
   * Gauges read at scrape time from the store (exact across instances): approvals waiting
   * for review and break-glass sessions in force, counted up to 10,000.
   */
  constructor(read?: { pendingApprovals: () => Promise<number>; activeBreakGlass: () => Promise<number>; pool?: () => PoolStats }) {
    const metrics = this;
    // the PostgreSQL pool of this instance, read at scrape time (SQLite has none: no series)
    const pool = read?.pool;
    if (pool) {
      const stat = (name: string, help: string, key: keyof PoolStats) =>
        new Gauge({ name, help, registers: [this.registry], collect() { this.set(pool()[key]); } });
      stat('writ_store_pool_connections', 'PostgreSQL connections open in this instance\'s pool (idle or in use).', 'total');
      stat('writ_store_pool_idle_connections', 'PostgreSQL connections open and idle in the pool.', 'idle');
      stat('writ_store_pool_waiting_requests', 'Queries waiting for a pool connection (every connection is in use).', 'waiting');
      stat('writ_store_pool_max_connections', 'The most connections the pool opens.', 'max');
    }
    new Gauge({
      name: 'writ_approvals_pending',
      help: 'Approval requests waiting for review (counted up to 10000).',
      registers: [this.registry],
      async collect() {
        if (read) this.set(await read.pendingApprovals().catch(() => { metrics.storeErrors.inc(); return NaN; }));
      },
    });
    new Gauge({
      name: 'writ_break_glass_active',
      help: 'Break-glass sessions in force (counted up to 10000).',
      registers: [this.registry],
      async collect() {
        if (read) this.set(await read.activeBreakGlass().catch(() => { metrics.storeErrors.inc(); return NaN; }));
      },
    });
  }

  recordDecision(result: string, reasonCode: string | undefined): void {
    this.decisions.inc({ result: labelValue(result), reason: reasonCode === undefined ? 'none' : labelValue(reasonCode) });
  }

  /** One HTTP request: `method` and `route` from fixed sets (a known method or `other`, a route template). */
  observeHttp(method: string, route: string, status: number, seconds: number): void {
    this.httpRequests.inc({ method, route, status: String(status) });
    this.httpSeconds.observe({ method, route }, seconds);
  }

  /**
   * Seconds since `startMs` (a `performance.now()` reading) into the stage's histogram;
   * with tracing on, the same interval as a child span of the decision (src/core/tracing.ts).
   */
  observeStage(stage: DecisionStage, startMs: number): void {
    this.stageSeconds.observe({ stage }, (performance.now() - startMs) / 1000);
    stageSpan(stage, startMs);
  }
}
