/**
 * The golden span test: the distro makes inbound node:http server spans itself
 * (request/lifecycle.ts), not with instrumentation-http. The same application gets the same
 * requests twice, once under stock OpenTelemetry with the upstream instrumentations
 * (fixtures/golden-upstream.cjs) and once under the distro, and every span must come out the
 * same: name, kind, parent, status, attribute keys and values, exception events. Timings, IDs and
 * the client's ephemeral port aside; the distro adds `correlation.id` to every span (SPEC §4),
 * checked and then set aside.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { type AppProcess, freePort, startApp } from '../support/app';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';

/** Values that change from one run to the next whatever makes the span. */
const RUN_DEPENDENT = new Set(['network.peer.port']);
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

interface Call {
  readonly method: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** Send to the plain node:http server instead of the Express one. */
  readonly plain?: boolean;
}

// Each call is one trace (the traceparent one continues the caller's): compared trace by trace.
const CALLS: readonly Call[] = [
  { method: 'GET', path: '/users/alice' },
  {
    method: 'GET',
    path: '/users/bob?sig=secret&page=2',
    headers: {
      traceparent: TRACEPARENT,
      'user-agent': 'golden/1.0',
      'x-forwarded-for': '203.0.113.9, 10.0.0.1',
    },
  },
  {
    method: 'POST',
    path: '/users',
    headers: { 'content-type': 'application/json' },
    body: '{"name":"carol"}',
  },
  { method: 'GET', path: '/fail' },
  { method: 'GET', path: '/crash' },
  { method: 'GET', path: '/no/such/route' },
  { method: 'GET', path: '/plain/a.b/%7Efoo?z=1', plain: true },
  { method: 'PURGE', path: '/plain/cache', plain: true },
  {
    method: 'GET',
    path: '/plain/hosted',
    plain: true,
    headers: { host: 'Example.COM:8443', 'x-forwarded-proto': 'https' },
  },
  {
    method: 'GET',
    path: '/plain/forwarded',
    plain: true,
    headers: { forwarded: 'for="[2001:db8::17]:4711";proto=https;host=api.example.org' },
  },
  { method: 'GET', path: '/plain/../up/./x', plain: true },
];

function send(port: number, call: Call): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: call.method, path: call.path, headers: call.headers },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(call.body);
  });
}

/** A span in a form two runs can share: parent by position, run-dependent values masked. */
function canonical(span: ReceivedSpan, byId: Map<string, ReceivedSpan>, depth = 0): string {
  const attributes: Record<string, unknown> = {};
  for (const key of Object.keys(span.attributes).sort()) {
    if (key === 'correlation.id') continue;
    attributes[key] = RUN_DEPENDENT.has(key) ? '<masked>' : span.attributes[key];
  }
  const parent = byId.get(span.parentSpanId);
  const parentForm =
    parent !== undefined && depth < 20
      ? canonical(parent, byId, depth + 1)
      : span.parentSpanId
        ? `remote:${span.parentSpanId}`
        : 'root';
  return JSON.stringify(
    {
      name: span.name,
      kind: span.kind,
      status: span.status,
      attributes,
      events: span.events.map((e) => ({
        name: e.name,
        keys: Object.keys(e.attributes).sort(),
        message: e.attributes['exception.message'],
      })),
      parent: parentForm,
    },
    (_k, v) => (typeof v === 'bigint' ? v.toString() : v),
  );
}

/** Each call's trace, as a sorted list of canonical spans. */
function tracesOf(spans: ReceivedSpan[], order: string[]): string[][] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const byTrace = new Map<string, string[]>();
  for (const span of spans) {
    const list = byTrace.get(span.traceId) ?? [];
    list.push(canonical(span, byId));
    byTrace.set(span.traceId, list);
  }
  return order.map((traceId) => (byTrace.get(traceId) ?? []).sort());
}

async function run(
  receiver: OtlpReceiver,
  ports: { app: number; plain: number },
  distro: boolean,
): Promise<{ spans: ReceivedSpan[]; traceOrder: string[]; statuses: number[] }> {
  receiver.clear();
  const app: AppProcess = await startApp({
    fixture: 'golden-app.cjs',
    preload: distro ? 'import' : 'none',
    nodeArgs: distro
      ? []
      : ['--require', require.resolve('../../../test/fixtures/golden-upstream.cjs')],
    waitForMetrics: distro,
    env: {
      PORT: String(ports.app),
      PLAIN_PORT: String(ports.plain),
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
      OTEL_SERVICE_NAME: 'golden',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      DATALAB_TRACES_FILE: 'false',
    },
  });
  const statuses: number[] = [];
  const traceOrder: string[] = [];
  try {
    for (const call of CALLS) {
      const before = new Set(receiver.spans.map((s) => s.traceId));
      statuses.push(await send(call.plain ? ports.plain : ports.app, call));
      // One call at a time, each trace whole before the next: the server span ends last.
      await receiver.waitFor(
        () => receiver.spans.some((s) => s.kind === 2 && !before.has(s.traceId)),
        10_000,
        `the server span of ${call.method} ${call.path}`,
      );
      const fresh = receiver.spans.find((s) => s.kind === 2 && !before.has(s.traceId));
      traceOrder.push(fresh?.traceId ?? '');
    }
    // Let the last spans of each trace (client spans ended after the server's) arrive.
    await new Promise((r) => setTimeout(r, 400));
  } finally {
    await app.stop();
  }
  return { spans: [...receiver.spans], traceOrder, statuses };
}

describe('golden spans: the distro’s server spans equal instrumentation-http’s', function () {
  this.timeout(120_000);
  let receiver: OtlpReceiver;
  let upstream: Awaited<ReturnType<typeof run>>;
  let distro: Awaited<ReturnType<typeof run>>;

  before(async () => {
    receiver = await startOtlpReceiver();
    const ports = { app: await freePort(), plain: await freePort() };
    upstream = await run(receiver, ports, false);
    distro = await run(receiver, ports, true);
  });
  after(async () => {
    await receiver?.close();
  });

  it('answers every call the same way under both', () => {
    assert.deepEqual(distro.statuses, upstream.statuses);
    assert.deepEqual(upstream.statuses.slice(0, 6), [200, 200, 201, 502, 500, 404]);
  });

  it('puts a correlation.id on every distro span and none on upstream’s', () => {
    assert.ok(distro.spans.length > 0);
    for (const span of distro.spans) {
      assert.equal(typeof span.attributes['correlation.id'], 'string', span.name);
    }
    assert.ok(upstream.spans.every((s) => s.attributes['correlation.id'] === undefined));
  });

  it('makes its server spans itself, not through instrumentation-http', () => {
    const servers = distro.spans.filter((s) => s.kind === 2);
    assert.ok(servers.length >= CALLS.length);
    for (const span of servers) assert.equal(span.scope, '@datalab/otel', span.name);
    assert.ok(
      upstream.spans
        .filter((s) => s.kind === 2)
        .every((s) => s.scope === '@opentelemetry/instrumentation-http'),
    );
  });

  CALLS.forEach((call, i) => {
    it(`${call.method} ${call.path}${call.plain ? ' (plain node:http)' : ''}: the same spans`, () => {
      const expected = tracesOf(upstream.spans, upstream.traceOrder)[i] as string[];
      const actual = tracesOf(distro.spans, distro.traceOrder)[i] as string[];
      assert.ok(expected.length > 0, 'upstream made no spans for this call');
      assert.deepEqual(actual, expected);
    });
  });

  it('covers node:http server and client, fetch, Express, pg and ioredis spans', () => {
    const scopes = new Set(upstream.spans.map((s) => s.scope));
    for (const scope of [
      '@opentelemetry/instrumentation-http',
      '@opentelemetry/instrumentation-undici',
      '@opentelemetry/instrumentation-express',
      '@opentelemetry/instrumentation-pg',
      '@opentelemetry/instrumentation-ioredis',
    ]) {
      assert.ok(scopes.has(scope), `no span from ${scope}`);
    }
  });
});
