/**
 * The preload end to end: real fixture services (which never import @datalab/otel) started with
 * --import, --require or NODE_OPTIONS, a known mix of requests, then the real /metrics scrape
 * and the spans an OTLP receiver decoded from the wire.
 */
import assert from 'node:assert/strict';
import { DEFAULT_HTTP_BUCKETS } from '../../src/config';
import { type AppProcess, request, type StartOptions, startApp } from '../support/app';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';
import { type Sample, samplesNamed, sumOf } from '../support/prometheus-text';

const SERVER = 2; // OTLP SpanKind
const SEED_BUCKETS = ['0.1', '0.25', '0.5', '1', '2.5', '5', '10'];

/** The mix every fixture receives, and what each request must be counted as. */
interface Expected {
  method: string;
  path: string;
  status: string;
  count: number;
}
const MIX: Expected[] = [
  { method: 'GET', path: '/users/N', status: '200', count: 50 },
  { method: 'GET', path: '/error', status: '500', count: 3 },
  { method: 'GET', path: '/throw', status: '500', count: 2 },
  { method: 'GET', path: '/no-such-page', status: '404', count: 4 },
  { method: 'POST', path: '/users', status: '201', count: 5 },
  { method: 'GET', path: '/abort', status: '500', count: 1 },
];
const TOTAL = MIX.reduce((n, e) => n + e.count, 0);

async function sendMix(app: AppProcess): Promise<void> {
  for (let i = 1; i <= 50; i++) assert.equal(await request(app.url(`/users/${i}`)), 200);
  for (const e of MIX) {
    if (e.path === '/users/N') continue;
    for (let i = 0; i < e.count; i++) {
      const status = await request(app.url(e.path), {
        method: e.method,
        headers: { 'content-type': 'application/json' },
        body: e.method === 'POST' ? '{"name":"x"}' : undefined,
      });
      // The server drops /abort without an answer.
      assert.equal(status, e.path === '/abort' ? 0 : Number(e.status), `${e.method} ${e.path}`);
    }
  }
}

/** Express routed /no-such-page to no route: `__unmatched__`; plain node:http keeps the path. */
function endpointFor(path: string, framework: boolean): string {
  if (framework && path === '/no-such-page') return '__unmatched__';
  return path === '/users/N' ? '/users/:id' : path;
}

/** Waits until the counter has seen every request: the abort's close can lag its client. */
async function scrapeSettled(app: AppProcess, total: number): Promise<Sample[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const samples = await app.scrape();
    if (sumOf(samplesNamed(samples, 'http_requests_total')) >= total || Date.now() > deadline) {
      return samples;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function assertRedMetrics(samples: Sample[], service: string, framework: boolean): void {
  const counters = samplesNamed(samples, 'http_requests_total');
  for (const s of counters) {
    assert.deepEqual(Object.keys(s.labels).sort(), ['endpoint', 'method', 'service', 'status']);
    assert.equal(s.labels.service, service);
  }
  assert.equal(sumOf(counters), TOTAL, 'every request counted exactly once');
  for (const e of MIX) {
    const matching = counters.filter(
      (s) =>
        s.labels.method === e.method &&
        s.labels.endpoint === endpointFor(e.path, framework) &&
        s.labels.status === e.status,
    );
    assert.equal(matching.length, 1, `one series for ${e.method} ${e.path} ${e.status}`);
    assert.equal(matching[0]?.value, e.count, `count of ${e.method} ${e.path}`);
  }
  assert.equal(
    counters.filter((s) => s.labels.endpoint?.startsWith('/users/')).length,
    1,
    '/users/1../users/50 are one series',
  );
  assert.ok(!counters.some((s) => s.labels.endpoint === '/metrics'), 'own server not counted');

  const buckets = samplesNamed(samples, 'http_request_duration_seconds_bucket');
  const counts = samplesNamed(samples, 'http_request_duration_seconds_count');
  for (const s of [...counts, ...samplesNamed(samples, 'http_request_duration_seconds_sum')]) {
    assert.deepEqual(Object.keys(s.labels).sort(), ['endpoint', 'method', 'service']);
    assert.equal(s.labels.service, service);
  }
  for (const s of buckets) {
    assert.deepEqual(Object.keys(s.labels).sort(), ['endpoint', 'le', 'method', 'service']);
  }
  assert.equal(sumOf(counts), TOTAL);
  const les = new Set(buckets.map((s) => s.labels.le));
  for (const le of SEED_BUCKETS) assert.ok(les.has(le), `bucket le=${le} present`);
  assert.ok(les.has('0.005'), 'a bucket finer than 0.1');

  const active = samplesNamed(samples, 'http_requests_active');
  assert.equal(active.length, 1);
  assert.deepEqual(active[0]?.labels, { service });
  assert.equal(active[0]?.value, 0);

  for (const s of samples) {
    assert.ok(!('otel_scope_name' in s.labels), `no scope labels on ${s.name}`);
  }
}

function serverSpans(receiver: OtlpReceiver): ReceivedSpan[] {
  return receiver.spans.filter((s) => s.kind === SERVER);
}

interface Variant {
  readonly title: string;
  readonly start: StartOptions;
  readonly framework: boolean;
}

const VARIANTS: Variant[] = [
  {
    title: 'ESM Express app with --import',
    start: { fixture: 'express-app.mjs', preload: 'import' },
    framework: true,
  },
  {
    title: 'CommonJS Express app with --require',
    start: { fixture: 'express-app.cjs', preload: 'require' },
    framework: true,
  },
  {
    title: 'plain node:http app with --import',
    start: { fixture: 'plain-http-app.mjs', preload: 'import' },
    framework: false,
  },
];

describe('preload: HTTP metrics and traces', () => {
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;

  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  beforeEach(() => receiver.clear());
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  for (const variant of VARIANTS) {
    describe(variant.title, () => {
      it('counts every request exactly, with the contract labels, and exports one server span each', async () => {
        app = await startApp({
          ...variant.start,
          env: {
            OTEL_SERVICE_NAME: 'orders-api',
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
            OTEL_BSP_SCHEDULE_DELAY: '100',
          },
        });
        await sendMix(app);
        // Scraping must not count or trace the scrape itself.
        await app.scrape();
        assertRedMetrics(await scrapeSettled(app, TOTAL), 'orders-api', variant.framework);

        await receiver.waitFor(() => serverSpans(receiver).length >= TOTAL, 10_000, 'server spans');
        const spans = serverSpans(receiver);
        assert.equal(spans.length, TOTAL, 'one SERVER span per request, none for /metrics');
        assert.ok(spans.every((s) => s.resource['service.name'] === 'orders-api'));
        assert.ok(spans.every((s) => s.resource['telemetry.distro.name'] === '@datalab/otel'));
        if (variant.framework) {
          const users = spans.filter((s) => s.attributes['http.route'] === '/users/:id');
          assert.equal(users.length, 50, 'http.route on the Express spans');
        }
        assert.ok(app.warnings().length === 0, `no warnings: ${app.warnings().join('\n')}`);
      });

      it('metrics only (no span sink): the same counts and labels, and no span made', async () => {
        app = await startApp({
          ...variant.start,
          env: {
            OTEL_SERVICE_NAME: 'orders-api',
            OTEL_TRACES_EXPORTER: 'none',
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
            OTEL_BSP_SCHEDULE_DELAY: '100',
          },
        });
        await sendMix(app);
        if (variant.framework) {
          // Without instrumentation-express the template comes from Express's own properties.
          for (const slug of ['red', 'blue']) await request(app.url(`/api/v1/things/${slug}`));
        }
        const samples = await scrapeSettled(app, TOTAL + (variant.framework ? 2 : 0));
        const counters = samplesNamed(samples, 'http_requests_total');
        if (variant.framework) {
          const nested = counters.filter((s) => s.labels.endpoint?.startsWith('/api/v1/'));
          assert.deepEqual(
            Object.fromEntries(
              nested.map((s) => [`${s.labels.endpoint} ${s.labels.status}`, s.value]),
            ),
            { '/api/v1/things/:slug 200': 2 },
          );
          assertRedMetrics(
            samples.filter((s) => !s.labels.endpoint?.startsWith('/api/v1/')),
            'orders-api',
            true,
          );
        } else {
          assertRedMetrics(samples, 'orders-api', false);
        }
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(receiver.spans.length, 0, 'no span exported');
        assert.ok(app.warnings().length === 0, `no warnings: ${app.warnings().join('\n')}`);
      });

      if (variant.framework) {
        it('labels by route template, nested routers included; unmatched paths are not credited to a router', async () => {
          app = await startApp(variant.start);
          for (const name of ['abc', 'def', 'ghi']) await request(app.url(`/items/${name}`));
          for (const slug of ['red', 'blue']) await request(app.url(`/api/v1/things/${slug}`));
          assert.equal(await request(app.url('/api/v1/nope')), 404);
          const counters = samplesNamed(await app.scrape(), 'http_requests_total');
          const byEndpoint = Object.fromEntries(
            counters.map((s) => [`${s.labels.endpoint} ${s.labels.status}`, s.value]),
          );
          assert.deepEqual(byEndpoint, {
            '/items/:name 200': 3,
            '/api/v1/things/:slug 200': 2,
            '__unmatched__ 404': 1,
          });
        });

        it('traces Express and a pg query made in the handler', async () => {
          app = await startApp({
            ...variant.start,
            env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' },
          });
          assert.equal(await request(app.url('/db')), 200);
          await receiver.waitFor(
            () => receiver.spans.some((s) => s.scope.includes('instrumentation-pg')),
            10_000,
            'pg span',
          );
          await receiver.waitFor(() => serverSpans(receiver).length === 1, 10_000, 'server span');
          const server = serverSpans(receiver)[0] as ReceivedSpan;
          const inTrace = receiver.spans.filter((s) => s.traceId === server.traceId);
          assert.ok(
            inTrace.some((s) => s.scope.includes('instrumentation-express')),
            `express spans in the trace: ${inTrace.map((s) => `${s.scope}:${s.name}`).join(', ')}`,
          );
          const queries = inTrace.filter(
            (s) => s.scope.includes('instrumentation-pg') && s.attributes['db.query.text'],
          );
          assert.equal(queries.length, 1, 'one pg query span in the request trace');
          assert.equal(queries[0]?.kind, 3, 'a CLIENT span');
          // Inline literals are replaced before export.
          assert.equal(queries[0]?.attributes['db.query.text'], 'SELECT ? AS one');
        });
      }
    });
  }

  it('counts exactly with OTEL_TRACES_SAMPLER=always_off, and exports no spans', async () => {
    app = await startApp({
      fixture: 'express-app.mjs',
      env: {
        OTEL_SERVICE_NAME: 'sampled-out',
        OTEL_TRACES_SAMPLER: 'always_off',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    await sendMix(app);
    assertRedMetrics(await scrapeSettled(app, TOTAL), 'sampled-out', true);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(receiver.spans.length, 0);
  });

  it('pushes the same metric names and labels over OTLP', async () => {
    app = await startApp({
      fixture: 'express-app.mjs',
      env: {
        OTEL_SERVICE_NAME: 'pushed',
        OTEL_METRICS_EXPORTER: 'otlp,prometheus',
        OTEL_TRACES_EXPORTER: 'none',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_METRIC_EXPORT_INTERVAL: '300',
      },
    });
    for (let i = 1; i <= 5; i++) await request(app.url(`/users/${i}`));
    await receiver.waitFor(
      () =>
        receiver.metrics.some(
          (m) => m.name === 'http_requests_total' && m.dataPoints.some((p) => p.value === 5),
        ),
      10_000,
      'http_requests_total over OTLP',
    );
    const counter = receiver.metrics.findLast((m) => m.name === 'http_requests_total');
    assert.equal(counter?.type, 'sum');
    assert.equal(counter?.monotonic, true);
    const point = counter?.dataPoints.find((p) => p.value === 5);
    assert.deepEqual(point?.attributes, {
      method: 'GET',
      endpoint: '/users/:id',
      status: '200',
      service: 'pushed',
    });
    const histogram = receiver.metrics.findLast((m) => m.name === 'http_request_duration_seconds');
    assert.equal(histogram?.type, 'histogram');
    assert.deepEqual(Object.keys(histogram?.dataPoints[0]?.attributes ?? {}).sort(), [
      'endpoint',
      'method',
      'service',
    ]);
    assert.deepEqual(histogram?.dataPoints[0]?.explicitBounds, [...DEFAULT_HTTP_BUCKETS]);
    assert.ok(receiver.metrics.some((m) => m.name === 'http_requests_active'));
    assert.equal(receiver.spans.length, 0, 'OTEL_TRACES_EXPORTER=none sends no spans');
  });

  it('caps distinct endpoints: 1,000 unmatched paths make at most the cap plus one overflow', async () => {
    app = await startApp({ fixture: 'plain-http-app.mjs', env: { DATALAB_MAX_ENDPOINTS: '200' } });
    for (let i = 0; i < 1000; i++) await request(app.url(`/scan/probe-${i}-x`));
    const counters = samplesNamed(await scrapeSettled(app, 1000), 'http_requests_total');
    const endpoints = new Set(counters.map((s) => s.labels.endpoint));
    assert.equal(endpoints.size, 201);
    assert.ok(endpoints.has('__overflow__'));
    assert.equal(sumOf(counters), 1000, 'overflowed requests are still counted');
    const overflow = app.warnings().filter((w) => w.includes('DLOTEL_ENDPOINT_OVERFLOW'));
    assert.equal(overflow.length, 1, 'one warning when the cap is first reached');
  });
});
