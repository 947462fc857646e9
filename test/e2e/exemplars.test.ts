/**
 * From a latency bucket to its trace: a real Prometheus with exemplar storage on scrapes two
 * Express services under the preload (one sampling every request, one with
 * OTEL_TRACES_SAMPLER=always_off); the exemplars it stores name traces that `datalab-otel trace`
 * finds in the local trace files, under the route of the bucket's series. The text format is
 * still what a text scraper and promtool expect.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AppProcess, freePort, ROOT, startApp } from '../support/app';
import {
  type PrometheusServer,
  requirePrometheusTool,
  startPrometheus,
} from '../support/prometheus-server';
import { parsePrometheusText } from '../support/prometheus-text';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

interface ExemplarSeries {
  seriesLabels: Record<string, string>;
  exemplars: { labels: Record<string, string>; value: string; timestamp: number }[];
}

interface Target {
  labels: Record<string, string>;
  health: string;
  lastError: string;
}

function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      err += c;
    });
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${String(last)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Requests per route template: `/users/:id` and `/items/:name` of express-app.cjs. */
const ROUTES = [
  { route: '/users/:id', path: (i: number) => `/users/${1000 + i}`, count: 7 },
  { route: '/items/:name', path: (i: number) => `/items/thing-${i}`, count: 5 },
];

describe('exemplars: Prometheus (exemplar storage) → trace ID → datalab-otel trace', () => {
  let dir: string;
  let sampled: AppProcess;
  let unsampled: AppProcess;
  let prometheus: PrometheusServer | undefined;
  /** trace ID → route and the correlation ID sent with it (none: the default, the trace ID). */
  const sent = new Map<string, { route: string; correlationId: string | undefined }>();
  /** route → trace ID of its last request. */
  const lastOfRoute = new Map<string, string>();
  let start: number;

  before(async function () {
    const binary = requirePrometheusTool(this, 'prometheus');
    dir = mkdtempSync(join(tmpdir(), 'datalab-exemplars-'));
    const common = { OTEL_BSP_SCHEDULE_DELAY: '100' };
    [sampled, unsampled] = await Promise.all([
      startApp({
        fixture: 'express-app.cjs',
        env: { ...common, OTEL_SERVICE_NAME: 'sampled', DATALAB_TRACES_DIR: join(dir, 'traces') },
      }),
      startApp({
        fixture: 'express-app.cjs',
        env: {
          ...common,
          OTEL_SERVICE_NAME: 'unsampled',
          OTEL_TRACES_SAMPLER: 'always_off',
          DATALAB_TRACES_DIR: join(dir, 'unsampled-traces'),
        },
      }),
    ]);
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: sampled',
      '    static_configs:',
      `      - targets: ['127.0.0.1:${sampled.metricsPort}']`,
      '  - job_name: unsampled',
      '    static_configs:',
      `      - targets: ['127.0.0.1:${unsampled.metricsPort}']`,
      '',
    ].join('\n');
    start = Date.now() / 1000 - 60;
    prometheus = await startPrometheus(binary, config, {}, ['--enable-feature=exemplar-storage']);

    // Requests spread over a few scrapes, so that Prometheus sees several exemplars per series.
    for (const { route, path, count } of ROUTES) {
      for (let i = 0; i < count; i++) {
        // Some requests name their own correlation ID, one too long to fit an exemplar; the
        // last one of each route does, and is the latest exemplar of its bucket at the end.
        const correlationId =
          i === count - 1
            ? `last-${route.length}`
            : i === 1
              ? `long-${'x'.repeat(60)}`
              : i % 2 === 1
                ? `order-${i}`
                : undefined;
        const headers: Record<string, string> =
          correlationId === undefined ? {} : { 'x-correlation-id': correlationId };
        const res = await fetch(sampled.url(path(i)), { headers });
        assert.equal(res.status, 200);
        await res.text();
        const traceId = (res.headers.get('traceresponse') ?? '').split('-')[1];
        assert.match(traceId ?? '', /^[0-9a-f]{32}$/);
        sent.set(traceId as string, { route, correlationId });
        if (i === count - 1) lastOfRoute.set(route, traceId as string);
        const off = await fetch(unsampled.url(path(i)), { headers });
        assert.equal(off.status, 200);
        await off.text();
        await new Promise((r) => setTimeout(r, 150));
      }
    }
    // Prometheus has scraped every request once the counts add up, for both services.
    const expected = ROUTES.reduce((n, r) => n + r.count, 0);
    await waitFor('Prometheus to scrape every request', async () => {
      const rows = await (prometheus as PrometheusServer).query(
        'sum by (job) (http_requests_total)',
      );
      const byJob = Object.fromEntries(rows.map((r) => [r.metric.job, Number(r.value[1])]));
      return byJob.sampled === expected && byJob.unsampled === expected ? true : undefined;
    });
    // And the spans of every request are in the local trace file.
    await waitFor('the spans in the trace file', async () => {
      const text = readdirSync(join(dir, 'traces'))
        .map((f) => readFileSync(join(dir, 'traces', f), 'utf8'))
        .join('');
      return [...sent.keys()].every((id) => text.includes(id)) ? true : undefined;
    });
  });

  after(async () => {
    await Promise.all([sampled?.stop(), unsampled?.stop(), prometheus?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function exemplars(query: string): Promise<ExemplarSeries[]> {
    const params = new URLSearchParams({
      query,
      start: String(start),
      end: String(Date.now() / 1000 + 60),
    });
    return (prometheus as PrometheusServer).api<ExemplarSeries[]>(
      `/api/v1/query_exemplars?${params}`,
    );
  }

  it('scrapes OpenMetrics from both services with no scrape error', async () => {
    const { activeTargets } = await (prometheus as PrometheusServer).api<{
      activeTargets: Target[];
    }>('/api/v1/targets');
    assert.deepEqual(activeTargets.map((t) => t.labels.job).sort(), ['sampled', 'unsampled']);
    for (const target of activeTargets) {
      assert.equal(target.health, 'up', `${target.labels.job}: ${target.lastError}`);
      assert.equal(target.lastError, '', target.labels.job);
    }
    // What Prometheus asked for is what it got: the OpenMetrics form.
    const res = await fetch(`http://127.0.0.1:${sampled.metricsPort}/metrics`, {
      headers: {
        accept:
          'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1',
      },
    });
    assert.equal(
      res.headers.get('content-type'),
      'application/openmetrics-text; version=1.0.0; charset=utf-8',
    );
    const body = await res.text();
    assert.ok(body.endsWith('# EOF\n'));
    assert.match(body, /^http_request_duration_seconds_bucket\{.* # \{trace_id="[0-9a-f]{32}"/m);
  });

  it('stores exemplars of both routes, each naming a sampled request of its route', async () => {
    const series = await exemplars('http_request_duration_seconds_bucket{job="sampled"}');
    const seen = new Map<string, string>();
    for (const s of series) {
      for (const exemplar of s.exemplars) {
        const traceId = exemplar.labels.trace_id as string;
        const request = sent.get(traceId);
        assert.ok(request, `exemplar trace ${traceId} is not one of the requests made`);
        assert.equal(s.seriesLabels.endpoint, request.route, traceId);
        assert.match(exemplar.labels.span_id ?? '', /^[0-9a-f]{16}$/);
        // The correlation ID when it was sent and fits the 128-character label budget.
        const expectedCorrelation =
          request.correlationId !== undefined && request.correlationId.length <= 51
            ? request.correlationId
            : undefined;
        assert.equal(exemplar.labels.correlation_id, expectedCorrelation, traceId);
        // The exemplar lies in its bucket.
        const value = Number(exemplar.value);
        const le = s.seriesLabels.le === '+Inf' ? Infinity : Number(s.seriesLabels.le);
        assert.ok(value > 0 && value <= le, `${value} in le=${s.seriesLabels.le}`);
        seen.set(traceId, request.route);
      }
    }
    assert.deepEqual(
      [...new Set(seen.values())].sort(),
      ROUTES.map((r) => r.route).sort(),
      'exemplars for both routes',
    );
    for (const [route, traceId] of lastOfRoute) {
      assert.equal(seen.get(traceId), route, `the last request of ${route} is an exemplar`);
    }
    assert.ok(
      [...seen.keys()].some((id) => sent.get(id)?.correlationId?.startsWith('last-')),
      'an exemplar carries its correlation ID',
    );

    const counters = await exemplars('http_requests_total{job="sampled"}');
    assert.ok(counters.length >= 2, 'the request counter carries exemplars too');
    for (const s of counters) {
      for (const exemplar of s.exemplars) {
        const request = sent.get(exemplar.labels.trace_id as string);
        assert.ok(request, 'counter exemplar names a request made');
        assert.equal(s.seriesLabels.endpoint, request.route);
        assert.equal(Number(exemplar.value), 1);
      }
    }

    // Each trace ID leads to its trace in the local trace files, with the bucket's route.
    for (const [traceId, route] of seen) {
      const { code, out, err } = await cli(['trace', traceId, '--file', join(dir, 'traces')]);
      assert.equal(code, 0, err);
      assert.match(out, new RegExp(`^trace ${traceId} `, 'm'));
      assert.ok(
        out.includes(`GET ${route}`),
        `trace ${traceId} has no span "GET ${route}":\n${out}`,
      );
    }
  });

  it('stores no exemplar when requests are not sampled, and counts every request', async () => {
    const series = await exemplars('http_request_duration_seconds_bucket{job="unsampled"}');
    assert.deepEqual(
      series.flatMap((s) => s.exemplars),
      [],
    );
    assert.deepEqual(
      (await exemplars('http_requests_total{job="unsampled"}')).flatMap((s) => s.exemplars),
      [],
    );
    const body = await (
      await fetch(`http://127.0.0.1:${unsampled.metricsPort}/metrics`, {
        headers: { accept: 'application/openmetrics-text' },
      })
    ).text();
    assert.doesNotMatch(body, /trace_id/);
    for (const { route, count } of ROUTES) {
      for (const job of ['sampled', 'unsampled']) {
        const [row] = await (prometheus as PrometheusServer).query(
          `sum(http_requests_total{job="${job}",endpoint="${route}"})`,
        );
        assert.equal(Number(row?.value[1]), count, `${job} ${route}`);
        const [buckets] = await (prometheus as PrometheusServer).query(
          `sum(http_request_duration_seconds_bucket{job="${job}",endpoint="${route}",le="+Inf"})`,
        );
        assert.equal(Number(buckets?.value[1]), count, `${job} ${route} +Inf bucket`);
      }
    }
  });

  it('still serves the text format to a text scraper: no exemplars, and promtool accepts it', async function () {
    const promtool = requirePrometheusTool(this, 'promtool');
    const res = await fetch(`http://127.0.0.1:${sampled.metricsPort}/metrics`, {
      headers: { accept: 'text/plain;version=0.0.4' },
    });
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    assert.doesNotMatch(text, /# EOF|trace_id| # \{/);
    assert.match(text, /^# TYPE http_requests_total counter$/m);
    assert.match(text, /^# UNIT http_request_duration_seconds s$/m);
    assert.match(text, /^http_request_duration_seconds_bucket\{.*le="1"\} \d+$/m);
    const samples = parsePrometheusText(text);
    const users = samples.filter(
      (s) => s.name === 'http_requests_total' && s.labels.endpoint === '/users/:id',
    );
    assert.equal(
      users.reduce((n, s) => n + s.value, 0),
      ROUTES[0]?.count,
    );
    // Exit 0: parsed, and no lint finding.
    const result = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(result.error, undefined);
    const findings = `${result.stdout}${result.stderr}`.split('\n').filter((l) => l !== '');
    assert.deepEqual(findings, []);
    assert.equal(result.status, 0);
  });
});

describe('exemplars: a cluster primary shows its workers’ exemplars', () => {
  let app: AppProcess | undefined;
  let dir: string | undefined;
  const workerPids: number[] = [];

  after(async () => {
    await app?.stop();
    for (const pid of workerPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone with the primary.
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves the latest exemplar of its workers, over the IPC channel, with the summed counts', async () => {
    dir = mkdtempSync(join(tmpdir(), 'datalab-exemplars-cluster-'));
    const appPort = await freePort();
    app = await startApp({
      fixture: 'cluster-app.cjs',
      env: { APP_PORT: String(appPort), WORKERS: '2', DATALAB_TRACES_DIR: dir },
    });
    for (const line of app.stdout) {
      if (!line.startsWith('{"event":"listening"')) continue;
      workerPids.push(...(JSON.parse(line) as { workers: number[] }).workers);
    }
    assert.equal(workerPids.length, 2, app.stdout.join('\n'));
    const sent = new Set<string>();
    const workersSeen = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`http://127.0.0.1:${appPort}/cluster/${i}`);
      workersSeen.add(await res.text());
      sent.add((res.headers.get('traceresponse') ?? '').split('-')[1] as string);
    }
    const res = await fetch(`http://127.0.0.1:${app.metricsPort}/metrics`, {
      headers: { accept: 'application/openmetrics-text;version=1.0.0' },
    });
    const body = await res.text();
    assert.ok(body.endsWith('# EOF\n'));
    const exemplarLines = body
      .split('\n')
      .filter((l) => l.startsWith('http_request_duration_seconds_bucket{') && l.includes(' # {'));
    assert.ok(exemplarLines.length > 0, `no exemplar in the primary's scrape:\n${body}`);
    for (const line of [
      ...exemplarLines,
      ...body.split('\n').filter((l) => l.startsWith('http_requests_total{')),
    ]) {
      const traceId = /trace_id="([0-9a-f]{32})"/.exec(line)?.[1];
      assert.ok(traceId !== undefined && sent.has(traceId), `exemplar of a request made: ${line}`);
    }
    // Requests were served by the workers, never by the primary; the counts are their sum.
    assert.ok(workersSeen.size >= 1);
    const total = body
      .split('\n')
      .filter((l) => l.startsWith('http_requests_total{'))
      .reduce((n, l) => n + Number(l.split(' # ')[0]?.split(' ').at(-1)), 0);
    assert.equal(total, 10);
  });
});

describe('exemplars: node:http2 requests', () => {
  let app: AppProcess | undefined;
  let dir: string | undefined;

  after(async () => {
    await app?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('get exemplars like node:http ones', async () => {
    dir = mkdtempSync(join(tmpdir(), 'datalab-exemplars-h2-'));
    app = await startApp({ fixture: 'http2-app.mjs', env: { DATALAB_TRACES_DIR: dir } });
    const session = http2.connect(`http://127.0.0.1:${app.port}`);
    const sent = new Set<string>();
    try {
      for (let i = 0; i < 4; i++) {
        const traceresponse = await new Promise<string>((resolve, reject) => {
          const req = session.request({ ':path': `/users/${i}` });
          req.on('response', (headers) => resolve(String(headers.traceresponse ?? '')));
          req.on('error', reject);
          req.resume();
          req.end();
        });
        sent.add(traceresponse.split('-')[1] as string);
      }
    } finally {
      session.close();
    }
    const body = await (
      await fetch(`http://127.0.0.1:${app.metricsPort}/metrics`, {
        headers: { accept: 'application/openmetrics-text' },
      })
    ).text();
    const lines = body
      .split('\n')
      .filter(
        (l) =>
          (l.startsWith('http_request_duration_seconds_bucket{') ||
            l.startsWith('http_requests_total{')) &&
          l.includes('endpoint="/users/:id"') &&
          l.includes(' # {'),
      );
    assert.ok(
      lines.some((l) => l.startsWith('http_requests_total{')),
      body,
    );
    assert.ok(
      lines.some((l) => l.startsWith('http_request_duration_seconds_bucket{')),
      body,
    );
    for (const line of lines) {
      const traceId = /trace_id="([0-9a-f]{32})"/.exec(line)?.[1];
      assert.ok(traceId !== undefined && sent.has(traceId), `exemplar of a request made: ${line}`);
    }
  });
});
