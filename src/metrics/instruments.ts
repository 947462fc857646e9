/**
 * The counter and histograms the distro records on every request and every database operation,
 * kept outside the SDK's instruments. sdk-metrics hashes an attribute set (sort + JSON) and looks
 * it up in a hash map on every `Histogram.record`, about half the cost of the HTTP metrics per
 * request, and twice per series and collection for an observable (2,400 series at the endpoint
 * cap cost ~20 ms per scrape): see docs/performance.md. The distro already keys its series
 * itself (one object per label set, created once), so a record here is an increment or a bucket
 * search, and data points are built only when a reader collects, through the MetricProducer
 * interface every metric reader accepts: Prometheus and OTLP see ordinary sum and histogram data.
 * No SDK cardinality cap applies either (its default of 2,000 would fold real series into an
 * overflow one and break exact counts); the distro bounds its label values itself (endpoint cap,
 * closed method and operation sets).
 */
import { performance } from 'node:perf_hooks';
import type { Attributes, HrTime } from '@opentelemetry/api';
import { ValueType } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
  type HistogramMetricData,
  InstrumentType,
  type MetricData,
  type MetricProducer,
  type PushMetricExporter,
  type SumMetricData,
} from '@opentelemetry/sdk-metrics';
import { DISTRO_NAME, DISTRO_VERSION } from '../version';

/**
 * OpenMetrics: the label names and values of an exemplar together hold at most 128 code points.
 * trace_id and span_id always fit (63 for W3C IDs); correlation_id is dropped when it would not.
 */
export const EXEMPLAR_LABELS_MAX = 128;
const TRACE_ID_LABEL = 'trace_id';
const SPAN_ID_LABEL = 'span_id';
const CORRELATION_ID_LABEL = 'correlation_id';

/** The latest sampled request of one bucket or counter series, as a scrape shows it. */
export interface Exemplar {
  readonly traceId: string;
  readonly spanId: string;
  /** Only when it differs from the trace ID and fits the label budget. */
  readonly correlationId: string | undefined;
  readonly value: number;
  /** Milliseconds since the epoch. */
  readonly timeMs: number;
}

/**
 * Where a producer's data point carries its exemplars for the Prometheus serializer: a symbol,
 * so that no other reader or exporter sees a field it does not know. A histogram point holds one
 * per bucket (by non-cumulative bucket index, missing where none), a sum point one.
 */
export const EXEMPLARS = Symbol('datalab.otel.exemplars');

export interface ExemplarCarrier {
  [EXEMPLARS]?: Exemplar | readonly (Exemplar | undefined)[];
}

/**
 * The correlation ID an exemplar may carry with these IDs: none when it repeats the trace ID
 * (the default, SPEC §5) or would push the label set past 128 code points.
 */
export function exemplarCorrelationId(
  traceId: string,
  spanId: string,
  correlationId: string | undefined,
): string | undefined {
  if (correlationId === undefined || correlationId === '' || correlationId === traceId) {
    return undefined;
  }
  const budget =
    EXEMPLAR_LABELS_MAX -
    TRACE_ID_LABEL.length -
    traceId.length -
    SPAN_ID_LABEL.length -
    spanId.length -
    CORRELATION_ID_LABEL.length;
  // UTF-16 length bounds the code point count from above: counting is only needed past it.
  if (correlationId.length <= budget) return correlationId;
  return codePoints(correlationId) <= budget ? correlationId : undefined;
}

function codePoints(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/**
 * Exemplar slots, allocated with the series: recording one stores references to strings the
 * span context already holds and two numbers, so a sampled request allocates nothing.
 * A slot with an empty trace ID is empty.
 */
class ExemplarSlots {
  readonly traceIds: string[];
  readonly spanIds: string[];
  readonly correlationIds: (string | undefined)[];
  readonly values: Float64Array;
  /**
   * performance.now() when recorded: it stays an unboxed double where Date.now() allocates a
   * number on every call. An exemplar's time is performance.timeOrigin plus this, the same at
   * every scrape: Prometheus stores an exemplar it has seen again only if its timestamp changed.
   */
  readonly times: Float64Array;
  used = false;

  constructor(size: number) {
    this.traceIds = new Array<string>(size).fill('');
    this.spanIds = new Array<string>(size).fill('');
    this.correlationIds = new Array<string | undefined>(size).fill(undefined);
    this.values = new Float64Array(size);
    this.times = new Float64Array(size);
  }

  set(
    slot: number,
    value: number,
    traceId: string,
    spanId: string,
    correlationId: string | undefined,
  ): void {
    if (traceId === '') return;
    this.traceIds[slot] = traceId;
    this.spanIds[slot] = spanId;
    this.correlationIds[slot] = exemplarCorrelationId(traceId, spanId, correlationId);
    this.values[slot] = value;
    this.times[slot] = performance.now();
    this.used = true;
  }

  /** A copy of one slot for a collection, or undefined when it is empty. */
  get(slot: number): Exemplar | undefined {
    const traceId = this.traceIds[slot];
    if (traceId === undefined || traceId === '') return undefined;
    return {
      traceId,
      spanId: this.spanIds[slot] as string,
      correlationId: this.correlationIds[slot],
      value: this.values[slot] as number,
      timeMs: performance.timeOrigin + (this.times[slot] as number),
    };
  }
}

export class HistogramSeries {
  /** counts[i]: values in (boundaries[i-1], boundaries[i]]; the last one is above every bound. */
  readonly counts: number[];
  count = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;
  readonly startTime: HrTime = hrTime();
  /** The latest sampled request's IDs per bucket (same indexes as counts). */
  private readonly exemplars: ExemplarSlots;

  constructor(
    readonly attributes: Attributes,
    private readonly boundaries: readonly number[],
  ) {
    this.counts = new Array<number>(boundaries.length + 1).fill(0);
    this.exemplars = new ExemplarSlots(boundaries.length + 1);
  }

  record(value: number): void {
    if (Number.isNaN(value)) return;
    const index = this.bucketOf(value);
    (this.counts as number[])[index] = (this.counts[index] as number) + 1;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  /**
   * Makes a sampled request the exemplar of the bucket `value` falls in (replacing the one
   * before). Counts nothing: record() does. An empty trace ID records nothing.
   */
  recordExemplar(
    value: number,
    traceId: string,
    spanId: string,
    correlationId: string | undefined,
  ): void {
    if (Number.isNaN(value)) return;
    this.exemplars.set(this.bucketOf(value), value, traceId, spanId, correlationId);
  }

  /** The exemplars of a collection, by bucket; undefined when none was ever recorded. */
  exemplarsSnapshot(): (Exemplar | undefined)[] | undefined {
    if (!this.exemplars.used) return undefined;
    const snapshot: (Exemplar | undefined)[] = [];
    for (let i = 0; i < this.counts.length; i++) snapshot.push(this.exemplars.get(i));
    return snapshot;
  }

  private bucketOf(value: number): number {
    // The SDK's placement (binary search for the first bound >= value), so buckets match what an
    // SDK histogram with the same bounds would report.
    const bounds = this.boundaries;
    let lo = 0;
    let hi = bounds.length - 1;
    let index = bounds.length;
    while (hi >= lo) {
      const mid = (lo + hi) >>> 1;
      if ((bounds[mid] as number) < value) lo = mid + 1;
      else {
        index = mid;
        hi = mid - 1;
      }
    }
    return index;
  }
}

export interface HistogramOptions {
  readonly name: string;
  readonly description: string;
  readonly unit: string;
  readonly boundaries: readonly number[];
}

/** One histogram family: its series are created once per attribute set by the caller. */
export class DistroHistogram {
  private readonly all: HistogramSeries[] = [];
  readonly boundaries: readonly number[];

  constructor(readonly options: HistogramOptions) {
    this.boundaries = Object.freeze([...options.boundaries]);
  }

  /** A new series; the caller keeps it (by its own key) and records into it. */
  createSeries(attributes: Attributes): HistogramSeries {
    const series = new HistogramSeries(attributes, this.boundaries);
    this.all.push(series);
    return series;
  }

  get series(): readonly HistogramSeries[] {
    return this.all;
  }
}

/** One monotonic counter series. */
export class CounterSeries {
  count = 0;
  readonly startTime: HrTime = hrTime();
  /** The latest sampled increment's IDs. */
  private readonly slot = new ExemplarSlots(1);

  constructor(readonly attributes: Attributes) {}

  /**
   * Makes a sampled increment of `value` the series' exemplar (replacing the one before).
   * Counts nothing: `count` does. An empty trace ID records nothing.
   */
  exemplar(
    value: number,
    traceId: string,
    spanId: string,
    correlationId: string | undefined,
  ): void {
    this.slot.set(0, value, traceId, spanId, correlationId);
  }

  exemplarSnapshot(): Exemplar | undefined {
    return this.slot.used ? this.slot.get(0) : undefined;
  }
}

/** One counter family: its series are created once per attribute set by the caller. */
export class DistroCounter {
  private readonly all: CounterSeries[] = [];

  constructor(readonly options: { readonly name: string; readonly description: string }) {}

  createSeries(attributes: Attributes): CounterSeries {
    const series = new CounterSeries(attributes);
    this.all.push(series);
    return series;
  }

  get series(): readonly CounterSeries[] {
    return this.all;
  }
}

export interface DistroInstruments {
  readonly counters: readonly DistroCounter[];
  readonly histograms: readonly DistroHistogram[];
}

interface Snapshot {
  readonly counts: number[];
  readonly count: number;
  readonly sum: number;
}

/**
 * What one metric reader sees of the distro's instruments. Cumulative by default; delta when the
 * reader's exporter asks for it (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE), each
 * producer then remembering what it last reported.
 */
export class DistroProducer implements MetricProducer {
  private readonly previous = new Map<HistogramSeries, Snapshot>();
  private readonly previousCounts = new Map<CounterSeries, number>();
  private lastCollection: HrTime = hrTime();
  /** Requests counted when this producer last reported (see unreported). */
  private reportedTotal = 0;

  constructor(
    private readonly instruments: DistroInstruments,
    private readonly counterTemporality = AggregationTemporality.CUMULATIVE,
    private readonly histogramTemporality = AggregationTemporality.CUMULATIVE,
  ) {}

  static forExporter(
    instruments: DistroInstruments,
    exporter: Pick<PushMetricExporter, 'selectAggregationTemporality'>,
  ): DistroProducer {
    const select = (type: InstrumentType) =>
      exporter.selectAggregationTemporality?.(type) ?? AggregationTemporality.CUMULATIVE;
    return new DistroProducer(
      instruments,
      select(InstrumentType.COUNTER),
      select(InstrumentType.HISTOGRAM),
    );
  }

  async collect(): Promise<CollectionResult> {
    return this.collectSync();
  }

  /** collect() without the promise: exit-flush.ts runs where no promise settles any more. */
  collectSync(): CollectionResult {
    this.reportedTotal = this.countedTotal();
    const now = hrTime();
    const metrics: MetricData[] = [];
    for (const counter of this.instruments.counters) {
      const data = this.counterData(counter, now);
      if (data.dataPoints.length > 0) metrics.push(data);
    }
    for (const histogram of this.instruments.histograms) {
      const data = this.dataOf(histogram, now);
      if (data.dataPoints.length > 0) metrics.push(data);
    }
    this.lastCollection = now;
    return {
      resourceMetrics: {
        // Readers keep the SDK's resource and take only the scope metrics from producers.
        resource: undefined as never,
        scopeMetrics:
          metrics.length === 0
            ? []
            : [{ scope: { name: DISTRO_NAME, version: DISTRO_VERSION }, metrics }],
      },
      errors: [],
    };
  }

  /** Whether anything was counted since the last report: an exit with nothing new sends none. */
  unreported(): boolean {
    return this.countedTotal() !== this.reportedTotal;
  }

  private countedTotal(): number {
    let total = 0;
    for (const counter of this.instruments.counters) {
      for (const series of counter.series) total += series.count;
    }
    for (const histogram of this.instruments.histograms) {
      for (const series of histogram.series) total += series.count;
    }
    return total;
  }

  private counterData(counter: DistroCounter, now: HrTime): SumMetricData {
    const delta = this.counterTemporality === AggregationTemporality.DELTA;
    const dataPoints: SumMetricData['dataPoints'] = [];
    for (const series of counter.series) {
      const count = series.count;
      if (count === 0) continue;
      if (!delta) {
        const point: SumMetricData['dataPoints'][number] & ExemplarCarrier = {
          attributes: series.attributes,
          startTime: series.startTime,
          endTime: now,
          value: count,
        };
        // Only a cumulative reader (Prometheus) shows exemplars: OTLP export has none.
        const exemplar = series.exemplarSnapshot();
        if (exemplar !== undefined) point[EXEMPLARS] = exemplar;
        dataPoints.push(point);
        continue;
      }
      const before = this.previousCounts.get(series);
      this.previousCounts.set(series, count);
      if (before === count) continue;
      dataPoints.push({
        attributes: series.attributes,
        startTime: before === undefined ? series.startTime : this.lastCollection,
        endTime: now,
        value: count - (before ?? 0),
      });
    }
    return {
      descriptor: {
        name: counter.options.name,
        description: counter.options.description,
        unit: '',
        valueType: ValueType.DOUBLE,
      },
      aggregationTemporality: this.counterTemporality,
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      dataPoints,
    };
  }

  private dataOf(histogram: DistroHistogram, now: HrTime): HistogramMetricData {
    const { name, description, unit } = histogram.options;
    const delta = this.histogramTemporality === AggregationTemporality.DELTA;
    const dataPoints: HistogramMetricData['dataPoints'] = [];
    for (const series of histogram.series) {
      if (series.count === 0) continue;
      let counts = series.counts.slice();
      let count = series.count;
      let sum = series.sum;
      let startTime = series.startTime;
      if (delta) {
        const before = this.previous.get(series);
        this.previous.set(series, { counts, count, sum });
        if (before !== undefined) {
          if (before.count === count) continue;
          counts = counts.map((c, i) => c - (before.counts[i] as number));
          count -= before.count;
          sum -= before.sum;
          startTime = this.lastCollection;
        }
      }
      const point: HistogramMetricData['dataPoints'][number] & ExemplarCarrier = {
        attributes: series.attributes,
        startTime,
        endTime: now,
        value: {
          buckets: { boundaries: histogram.boundaries as number[], counts },
          count,
          sum,
          // A delta's extremes are unknown once earlier values are folded in.
          min: delta ? undefined : series.min,
          max: delta ? undefined : series.max,
        },
      };
      const exemplars = delta ? undefined : series.exemplarsSnapshot();
      if (exemplars !== undefined) point[EXEMPLARS] = exemplars;
      dataPoints.push(point);
    }
    return {
      descriptor: {
        name,
        description,
        unit,
        valueType: ValueType.DOUBLE,
      },
      aggregationTemporality: this.histogramTemporality,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints,
    };
  }
}
