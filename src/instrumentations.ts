/**
 * The instrumentations the distro ships (every one of auto-instrumentations-node, under its short
 * names), each loaded only when enabled and, for a library, only when the application loads that
 * library: requiring all of auto-instrumentations-node costs ~0.5 s of start-up for ~40 packages
 * when a handful are used.
 */
import {
  type Instrumentation,
  InstrumentationBase,
  type InstrumentationModuleDefinition,
} from '@opentelemetry/instrumentation';
import { withDistroApi } from './api-copy';
import type { Config, InstrumentationName } from './config';
import { DEFAULT_OFF_INSTRUMENTATIONS, INSTRUMENTATION_NAMES } from './config/types';
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
  amqplib: ['amqplib'],
  'aws-sdk': [
    '@aws-sdk/middleware-stack',
    '@smithy/middleware-stack',
    '@smithy/core',
    '@aws-sdk/smithy-client',
    '@smithy/smithy-client',
  ],
  bunyan: ['bunyan'],
  'cassandra-driver': ['cassandra-driver'],
  connect: ['connect'],
  cucumber: ['@cucumber/cucumber'],
  dataloader: ['dataloader'],
  dns: ['dns', 'dns/promises'],
  express: ['express'],
  fs: ['fs', 'fs/promises'],
  'generic-pool': ['generic-pool', 'generic-pool', 'generic-pool'],
  graphql: ['graphql'],
  grpc: ['@grpc/grpc-js'],
  hapi: ['@hapi/hapi'],
  ioredis: ['ioredis'],
  kafkajs: ['kafkajs'],
  knex: ['knex'],
  koa: ['koa'],
  'lru-memoizer': ['lru-memoizer'],
  memcached: ['memcached'],
  mongodb: ['mongodb', 'mongodb'],
  mongoose: ['mongoose'],
  mysql: ['mysql'],
  mysql2: ['mysql2'],
  'nestjs-core': ['@nestjs/core'],
  net: ['net'],
  openai: ['openai'],
  oracledb: ['oracledb'],
  pg: ['pg', 'pg-pool'],
  pino: ['pino'],
  redis: ['redis', '@redis/client', '@node-redis/client'],
  restify: ['restify'],
  router: ['router'],
  'socket.io': ['socket.io', 'socket.io'],
  tedious: ['tedious'],
  winston: ['winston', 'winston'],
};

/** Where each instrumentation comes from: its package, or the distro's own module (also read by
 * `datalab-otel doctor`). */
export const PACKAGES: Record<InstrumentationName, string> = {
  amqplib: '@opentelemetry/instrumentation-amqplib',
  'aws-lambda': '@opentelemetry/instrumentation-aws-lambda',
  'aws-sdk': '@opentelemetry/instrumentation-aws-sdk',
  bunyan: '@opentelemetry/instrumentation-bunyan',
  'cassandra-driver': '@opentelemetry/instrumentation-cassandra-driver',
  connect: '@opentelemetry/instrumentation-connect',
  cucumber: '@opentelemetry/instrumentation-cucumber',
  dataloader: '@opentelemetry/instrumentation-dataloader',
  dns: '@opentelemetry/instrumentation-dns',
  express: '@opentelemetry/instrumentation-express',
  fs: '@opentelemetry/instrumentation-fs',
  'generic-pool': '@opentelemetry/instrumentation-generic-pool',
  graphql: '@opentelemetry/instrumentation-graphql',
  grpc: '@opentelemetry/instrumentation-grpc',
  hapi: '@opentelemetry/instrumentation-hapi',
  'host-metrics': '@opentelemetry/instrumentation-host-metrics',
  http: '@opentelemetry/instrumentation-http',
  ioredis: '@opentelemetry/instrumentation-ioredis',
  kafkajs: '@opentelemetry/instrumentation-kafkajs',
  knex: '@opentelemetry/instrumentation-knex',
  koa: '@opentelemetry/instrumentation-koa',
  'lru-memoizer': '@opentelemetry/instrumentation-lru-memoizer',
  memcached: '@opentelemetry/instrumentation-memcached',
  mongodb: '@opentelemetry/instrumentation-mongodb',
  mongoose: '@opentelemetry/instrumentation-mongoose',
  mysql: '@opentelemetry/instrumentation-mysql',
  mysql2: '@opentelemetry/instrumentation-mysql2',
  'nestjs-core': '@opentelemetry/instrumentation-nestjs-core',
  net: '@opentelemetry/instrumentation-net',
  openai: '@opentelemetry/instrumentation-openai',
  oracledb: '@opentelemetry/instrumentation-oracledb',
  pg: '@opentelemetry/instrumentation-pg',
  // The distro's own (logging/pino.ts): no package to install.
  pino: './logging/pino',
  redis: '@opentelemetry/instrumentation-redis',
  restify: '@opentelemetry/instrumentation-restify',
  router: '@opentelemetry/instrumentation-router',
  // The distro's own (metrics/runtime.ts).
  'runtime-node': './metrics/runtime',
  'socket.io': '@opentelemetry/instrumentation-socket.io',
  tedious: '@opentelemetry/instrumentation-tedious',
  undici: '@opentelemetry/instrumentation-undici',
  winston: '@opentelemetry/instrumentation-winston',
};

/**
 * The upstream class of each instrumentation the distro builds as upstream does (its own
 * options aside); the others have their own factory below.
 */
export const UPSTREAM_CLASSES: Partial<Record<InstrumentationName, string>> = {
  amqplib: 'AmqplibInstrumentation',
  'aws-lambda': 'AwsLambdaInstrumentation',
  'aws-sdk': 'AwsInstrumentation',
  bunyan: 'BunyanInstrumentation',
  'cassandra-driver': 'CassandraDriverInstrumentation',
  connect: 'ConnectInstrumentation',
  cucumber: 'CucumberInstrumentation',
  dataloader: 'DataloaderInstrumentation',
  dns: 'DnsInstrumentation',
  fs: 'FsInstrumentation',
  'generic-pool': 'GenericPoolInstrumentation',
  graphql: 'GraphQLInstrumentation',
  grpc: 'GrpcInstrumentation',
  hapi: 'HapiInstrumentation',
  'host-metrics': 'HostMetricsInstrumentation',
  kafkajs: 'KafkaJsInstrumentation',
  knex: 'KnexInstrumentation',
  koa: 'KoaInstrumentation',
  'lru-memoizer': 'LruMemoizerInstrumentation',
  memcached: 'MemcachedInstrumentation',
  mongodb: 'MongoDBInstrumentation',
  mongoose: 'MongooseInstrumentation',
  mysql: 'MySQLInstrumentation',
  'nestjs-core': 'NestInstrumentation',
  net: 'NetInstrumentation',
  openai: 'OpenAIInstrumentation',
  oracledb: 'OracleInstrumentation',
  restify: 'RestifyInstrumentation',
  router: 'RouterInstrumentation',
  'socket.io': 'SocketIoInstrumentation',
  tedious: 'TediousInstrumentation',
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
  require.resolve(PACKAGES[name]);
  let standIn: Instrumentation | undefined;
  let real: Instrumentation | undefined;
  let failed = false;
  let tracerProvider: Parameters<Instrumentation['setTracerProvider']>[0] | undefined;
  let meterProvider: Parameters<Instrumentation['setMeterProvider']>[0] | undefined;
  const definitions = (): Definition[] => {
    if (real === undefined && !failed) {
      try {
        // Loaded when the application first requires the library: see api-copy.ts.
        real = withDistroApi(create);
        // Built disabled (the stand-in holds the hooks), but several patches ask their
        // instrumentation whether it is enabled on every call (bunyan, connect, mysql, openai…):
        // the stand-in answers.
        const self = standIn;
        if (self !== undefined) {
          (real as { isEnabled?: () => boolean }).isEnabled = () =>
            (self as unknown as InstrumentationBase).isEnabled();
        }
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
  standIn = new DeferredInstrumentation();
  return standIn;
}

type AnyInstrumentation = new (config: object) => Instrumentation;

/** The upstream instrumentation, built as auto-instrumentations-node builds it, plus `options`. */
function upstream(name: InstrumentationName, options: object = {}): Instrumentation {
  const Class = (require(PACKAGES[name]) as Record<string, AnyInstrumentation>)[
    UPSTREAM_CLASSES[name] as string
  ];
  if (typeof Class !== 'function') {
    throw new Error(`${PACKAGES[name]} has no ${UPSTREAM_CLASSES[name]}`);
  }
  return new Class({
    ...options,
    // Deferred ones are built disabled: their stand-in holds the hooks.
    enabled: DEFERRED_MODULES[name] === undefined,
  });
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
  amqplib: () => upstream('amqplib'),
  // The function's module is named by the Lambda environment, not known beforehand: outside
  // Lambda the instrumentation hooks nothing, and is not loaded at all.
  'aws-lambda': () => {
    if (!process.env.LAMBDA_TASK_ROOT || !process.env._HANDLER) return NOT_APPLICABLE;
    return upstream('aws-lambda');
  },
  'aws-sdk': () => upstream('aws-sdk'),
  bunyan: (config) => upstream('bunyan', { disableLogSending: config.logs.exporters.length === 0 }),
  'cassandra-driver': () => upstream('cassandra-driver'),
  connect: () => upstream('connect'),
  cucumber: () => upstream('cucumber'),
  dataloader: () => upstream('dataloader'),
  dns: () => upstream('dns'),
  fs: () => upstream('fs'),
  'generic-pool': () => upstream('generic-pool'),
  graphql: () => upstream('graphql'),
  grpc: () => upstream('grpc'),
  hapi: () => upstream('hapi'),
  // Host-wide gauges, off by default as upstream: nothing to defer, loaded when enabled.
  'host-metrics': () => upstream('host-metrics'),
  kafkajs: () => upstream('kafkajs'),
  knex: (config) => upstream('knex', { requireParentSpan: !config.dbRootSpans }),
  koa: () => upstream('koa'),
  'lru-memoizer': () => upstream('lru-memoizer'),
  memcached: () => upstream('memcached'),
  mongodb: (config) => upstream('mongodb', { requireParentSpan: !config.dbRootSpans }),
  mongoose: (config) => upstream('mongoose', { requireParentSpan: !config.dbRootSpans }),
  mysql: () => upstream('mysql'),
  'nestjs-core': () => upstream('nestjs-core'),
  net: () => upstream('net'),
  openai: () => upstream('openai'),
  oracledb: (config) => upstream('oracledb', { requireParentSpan: !config.dbRootSpans }),
  restify: () => upstream('restify'),
  router: (config) => {
    const router = upstream('router');
    // Express 5 dispatches through `router`: with the Express instrumentation on, its requests
    // would get a second span per middleware and handler, and their server span renamed.
    if (config.instrumentations.includes('express')) yieldToExpress(router);
    return router;
  },
  'socket.io': () => upstream('socket.io'),
  tedious: () => upstream('tedious'),
  'runtime-node': () => {
    const { RuntimeMetricsInstrumentation } =
      require('./metrics/runtime') as typeof import('./metrics/runtime');
    return new RuntimeMetricsInstrumentation();
  },
};

/**
 * Stands for an instrumentation with nothing to hook in this process (aws-lambda outside
 * Lambda): not registered, no warning.
 */
const NOT_APPLICABLE = Object.freeze({}) as Instrumentation;

type Patcher = (original: (...args: unknown[]) => unknown) => (...args: unknown[]) => unknown;

/**
 * Requests Express dispatches (`req.app` is Express's) go to the original layer methods: the
 * Express instrumentation makes their spans. The patchers are read when router/lib/layer.js is
 * patched, which is after this.
 */
function yieldToExpress(router: Instrumentation): void {
  const patchers = router as unknown as Record<string, Patcher | undefined>;
  for (const [key, reqIndex] of [
    ['_requestHandlerPatcher', 0],
    ['_errorHandlerPatcher', 1],
  ] as const) {
    const patcher = patchers[key];
    if (typeof patcher !== 'function') continue;
    patchers[key] = (original) => {
      const traced = patcher.call(router, original);
      // Fixed parameters, not a rest array: these run for every layer of every request.
      if (reqIndex === 0) {
        return function handleRequest(this: unknown, req: unknown, res: unknown, next: unknown) {
          const fn = (req as { app?: unknown } | undefined)?.app === undefined ? traced : original;
          return fn.call(this, req, res, next);
        };
      }
      return function handleError(
        this: unknown,
        error: unknown,
        req: unknown,
        res: unknown,
        next: unknown,
      ) {
        const fn = (req as { app?: unknown } | undefined)?.app === undefined ? traced : original;
        return fn.call(this, error, req, res, next);
      };
    };
  }
}

/**
 * Loaded in every mode: outbound HTTP (context propagation and the distro's client metrics ride
 * on it), the loggers (correlation fields), the runtime and host metrics, and aws-lambda (it
 * flushes telemetry before an invocation freezes).
 */
const KEPT_WITHOUT_SPANS: ReadonlySet<InstrumentationName> = new Set<InstrumentationName>([
  'http',
  'undici',
  'winston',
  'pino',
  'bunyan',
  'runtime-node',
  'host-metrics',
  'aws-lambda',
]);

/**
 * Every other one makes spans and nothing else (route templates for the metrics come from the
 * route sources, src/routes/, whether or not a framework's instrumentation is loaded): without
 * a span sink they are not loaded. A name added to the list is spans-only unless kept above.
 */
const SPANS_ONLY: ReadonlySet<InstrumentationName> = new Set(
  INSTRUMENTATION_NAMES.filter((name) => !KEPT_WITHOUT_SPANS.has(name)),
);

/**
 * Instrumentations whose own metrics duplicate the distro's (http, undici, pg) or lack the
 * `service` label every series carries (SPEC §3): kafkajs's and amqplib's messaging metrics,
 * the db.client.* of mongodb, mysql and oracledb, openai's gen_ai.*, aws-sdk's. host-metrics
 * is not here: its metrics are all it makes, and sdk.ts gives them `service`.
 */
export const METRICS_SILENCED: ReadonlySet<InstrumentationName> = new Set<InstrumentationName>([
  'http',
  'undici',
  'pg',
  'amqplib',
  'aws-sdk',
  'kafkajs',
  'mongodb',
  'mysql',
  'openai',
  'oracledb',
]);

export interface InstrumentationInfo {
  readonly name: InstrumentationName;
  /** The npm package, or the distro's own module (`./…`). */
  readonly package: string;
  /** Modules whose first load loads the package; empty: loaded at start-up when enabled. */
  readonly modules: readonly string[];
  /** On without OTEL_NODE_ENABLED_INSTRUMENTATIONS (upstream's defaults). */
  readonly defaultOn: boolean;
  /** Makes only spans: not loaded when spans go nowhere (metrics-only mode). */
  readonly spansOnly: boolean;
  /** Its own metrics are dropped. */
  readonly metricsSilenced: boolean;
}

/**
 * Every instrumentation, for `datalab-otel doctor` and the docs: what it loads, when, and
 * whether it is on by default.
 */
export const INSTRUMENTATION_TABLE: readonly InstrumentationInfo[] = INSTRUMENTATION_NAMES.map(
  (name) =>
    Object.freeze({
      name,
      package: PACKAGES[name],
      modules: DEFERRED_MODULES[name] ?? [],
      defaultOn: !DEFAULT_OFF_INSTRUMENTATIONS.includes(name),
      spansOnly: SPANS_ONLY.has(name),
      metricsSilenced: METRICS_SILENCED.has(name),
    }),
);

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
      if (instrumentation === NOT_APPLICABLE) continue;
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
