/**
 * The environment, read once into a typed, frozen object. Every other module reads this object,
 * never process.env, so that what the distro does is decided in one place and can be printed.
 *
 * `parseConfig` is pure (environment and package info in, config and warnings out) so that it
 * can be unit-tested; `loadConfig` feeds it the real process and prints the warnings.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { setFaults } from './faults';
import { BUILTIN_HEALTH_CHECKS, type BuiltinHealthCheck, HEALTH_DEFAULTS } from './health/types';
import { quote, useStructuredWarnings, type WarningCode, warn } from './warnings';

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

export type DiagLevelName = 'none' | 'error' | 'warn' | 'info' | 'debug' | 'verbose' | 'all';

/** Instrumentations the distro ships, by the short names OpenTelemetry's env variables use. */
export const INSTRUMENTATION_NAMES = [
  'http',
  'undici',
  'express',
  'pg',
  'ioredis',
  'redis',
  'winston',
  'runtime-node',
] as const;
export type InstrumentationName = (typeof INSTRUMENTATION_NAMES)[number];

/** Every seed boundary (0.1 … 10) plus finer ones below 0.1 for fast services. */
export const DEFAULT_HTTP_BUCKETS: readonly number[] = Object.freeze([
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

export const DEFAULTS = Object.freeze({
  metricsHost: '0.0.0.0',
  metricsPort: 9464,
  maxEndpoints: 200,
  metricExportIntervalMs: 60_000,
  metricExportTimeoutMs: 30_000,
  shutdownTimeoutMs: 5_000,
  protocol: 'http/protobuf' as OtlpProtocol,
  sampler: 'parentbased_always_on' as SamplerName,
  propagators: ['tracecontext', 'baggage'] as PropagatorName[],
});

export interface Config {
  readonly sdkDisabled: boolean;
  readonly serviceName: string;
  readonly serviceVersion: string | undefined;
  /** OTEL_RESOURCE_ATTRIBUTES, parsed; service.name/version resolved into the fields above. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  readonly logLevel: DiagLevelName | undefined;
  readonly traces: {
    readonly exporters: readonly TracesExporterName[];
    readonly protocol: OtlpProtocol;
    readonly sampler: SamplerName;
    readonly samplerArg: number;
  };
  readonly metrics: {
    readonly exporters: readonly MetricsExporterName[];
    readonly protocol: OtlpProtocol;
    readonly exportIntervalMs: number;
    readonly exportTimeoutMs: number;
    readonly httpBuckets: readonly number[];
    readonly maxEndpoints: number;
  };
  readonly logs: {
    readonly exporters: readonly LogsExporterName[];
    readonly protocol: OtlpProtocol;
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
  };
  readonly shutdownTimeoutMs: number;
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
   * DATALAB_ESM_HOOKS: register import-in-the-middle's ESM loader hooks. Off saves a loader
   * thread at start-up for CommonJS services whose instrumented libraries are never imported
   * through ESM.
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

export interface ConfigWarning {
  readonly code: WarningCode;
  readonly message: string;
}

export interface PackageInfo {
  readonly name?: string;
  readonly version?: string;
}

type Env = Readonly<Record<string, string | undefined>>;

class Reader {
  readonly warnings: ConfigWarning[] = [];
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    if (value === undefined) return undefined;
    const trimmed = value.trim();
    return trimmed === '' ? undefined : trimmed;
  }

  invalid(name: string, value: string, why: string, fallback: string): void {
    this.warnings.push({
      code: 'DLOTEL_CONFIG_INVALID',
      message: `${name}=${quote(value)} ${why}; using ${fallback}`,
    });
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      this.invalid(
        name,
        value,
        `is not a whole number from ${min} to ${max}`,
        `the default ${fallback}`,
      );
      return fallback;
    }
    return n;
  }

  bool(name: string, fallback: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
    this.invalid(name, value, 'is not true or false', `the default ${fallback}`);
    return fallback;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase();
    if ((allowed as readonly string[]).includes(lower)) return lower as T;
    this.invalid(name, value, `is not one of ${allowed.join(', ')}`, `the default ${fallback}`);
    return fallback;
  }

  /**
   * A comma list of names. Unknown entries are dropped with a warning and the known ones kept;
   * when none is left, the default is used, so one typo does not silently switch a whole signal
   * off. `none` alone means an empty list.
   */
  list<T extends string>(
    name: string,
    allowed: readonly T[],
    fallback: readonly T[],
    extra: { none?: boolean } = {},
  ): T[] {
    const value = this.raw(name);
    if (value === undefined) return [...fallback];
    const items = value
      .split(',')
      .map((part) => part.trim().toLowerCase())
      .filter((item) => item !== '');
    if (extra.none && items.length === 1 && items[0] === 'none') return [];
    const out: T[] = [];
    const unknown: string[] = [];
    for (const item of items) {
      if ((allowed as readonly string[]).includes(item)) {
        if (!out.includes(item as T)) out.push(item as T);
      } else unknown.push(item);
    }
    if (unknown.length === 0) return out;
    const known = `${allowed.join(', ')}${extra.none ? ', or none alone' : ''}`;
    if (out.length === 0) {
      this.invalid(
        name,
        value,
        `names nothing known (${known})`,
        fallback.length === 0 ? 'the default: none' : `the default ${fallback.join(',')}`,
      );
      return [...fallback];
    }
    this.warnings.push({
      code: 'DLOTEL_CONFIG_INVALID',
      message: `${name}=${quote(value)} names ${unknown.map((u) => quote(u)).join(', ')}, not one of ${known}; using ${out.join(',')}`,
    });
    return out;
  }
}

/**
 * OTEL_RESOURCE_ATTRIBUTES: `key1=value1,key2=value2`, values percent-encoded (OTel spec).
 * Returns the pairs that parse; the first bad pair is reported.
 */
export function parseResourceAttributes(value: string): {
  attributes: Record<string, string>;
  error?: string;
} {
  const attributes: Record<string, string> = {};
  let error: string | undefined;
  for (const pair of value.split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const key = eq === -1 ? '' : pair.slice(0, eq).trim();
    if (key === '') {
      error ??= `has an entry without key=value: ${quote(pair)}`;
      continue;
    }
    const rawValue = pair.slice(eq + 1).trim();
    try {
      attributes[key] = decodeURIComponent(rawValue);
    } catch {
      error ??= `has a value that is not valid percent-encoding for key ${quote(key)}`;
    }
  }
  return error === undefined ? { attributes } : { attributes, error };
}

/** "5,1,x" → error; "0.1, 0.5,1" → [0.1, 0.5, 1]. Buckets must be finite and strictly ascending. */
export function parseBuckets(value: string): number[] | undefined {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) return undefined;
  const numbers = parts.map(Number);
  for (let i = 0; i < numbers.length; i++) {
    const n = numbers[i] as number;
    if (!Number.isFinite(n) || n < 0) return undefined;
    if (i > 0 && n <= (numbers[i - 1] as number)) return undefined;
  }
  return numbers;
}

function protocolFor(r: Reader, signal: 'TRACES' | 'METRICS' | 'LOGS', general: OtlpProtocol) {
  const protocols: OtlpProtocol[] = ['http/protobuf', 'http/json', 'grpc'];
  return r.oneOf(`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`, protocols, general);
}

export function parseConfig(
  env: Env,
  pkg: PackageInfo = {},
  cwd: string = process.cwd(),
): {
  config: Config;
  warnings: ConfigWarning[];
} {
  const r = new Reader(env);

  const sdkDisabled = r.bool('OTEL_SDK_DISABLED', false);

  let resourceAttributes: Record<string, string> = {};
  const rawResource = r.raw('OTEL_RESOURCE_ATTRIBUTES');
  if (rawResource !== undefined) {
    const parsed = parseResourceAttributes(rawResource);
    // The OTel spec: on a decoding error the whole value is discarded.
    if (parsed.error === undefined) resourceAttributes = parsed.attributes;
    else {
      r.warnings.push({
        code: 'DLOTEL_CONFIG_INVALID',
        message: `OTEL_RESOURCE_ATTRIBUTES ${parsed.error}; ignoring the whole value`,
      });
    }
  }
  // SPEC §2 order: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, package.json name, fallback.
  const serviceName =
    r.raw('OTEL_SERVICE_NAME') ??
    resourceAttributes['service.name'] ??
    (pkg.name && pkg.name.trim() !== '' ? pkg.name : undefined) ??
    'unknown_service:node';
  const serviceVersion = resourceAttributes['service.version'] ?? pkg.version;
  const { 'service.name': _n, 'service.version': _v, ...otherAttributes } = resourceAttributes;

  const logLevels: DiagLevelName[] = ['none', 'error', 'warn', 'info', 'debug', 'verbose', 'all'];
  // Unset means no diagnostics logger (as in the SDK); a bad value means the same, rather than
  // switching on verbose SDK output nobody asked for.
  const rawLogLevel = r.raw('OTEL_LOG_LEVEL')?.toLowerCase();
  let logLevel: DiagLevelName | undefined;
  if (rawLogLevel !== undefined) {
    if ((logLevels as string[]).includes(rawLogLevel)) logLevel = rawLogLevel as DiagLevelName;
    else
      r.invalid(
        'OTEL_LOG_LEVEL',
        rawLogLevel,
        `is not one of ${logLevels.join(', ')}`,
        'the default: no OpenTelemetry diagnostics',
      );
  }

  const generalProtocol = r.oneOf<OtlpProtocol>(
    'OTEL_EXPORTER_OTLP_PROTOCOL',
    ['http/protobuf', 'http/json', 'grpc'],
    DEFAULTS.protocol,
  );

  // SPEC §4: traces go out over OTLP when an endpoint is configured. With no endpoint and no
  // explicit exporter there is nowhere to send them, and exporting to a guessed localhost:4318
  // would only produce failures.
  const tracesEndpointSet =
    r.raw('OTEL_EXPORTER_OTLP_ENDPOINT') !== undefined ||
    r.raw('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') !== undefined;
  const tracesExporters = r.list<TracesExporterName>(
    'OTEL_TRACES_EXPORTER',
    ['otlp', 'console'],
    tracesEndpointSet ? ['otlp'] : [],
    { none: true },
  );

  const samplers: SamplerName[] = [
    'always_on',
    'always_off',
    'traceidratio',
    'parentbased_always_on',
    'parentbased_always_off',
    'parentbased_traceidratio',
  ];
  const sampler = r.oneOf('OTEL_TRACES_SAMPLER', samplers, DEFAULTS.sampler);
  let samplerArg = 1;
  const rawArg = r.raw('OTEL_TRACES_SAMPLER_ARG');
  if (rawArg !== undefined && sampler.endsWith('traceidratio')) {
    const n = Number(rawArg);
    if (Number.isFinite(n) && n >= 0 && n <= 1) samplerArg = n;
    else
      r.invalid('OTEL_TRACES_SAMPLER_ARG', rawArg, 'is not a ratio from 0 to 1', 'the default 1');
  }

  const metricsExporters = r.list<MetricsExporterName>(
    'OTEL_METRICS_EXPORTER',
    ['prometheus', 'otlp', 'console'],
    ['prometheus'],
    { none: true },
  );
  const exportIntervalMs = r.int(
    'OTEL_METRIC_EXPORT_INTERVAL',
    DEFAULTS.metricExportIntervalMs,
    100,
    86_400_000,
  );
  const exportTimeoutMs = Math.min(
    r.int('OTEL_METRIC_EXPORT_TIMEOUT', DEFAULTS.metricExportTimeoutMs, 100, 86_400_000),
    exportIntervalMs,
  );

  let httpBuckets = DEFAULT_HTTP_BUCKETS;
  const rawBuckets = r.raw('DATALAB_HTTP_BUCKETS');
  if (rawBuckets !== undefined) {
    const parsed = parseBuckets(rawBuckets);
    if (parsed) httpBuckets = Object.freeze(parsed);
    else
      r.invalid(
        'DATALAB_HTTP_BUCKETS',
        rawBuckets,
        'is not a list of ascending non-negative numbers',
        `the default ${DEFAULT_HTTP_BUCKETS.join(',')}`,
      );
  }

  const logsExporters = r.list<LogsExporterName>('OTEL_LOGS_EXPORTER', ['otlp', 'console'], [], {
    none: true,
  });

  const propagators = r.list<PropagatorName>(
    'OTEL_PROPAGATORS',
    ['tracecontext', 'baggage', 'b3', 'b3multi'],
    DEFAULTS.propagators,
    { none: true },
  );

  // Same semantics as auto-instrumentations-node: the enabled list narrows, the disabled list
  // then removes.
  let instrumentations = r.list<InstrumentationName>(
    'OTEL_NODE_ENABLED_INSTRUMENTATIONS',
    INSTRUMENTATION_NAMES,
    INSTRUMENTATION_NAMES,
  );
  const disabled = r.list<InstrumentationName>(
    'OTEL_NODE_DISABLED_INSTRUMENTATIONS',
    INSTRUMENTATION_NAMES,
    [],
  );
  instrumentations = instrumentations.filter((name) => !disabled.includes(name));

  const host = r.raw('DATALAB_METRICS_HOST') ?? DEFAULTS.metricsHost;
  const port = r.int('DATALAB_METRICS_PORT', DEFAULTS.metricsPort, 1, 65_535);
  let token = r.raw('DATALAB_MANAGEMENT_TOKEN');
  if (token !== undefined && !/^[\x21-\x7e]{16,512}$/.test(token)) {
    // Never echo a token, even a bad one: only its length.
    r.warnings.push({
      code: 'DLOTEL_CONFIG_INVALID',
      message: `DATALAB_MANAGEMENT_TOKEN (${token.length} characters) is not 16 to 512 printable ASCII characters without spaces; /metrics and /health stay closed with a random token until it is fixed`,
    });
    // Fail closed: a typo must not open the endpoints it was meant to protect.
    token = randomBytes(32).toString('hex');
  }
  const maxEndpoints = r.int('DATALAB_MAX_ENDPOINTS', DEFAULTS.maxEndpoints, 1, 100_000);
  const shutdownTimeoutMs = r.int(
    'DATALAB_SHUTDOWN_TIMEOUT_MS',
    DEFAULTS.shutdownTimeoutMs,
    0,
    600_000,
  );

  // The embedded trace store: on by default only when nothing else receives the spans.
  const traceFileMode = r.oneOf<'auto' | 'true' | 'false'>(
    'DATALAB_TRACES_FILE',
    ['auto', 'true', 'false'],
    'auto',
  );
  const traceFile = {
    enabled:
      traceFileMode === 'true' ||
      (traceFileMode === 'auto' &&
        r.raw('OTEL_TRACES_EXPORTER') === undefined &&
        !tracesEndpointSet),
    dir: resolve(cwd, r.raw('DATALAB_TRACES_DIR') ?? join('.datalab', 'traces')),
    maxBytes: r.int('DATALAB_TRACES_MAX_MB', 100, 1, 1_000_000) * 1024 * 1024,
  };

  let correlationHeader = 'x-correlation-id';
  const rawHeader = r.raw('DATALAB_CORRELATION_HEADER');
  if (rawHeader !== undefined) {
    if (/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/.test(rawHeader))
      correlationHeader = rawHeader.toLowerCase();
    else
      r.invalid(
        'DATALAB_CORRELATION_HEADER',
        rawHeader,
        'is not an HTTP header name',
        `the default ${correlationHeader}`,
      );
  }
  const logLevelName = r.oneOf<LogLevelName>('DATALAB_LOG_LEVEL', LOG_LEVELS, 'info');
  // The seed's behaviour: human-readable at debug level, JSON otherwise, unless told.
  const logFormat = r.oneOf<'json' | 'pretty'>(
    'DATALAB_LOG_FORMAT',
    ['json', 'pretty'],
    logLevelName === 'debug' || logLevelName === 'silly' ? 'pretty' : 'json',
  );
  const extraRedact = (r.raw('DATALAB_REDACT_KEYS') ?? '')
    .split(',')
    .map((k) => k.trim().toLowerCase())
    .filter((k) => k !== '');
  const logging = {
    level: logLevelName,
    format: logFormat,
    accessLog: r.bool('DATALAB_ACCESS_LOG', false),
    redactKeys: [...new Set([...DEFAULT_REDACT_KEYS, ...extraRedact])],
  };

  let diskPath = r.raw('DATALAB_HEALTH_DISK_PATH') ?? HEALTH_DEFAULTS.diskPath;
  if (!isAbsolute(diskPath)) {
    r.invalid('DATALAB_HEALTH_DISK_PATH', diskPath, 'is not an absolute path', 'the default /');
    diskPath = HEALTH_DEFAULTS.diskPath;
  }
  const health = {
    checks: r.list('DATALAB_HEALTH_CHECKS', BUILTIN_HEALTH_CHECKS, BUILTIN_HEALTH_CHECKS, {
      none: true,
    }),
    timeoutMs: r.int('DATALAB_HEALTH_TIMEOUT_MS', HEALTH_DEFAULTS.timeoutMs, 1, 600_000),
    cacheMs: r.int('DATALAB_HEALTH_CACHE_MS', HEALTH_DEFAULTS.cacheMs, 0, 3_600_000),
    diskPath,
    shutdownDelayMs: r.int(
      'DATALAB_SHUTDOWN_DELAY_MS',
      HEALTH_DEFAULTS.shutdownDelayMs,
      0,
      600_000,
    ),
  };

  const dbRootSpans = r.bool('DATALAB_DB_ROOT_SPANS', false);
  const esmHooks = r.bool('DATALAB_ESM_HOOKS', true);

  const config: Config = deepFreeze({
    sdkDisabled,
    serviceName,
    serviceVersion,
    resourceAttributes: otherAttributes,
    logLevel,
    traces: {
      exporters: tracesExporters,
      protocol: protocolFor(r, 'TRACES', generalProtocol),
      sampler,
      samplerArg,
    },
    metrics: {
      exporters: metricsExporters,
      protocol: protocolFor(r, 'METRICS', generalProtocol),
      exportIntervalMs,
      exportTimeoutMs,
      httpBuckets,
      maxEndpoints,
    },
    logs: {
      exporters: logsExporters,
      protocol: protocolFor(r, 'LOGS', generalProtocol),
    },
    propagators,
    instrumentations,
    management: { host, port, token },
    shutdownTimeoutMs,
    dbRootSpans,
    esmHooks,
    health,
    traceFile,
    correlation: { header: correlationHeader },
    logging,
  });
  return { config, warnings: r.warnings };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * The application's package.json: next to the main script or above it, else above the working
 * directory. Its name is the service-name fallback; its version becomes service.version.
 */
export function findAppPackage(mainScript: string | undefined, cwd: string): PackageInfo {
  const starts = mainScript ? [dirname(resolve(cwd, mainScript)), cwd] : [cwd];
  for (const start of starts) {
    let dir = start;
    for (;;) {
      const file = join(dir, 'package.json');
      if (existsSync(file)) {
        try {
          const pkg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
          return {
            name: typeof pkg.name === 'string' ? pkg.name : undefined,
            version: typeof pkg.version === 'string' ? pkg.version : undefined,
          };
        } catch {
          return {};
        }
      }
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return {};
}

let loaded: Config | undefined;

/** The process's configuration, parsed on first use; warnings are printed that one time. */
export function loadConfig(): Config {
  if (loaded) return loaded;
  const { config, warnings } = parseConfig(
    process.env,
    findAppPackage(process.argv[1], process.cwd()),
    process.cwd(),
  );
  useStructuredWarnings(config.serviceName, config.logging.format);
  // Test-only (see faults.ts); deliberately not part of the documented configuration.
  setFaults((process.env.DATALAB_INTERNAL_FAULTS ?? '').split(',').filter((p) => p !== ''));
  for (const w of warnings) warn(w.code, w.message);
  loaded = config;
  return config;
}
