import type { Registry } from 'prom-client';

/**
 * A counter and a histogram for the metrics every decision updates, exposed through a
 * prom-client Registry as prom-client's own are (the same text: series in the order first
 * seen, labels in the order of the first call, cumulative buckets, `+Inf`, `_sum`, `_count`).
 * prom-client validates, sorts and joins the labels of every call (about 2 us per decision
 * in a loop, 10 us under load); here a series is found by its label values joined, and
 * labels are checked only when a series is created.
 */
type Labels = Record<string, string | number>;

interface MetricConfig<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registers: Registry[];
}

abstract class Series<L extends string, S extends { labels: Labels }> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum';
  protected readonly labelNames: readonly L[];
  protected readonly series = new Map<string, S>();

  constructor(config: MetricConfig<L>) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames ?? [];
    for (const r of config.registers) r.registerMetric(this as never);
  }

  protected seriesOf(labels: Partial<Record<L, string | number>> | undefined): S {
    const names = this.labelNames;
    let key = '';
    for (let i = 0; i < names.length; i++) key += `${i === 0 ? '' : '\u0000'}${labels?.[names[i]!] ?? ''}`;
    let s = this.series.get(key);
    if (!s) {
      for (const n of Object.keys(labels ?? {})) {
        if (!names.includes(n as L)) throw new Error(`Added label "${n}" is not included in initial labelset: ${JSON.stringify(names)}`);
      }
      // in the order of the first call's labels, as prom-client keeps them
      const own: Labels = {};
      for (const [n, v] of Object.entries(labels ?? {})) if (v !== undefined) own[n] = v as string | number;
      s = this.create(own);
      this.series.set(key, s);
    }
    return s;
  }

  protected abstract create(labels: Labels): S;
}

export class SeriesCounter<L extends string = string> extends Series<L, { labels: Labels; value: number }> {
  readonly type = 'counter';

  inc(labels?: Partial<Record<L, string | number>>, value = 1): void {
    if (!Number.isFinite(value) || value < 0) throw new TypeError(`a counter is increased by a finite, non-negative number, not ${value}`);
    this.seriesOf(labels).value += value;
  }

  protected create(labels: Labels) {
    return { labels, value: 0 };
  }

  async get() {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...this.series.values()].map((s) => ({ value: s.value, labels: s.labels })) };
  }
}

interface HistogramSeries {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
}

export class SeriesHistogram<L extends string = string> extends Series<L, HistogramSeries> {
  readonly type = 'histogram';
  private readonly buckets: readonly number[];

  constructor(config: MetricConfig<L> & { buckets: readonly number[] }) {
    super(config);
    this.buckets = [...config.buckets].sort((a, b) => a - b);
  }

  observe(labels: Partial<Record<L, string | number>> | number, value?: number): void {
    const v = typeof labels === 'number' ? labels : value!;
    if (!Number.isFinite(v)) throw new TypeError(`Value is not a valid number: ${v}`);
    const s = this.seriesOf(typeof labels === 'number' ? undefined : labels);
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        s.counts[i]!++;
        break;
      }
    }
    s.sum += v;
    s.count++;
  }

  protected create(labels: Labels): HistogramSeries {
    return { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
  }

  /** The registry's text exposition reads this: bucket labels (`le`) apart from the series' own. */
  async getForPromString() {
    const values: { labels: Labels; sharedLabels: Labels; value: number; metricName: string; exemplar: null | undefined }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += s.counts[i]!;
        values.push({ labels: { le: this.buckets[i]! }, sharedLabels: s.labels, value: acc, metricName: bucket, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket, exemplar: null });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum`, exemplar: undefined });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count`, exemplar: undefined });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  async get() {
    const data = await this.getForPromString();
    return { ...data, values: data.values.map(({ labels, sharedLabels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) };
  }
}
