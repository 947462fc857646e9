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

function onResult(signal: string, done: (result: ExportResult) => void) {
  return (result: ExportResult) => {
    if (result.code !== 0 /* ExportResultCode.SUCCESS */) {
      const reason = result.error?.message ?? 'unknown error';
      warnRateLimited(
        'DLOTEL_EXPORT_FAILED',
        signal,
        `${signal} export failed (${reason}); data of this batch is dropped, retrying with the next`,
      );
    }
    done(result);
  };
}

/** Reports failures (rate-limited) without changing what the SDK sees. */
export function guardSpanExporter(signal: string, inner: SpanExporter): SpanExporter {
  return {
    export: (spans: ReadableSpan[], done) => inner.export(spans, onResult(signal, done)),
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
}

export function guardLogExporter(signal: string, inner: LogRecordExporter): LogRecordExporter {
  return {
    export: (records: ReadableLogRecord[], done) => inner.export(records, onResult(signal, done)),
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
}

export function guardMetricExporter(signal: string, inner: PushMetricExporter): PushMetricExporter {
  const guarded: PushMetricExporter = {
    export: (metrics: ResourceMetrics, done) => inner.export(metrics, onResult(signal, done)),
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush(),
  };
  if (inner.selectAggregationTemporality) {
    guarded.selectAggregationTemporality = inner.selectAggregationTemporality.bind(inner);
  }
  if (inner.selectAggregation) guarded.selectAggregation = inner.selectAggregation.bind(inner);
  return guarded;
}
