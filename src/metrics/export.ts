/**
 * What telemetry the distro had to drop, so that a backend outage is visible on the dashboards
 * that outlive it: `otel_exporter_dropped_total{service,signal,reason}`.
 */
import type { Context, Meter } from '@opentelemetry/api';
import type {
  BatchSpanProcessor,
  ReadableSpan,
  Span,
  SpanProcessor,
} from '@opentelemetry/sdk-trace';
import { droppedByFailedExports, type Signal } from '../exporters';

/** BatchSpanProcessor's queue, read to know whether it is about to drop a span. */
type QueueInternals = { _finishedSpans?: { length: number }; _maxQueueSize?: unknown };

let droppedQueueFull = 0;

/**
 * A BatchSpanProcessor that counts the spans it drops because its queue is full (the processor
 * itself keeps only a count that it resets, and logs through diag).
 */
export function countingQueueDrops(inner: BatchSpanProcessor): SpanProcessor {
  const q = inner as unknown as QueueInternals;
  return {
    onStart: (span: Span, ctx: Context) => inner.onStart(span, ctx),
    onEnd: (span: ReadableSpan) => {
      const max = q._maxQueueSize;
      if (typeof max === 'number' && (q._finishedSpans?.length ?? 0) >= max) droppedQueueFull++;
      inner.onEnd(span);
    },
    forceFlush: () => inner.forceFlush(),
    shutdown: () => inner.shutdown(),
  };
}

export function createExportMetrics(meter: Meter, service: string): void {
  const attrs = (signal: Signal, reason: string) => Object.freeze({ service, signal, reason });
  const failed = {
    traces: attrs('traces', 'export_failed'),
    metrics: attrs('metrics', 'export_failed'),
    logs: attrs('logs', 'export_failed'),
  };
  const queueFull = attrs('traces', 'queue_full');
  meter
    .createObservableCounter('otel_exporter_dropped_total', {
      description:
        'Telemetry dropped: spans and log records of failed exports, failed metric exports, spans dropped because the export queue was full.',
    })
    .addCallback((result) => {
      const counts = droppedByFailedExports();
      for (const signal of ['traces', 'metrics', 'logs'] as const) {
        result.observe(counts[signal], failed[signal]);
      }
      result.observe(droppedQueueFull, queueFull);
    });
}
