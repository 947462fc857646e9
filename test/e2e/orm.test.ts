/**
 * ORMs over the machine's PostgreSQL and MariaDB, for real: Sequelize, Knex, TypeORM, Kysely and
 * MikroORM 7 (test/fixtures/apps/orm) and MikroORM 6 (test/fixtures/apps/mikro-orm6), each in a
 * service under the preload. Sequelize, Knex and MikroORM 6 (through Knex) keep pools of their own
 * of `pg.Client`s / mysql2 connections; TypeORM, Kysely and MikroORM 7 use a pg Pool or a mysql2
 * pool. Whichever: `database_connections_active` counts the connections held by
 * statements in flight, every statement is timed, and `/health` pings the database the ORM
 * reaches, and fails, without waiting, when that database is a closed port.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createConnection } from 'mysql2/promise';
import { type AppProcess, freePort, reachable, request, startApp } from '../support/app';
import { FIXTURE_APPS, installedVersion, installFixtureApp } from '../support/framework-apps';
import { type Sample, samplesNamed, sumOf } from '../support/prometheus-text';
import { skipBecause } from '../support/skip';

const MYSQL = { host: '127.0.0.1', port: 3306, user: 'root' };
/** Statements held at once; every ORM's pool allows 10. */
const IN_FLIGHT = 8;
const SLEEP_SECONDS = 0.3;

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

function gauge(samples: readonly Sample[]): number {
  return sumOf(samplesNamed(samples, 'database_connections_active'));
}

function durations(samples: readonly Sample[], system: string, suffix: 'count' | 'sum') {
  return samplesNamed(samples, `db_client_operation_duration_seconds_${suffix}`).filter(
    (s) => s.labels.db_system === system && s.labels.operation === 'SELECT',
  );
}

interface HealthReport {
  status: string;
  checks: Record<string, { status: string; message: string; source?: string; systems?: string[] }>;
}

async function health(app: AppProcess): Promise<{ code: number; body: HealthReport }> {
  const res = await fetch(`http://127.0.0.1:${app.metricsPort}/health`);
  return { code: res.status, body: (await res.json()) as HealthReport };
}

/**
 * Runs IN_FLIGHT statements that each hold a connection SLEEP_SECONDS, twice: the first round
 * grows the ORM's pool (opening a connection takes longer than the scrape below waits), the
 * second is scraped while it runs. Returns the highest gauge seen during the second round.
 */
async function holdConnections(app: AppProcess): Promise<number> {
  const round = () =>
    Promise.all(Array.from({ length: IN_FLIGHT }, () => request(app.url('/sleep'))));
  assert.deepEqual(await round(), Array(IN_FLIGHT).fill(200), 'warm-up round');
  let done = false;
  const second = round().finally(() => {
    done = true;
  });
  await delay(80);
  let highest = 0;
  while (!done && highest < IN_FLIGHT) {
    highest = Math.max(highest, gauge(await app.scrape()));
    await delay(20);
  }
  assert.deepEqual(await second, Array(IN_FLIGHT).fill(200), 'measured round');
  return highest;
}

interface Case {
  /** The fixture directory under test/fixtures/apps. */
  readonly dir: 'orm' | 'mikro-orm6';
  readonly orm: string;
  readonly db: 'postgres' | 'mysql';
  readonly entry: 'app.cjs' | 'app.mjs';
  /** The package whose version goes in the title. */
  readonly pkg: string;
}

const CASES: readonly Case[] = [
  ...['sequelize', 'knex', 'typeorm', 'kysely', 'mikro-orm'].map(
    (orm): Case => ({
      dir: 'orm',
      orm,
      db: 'postgres',
      entry: 'app.cjs',
      pkg: orm === 'mikro-orm' ? '@mikro-orm/core' : orm,
    }),
  ),
  { dir: 'orm', orm: 'mikro-orm', db: 'postgres', entry: 'app.mjs', pkg: '@mikro-orm/core' },
  { dir: 'orm', orm: 'kysely', db: 'postgres', entry: 'app.mjs', pkg: 'kysely' },
  // MikroORM 6 runs its SQL through Knex: pg Clients and mysql2 connections in a pool of its own.
  ...(['postgres', 'mysql'] as const).map(
    (db): Case => ({
      dir: 'mikro-orm6',
      orm: 'mikro-orm 6',
      db,
      entry: 'app.cjs',
      pkg: '@mikro-orm/core',
    }),
  ),
  ...['mikro-orm', 'sequelize', 'knex', 'typeorm', 'kysely'].map(
    (orm): Case => ({
      dir: 'orm',
      orm,
      db: 'mysql',
      entry: 'app.cjs',
      pkg: orm === 'mikro-orm' ? '@mikro-orm/core' : orm,
    }),
  ),
];

describe('ORMs: database metrics and health checks', function () {
  this.timeout(60_000);
  const database = `dlotel_orm_${randomBytes(4).toString('hex')}`;
  let mysqlUp = false;
  let app: AppProcess | undefined;

  before(async function () {
    this.timeout(300_000);
    await installFixtureApp(this, 'orm');
    await installFixtureApp(this, 'mikro-orm6');
    mysqlUp = await reachable(MYSQL.port);
    if (!mysqlUp && process.env.CI === 'true') {
      throw new Error('MariaDB/MySQL is not reachable on 127.0.0.1:3306 (.ci/run starts it)');
    }
    if (mysqlUp) {
      const conn = await createConnection(MYSQL);
      await conn.query(`CREATE DATABASE ${database}`);
      await conn.end();
    }
  });
  after(async () => {
    if (!mysqlUp) return;
    const conn = await createConnection(MYSQL);
    await conn.query(`DROP DATABASE IF EXISTS ${database}`);
    await conn.end();
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  for (const c of CASES) {
    const system = c.db === 'postgres' ? 'postgresql' : 'mysql';
    const label = `${c.orm} on ${c.db === 'postgres' ? 'PostgreSQL' : 'MariaDB'} (${c.entry === 'app.mjs' ? 'ESM' : 'CJS'})`;
    const start = (extra: Record<string, string> = {}) =>
      startApp({
        fixture: join(FIXTURE_APPS, c.dir, c.entry),
        preload: c.entry === 'app.mjs' ? 'import' : 'require',
        env: {
          ORM: c.orm,
          DB: c.db,
          MYSQL_DATABASE: database,
          DATALAB_HEALTH_CHECKS: 'database',
          DATALAB_HEALTH_TIMEOUT_MS: '2000',
          // Every /health runs the check: the run the start-up scrape made, before the ORM
          // connected, must not answer for it.
          DATALAB_HEALTH_CACHE_MS: '0',
          // No PostgreSQL settings in the environment: a check that passed from them would not
          // be the ORM's database.
          PGHOST: '',
          PGPORT: '',
          PGUSER: '',
          PGDATABASE: '',
          DATABASE_URL: '',
          ...extra,
        },
      });

    describe(label, () => {
      beforeEach(function () {
        if (c.db === 'mysql' && !mysqlUp) {
          skipBecause(this, 'MariaDB/MySQL is not running on 127.0.0.1:3306');
        }
      });

      it('connections in use while statements run, every statement timed, /health database ok', async function () {
        if (this.test) this.test.title += ` [${c.pkg} ${installedVersion(c.dir, c.pkg)}]`;
        app = await start();
        const highest = await holdConnections(app);
        assert.ok(
          highest >= IN_FLIGHT,
          `database_connections_active reached ${highest} with ${IN_FLIGHT} statements in flight`,
        );

        // Released: idle pooled connections are not in use.
        let after = Number.NaN;
        for (let i = 0; i < 50 && after !== 0; i++) {
          after = gauge(await app.scrape());
          if (after !== 0) await delay(50);
        }
        assert.equal(after, 0, 'no connection in use once the statements are done');

        const samples = await app.scrape();
        const counts = durations(samples, system, 'count');
        assert.equal(counts.length, 1, `one SELECT series for ${system}`);
        assert.ok(
          (counts[0]?.value ?? 0) >= 2 * IN_FLIGHT,
          `SELECTs timed: ${counts[0]?.value}, expected >= ${2 * IN_FLIGHT}`,
        );
        const sum = durations(samples, system, 'sum')[0]?.value ?? 0;
        assert.ok(
          sum >= 2 * IN_FLIGHT * SLEEP_SECONDS * 0.95,
          `the sleeps show in the durations: ${sum} s`,
        );

        const { code, body } = await health(app);
        assert.equal(code, 200, JSON.stringify(body));
        const check = body.checks.database;
        assert.equal(check?.status, 'healthy', JSON.stringify(check));
        assert.equal(check?.source, 'application', 'the application database, not the environment');
        if (c.db === 'mysql') assert.deepEqual(check?.systems, ['mysql']);
      });

      it('the database on a closed port: /health database unhealthy at once', async () => {
        const closed = String(await freePort());
        app = await start(c.db === 'postgres' ? { PG_PORT: closed } : { MYSQL_PORT: closed });
        assert.equal(await request(app.url('/select')), 500, 'the ORM cannot connect');
        const started = performance.now();
        const { code, body } = await health(app);
        const elapsed = performance.now() - started;
        assert.equal(code, 503, JSON.stringify(body));
        const check = body.checks.database;
        assert.equal(check?.status, 'unhealthy', JSON.stringify(check));
        assert.equal(check?.source, 'application');
        assert.match(check?.message ?? '', new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${closed}`));
        assert.ok(elapsed < 1500, `answered in ${Math.round(elapsed)} ms`);
      });
    });
  }
});
