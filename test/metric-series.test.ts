import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { SeriesCounter, SeriesHistogram } from '../src/service/metric-series.js';

/**
 * The decision path's counters and histograms (src/service/metric-series.ts) must expose
 * exactly what prom-client's own would for the same calls: the same text and JSON, values
 * on and past bucket bounds, label values that need escaping, series in the order first
 * seen; and refuse what prom-client refuses (a label not declared, a value not finite).
 */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

function both() {
  const ours = new Registry();
  const theirs = new Registry();
  return {
    ours,
    theirs,
    counter: [
      new SeriesCounter({ name: 'x_total', help: 'a counter', labelNames: ['result', 'reason'] as const, registers: [ours] }),
      new Counter({ name: 'x_total', help: 'a counter', labelNames: ['result', 'reason'] as const, registers: [theirs] }),
    ] as const,
    histogram: [
      new SeriesHistogram({ name: 'x_seconds', help: 'a histogram', labelNames: ['method', 'route'] as const, buckets: BUCKETS, registers: [ours] }),
      new Histogram({ name: 'x_seconds', help: 'a histogram', labelNames: ['method', 'route'] as const, buckets: BUCKETS, registers: [theirs] }),
    ] as const,
    plain: [
      new SeriesHistogram({ name: 'x_batch', help: 'no labels', buckets: [1, 2, 4, 8], registers: [ours] }),
      new Histogram({ name: 'x_batch', help: 'no labels', buckets: [1, 2, 4, 8], registers: [theirs] }),
    ] as const,
  };
}

describe('metric series: the same exposition as prom-client', () => {
  it('text and JSON match after the same calls', async () => {
    const m = both();
    for (const [c, h, p] of [[m.counter[0], m.histogram[0], m.plain[0]], [m.counter[1], m.histogram[1], m.plain[1]]] as const) {
      c.inc({ result: 'allow', reason: 'none' });
      c.inc({ result: 'deny', reason: 'scope_denied' });
      c.inc({ result: 'allow', reason: 'none' });
      c.inc({ reason: 'odd "quoted"\nvalue\\', result: 'deny' }, 3);
      for (const v of [0, 0.0005, 0.00051, 0.001, 0.3, 2.5, 2.6, 1000, 0.0001]) h.observe({ method: 'POST', route: '/v1/authorize' }, v);
      h.observe({ route: '/v1/tasks/{id}', method: 'GET' }, 0.02);
      h.observe({ method: 'GET' }, 0.02);
      for (const v of [1, 1, 3, 9, 0.5, 8]) p.observe(v);
    }
    assert.equal(await m.ours.metrics(), await m.theirs.metrics());
    assert.deepEqual(await m.ours.getMetricsAsJSON(), await m.theirs.getMetricsAsJSON());
  });

  it('refuses a label that was not declared and a value that is not a finite number, as prom-client does', () => {
    const m = both();
    for (const i of [0, 1] as const) {
      assert.throws(() => m.counter[i].inc({ result: 'allow', other: 'x' } as never), Error);
      assert.throws(() => m.histogram[i].observe({ method: 'GET' }, Number.NaN), TypeError);
      assert.throws(() => m.histogram[i].observe({ method: 'GET' }, Number.POSITIVE_INFINITY), TypeError);
    }
  });
});
