import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as zlib from 'node:zlib';
import {
  type Attributes,
  context,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
  ValueType,
} from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPTraceExporter as OTLPTraceExporterHttp } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPTraceExporterProto } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';

type HttpCompression = NonNullable<
  NonNullable<ConstructorParameters<typeof OTLPTraceExporterHttp>[0]>['compression']
>;

const RESOURCE_ATTRS = { 'service.name': 'otlp-receiver-test', 'deployment.environment': 'ci' };

const SPAN_ATTRS: Attributes = {
  'attr.str': 'hello',
  'attr.int': 42,
  'attr.double': 1.5,
  'attr.bool': true,
  'attr.strs': ['a', 'b'],
  'attr.ints': [1, 2, 3],
  // Zero values are where proto3 implicit presence bites: oneof members must still arrive.
  'attr.zero': 0,
  'attr.false': false,
  'attr.empty': '',
};

interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function post(
  url: string,
  body: Uint8Array | string,
  headers: Record<string, string>,
  method = 'POST',
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function nowNanos(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** Emits a SERVER parent with a CLIENT child through `exporter` and returns their contexts. */
async function exportSpanPair(
  exporter: OTLPTraceExporterProto | OTLPTraceExporterHttp,
  scope: string,
): Promise<{ parent: SpanContext; child: SpanContext }> {
  const provider = new TracerProvider({
    resource: resourceFromAttributes(RESOURCE_ATTRS),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  try {
    const tracer = provider.getTracer(scope, '1.2.3');
    const parent = tracer.startSpan('GET /things', {
      kind: SpanKind.SERVER,
      attributes: SPAN_ATTRS,
    });
    parent.addEvent('cache.miss', { 'cache.key': 'k1', 'cache.tries': 2 });
    const child = tracer.startSpan(
      'SELECT things',
      { kind: SpanKind.CLIENT },
      trace.setSpan(context.active(), parent),
    );
    child.end();
    parent.setStatus({ code: SpanStatusCode.ERROR, message: 'boom' });
    parent.end();
    await provider.forceFlush();
    return { parent: parent.spanContext(), child: child.spanContext() };
  } finally {
    await provider.shutdown();
  }
}

function assertSpanPair(
  spans: ReceivedSpan[],
  ids: { parent: SpanContext; child: SpanContext },
  scope: string,
  window: { from: bigint; to: bigint },
): void {
  const parent = spans.find((s) => s.spanId === ids.parent.spanId);
  const child = spans.find((s) => s.spanId === ids.child.spanId);
  assert.ok(parent, `parent span ${ids.parent.spanId} not received`);
  assert.ok(child, `child span ${ids.child.spanId} not received`);

  assert.match(parent.traceId, /^[0-9a-f]{32}$/);
  assert.match(parent.spanId, /^[0-9a-f]{16}$/);
  assert.equal(parent.traceId, ids.parent.traceId);
  assert.equal(child.traceId, ids.parent.traceId);
  assert.equal(parent.parentSpanId, '');
  assert.equal(child.parentSpanId, ids.parent.spanId);

  assert.equal(parent.name, 'GET /things');
  assert.equal(child.name, 'SELECT things');
  assert.equal(parent.kind, 2, 'SERVER is OTLP kind 2');
  assert.equal(child.kind, 3, 'CLIENT is OTLP kind 3');
  assert.equal(parent.scope, scope);
  assert.deepEqual(parent.status, { code: 2, message: 'boom' });
  assert.deepEqual(child.status, { code: 0, message: '' });

  assert.deepEqual(parent.attributes, SPAN_ATTRS);
  assert.deepEqual(child.attributes, {});
  assert.deepEqual(parent.events, [
    { name: 'cache.miss', attributes: { 'cache.key': 'k1', 'cache.tries': 2 } },
  ]);
  for (const [key, value] of Object.entries(RESOURCE_ATTRS)) {
    assert.equal(parent.resource[key], value, `resource ${key}`);
  }

  for (const span of [parent, child]) {
    assert.equal(typeof span.startTimeUnixNano, 'bigint');
    assert.ok(span.startTimeUnixNano <= span.endTimeUnixNano, 'start <= end');
    // The SDK clock is performance.timeOrigin-based, so allow a generous skew against Date.now().
    assert.ok(span.startTimeUnixNano >= window.from - 1_000_000_000n, 'start after test began');
    assert.ok(span.endTimeUnixNano <= window.to + 1_000_000_000n, 'end before test finished');
  }
}

describe('OTLP test receiver', () => {
  let receiver: OtlpReceiver;

  before(async () => {
    receiver = await startOtlpReceiver();
  });

  afterEach(() => {
    receiver.setStatus(200);
    receiver.clear();
  });

  after(async () => {
    await receiver.close();
  });

  describe('traces', () => {
    it('decodes application/x-protobuf from exporter-trace-otlp-proto', async () => {
      const from = nowNanos();
      const ids = await exportSpanPair(
        new OTLPTraceExporterProto({ url: `${receiver.url}/v1/traces` }),
        'proto-scope',
      );
      await receiver.waitFor(() => receiver.spans.length >= 2, 5000, 'two protobuf spans');
      assertSpanPair(receiver.spans, ids, 'proto-scope', { from, to: nowNanos() });

      assert.deepEqual(receiver.errors, []);
      assert.ok(receiver.bodies.every((b) => b.contentType === 'application/x-protobuf'));
      assert.ok(receiver.requests.every((r) => r.path === '/v1/traces' && r.status === 200));
    });

    it('decodes gzipped application/json from exporter-trace-otlp-http', async () => {
      const from = nowNanos();
      const ids = await exportSpanPair(
        new OTLPTraceExporterHttp({
          url: `${receiver.url}/v1/traces`,
          compression: 'gzip' as HttpCompression,
        }),
        'json-scope',
      );
      await receiver.waitFor(() => receiver.spans.length >= 2, 5000, 'two JSON spans');
      assertSpanPair(receiver.spans, ids, 'json-scope', { from, to: nowNanos() });

      assert.deepEqual(receiver.errors, []);
      assert.ok(receiver.requests.every((r) => r.contentEncoding === 'gzip'));
      const body = receiver.bodies[0];
      assert.equal(body.contentType, 'application/json');
      // `raw` is the inflated payload, so it must parse as the JSON the exporter produced.
      const json = JSON.parse(body.raw.toString('utf8')) as { resourceSpans: unknown[] };
      assert.ok(Array.isArray(json.resourceSpans));
    });
  });

  describe('metrics', () => {
    it('decodes a counter, a histogram and a gauge from exporter-metrics-otlp-proto', async () => {
      const provider = new MeterProvider({
        resource: resourceFromAttributes(RESOURCE_ATTRS),
        readers: [
          new PeriodicExportingMetricReader({
            exporter: new OTLPMetricExporter({ url: `${receiver.url}/v1/metrics` }),
            // Long interval: the export under test is the one forceFlush() triggers.
            exportIntervalMillis: 60_000,
          }),
        ],
      });
      try {
        const meter = provider.getMeter('metrics-scope', '0.0.1');
        // INT makes the SDK send as_int; the gauge below goes out as as_double.
        const counter = meter.createCounter('test.requests', {
          description: 'Requests served',
          unit: '{request}',
          valueType: ValueType.INT,
        });
        counter.add(5, { route: '/a' });
        counter.add(2, { route: '/a' });
        counter.add(1, { route: '/b' });
        const histogram = meter.createHistogram('test.duration', {
          unit: 'ms',
          advice: { explicitBucketBoundaries: [10, 100] },
        });
        for (const v of [5, 7, 50, 500]) histogram.record(v, { route: '/a' });
        meter
          .createObservableGauge('test.temperature')
          .addCallback((result) => result.observe(21.5, { room: 'lab' }));
        await provider.forceFlush();
      } finally {
        await provider.shutdown();
      }

      await receiver.waitFor(
        () =>
          ['test.requests', 'test.duration', 'test.temperature'].every((n) =>
            receiver.metrics.some((m) => m.name === n),
          ),
        5000,
        'counter, histogram and gauge',
      );
      assert.deepEqual(receiver.errors, []);

      const counter = receiver.metrics.find((m) => m.name === 'test.requests');
      assert.ok(counter);
      assert.equal(counter.type, 'sum');
      assert.equal(counter.monotonic, true);
      assert.equal(counter.temporality, 2, 'cumulative is the SDK default');
      assert.equal(counter.description, 'Requests served');
      assert.equal(counter.unit, '{request}');
      assert.equal(counter.scope, 'metrics-scope');
      assert.equal(counter.resource['service.name'], 'otlp-receiver-test');
      const byRoute = Object.fromEntries(
        counter.dataPoints.map((p) => [String(p.attributes.route), p.value]),
      );
      assert.deepEqual(byRoute, { '/a': 7, '/b': 1 });

      const histogram = receiver.metrics.find((m) => m.name === 'test.duration');
      assert.ok(histogram);
      assert.equal(histogram.type, 'histogram');
      assert.equal(histogram.temporality, 2);
      assert.equal(histogram.monotonic, undefined);
      assert.deepEqual(histogram.dataPoints, [
        {
          attributes: { route: '/a' },
          count: 4,
          sum: 562,
          bucketCounts: [2, 1, 1],
          explicitBounds: [10, 100],
        },
      ]);

      const gauge = receiver.metrics.find((m) => m.name === 'test.temperature');
      assert.ok(gauge);
      assert.equal(gauge.type, 'gauge');
      assert.equal(gauge.temporality, undefined);
      assert.deepEqual(gauge.dataPoints, [{ attributes: { room: 'lab' }, value: 21.5 }]);
    });
  });

  describe('logs', () => {
    it('decodes gzipped protobuf log records from the JS SDK', async () => {
      const sdk = loadLogsSdk();
      // @opentelemetry/sdk-logs is a dependency of the distro: its absence is a broken install.
      if (typeof sdk === 'string') assert.fail(`logs ${sdk}`);

      const spanContext: SpanContext = {
        traceId: '0af7651916cd43dd8448eb211c80319c',
        spanId: 'b7ad6b7169203331',
        traceFlags: 1,
      };
      const from = nowNanos();
      await sdk.emit(
        receiver.url,
        {
          severityNumber: 13,
          severityText: 'WARN',
          body: { msg: 'disk almost full', free: 3, tags: ['a', 'b'] },
          attributes: { 'user.id': 'u1', 'retry.count': 0 },
          context: trace.setSpanContext(context.active(), spanContext),
        },
        'logs-scope',
      );
      await receiver.waitFor(() => receiver.logs.length >= 1, 5000, 'one log record');
      assert.deepEqual(receiver.errors, []);

      const [log] = receiver.logs;
      assert.equal(log.severityNumber, 13);
      assert.equal(log.severityText, 'WARN');
      assert.deepEqual(log.body, { msg: 'disk almost full', free: 3, tags: ['a', 'b'] });
      assert.deepEqual(log.attributes, { 'user.id': 'u1', 'retry.count': 0 });
      assert.equal(log.traceId, spanContext.traceId);
      assert.equal(log.spanId, spanContext.spanId);
      assert.equal(log.scope, 'logs-scope');
      assert.equal(log.resource['service.name'], 'otlp-receiver-test');
      assert.ok(log.timeUnixNano >= from - 1_000_000_000n && log.timeUnixNano <= nowNanos());
      assert.equal(receiver.bodies[0].contentType, 'application/x-protobuf');
    });

    it('maps every AnyValue form of a hand-written OTLP/JSON request', async () => {
      const request = {
        resourceLogs: [
          {
            resource: { attributes: [{ key: 'service.name', value: { stringValue: 'json' } }] },
            scopeLogs: [
              {
                scope: { name: 'hand-written' },
                logRecords: [
                  {
                    // proto3 JSON: 64-bit integers as strings, enums as numbers or names.
                    timeUnixNano: '1700000000000000001',
                    severityNumber: 'SEVERITY_NUMBER_ERROR',
                    body: { stringValue: 'hi' },
                    traceId: '0AF7651916CD43DD8448EB211C80319C',
                    spanId: '',
                    attributes: [
                      { key: 'big', value: { intValue: '9007199254740993' } },
                      { key: 'small', value: { intValue: '-7' } },
                      { key: 'nan', value: { doubleValue: 'NaN' } },
                      {
                        key: 'bytes',
                        value: { bytesValue: Buffer.from([1, 2, 255]).toString('base64') },
                      },
                      {
                        key: 'map',
                        value: {
                          kvlistValue: {
                            values: [{ key: 'inner', value: { arrayValue: { values: [{}] } } }],
                          },
                        },
                      },
                    ],
                  },
                ],
              },
            ],
          },
        ],
      };
      const reply = await post(`${receiver.url}/v1/logs`, JSON.stringify(request), {
        'content-type': 'application/json; charset=utf-8',
      });
      assert.equal(reply.status, 200, reply.body.toString());
      assert.equal(reply.body.toString(), '{}');
      assert.match(String(reply.headers['content-type']), /^application\/json/);

      const [log] = receiver.logs;
      assert.equal(log.timeUnixNano, 1_700_000_000_000_000_001n);
      assert.equal(log.severityNumber, 17);
      assert.equal(log.body, 'hi');
      assert.equal(log.traceId, '0af7651916cd43dd8448eb211c80319c');
      assert.equal(log.spanId, '');
      assert.equal(log.attributes.big, 9_007_199_254_740_993n);
      assert.equal(log.attributes.small, -7);
      assert.ok(Number.isNaN(log.attributes.nan));
      assert.equal(log.attributes.bytes, '0102ff');
      assert.deepEqual(log.attributes.map, { inner: [null] });
    });
  });

  describe('HTTP behaviour', () => {
    it('answers protobuf requests with an empty protobuf response', async () => {
      const reply = await post(`${receiver.url}/v1/traces`, new Uint8Array(0), {
        'content-type': 'application/x-protobuf',
      });
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['content-type'], 'application/x-protobuf');
      assert.equal(reply.body.length, 0);
      assert.equal(receiver.bodies.length, 1);
    });

    it('returns 404 for unknown paths', async () => {
      const reply = await post(`${receiver.url}/v1/profiles`, '{}', {
        'content-type': 'application/json',
      });
      assert.equal(reply.status, 404);
      assert.equal(receiver.bodies.length, 0);
    });

    it('returns 400 and records the error for undecodable bodies', async () => {
      // Field 1, wire type 2, then a length that runs past the end of the buffer.
      const truncated = await post(`${receiver.url}/v1/metrics`, new Uint8Array([0x0a, 0x7f]), {
        'content-type': 'application/x-protobuf',
      });
      assert.equal(truncated.status, 400);
      const badJson = await post(`${receiver.url}/v1/logs`, '{"resourceLogs": [', {
        'content-type': 'application/json',
      });
      assert.equal(badJson.status, 400);
      const badGzip = await post(`${receiver.url}/v1/traces`, 'not gzip', {
        'content-type': 'application/json',
        'content-encoding': 'gzip',
      });
      assert.equal(badGzip.status, 400);
      const badType = await post(`${receiver.url}/v1/traces`, 'x', {
        'content-type': 'text/plain',
      });
      assert.equal(badType.status, 415);

      assert.equal(receiver.errors.length, 4);
      assert.match(receiver.errors[0], /\/v1\/metrics: undecodable protobuf metrics body/);
      assert.match(receiver.errors[1], /\/v1\/logs: undecodable json logs body/);
      assert.match(receiver.errors[2], /gzip/);
      assert.match(receiver.errors[3], /content-type/);
      assert.equal(receiver.metrics.length + receiver.logs.length + receiver.spans.length, 0);
    });

    it('answers with the status set by setStatus() without recording, until reset', async () => {
      const gz = zlib.gzipSync(Buffer.from('{}'));
      const headers = { 'content-type': 'application/json', 'content-encoding': 'gzip' };
      receiver.setStatus(503, { 'Retry-After': '1' });
      const refused = await post(`${receiver.url}/v1/traces`, gz, headers);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal(receiver.bodies.length, 0);
      assert.deepEqual(
        receiver.requests.map((r) => r.status),
        [503],
      );

      receiver.setStatus(200);
      const accepted = await post(`${receiver.url}/v1/traces`, gz, headers);
      assert.equal(accepted.status, 200);
      assert.equal(receiver.bodies.length, 1);
      assert.equal(receiver.bodies[0].raw.toString(), '{}');
    });

    it('waitFor() rejects naming what it waited for', async () => {
      await assert.rejects(
        receiver.waitFor(() => receiver.spans.length > 0, 50, 'a span that never comes'),
        /timed out after 50ms waiting for a span that never comes/,
      );
    });

    it('clear() forgets everything received so far', async () => {
      await post(`${receiver.url}/v1/traces`, new Uint8Array(0), {
        'content-type': 'application/x-protobuf',
      });
      assert.equal(receiver.requests.length, 1);
      receiver.clear();
      assert.equal(receiver.requests.length, 0);
      assert.equal(receiver.bodies.length, 0);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Logs plumbing. sdk-logs, otlp-transformer and any logs exporter are only transitive
// dependencies, so they are loaded at run time and the log test skips when they are missing.
// ---------------------------------------------------------------------------------------------

interface LogRecordInput {
  severityNumber: number;
  severityText: string;
  body: unknown;
  attributes: Attributes;
  context: ReturnType<typeof context.active>;
}

interface LogsSdkModule {
  LoggerProvider: new (options: {
    resource?: unknown;
    processors?: unknown[];
  }) => {
    getLogger(name: string, version?: string): { emit(record: LogRecordInput): void };
    forceFlush(): Promise<void>;
    shutdown(): Promise<void>;
  };
  SimpleLogRecordProcessor: new (options: { exporter: unknown }) => unknown;
  InMemoryLogRecordExporter: new () => { getFinishedLogRecords(): unknown[] };
}

interface LogsHarness {
  emit(url: string, record: LogRecordInput, scope: string): Promise<void>;
}

function tryRequire<T>(name: string): T | undefined {
  try {
    require.resolve(name);
  } catch {
    return undefined;
  }
  return require(name) as T;
}

function loadLogsSdk(): LogsHarness | string {
  const sdk = tryRequire<LogsSdkModule>('@opentelemetry/sdk-logs');
  if (!sdk) return 'skipped: @opentelemetry/sdk-logs is not installed';
  const withProvider = async (
    processor: unknown,
    record: LogRecordInput,
    scope: string,
    afterFlush?: () => Promise<void>,
  ): Promise<void> => {
    const provider = new sdk.LoggerProvider({
      resource: resourceFromAttributes(RESOURCE_ATTRS),
      processors: [processor],
    });
    try {
      provider.getLogger(scope, '1.0.0').emit(record);
      await provider.forceFlush();
      await afterFlush?.();
    } finally {
      await provider.shutdown();
    }
  };

  const exporterModule = tryRequire<{
    OTLPLogExporter: new (config: { url: string; compression?: string }) => unknown;
  }>('@opentelemetry/exporter-logs-otlp-proto');
  if (exporterModule) {
    return {
      emit: (url, record, scope) =>
        withProvider(
          new sdk.SimpleLogRecordProcessor({
            exporter: new exporterModule.OTLPLogExporter({
              url: `${url}/v1/logs`,
              compression: 'gzip',
            }),
          }),
          record,
          scope,
        ),
    };
  }

  // No logs exporter installed: run the same serializer the proto exporter uses and POST the
  // bytes exactly as the exporter would (gzip, application/x-protobuf).
  const transformer = tryRequire<{
    ProtobufLogsSerializer?: { serializeRequest(records: unknown[]): Uint8Array | undefined };
  }>('@opentelemetry/otlp-transformer');
  const serializer = transformer?.ProtobufLogsSerializer;
  if (!serializer) {
    return (
      'skipped: neither @opentelemetry/exporter-logs-otlp-proto nor ' +
      'ProtobufLogsSerializer from @opentelemetry/otlp-transformer is available'
    );
  }
  return {
    emit: async (url, record, scope) => {
      const memory = new sdk.InMemoryLogRecordExporter();
      // Read the records before shutdown: the in-memory exporter discards them on shutdown.
      const send = async (): Promise<void> => {
        const records = memory.getFinishedLogRecords();
        assert.equal(records.length, 1, 'the SDK should have produced one log record');
        const bytes = serializer.serializeRequest(records);
        assert.ok(bytes, 'ProtobufLogsSerializer produced no bytes');
        const reply = await post(`${url}/v1/logs`, zlib.gzipSync(bytes), {
          'content-type': 'application/x-protobuf',
          'content-encoding': 'gzip',
        });
        assert.equal(reply.status, 200, reply.body.toString());
        assert.equal(reply.body.length, 0, 'empty ExportLogsServiceResponse');
      };
      const processor = new sdk.SimpleLogRecordProcessor({ exporter: memory });
      await withProvider(processor, record, scope, send);
    },
  };
}
