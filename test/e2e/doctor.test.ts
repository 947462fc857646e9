/**
 * `datalab-otel doctor` run as a user runs it, in the directory of an application with real
 * installed packages: each app of test/fixtures/doctor/ is copied to a temporary directory
 * (outside the repository, whose own node_modules would otherwise resolve too) and installed
 * from its lockfile. The lines asserted are the report's exact lines, with the versions npm
 * installed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, freePort, ROOT, startApp } from '../support/app';
import { NPM_FLAGS, npm, STEP_TIMEOUT, skipIfOffline } from '../support/install';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const APPS = join(FIXTURES, 'doctor');

interface Report {
  code: number;
  out: string;
  lines: string[];
}

function doctor(
  cwd: string,
  env: Record<string, string> = {},
  args: string[] = [],
): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'doctor', ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    child.stderr.resume();
    child.once('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, lines: out.split('\n') }));
  });
}

function version(app: string, name: string): string {
  const file = join(app, 'node_modules', name, 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/** The lines of one group of the report (between its title and the next blank line). */
function group(report: Report, title: string): string[] {
  const start = report.lines.indexOf(title);
  assert.ok(start >= 0, `no group ${title} in:\n${report.out}`);
  const end = report.lines.indexOf('', start);
  return report.lines.slice(start + 1, end);
}

describe('datalab-otel doctor in real applications', function () {
  this.timeout(STEP_TIMEOUT * 2);
  const root = mkdtempSync(join(tmpdir(), 'datalab-doctor-'));
  let env: Record<string, string>;

  /** Copies test/fixtures/doctor/<name> to the temporary directory and installs it. */
  async function install(ctx: Mocha.Context, name: string): Promise<string> {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    for (const file of ['package.json', 'package-lock.json']) {
      copyFileSync(join(APPS, name, file), join(dir, file));
    }
    const result = await npm(dir, ['ci', ...NPM_FLAGS]);
    skipIfOffline(ctx, result);
    assert.equal(result.code, 0, `npm ci failed in ${dir}:\n${result.stderr}`);
    return dir;
  }

  before(async () => {
    env = {
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(await freePort()),
      DATALAB_TRACES_DIR: join(root, 'traces'),
    };
  });

  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  describe('Express 4 + pg + winston', () => {
    let app: string;
    before(async function () {
      app = await install(this, 'express-pg-winston');
    });

    it('traced: route source, spans, metrics, pools, health and log fields', async () => {
      const report = await doctor(app, env);
      assert.equal(report.code, 0, report.out);
      const express = version(app, 'express');
      const pg = version(app, 'pg');
      const pool = version(app, 'pg-pool');
      const winston = version(app, 'winston');
      assert.deepEqual(group(report, 'Frameworks'), [
        `ok    express ${express}: endpoint from Express's own request properties (req.baseUrl + req.route.path); no route = __unmatched__; handler spans (express)`,
      ]);
      assert.deepEqual(group(report, 'Databases'), [
        `ok    pg ${pg}: spans (pg), db_client_operation_duration_seconds`,
        `ok    pg-pool ${pool} (through pg): spans (pg), database_connections_active, database health check (SELECT 1 on its pools)`,
      ]);
      assert.deepEqual(group(report, 'Logs'), [
        `ok    winston ${winston}: trace_id, span_id, trace_flags, correlation_id on each record (winston); records not exported (no OTEL_LOGS_EXPORTER)`,
      ]);
      assert.ok(!/^(FAIL|warn)/m.test(report.out), report.out);
    });

    it('metrics-only, pg disabled, logs exported: each says so', async () => {
      const report = await doctor(app, {
        ...env,
        OTEL_TRACES_EXPORTER: 'none',
        OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'pg',
        OTEL_LOGS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: `http://127.0.0.1:${await freePort()}/v1/logs`,
      });
      // Nothing listens on the logs endpoint: the one failure, and exit code 1.
      assert.equal(report.code, 1, report.out);
      const failures = report.lines.filter((l) => l.startsWith('FAIL'));
      assert.equal(failures.length, 1, report.out);
      assert.match(
        failures[0] as string,
        /^FAIL {2}logs exporter endpoint http:\/\/127\.0\.0\.1:\d+\/v1\/logs: unreachable \(ECONNREFUSED\)$/,
      );
      assert.ok(
        report.lines.includes('off   spans: OTEL_TRACES_EXPORTER=none (metrics-only mode)'),
      );
      const pg = version(app, 'pg');
      const express = version(app, 'express');
      assert.ok(
        report.lines.includes(
          `ok    pg ${pg}: db_client_operation_duration_seconds; spans off: OTEL_NODE_DISABLED_INSTRUMENTATIONS`,
        ),
        report.out,
      );
      assert.ok(
        report.lines.includes(
          `ok    express ${express}: endpoint from Express's own request properties (req.baseUrl + req.route.path); no route = __unmatched__; handler spans off: OTEL_TRACES_EXPORTER=none`,
        ),
        report.out,
      );
      assert.match(report.out, /^ok {4}winston .*; records exported \(OTEL_LOGS_EXPORTER=otlp\)$/m);
    });

    it('--json: the same findings for machines', async () => {
      const report = await doctor(app, env, ['--json']);
      assert.equal(report.code, 0);
      const parsed = JSON.parse(report.out) as {
        exitCode: number;
        findings: { status: string; group: string; library?: string; version?: string }[];
      };
      assert.equal(parsed.exitCode, 0);
      const pg = parsed.findings.find((f) => f.library === 'pg');
      assert.deepEqual(
        { status: pg?.status, group: pg?.group, version: pg?.version },
        { status: 'ok', group: 'databases', version: version(app, 'pg') },
      );
    });
  });

  it('a management port held by the running service itself is no failure; by another, it is', async () => {
    const app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { OTEL_SERVICE_NAME: 'doctor-probe', DATALAB_TRACES_DIR: join(root, 'traces') },
    });
    try {
      const port = String(app.metricsPort);
      const same = await doctor(root, {
        ...env,
        DATALAB_METRICS_PORT: port,
        OTEL_SERVICE_NAME: 'doctor-probe',
      });
      assert.equal(same.code, 0, same.out);
      assert.ok(
        same.lines.includes(
          `ok    management port 127.0.0.1:${port} is in use by doctor-probe itself, running with the distro`,
        ),
        same.out,
      );
      const other = await doctor(root, {
        ...env,
        DATALAB_METRICS_PORT: port,
        OTEL_SERVICE_NAME: 'billing',
      });
      assert.equal(other.code, 1, other.out);
      assert.ok(
        other.lines.includes(
          `FAIL  management port 127.0.0.1:${port}: not available (EADDRINUSE) by another service with the distro (doctor-probe); the service would serve /metrics only once it frees`,
        ),
        other.out,
      );
    } finally {
      await app.stop();
    }
  });

  it('Koa without a router: the normalised path', async function () {
    const app = await install(this, 'koa-plain');
    const report = await doctor(app, env);
    assert.equal(report.code, 0, report.out);
    const lines = group(report, 'Frameworks');
    assert.equal(lines.length, 1, report.out);
    // The handler spans depend on whether the instrumentation list has Koa's.
    assert.match(
      lines[0] as string,
      new RegExp(
        `^ok {4}koa ${version(app, 'koa').replace(/\./g, '\\.')}: no @koa/router or koa-router: endpoint = URL path with ID-like segments as :id; (no handler spans \\(no instrumentation\\)|handler spans \\(koa\\))$`,
      ),
    );
  });

  it('the redis 3 client: instrumented, no false failure', async function () {
    const app = await install(this, 'redis3');
    const report = await doctor(app, env);
    assert.equal(report.code, 0, report.out);
    assert.deepEqual(group(report, 'Databases'), [
      `ok    redis ${version(app, 'redis')}: spans (redis), db_client_operation_duration_seconds, redis health check (PING on its clients)`,
    ]);
    assert.ok(!/^(FAIL|warn)/m.test(report.out), report.out);
  });

  it('the redis 4 client: instrumented through the @redis/client it brings', async function () {
    const app = await install(this, 'redis4');
    const report = await doctor(app, env);
    assert.equal(report.code, 0, report.out);
    assert.deepEqual(group(report, 'Databases'), [
      `ok    redis ${version(app, 'redis')}: spans (redis) through @redis/client ${version(app, '@redis/client')}, db_client_operation_duration_seconds, redis health check (PING on its clients)`,
    ]);
  });

  it('Sequelize on pg: through pg', async function () {
    const app = await install(this, 'sequelize-pg');
    const report = await doctor(app, env);
    assert.equal(report.code, 0, report.out);
    const pg = version(app, 'pg');
    assert.deepEqual(group(report, 'Databases'), [
      `ok    pg ${pg}: spans (pg), db_client_operation_duration_seconds`,
      `ok    pg-pool ${version(app, 'pg-pool')} (through pg): spans (pg), database_connections_active, database health check (SELECT 1 on its pools)`,
      `ok    sequelize ${version(app, 'sequelize')}: through pg ${pg}`,
    ]);
  });

  it('Prisma: what it gets and what not, as a warning (exit code 0)', async () => {
    const app = join(root, 'prisma');
    mkdirSync(join(app, 'node_modules', '@prisma', 'client'), { recursive: true });
    copyFileSync(join(APPS, 'prisma', 'package.json'), join(app, 'package.json'));
    writeFileSync(
      join(app, 'node_modules', '@prisma', 'client', 'package.json'),
      JSON.stringify({ name: '@prisma/client', version: '6.19.0' }),
    );
    const report = await doctor(app, env);
    assert.equal(report.code, 0, report.out);
    assert.deepEqual(group(report, 'Databases'), [
      "warn  @prisma/client 6.19.0: Prisma's query engine talks to the database itself: no database spans, no db_client_operation_duration_seconds, no database_connections_active, no health check on its connections; a driver adapter such as @prisma/adapter-pg goes through pg and gets them",
    ]);
    assert.deepEqual(group(report, 'Frameworks'), [
      'ok    no framework found (node:http): endpoint = URL path with ID-like segments as :id',
    ]);
    assert.match(report.out, /^\d+ ok, 1 warnings, 0 off, 0 failed$/m);
  });
});
