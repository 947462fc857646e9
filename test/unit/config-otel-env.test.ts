/**
 * Every documented OTEL_* variable keeps its effect under SDK 3, whose trace and logs SDKs read
 * no environment variables: one case per variable, showing the effect on the parsed config (or,
 * for the variables the OTLP exporters still read themselves, on the exporter's own resolved
 * configuration), and a few checks on the SDK components built from the config.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { context, SeverityNumber } from '@opentelemetry/api';
import { convertLegacyHttpOptions } from '@opentelemetry/otlp-exporter-base/node-http';
import { convertLegacyOtlpGrpcOptions } from '@opentelemetry/otlp-grpc-exporter-base';
import {
  InMemoryLogRecordExporter,
  LoggerProvider,
  SimpleLogRecordProcessor,
} from '@opentelemetry/sdk-logs';
import { AggregationTemporality, InstrumentType } from '@opentelemetry/sdk-metrics';
import {
  BatchSpanProcessor,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { type Config, parseConfig, SETTINGS } from '../../src/config';
import { createOtlpMetricExporter } from '../../src/exporters';
import { buildSampler } from '../../src/sdk';

type Env = Record<string, string>;

/** The effect of one variable on the parsed configuration; it must not hold without it. */
interface ConfigCase {
  readonly env: Env;
  effect(config: Config): void;
}

const CONFIG_CASES: Readonly<Record<string, ConfigCase>> = {
  OTEL_SDK_DISABLED: {
    env: { OTEL_SDK_DISABLED: 'true' },
    effect: (c) => assert.ok(c.sdkDisabled),
  },
  OTEL_SERVICE_NAME: {
    env: { OTEL_SERVICE_NAME: 'orders' },
    effect: (c) => assert.equal(c.serviceName, 'orders'),
  },
  OTEL_RESOURCE_ATTRIBUTES: {
    env: { OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod' },
    effect: (c) =>
      assert.deepEqual(c.resourceAttributes, { 'deployment.environment.name': 'prod' }),
  },
  OTEL_LOG_LEVEL: {
    env: { OTEL_LOG_LEVEL: 'DEBUG' },
    effect: (c) => assert.equal(c.diagLogLevel, 'debug'),
  },
  OTEL_TRACES_EXPORTER: {
    env: { OTEL_TRACES_EXPORTER: 'console' },
    effect: (c) => {
      assert.deepEqual(c.traces.exporters, ['console']);
      assert.equal(c.traceFile.enabled, false, 'an explicit exporter replaces the trace file');
    },
  },
  OTEL_METRICS_EXPORTER: {
    env: { OTEL_METRICS_EXPORTER: 'prometheus,otlp' },
    effect: (c) => assert.deepEqual(c.metrics.exporters, ['prometheus', 'otlp']),
  },
  OTEL_LOGS_EXPORTER: {
    env: { OTEL_LOGS_EXPORTER: 'otlp' },
    effect: (c) => assert.deepEqual(c.logs.exporters, ['otlp']),
  },
  OTEL_EXPORTER_OTLP_ENDPOINT: {
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
    effect: (c) => {
      assert.deepEqual(c.traces.exporters, ['otlp']);
      assert.equal(c.traceFile.enabled, false);
    },
  },
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {
    env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' },
    effect: (c) => assert.deepEqual(c.traces.exporters, ['otlp']),
  },
  OTEL_EXPORTER_OTLP_PROTOCOL: {
    env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
    effect: (c) => {
      assert.equal(c.traces.protocol, 'grpc');
      assert.equal(c.metrics.protocol, 'grpc');
      assert.equal(c.logs.protocol, 'grpc');
    },
  },
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: {
    env: { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' },
    effect: (c) => {
      assert.equal(c.traces.protocol, 'http/json');
      assert.equal(c.metrics.protocol, 'http/protobuf');
    },
  },
  OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: {
    env: { OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'grpc' },
    effect: (c) => assert.equal(c.metrics.protocol, 'grpc'),
  },
  OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: {
    env: { OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: 'http/json' },
    effect: (c) => assert.equal(c.logs.protocol, 'http/json'),
  },
  OTEL_METRIC_EXPORT_INTERVAL: {
    env: { OTEL_METRIC_EXPORT_INTERVAL: '15000' },
    effect: (c) => {
      assert.equal(c.metrics.exportIntervalMs, 15_000);
      assert.equal(c.metrics.exportTimeoutMs, 15_000, 'the timeout is at most the interval');
    },
  },
  OTEL_METRIC_EXPORT_TIMEOUT: {
    env: { OTEL_METRIC_EXPORT_TIMEOUT: '5000' },
    effect: (c) => assert.equal(c.metrics.exportTimeoutMs, 5000),
  },
  OTEL_TRACES_SAMPLER: {
    env: { OTEL_TRACES_SAMPLER: 'always_off' },
    effect: (c) => assert.equal(c.traces.sampler, 'always_off'),
  },
  OTEL_TRACES_SAMPLER_ARG: {
    env: { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' },
    effect: (c) => assert.equal(c.traces.samplerArg, 0.1),
  },
  OTEL_PROPAGATORS: {
    env: { OTEL_PROPAGATORS: 'b3multi' },
    effect: (c) => assert.deepEqual(c.propagators, ['b3multi']),
  },
  OTEL_NODE_ENABLED_INSTRUMENTATIONS: {
    env: { OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http,pg' },
    effect: (c) => assert.deepEqual(c.instrumentations, ['http', 'pg']),
  },
  OTEL_NODE_DISABLED_INSTRUMENTATIONS: {
    env: { OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'winston' },
    effect: (c) => assert.ok(!c.instrumentations.includes('winston')),
  },
  OTEL_BSP_SCHEDULE_DELAY: {
    env: { OTEL_BSP_SCHEDULE_DELAY: '100' },
    effect: (c) => assert.equal(c.traces.batch.scheduledDelayMillis, 100),
  },
  OTEL_BSP_EXPORT_TIMEOUT: {
    env: { OTEL_BSP_EXPORT_TIMEOUT: '2000' },
    effect: (c) => assert.equal(c.traces.batch.exportTimeoutMillis, 2000),
  },
  OTEL_BSP_MAX_QUEUE_SIZE: {
    env: { OTEL_BSP_MAX_QUEUE_SIZE: '100' },
    effect: (c) => {
      assert.equal(c.traces.batch.maxQueueSize, 100);
      assert.equal(c.traces.batch.maxExportBatchSize, 100, 'the default batch is lowered to fit');
    },
  },
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: {
    env: { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '7' },
    effect: (c) => assert.equal(c.traces.batch.maxExportBatchSize, 7),
  },
  OTEL_BLRP_SCHEDULE_DELAY: {
    env: { OTEL_BLRP_SCHEDULE_DELAY: '250' },
    effect: (c) => assert.equal(c.logs.batch.scheduledDelayMillis, 250),
  },
  OTEL_BLRP_EXPORT_TIMEOUT: {
    env: { OTEL_BLRP_EXPORT_TIMEOUT: '3000' },
    effect: (c) => assert.equal(c.logs.batch.exportTimeoutMillis, 3000),
  },
  OTEL_BLRP_MAX_QUEUE_SIZE: {
    env: { OTEL_BLRP_MAX_QUEUE_SIZE: '4096' },
    effect: (c) => assert.equal(c.logs.batch.maxQueueSize, 4096),
  },
  OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: {
    env: { OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: '64' },
    effect: (c) => assert.equal(c.logs.batch.maxExportBatchSize, 64),
  },
  OTEL_ATTRIBUTE_COUNT_LIMIT: {
    env: { OTEL_ATTRIBUTE_COUNT_LIMIT: '16' },
    effect: (c) => {
      assert.equal(c.traces.spanLimits.attributeCountLimit, 16);
      assert.equal(c.logs.limits.attributeCountLimit, 16);
    },
  },
  OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: {
    env: { OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '1000' },
    effect: (c) => {
      assert.equal(c.traces.spanLimits.attributeValueLengthLimit, 1000);
      assert.equal(c.logs.limits.attributeValueLengthLimit, 1000);
    },
  },
  OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: {
    env: { OTEL_ATTRIBUTE_COUNT_LIMIT: '16', OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '32' },
    effect: (c) => {
      assert.equal(c.traces.spanLimits.attributeCountLimit, 32, 'the specific limit wins');
      assert.equal(c.logs.limits.attributeCountLimit, 16);
    },
  },
  OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: {
    env: { OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '200' },
    effect: (c) => {
      assert.equal(c.traces.spanLimits.attributeValueLengthLimit, 200);
      assert.equal(c.logs.limits.attributeValueLengthLimit, Number.POSITIVE_INFINITY);
    },
  },
  OTEL_SPAN_EVENT_COUNT_LIMIT: {
    env: { OTEL_SPAN_EVENT_COUNT_LIMIT: '10' },
    effect: (c) => assert.equal(c.traces.spanLimits.eventCountLimit, 10),
  },
  OTEL_SPAN_LINK_COUNT_LIMIT: {
    env: { OTEL_SPAN_LINK_COUNT_LIMIT: '3' },
    effect: (c) => assert.equal(c.traces.spanLimits.linkCountLimit, 3),
  },
  OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT: {
    env: { OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT: '4' },
    effect: (c) => assert.equal(c.traces.spanLimits.attributePerEventCountLimit, 4),
  },
  OTEL_SPAN_ATTRIBUTE_PER_LINK_COUNT_LIMIT: {
    env: { OTEL_SPAN_ATTRIBUTE_PER_LINK_COUNT_LIMIT: '5' },
    effect: (c) => assert.equal(c.traces.spanLimits.attributePerLinkCountLimit, 5),
  },
  OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT: {
    env: { OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT: '8' },
    effect: (c) => {
      assert.equal(c.logs.limits.attributeCountLimit, 8);
      assert.equal(c.traces.spanLimits.attributeCountLimit, 128);
    },
  },
  OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT: {
    env: { OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT: '64' },
    effect: (c) => assert.equal(c.logs.limits.attributeValueLengthLimit, 64),
  },
};

/** Runs `body` with these variables in process.env (where the OTLP exporters read them). */
function withEnv<T>(env: Env, body: () => T): T {
  const saved = new Map(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return body();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const SIGNAL_PATHS = { TRACES: 'v1/traces', METRICS: 'v1/metrics', LOGS: 'v1/logs' } as const;
type Signal = keyof typeof SIGNAL_PATHS;

/** The configuration the OTLP/HTTP exporters of 0.301 resolve from the environment. */
function httpExporterConfig(signal: Signal, env: Env) {
  return withEnv(env, () => convertLegacyHttpOptions({}, signal, SIGNAL_PATHS[signal], {}));
}

const dir = mkdtempSync(join(tmpdir(), 'datalab-otel-config-'));
const pem = join(dir, 'file.pem');
writeFileSync(pem, 'a PEM file\n');
after(() => rmSync(dir, { recursive: true, force: true }));

/** What the exporter's https agent is built with. */
async function agentOptions(signal: Signal, env: Env): Promise<Record<string, unknown>> {
  const config = httpExporterConfig(signal, env);
  const agent = (await config.agentFactory('https:')) as Agent;
  return agent.options as Record<string, unknown>;
}

/**
 * The effect of the variables the OTLP exporters read themselves, on the exporter's resolved
 * configuration: the documented meaning still holds with the installed exporter packages.
 */
const EXPORTER_CASES: Record<string, (name: string, signal: Signal) => Promise<void> | void> = {
  HEADERS: async (name, signal) => {
    const config = httpExporterConfig(signal, { [name]: 'x-tenant=a%20b' });
    assert.equal((await config.headers())['x-tenant'], 'a b');
  },
  TIMEOUT: (name, signal) => {
    assert.equal(httpExporterConfig(signal, { [name]: '1234' }).timeoutMillis, 1234);
  },
  COMPRESSION: (name, signal) => {
    assert.equal(httpExporterConfig(signal, { [name]: 'gzip' }).compression, 'gzip');
  },
  CERTIFICATE: async (name, signal) => {
    assert.equal(String((await agentOptions(signal, { [name]: pem })).ca), 'a PEM file\n');
  },
  CLIENT_CERTIFICATE: async (name, signal) => {
    assert.equal(String((await agentOptions(signal, { [name]: pem })).cert), 'a PEM file\n');
  },
  CLIENT_KEY: async (name, signal) => {
    assert.equal(String((await agentOptions(signal, { [name]: pem })).key), 'a PEM file\n');
  },
  INSECURE: (name, signal) => {
    // An endpoint without a scheme: INSECURE decides between TLS and plain text.
    const secure = (insecure: string) =>
      withEnv(
        { [`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`]: 'collector:4317', [name]: insecure },
        () =>
          (
            convertLegacyOtlpGrpcOptions({}, signal).credentials() as unknown as {
              _isSecure(): boolean;
            }
          )._isSecure(),
      );
    assert.equal(secure('false'), true);
    assert.equal(secure('true'), false);
  },
};

describe('config: every documented OTEL_* variable keeps its effect', () => {
  const defaults = parseConfig({}).config;

  for (const [name, c] of Object.entries(CONFIG_CASES)) {
    it(`${name}: ${Object.entries(c.env)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`, () => {
      const { config, warnings } = parseConfig(c.env);
      assert.deepEqual(warnings, []);
      c.effect(config);
      assert.throws(() => c.effect(defaults), 'the effect is not already the default');
    });
  }

  for (const [suffix, check] of Object.entries(EXPORTER_CASES)) {
    for (const signal of ['', 'TRACES_', 'METRICS_', 'LOGS_']) {
      const name = `OTEL_EXPORTER_OTLP_${signal}${suffix}`;
      it(`${name}: read by the OTLP exporters themselves`, async () => {
        // The general variable applies to every signal; a per-signal one to its own signal.
        const signals: Signal[] = signal === '' ? ['TRACES', 'METRICS', 'LOGS'] : [];
        if (signal !== '') signals.push(signal.slice(0, -1) as Signal);
        for (const s of signals) await check(name, s);
        assert.deepEqual(parseConfig({}).warnings, []);
      });
    }
  }

  it('OTEL_EXPORTER_OTLP_*_ENDPOINT: read by the OTLP exporters themselves', () => {
    for (const signal of ['TRACES', 'METRICS', 'LOGS'] as const) {
      const base = httpExporterConfig(signal, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' });
      assert.equal(base.url, `http://c:4318/${SIGNAL_PATHS[signal]}`);
      const own = httpExporterConfig(signal, {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
        [`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`]: 'http://other:4318/x',
      });
      assert.equal(own.url, 'http://other:4318/x');
    }
  });

  it('OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: delta counters and histograms', () => {
    // From the environment through the configuration to the exporter the SDK is given.
    const temporality = (value: string) =>
      createOtlpMetricExporter(
        'http/protobuf',
        parseConfig({ OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: value }).config.metrics
          .temporality,
      ).selectAggregationTemporality?.(InstrumentType.HISTOGRAM);
    assert.equal(temporality('delta'), AggregationTemporality.DELTA);
    assert.equal(temporality('cumulative'), AggregationTemporality.CUMULATIVE);
    assert.equal(temporality('LowMemory'), AggregationTemporality.DELTA);
    assert.equal(temporality('sometimes'), AggregationTemporality.CUMULATIVE);
    const bad = parseConfig({ OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: 'sometimes' });
    assert.equal(bad.warnings.length, 1);
  });

  it('every documented OTEL_* variable has a case here', () => {
    const covered = new Set(Object.keys(CONFIG_CASES));
    for (const suffix of Object.keys(EXPORTER_CASES)) {
      for (const signal of ['', 'TRACES_', 'METRICS_', 'LOGS_'])
        covered.add(`OTEL_EXPORTER_OTLP_${signal}${suffix}`);
    }
    for (const signal of ['METRICS', 'LOGS']) covered.add(`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`);
    covered.add('OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE');
    const missing = SETTINGS.map((s) => s.env).filter(
      (name) => name.startsWith('OTEL_') && !covered.has(name),
    );
    assert.deepEqual(missing, []);
  });
});

describe('config: bad OTEL_* values', () => {
  /** Variables that take any text (names, URLs, paths, headers): nothing to reject. */
  const FREE_TEXT =
    /^OTEL_(SERVICE_NAME|EXPORTER_OTLP_(\w+_)?(ENDPOINT|HEADERS|CERTIFICATE|CLIENT_KEY|CLIENT_CERTIFICATE))$/;

  /**
   * Read as auto-instrumentations-node reads them, with a warning of their own and no default
   * to fall back to (test/unit/config.test.ts).
   */
  const INSTRUMENTATION_LISTS = /^OTEL_NODE_(EN|DIS)ABLED_INSTRUMENTATIONS$/;

  for (const s of SETTINGS) {
    if (!s.env.startsWith('OTEL_') || FREE_TEXT.test(s.env) || INSTRUMENTATION_LISTS.test(s.env))
      continue;
    it(`${s.env}=bogus: one warning naming the variable, the value and what is used`, () => {
      const env: Env = { [s.env]: 'bogus!' };
      // The ratio is read only for the ratio samplers.
      if (s.env === 'OTEL_TRACES_SAMPLER_ARG') env.OTEL_TRACES_SAMPLER = 'traceidratio';
      const { config, warnings } = parseConfig(env);
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      const [w] = warnings;
      assert.equal(w?.code, 'DLOTEL_CONFIG_INVALID');
      assert.ok(w?.message.startsWith(s.env), w?.message);
      if (s.env !== 'OTEL_RESOURCE_ATTRIBUTES') {
        assert.ok(w?.message.includes('"bogus!"'), w?.message);
        assert.match(
          w?.message ?? '',
          /; using (the default|OTEL_EXPORTER_OTLP_[A-Z]+ \(default \w+\)$|[\w,]+$)/,
        );
      }
      const { [s.env]: _bad, ...rest } = env;
      assert.deepEqual(config, parseConfig(rest).config, 'the default is used');
    });
  }

  it('a bad per-signal exporter value falls back to the general variable, and says so', () => {
    const { warnings } = parseConfig({
      OTEL_EXPORTER_OTLP_TIMEOUT: '5000',
      OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: 'soon',
      OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'GZIP',
    });
    assert.deepEqual(
      warnings.map((w) => w.message),
      [
        'OTEL_EXPORTER_OTLP_LOGS_TIMEOUT="soon" is not a number of milliseconds above 0; using OTEL_EXPORTER_OTLP_TIMEOUT (default 10000)',
        'OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="GZIP" is not gzip or none; using OTEL_EXPORTER_OTLP_COMPRESSION (default none)',
      ],
    );
  });

  it('a batch size above the queue size is lowered to it, with one warning', () => {
    const { config, warnings } = parseConfig({
      OTEL_BSP_MAX_QUEUE_SIZE: '100',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '500',
    });
    assert.equal(config.traces.batch.maxExportBatchSize, 100);
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0]?.message ?? '',
      /^OTEL_BSP_MAX_EXPORT_BATCH_SIZE="500" is more than OTEL_BSP_MAX_QUEUE_SIZE \(100\); using 100/,
    );
  });

  it('a bad limit names the default it falls back to, the general one included', () => {
    const { config, warnings } = parseConfig({
      OTEL_ATTRIBUTE_COUNT_LIMIT: '20',
      OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '-1',
      OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: 'short',
    });
    assert.equal(config.traces.spanLimits.attributeCountLimit, 20);
    assert.equal(config.traces.spanLimits.attributeValueLengthLimit, Number.POSITIVE_INFINITY);
    assert.match(warnings[0]?.message ?? '', /OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT="-1".*default 20$/);
    assert.match(warnings[1]?.message ?? '', /VALUE_LENGTH_LIMIT="short".*default: no limit$/);
  });
});

describe('config: the SDK 3 components built from it', () => {
  it('OTEL_BSP_MAX_EXPORT_BATCH_SIZE and OTEL_BSP_MAX_QUEUE_SIZE shape the batches', async () => {
    const { config } = parseConfig({
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '7',
      OTEL_BSP_MAX_QUEUE_SIZE: '30',
      OTEL_BSP_SCHEDULE_DELAY: '60000',
    });
    const batches: number[] = [];
    // The backend answers only when told to: spans pile up in the queue meanwhile.
    const pending: (() => void)[] = [];
    const exporter: SpanExporter = {
      export: (spans, done) => {
        batches.push(spans.length);
        pending.push(() => done({ code: 0 }));
      },
      shutdown: async () => {},
    };
    const processor = new BatchSpanProcessor({ ...config.traces.batch, exporter });
    const provider = new TracerProvider({ spanProcessors: [processor] });
    const tracer = provider.getTracer('t');
    for (let i = 0; i < 40; i++) tracer.startSpan(`s${i}`).end();
    // A full batch goes at once; the delay (60 s) never passes during the test.
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(batches, [7]);
    const flushed = processor.forceFlush();
    for (let i = 0; i < 20 && pending.length > 0; i++) {
      pending.splice(0).forEach((answer) => {
        answer();
      });
      await new Promise((r) => setTimeout(r, 5));
    }
    await flushed;
    assert.ok(batches.length > 2 && batches.every((n) => n <= 7), String(batches));
    const exported = batches.reduce((a, b) => a + b, 0);
    assert.ok(exported < 40 && exported >= 30, `${exported} exported: the queue held at most 30`);
    await provider.shutdown();
  });

  it('span limits reach the tracer provider', async () => {
    const { config } = parseConfig({
      OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '2',
      OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '4',
      OTEL_SPAN_EVENT_COUNT_LIMIT: '1',
    });
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({
      spanLimits: config.traces.spanLimits,
      spanProcessors: [new SimpleSpanProcessor({ exporter })],
    });
    const span = provider.getTracer('t').startSpan('s', {}, context.active());
    span.setAttributes({ a: 'abcdefgh', b: 'x', c: 'dropped' });
    span.addEvent('one');
    span.addEvent('two');
    span.end();
    const [finished] = exporter.getFinishedSpans() as ReadableSpan[];
    assert.deepEqual(finished?.attributes, { a: 'abcd', b: 'x' });
    assert.equal(finished?.events.length, 1);
    await provider.shutdown();
  });

  it('log record limits reach the logger provider', async () => {
    const { config } = parseConfig({
      OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT: '1',
      OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '3',
    });
    const exporter = new InMemoryLogRecordExporter();
    const provider = new LoggerProvider({
      logRecordLimits: config.logs.limits,
      processors: [new SimpleLogRecordProcessor({ exporter })],
    });
    provider.getLogger('l').emit({
      severityNumber: SeverityNumber.INFO,
      body: 'hello',
      attributes: { first: 'abcdef', second: 'dropped' },
    });
    const [record] = exporter.getFinishedLogRecords();
    assert.deepEqual(record?.attributes, { first: 'abc' });
    await provider.shutdown();
  });

  it('the sampler follows OTEL_TRACES_SAMPLER and its ratio', () => {
    const sampler = (env: Env) => buildSampler(parseConfig(env).config).toString();
    assert.match(
      sampler({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }),
      /ParentBased\{root=TraceIdRatioBased\{0\.25\}/,
    );
    assert.equal(sampler({ OTEL_TRACES_SAMPLER: 'always_off' }), 'AlwaysOffSampler');
  });
});
