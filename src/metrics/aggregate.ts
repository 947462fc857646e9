/**
 * One `/metrics` for several processes (a `cluster` primary and its workers): their collections
 * merged series by series, so that the scrape of the one port gives the service's totals.
 *
 * - counters and other sums: added;
 * - histograms: added bucket by bucket (count and sum too; min and max kept as such);
 * - gauges: added (requests in flight, memory, connections, heap are amounts), except levels,
 *   where a sum means nothing: the event-loop delay and utilisation take the worst process
 *   (max) and `health_check_status` the worst status (min); `process_start_time_seconds` takes
 *   the latest start (so a worker's restart shows as one) and `nodejs_version_info` stays 1.
 *
 * Series are matched by metric name and label set; `target_info` is the serving process's own.
 * Exemplars (the distro's request counter and latency buckets): the latest of any process.
 */
import type { Attributes } from '@opentelemetry/api';
import {
  DataPointType,
  type MetricData,
  type ResourceMetrics,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';
import type { WireExemplar, WireHistogram, WireMetric } from '../cluster';
import { EXEMPLARS, type Exemplar, type ExemplarCarrier } from './instruments';

type GaugeMerge = 'sum' | 'max' | 'min';

/** How a gauge of several processes becomes one value. */
export function gaugeMerge(name: string): GaugeMerge {
  if (name.startsWith('nodejs_eventloop_')) return 'max';
  if (name === 'health_check_status') return 'min';
  if (name === 'process_start_time_seconds' || name === 'nodejs_version_info') return 'max';
  return 'sum';
}

/** A collection in wire form (plain JSON: what a worker sends over IPC). */
export function encodeMetrics(resourceMetrics: ResourceMetrics): WireMetric[] {
  const out: WireMetric[] = [];
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      const { name, description, unit } = metric.descriptor;
      const points: WireMetric['p'][number][] = [];
      if (metric.dataPointType === DataPointType.HISTOGRAM) {
        for (const p of metric.dataPoints) {
          const h = p.value;
          const histogram: WireHistogram = {
            count: h.count,
            sum: h.sum ?? 0,
            min: h.min ?? null,
            max: h.max ?? null,
            b: h.buckets.boundaries.map((b) => (b === Infinity ? null : b)),
            c: h.buckets.counts,
          };
          const exemplars = (p as ExemplarCarrier)[EXEMPLARS];
          points.push([
            { ...p.attributes },
            Array.isArray(exemplars)
              ? { ...histogram, x: exemplars.map((e: Exemplar | undefined) => toWire(e) ?? null) }
              : histogram,
          ]);
        }
      } else if (
        metric.dataPointType === DataPointType.SUM ||
        metric.dataPointType === DataPointType.GAUGE
      ) {
        for (const p of metric.dataPoints) {
          const exemplar = (p as ExemplarCarrier)[EXEMPLARS];
          const wire = Array.isArray(exemplar)
            ? undefined
            : toWire(exemplar as Exemplar | undefined);
          points.push(
            wire === undefined
              ? [{ ...p.attributes }, p.value]
              : [{ ...p.attributes }, p.value, wire],
          );
        }
      } else continue;
      out.push({
        n: name,
        d: description,
        u: unit,
        t: metric.dataPointType,
        m: metric.dataPointType === DataPointType.SUM && metric.isMonotonic,
        p: points,
      });
    }
  }
  return out;
}

/** A series being merged: its label set, its value, and a counter's latest exemplar. */
type MergedPoint = [Attributes, number | MutableHistogram, WireExemplar | undefined];

interface MergedMetric {
  readonly first: WireMetric;
  readonly points: Map<string, MergedPoint>;
}

interface MutableHistogram {
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
  readonly b: readonly (number | null)[];
  readonly c: number[];
  x?: (WireExemplar | null)[];
}

/**
 * Merges collections and renders them as one ResourceMetrics for the serializer. Label sets are
 * interned (one frozen object per series for the life of the process), so that the serializer's
 * per-series caches work for merged series as for a single process's.
 */
export class MetricsMerger {
  private readonly interned = new Map<string, Attributes>();

  merge(own: ResourceMetrics, others: readonly (readonly WireMetric[])[]): ResourceMetrics {
    const merged = new Map<string, MergedMetric>();
    for (const collection of [encodeMetrics(own), ...others]) {
      for (const metric of collection) this.add(merged, metric);
    }
    const metrics: MetricData[] = [];
    for (const { first, points } of merged.values()) metrics.push(toMetricData(first, points));
    const scope: ScopeMetrics = { scope: { name: '@datalab/otel/cluster' }, metrics };
    return { resource: own.resource, scopeMetrics: [scope] };
  }

  /** Several collections added up into one, still in wire form. */
  sum(collections: readonly (readonly WireMetric[])[]): WireMetric[] {
    const merged = new Map<string, MergedMetric>();
    for (const collection of collections) {
      for (const metric of collection) this.add(merged, metric);
    }
    return [...merged.values()].map(({ first, points }) => ({
      ...first,
      p: [...points.values()].map(([attributes, value, exemplar]) =>
        exemplar !== undefined && typeof value === 'number'
          ? ([{ ...attributes }, value, exemplar] as const)
          : ([{ ...attributes }, value] as const),
      ),
    }));
  }

  private add(merged: Map<string, MergedMetric>, metric: WireMetric): void {
    let target = merged.get(metric.n);
    if (target === undefined) {
      target = { first: metric, points: new Map() };
      merged.set(metric.n, target);
    } else if (target.first.t !== metric.t) return;
    const how = metric.t === DataPointType.GAUGE ? gaugeMerge(metric.n) : 'sum';
    for (const point of metric.p) {
      const [attributes, value] = point;
      const exemplar = (point as readonly unknown[])[2] as WireExemplar | undefined;
      const key = seriesKey(attributes);
      const existing = target.points.get(key);
      if (existing === undefined) {
        target.points.set(key, [
          this.intern(metric.n, key, attributes),
          typeof value === 'number' ? value : copyHistogram(value),
          exemplar,
        ]);
        continue;
      }
      existing[2] = latest(existing[2], exemplar);
      const current = existing[1];
      if (typeof current === 'number' && typeof value === 'number') {
        existing[1] =
          how === 'sum'
            ? current + value
            : how === 'max'
              ? Math.max(current, value)
              : Math.min(current, value);
      } else if (typeof current !== 'number' && typeof value !== 'number') {
        addHistogram(current, value);
      }
    }
  }

  private intern(name: string, key: string, attributes: Record<string, unknown>): Attributes {
    const k = `${name}\u0000${key}`;
    let found = this.interned.get(k);
    if (found === undefined) {
      found = Object.freeze({ ...attributes }) as Attributes;
      this.interned.set(k, found);
    }
    return found;
  }
}

/** Label sets are compared whatever their key order. */
function seriesKey(attributes: Record<string, unknown>): string {
  const keys = Object.keys(attributes).sort();
  let key = '';
  for (const k of keys) key += `${k}\u0001${String(attributes[k])}\u0002`;
  return key;
}

function copyHistogram(h: WireHistogram): MutableHistogram {
  const copy: MutableHistogram = {
    count: h.count,
    sum: h.sum,
    min: h.min,
    max: h.max,
    b: h.b,
    c: [...h.c],
  };
  if (h.x !== undefined) copy.x = [...h.x];
  return copy;
}

function toWire(exemplar: Exemplar | undefined): WireExemplar | undefined {
  if (exemplar === undefined) return undefined;
  const { traceId: t, spanId: s, correlationId: c, value: v, timeMs: ms } = exemplar;
  return c === undefined ? { t, s, v, ms } : { t, s, c, v, ms };
}

function fromWire(wire: WireExemplar | null | undefined): Exemplar | undefined {
  if (wire == null) return undefined;
  return { traceId: wire.t, spanId: wire.s, correlationId: wire.c, value: wire.v, timeMs: wire.ms };
}

/** The later of two exemplars of one series or bucket (several processes record into it). */
function latest<T extends WireExemplar | null | undefined>(a: T, b: T): T {
  if (b == null) return a;
  if (a == null) return b;
  return b.ms > a.ms ? b : a;
}

function addHistogram(into: MutableHistogram, h: WireHistogram): void {
  // Processes of one service share their boundaries (same settings); a process configured
  // differently cannot be added bucket by bucket and is left out rather than misplaced.
  if (!sameBoundaries(into.b, h.b) || into.c.length !== h.c.length) return;
  into.count += h.count;
  into.sum += h.sum;
  for (let i = 0; i < h.c.length; i++) into.c[i] = (into.c[i] as number) + (h.c[i] as number);
  if (h.x !== undefined) {
    if (into.x === undefined) into.x = new Array<WireExemplar | null>(h.c.length).fill(null);
    const x = into.x;
    for (let i = 0; i < h.c.length; i++) x[i] = latest(x[i] ?? null, h.x[i] ?? null);
  }
  if (h.min !== null) into.min = into.min === null ? h.min : Math.min(into.min, h.min);
  if (h.max !== null) into.max = into.max === null ? h.max : Math.max(into.max, h.max);
}

function sameBoundaries(a: readonly (number | null)[], b: readonly (number | null)[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const ZERO_TIME: [number, number] = [0, 0];

function toMetricData(metric: WireMetric, points: Map<string, MergedPoint>): MetricData {
  const descriptor = {
    name: metric.n,
    description: metric.d,
    unit: metric.u,
    // The serializer reads only name, description and unit.
    type: 'COUNTER',
    valueType: 1,
  } as unknown as MetricData['descriptor'];
  const base = { startTime: ZERO_TIME, endTime: ZERO_TIME };
  if (metric.t === DataPointType.HISTOGRAM) {
    return {
      descriptor,
      aggregationTemporality: 1,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: [...points.values()].map(([attributes, value]) => {
        const h = value as MutableHistogram;
        const point: ExemplarCarrier = {};
        if (h.x !== undefined) point[EXEMPLARS] = h.x.map(fromWire);
        return {
          ...point,
          ...base,
          attributes,
          value: {
            count: h.count,
            sum: h.sum,
            min: h.min ?? undefined,
            max: h.max ?? undefined,
            buckets: {
              boundaries: h.b.map((b) => (b === null ? Infinity : b)),
              counts: h.c,
            },
          },
        };
      }),
    } as MetricData;
  }
  const dataPoints = [...points.values()].map(([attributes, value, exemplar]) => {
    const point: ExemplarCarrier = {};
    if (exemplar !== undefined) point[EXEMPLARS] = fromWire(exemplar);
    return { ...point, ...base, attributes, value: value as number };
  });
  if (metric.t === DataPointType.SUM) {
    return {
      descriptor,
      aggregationTemporality: 1,
      dataPointType: DataPointType.SUM,
      isMonotonic: metric.m,
      dataPoints,
    } as MetricData;
  }
  return {
    descriptor,
    aggregationTemporality: 1,
    dataPointType: DataPointType.GAUGE,
    dataPoints,
  } as MetricData;
}
