/**
 * Health checks with zero code, for real: fixture services under the preload, their real
 * PostgreSQL and Redis (or dead and silent stand-ins), probed on the management server.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { type AppProcess, freePort, startApp } from '../support/app';
import { samplesNamed } from '../support/prometheus-text';

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = 'redis://127.0.0.1:6379';
/** startApp passes PG* to every fixture; blank them where the environment must not be used. */
const NO_PG_ENV = { PGHOST: '', PGPORT: '', PGUSER: '', PGDATABASE: '' };

interface CheckResult {
  status: string;
  message: string;
  duration: number;
  critical: boolean;
  [field: string]: unknown;
}

interface Report {
  service: string;
  status: string;
  timestamp: number;
  uptime: number;
  checks: Record<string, CheckResult>;
}

async function get(
  app: AppProcess,
  path: string,
  init?: RequestInit,
): Promise<{ status: number; body: Report & Record<string, unknown>; ms: number; res: Response }> {
  const start = performance.now();
  const res = await fetch(`http://127.0.0.1:${app.metricsPort}${path}`, init);
  const text = await res.text();
  const ms = performance.now() - start;
  return { status: res.status, body: text === '' ? ({} as never) : JSON.parse(text), ms, res };
}

/** A TCP server that accepts connections and never says a word: a hung database. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('health checks (zero code)', () => {
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  it("uses the app's own pg pool and ioredis client: 200 healthy with all four checks", async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: { ...NO_PG_ENV, APP_DB_URL: PG_URL, APP_REDIS_URL: REDIS_URL },
    });
    const { status, body, res } = await get(app, '/health');
    assert.equal(status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(body.service, 'fixture-service');
    assert.equal(body.status, 'healthy');
    assert.ok(Math.abs(body.timestamp - Date.now() / 1000) < 5, 'timestamp in epoch seconds');
    assert.ok(body.uptime > 0 && body.uptime < 60, 'uptime in seconds');
    assert.deepEqual(Object.keys(body.checks), ['database', 'redis', 'disk_space', 'memory']);
    for (const [name, check] of Object.entries(body.checks)) {
      assert.equal(check.status, 'healthy', `${name}: ${check.message}`);
      assert.equal(typeof check.message, 'string');
      assert.ok(typeof check.duration === 'number' && check.duration >= 0, `${name} duration`);
      assert.ok(check.duration < 1, `${name} took ${check.duration}s`);
    }
    // Nothing in the environment names a database: these are the application's connections.
    assert.equal(body.checks.database?.source, 'application');
    assert.equal(body.checks.redis?.source, 'application');
    assert.equal(body.checks.database?.message, 'Database connection successful');
    assert.equal(body.checks.redis?.message, 'Redis connection successful');
    assert.deepEqual(
      Object.fromEntries(Object.entries(body.checks).map(([k, v]) => [k, v.critical])),
      { database: true, redis: false, disk_space: true, memory: false },
    );

    const live = await get(app, '/health/live');
    assert.equal(live.status, 200);
    assert.equal(live.body.status, 'healthy');
    const ready = await get(app, '/health/ready');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.ready, true);

    const head = await get(app, '/health', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal((await get(app, '/health', { method: 'POST' })).status, 405);

    const series = samplesNamed(await app.scrape(), 'health_check_status');
    assert.deepEqual(series.map((s) => [s.labels.check, s.labels.service, s.value]).sort(), [
      ['database', 'fixture-service', 1],
      ['disk_space', 'fixture-service', 1],
      ['memory', 'fixture-service', 1],
      ['redis', 'fixture-service', 1],
    ]);
    // The management server's own requests are not the service's traffic.
    assert.deepEqual(samplesNamed(await app.scrape(), 'http_requests_total'), []);
  });

  it('Redis on a closed port: degraded, still 200 and ready', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: {
        ...NO_PG_ENV,
        APP_DB_URL: PG_URL,
        APP_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      },
    });
    const { status, body, ms } = await get(app, '/health');
    assert.equal(status, 200);
    assert.equal(body.status, 'degraded');
    assert.equal(body.checks.redis?.status, 'unhealthy');
    assert.match(body.checks.redis?.message ?? '', /^Redis connection failed: connection /);
    // A client that is reconnecting fails at once instead of queueing PING for the 5 s timeout.
    assert.ok(ms < 1000, `answered in ${Math.round(ms)} ms`);
    assert.equal(body.checks.database?.status, 'healthy');
    assert.equal((await get(app, '/health/ready')).status, 200, 'redis is not critical');
    const redis = samplesNamed(await app.scrape(), 'health_check_status').find(
      (s) => s.labels.check === 'redis',
    );
    assert.equal(redis?.value, 0);
  });

  it('PostgreSQL on a closed port: unhealthy, 503, within the check timeout', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: {
        ...NO_PG_ENV,
        APP_DB_URL: `postgres://postgres@127.0.0.1:${await freePort()}/test`,
        DATALAB_HEALTH_TIMEOUT_MS: '1000',
      },
    });
    const { status, body, ms } = await get(app, '/health');
    assert.equal(status, 503);
    assert.equal(body.status, 'unhealthy');
    assert.equal(body.checks.database?.status, 'unhealthy');
    assert.match(
      body.checks.database?.message ?? '',
      /^Database connection failed: .*ECONNREFUSED/,
    );
    assert.ok(ms < 1500, `answered in ${Math.round(ms)} ms`);
    const ready = await get(app, '/health/ready');
    assert.equal(ready.status, 503);
    assert.equal(ready.body.ready, false);
    assert.match(String(ready.body.reason), /database/);
    assert.equal((await get(app, '/health/live')).status, 200, 'liveness ignores dependencies');
  });

  it('PostgreSQL that accepts and never answers: 503 after the 1 s timeout, not later', async () => {
    const silent = await silentServer();
    try {
      app = await startApp({
        fixture: 'health-app.mjs',
        env: {
          ...NO_PG_ENV,
          APP_DB_URL: `postgres://postgres@127.0.0.1:${silent.port}/test`,
          DATALAB_HEALTH_TIMEOUT_MS: '1000',
          DATALAB_HEALTH_CACHE_MS: '0',
        },
      });
      for (let i = 0; i < 2; i++) {
        const { status, body, ms } = await get(app, '/health');
        assert.equal(status, 503);
        assert.equal(body.checks.database?.message, 'Check timed out after 1s');
        assert.equal(body.checks.database?.duration, 1);
        assert.ok(ms >= 950 && ms < 1500, `answered in ${Math.round(ms)} ms`);
        // The other checks are not held up by the hung one.
        assert.equal(body.checks.disk_space?.status, 'healthy');
        assert.ok((body.checks.disk_space?.duration ?? 1) < 0.5);
      }
    } finally {
      await app?.stop();
      app = undefined;
      await silent.close();
    }
  });

  it('falls back to DATABASE_URL and REDIS_URL with the application’s own drivers', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: { ...NO_PG_ENV, DATABASE_URL: PG_URL, REDIS_URL, DATALAB_HEALTH_CACHE_MS: '0' },
    });
    // Twice: the check's own connections must not pass for the application's the second time.
    for (let run = 0; run < 2; run++) {
      const { status, body } = await get(app, '/health');
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.checks.database?.status, 'healthy');
      assert.equal(body.checks.database?.source, 'environment', `run ${run}`);
      assert.equal(body.checks.redis?.status, 'healthy');
      assert.equal(body.checks.redis?.source, 'environment', `run ${run}`);
    }
  });

  it('REDIS_URL on a closed port: degraded', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: { ...NO_PG_ENV, REDIS_URL: `redis://127.0.0.1:${await freePort()}` },
    });
    const { status, body } = await get(app, '/health');
    assert.equal(status, 200);
    assert.equal(body.status, 'degraded');
    assert.match(body.checks.redis?.message ?? '', /^Redis connection failed: .*ECONNREFUSED/);
    assert.equal(body.checks.database, undefined);
  });

  it('with no database or Redis anywhere, those checks are absent, not failing', async () => {
    app = await startApp({ fixture: 'health-app.mjs', env: NO_PG_ENV });
    const { status, body } = await get(app, '/health');
    assert.equal(status, 200);
    assert.equal(body.status, 'healthy');
    assert.deepEqual(Object.keys(body.checks), ['disk_space', 'memory']);
    assert.deepEqual(app.warnings(), []);
  });

  it('DATALAB_HEALTH_CHECKS chooses the built-in checks', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: { APP_DB_URL: PG_URL, DATALAB_HEALTH_CHECKS: 'memory,database' },
    });
    const { body } = await get(app, '/health');
    assert.deepEqual(Object.keys(body.checks), ['memory', 'database']);
    await app.stop();
    app = await startApp({ fixture: 'health-app.mjs', env: { DATALAB_HEALTH_CHECKS: 'none' } });
    const none = await get(app, '/health');
    assert.equal(none.status, 200);
    assert.deepEqual(none.body.checks, {});
  });

  it('the real disk and memory readings agree with df and /proc/meminfo', async () => {
    app = await startApp({ fixture: 'health-app.mjs', env: NO_PG_ENV });
    const { body } = await get(app, '/health');
    const disk = body.checks.disk_space as CheckResult & {
      free_percent: number;
      total_bytes: number;
      path: string;
    };
    // df -P: 1024-blocks, Used, Available; "Available" is what an unprivileged writer gets.
    const dfLine = execFileSync('df', ['-P', '-k', '/'], { encoding: 'utf8' })
      .trim()
      .split('\n')[1];
    const [, blocks, , available] = (dfLine ?? '').split(/\s+/).map(Number);
    assert.ok(blocks && available !== undefined, `df output: ${dfLine}`);
    assert.equal(disk.path, '/');
    assert.ok(
      Math.abs(disk.free_percent - (available / blocks) * 100) < 1,
      `${disk.free_percent}% vs df ${(available / blocks) * 100}%`,
    );
    assert.ok(Math.abs(disk.total_bytes / 1024 - blocks) / blocks < 0.01);

    const memory = body.checks.memory as CheckResult & {
      used_percent: number;
      limit_bytes: number;
      source: string;
    };
    assert.ok(memory.used_percent > 0 && memory.used_percent < 100, `${memory.used_percent}%`);
    const meminfo = readFileSync('/proc/meminfo', 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1]);
    if (memory.source === 'host') {
      assert.equal(memory.limit_bytes, kb('MemTotal') * 1024);
      const expected = ((kb('MemTotal') - kb('MemAvailable')) / kb('MemTotal')) * 100;
      assert.ok(
        Math.abs(memory.used_percent - expected) < 5,
        `${memory.used_percent} vs ${expected}`,
      );
    } else {
      // Inside a memory-limited cgroup the limit is below the host's memory.
      assert.equal(memory.source, 'cgroup');
      assert.ok(memory.limit_bytes < kb('MemTotal') * 1024);
    }
  });
});
