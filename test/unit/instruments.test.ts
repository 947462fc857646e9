import assert from 'node:assert/strict';
import {
  AggregationTemporality,
  DataPointType,
  type Histogram as HistogramPoint,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { DistroCounter, DistroHistogram, DistroProducer } from '../../src/metrics/instruments';

const BOUNDS = [0.005, 0.01, 0.1, 1];
// On, between and beyond the bounds, a zero, a NaN (ignored by both), duplicates.
const VALUES = [0, 0.005, 0.0051, 0.01, 0.05, 0.1, 0.1000001, 1, 1.5, 99, Number.NaN, 0.01, 0.005];

function pointsOf(
  rm: ResourceMetrics,
  name: string,
): { attributes: unknown; value: HistogramPoint }[] {
  for (const scope of rm.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== name) continue;
      assert.equal(metric.dataPointType, DataPointType.HISTOGRAM);
      return metric.dataPoints.map((p) => ({
        attributes: p.attributes,
        value: p.value as HistogramPoint,
      }));
    }
  }
  return [];
}

describe('distro instruments (recorded outside the SDK, exported through a producer)', () => {
  it('gives the same buckets, count, sum, min and max as an SDK histogram with the same bounds', async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const ours = new DistroHistogram({
      name: 'ours',
      description: 'd',
      unit: 's',
      boundaries: BOUNDS,
    });
    const reader = new PeriodicExportingMetricReader({
      exporter,
      exportIntervalMillis: 60_000,
      metricProducers: [new DistroProducer({ counters: [], histograms: [ours] })],
    });
    const provider = new MeterProvider({ readers: [reader] });
    const sdk = provider.getMeter('t').createHistogram('sdk', {
      advice: { explicitBucketBoundaries: BOUNDS },
    });
    const attributes = Object.freeze({ method: 'GET', endpoint: '/x' });
    const series = ours.createSeries(attributes);
    for (const v of VALUES) {
      sdk.record(v, attributes);
      series.record(v);
    }
    const { resourceMetrics } = await reader.collect();
    const [expected] = pointsOf(resourceMetrics, 'sdk');
    const [actual] = pointsOf(resourceMetrics, 'ours');
    assert.ok(expected && actual);
    assert.deepEqual(actual.attributes, attributes);
    assert.deepEqual(actual.value.buckets, expected.value.buckets);
    assert.equal(actual.value.count, expected.value.count);
    assert.equal(actual.value.sum, expected.value.sum);
    assert.equal(actual.value.min, expected.value.min);
    assert.equal(actual.value.max, expected.value.max);
    assert.deepEqual(actual.value.buckets.counts, [3, 3, 2, 2, 2]);
    await provider.shutdown();
  });

  it('reports nothing for a series never recorded, and cumulative counts by default', async () => {
    const h = new DistroHistogram({ name: 'h', description: 'd', unit: 's', boundaries: BOUNDS });
    const producer = new DistroProducer({ counters: [], histograms: [h] });
    const empty = h.createSeries({ a: '1' });
    assert.equal(empty.count, 0);
    assert.deepEqual((await producer.collect()).resourceMetrics.scopeMetrics, []);
    const s = h.createSeries({ a: '2' });
    s.record(0.05);
    s.record(2);
    let [point] = pointsOf((await producer.collect()).resourceMetrics, 'h');
    assert.equal(point?.value.count, 2);
    s.record(0.001);
    [point] = pointsOf((await producer.collect()).resourceMetrics, 'h');
    assert.equal(point?.value.count, 3, 'cumulative');
    assert.deepEqual(point?.value.buckets.counts, [1, 0, 1, 0, 1]);
  });

  it('reports deltas when the exporter prefers them for histograms', async () => {
    const h = new DistroHistogram({ name: 'h', description: 'd', unit: 's', boundaries: BOUNDS });
    const producer = DistroProducer.forExporter(
      { counters: [], histograms: [h] },
      { selectAggregationTemporality: () => AggregationTemporality.DELTA },
    );
    const s = h.createSeries({ a: '1' });
    s.record(0.05);
    s.record(0.05);
    let [point] = pointsOf((await producer.collect()).resourceMetrics, 'h');
    assert.equal(point?.value.count, 2);
    s.record(5);
    [point] = pointsOf((await producer.collect()).resourceMetrics, 'h');
    assert.equal(point?.value.count, 1, 'only what came since the last collection');
    assert.equal(point?.value.sum, 5);
    assert.deepEqual(point?.value.buckets.counts, [0, 0, 0, 0, 1]);
    assert.deepEqual(
      pointsOf((await producer.collect()).resourceMetrics, 'h'),
      [],
      'no change, no point',
    );
  });

  it('a counter gives the same data points as an SDK counter, cumulative, then delta on request', async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const requests = new DistroCounter({ name: 'requests_total', description: 'd' });
    const reader = new PeriodicExportingMetricReader({
      exporter,
      exportIntervalMillis: 60_000,
      metricProducers: [new DistroProducer({ counters: [requests], histograms: [] })],
    });
    const provider = new MeterProvider({ readers: [reader] });
    const sdk = provider.getMeter('t').createCounter('sdk_total');
    const a = Object.freeze({ status: '200' });
    const b = Object.freeze({ status: '500' });
    const sa = requests.createSeries(a);
    const sb = requests.createSeries(b);
    requests.createSeries(Object.freeze({ status: '404' })); // never counted: no point
    for (let i = 0; i < 7; i++) {
      sdk.add(1, a);
      sa.count++;
    }
    sdk.add(1, b);
    sb.count++;
    const { resourceMetrics } = await reader.collect();
    const sums = (name: string) =>
      resourceMetrics.scopeMetrics
        .flatMap((sm) => sm.metrics)
        .filter((m) => m.descriptor.name === name)
        .map((m) => {
          assert.equal(m.dataPointType, DataPointType.SUM);
          assert.equal((m as { isMonotonic?: boolean }).isMonotonic, true);
          return m.dataPoints.map((p) => [p.attributes, p.value]);
        });
    assert.deepEqual(sums('requests_total'), sums('sdk_total'));
    assert.deepEqual(sums('requests_total'), [
      [
        [a, 7],
        [b, 1],
      ],
    ]);
    await provider.shutdown();

    const delta = DistroProducer.forExporter(
      { counters: [requests], histograms: [] },
      { selectAggregationTemporality: () => AggregationTemporality.DELTA },
    );
    const values = async () =>
      (await delta.collect()).resourceMetrics.scopeMetrics
        .flatMap((sm) => sm.metrics)
        .flatMap((m) => m.dataPoints.map((p) => p.value));
    assert.deepEqual(await values(), [7, 1]);
    sa.count += 3;
    assert.deepEqual(await values(), [3], 'only the series that moved, by how much');
    assert.deepEqual(await values(), []);
  });
});
