/**
 * The product as a user gets it: the packed tarball (what `npm publish` would upload) and a
 * git-URL install, each put into a fresh Express + pg application outside the repository and
 * started with `node --import @datalab/otel/register`. Nothing here runs the repository's own
 * build output in place: a file missing from `files`, an export pointing at nothing, a dependency
 * reached only through hoisting or a build that does not happen on install fails here.
 *
 * Slow (installs from the registry, its cache first; the git case builds the package) but
 * bounded per step. One pack per test run is shared with install.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AppProcess, ROOT, startApp } from '../support/app';
import {
  NPM_FLAGS,
  npm,
  npmOk,
  type PackedDistro,
  PNPM_VERSION,
  packedDistro,
  pnpm,
  type RunResult,
  repoVersionOf,
  run,
  STEP_TIMEOUT,
  skipIfOffline,
  writeJson,
} from '../support/install';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { type Sample, samplesNamed, sumOf } from '../support/prometheus-text';

/**
 * Bytes of the .tgz: 286 kB when this was written, 376 kB with the route sources, the doctor and
 * every instrumentation of the list; plus room for growth, not for a mistake (a stray directory).
 */
const PACKED_SIZE_BUDGET = 420_000;
const SERVER = 2;
const CLIENT = 3;
const USERS = [1, 2, 3, 4, 5];

interface PackageJson {
  main?: string;
  types?: string;
  exports?: unknown;
  bin?: string | Record<string, string>;
  files?: string[];
}

const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;

/** Every file path named by `exports` (all conditions), `bin`, `main` and `types`. */
function namedPaths(pkg: PackageJson): string[] {
  const out = new Set<string>();
  const walk = (value: unknown): void => {
    if (typeof value === 'string') out.add(value.replace(/^\.\//, ''));
    else if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  walk(pkg.exports);
  walk(pkg.bin);
  walk(pkg.main);
  walk(pkg.types);
  return [...out].sort();
}

/** What a user's package must not carry: tests, fixtures, benchmarks and their results, sources. */
const NOT_SHIPPED = [
  /(^|\/)(test|tests|__tests__|fixtures|bench|benchmarks?)(\/|$)/,
  /\.(test|spec)\.[a-z]+$/,
  /^\.datalab\//,
  /(^|\/)[^/]*\.(ts|mts|cts)$/,
];

function isShippable(path: string): boolean {
  if (/\.d\.(m|c)?ts$/.test(path)) return true;
  return !NOT_SHIPPED.some((re) => re.test(path));
}

/** The application: Express and pg as its own dependencies, a route that queries PostgreSQL. */
const SERVER_SOURCE = `
const express = require('express');
const pg = require('pg');
const { healthHandler } = require('@datalab/otel');

const pool = new pg.Pool({ max: 2 });
const app = express();
app.use(healthHandler());
app.get('/users/:id', async (req, res, next) => {
  try {
    const { rows } = await pool.query('SELECT $1::int AS id', [req.params.id]);
    res.json(rows[0]);
  } catch (err) {
    next(err);
  }
});
const server = app.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
process.on('SIGTERM', () => {
  server.close();
  pool.end().finally(() => process.exit(0));
});
`;

/**
 * A TypeScript consumer of the public API. The @ts-expect-error lines make the check fail when
 * the types resolve to `any` (a missing or unresolvable .d.ts) as well as when they are wrong.
 */
const CONSUMER_SOURCE = `
import {
  addHealthCheck,
  type CheckResult,
  type Config,
  CORRELATION_ATTRIBUTE,
  createLogger,
  currentTelemetry,
  DISTRO_NAME,
  DISTRO_VERSION,
  type HealthReport,
  type HealthRequestHandler,
  healthHandler,
  isValidCorrelationId,
  type LoggerOptions,
  removeHealthCheck,
  runHealthChecks,
} from '@datalab/otel';
import '@datalab/otel/register';

const options: LoggerOptions = { level: 'info', format: 'json', redactKeys: ['card'] };
const logger = createLogger(options);
logger.info('typed', { ok: true });

addHealthCheck({
  name: 'queue',
  critical: false,
  check: async () => ({ status: 'degraded', message: 'slow consumer' }),
});
// @ts-expect-error a check needs a name
addHealthCheck({ check: () => true });
// @ts-expect-error not a log format
createLogger({ format: 'xml' });

export const handler: HealthRequestHandler = healthHandler({ path: '/healthz' });
export const serviceName: Config['serviceName'] | undefined = currentTelemetry()?.config.serviceName;

export async function summary(id: string): Promise<string> {
  const report: HealthReport = await runHealthChecks({ fresh: true });
  const queue: CheckResult | undefined = report.checks.queue;
  const valid: boolean = isValidCorrelationId(id);
  const removed: boolean = removeHealthCheck('queue');
  return [DISTRO_NAME, DISTRO_VERSION, CORRELATION_ATTRIBUTE, report.status, queue?.status, valid, removed].join(' ');
}
`;

const CONSUMER_OPTIONS = {
  target: 'es2022',
  strict: true,
  noEmit: true,
  // The package's own declarations are checked too, as a consumer with skipLibCheck off sees them.
  skipLibCheck: false,
  noUncheckedSideEffectImports: true,
  types: ['node'],
};

/** package.json of the application, with the distro from `distro` (a tarball or a git URL). */
function applicationManifest(name: string, distro: string): Record<string, unknown> {
  return {
    name,
    version: '1.0.0',
    private: true,
    dependencies: {
      '@datalab/otel': distro,
      express: repoVersionOf('express'),
      pg: repoVersionOf('pg'),
    },
    devDependencies: {
      typescript: repoVersionOf('typescript'),
      '@types/node': repoVersionOf('@types/node'),
    },
  };
}

function writeApplication(dir: string, name: string, distro: string): void {
  mkdirSync(dir, { recursive: true });
  writeJson(join(dir, 'package.json'), applicationManifest(name, distro));
  writeFileSync(join(dir, 'server.cjs'), SERVER_SOURCE);
}

function timed<T>(label: string, work: () => Promise<T>): Promise<T> {
  const start = Date.now();
  return work().finally(() => {
    console.log(`      ${label}: ${((Date.now() - start) / 1000).toFixed(1)} s`);
  });
}

async function settledScrape(app: AppProcess, total: number): Promise<Sample[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const samples = await app.scrape();
    const counted = samplesNamed(samples, 'http_requests_total').filter(
      (s) => s.labels.endpoint === '/users/:id',
    );
    if (sumOf(counted) >= total || Date.now() > deadline) return samples;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts the installed application with the preload, sends requests, and checks the contract
 * metrics on /metrics and the server and pg spans at the OTLP receiver.
 */
async function assertServes(dir: string, service: string, receiver: OtlpReceiver): Promise<void> {
  receiver.clear();
  const app = await startApp({
    fixture: join(dir, 'server.cjs'),
    cwd: dir,
    env: {
      OTEL_SERVICE_NAME: service,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
  });
  try {
    for (const id of USERS) {
      const res = await fetch(app.url(`/users/${id}`));
      assert.equal(res.status, 200, `GET /users/${id}`);
      assert.deepEqual(await res.json(), { id });
    }
    const health = await fetch(app.url('/health/live'));
    assert.equal(health.status, 200, "healthHandler() on the application's server");
    await health.arrayBuffer();

    const samples = await settledScrape(app, USERS.length);
    const users = samplesNamed(samples, 'http_requests_total').filter(
      (s) => s.labels.endpoint === '/users/:id',
    );
    assert.deepEqual(
      users.map((s) => ({ ...s.labels })),
      [{ method: 'GET', endpoint: '/users/:id', status: '200', service }],
    );
    assert.equal(sumOf(users), USERS.length);
    const durations = samplesNamed(samples, 'http_request_duration_seconds_count').filter(
      (s) => s.labels.endpoint === '/users/:id',
    );
    assert.equal(sumOf(durations), USERS.length, 'http_request_duration_seconds');
    for (const name of ['http_requests_active', 'memory_usage_bytes']) {
      const series = samplesNamed(samples, name);
      assert.ok(
        series.some((s) => s.labels.service === service),
        `${name} for ${service}`,
      );
    }

    await receiver.waitFor(
      () =>
        receiver.spans.filter(
          (s) => s.kind === SERVER && s.attributes['http.route'] === '/users/:id',
        ).length >= USERS.length &&
        receiver.spans.filter((s) => s.kind === CLIENT && s.scope.includes('pg')).length >=
          USERS.length,
      10_000,
      'server and pg spans',
    );
    const servers = receiver.spans.filter(
      (s) => s.kind === SERVER && s.attributes['http.route'] === '/users/:id',
    );
    assert.ok(servers.every((s) => s.resource['service.name'] === service));
    assert.ok(servers.every((s) => s.resource['telemetry.distro.name'] === '@datalab/otel'));
    const queries = receiver.spans.filter(
      (s) => s.kind === CLIENT && s.scope.includes('instrumentation-pg'),
    );
    const serverTraces = new Set(servers.map((s) => s.traceId));
    assert.ok(
      queries.every((q) => serverTraces.has(q.traceId)),
      'each query span is in the trace of its request',
    );
    assert.deepEqual(app.warnings(), []);
  } finally {
    await app.stop();
  }
}

describe('the package as users get it', function () {
  this.timeout(STEP_TIMEOUT);
  this.slow(60_000);

  let work: string;
  let packed: PackedDistro;
  let receiver: OtlpReceiver;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'datalab-otel-package-'));
    packed = await timed('npm pack', packedDistro);
    receiver = await startOtlpReceiver();
  });

  after(async () => {
    await receiver?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  describe('the tarball', () => {
    it('contains every path that exports, bin, main and types name', () => {
      const named = namedPaths(manifest);
      assert.ok(named.includes('dist/register.mjs') && named.includes('dist/register.js'));
      const missing = named.filter((p) => !packed.files.has(p));
      assert.deepEqual(missing, [], `named by package.json but not in the tarball`);
      // Node resolves the register entries' declarations next to them.
      for (const types of ['dist/register.d.ts', 'dist/register.d.mts']) {
        assert.ok(packed.files.has(types), types);
      }
    });

    it('ships no tests, fixtures, benchmark results or TypeScript sources', () => {
      const unwanted = [...packed.files.keys()].filter((p) => !isShippable(p));
      assert.deepEqual(unwanted, []);
    });

    it('ships no compiled file whose source is gone', () => {
      // dist/ is not cleaned by a build: a renamed module would otherwise ship twice.
      const stale = [...packed.files.keys()]
        .filter((p) => /^dist\/src\/.*\.js$/.test(p))
        .filter((p) => !existsSync(join(ROOT, p.replace(/^dist\//, '').replace(/\.js$/, '.ts'))));
      assert.deepEqual(stale, []);
    });

    it(`is under its size budget (${PACKED_SIZE_BUDGET} bytes packed)`, () => {
      console.log(
        `      ${packed.size} bytes packed, ${packed.unpackedSize} unpacked, ${packed.entryCount} files`,
      );
      assert.ok(
        packed.size <= PACKED_SIZE_BUDGET,
        `${packed.size} bytes packed, over the ${PACKED_SIZE_BUDGET} budget`,
      );
    });
  });

  describe('installed with npm into an Express + pg application', () => {
    let dir: string;

    before(async function () {
      dir = join(work, 'npm-app');
      // The tarball's package.json has the prepare script: were it run here, as it must not be
      // for a registry install, it would fail (no TypeScript, no sources).
      writeApplication(dir, 'npm-app', `file:${packed.tarball}`);
      const install = await timed('npm install', () => npm(dir, ['install', ...NPM_FLAGS]));
      skipIfOffline(this, install);
      assert.equal(install.code, 0, install.stderr);
    });

    it('serves the contract metrics and exports the spans', async () => {
      await assertServes(dir, 'npm-app', receiver);
    });

    it('type-checks a TypeScript consumer under moduleResolution node16 and bundler', async () => {
      for (const file of ['consumer.cts', 'consumer.mts', 'consumer.ts']) {
        writeFileSync(join(dir, file), CONSUMER_SOURCE);
      }
      writeJson(join(dir, 'tsconfig.node16.json'), {
        compilerOptions: { ...CONSUMER_OPTIONS, module: 'node16', moduleResolution: 'node16' },
        files: ['consumer.cts', 'consumer.mts'],
      });
      writeJson(join(dir, 'tsconfig.bundler.json'), {
        compilerOptions: { ...CONSUMER_OPTIONS, module: 'preserve', moduleResolution: 'bundler' },
        files: ['consumer.ts'],
      });
      const tsc = join(dir, 'node_modules', 'typescript', 'bin', 'tsc');
      for (const config of ['tsconfig.node16.json', 'tsconfig.bundler.json']) {
        const result = await run(process.execPath, [tsc, '-p', config], dir);
        assert.equal(result.code, 0, `tsc -p ${config}:\n${result.stdout}${result.stderr}`);
      }
    });

    it('a production install (npm ci --omit=dev) serves the same', async () => {
      await timed('npm ci --omit=dev', () => npmOk(dir, ['ci', '--omit=dev', ...NPM_FLAGS]));
      assert.ok(!existsSync(join(dir, 'node_modules', 'typescript')), 'dev dependencies omitted');
      await assertServes(dir, 'npm-app-prod', receiver);
    });
  });

  describe('installed with pnpm, strict layout, into an Express + pg application', () => {
    let dir: string;

    before(async function () {
      dir = join(work, 'pnpm-app');
      writeApplication(dir, 'pnpm-app', `file:${packed.tarball}`);
      // No hoisting at all, not even into node_modules/.pnpm/node_modules: a dependency the
      // distro does not declare is not found. protobufjs (under the OTLP exporters) has an
      // install script that pnpm refuses to skip silently; the distro does not need it (README).
      writeFileSync(
        join(dir, 'pnpm-workspace.yaml'),
        'hoist: false\npublicHoistPattern: []\nallowBuilds:\n  protobufjs: false\n',
      );
      const install = await timed(`pnpm ${PNPM_VERSION} install`, () =>
        pnpm(dir, ['install', '--prefer-offline', '--reporter=append-only']),
      );
      skipIfOffline(this, install);
      assert.equal(install.code, 0, `pnpm install:\n${install.stdout}${install.stderr}`);
    });

    it('has no hoisted dependencies', () => {
      assert.ok(existsSync(join(dir, 'node_modules', '.pnpm')), 'a pnpm layout');
      assert.ok(!existsSync(join(dir, 'node_modules', '.pnpm', 'node_modules')), 'nothing hoisted');
      assert.ok(
        !existsSync(join(dir, 'node_modules', '@opentelemetry')),
        "the distro's dependencies are not the application's",
      );
    });

    it('serves the contract metrics and exports the spans', async () => {
      await assertServes(dir, 'pnpm-app', receiver);
    });
  });

  describe('installed from a git URL', () => {
    let dir: string;
    let install: RunResult;

    before(async function () {
      // The committed HEAD, as a team's git dependency sees it: dist/ is not in git, so the
      // package must build itself on install.
      const head = (await run('git', ['rev-parse', 'HEAD'], ROOT)).stdout.trim();
      assert.match(head, /^[0-9a-f]{40}$/);
      const clone = join(work, 'clone');
      const cloned = await run('git', ['clone', '--quiet', '--no-hardlinks', ROOT, clone], work);
      assert.equal(cloned.code, 0, cloned.stderr);
      assert.ok(!existsSync(join(clone, 'dist')), 'the clone has no build output');
      dir = join(work, 'git-app');
      writeApplication(dir, 'git-app', `git+file://${clone}#${head}`);
      install = await timed('npm install (git dependency, builds the package)', () =>
        npm(dir, ['install', ...NPM_FLAGS]),
      );
      skipIfOffline(this, install);
      assert.equal(install.code, 0, install.stderr);
    });

    it('carries the compiled preload', () => {
      const installed = join(dir, 'node_modules', '@datalab', 'otel');
      for (const path of namedPaths(manifest)) {
        assert.ok(existsSync(join(installed, path)), `${path} in the git-installed package`);
      }
      assert.ok(!existsSync(join(installed, 'dist', 'test')), 'no compiled tests');
      // The build's tools stayed in npm's temporary copy.
      for (const devOnly of ['mocha', 'tsx', 'autocannon']) {
        assert.ok(!existsSync(join(dir, 'node_modules', devOnly)), `${devOnly} not installed`);
      }
    });

    it('serves the contract metrics and exports the spans', async () => {
      await assertServes(dir, 'git-app', receiver);
    });
  });
});
