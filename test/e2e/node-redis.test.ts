/**
 * node-redis 3 (callback API) and 4 (promise API, CommonJS and ESM) against the machine's Redis,
 * each from its own fixture app (test/fixtures/apps/redis3, redis4), under the preload: every
 * command timed in `db_client_operation_duration_seconds`, and `/health` pinging the
 * application's own client, without waiting behind a connection held in BLPOP, and failing at
 * once when the client's Redis is a closed port.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type AppProcess, freePort, request, startApp } from '../support/app';
import { FIXTURE_APPS, installedVersion, installFixtureApp } from '../support/framework-apps';
import { type Sample, samplesNamed } from '../support/prometheus-text';

const CONCURRENT = 20;

interface HealthReport {
  status: string;
  checks: Record<string, { status: string; message: string; source?: string; duration: number }>;
}

async function health(app: AppProcess): Promise<{ code: number; body: HealthReport }> {
  const res = await fetch(`http://127.0.0.1:${app.metricsPort}/health`);
  return { code: res.status, body: (await res.json()) as HealthReport };
}

function redisSeries(samples: readonly Sample[], suffix: 'count' | 'sum'): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samplesNamed(samples, `db_client_operation_duration_seconds_${suffix}`)) {
    if (s.labels.db_system === 'redis') out[s.labels.operation as string] = s.value;
  }
  return out;
}

const SUITES = [
  { dir: 'redis3', entry: 'app.cjs' },
  { dir: 'redis4', entry: 'app.cjs' },
  { dir: 'redis4', entry: 'app.mjs' },
] as const;

describe('node-redis 3 and 4: command metrics and the redis health check', function () {
  this.timeout(60_000);
  let app: AppProcess | undefined;

  before(async function () {
    this.timeout(300_000);
    await installFixtureApp(this, 'redis3');
    await installFixtureApp(this, 'redis4');
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  for (const suite of SUITES) {
    const start = (extra: Record<string, string> = {}) =>
      startApp({
        fixture: join(FIXTURE_APPS, suite.dir, suite.entry),
        preload: suite.entry === 'app.mjs' ? 'import' : 'require',
        env: {
          DATALAB_HEALTH_CHECKS: 'redis',
          DATALAB_HEALTH_TIMEOUT_MS: '2000',
          // Every /health runs the check; none from the environment could pass for the client.
          DATALAB_HEALTH_CACHE_MS: '0',
          REDIS_URL: '',
          ...extra,
        },
      });

    describe(`${suite.dir}/${suite.entry}`, () => {
      it('every command timed; /health pings the client, not behind a BLPOP', async function () {
        if (this.test) this.test.title += ` [redis ${installedVersion(suite.dir, 'redis')}]`;
        app = await start();
        const running = app;
        const statuses = await Promise.all(
          Array.from({ length: CONCURRENT }, () => request(running.url('/cmd'))),
        );
        assert.deepEqual(statuses, Array(CONCURRENT).fill(200));

        // A connection held 0.3 s in BLPOP (node-redis 3: a client of its own; 4: the isolation
        // pool's) must not make the check wait for it.
        const hold = request(app.url('/hold'));
        await new Promise((r) => setTimeout(r, 80));
        const { code, body } = await health(app);
        assert.equal(code, 200, JSON.stringify(body));
        const check = body.checks.redis;
        assert.equal(check?.status, 'healthy', JSON.stringify(check));
        assert.equal(check?.source, 'application');
        assert.ok((check?.duration ?? 1) < 0.2, `PING took ${check?.duration} s`);
        assert.equal(await hold, 200);

        const samples = await app.scrape();
        const counts = redisSeries(samples, 'count');
        for (const op of ['set', 'get', 'incr']) {
          assert.ok((counts[op] ?? 0) >= CONCURRENT, `${op}: ${JSON.stringify(counts)}`);
        }
        assert.ok((counts.ping ?? 0) >= 1, `the health check's PING: ${JSON.stringify(counts)}`);
        assert.equal(counts.blpop, 1, JSON.stringify(counts));
        const blpop = redisSeries(samples, 'sum').blpop ?? 0;
        assert.ok(blpop >= 0.28, `BLPOP's 0.3 s timeout shows: ${blpop} s`);
      });

      if (suite.dir === 'redis4') {
        // Metrics-only: the distro's own timing hook alone. Traced, upstream
        // instrumentation-redis hands back a promise that swallows the rejection (as it does
        // without the distro).
        it('a failed command nobody awaits is still an unhandled rejection (metrics only)', async () => {
          app = await start({ OTEL_TRACES_EXPORTER: 'none', DATALAB_TRACES_FILE: 'false' });
          const running = app;
          assert.equal(await request(running.url('/orphan')), 200);
          let count = '0';
          for (let i = 0; i < 40 && count === '0'; i++) {
            await new Promise((r) => setTimeout(r, 25));
            const res = await fetch(running.url('/unhandled'));
            count = await res.text();
          }
          assert.equal(count, '1');
        });
      }

      it('Redis on a closed port: /health redis unhealthy at once, the service degraded', async () => {
        const closed = String(await freePort());
        app = await start({ REDIS_PORT: closed });
        const started = performance.now();
        const { code, body } = await health(app);
        const elapsed = performance.now() - started;
        assert.equal(code, 200, JSON.stringify(body));
        assert.equal(body.status, 'degraded');
        const check = body.checks.redis;
        assert.equal(check?.status, 'unhealthy', JSON.stringify(check));
        assert.equal(check?.source, 'application');
        assert.match(check?.message ?? '', /^Redis connection failed: connection is not ready/);
        assert.ok(elapsed < 1000, `answered in ${Math.round(elapsed)} ms`);
      });
    });
  }
});
