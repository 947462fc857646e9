/**
 * The instrumentations the distro ships, each loaded only when enabled: requiring all of
 * auto-instrumentations-node costs ~0.5 s of start-up for ~40 packages when six are used.
 */
import {
  type Instrumentation,
  InstrumentationBase,
  type InstrumentationModuleDefinition,
} from '@opentelemetry/instrumentation';
import { withDistroApi } from './api-copy';
import type { Config, InstrumentationName } from './config';
import { createMysql2Instrumentation } from './db/mysql2';
import { redisStatement } from './db/redis';
import { sanitizeSql } from './db/sql';
import { WinstonCorrelationInstrumentation } from './logging/winston-correlation';
import { expressEndpoint } from './metrics/http';
import { DISTRO_VERSION } from './version';
import { warn } from './warnings';

export interface InstrumentationHooks {
  /** Whether spans leave the process. Without, the instrumentations whose only product is spans
   * are not loaded. */
  readonly tracing: boolean;
}

type Factory = (config: Config, hooks: InstrumentationHooks) => Instrumentation;

/**
 * The library instrumentations are loaded when the application first loads the library, not at
 * start-up: most services use one or two of them (measured: the five packages cost about 8% of
 * the preload's start-up). Their hooks, keyed by module name, are still registered now, for
 * require and for the ESM loader alike. The names are each package's getModuleDefinitions(), in
 * order (test/unit/instrumentations.test.ts keeps them in step).
 */
export const DEFERRED_MODULES: Partial<Record<InstrumentationName, readonly string[]>> = {
  express: ['express'],
  pg: ['pg', 'pg-pool'],
  mysql2: ['mysql2'],
  ioredis: ['ioredis'],
  redis: ['redis', '@redis/client', '@node-redis/client'],
  winston: ['winston', 'winston'],
  pino: ['pino'],
};

// runtime-node is the distro's own (metrics/runtime.ts). Exported for `datalab-otel doctor`.
export const PACKAGES: Record<Exclude<InstrumentationName, 'runtime-node'>, string> = {
  http: '@opentelemetry/instrumentation-http',
  undici: '@opentelemetry/instrumentation-undici',
  express: '@opentelemetry/instrumentation-express',
  pg: '@opentelemetry/instrumentation-pg',
  mysql2: '@opentelemetry/instrumentation-mysql2',
  ioredis: '@opentelemetry/instrumentation-ioredis',
  redis: '@opentelemetry/instrumentation-redis',
  winston: '@opentelemetry/instrumentation-winston',
  // The distro's own (logging/pino.ts): no package to install.
  pino: './logging/pino',
};

type Definition = InstrumentationModuleDefinition;
const DEFINITION_KEYS = ['supportedVersions', 'includePrerelease', 'patch', 'unpatch', 'files'];

/**
 * Stands in for an instrumentation until its library is loaded: the base class hooks the same
 * module names, and the first time it reads a definition (the library or one of its files is
 * being loaded) the real instrumentation is created, disabled (it registers no hooks of its
 * own), given the providers, and its definitions answer from then on.
 */
function deferredInstrumentation(
  name: InstrumentationName,
  moduleNames: readonly string[],
  create: () => Instrumentation,
): Instrumentation {
  // A missing package still fails at start-up, with the usual warning.
  if (name !== 'runtime-node') require.resolve(PACKAGES[name]);
  let real: Instrumentation | undefined;
  let failed = false;
  let tracerProvider: Parameters<Instrumentation['setTracerProvider']>[0] | undefined;
  let meterProvider: Parameters<Instrumentation['setMeterProvider']>[0] | undefined;
  const definitions = (): Definition[] => {
    if (real === undefined && !failed) {
      try {
        // Loaded when the application first requires the library: see api-copy.ts.
        real = withDistroApi(create);
        if (tracerProvider !== undefined) real.setTracerProvider(tracerProvider);
        if (meterProvider !== undefined) real.setMeterProvider(meterProvider);
      } catch (err) {
        failed = true;
        warn(
          'DLOTEL_INSTRUMENTATION_FAILED',
          `instrumentation ${JSON.stringify(name)} could not be loaded (${
            err instanceof Error ? err.message : String(err)
          }); that library is not instrumented`,
        );
      }
    }
    return (
      (real as { getModuleDefinitions?(): Definition[] } | undefined)?.getModuleDefinitions?.() ??
      []
    );
  };
  class DeferredInstrumentation extends InstrumentationBase {
    constructor() {
      super(`@datalab/otel/deferred-${name}`, DISTRO_VERSION, {});
    }
    protected init(): Definition[] {
      return moduleNames.map((moduleName, i) => {
        // Nothing supported and no files: a library whose instrumentation failed is left alone.
        const fallback = {
          supportedVersions: [],
          files: [],
        } as unknown as Definition;
        const definition = { name: moduleName } as Definition;
        for (const key of DEFINITION_KEYS) {
          Object.defineProperty(definition, key, {
            enumerable: true,
            get: () => ((definitions()[i] ?? fallback) as unknown as Record<string, unknown>)[key],
          });
        }
        return definition;
      });
    }
    override setTracerProvider(provider: Parameters<Instrumentation['setTracerProvider']>[0]) {
      tracerProvider = provider;
      super.setTracerProvider(provider);
      real?.setTracerProvider(provider);
    }
    override setMeterProvider(provider: Parameters<Instrumentation['setMeterProvider']>[0]) {
      meterProvider = provider;
      super.setMeterProvider(provider);
      real?.setMeterProvider(provider);
    }
  }
  return new DeferredInstrumentation();
}

// `require` inside each factory keeps the package unloaded until it is enabled. The deferred
// ones (DEFERRED_MODULES) are built disabled: their stand-in holds the hooks.
const FACTORIES: Record<InstrumentationName, Factory> = {
  http: () => {
    const { HttpInstrumentation } =
      require('@opentelemetry/instrumentation-http') as typeof import('@opentelemetry/instrumentation-http');
    // Outbound calls only: inbound requests get their context, correlation ID and server span
    // from request/lifecycle.ts, which makes the same spans for less (docs/performance.md).
    return new HttpInstrumentation({ disableIncomingRequestInstrumentation: true });
  },
  undici: () => {
    // A missing package still fails at start-up, with the usual warning; the package itself
    // loads at the first undici request (deferred-undici.ts).
    require.resolve(PACKAGES.undici);
    const { deferredUndiciInstrumentation } =
      require('./deferred-undici') as typeof import('./deferred-undici');
    return deferredUndiciInstrumentation(() =>
      withDistroApi(() => {
        const { UndiciInstrumentation } =
          require('@opentelemetry/instrumentation-undici') as typeof import('@opentelemetry/instrumentation-undici');
        return new UndiciInstrumentation();
      }),
    );
  },
  express: () => {
    const { ExpressInstrumentation, ExpressLayerType } =
      require('@opentelemetry/instrumentation-express') as typeof import('@opentelemetry/instrumentation-express');
    // One span per middleware (body parsers, cors, …) costs every request and answers no
    // question the route and handler spans do not; the route is still recorded (the
    // instrumentation sets it before it checks what to ignore).
    return new ExpressInstrumentation({
      enabled: false,
      ignoreLayersType: [ExpressLayerType.MIDDLEWARE],
      // The handler span's `http.route` is the instrumentation's own guess, which loses the
      // mount of a sub-app: it gets the server span's (and the metrics') template. Once per
      // handler span, from the template cached on Express's route object.
      requestHook: (span, info) => {
        if (info.layerType !== ExpressLayerType.REQUEST_HANDLER) return;
        const template = expressEndpoint(info.request as { route?: unknown; baseUrl?: unknown });
        if (template !== undefined) span.setAttribute('http.route', template);
      },
    });
  },
  pg: (config) => {
    const { PgInstrumentation } =
      require('@opentelemetry/instrumentation-pg') as typeof import('@opentelemetry/instrumentation-pg');
    return new PgInstrumentation({
      enabled: false,
      // Parameter values never leave the process (SPEC §4)…
      enhancedDatabaseReporting: false,
      // …nor do literals written inline: the span is exported only when it ends, so replacing
      // the text recorded at its start is enough.
      requestHook: (span, info) => span.setAttribute('db.query.text', sanitizeSql(info.query.text)),
      requireParentSpan: !config.dbRootSpans,
    });
  },
  mysql2: (config) => createMysql2Instrumentation({ rootSpans: config.dbRootSpans }),
  ioredis: (config) => {
    const { IORedisInstrumentation } =
      require('@opentelemetry/instrumentation-ioredis') as typeof import('@opentelemetry/instrumentation-ioredis');
    return new IORedisInstrumentation({
      enabled: false,
      dbStatementSerializer: redisStatement,
      requireParentSpan: !config.dbRootSpans,
    });
  },
  redis: (config) => {
    const { RedisInstrumentation } =
      require('@opentelemetry/instrumentation-redis') as typeof import('@opentelemetry/instrumentation-redis');
    return new RedisInstrumentation({
      enabled: false,
      dbStatementSerializer: redisStatement,
      requireParentSpan: !config.dbRootSpans,
    });
  },
  winston: (config) => {
    const { WinstonInstrumentation } =
      require('@opentelemetry/instrumentation-winston') as typeof import('@opentelemetry/instrumentation-winston');
    return new WinstonInstrumentation({
      enabled: false,
      // Records go out over OTLP only when a logs exporter is configured; the instrumentation
      // then adds the OpenTelemetry transport to every winston logger, once.
      disableLogSending: config.logs.exporters.length === 0,
      // correlation_id comes from logging/winston-correlation.ts, which also works with no span.
    });
  },
  pino: (config) => {
    const { PinoInstrumentation } = require('./logging/pino') as typeof import('./logging/pino');
    return new PinoInstrumentation({
      enabled: false,
      service: config.serviceName,
      redactKeys: config.logging.redactKeys,
      sendLogs: config.logs.exporters.length > 0,
    });
  },
  'runtime-node': () => {
    const { RuntimeMetricsInstrumentation } =
      require('./metrics/runtime') as typeof import('./metrics/runtime');
    return new RuntimeMetricsInstrumentation();
  },
};

/**
 * What these make is spans and nothing else (route templates for the metrics come from Express
 * itself when its instrumentation is absent: see metrics/http.ts).
 */
const SPANS_ONLY: ReadonlySet<InstrumentationName> = new Set([
  'express',
  'pg',
  'mysql2',
  'ioredis',
  'redis',
]);

/** Instrumentations whose own metrics duplicate the distro's or lack the `service` label. */
export const METRICS_SILENCED: ReadonlySet<InstrumentationName> = new Set(['http', 'undici', 'pg']);

export function createInstrumentations(
  config: Config,
  hooks: InstrumentationHooks,
): { name: InstrumentationName; instrumentation: Instrumentation }[] {
  const out: { name: InstrumentationName; instrumentation: Instrumentation }[] = [];
  for (const name of config.instrumentations) {
    if (!hooks.tracing && SPANS_ONLY.has(name)) continue;
    try {
      const moduleNames = DEFERRED_MODULES[name];
      const instrumentation = moduleNames
        ? deferredInstrumentation(name, moduleNames, () => FACTORIES[name](config, hooks))
        : FACTORIES[name](config, hooks);
      out.push({ name, instrumentation });
      if (name === 'winston') {
        out.push({ name, instrumentation: new WinstonCorrelationInstrumentation() });
      }
    } catch (err) {
      warn(
        'DLOTEL_INSTRUMENTATION_FAILED',
        `instrumentation ${JSON.stringify(name)} could not be loaded (${
          err instanceof Error ? err.message : String(err)
        }); that library is not instrumented`,
      );
    }
  }
  return out;
}
