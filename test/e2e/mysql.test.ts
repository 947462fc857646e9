/**
 * MySQL (mysql2 3) against the machine's MariaDB, for real: an Express service with a mysql2
 * pool (5 connections) under the preload, in CommonJS (callback and promise API) and in ESM
 * (`mysql2/promise`), traced and metrics-only. Spans under the request with sanitised SQL, one
 * timing per query, the pool's checked-out connections, the health check on the pool, and secret
 * markers that must never reach an exported payload, a log line or /metrics.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createConnection } from 'mysql2/promise';
import { type AppProcess, freePort, reachable, request, startApp } from '../support/app';
import {
  ancestors,
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
} from '../support/otlp-receiver';
import { type Sample, samplesNamed } from '../support/prometheus-text';
import { skipBecause } from '../support/skip';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;
const MYSQL = { host: '127.0.0.1', port: 3306, user: 'root' };

function marker(kind: string): string {
  return `${kind}_${randomBytes(6).toString('hex')}`;
}

const MARKERS = {
  MARKER_PARAM: marker('param'),
  MARKER_INLINE: marker('inline'),
  MARKER_NUMBER: String(900_000_000 + Math.floor(Math.random() * 99_999_999)),
  MARKER_EXEC: marker('exec'),
  MARKER_DUP: marker('dup'),
  MARKER_SYNTAX: marker('syntax'),
};

/** `db_client_operation_duration_seconds_count` of MySQL, by operation. */
function mysqlCounts(samples: readonly Sample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samplesNamed(samples, 'db_client_operation_duration_seconds_count')) {
    if (s.labels.db_system === 'mysql') out[s.labels.operation as string] = s.value;
  }
  return out;
}

async function loaded(app: AppProcess): Promise<string[]> {
  const res = await fetch(app.url('/loaded'));
  return (await res.json()) as string[];
}

async function health(app: AppProcess) {
  const res = await fetch(`http://127.0.0.1:${app.metricsPort}/health`);
  const body = (await res.json()) as { checks: Record<string, Record<string, unknown>> };
  return { status: res.status, body };
}

describe('MySQL (mysql2)', () => {
  const database = `dlotel_test_${randomBytes(4).toString('hex')}`;
  let receiver: OtlpReceiver | undefined;
  let app: AppProcess | undefined;

  before(async function () {
    if (!(await reachable(MYSQL.port))) {
      if (process.env.CI === 'true') {
        throw new Error('MariaDB/MySQL is not reachable on 127.0.0.1:3306 (.ci/run starts it)');
      }
      skipBecause(this, 'MariaDB/MySQL is not running on 127.0.0.1:3306');
    }
    const conn = await createConnection(MYSQL);
    await conn.query(`CREATE DATABASE ${database}`);
    await conn.query(`CREATE TABLE ${database}.dup_keys (k VARCHAR(64) PRIMARY KEY)`);
    await conn.end();
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver?.close();
    if (!(await reachable(MYSQL.port))) return;
    const conn = await createConnection(MYSQL);
    await conn.query(`DROP DATABASE IF EXISTS ${database}`);
    await conn.end();
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    receiver?.clear();
  });

  const env = (extra: Record<string, string> = {}) => ({
    ...MARKERS,
    MYSQL_DATABASE: database,
    // No PostgreSQL settings: the database check would load pg for them (this service has none).
    PGHOST: '',
    PGPORT: '',
    PGUSER: '',
    PGDATABASE: '',
    // The database check's `SELECT 1` (run for health_check_status on every scrape) is timed
    // too: the tests that count queries leave it out.
    DATALAB_HEALTH_CHECKS: 'disk_space,memory',
    ...extra,
  });

  for (const fixture of ['mysql-app.cjs', 'mysql-app.mjs']) {
    describe(fixture, () => {
      it('traced: spans under the request with sanitised SQL and errors, one timing per query, no value leaks', async () => {
        const otlp = receiver as OtlpReceiver;
        const conn = await createConnection({ ...MYSQL, database });
        await conn.query('DELETE FROM dup_keys');
        await conn.end();
        app = await startApp({
          fixture,
          env: env({
            OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
            OTEL_BSP_SCHEDULE_DELAY: '100',
            OTEL_METRICS_EXPORTER: 'prometheus,otlp',
            OTEL_METRIC_EXPORT_INTERVAL: '300',
          }),
        });
        assert.equal(await request(app.url('/orders/7')), 200);
        assert.equal(await request(app.url('/duplicate')), 500);
        assert.equal(await request(app.url('/syntax')), 500);
        await otlp.waitFor(
          () => otlp.spans.filter((s) => s.kind === SERVER).length === 3,
          10_000,
          'three server spans',
        );
        await otlp.waitFor(
          () => otlp.spans.filter((s) => s.attributes['db.system.name'] === 'mysql').length >= 6,
          10_000,
          'six MySQL spans',
        );
        await otlp.waitFor(() => otlp.metrics.length > 0, 10_000, 'OTLP metrics');

        const mysqlSpans = otlp.spans.filter((s) => s.attributes['db.system.name'] === 'mysql');
        assert.equal(mysqlSpans.length, 6, 'one span per query');
        const byRoute = (route: string) => {
          const server = otlp.spans.find(
            (s) => s.kind === SERVER && s.attributes['http.route'] === route,
          ) as ReceivedSpan;
          assert.ok(server, `server span of ${route}`);
          return mysqlSpans
            .filter((s) => ancestors(otlp.spans, s).some((a) => a.spanId === server.spanId))
            .sort((a, b) => Number(a.startTimeUnixNano - b.startTimeUnixNano));
        };
        const orders = byRoute('/orders/:id');
        assert.deepEqual(
          orders.map((s) => s.attributes['db.query.text']),
          ['SELECT ? AS ref, ? <> ? AS differs, ? AS n', 'SELECT ? AS id', 'SELECT ? AS ref'],
        );
        for (const span of mysqlSpans) {
          assert.equal(span.kind, CLIENT);
          assert.equal(span.attributes['db.namespace'], database);
          assert.equal(span.attributes['server.address'], '127.0.0.1');
          assert.equal(span.attributes['server.port'], 3306);
          assert.match(span.name, /^[A-Z]+$/);
        }
        const inserts = byRoute('/duplicate');
        assert.deepEqual(
          inserts.map((s) => [s.attributes['db.query.text'], s.status.code, s.status.message]),
          [
            ['INSERT INTO dup_keys (k) VALUES (?)', 0, ''],
            ['INSERT INTO dup_keys (k) VALUES (?)', ERROR, 'Duplicate entry ?'],
          ],
        );
        const syntax = byRoute('/syntax');
        assert.equal(syntax.length, 1);
        assert.equal(syntax[0]?.attributes['db.query.text'], 'SELECT * FORM dup_keys WHERE k = ?');
        assert.equal(syntax[0]?.status.code, ERROR);
        assert.match(syntax[0]?.status.message ?? '', /SQL syntax.* near \? at line 1$/);

        // Exactly the queries made: 3 + 1 SELECT, 2 INSERT, whatever the API.
        const samples = await app.scrape();
        assert.deepEqual(mysqlCounts(samples), { SELECT: 4, INSERT: 2 });
        assert.equal(samplesNamed(samples, 'database_connections_active')[0]?.value, 0);

        const modules = await loaded(app);
        assert.ok(modules.some((f) => f.includes('instrumentation-mysql2')));
        assert.ok(!modules.some((f) => /[\\/]node_modules[\\/](pg|pg-pool)[\\/]/.test(f)));
        assert.ok(!modules.some((f) => f.includes('instrumentation-pg')));

        const metricsText = await app.scrapeText();
        const haystacks = [
          ...otlp.bodies.map((b) => ({ what: `OTLP ${b.path}`, text: b.raw.toString('latin1') })),
          { what: 'stdout', text: app.stdout.join('\n') },
          { what: 'stderr', text: app.stderr.join('\n') },
          { what: '/metrics', text: metricsText },
        ];
        assert.ok(otlp.bodies.some((b) => b.path === '/v1/traces'));
        assert.ok(otlp.bodies.some((b) => b.path === '/v1/metrics'));
        for (const [name, value] of Object.entries(MARKERS)) {
          for (const { what, text } of haystacks) {
            assert.ok(!text.includes(value), `${name} leaked into ${what}`);
          }
        }
        assert.deepEqual(app.warnings(), []);
      });

      it('metrics-only: connections checked out while SLEEP(0.5) runs, and one timing per query', async () => {
        app = await startApp({ fixture, env: env({ OTEL_TRACES_EXPORTER: 'none' }) });
        const running = app;
        // 8 requests on a pool of 5: 5 connections checked out for about 0.5 s, then 3.
        const inFlight = Array.from({ length: 8 }, () => request(running.url('/sleep')));
        await new Promise((r) => setTimeout(r, 250));
        const during = samplesNamed(await app.scrape(), 'database_connections_active');
        assert.deepEqual(
          during.map((s) => [s.labels, s.value]),
          [[{ service: 'fixture-service' }, 5]],
        );
        assert.deepEqual(await Promise.all(inFlight), Array(8).fill(200));
        assert.equal(await request(app.url('/orders/7')), 200);

        const samples = await app.scrape();
        assert.equal(samplesNamed(samples, 'database_connections_active')[0]?.value, 0);
        assert.deepEqual(mysqlCounts(samples), { SELECT: 8 + 3 });
        const sleeps = samplesNamed(samples, 'db_client_operation_duration_seconds_sum').find(
          (s) => s.labels.db_system === 'mysql' && s.labels.operation === 'SELECT',
        );
        assert.ok((sleeps?.value ?? 0) >= 8 * 0.5, 'SLEEP(0.5) shows in the durations');
        const bucket = (le: string) =>
          samplesNamed(samples, 'db_client_operation_duration_seconds_bucket').find(
            (s) => s.labels.db_system === 'mysql' && s.labels.le === le,
          )?.value;
        // The server held each sleep for 0.5 s: none of them can be in a bucket below that.
        assert.ok((bucket('0.1') ?? Number.NaN) <= 3, 'the sleeps are not under 0.1 s');
        assert.equal(bucket('+Inf'), 8 + 3);

        // No spans made, so instrumentation-mysql2 is not even loaded.
        assert.ok(!(await loaded(app)).some((f) => f.includes('instrumentation-mysql2')));
        assert.deepEqual(app.warnings(), []);
      });
    });
  }

  it('/health pings the application pool, and fails when it points at a closed port', async () => {
    // Every probe runs the checks: a report cached from start-up would predate the pool.
    const healthEnv = { DATALAB_HEALTH_CHECKS: 'database', DATALAB_HEALTH_CACHE_MS: '0' };
    app = await startApp({ fixture: 'mysql-app.cjs', env: env(healthEnv) });
    // The pool is found when the application first uses it.
    assert.equal(await request(app.url('/orders/1')), 200);
    const good = await health(app);
    assert.equal(good.status, 200);
    assert.deepEqual(
      { ...good.body.checks.database, duration: undefined },
      {
        status: 'healthy',
        message: 'Database connection successful',
        source: 'application',
        systems: ['mysql'],
        critical: true,
        duration: undefined,
      },
    );
    // The check's own `SELECT 1` is timed like every query (a scrape runs the checks as well).
    assert.ok((mysqlCounts(await app.scrape()).SELECT ?? 0) >= 4);
    await app.stop();

    app = await startApp({
      fixture: 'mysql-app.cjs',
      env: env({ ...healthEnv, MYSQL_PORT: String(await freePort()) }),
    });
    assert.equal(await request(app.url('/orders/1')), 500);
    const bad = await health(app);
    assert.equal(bad.status, 503);
    assert.equal(bad.body.checks.database?.status, 'unhealthy');
    assert.match(
      String(bad.body.checks.database?.message),
      /^Database connection failed: .*ECONNREFUSED/,
    );
    assert.deepEqual(app.warnings(), []);
  });

  it('queries outside a request are traced only with DATALAB_DB_ROOT_SPANS=true, and timed always', async () => {
    const otlp = receiver as OtlpReceiver;
    const startupSpans = () =>
      otlp.spans.filter((s) => s.attributes['db.query.text'] === 'SELECT ? AS startup');
    const traced = env({
      STARTUP_QUERY: '1',
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    app = await startApp({ fixture: 'mysql-app.cjs', env: traced });
    assert.equal(await request(app.url('/orders/1')), 200);
    await otlp.waitFor(
      () =>
        otlp.spans.filter((s) => s.attributes['db.system.name'] === 'mysql').length === 3 &&
        otlp.spans.some((s) => s.kind === SERVER),
      10_000,
      "the request's server span and three query spans",
    );
    assert.deepEqual(startupSpans(), [], 'no root span by default');
    // The pooled connection was opened at start-up, outside any request: the queries made from
    // a query's callback still belong to the request.
    const server = otlp.spans.find((s) => s.kind === SERVER) as ReceivedSpan;
    for (const span of otlp.spans.filter((s) => s.attributes['db.system.name'] === 'mysql')) {
      assert.ok(ancestors(otlp.spans, span).some((a) => a.spanId === server.spanId));
    }
    assert.deepEqual(mysqlCounts(await app.scrape()), { SELECT: 1 + 3 });
    await app.stop();

    app = await startApp({
      fixture: 'mysql-app.cjs',
      env: { ...traced, DATALAB_DB_ROOT_SPANS: 'true' },
    });
    await otlp.waitFor(() => startupSpans().length === 1, 10_000, 'start-up root span');
    assert.equal(startupSpans()[0]?.parentSpanId, '');
    assert.equal(startupSpans()[0]?.name, 'SELECT');
  });

  it('a pg service never loads mysql2 nor its instrumentation', async () => {
    app = await startApp({
      fixture: 'db-app.mjs',
      env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test' },
    });
    assert.equal(await request(app.url('/sleep')), 200);
    const modules = await loaded(app);
    assert.ok(modules.some((f) => f.includes('instrumentation-pg')));
    assert.ok(!modules.some((f) => /[\\/]node_modules[\\/]mysql2[\\/]/.test(f)));
    assert.ok(!modules.some((f) => f.includes('instrumentation-mysql2')));
    const counts = samplesNamed(
      await app.scrape(),
      'db_client_operation_duration_seconds_count',
    ).map((s) => s.labels.db_system);
    assert.ok(counts.includes('postgresql') && !counts.includes('mysql'));
  });
});
