/**
 * The one place where the OpenTelemetry SDK is assembled from the configuration: resource,
 * propagation, tracing, metrics, instrumentations, the HTTP metrics and the management server.
 * Like sdk-node, but importing only what the configuration asks for (sdk-node alone costs
 * ~0.1 s more start-up than the parts used here).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import {
  type MeterProvider as ApiMeterProvider,
  type Context,
  context,
  createNoopMeter,
  DiagConsoleLogger,
  DiagLogLevel,
  diag,
  logs,
  metrics,
  propagation,
  type TextMapPropagator,
  trace,
} from '@opentelemetry/api';
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { defaultResource, type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import type { LoggerProvider } from '@opentelemetry/sdk-logs';
import {
  ConsoleMetricExporter,
  type IMetricReader,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import type { Sampler, SpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { clusterWorkersCheck } from './cluster';
import type { Config, DiagLevelName } from './config';
import { CorrelationPropagator } from './correlation/propagator';
import { CorrelationSpanProcessor } from './correlation/span-processor';
import { ClientRegistry, DbClientsInstrumentation } from './db/clients';
import { type ExitSources, flushAtExit, trackInFlight } from './exit-flush';
import {
  createOtlpLogExporter,
  createOtlpMetricExporter,
  createOtlpTraceExporter,
  guardLogExporter,
  guardMetricExporter,
  guardSpanExporter,
} from './exporters';
import type { HealthChecker } from './health/runner';
import { startHealth } from './health/setup';
import { Http2Instrumentation } from './http2';
import { createInstrumentations, METRICS_SILENCED } from './instrumentations';
import { createAccessLog } from './logging/access-log';
import { ManagementServer } from './management-server';
import { createDbDurations, createDbMetrics } from './metrics/db';
import { countingQueueDrops, createExportMetrics } from './metrics/export';
import { HttpServerMetrics } from './metrics/http';
import { startHttpClientMetrics } from './metrics/http-client';
import { DistroCounter, DistroHistogram, DistroProducer } from './metrics/instruments';
import { createProcessMetrics, hostMetricsViews, runtimeViews } from './metrics/process';
import { createPrometheusEndpoint } from './metrics/prometheus';
import { InboundRequests, useContextStorage } from './request/lifecycle';
import { createRouteSources } from './routes';
import { SpanScrubber } from './span-scrubber';
import { DISTRO_NAME, DISTRO_VERSION } from './version';

export interface Telemetry {
  readonly config: Config;
  readonly management: ManagementServer;
  /** The application's own pg pools and Redis clients, as the distro found them. */
  readonly clients: ClientRegistry;
  /** The checks behind /health, /health/live and /health/ready (and the programmatic API). */
  readonly health: HealthChecker;
  /**
   * From the process's `exit` event (shutdown.ts): ends what is open and exports what is left,
   * synchronously, within `timeoutMs`. Returns a failure to report, if any.
   */
  flushAtExit(timeoutMs: number): string | undefined;
  /** Exports what is buffered (traces, metrics, logs) and keeps running. */
  flush(): Promise<void>;
  /** Flushes and stops everything the distro started; safe to call more than once. */
  shutdown(): Promise<void>;
}

const NOOP_METER_PROVIDER: ApiMeterProvider = { getMeter: () => createNoopMeter() };

export function buildResource(config: Config): Resource {
  const attributes: Record<string, string | number> = {
    ...config.resourceAttributes,
    'service.name': config.serviceName,
    'service.instance.id': config.resourceAttributes['service.instance.id'] ?? randomUUID(),
    'telemetry.distro.name': DISTRO_NAME,
    'telemetry.distro.version': DISTRO_VERSION,
    'process.pid': process.pid,
    'process.runtime.name': 'nodejs',
    'process.runtime.version': process.versions.node,
    'host.name': config.resourceAttributes['host.name'] ?? hostname(),
  };
  if (config.serviceVersion !== undefined) attributes['service.version'] = config.serviceVersion;
  return defaultResource().merge(resourceFromAttributes(attributes));
}

export function buildSampler(config: Config): Sampler {
  const { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler } =
    require('@opentelemetry/sdk-trace') as typeof import('@opentelemetry/sdk-trace');
  const ratio = () => new TraceIdRatioBasedSampler(config.traces.samplerArg);
  switch (config.traces.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function buildPropagator(config: Config): TextMapPropagator {
  const propagators: TextMapPropagator[] = [];
  for (const name of config.propagators) {
    if (name === 'tracecontext') propagators.push(new W3CTraceContextPropagator());
    else if (name === 'b3' || name === 'b3multi') {
      const b3 =
        require('@opentelemetry/propagator-b3') as typeof import('@opentelemetry/propagator-b3');
      propagators.push(
        new b3.B3Propagator({
          injectEncoding:
            name === 'b3' ? b3.B3InjectEncoding.SINGLE_HEADER : b3.B3InjectEncoding.MULTI_HEADER,
        }),
      );
    }
  }
  // Correlation IDs travel whatever OTEL_PROPAGATORS says; W3C baggage, when enabled, is handled
  // by the correlation propagator so that the ID is in the baggage header too.
  const baggage = config.propagators.includes('baggage') ? new W3CBaggagePropagator() : undefined;
  propagators.push(new CorrelationPropagator(config.correlation.header, baggage));
  return new CompositePropagator({ propagators });
}

function buildLoggerProvider(config: Config, resource: Resource): LoggerProvider | undefined {
  if (config.logs.exporters.length === 0) return undefined;
  // Loaded only when logs are exported: most services never pay for the logs SDK.
  const { BatchLogRecordProcessor, ConsoleLogRecordExporter, LoggerProvider } =
    require('@opentelemetry/sdk-logs') as typeof import('@opentelemetry/sdk-logs');
  // The logs SDK 3 reads no OTEL_BLRP_* nor limit variables: the configuration carries them.
  const processors = config.logs.exporters.map(
    (name) =>
      new BatchLogRecordProcessor({
        ...config.logs.batch,
        exporter:
          name === 'otlp'
            ? guardLogExporter('OTLP', createOtlpLogExporter(config.logs.protocol))
            : new ConsoleLogRecordExporter(),
      }),
  );
  const provider = new LoggerProvider({
    resource,
    processors,
    logRecordLimits: config.logs.limits,
  });
  logs.setGlobalLoggerProvider(provider);
  return provider;
}

const DIAG_LEVELS: Record<DiagLevelName, DiagLogLevel> = {
  none: DiagLogLevel.NONE,
  error: DiagLogLevel.ERROR,
  warn: DiagLogLevel.WARN,
  info: DiagLogLevel.INFO,
  debug: DiagLogLevel.DEBUG,
  verbose: DiagLogLevel.VERBOSE,
  all: DiagLogLevel.ALL,
};

/** Whether any span leaves the process: an exporter or the local trace file. */
function tracesGoSomewhere(config: Config): boolean {
  return config.traces.exporters.length > 0 || config.traceFile.enabled;
}

/** Context and propagation: the correlation IDs are built on them, with or without tracing. */
function startContext(config: Config): void {
  const { AsyncLocalStorageContextManager } =
    require('@opentelemetry/context-async-hooks') as typeof import('@opentelemetry/context-async-hooks');
  const manager = new AsyncLocalStorageContextManager().enable();
  // Another agent's context manager may be registered already: then events go through it.
  const ours = context.setGlobalContextManager(manager);
  const als = (manager as unknown as { _asyncLocalStorage?: unknown })._asyncLocalStorage;
  useContextStorage(
    ours && als instanceof AsyncLocalStorage ? (als as AsyncLocalStorage<Context>) : undefined,
  );
  propagation.setGlobalPropagator(buildPropagator(config));
}

function startTracing(
  config: Config,
  resource: Resource,
  exitQueues: ExitSources['spanQueues'][number][],
): TracerProvider {
  const { BatchSpanProcessor, ConsoleSpanExporter, TracerProvider } =
    require('@opentelemetry/sdk-trace') as typeof import('@opentelemetry/sdk-trace');
  const spanProcessors: SpanProcessor[] = [new CorrelationSpanProcessor(), new SpanScrubber()];
  for (const name of config.traces.exporters) {
    const exporter =
      name === 'otlp' ? createOtlpTraceExporter(config.traces.protocol) : new ConsoleSpanExporter();
    const guarded = guardSpanExporter(name === 'otlp' ? 'OTLP' : name, exporter);
    const otlp = name === 'otlp' ? trackInFlight(guarded) : undefined;
    const processor = new BatchSpanProcessor({ ...config.traces.batch, exporter: otlp ?? guarded });
    if (otlp) exitQueues.push({ processor, otlp });
    spanProcessors.push(countingQueueDrops(processor));
  }
  if (config.traceFile.enabled) {
    const { FileSpanExporter } =
      require('./traces/file-exporter') as typeof import('./traces/file-exporter');
    const file = new FileSpanExporter({
      dir: config.traceFile.dir,
      maxTotalBytes: config.traceFile.maxBytes,
      name: config.serviceName,
    });
    const processor = new BatchSpanProcessor({
      ...config.traces.batch,
      exporter: guardSpanExporter('the local trace file', file),
    });
    exitQueues.push({ processor, file });
    spanProcessors.push(countingQueueDrops(processor));
  }
  // The trace SDK 3 reads no OTEL_BSP_*, sampler or span limit variables: the configuration
  // carries them, read once with the rest.
  const tracerProvider = new TracerProvider({
    resource,
    sampler: buildSampler(config),
    spanLimits: config.traces.spanLimits,
    spanProcessors,
  });
  trace.setGlobalTracerProvider(tracerProvider);
  return tracerProvider;
}

export function startTelemetry(config: Config): Telemetry {
  if (config.diagLogLevel !== undefined) {
    diag.setLogger(new DiagConsoleLogger(), { logLevel: DIAG_LEVELS[config.diagLogLevel] });
  }
  const resource = buildResource(config);
  const management = new ManagementServer(
    config.management.host,
    config.management.port,
    config.management.token,
    { idleBindMs: config.management.idleBindMs },
  );
  const isOwnServer = (server: Server | undefined) => server === management.server;

  // Tracing, when spans go somewhere. Without a trace exporter or the local trace file nothing
  // would read a span, so none is made: the API's no-op tracer passes the propagated trace
  // through, and context and propagation (the correlation ids are built on them) are set up
  // directly.
  const tracing = tracesGoSomewhere(config);
  startContext(config);
  const exitQueues: ExitSources['spanQueues'][number][] = [];
  const tracerProvider = tracing ? startTracing(config, resource, exitQueues) : undefined;
  const loggerProvider = buildLoggerProvider(config, resource);

  // Metrics. The per-request counter and histograms live outside the SDK (metrics/instruments.ts);
  // every reader gets a producer for them.
  const httpRequests = new DistroCounter({
    name: 'http_requests_total',
    description: 'Inbound HTTP requests completed.',
  });
  const httpDurations = new DistroHistogram({
    name: 'http_request_duration_seconds',
    description: 'Inbound HTTP request latency, from request start to response close.',
    unit: 's',
    boundaries: config.metrics.httpBuckets,
  });
  const dbDurations = createDbDurations();
  const instruments = { counters: [httpRequests], histograms: [httpDurations, dbDurations] };
  const readers: IMetricReader[] = [];
  let prometheus: ReturnType<typeof createPrometheusEndpoint> | undefined;
  if (config.metrics.exporters.includes('prometheus')) {
    prometheus = createPrometheusEndpoint([new DistroProducer(instruments)]);
    readers.push(prometheus.reader);
  }
  let exitMetrics: DistroProducer | undefined;
  for (const name of config.metrics.exporters) {
    if (name === 'prometheus') continue;
    const exporter =
      name === 'otlp'
        ? guardMetricExporter(
            'OTLP',
            createOtlpMetricExporter(config.metrics.protocol, config.metrics.temporality),
          )
        : new ConsoleMetricExporter();
    const producer = DistroProducer.forExporter(instruments, exporter);
    if (name === 'otlp') exitMetrics = producer;
    readers.push(
      new PeriodicExportingMetricReader({
        exporter,
        exportIntervalMillis: config.metrics.exportIntervalMs,
        exportTimeoutMillis: config.metrics.exportTimeoutMs,
        metricProducers: [producer],
      }),
    );
  }
  const meterProvider = new MeterProvider({
    resource,
    readers,
    views: [
      ...(config.instrumentations.includes('runtime-node') ? runtimeViews(config.serviceName) : []),
      ...(config.instrumentations.includes('host-metrics')
        ? hostMetricsViews(config.serviceName)
        : []),
    ],
  });
  metrics.setGlobalMeterProvider(meterProvider);
  const meter = meterProvider.getMeter(DISTRO_NAME, DISTRO_VERSION);

  const httpMetrics = new HttpServerMetrics(meter, {
    service: config.serviceName,
    requests: httpRequests,
    durations: httpDurations,
    maxEndpoints: config.metrics.maxEndpoints,
    isOwnServer,
    accessLog: config.logging.accessLog ? createAccessLog(config) : undefined,
  });
  const serverSpans = tracing && config.instrumentations.includes('http');
  const inbound = new InboundRequests({
    header: config.correlation.header,
    isOwnServer,
    metrics: httpMetrics,
    tracer: serverSpans ? trace.getTracer(DISTRO_NAME, DISTRO_VERSION) : undefined,
    trackOpen: config.exitFlushTimeoutMs > 0,
  });
  inbound.enable();
  const httpClientMetrics = startHttpClientMetrics(config, instruments);
  createProcessMetrics(meter, config.serviceName);
  createExportMetrics(meter, config.serviceName);
  const clients = new ClientRegistry();
  const dbClients = new DbClientsInstrumentation(
    clients,
    createDbMetrics(meter, config.serviceName, clients, dbDurations),
  );

  // Instrumentations last: from here on, modules the application loads get patched.
  const instrumentations = createInstrumentations(config, { tracing });
  const routeSources = createRouteSources();
  const http2 = new Http2Instrumentation({
    header: config.correlation.header,
    metrics: httpMetrics,
    tracing: serverSpans,
    trackOpen: config.exitFlushTimeoutMs > 0,
    http1: (request, response, scheme) => inbound.begin(request, response, scheme),
  });
  registerInstrumentations({
    instrumentations: [
      ...instrumentations.map((i) => i.instrumentation),
      ...routeSources,
      dbClients,
      http2,
    ],
    tracerProvider,
    meterProvider,
  });
  for (const { name, instrumentation } of instrumentations) {
    if (METRICS_SILENCED.has(name)) instrumentation.setMeterProvider(NOOP_METER_PROVIDER);
  }

  if (prometheus) management.route('/metrics', prometheus.handler);
  const health = startHealth(config, clients, meter, management);
  health.add(clusterWorkersCheck());
  management.start();

  let shutdownPromise: Promise<void> | undefined;
  let stopped = false;
  const abandonOpenRequests = () => [...inbound.abandonOpen(), ...http2.abandonOpen()];
  return {
    config,
    management,
    clients,
    health,
    flushAtExit(timeoutMs) {
      // Once shutdown has begun (beforeExit, a signal with no handler of the application's), it
      // had its own time limit and the exporters are closing.
      if (stopped) return undefined;
      stopped = true;
      return flushAtExit(
        {
          spanQueues: exitQueues,
          metrics: exitMetrics,
          resource,
          protocol: { traces: config.traces.protocol, metrics: config.metrics.protocol },
        },
        abandonOpenRequests,
        timeoutMs,
      );
    },
    async flush() {
      await Promise.allSettled([
        tracerProvider?.forceFlush(),
        meterProvider.forceFlush(),
        loggerProvider?.forceFlush(),
      ]);
    },
    shutdown() {
      stopped = true;
      shutdownPromise ??= (async () => {
        // Instrumentations stay patched: unpatching at exit gains nothing and would disturb
        // other wrappers of the same methods.
        inbound.disable();
        httpClientMetrics?.disable();
        await Promise.allSettled([
          management.close(),
          tracerProvider?.shutdown(),
          meterProvider.shutdown(),
          loggerProvider?.shutdown(),
        ]);
      })();
      return shutdownPromise;
    },
  };
}
