import assert from 'node:assert/strict';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import {
  DataPointType,
  MeterProvider,
  type MetricData,
  MetricReader,
} from '@opentelemetry/sdk-metrics';
import { RUNTIME_SCOPE, runtimeViews } from '../../src/metrics/process';
import { RuntimeMetricsInstrumentation } from '../../src/metrics/runtime';
import { DISTRO_VERSION } from '../../src/version';

class PullReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** What a series looks like, values aside: they depend on the machine and the moment. */
function shape(metric: MetricData) {
  const points = metric.dataPoints as { attributes: Record<string, unknown>; value: unknown }[];
  return {
    name: metric.descriptor.name,
    description: metric.descriptor.description,
    unit: metric.descriptor.unit,
    type: DataPointType[metric.dataPointType],
    attributes: [...new Set(points.map((p) => JSON.stringify(Object.keys(p.attributes).sort())))],
    labels: [...new Set(points.flatMap((p) => Object.values(p.attributes).map(String)))]
      .filter((v) => v !== 'svc')
      .sort(),
    boundaries:
      metric.dataPointType === DataPointType.HISTOGRAM
        ? (points[0]?.value as { buckets: { boundaries: number[] } } | undefined)?.buckets
            .boundaries
        : undefined,
  };
}

async function collect(instrumentation: Instrumentation) {
  const reader = new PullReader();
  const provider = new MeterProvider({ readers: [reader], views: runtimeViews('svc') });
  instrumentation.setMeterProvider(provider);
  instrumentation.enable();
  return { reader, provider };
}

describe('runtime metrics', () => {
  it("make the series instrumentation-runtime-node made, under the distro's names", async function () {
    this.timeout(10_000);
    const ours = new RuntimeMetricsInstrumentation();
    const upstream = new RuntimeNodeInstrumentation();
    const a = await collect(ours);
    const b = await collect(upstream);
    try {
      // Enough event-loop samples (10 ms apart) and a few garbage collections for every series:
      // at least 300 ms, and until both have seen a collection (observed asynchronously; a busy
      // test process may go a while without one).
      const hasGc = (r: Awaited<ReturnType<typeof a.reader.collect>>) =>
        r.resourceMetrics.scopeMetrics.some((s) =>
          s.metrics.some(
            (m) => m.descriptor.name === 'nodejs_gc_duration_seconds' && m.dataPoints.length > 0,
          ),
        );
      const start = Date.now();
      let keep: unknown[] = [];
      let mine = await a.reader.collect();
      let theirs = await b.reader.collect();
      while (
        Date.now() - start < 300 ||
        (!(hasGc(mine) && hasGc(theirs)) && Date.now() - start < 8000)
      ) {
        for (let i = 0; i < 10_000; i++) keep.push({ i });
        if (keep.length > 200_000) keep = [];
        await new Promise((resolve) => setTimeout(resolve, 5));
        [mine, theirs] = await Promise.all([a.reader.collect(), b.reader.collect()]);
      }
      const series = (r: typeof mine) =>
        r.resourceMetrics.scopeMetrics
          .flatMap((s) => s.metrics)
          .filter((m) => m.dataPoints.length > 0)
          .map(shape);
      const expected = series(theirs);
      assert.deepEqual(expected.map((s) => s.name).sort(), [
        'nodejs_eventloop_delay_max_seconds',
        'nodejs_eventloop_delay_p50_seconds',
        'nodejs_eventloop_delay_p99_seconds',
        'nodejs_eventloop_utilization_ratio',
        'nodejs_gc_duration_seconds',
        'nodejs_heap_used_bytes',
      ]);
      // Same series, same order (the order /metrics writes them in), GC kinds aside: which
      // kinds of collection ran differs from one provider's window to the other's.
      const withoutGcKinds = (list: ReturnType<typeof shape>[]) =>
        list.map((s) => (s.name === 'nodejs_gc_duration_seconds' ? { ...s, labels: [] } : s));
      assert.deepEqual(withoutGcKinds(series(mine)), withoutGcKinds(expected));
      const scopes = mine.resourceMetrics.scopeMetrics.map((s) => s.scope.name);
      assert.ok(scopes.includes('@opentelemetry/instrumentation-runtime-node'));
    } finally {
      ours.disable();
      upstream.disable();
      await Promise.all([a.provider.shutdown(), b.provider.shutdown()]);
    }
  });

  it('register their callbacks once when given the same provider again', async () => {
    const ours = new RuntimeMetricsInstrumentation();
    const provider = new MeterProvider({ views: runtimeViews('svc') });
    // The meter the instrumentation gets (the provider keeps one per scope): count registrations.
    const meter = provider.getMeter(RUNTIME_SCOPE, DISTRO_VERSION);
    let batches = 0;
    const add = meter.addBatchObservableCallback.bind(meter);
    meter.addBatchObservableCallback = (...args) => {
      batches++;
      return add(...args);
    };
    try {
      // As in sdk.ts: the constructor saw the global provider, registerInstrumentations gives
      // that provider again. Two sets of callbacks would each take the event-loop figures.
      ours.setMeterProvider(provider);
      ours.setMeterProvider(provider);
      assert.equal(batches, 1);
    } finally {
      ours.disable();
      await provider.shutdown();
    }
  });
});
