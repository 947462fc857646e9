/**
 * Exporters chosen from the configuration. The OTLP exporters read their own standard
 * variables (endpoint, headers, timeout, compression, certificates), so only the protocol
 * is decided here. Each exporter is wrapped so that a failing backend prints one warning a
 * minute instead of one per export, and never throws into the application.
 */
import type { ExportResult } from '@opentelemetry/core';
import type { LogRecordExporter, ReadableLogRecord } from '@opentelemetry/sdk-logs';
import {
  type AggregationOption,
  AggregationTemporality,
  AggregationType,
  InstrumentType,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import type { MetricsTemporality, OtlpProtocol } from './config';
import { type OtelEnv, otelEnvAtStart } from './start-env';
import { warnRateLimited } from './warnings';

const TRACE_PACKAGES: Record<OtlpProtocol, string> = {
  grpc: '@opentelemetry/exporter-trace-otlp-grpc',
  'http/json': '@opentelemetry/exporter-trace-otlp-http',
  'http/protobuf': '@opentelemetry/exporter-trace-otlp-proto',
};

const METRIC_PACKAGES: Record<OtlpProtocol, string> = {
  grpc: '@opentelemetry/exporter-metrics-otlp-grpc',
  'http/json': '@opentelemetry/exporter-metrics-otlp-http',
  'http/protobuf': '@opentelemetry/exporter-metrics-otlp-proto',
};

const LOG_PACKAGES: Record<OtlpProtocol, string> = {
  grpc: '@opentelemetry/exporter-logs-otlp-grpc',
  'http/json': '@opentelemetry/exporter-logs-otlp-http',
  'http/protobuf': '@opentelemetry/exporter-logs-otlp-proto',
};

/** What the span and log processors and the metric reader call on an exporter of batches B. */
interface BatchExporter<B> {
  export(batch: B, done: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
  forceFlush?(): Promise<void>;
}

function otelEnv(): OtelEnv {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('OTEL_') && value !== undefined) out[key] = value;
  }
  return out;
}

function sameEnv(a: OtelEnv, b: OtelEnv): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

/**
 * Runs `build` with the OTEL_* variables the configuration was read from (start-env.ts): an
 * exporter built late must see the configuration the rest of the distro was built from, not one
 * the application changed since (dotenv and the like), nor the one PM2 replaces after the
 * preload ran.
 */
function withOtelEnv<T>(snapshot: OtelEnv, build: () => T): T {
  const current = otelEnv();
  if (sameEnv(snapshot, current)) return build();
  const env = process.env;
  const assign = (from: OtelEnv, to: OtelEnv) => {
    for (const key of Object.keys(from)) if (!(key in to)) delete env[key];
    Object.assign(env, to);
  };
  assign(current, snapshot);
  try {
    return build();
  } finally {
    assign(snapshot, current);
  }
}

/**
 * An OTLP exporter package, with the transport, transformer and protobuf code under it, costs
 * tens of milliseconds to load: it is loaded at the first export (a batch is full, the batch
 * delay has passed, or a flush), off the application's start-up. The package is still resolved
 * now, so a missing one fails the start as it always did.
 */
function deferredExporter<B>(
  packageName: string,
  create: () => BatchExporter<B>,
  env: OtelEnv = otelEnvAtStart(),
): Required<BatchExporter<B>> {
  require.resolve(packageName);
  let inner: BatchExporter<B> | undefined;
  let failure: Error | undefined;
  let shutDown = false;
  const load = (): BatchExporter<B> | undefined => {
    if (inner === undefined && failure === undefined) {
      try {
        inner = withOtelEnv(env, create);
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err));
      }
    }
    return inner;
  };
  return {
    export(batch, done) {
      const exporter = shutDown ? inner : load();
      if (exporter === undefined) {
        done({
          code: 1 /* ExportResultCode.FAILED */,
          error: failure ?? new Error('the exporter is shut down'),
        });
        return;
      }
      exporter.export(batch, done);
    },
    shutdown() {
      shutDown = true;
      return inner?.shutdown() ?? Promise.resolve();
    },
    forceFlush: () => inner?.forceFlush?.() ?? Promise.resolve(),
  };
}

export function createOtlpTraceExporter(protocol: OtlpProtocol): SpanExporter {
  return deferredExporter<ReadableSpan[]>(TRACE_PACKAGES[protocol], () => {
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
  });
}

const DELTA_TEMPORALITY: ReadonlySet<InstrumentType> = new Set([
  InstrumentType.COUNTER,
  InstrumentType.OBSERVABLE_COUNTER,
  InstrumentType.GAUGE,
  InstrumentType.HISTOGRAM,
  InstrumentType.OBSERVABLE_GAUGE,
]);

const LOW_MEMORY_DELTA: ReadonlySet<InstrumentType> = new Set([
  InstrumentType.COUNTER,
  InstrumentType.HISTOGRAM,
]);

/**
 * The periodic reader asks its exporter for temporalities when it is created, long before the
 * first export loads the exporter: the same choice every OTLP metric exporter makes
 * (exporter-metrics-otlp-http's OTLPMetricExporterBase, 0.301.x), from the configuration, which
 * read and checked the variable once.
 */
function otlpTemporality(
  preference: MetricsTemporality,
): (type: InstrumentType) => AggregationTemporality {
  const deltaFor = (types: ReadonlySet<InstrumentType>) => (type: InstrumentType) =>
    types.has(type) ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE;
  if (preference === 'delta') return deltaFor(DELTA_TEMPORALITY);
  if (preference === 'lowmemory') return deltaFor(LOW_MEMORY_DELTA);
  return () => AggregationTemporality.CUMULATIVE;
}

const DEFAULT_AGGREGATION: AggregationOption = Object.freeze({ type: AggregationType.DEFAULT });

export function createOtlpMetricExporter(
  protocol: OtlpProtocol,
  temporality: MetricsTemporality,
): PushMetricExporter {
  const env = otelEnvAtStart();
  const exporter = deferredExporter<ResourceMetrics>(
    METRIC_PACKAGES[protocol],
    () => {
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
    },
    env,
  );
  return {
    ...exporter,
    selectAggregationTemporality: otlpTemporality(temporality),
    selectAggregation: () => DEFAULT_AGGREGATION,
  };
}

export function createOtlpLogExporter(protocol: OtlpProtocol): LogRecordExporter {
  return deferredExporter<ReadableLogRecord[]>(LOG_PACKAGES[protocol], () => {
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
  });
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
