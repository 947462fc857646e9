/**
 * Exporters chosen from the configuration. The OTLP exporters read their own standard
 * variables (endpoint, headers, timeout, compression, certificates), so only the protocol
 * is decided here. Each exporter is wrapped so that a failing backend prints one warning a
 * minute instead of one per export, and never throws into the application.
 */
import type { ExportResult } from '@opentelemetry/core';
import type { LogRecordExporter, ReadableLogRecord } from '@opentelemetry/sdk-logs';
import type { PushMetricExporter, ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { OtlpProtocol } from './config';
import { warnRateLimited } from './warnings';

export function createOtlpTraceExporter(protocol: OtlpProtocol): SpanExporter {
  switch (protocol) {
    case 'grpc': {
      const m =
        require('@opentelemetry/exporter-trace-otlp-grpc') as typeof import('@opentelemetry/exporter-trace-otlp-grpc');
      return new m.OTLPTraceExporter();
    }
    case 'http/json': {
      const m =
        require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
      return new m.OTLPTraceExporter();
    }
    default: {
      const m =
        require('@opentelemetry/exporter-trace-otlp-proto') as typeof import('@opentelemetry/exporter-trace-otlp-proto');
      return new m.OTLPTraceExporter();
    }
  }
}

export function createOtlpMetricExporter(protocol: OtlpProtocol): PushMetricExporter {
  switch (protocol) {
    case 'grpc': {
      const m =
        require('@opentelemetry/exporter-metrics-otlp-grpc') as typeof import('@opentelemetry/exporter-metrics-otlp-grpc');
      return new m.OTLPMetricExporter();
    }
    case 'http/json': {
      const m =
        require('@opentelemetry/exporter-metrics-otlp-http') as typeof import('@opentelemetry/exporter-metrics-otlp-http');
      return new m.OTLPMetricExporter();
    }
    default: {
      const m =
        require('@opentelemetry/exporter-metrics-otlp-proto') as typeof import('@opentelemetry/exporter-metrics-otlp-proto');
      return new m.OTLPMetricExporter();
    }
  }
}

export function createOtlpLogExporter(protocol: OtlpProtocol): LogRecordExporter {
  switch (protocol) {
    case 'grpc': {
      const m =
        require('@opentelemetry/exporter-logs-otlp-grpc') as typeof import('@opentelemetry/exporter-logs-otlp-grpc');
      return new m.OTLPLogExporter();
    }
    case 'http/json': {
      const m =
        require('@opentelemetry/exporter-logs-otlp-http') as typeof import('@opentelemetry/exporter-logs-otlp-http');
      return new m.OTLPLogExporter();
    }
    default: {
      const m =
        require('@opentelemetry/exporter-logs-otlp-proto') as typeof import('@opentelemetry/exporter-logs-otlp-proto');
      return new m.OTLPLogExporter();
    }
  }
}

export type Signal = 'traces' | 'metrics' | 'logs';

/** Items (spans, log records, metric batches) whose export failed, per signal. */
const failedItems: Record<Signal, number> = { traces: 0, metrics: 0, logs: 0 };

export function droppedByFailedExports(): Readonly<Record<Signal, number>> {
  return failedItems;
}

function onResult(
  signal: Signal,
  destination: string,
  items: number,
  done: (result: ExportResult) => void,
) {
  return (result: ExportResult) => {
    if (result.code !== 0 /* ExportResultCode.SUCCESS */) {
      failedItems[signal] += items;
      const reason = result.error?.message ?? 'unknown error';
      warnRateLimited(
        'DLOTEL_EXPORT_FAILED',
        `${signal} ${destination}`,
        `${signal} export to ${destination} failed (${reason}); this batch is dropped, the next is tried (repeats of this warning are silenced for a minute)`,
      );
    }
    done(result);
  };
}

/** Reports failures (rate-limited) and counts what was dropped, without changing the SDK's view. */
export function guardSpanExporter(destination: string, inner: SpanExporter): SpanExporter {
  return {
    export: (spans: ReadableSpan[], done) =>
      inner.export(spans, onResult('traces', destination, spans.length, done)),
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
}

export function guardLogExporter(destination: string, inner: LogRecordExporter): LogRecordExporter {
  return {
    export: (records: ReadableLogRecord[], done) =>
      inner.export(records, onResult('logs', destination, records.length, done)),
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
}

export function guardMetricExporter(
  destination: string,
  inner: PushMetricExporter,
): PushMetricExporter {
  const guarded: PushMetricExporter = {
    export: (metrics: ResourceMetrics, done) =>
      inner.export(metrics, onResult('metrics', destination, 1, done)),
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush(),
  };
  if (inner.selectAggregationTemporality) {
    guarded.selectAggregationTemporality = inner.selectAggregationTemporality.bind(inner);
  }
  if (inner.selectAggregation) guarded.selectAggregation = inner.selectAggregation.bind(inner);
  return guarded;
}
