/**
 * The programmatic health API, from a fixture service that imports '@datalab/otel': custom
 * checks (slow, throwing, hung, counted), the probes mounted on its own Express or node:http
 * server, concurrency and caching measured with real requests.
 */
import assert from 'node:assert/strict';
import { type AppProcess, startApp } from '../support/app';

const NO_DEPENDENCIES = {
  PGHOST: '',
  PGPORT: '',
  PGUSER: '',
  PGDATABASE: '',
  DATALAB_HEALTH_CHECKS: 'none',
};

interface Report {
  status: string;
  checks: Record<string, { status: string; message: string; duration: number; critical: boolean }>;
  [field: string]: unknown;
}

async function timed(url: string): Promise<{ status: number; body: Report; ms: number }> {
  const start = performance.now();
  const res = await fetch(url);
  const body = (await res.json()) as Report;
  return { status: res.status, body, ms: performance.now() - start };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('health checks (programmatic API)', () => {
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  const management = (path: string) => `http://127.0.0.1:${app?.metricsPort}${path}`;
  const counts = async () =>
    (await (await fetch(app?.url('/counts') ?? '')).json()) as Record<string, number>;

  it('three checks of 1 s each answer in about 1 s: they run concurrently', async () => {
    app = await startApp({
      fixture: 'health-api-app.mjs',
      env: { ...NO_DEPENDENCIES, CHECKS: 'slow3', DATALAB_HEALTH_CACHE_MS: '0' },
    });
    // startApp's first scrape started a run in the background; measure a run of our own.
    await sleep(1100);
    const { status, body, ms } = await timed(management('/health'));
    assert.equal(status, 200);
    assert.equal(body.status, 'healthy');
    assert.deepEqual(Object.keys(body.checks), ['slow_a', 'slow_b', 'slow_c']);
    for (const check of Object.values(body.checks)) {
      assert.ok(check.duration >= 0.99 && check.duration < 1.3, `duration ${check.duration}`);
    }
    assert.equal(body.checks.slow_a?.message, 'slow_a answered');
    assert.ok(ms >= 990 && ms < 1500, `report took ${Math.round(ms)} ms, not ~3000`);
    console.log(`      report with 3 x 1 s checks: ${Math.round(ms)} ms`);
  });

  it('a throwing check is unhealthy with its message, and the service keeps serving', async () => {
    app = await startApp({
      fixture: 'health-api-app.mjs',
      env: { ...NO_DEPENDENCIES, CHECKS: 'throws,syncthrow' },
    });
    const { status, body } = await timed(management('/health'));
    assert.equal(status, 503);
    assert.equal(body.status, 'unhealthy');
    assert.equal(body.checks.queue?.status, 'unhealthy');
    assert.equal(body.checks.queue?.critical, true);
    // The error's message, with the URL's password masked.
    assert.equal(
      body.checks.queue?.message,
      'Check failed: queue broker unreachable at amqp://guest:***@broker:5672',
    );
    assert.equal(body.checks.sync_thrower?.status, 'unhealthy');
    assert.equal(body.checks.sync_thrower?.message, 'Check failed: thrown synchronously');
    assert.equal((await fetch(app.url('/work'))).status, 200);
    assert.equal((await fetch(management('/health/ready'))).status, 503);
    assert.equal((await fetch(management('/health/live'))).status, 200);
    assert.deepEqual(app.warnings(), []);
  });

  it('100 concurrent /health requests run each check once per cache period', async () => {
    app = await startApp({
      fixture: 'health-api-app.mjs',
      env: { ...NO_DEPENDENCIES, CHECKS: 'counted', DATALAB_HEALTH_CACHE_MS: '1500' },
    });
    const running = app;
    const storm = async () => {
      const answers = await Promise.all(
        Array.from({ length: 100 }, () => timed(management('/health'))),
      );
      assert.ok(answers.every((a) => a.status === 200 && a.body.checks.counted));
    };
    // Start from an expired cache (the start-up scrape may have run the checks once).
    await sleep(1600);
    const before = (await counts()).counted ?? 0;
    await storm();
    const afterFirst = (await counts()).counted ?? 0;
    assert.equal(afterFirst - before, 1, 'one run for 100 concurrent requests');
    await storm();
    assert.equal((await counts()).counted, afterFirst, 'the next storm is served from the cache');
    await sleep(1600);
    await storm();
    assert.equal((await counts()).counted, afterFirst + 1, 'a new period, one new run');
    console.log(`      checks run for 3 x 100 concurrent requests: ${afterFirst + 1 - before}`);
    assert.ok(running.pid > 0);
  });

  it('100 concurrent requests cost one SELECT 1 and one PING on the real database', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: {
        APP_DB_URL: 'postgres://postgres@127.0.0.1:5432/test',
        APP_REDIS_URL: 'redis://127.0.0.1:6379',
        DATALAB_HEALTH_CACHE_MS: '2000',
      },
    });
    const operations = async () => {
      const samples = (await app?.scrape()) ?? [];
      const count = (system: string, operation: string) =>
        samples.find(
          (s) =>
            s.name === 'db_client_operation_duration_seconds_count' &&
            s.labels.db_system === system &&
            s.labels.operation === operation,
        )?.value ?? 0;
      return { select: count('postgresql', 'SELECT'), ping: count('redis', 'ping') };
    };
    // A scrape starts a run when the cache is stale (health_check_status stays current): let
    // that run finish and be counted, then let its cache period pass before the storm.
    await operations();
    await sleep(200);
    const before = await operations();
    await sleep(2100);
    const answers = await Promise.all(
      Array.from({ length: 100 }, () => fetch(management('/health')).then((r) => r.status)),
    );
    assert.ok(answers.every((s) => s === 200));
    const after = await operations();
    assert.deepEqual(
      { select: after.select - before.select, ping: after.ping - before.ping },
      { select: 1, ping: 1 },
    );
  });

  it('a hung check times out without piling up calls, and only degrades', async () => {
    app = await startApp({
      fixture: 'health-api-app.mjs',
      env: { ...NO_DEPENDENCIES, CHECKS: 'hangs', DATALAB_HEALTH_CACHE_MS: '0' },
    });
    for (let i = 0; i < 3; i++) {
      const { status, body, ms } = await timed(management('/health'));
      assert.equal(status, 200);
      assert.equal(body.status, 'degraded');
      assert.equal(body.checks.hung?.message, 'Check timed out after 0.3s');
      // Within the timeout plus a margin (a later run may join the first one mid-way).
      assert.ok(ms < 800, `answered in ${Math.round(ms)} ms`);
    }
    // The first call never settled: the next runs waited on it instead of calling again.
    assert.equal((await counts()).hung, 1);
  });

  for (const framework of ['express', 'http']) {
    it(`healthHandler() serves the probes on the app's own ${framework} server`, async () => {
      app = await startApp({
        fixture: 'health-api-app.mjs',
        env: { ...NO_DEPENDENCIES, CHECKS: 'counted', FRAMEWORK: framework },
      });
      const health = await timed(app.url('/health'));
      assert.equal(health.status, 200);
      assert.equal(health.body.service, 'fixture-service');
      assert.deepEqual(Object.keys(health.body.checks), ['counted']);
      assert.equal(health.body.checks.counted?.message, 'counted');
      const live = await timed(app.url('/health/live?probe=k8s'));
      assert.equal(live.status, 200);
      assert.equal(live.body.status, 'healthy');
      const ready = await timed(app.url('/health/ready'));
      assert.equal(ready.status, 200);
      assert.equal(ready.body.ready, true);
      assert.equal((await fetch(app.url('/health'), { method: 'DELETE' })).status, 405);
      // Other paths are the application's.
      assert.equal((await fetch(app.url('/work'))).status, 200);
      assert.equal((await fetch(app.url('/healthy'))).status, 404);
      // The same checker behind both servers.
      const fromManagement = await timed(management('/health'));
      assert.deepEqual(Object.keys(fromManagement.body.checks), ['counted']);
    });
  }

  it('works without the preload: the API runs its own checker', async () => {
    app = await startApp({
      fixture: 'health-api-app.mjs',
      preload: 'none',
      env: { CHECKS: 'throws', DATALAB_HEALTH_CHECKS: 'database,memory' },
    });
    const { status, body } = await timed(app.url('/health'));
    assert.equal(status, 503);
    // PG* from the environment, through the application's own pg.
    assert.deepEqual(Object.keys(body.checks), ['database', 'memory', 'queue']);
    assert.equal(body.checks.database?.status, 'healthy');
    assert.equal(body.checks.queue?.status, 'unhealthy');
    const run = (await (await fetch(app.url('/run'))).json()) as Report;
    assert.equal(run.status, 'unhealthy');
  });

  it('removeHealthCheck removes a built-in check', async () => {
    app = await startApp({
      fixture: 'health-api-app.mjs',
      env: { REMOVE_CHECK: 'disk_space', PGHOST: '', PGPORT: '', PGUSER: '', PGDATABASE: '' },
    });
    const { body } = await timed(management('/health'));
    assert.deepEqual(Object.keys(body.checks), ['memory']);
  });
});
