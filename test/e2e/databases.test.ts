/**
 * PostgreSQL and Redis, for real: a fixture service with a pg Pool (max 5) and an ioredis client
 * under the preload. Pool and process metrics against what the kernel and the pool really hold,
 * spans under the request, errors unchanged for the application, and secret markers that must
 * never reach an exported payload, a log line or /metrics.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AppProcess, freePort, ROOT, request, startApp } from '../support/app';
import {
  ancestors,
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
} from '../support/otlp-receiver';
import { samplesNamed, sumOf } from '../support/prometheus-text';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

function marker(kind: string): string {
  return `${kind}_${randomBytes(6).toString('hex')}`;
}

const MARKERS = {
  MARKER_PARAM: marker('param'),
  MARKER_INLINE: marker('inline'),
  MARKER_NUMBER: String(900_000_000 + Math.floor(Math.random() * 99_999_999)),
  MARKER_REDIS: marker('redisvalue'),
  MARKER_PG_PASSWORD: marker('pgpass'),
  MARKER_REDIS_PASSWORD: marker('redispass'),
};

async function dbEnv(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    ...MARKERS,
    // Trust auth ignores the password, so it can be a marker.
    DATABASE_URL: `postgres://postgres:${MARKERS.MARKER_PG_PASSWORD}@127.0.0.1:5432/test`,
    REDIS_URL: `redis://:${MARKERS.MARKER_REDIS_PASSWORD}@127.0.0.1:6379`,
    CLOSED_PORT: String(await freePort()),
    ...extra,
  };
}

function vmRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  assert.ok(kb, 'VmRSS in /proc/<pid>/status');
  return Number(kb) * 1024;
}

describe('PostgreSQL and Redis', () => {
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    receiver.clear();
  });

  it('database_connections_active shows the connections checked out of the pool', async () => {
    app = await startApp({ fixture: 'db-app.mjs', env: await dbEnv() });
    const running = app;
    const inFlight = Array.from({ length: 20 }, () => request(running.url('/sleep')));
    // 20 requests hold the pool's 5 connections in pg_sleep(0.5) for about 2 s in total.
    await new Promise((r) => setTimeout(r, 250));
    const during = samplesNamed(await app.scrape(), 'database_connections_active');
    assert.deepEqual(
      during.map((s) => [s.labels, s.value]),
      [[{ service: 'fixture-service' }, 5]],
    );
    assert.deepEqual(await Promise.all(inFlight), Array(20).fill(200));
    const samples = await app.scrape();
    assert.equal(samplesNamed(samples, 'database_connections_active')[0]?.value, 0);

    const selects = samplesNamed(samples, 'db_client_operation_duration_seconds_count').filter(
      (s) => s.labels.db_system === 'postgresql' && s.labels.operation === 'SELECT',
    );
    assert.equal(selects.length, 1);
    assert.deepEqual(Object.keys(selects[0]?.labels ?? {}).sort(), [
      'db_system',
      'operation',
      'service',
    ]);
    assert.ok((selects[0]?.value ?? 0) >= 20, 'every query timed');
    const sum = samplesNamed(samples, 'db_client_operation_duration_seconds_sum').find(
      (s) => s.labels.db_system === 'postgresql' && s.labels.operation === 'SELECT',
    );
    assert.ok((sum?.value ?? 0) >= 20 * 0.5, 'pg_sleep(0.5) shows in the durations');
  });

  it('memory_usage_bytes is the resident set size the kernel reports', async () => {
    app = await startApp({ fixture: 'db-app.mjs', env: await dbEnv() });
    for (let i = 0; i < 5; i++) {
      const before = vmRssBytes(app.pid);
      const reported = samplesNamed(await app.scrape(), 'memory_usage_bytes')[0]?.value ?? 0;
      const afterRss = vmRssBytes(app.pid);
      const kernel = (before + afterRss) / 2;
      assert.ok(
        Math.abs(reported - kernel) / kernel < 0.1,
        `memory_usage_bytes ${reported} vs VmRSS ${kernel}`,
      );
    }
  });

  it('pg and Redis spans sit under the request, with stable attributes, and no value leaks', async () => {
    app = await startApp({
      fixture: 'db-app.mjs',
      env: await dbEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        OTEL_METRICS_EXPORTER: 'prometheus,otlp',
        OTEL_METRIC_EXPORT_INTERVAL: '300',
      }),
    });
    assert.equal(await request(app.url('/orders/7')), 200);
    assert.equal(await request(app.url('/bad-param')), 500);
    assert.equal(await request(app.url('/missing-table')), 500);
    await receiver.waitFor(
      () => receiver.spans.filter((s) => s.kind === SERVER).length === 3,
      10_000,
      'three server spans',
    );
    await receiver.waitFor(() => receiver.metrics.length > 0, 10_000, 'OTLP metrics');

    const orders = receiver.spans.find(
      (s) => s.kind === SERVER && s.attributes['http.route'] === '/orders/:id',
    ) as ReceivedSpan;
    const inTrace = receiver.spans.filter((s) => s.traceId === orders.traceId);
    const pgQueries = inTrace.filter(
      (s) => s.attributes['db.system.name'] === 'postgresql' && s.attributes['db.query.text'],
    );
    const redisCommands = inTrace.filter((s) => s.attributes['db.system.name'] === 'redis');
    assert.equal(pgQueries.length, 1, 'one span for the one query');
    assert.deepEqual(
      redisCommands.map((s) => s.attributes['db.query.text']),
      ['set order:7', 'get order:7'],
      'command and key only',
    );
    for (const span of [...pgQueries, ...redisCommands]) {
      assert.equal(span.kind, CLIENT);
      assert.ok(
        ancestors(receiver.spans, span).some((a) => a.spanId === orders.spanId),
        `${span.name} is under the request's server span`,
      );
      assert.equal(span.attributes['server.address'], '127.0.0.1');
      assert.equal(typeof span.attributes['server.port'], 'number');
    }
    const pg = pgQueries[0] as ReceivedSpan;
    assert.equal(pg.attributes['db.namespace'], 'test');
    assert.match(
      String(pg.attributes['db.query.text']),
      /^SELECT \$1::text AS ref, id FROM \(VALUES \(\?\)\) AS t\(id\)\s+WHERE \? <> \? AND id < \?$/,
    );
    assert.equal(redisCommands[0]?.attributes['db.operation.name'], 'set');

    // The failing queries: error spans, with a sanitised message.
    const failed = receiver.spans.filter(
      (s) => s.attributes['db.system.name'] === 'postgresql' && s.status.code === ERROR,
    );
    assert.equal(failed.length, 2, failed.map((s) => s.name).join(', '));
    for (const span of failed) {
      assert.ok(
        span.events.some((e) => e.name === 'exception'),
        'exception recorded',
      );
    }

    // Secret markers: nowhere in what left the process, nor in its output, nor on /metrics.
    const metricsText = await app.scrapeText();
    const haystacks = [
      ...receiver.bodies.map((b) => ({ what: `OTLP ${b.path}`, text: b.raw.toString('latin1') })),
      { what: 'stdout', text: app.stdout.join('\n') },
      { what: 'stderr', text: app.stderr.join('\n') },
      { what: '/metrics', text: metricsText },
    ];
    assert.ok(receiver.bodies.some((b) => b.path === '/v1/traces'));
    assert.ok(receiver.bodies.some((b) => b.path === '/v1/metrics'));
    for (const [name, value] of Object.entries(MARKERS)) {
      for (const { what, text } of haystacks) {
        assert.ok(!text.includes(value), `${name} leaked into ${what}`);
      }
    }
  });

  it('a missing table and a Redis port that refuses: error spans, and the app sees exactly what it would without the distro', async () => {
    const env = await dbEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    const answers = async (target: AppProcess) => {
      const out: Record<string, { status: number; body: string }> = {};
      for (const path of ['/missing-table', '/redis-down', '/bad-param']) {
        const res = await fetch(target.url(path));
        out[path] = { status: res.status, body: await res.text() };
      }
      return out;
    };
    const bare = await startApp({ fixture: 'db-app.mjs', preload: 'none', env });
    const withoutDistro = await answers(bare);
    await bare.stop();
    assert.equal(receiver.spans.length, 0);

    app = await startApp({ fixture: 'db-app.mjs', env });
    const withDistro = await answers(app);
    assert.deepEqual(withDistro, withoutDistro);
    assert.equal(withDistro['/missing-table']?.status, 500);
    assert.match(withDistro['/missing-table']?.body ?? '', /42P01/);

    await receiver.waitFor(
      () =>
        receiver.spans.some(
          (s) => s.attributes['db.system.name'] === 'redis' && s.status.code === ERROR,
        ),
      10_000,
      'redis error span',
    );
    const redisError = receiver.spans.find(
      (s) => s.attributes['db.system.name'] === 'redis' && s.status.code === ERROR,
    );
    assert.equal(redisError?.kind, CLIENT);
    assert.ok(redisError?.events.some((e) => e.name === 'exception'));
    assert.ok(
      receiver.spans.some(
        (s) => s.attributes['db.system.name'] === 'postgresql' && s.status.code === ERROR,
      ),
    );
    assert.deepEqual(app.warnings(), []);
  });

  it('calls outside a request are traced only with DATALAB_DB_ROOT_SPANS=true, and timed always', async () => {
    const startupSpans = () =>
      receiver.spans.filter((s) => s.attributes['db.query.text'] === 'SELECT ? AS startup');
    const env = await dbEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    app = await startApp({ fixture: 'db-app.mjs', env });
    assert.equal(await request(app.url('/orders/1')), 200);
    await receiver.waitFor(() => receiver.spans.some((s) => s.kind === SERVER), 10_000, 'a span');
    assert.deepEqual(startupSpans(), [], 'no root span by default');
    const timed = samplesNamed(await app.scrape(), 'db_client_operation_duration_seconds_count');
    assert.ok(
      timed.some((s) => s.labels.operation === 'SELECT' && s.value >= 2),
      'start-up query timed',
    );
    await app.stop();

    app = await startApp({ fixture: 'db-app.mjs', env: { ...env, DATALAB_DB_ROOT_SPANS: 'true' } });
    await receiver.waitFor(() => startupSpans().length === 1, 10_000, 'start-up root span');
    // Its trace starts at the pool (pg-pool.connect), not at any request.
    const chain = [startupSpans()[0] as ReceivedSpan];
    chain.push(...ancestors(receiver.spans, chain[0] as ReceivedSpan));
    assert.equal(chain.at(-1)?.parentSpanId, '');
    assert.ok(chain.every((s) => s.kind !== SERVER && s.scope.includes('instrumentation-pg')));
  });

  it('docs/metrics.md lists every metric /metrics shows', async () => {
    app = await startApp({ fixture: 'db-app.mjs', env: await dbEnv() });
    await request(app.url('/orders/1'));
    await request(app.url('/missing-table'));
    // Some runtime series (GC) appear only after a collection happened.
    await new Promise((r) => setTimeout(r, 300));
    const text = await app.scrapeText();
    const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1] as string);
    const doc = readFileSync(join(ROOT, 'docs', 'metrics.md'), 'utf8');
    const documented = new Set(
      [...doc.matchAll(/^\| `([a-z_:][a-z0-9_:]*)` \|/gm)].map((m) => m[1] as string),
    );
    assert.ok(families.length >= 10, families.join(', '));
    for (const family of families) {
      assert.ok(documented.has(family), `${family} is on /metrics but not in docs/metrics.md`);
    }
    for (const required of [
      'http_requests_total',
      'database_connections_active',
      'memory_usage_bytes',
      'db_client_operation_duration_seconds',
      'nodejs_eventloop_delay_p99_seconds',
      'nodejs_heap_used_bytes',
    ]) {
      assert.ok(families.includes(required), `${required} on /metrics`);
    }
    assert.ok(sumOf(samplesNamed(await app.scrape(), 'http_requests_total')) >= 2);
  });
});
