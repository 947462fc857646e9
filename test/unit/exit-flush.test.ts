import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { context, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { ExportResultCode, TraceState } from '@opentelemetry/core';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import {
  flushAtExit,
  fromWire,
  senderEnv,
  takeQueued,
  toWire,
  trackInFlight,
} from '../../src/exit-flush';
import { FileSpanExporter } from '../../src/traces/file-exporter';

const decode = (bytes: Uint8Array | undefined) => JSON.parse(new TextDecoder().decode(bytes));

function spans(): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'svc', 'host.name': 'h' }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const tracer = provider.getTracer('scope-a', '1.2.3');
  const remote = trace.setSpanContext(context.active(), {
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: 'b7ad6b7169203331',
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
    traceState: new TraceState('vendor=abc,other=1'),
  });
  const server = tracer.startSpan(
    'GET',
    {
      kind: SpanKind.SERVER,
      attributes: { 'url.path': '/x', list: ['a', 'b'], n: 3, ok: true },
      links: [
        {
          context: { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 1 },
          attributes: { why: 'batch' },
        },
      ],
    },
    remote,
  );
  server.addEvent('exception', { 'exception.message': 'boom' });
  server.setStatus({ code: SpanStatusCode.ERROR, message: 'failed' });
  const child = tracer.startSpan(
    'SELECT',
    { kind: SpanKind.CLIENT },
    trace.setSpan(remote, server),
  );
  child.end();
  server.end();
  return exporter.getFinishedSpans();
}

describe('exit flush', () => {
  it("the sender's environment: no NODE_OPTIONS nor debugging variables, the OTEL_* of the start", () => {
    const env = senderEnv(
      {
        PATH: '/bin',
        NODE_OPTIONS: '--import @datalab/otel/register --inspect',
        NODE_DEBUG: 'http',
        NODE_V8_COVERAGE: '/tmp/cov',
        pm2_env: '{"OTEL_EXPORTER_OTLP_ENDPOINT":"http://collector:4318"}',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://changed-later:4318',
        OTEL_EXPORTER_OTLP_HEADERS: 'x-late=1',
        NODE_ENV: 'production',
      },
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
    );
    assert.deepEqual(env, {
      PATH: '/bin',
      NODE_ENV: 'production',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_SDK_DISABLED: 'true',
    });
  });

  it('a span through the JSON wire serialises to the same OTLP request', () => {
    const original = spans();
    assert.equal(original.length, 2);
    const resource = resourceFromAttributes(original[0]?.resource.attributes ?? {});
    const rebuilt = (
      JSON.parse(JSON.stringify(original.map(toWire))) as ReturnType<typeof toWire>[]
    ).map((w) => fromWire(w, resource, (s) => new TraceState(s)));
    assert.deepEqual(
      decode(JsonTraceSerializer.serializeRequest(rebuilt)),
      decode(JsonTraceSerializer.serializeRequest(original)),
    );
  });

  it('takes what a batch processor holds, and what its exporter is still sending', () => {
    let finish: ((code: ExportResultCode) => void) | undefined;
    const tracked = trackInFlight({
      export: (_batch, done) => {
        finish = (code) => done({ code });
      },
      shutdown: async () => {},
    });
    const processor = new BatchSpanProcessor({ exporter: tracked, scheduledDelayMillis: 60_000 });
    const [a, b] = spans();
    processor.onEnd(a as ReadableSpan);
    void processor.forceFlush();
    assert.deepEqual(tracked.inFlight(), [a], 'the batch being sent');
    processor.onEnd(b as ReadableSpan);
    assert.deepEqual(takeQueued(processor), [b]);
    assert.deepEqual(takeQueued(processor), [], 'taken out');
    finish?.(ExportResultCode.SUCCESS);
    assert.deepEqual(tracked.inFlight(), [], 'sent');
  });

  it('the trace file gets, synchronously, the lines still queued and the spans handed over', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'exit-file-'));
    try {
      const file = new FileSpanExporter({ dir, maxTotalBytes: 1_000_000, name: 'svc' });
      const [a, b] = spans() as [ReadableSpan, ReadableSpan];
      const results: ExportResultCode[] = [];
      file.export([a], (r) => results.push(r.code));
      // Nothing has reached the disk yet (the write is queued behind a mkdir).
      file.exportSync([b]);
      const text = readdirSync(dir)
        .map((n) => readFileSync(join(dir, n), 'utf8'))
        .join('');
      assert.equal(text.trim().split('\n').length, 2, text);
      assert.match(text, /"name":"GET"/);
      assert.match(text, /"name":"SELECT"/);
      await file.forceFlush();
      const after = readdirSync(dir)
        .map((n) => readFileSync(join(dir, n), 'utf8'))
        .join('');
      assert.equal(after, text, 'the queued write does not add the line a second time');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('exit flush: requests still open', () => {
  it('each span ends with the status its request was counted with; spans already ended are left alone', () => {
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({
      spanProcessors: [new SimpleSpanProcessor({ exporter })],
    });
    const tracer = provider.getTracer('t');
    const unanswered = tracer.startSpan('GET', { kind: SpanKind.SERVER });
    const streaming = tracer.startSpan('GET', { kind: SpanKind.SERVER });
    const ended = tracer.startSpan('GET', { kind: SpanKind.SERVER });
    ended.setAttribute('http.response.status_code', 200);
    ended.end();
    const failure = flushAtExit(
      {
        spanQueues: [],
        resource: { attributes: {} },
        protocol: { traces: 'http/protobuf', metrics: 'http/protobuf' },
      },
      () => [
        { span: unanswered, status: 500 },
        { span: streaming, status: 200 },
        { span: ended, status: 500 },
      ],
      100,
    );
    assert.equal(failure, undefined);
    const [done, first, second] = exporter.getFinishedSpans();
    assert.equal(done?.attributes['http.response.status_code'], 200);
    assert.equal(done?.status.code, SpanStatusCode.UNSET, 'an ended span is not changed');
    assert.equal(first?.attributes['http.response.status_code'], 500);
    assert.equal(first?.attributes['error.type'], '500');
    assert.equal(first?.status.code, SpanStatusCode.ERROR);
    assert.equal(second?.attributes['http.response.status_code'], 200);
    assert.equal(second?.attributes['error.type'], undefined);
    assert.equal(second?.status.code, SpanStatusCode.UNSET);
    assert.equal(exporter.getFinishedSpans().length, 3);
  });
});
