/**
 * Process metrics: `memory_usage_bytes` (SPEC §3, resident set size), and the Node.js runtime
 * health series, taken from OpenTelemetry's runtime instrumentation and renamed by view to
 * Prometheus conventions with the `service` label.
 */
import type { Attributes, Meter } from '@opentelemetry/api';
import { AggregationType, type ViewOptions } from '@opentelemetry/sdk-metrics';

export function createProcessMetrics(meter: Meter, service: string): void {
  const attributes: Attributes = Object.freeze({ service });
  meter
    .createObservableGauge('memory_usage_bytes', {
      description: 'Resident set size of the process.',
      unit: 'By',
    })
    // memoryUsage.rss() reads one number; memoryUsage() would walk the V8 heap as well.
    .addCallback((result) => result.observe(process.memoryUsage.rss(), attributes));
}

const RUNTIME_SCOPE = '@opentelemetry/instrumentation-runtime-node';

/** runtime-node instrument → Prometheus name, and the attribute renamed to a label. */
export const RUNTIME_METRICS: readonly {
  instrument: string;
  name: string;
  attribute?: [from: string, to: string];
}[] = [
  { instrument: 'nodejs.eventloop.delay.p50', name: 'nodejs_eventloop_delay_p50_seconds' },
  { instrument: 'nodejs.eventloop.delay.p99', name: 'nodejs_eventloop_delay_p99_seconds' },
  { instrument: 'nodejs.eventloop.delay.max', name: 'nodejs_eventloop_delay_max_seconds' },
  { instrument: 'nodejs.eventloop.utilization', name: 'nodejs_eventloop_utilization_ratio' },
  {
    instrument: 'v8js.memory.heap.used',
    name: 'nodejs_heap_used_bytes',
    attribute: ['v8js.heap.space.name', 'space'],
  },
  {
    instrument: 'v8js.gc.duration',
    name: 'nodejs_gc_duration_seconds',
    attribute: ['v8js.gc.type', 'gc_type'],
  },
];

/** Views: the selected runtime instruments renamed, every other runtime instrument dropped. */
export function runtimeViews(service: string): ViewOptions[] {
  const views: ViewOptions[] = RUNTIME_METRICS.map(({ instrument, name, attribute }) => ({
    meterName: RUNTIME_SCOPE,
    instrumentName: instrument,
    name,
    attributesProcessors: [
      {
        process: (incoming: Attributes): Attributes => {
          const out: Attributes = { service };
          if (attribute && incoming[attribute[0]] !== undefined) {
            out[attribute[1]] = incoming[attribute[0]];
          }
          return out;
        },
      },
    ],
  }));
  // Every other runtime instrument: a matching view replaces the default stream, and a dropped
  // stream exports nothing, while the renamed instruments above keep their own stream.
  views.push({
    meterName: RUNTIME_SCOPE,
    instrumentName: '*',
    aggregation: { type: AggregationType.DROP },
  });
  return views;
}
