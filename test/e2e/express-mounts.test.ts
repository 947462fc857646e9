/**
 * Express as real services mount it: sub-apps, routers at any depth, a router under a path with
 * a parameter, and middleware (static files, a proxy) answering below a mount path without a
 * route. The endpoint is the full template with every mount, the same with tracing on and off,
 * and the server span's `http.route` is that same template.
 */
import assert from 'node:assert/strict';
import { type AppProcess, request, startApp } from '../support/app';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';
import { parsePrometheusText, samplesNamed } from '../support/prometheus-text';

const SERVER = 2; // OTLP SpanKind

/** Each request the fixture gets, and the endpoint it must be counted (and routed) under. */
const REQUESTS: readonly { path: string; status: number; endpoint: string; route?: string }[] = [
  { path: '/', status: 200, endpoint: '/', route: '/' },
  { path: '/users/7', status: 200, endpoint: '/users/:id', route: '/users/:id' },
  { path: '/static/file.txt', status: 200, endpoint: '/static/*', route: '/static/*' },
  { path: '/static/', status: 200, endpoint: '/static/*', route: '/static/*' },
  { path: '/proxy/orders/123', status: 200, endpoint: '/proxy/*', route: '/proxy/*' },
  { path: '/proxy/users/8', status: 200, endpoint: '/proxy/*', route: '/proxy/*' },
  { path: '/admin/users/5', status: 200, endpoint: '/admin/users/:id', route: '/admin/users/:id' },
  {
    path: '/admin/inner/deep/3',
    status: 200,
    endpoint: '/admin/inner/deep/:x',
    route: '/admin/inner/deep/:x',
  },
  {
    path: '/orgs/42/repos/otel',
    status: 200,
    endpoint: '/orgs/:id/repos/:repo',
    route: '/orgs/:id/repos/:repo',
  },
  {
    path: '/orgs/43/repos/sdk',
    status: 200,
    endpoint: '/orgs/:id/repos/:repo',
    route: '/orgs/:id/repos/:repo',
  },
  // No route and no mount answered: `__unmatched__`, never a router's or a mount's.
  { path: '/static/missing.txt', status: 404, endpoint: '__unmatched__' },
  { path: '/admin/nope', status: 404, endpoint: '__unmatched__' },
];

/** Endpoints a wrong implementation gives: the path below a mount, merged into real routes. */
const BELOW_A_MOUNT = ['/file.txt', '/index.html', '/orders/:id', '/deep/:x', '/:repo'];

/**
 * The lines of the HTTP series of a /metrics body, sorted: the bodies both runs must share.
 * Only the endpoints the test expects or forbids: on a shared machine a stray client (another
 * test polling a port that has since been reused) may reach the fixture.
 */
function httpSeries(body: string): string[] {
  const known = new Set([...REQUESTS.map((r) => r.endpoint), ...BELOW_A_MOUNT]);
  return body
    .split('\n')
    .filter(
      (line) =>
        (line.startsWith('http_requests_total{') ||
          line.startsWith('http_request_duration_seconds_bucket{') ||
          line.startsWith('http_request_duration_seconds_count{')) &&
        known.has(/endpoint="([^"]*)"/.exec(line)?.[1] ?? ''),
    )
    .sort();
}

async function settledBody(app: AppProcess, total: number): Promise<string> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const body = await app.scrapeText();
    const counted = samplesNamed(parsePrometheusText(body), 'http_requests_total').reduce(
      (n, s) => n + s.value,
      0,
    );
    if (counted >= total || Date.now() > deadline) return body;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('Express mounts: endpoint and http.route with every mount prefix', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver;
  const apps: AppProcess[] = [];
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.stop()));
    receiver.clear();
  });

  async function run(tracing: boolean): Promise<string> {
    const app = await startApp({
      fixture: 'express-mounts.cjs',
      env: {
        OTEL_SERVICE_NAME: 'mounts',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        // One boundary far above any request's duration: bucket counts do not depend on timing.
        DATALAB_HTTP_BUCKETS: '10',
        ...(tracing ? {} : { OTEL_TRACES_EXPORTER: 'none' }),
      },
    });
    apps.push(app);
    for (const r of REQUESTS) assert.equal(await request(app.url(r.path)), r.status, r.path);
    return settledBody(app, REQUESTS.length);
  }

  it('counts every request under its full template, never a path below a mount', async () => {
    const body = await run(false);
    const known = new Set([...REQUESTS.map((r) => r.endpoint), ...BELOW_A_MOUNT]);
    const counters = samplesNamed(parsePrometheusText(body), 'http_requests_total').filter((s) =>
      known.has(String(s.labels.endpoint)),
    );
    const got = Object.fromEntries(
      counters.map((s) => [`${s.labels.endpoint} ${s.labels.status}`, s.value]),
    );
    const expected: Record<string, number> = {};
    for (const r of REQUESTS) {
      const key = `${r.endpoint} ${r.status}`;
      expected[key] = (expected[key] ?? 0) + 1;
    }
    assert.deepEqual(got, expected);
  });

  it('gives identical HTTP series with tracing on and off, and the span http.route is the endpoint', async () => {
    const off = httpSeries(await run(false));
    await Promise.all(apps.splice(0).map((a) => a.stop()));
    const on = httpSeries(await run(true));
    assert.ok(off.length > 0);
    assert.deepEqual(on, off, 'the same /metrics lines for the HTTP series');

    await receiver.waitFor(
      () => receiver.spans.filter((s) => s.kind === SERVER).length >= REQUESTS.length,
      10_000,
      'a server span per request',
    );
    const servers = receiver.spans.filter((s) => s.kind === SERVER);
    const byPath = new Map<string, ReceivedSpan>();
    for (const s of servers) byPath.set(String(s.attributes['url.path']), s);
    for (const r of REQUESTS) {
      const span = byPath.get(r.path);
      assert.ok(span, `a server span for ${r.path}`);
      assert.equal(span.attributes['http.route'], r.route, `http.route of ${r.path}`);
      if (r.route !== undefined) assert.equal(span.name, `GET ${r.route}`, `name of ${r.path}`);
    }
    // instrumentation-express's handler spans carry the same route as their server span.
    const handlers = receiver.spans.filter(
      (s) => s.attributes['express.type'] === 'request_handler',
    );
    assert.ok(handlers.length >= 6, `${handlers.length} handler spans`);
    for (const h of handlers) {
      const server = servers.find((s) => s.traceId === h.traceId);
      assert.equal(h.attributes['http.route'], server?.attributes['http.route'], h.name);
    }
  });
});
