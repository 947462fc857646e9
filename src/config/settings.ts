/**
 * The settings table: every environment variable the distro knows, one row each (name,
 * default, reader, one line of documentation), in reading order. A row may use the value of an
 * earlier one (a default that depends on another variable). The OpenTelemetry SDK 3 trace and
 * logs SDKs read no environment variables, so the batch processor, sampler and limit variables
 * are rows here like any other; the OTLP exporters still read theirs, which are rows too so
 * that they are checked, documented and shown.
 */
import { randomBytes } from 'node:crypto';
import { isAbsolute, join, resolve } from 'node:path';
import { BUILTIN_HEALTH_CHECKS, HEALTH_DEFAULTS } from '../health/types';
import { parseBuckets, parseResourceAttributes, type Reader } from './reader';
import { bool, type Get, int, list, oneOf, type Setting, setting, text } from './setting';
import {
  DEFAULT_HTTP_BUCKETS,
  DEFAULT_OFF_INSTRUMENTATIONS,
  DEFAULT_REDACT_KEYS,
  DIAG_LEVELS,
  type DiagLevelName,
  INSTRUMENTATION_NAMES,
  type InstrumentationName,
  LOG_LEVELS,
  type LogLevelName,
  type LogsExporterName,
  type MetricsExporterName,
  type OtlpProtocol,
  type PropagatorName,
  type SamplerName,
  type TracesExporterName,
} from './types';

const PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'http/json', 'grpc'];
const SAMPLERS: readonly SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];
const DAY_MS = 86_400_000;
const MAX_QUEUE = 1_000_000;
/** Limits are counts and lengths: anything a 32-bit int holds is accepted. */
const MAX_LIMIT = 2_147_483_647;
const ms = (min: number) => [min, DAY_MS] as const;

// Rows are read in the order of SETTINGS, at the end; warnings come out in the same order.

export const sdkDisabled = bool(
  'OTEL_SDK_DISABLED',
  false,
  'true turns the distro off entirely: no hooks, no management server.',
);

export const resourceAttributes = setting(
  'OTEL_RESOURCE_ATTRIBUTES',
  'none',
  'key=value,… resource attributes (percent-encoded values).',
  (r): Record<string, string> => {
    const raw = r.raw('OTEL_RESOURCE_ATTRIBUTES');
    if (raw === undefined) return {};
    const parsed = parseResourceAttributes(raw);
    // The OTel spec: on a decoding error the whole value is discarded.
    if (parsed.error === undefined) return parsed.attributes;
    r.warn(`OTEL_RESOURCE_ATTRIBUTES ${parsed.error}; ignoring the whole value`);
    return {};
  },
);

export const serviceName = text(
  'OTEL_SERVICE_NAME',
  'service.name in OTEL_RESOURCE_ATTRIBUTES, else the package.json name, else unknown_service:node',
  'The service name (service.name, and the service label of every metric).',
);

export const diagLogLevel = setting(
  'OTEL_LOG_LEVEL',
  'unset',
  "OpenTelemetry's own diagnostics on stderr: none, error, warn, info, debug, verbose, all.",
  (r): DiagLevelName | undefined => {
    // Unset means no diagnostics logger (as in the SDK); a bad value means the same, rather than
    // switching on verbose SDK output nobody asked for.
    const raw = r.raw('OTEL_LOG_LEVEL')?.toLowerCase();
    if (raw === undefined) return undefined;
    if ((DIAG_LEVELS as readonly string[]).includes(raw)) return raw as DiagLevelName;
    r.invalid(
      'OTEL_LOG_LEVEL',
      raw,
      `is not one of ${DIAG_LEVELS.join(', ')}`,
      'the default: no OpenTelemetry diagnostics',
    );
    return undefined;
  },
);

export const otlpProtocol = oneOf(
  'OTEL_EXPORTER_OTLP_PROTOCOL',
  PROTOCOLS,
  'http/protobuf',
  'OTLP transport of every signal: http/protobuf, http/json or grpc.',
);
const perSignalProtocol = (env: string, signal: string) =>
  oneOf(env, PROTOCOLS, (get) => get(otlpProtocol), `OTLP transport of ${signal}.`, {
    defaultText: 'OTEL_EXPORTER_OTLP_PROTOCOL',
  });
export const tracesProtocol = perSignalProtocol('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'traces');
export const metricsProtocol = perSignalProtocol('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', 'metrics');
export const logsProtocol = perSignalProtocol('OTEL_EXPORTER_OTLP_LOGS_PROTOCOL', 'logs');

export const otlpEndpoint = text(
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'unset',
  'Base URL of the OTLP receiver (e.g. http://collector:4318); setting it switches trace export on.',
  { shown: 'url' },
);
export const tracesEndpoint = text(
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces',
  'Full URL of the traces receiver; setting it switches trace export on.',
  { shown: 'url' },
);
export const metricsEndpoint = text(
  'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
  'OTEL_EXPORTER_OTLP_ENDPOINT/v1/metrics',
  'Full URL of the metrics receiver (with OTEL_METRICS_EXPORTER=otlp).',
  { shown: 'url', readBy: 'exporter' },
);
export const logsEndpoint = text(
  'OTEL_EXPORTER_OTLP_LOGS_ENDPOINT',
  'OTEL_EXPORTER_OTLP_ENDPOINT/v1/logs',
  'Full URL of the logs receiver (with OTEL_LOGS_EXPORTER=otlp).',
  { shown: 'url', readBy: 'exporter' },
);

/**
 * Read by the OTLP exporters themselves (otlp-exporter-base and otlp-grpc-exporter-base 0.301):
 * the general variable and one per signal, the per-signal one winning. The distro checks the
 * values it can check the way the exporters parse them, so that a bad one is reported.
 */
const SIGNALS = ['TRACES', 'METRICS', 'LOGS'] as const;
function exporterFamily(
  suffix: string,
  defaultText: string,
  doc: string,
  check?: (r: Reader, env: string, fallback: string) => void,
  shown: Setting['shown'] = 'plain',
): Setting<string | undefined>[] {
  const general = `OTEL_EXPORTER_OTLP_${suffix}`;
  const make = (env: string, rowDefault: string, rowDoc: string, fallback: string) =>
    setting(
      env,
      rowDefault,
      rowDoc,
      (r) => {
        check?.(r, env, fallback);
        return r.raw(env);
      },
      { readBy: 'exporter', shown },
    );
  return [
    make(general, defaultText, doc, `the default ${defaultText}`),
    ...SIGNALS.map((signal) =>
      make(
        `OTEL_EXPORTER_OTLP_${signal}_${suffix}`,
        general,
        `${doc} For ${signal.toLowerCase()}.`,
        `${general} (default ${defaultText})`,
      ),
    ),
  ];
}

const checkTimeout = (r: Reader, env: string, fallback: string) => {
  const raw = r.raw(env);
  if (raw === undefined) return;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    r.invalid(env, raw, 'is not a number of milliseconds above 0', fallback);
};
const checkCompression = (r: Reader, env: string, fallback: string) => {
  const raw = r.raw(env);
  // The exporters compare exactly: `GZIP` is not gzip to them.
  if (raw !== undefined && raw !== 'gzip' && raw !== 'none')
    r.invalid(env, raw, 'is not gzip or none', fallback);
};
const checkBoolean = (r: Reader, env: string, fallback: string) => {
  const raw = r.raw(env);
  if (raw !== undefined && !/^(true|false)$/i.test(raw))
    r.invalid(env, raw, 'is not true or false', fallback);
};

const exporterSettings: readonly Setting[] = [
  ...exporterFamily(
    'HEADERS',
    'none',
    'key=value,… headers sent with every OTLP export (percent-encoded values).',
    undefined,
    'headers',
  ),
  ...exporterFamily(
    'TIMEOUT',
    '10000',
    'Milliseconds one OTLP export request may take.',
    checkTimeout,
  ),
  ...exporterFamily('COMPRESSION', 'none', 'gzip or none.', checkCompression),
  ...exporterFamily('CERTIFICATE', 'none', 'PEM file of the CA certificates to trust (TLS).'),
  ...exporterFamily(
    'CLIENT_CERTIFICATE',
    'none',
    'PEM file of the client certificate chain (mutual TLS).',
  ),
  ...exporterFamily('CLIENT_KEY', 'none', 'PEM file of the client private key (mutual TLS).'),
  ...exporterFamily(
    'INSECURE',
    'false',
    'grpc only: true sends without TLS to an endpoint given without a scheme.',
    checkBoolean,
  ),
];

export const temporality = oneOf(
  'OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE',
  ['cumulative', 'delta', 'lowmemory'] as const,
  'cumulative',
  'Temporality of OTLP metrics: cumulative, delta or lowmemory.',
);

// SPEC §4: traces go out over OTLP when an endpoint is configured. With no endpoint and no
// explicit exporter there is nowhere to send them, and exporting to a guessed localhost:4318
// would only produce failures.
const tracesEndpointSet = (get: Get) =>
  get(otlpEndpoint) !== undefined || get(tracesEndpoint) !== undefined;
export const tracesExporters = list<TracesExporterName>(
  'OTEL_TRACES_EXPORTER',
  ['otlp', 'console'],
  (get) => (tracesEndpointSet(get) ? ['otlp'] : []),
  'Where spans go: otlp, console, none; comma-separated.',
  { none: true, defaultText: 'otlp when an OTLP endpoint is set, else none' },
);

export const sampler = oneOf(
  'OTEL_TRACES_SAMPLER',
  SAMPLERS,
  'parentbased_always_on',
  `${SAMPLERS.join(', ')}. Metrics stay exact whatever the sampler.`,
);
export const samplerArg = setting(
  'OTEL_TRACES_SAMPLER_ARG',
  '1',
  'The ratio (0-1) for the traceidratio samplers.',
  (r, get) => {
    const raw = r.raw('OTEL_TRACES_SAMPLER_ARG');
    if (raw === undefined || !get(sampler).endsWith('traceidratio')) return 1;
    const n = Number(raw);
    if (Number.isFinite(n) && n >= 0 && n <= 1) return n;
    r.invalid('OTEL_TRACES_SAMPLER_ARG', raw, 'is not a ratio from 0 to 1', 'the default 1');
    return 1;
  },
);

/** OTEL_BSP_* or OTEL_BLRP_*: the SDK 2 defaults, which SDK 3 keeps as its constructor defaults. */
function batchSettings(prefix: 'OTEL_BSP' | 'OTEL_BLRP', what: string, delayMs: number) {
  const delay = int(
    `${prefix}_SCHEDULE_DELAY`,
    delayMs,
    ms(0),
    `Milliseconds between two exports of buffered ${what}.`,
  );
  const timeout = int(
    `${prefix}_EXPORT_TIMEOUT`,
    30_000,
    ms(1),
    `Milliseconds one export of ${what} may take before it is abandoned.`,
  );
  const queue = int(
    `${prefix}_MAX_QUEUE_SIZE`,
    2048,
    [1, MAX_QUEUE],
    `Most ${what} buffered; past it new ones are dropped (and counted).`,
  );
  const batchEnv = `${prefix}_MAX_EXPORT_BATCH_SIZE`;
  const batch = setting(
    batchEnv,
    '512',
    `Most ${what} in one export (at most the queue size).`,
    (r, get) => {
      const warned = r.warnings.length;
      const n = r.int(batchEnv, 512, 1, MAX_QUEUE);
      const max = get(queue);
      if (n <= max) return n;
      // The SDK would clamp it too, with a diagnostic nobody sees: say it once, here (unless the
      // value was already reported as unusable).
      if (r.raw(batchEnv) !== undefined && r.warnings.length === warned)
        r.invalid(
          batchEnv,
          String(n),
          `is more than ${prefix}_MAX_QUEUE_SIZE (${max})`,
          `${max}, the queue size`,
        );
      return max;
    },
  );
  return { delay, timeout, queue, batch };
}

export const bsp = batchSettings('OTEL_BSP', 'spans', 5000);

export const attributeCountLimit = int(
  'OTEL_ATTRIBUTE_COUNT_LIMIT',
  128,
  [0, MAX_LIMIT],
  'Most attributes per span and per log record, unless a specific limit is set.',
);
export const attributeValueLengthLimit = int(
  'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT',
  Number.POSITIVE_INFINITY,
  [0, MAX_LIMIT],
  'Longest string attribute value (longer ones are cut), unless a specific limit is set.',
  { defaultText: 'no limit' },
);
export const spanAttributeCountLimit = int(
  'OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT',
  (get) => get(attributeCountLimit),
  [0, MAX_LIMIT],
  'Most attributes per span.',
  { defaultText: 'OTEL_ATTRIBUTE_COUNT_LIMIT' },
);
export const spanAttributeValueLengthLimit = int(
  'OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT',
  (get) => get(attributeValueLengthLimit),
  [0, MAX_LIMIT],
  'Longest string attribute value on spans, their events and links.',
  { defaultText: 'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT' },
);
export const spanEventCountLimit = int(
  'OTEL_SPAN_EVENT_COUNT_LIMIT',
  128,
  [0, MAX_LIMIT],
  'Most events per span (exceptions recorded included).',
);
export const spanLinkCountLimit = int(
  'OTEL_SPAN_LINK_COUNT_LIMIT',
  128,
  [0, MAX_LIMIT],
  'Most links per span.',
);
export const eventAttributeCountLimit = int(
  'OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT',
  128,
  [0, MAX_LIMIT],
  'Most attributes per span event.',
);
export const linkAttributeCountLimit = int(
  'OTEL_SPAN_ATTRIBUTE_PER_LINK_COUNT_LIMIT',
  128,
  [0, MAX_LIMIT],
  'Most attributes per span link.',
);

export const metricsExporters = list<MetricsExporterName>(
  'OTEL_METRICS_EXPORTER',
  ['prometheus', 'otlp', 'console'],
  ['prometheus'],
  'prometheus (served on /metrics), otlp (pushed), console, none; comma-separated.',
  { none: true },
);
export const metricExportInterval = int(
  'OTEL_METRIC_EXPORT_INTERVAL',
  60_000,
  [100, DAY_MS],
  'Milliseconds between OTLP (and console) metric pushes.',
);
export const metricExportTimeout = setting(
  'OTEL_METRIC_EXPORT_TIMEOUT',
  '30000',
  'Milliseconds one metric push may take (at most the interval).',
  (r, get) =>
    Math.min(r.int('OTEL_METRIC_EXPORT_TIMEOUT', 30_000, 100, DAY_MS), get(metricExportInterval)),
);

export const logsExporters = list<LogsExporterName>(
  'OTEL_LOGS_EXPORTER',
  ['otlp', 'console'],
  [],
  'Where winston and pino log records also go: otlp, console, none.',
  { none: true },
);
export const blrp = batchSettings('OTEL_BLRP', 'log records', 1000);
export const logRecordAttributeCountLimit = int(
  'OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT',
  (get) => get(attributeCountLimit),
  [0, MAX_LIMIT],
  'Most attributes per exported log record.',
  { defaultText: 'OTEL_ATTRIBUTE_COUNT_LIMIT' },
);
export const logRecordAttributeValueLengthLimit = int(
  'OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT',
  (get) => get(attributeValueLengthLimit),
  [0, MAX_LIMIT],
  'Longest string attribute value on exported log records.',
  { defaultText: 'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT' },
);

export const propagators = list<PropagatorName>(
  'OTEL_PROPAGATORS',
  ['tracecontext', 'baggage', 'b3', 'b3multi'],
  ['tracecontext', 'baggage'],
  'Context propagation formats: tracecontext, baggage, b3, b3multi, none.',
  { none: true },
);

// Same semantics as auto-instrumentations-node: set, the enabled list replaces the default set
// (and may name the default-off ones); the disabled list then removes.
const DEFAULT_INSTRUMENTATIONS = INSTRUMENTATION_NAMES.filter(
  (name) => !DEFAULT_OFF_INSTRUMENTATIONS.includes(name),
);
export const enabledInstrumentations = setting(
  'OTEL_NODE_ENABLED_INSTRUMENTATIONS',
  `all but ${DEFAULT_OFF_INSTRUMENTATIONS.join(', ')}`,
  'Instrumentations to load, by short name (comma-separated; see docs/configuration.md#instrumentations); replaces the default set.',
  (r): InstrumentationName[] =>
    r.instrumentations('OTEL_NODE_ENABLED_INSTRUMENTATIONS', INSTRUMENTATION_NAMES) ?? [
      ...DEFAULT_INSTRUMENTATIONS,
    ],
);
export const disabledInstrumentations = setting(
  'OTEL_NODE_DISABLED_INSTRUMENTATIONS',
  'none',
  'Instrumentations to remove from the enabled set, by short name.',
  (r): InstrumentationName[] =>
    r.instrumentations('OTEL_NODE_DISABLED_INSTRUMENTATIONS', INSTRUMENTATION_NAMES) ?? [],
);

export const metricsHost = setting(
  'DATALAB_METRICS_HOST',
  '0.0.0.0',
  'Interface of the management server (/metrics, /health).',
  (r) => r.raw('DATALAB_METRICS_HOST') ?? '0.0.0.0',
);
export const metricsPort = int(
  'DATALAB_METRICS_PORT',
  9464,
  [1, 65_535],
  'Port of the management server.',
);
export const managementToken = setting(
  'DATALAB_MANAGEMENT_TOKEN',
  'unset',
  'Bearer token /metrics and /health require (the probes stay open).',
  (r) => {
    const token = r.raw('DATALAB_MANAGEMENT_TOKEN');
    if (token === undefined || /^[\x21-\x7e]{16,512}$/.test(token)) return token;
    // Never echo a token, even a bad one: only its length.
    r.warn(
      `DATALAB_MANAGEMENT_TOKEN (${token.length} characters) is not 16 to 512 printable ASCII characters without spaces; /metrics and /health stay closed with a random token until it is fixed`,
    );
    // Fail closed: a typo must not open the endpoints it was meant to protect.
    return randomBytes(32).toString('hex');
  },
  { shown: 'secret' },
);
export const managementIdleBind = int(
  'DATALAB_MANAGEMENT_IDLE_BIND_MS',
  5_000,
  [0, DAY_MS],
  'A process that listens on no port binds the management server this long after start (0: at start).',
);
export const httpBuckets = setting(
  'DATALAB_HTTP_BUCKETS',
  DEFAULT_HTTP_BUCKETS.join(','),
  'Bucket boundaries (seconds) of http_request_duration_seconds, ascending.',
  (r): readonly number[] => {
    const raw = r.raw('DATALAB_HTTP_BUCKETS');
    if (raw === undefined) return DEFAULT_HTTP_BUCKETS;
    const parsed = parseBuckets(raw);
    if (parsed) return Object.freeze(parsed);
    r.invalid(
      'DATALAB_HTTP_BUCKETS',
      raw,
      'is not a list of ascending non-negative numbers',
      `the default ${DEFAULT_HTTP_BUCKETS.join(',')}`,
    );
    return DEFAULT_HTTP_BUCKETS;
  },
);
export const maxEndpoints = int(
  'DATALAB_MAX_ENDPOINTS',
  200,
  [1, 100_000],
  'Cap on distinct endpoint label values per process; more count as __overflow__.',
);
export const httpClientMetrics = bool(
  'DATALAB_HTTP_CLIENT_METRICS',
  true,
  'false turns off the outbound HTTP metrics (http_client_requests_total, ...).',
);
export const maxPeers = int(
  'DATALAB_MAX_PEERS',
  100,
  [1, 100_000],
  'Cap on distinct peer label values of outbound HTTP calls per process; more count as __overflow__.',
);
export const shutdownTimeout = int(
  'DATALAB_SHUTDOWN_TIMEOUT_MS',
  5_000,
  [0, 600_000],
  'On SIGTERM/SIGINT, how long the distro may spend flushing telemetry.',
);
export const exitFlushTimeout = int(
  'DATALAB_EXIT_FLUSH_TIMEOUT_MS',
  2_000,
  [0, 60_000],
  'On process.exit() or a crash, how long the exit may wait for the last export; 0 skips it.',
);
export const dbRootSpans = bool(
  'DATALAB_DB_ROOT_SPANS',
  false,
  'true also traces database calls made outside any traced operation, as root spans.',
);
export const esmHooks = bool(
  'DATALAB_ESM_HOOKS',
  true,
  "false skips import-in-the-middle's ESM hooks (CommonJS services only).",
);

export const traceFileEnabled = setting(
  'DATALAB_TRACES_FILE',
  'auto',
  'Local trace files: auto (when spans go nowhere else), true, false.',
  (r, get) => {
    const mode = r.oneOf<'auto' | 'true' | 'false'>(
      'DATALAB_TRACES_FILE',
      ['auto', 'true', 'false'],
      'auto',
    );
    // The embedded trace store: on by default only when nothing else receives the spans. An
    // OTEL_TRACES_EXPORTER naming nothing known counts as unset, as it does for the exporters.
    const chosen = (r.raw('OTEL_TRACES_EXPORTER') ?? '')
      .split(',')
      .some((name) => ['otlp', 'console', 'none'].includes(name.trim().toLowerCase()));
    return mode === 'true' || (mode === 'auto' && !chosen && !tracesEndpointSet(get));
  },
);
export const traceFileDir = setting(
  'DATALAB_TRACES_DIR',
  './.datalab/traces',
  'Directory of the local trace files (relative to the working directory).',
  (r) => resolve(r.cwd, r.raw('DATALAB_TRACES_DIR') ?? join('.datalab', 'traces')),
);
export const traceFileMaxMb = int(
  'DATALAB_TRACES_MAX_MB',
  100,
  [1, 1_000_000],
  'Cap on the total size of the local trace files, in MiB.',
);

export const healthChecks = list(
  'DATALAB_HEALTH_CHECKS',
  BUILTIN_HEALTH_CHECKS,
  BUILTIN_HEALTH_CHECKS,
  'Built-in health checks that may run, or none.',
  { none: true },
);
export const healthTimeout = int(
  'DATALAB_HEALTH_TIMEOUT_MS',
  HEALTH_DEFAULTS.timeoutMs,
  [1, 600_000],
  'Timeout of each health check.',
);
export const healthCache = int(
  'DATALAB_HEALTH_CACHE_MS',
  HEALTH_DEFAULTS.cacheMs,
  [0, 3_600_000],
  'How long one run of the checks answers every probe; 0 runs them per request.',
);
export const healthDiskPath = setting(
  'DATALAB_HEALTH_DISK_PATH',
  HEALTH_DEFAULTS.diskPath,
  'Absolute path whose filesystem the disk_space check measures.',
  (r) => {
    const raw = r.raw('DATALAB_HEALTH_DISK_PATH');
    if (raw === undefined || isAbsolute(raw)) return raw ?? HEALTH_DEFAULTS.diskPath;
    r.invalid('DATALAB_HEALTH_DISK_PATH', raw, 'is not an absolute path', 'the default /');
    return HEALTH_DEFAULTS.diskPath;
  },
);
export const shutdownDelay = int(
  'DATALAB_SHUTDOWN_DELAY_MS',
  HEALTH_DEFAULTS.shutdownDelayMs,
  [0, 600_000],
  'On SIGTERM/SIGINT, readiness 503 at once, then this long before flushing.',
);

export const correlationHeader = setting(
  'DATALAB_CORRELATION_HEADER',
  'x-correlation-id',
  'Header carrying the correlation ID in and out.',
  (r) => {
    const raw = r.raw('DATALAB_CORRELATION_HEADER');
    if (raw === undefined) return 'x-correlation-id';
    if (/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/.test(raw)) return raw.toLowerCase();
    r.invalid(
      'DATALAB_CORRELATION_HEADER',
      raw,
      'is not an HTTP header name',
      'the default x-correlation-id',
    );
    return 'x-correlation-id';
  },
);
export const logLevel = oneOf<LogLevelName>(
  'DATALAB_LOG_LEVEL',
  LOG_LEVELS,
  'info',
  `Level of createLogger() loggers: ${LOG_LEVELS.join(', ')}.`,
);
export const logFormat = oneOf<'json' | 'pretty'>(
  'DATALAB_LOG_FORMAT',
  ['json', 'pretty'],
  // The seed's behaviour: human-readable at debug level, JSON otherwise, unless told.
  (get) => (['debug', 'silly'].includes(get(logLevel)) ? 'pretty' : 'json'),
  'json or pretty, for createLogger(), the access log and the distro warnings.',
  { defaultText: 'json, or pretty when the level is debug/silly' },
);
export const redactKeys = setting(
  'DATALAB_REDACT_KEYS',
  'none',
  'Field names redacted in what the distro logs and in pino records, besides the built-in ones; comma-separated.',
  (r): string[] => {
    const extra = (r.raw('DATALAB_REDACT_KEYS') ?? '')
      .split(',')
      .map((k) => k.trim().toLowerCase())
      .filter((k) => k !== '');
    return [...new Set([...DEFAULT_REDACT_KEYS, ...extra])];
  },
);
export const accessLog = bool(
  'DATALAB_ACCESS_LOG',
  false,
  'true writes one line per completed request on stdout.',
);

/** Every variable the distro knows, in reading order. */
export const SETTINGS: readonly Setting[] = Object.freeze([
  sdkDisabled,
  resourceAttributes,
  serviceName,
  diagLogLevel,
  otlpProtocol,
  tracesProtocol,
  metricsProtocol,
  logsProtocol,
  otlpEndpoint,
  tracesEndpoint,
  metricsEndpoint,
  logsEndpoint,
  ...exporterSettings,
  temporality,
  tracesExporters,
  sampler,
  samplerArg,
  bsp.delay,
  bsp.timeout,
  bsp.queue,
  bsp.batch,
  attributeCountLimit,
  attributeValueLengthLimit,
  spanAttributeCountLimit,
  spanAttributeValueLengthLimit,
  spanEventCountLimit,
  spanLinkCountLimit,
  eventAttributeCountLimit,
  linkAttributeCountLimit,
  metricsExporters,
  metricExportInterval,
  metricExportTimeout,
  logsExporters,
  blrp.delay,
  blrp.timeout,
  blrp.queue,
  blrp.batch,
  logRecordAttributeCountLimit,
  logRecordAttributeValueLengthLimit,
  propagators,
  enabledInstrumentations,
  disabledInstrumentations,
  httpBuckets,
  metricsHost,
  metricsPort,
  managementToken,
  managementIdleBind,
  maxEndpoints,
  httpClientMetrics,
  maxPeers,
  shutdownTimeout,
  exitFlushTimeout,
  traceFileEnabled,
  traceFileDir,
  traceFileMaxMb,
  correlationHeader,
  logLevel,
  logFormat,
  redactKeys,
  accessLog,
  healthDiskPath,
  healthChecks,
  healthTimeout,
  healthCache,
  shutdownDelay,
  dbRootSpans,
  esmHooks,
]);
