/**
 * The environment, read once into a typed, frozen object. Every other module reads this object,
 * never process.env, so that what the distro does is decided in one place and can be printed.
 *
 * Every variable is one row of the settings table (config/settings.ts: name, default, reader,
 * one line of documentation); the same rows drive `parseConfig`, `datalab-otel config` and the
 * test that keeps docs/configuration.md in step. Here the rows' values become the Config.
 *
 * `parseConfig` is pure (environment and package info in, config and warnings out) so that it
 * can be unit-tested; `loadConfig` feeds it the real process and prints the warnings.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type ConfigWarning, type Env, Reader } from './config/reader';
import type { Get, Setting } from './config/setting';
import * as S from './config/settings';
import type { BatchOptions, Config, PackageInfo } from './config/types';
import { setFaults } from './faults';
import { flushDeferredWarnings, useStructuredWarnings, warn } from './warnings';

export type { ConfigWarning } from './config/reader';
export { parseBuckets, parseResourceAttributes } from './config/reader';
export type { Setting } from './config/setting';
export { SETTINGS } from './config/settings';
export * from './config/types';

/** Reads every row in order; `get` refuses a row that has not been read yet. */
function readSettings(r: Reader): Get {
  const values = new Map<Setting, unknown>();
  const get: Get = <T>(s: Setting<T>): T => {
    if (!values.has(s as Setting)) throw new Error(`${s.env} is used before it is read`);
    return values.get(s as Setting) as T;
  };
  for (const s of S.SETTINGS) values.set(s, s.read(r, get));
  return get;
}

function batchOf(get: Get, b: typeof S.bsp): BatchOptions {
  return {
    scheduledDelayMillis: get(b.delay),
    exportTimeoutMillis: get(b.timeout),
    maxQueueSize: get(b.queue),
    maxExportBatchSize: get(b.batch),
  };
}

export function parseConfig(
  env: Env,
  pkg: PackageInfo = {},
  cwd: string = process.cwd(),
): {
  config: Config;
  warnings: ConfigWarning[];
} {
  const r = new Reader(env, cwd);
  const get = readSettings(r);

  const attributes = get(S.resourceAttributes);
  // SPEC §2 order: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, package.json name, fallback.
  const name =
    get(S.serviceName) ??
    attributes['service.name'] ??
    (pkg.name && pkg.name.trim() !== '' ? pkg.name : undefined) ??
    'unknown_service:node';
  const { 'service.name': _n, 'service.version': _v, ...otherAttributes } = attributes;
  const disabled = get(S.disabledInstrumentations);

  const config: Config = deepFreeze({
    sdkDisabled: get(S.sdkDisabled),
    serviceName: name,
    serviceVersion: attributes['service.version'] ?? pkg.version,
    resourceAttributes: otherAttributes,
    diagLogLevel: get(S.diagLogLevel),
    traces: {
      exporters: get(S.tracesExporters),
      protocol: get(S.tracesProtocol),
      sampler: get(S.sampler),
      samplerArg: get(S.samplerArg),
      batch: batchOf(get, S.bsp),
      spanLimits: {
        attributeCountLimit: get(S.spanAttributeCountLimit),
        attributeValueLengthLimit: get(S.spanAttributeValueLengthLimit),
        eventCountLimit: get(S.spanEventCountLimit),
        linkCountLimit: get(S.spanLinkCountLimit),
        attributePerEventCountLimit: get(S.eventAttributeCountLimit),
        attributePerLinkCountLimit: get(S.linkAttributeCountLimit),
      },
    },
    metrics: {
      exporters: get(S.metricsExporters),
      temporality: get(S.temporality),
      protocol: get(S.metricsProtocol),
      exportIntervalMs: get(S.metricExportInterval),
      exportTimeoutMs: get(S.metricExportTimeout),
      httpBuckets: get(S.httpBuckets),
      maxEndpoints: get(S.maxEndpoints),
      httpClient: get(S.httpClientMetrics),
      maxPeers: get(S.maxPeers),
    },
    logs: {
      exporters: get(S.logsExporters),
      protocol: get(S.logsProtocol),
      batch: batchOf(get, S.blrp),
      limits: {
        attributeCountLimit: get(S.logRecordAttributeCountLimit),
        attributeValueLengthLimit: get(S.logRecordAttributeValueLengthLimit),
      },
    },
    propagators: get(S.propagators),
    instrumentations: get(S.enabledInstrumentations).filter((i) => !disabled.includes(i)),
    management: {
      host: get(S.metricsHost),
      port: get(S.metricsPort),
      token: get(S.managementToken),
      idleBindMs: get(S.managementIdleBind),
    },
    shutdownTimeoutMs: get(S.shutdownTimeout),
    exitFlushTimeoutMs: get(S.exitFlushTimeout),
    dbRootSpans: get(S.dbRootSpans),
    esmHooks: get(S.esmHooks),
    health: {
      checks: get(S.healthChecks),
      timeoutMs: get(S.healthTimeout),
      cacheMs: get(S.healthCache),
      diskPath: get(S.healthDiskPath),
      shutdownDelayMs: get(S.shutdownDelay),
    },
    traceFile: {
      enabled: get(S.traceFileEnabled),
      dir: get(S.traceFileDir),
      maxBytes: get(S.traceFileMaxMb) * 1024 * 1024,
    },
    correlation: { header: get(S.correlationHeader) },
    logging: {
      level: get(S.logLevel),
      format: get(S.logFormat),
      accessLog: get(S.accessLog),
      redactKeys: get(S.redactKeys),
    },
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

/**
 * The process's configuration, parsed on first use; warnings are printed that one time. Under
 * PM2 the application's environment and script are PM2's (see cluster.ts), not yet the
 * process's own when the preload runs.
 */
export function loadConfig(): Config {
  if (loaded) return loaded;
  const { pm2Context } = require('./cluster') as typeof import('./cluster');
  const pm2 = pm2Context(process.env);
  // The exporters' OTEL_* variables, from the same environment and at the same moment.
  (require('./start-env') as typeof import('./start-env')).otelEnvAtStart();
  const cwd = pm2?.cwd ?? process.cwd();
  const { config, warnings } = parseConfig(
    pm2?.env ?? process.env,
    findAppPackage(pm2?.mainScript ?? process.argv[1], cwd),
    cwd,
  );
  useStructuredWarnings(config.serviceName, config.logging.format);
  // Test-only (see faults.ts); deliberately not part of the documented configuration.
  setFaults((process.env.DATALAB_INTERNAL_FAULTS ?? '').split(',').filter((p) => p !== ''));
  for (const w of warnings) warn(w.code, w.message);
  flushDeferredWarnings();
  loaded = config;
  return config;
}
