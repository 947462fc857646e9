/**
 * The configuration's types and the fixed vocabularies its settings accept. The Config object
 * is what every other module reads; src/config.ts builds it from the settings table.
 */
import type { BuiltinHealthCheck } from '../health/types';

export type MetricsTemporality = 'cumulative' | 'delta' | 'lowmemory';
export type OtlpProtocol = 'http/protobuf' | 'http/json' | 'grpc';
export type TracesExporterName = 'otlp' | 'console';
export type MetricsExporterName = 'prometheus' | 'otlp' | 'console';
export type LogsExporterName = 'otlp' | 'console';
export type SamplerName =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';
export type PropagatorName = 'tracecontext' | 'baggage' | 'b3' | 'b3multi';
export type LogLevelName = 'error' | 'warn' | 'info' | 'http' | 'verbose' | 'debug' | 'silly';
export const LOG_LEVELS: readonly LogLevelName[] = [
  'error',
  'warn',
  'info',
  'http',
  'verbose',
  'debug',
  'silly',
];

/** Always redacted, whatever DATALAB_REDACT_KEYS adds (header names and secret-like fields). */
export const DEFAULT_REDACT_KEYS: readonly string[] = Object.freeze([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'password',
  'passwd',
  'secret',
  'token',
  'api_key',
  'apikey',
]);

/** OpenTelemetry's diagnostic levels (OTEL_LOG_LEVEL), not the application's log levels. */
export type DiagLevelName = 'none' | 'error' | 'warn' | 'info' | 'debug' | 'verbose' | 'all';
export const DIAG_LEVELS: readonly DiagLevelName[] = [
  'none',
  'error',
  'warn',
  'info',
  'debug',
  'verbose',
  'all',
];

/**
 * Instrumentations the distro ships: every one of `@opentelemetry/auto-instrumentations-node`
 * 0.82, by the short names its env variables use (the package name without
 * `@opentelemetry/instrumentation-`). src/instrumentations.ts says what each one loads.
 */
export const INSTRUMENTATION_NAMES = [
  'amqplib',
  'aws-lambda',
  'aws-sdk',
  'bunyan',
  'cassandra-driver',
  'connect',
  'cucumber',
  'dataloader',
  'dns',
  'express',
  'fs',
  'generic-pool',
  'graphql',
  'grpc',
  'hapi',
  'host-metrics',
  'http',
  'ioredis',
  'kafkajs',
  'knex',
  'koa',
  'lru-memoizer',
  'memcached',
  'mongodb',
  'mongoose',
  'mysql',
  'mysql2',
  'nestjs-core',
  'net',
  'openai',
  'oracledb',
  'pg',
  'pino',
  'redis',
  'restify',
  'router',
  'runtime-node',
  'socket.io',
  'tedious',
  'undici',
  'winston',
] as const;
export type InstrumentationName = (typeof INSTRUMENTATION_NAMES)[number];

/**
 * Off unless OTEL_NODE_ENABLED_INSTRUMENTATIONS names them: auto-instrumentations-node's
 * `defaultExcludedInstrumentations` (a span per file system call; host-wide gauges), and `dns`
 * and `net`, which upstream leaves on: a span per lookup and per socket opened adds work to every
 * new connection (a pool's, a keep-alive agent's) and, because only some requests open one,
 * gives traces of the same request different shapes. The client span of the call (HTTP,
 * database) already carries the peer and its duration.
 */
export const UPSTREAM_DEFAULT_OFF_INSTRUMENTATIONS: readonly InstrumentationName[] = [
  'fs',
  'host-metrics',
];
export const DEFAULT_OFF_INSTRUMENTATIONS: readonly InstrumentationName[] = [
  ...UPSTREAM_DEFAULT_OFF_INSTRUMENTATIONS,
  'dns',
  'net',
];

/** Every seed boundary (0.1 … 10) plus finer ones below 0.1 for fast services. */
export const DEFAULT_HTTP_BUCKETS: readonly number[] = Object.freeze([
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

/** What a batching processor (spans or log records) is given; the SDK's option names. */
export interface BatchOptions {
  readonly scheduledDelayMillis: number;
  readonly exportTimeoutMillis: number;
  readonly maxQueueSize: number;
  readonly maxExportBatchSize: number;
}

/** The SDK's SpanLimits; `Infinity` means no limit. */
export interface SpanLimitsConfig {
  readonly attributeCountLimit: number;
  readonly attributeValueLengthLimit: number;
  readonly eventCountLimit: number;
  readonly linkCountLimit: number;
  readonly attributePerEventCountLimit: number;
  readonly attributePerLinkCountLimit: number;
}

/** The SDK's LogRecordLimits; `Infinity` means no limit. */
export interface LogRecordLimitsConfig {
  readonly attributeCountLimit: number;
  readonly attributeValueLengthLimit: number;
}

export interface Config {
  readonly sdkDisabled: boolean;
  readonly serviceName: string;
  readonly serviceVersion: string | undefined;
  /** OTEL_RESOURCE_ATTRIBUTES, parsed; service.name/version resolved into the fields above. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  /** OTEL_LOG_LEVEL: OpenTelemetry's own diagnostics on stderr; unset means none. */
  readonly diagLogLevel: DiagLevelName | undefined;
  readonly traces: {
    readonly exporters: readonly TracesExporterName[];
    readonly protocol: OtlpProtocol;
    readonly sampler: SamplerName;
    readonly samplerArg: number;
    /** OTEL_BSP_*: every BatchSpanProcessor the distro makes (OTLP, console, trace file). */
    readonly batch: BatchOptions;
    readonly spanLimits: SpanLimitsConfig;
  };
  readonly metrics: {
    readonly exporters: readonly MetricsExporterName[];
    readonly protocol: OtlpProtocol;
    readonly exportIntervalMs: number;
    readonly exportTimeoutMs: number;
    readonly httpBuckets: readonly number[];
    readonly maxEndpoints: number;
    /** DATALAB_HTTP_CLIENT_METRICS: the outbound HTTP metrics (metrics/http-client.ts). */
    readonly httpClient: boolean;
    readonly maxPeers: number;
    /** OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, for the distro's own instruments. */
    readonly temporality: MetricsTemporality;
  };
  readonly logs: {
    readonly exporters: readonly LogsExporterName[];
    readonly protocol: OtlpProtocol;
    /** OTEL_BLRP_*: the BatchLogRecordProcessor of each logs exporter. */
    readonly batch: BatchOptions;
    readonly limits: LogRecordLimitsConfig;
  };
  readonly propagators: readonly PropagatorName[];
  readonly instrumentations: readonly InstrumentationName[];
  readonly management: {
    readonly host: string;
    readonly port: number;
    /**
     * DATALAB_MANAGEMENT_TOKEN: when set, /metrics and /health require
     * `Authorization: Bearer <token>`; the probes /health/live and /health/ready stay open.
     */
    readonly token: string | undefined;
    /** DATALAB_MANAGEMENT_IDLE_BIND_MS: when a process that listens on nothing binds. */
    readonly idleBindMs: number;
  };
  readonly shutdownTimeoutMs: number;
  /** DATALAB_EXIT_FLUSH_TIMEOUT_MS: the last export on process.exit() or a crash; 0 skips it. */
  readonly exitFlushTimeoutMs: number;
  readonly traceFile: {
    /** Write spans to local OTLP JSON files (the embedded default without an OTLP endpoint). */
    readonly enabled: boolean;
    readonly dir: string;
    readonly maxBytes: number;
  };
  readonly correlation: {
    /** Lower-case header name carrying the correlation ID, in and out. */
    readonly header: string;
  };
  readonly logging: {
    readonly level: LogLevelName;
    readonly format: 'json' | 'pretty';
    /** One JSON line per completed request. */
    readonly accessLog: boolean;
    /** Lower-case field names whose values are redacted in what the distro logs. */
    readonly redactKeys: readonly string[];
  };
  /** Trace database calls made outside any traced operation (timers, start-up) as root spans. */
  readonly dbRootSpans: boolean;
  /**
   * DATALAB_ESM_HOOKS: register import-in-the-middle's ESM hooks. Off is for CommonJS services
   * whose instrumented libraries are never imported through ESM (it saves a loader thread on the
   * Node.js versions that still need one).
   */
  readonly esmHooks: boolean;
  readonly health: {
    /** DATALAB_HEALTH_CHECKS: the built-in checks that may run. */
    readonly checks: readonly BuiltinHealthCheck[];
    /** Default per-check timeout. */
    readonly timeoutMs: number;
    /** How long one run's results answer every probe. */
    readonly cacheMs: number;
    /** The filesystem the disk_space check measures. */
    readonly diskPath: string;
    /** On SIGTERM/SIGINT: readiness 503, then this long before flushing (load balancers drain). */
    readonly shutdownDelayMs: number;
  };
}

export interface PackageInfo {
  readonly name?: string;
  readonly version?: string;
}
