/**
 * Installing the distro the way a user does: `npm install` of the packed package into an
 * application outside the repository. The application already has OpenTelemetry 2.x packages (as
 * a cloud SDK brings them, with `@opentelemetry/api` 1.9) and winston 3.3.3 in its lockfile. The
 * install must resolve without --force or --legacy-peer-deps, leave the application's winston as
 * locked, give the distro's packages one `@opentelemetry/api` 1.10 copy, and the service must run
 * with correlated log lines from the application's own winston. A second application, without
 * winston, proves createLogger() works on the winston the distro brings.
 *
 * Slow (npm installs from the registry, with its cache first) but bounded: 3 minutes per step.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { type AppProcess, freePort, startApp } from '../support/app';
import {
  copiesOf,
  type LockPackage,
  NPM_FLAGS,
  nodeIn,
  npm,
  npmOk,
  packedDistro,
  readLock,
  STEP_TIMEOUT,
  skipIfOffline,
  writeJson,
} from '../support/install';
import { samplesNamed, sumOf } from '../support/prometheus-text';

/** What a cloud SDK of the SDK 2 era puts in an application, and a winston locked long ago. */
const APP_DEPENDENCIES = {
  '@opentelemetry/api': '1.9.0',
  '@opentelemetry/core': '2.12.0',
  '@opentelemetry/sdk-trace-base': '2.12.0',
  winston: '3.3.3',
};

/** Counts what `--import @datalab/otel/register` loads into an idle process. */
const COUNTER = `
process.on('exit', () => {
  const files = Object.keys(require.cache);
  const packages = new Set();
  for (const f of files) {
    const m = /^(.*node_modules[\\\\/](?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)[\\\\/]/.exec(f);
    if (m) packages.add(m[1]);
  }
  require('node:fs').writeFileSync(process.env.COUNT_OUT, JSON.stringify({ modules: files.length, packages: [...packages] }));
});
`;

const APP_SERVER = `
const http = require('node:http');
const winston = require('winston');
// The application's own api (1.9.0), not the distro's.
const api = require('@opentelemetry/api');
const { createLogger } = require('@datalab/otel');
const own = winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Console()] });
const distro = createLogger();
const server = http.createServer((req, res) => {
  own.info('own logger', { path: req.url, app_api_trace_id: api.trace.getActiveSpan()?.spanContext().traceId });
  distro.info('distro logger');
  res.end('ok');
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({
    event: 'listening',
    port: server.address().port,
    winston: require('winston/package.json').version,
    winstonPath: require.resolve('winston'),
  }));
});
`;

const PLAIN_SERVER = `
const http = require('node:http');
const { createLogger } = require('@datalab/otel');
const log = createLogger();
const server = http.createServer((req, res) => {
  log.info('handled', { path: req.url });
  res.end('ok');
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
`;

function records(lines: readonly string[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // Not one of ours.
    }
  }
  return out;
}

/** The log line with `message`, once the process has written it. */
async function lineWith(app: AppProcess, message: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = records(app.stdout).find((r) => r.message === message);
    if (found) return found;
    if (Date.now() > deadline) {
      assert.fail(`no ${JSON.stringify(message)} line in:\n${app.stdout.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function assertCorrelated(app: AppProcess, messages: readonly string[]): Promise<void> {
  const res = await fetch(app.url('/hello'));
  assert.equal(res.status, 200);
  await res.text();
  const correlationId = res.headers.get('x-correlation-id');
  assert.ok(correlationId, 'the response carries x-correlation-id');
  for (const message of messages) {
    const line = await lineWith(app, message);
    assert.match(String(line.trace_id), /^[0-9a-f]{32}$/, `${message}: trace_id`);
    assert.match(String(line.span_id), /^[0-9a-f]{16}$/, `${message}: span_id`);
    assert.equal(line.correlation_id, correlationId, `${message}: correlation_id`);
  }
  const samples = await app.scrape();
  assert.ok(sumOf(samplesNamed(samples, 'http_requests_total')) >= 1, '/metrics counts it');
}

describe('installing into an application', function () {
  this.timeout(STEP_TIMEOUT);
  this.slow(60_000);

  let work: string;
  let tarball: string;
  let app: AppProcess | undefined;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'datalab-otel-install-'));
    tarball = (await packedDistro()).tarball;
  });

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  describe('that has OpenTelemetry 2.x packages and winston 3.3.3', () => {
    let dir: string;
    let winstonBefore: LockPackage;

    before(async function () {
      dir = join(work, 'cloud-app');
      mkdirSync(dir);
      writeJson(join(dir, 'package.json'), { name: 'cloud-app', version: '1.0.0', private: true });
      const specs = Object.entries(APP_DEPENDENCIES).map(([n, v]) => `${n}@${v}`);
      const base = await npm(dir, ['install', '--save-exact', ...NPM_FLAGS, ...specs]);
      skipIfOffline(this, base);
      assert.equal(base.code, 0, base.stderr);
      // Then the usual caret ranges: the lock keeps what was installed, and a range is what lets
      // npm replace a locked version with a newer one for another package's sake.
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        dependencies: Record<string, string>;
      };
      for (const name of Object.keys(pkg.dependencies)) {
        pkg.dependencies[name] = `^${pkg.dependencies[name]}`;
      }
      writeJson(join(dir, 'package.json'), pkg);
      await npmOk(dir, ['install', ...NPM_FLAGS]);
      winstonBefore = readLock(dir).packages['node_modules/winston'];
      assert.equal(winstonBefore?.version, '3.3.3');

      const install = await npm(dir, ['install', ...NPM_FLAGS, tarball]);
      assert.equal(
        install.code,
        0,
        `installing the distro must not need --force or --legacy-peer-deps:\n${install.stderr}`,
      );
    });

    it("keeps the application's winston as locked, and only that copy", () => {
      const lock = readLock(dir);
      assert.deepEqual(lock.packages['node_modules/winston'], winstonBefore);
      assert.deepEqual([...copiesOf(lock, 'winston')], [['node_modules/winston', '3.3.3']]);
      const onDisk = JSON.parse(
        readFileSync(join(dir, 'node_modules', 'winston', 'package.json'), 'utf8'),
      ) as { version: string };
      assert.equal(onDisk.version, '3.3.3');
    });

    it('installs one more @opentelemetry/api (1.10), which the distro uses', async () => {
      // The one problem npm may report (it warned "ERESOLVE overriding peer dependency" while
      // installing): contrib instrumentations whose own peer range accepts api 1.9 sit next to the
      // application's 1.9, which their SDK 3 dependencies do not accept. The distro resolves them
      // to its own copy at run time (src/api-copy.ts); anything else missing or invalid fails here.
      const ls = await npm(dir, ['ls', '--all', '--json']);
      const problems = (JSON.parse(ls.stdout) as { problems?: string[] }).problems ?? [];
      const apiProblem = `invalid: @opentelemetry/api@1.9.0 ${join(dir, 'node_modules', '@opentelemetry', 'api')}`;
      assert.deepEqual(
        problems.filter((p) => p !== apiProblem),
        [],
        `npm ls reports problems:\n${ls.stderr}`,
      );

      const lock = readLock(dir);
      const api = copiesOf(lock, '@opentelemetry/api');
      const newer = [...api].filter(([, v]) => v.startsWith('1.10.'));
      // The application's 2.x packages accept api < 1.10 only, so its 1.9.0 stays for them; the
      // distro's SDK 3 packages need 1.10: exactly one more copy, shared by all of them.
      assert.equal(api.get('node_modules/@opentelemetry/api'), '1.9.0');
      assert.equal(newer.length, 1, `one api 1.10 copy: ${JSON.stringify([...api])}`);
      assert.equal(api.size, 2, `api copies: ${JSON.stringify([...api])}`);

      const resolved = (
        await nodeIn(dir, [
          '-p',
          "require.resolve('@opentelemetry/api', { paths: [require.resolve('@datalab/otel')] })",
        ])
      ).trim();
      assert.ok(resolved.startsWith(join(dir, newer[0][0]) + sep), `the distro's api: ${resolved}`);

      const core = copiesOf(lock, '@opentelemetry/core');
      console.log(
        `      @opentelemetry/core copies: ${core.size} (${[...core.values()].join(', ')}); ` +
          `packages: ${Object.keys(lock.packages).length - 1}`,
      );
      const core3 = new Set([...core.values()].filter((v) => v.startsWith('3.')));
      assert.equal(core3.size, 1, `one @opentelemetry/core 3.x version: ${[...core3]}`);
    });

    it("runs on the application's winston: trace and correlation IDs, /metrics", async () => {
      writeFileSync(join(dir, 'server.cjs'), APP_SERVER);
      app = await startApp({ fixture: join(dir, 'server.cjs'), cwd: dir });
      const listening = records(app.stdout).find((r) => r.event === 'listening');
      assert.equal(listening?.winston, '3.3.3');
      assert.equal(
        listening?.winstonPath,
        join(dir, 'node_modules', 'winston', 'lib', 'winston.js'),
      );
      await assertCorrelated(app, ['own logger', 'distro logger']);
      // The application's api 1.9 reads the globals the distro's 1.10 registered.
      const own = await lineWith(app, 'own logger');
      assert.equal(own.app_api_trace_id, own.trace_id);
      assert.deepEqual(app.warnings(), []);
    });

    it('start-up: modules the preload loads into an idle process', async () => {
      writeFileSync(join(dir, 'count.cjs'), COUNTER);
      const out = join(dir, 'count.json');
      await nodeIn(
        dir,
        ['--require', './count.cjs', '--import', '@datalab/otel/register', '-e', '0'],
        {
          COUNT_OUT: out,
          DATALAB_METRICS_PORT: String(await freePort()),
        },
      );
      const count = JSON.parse(readFileSync(out, 'utf8')) as {
        modules: number;
        packages: string[];
      };
      const named = (n: string) =>
        count.packages.filter((p) => p.endsWith(`${sep}${n.replace('/', sep)}`));
      console.log(
        `      CommonJS modules: ${count.modules}, packages: ${count.packages.length}, ` +
          `@opentelemetry/core copies loaded: ${named('@opentelemetry/core').length}, ` +
          `@opentelemetry/api copies loaded: ${named('@opentelemetry/api').length}`,
      );
      // Everything the distro loads shares its api: the application's 1.9 is not even loaded.
      assert.deepEqual(named('@opentelemetry/api'), [
        join(dir, 'node_modules', '@datalab', 'otel', 'node_modules', '@opentelemetry', 'api'),
      ]);
    });
  });

  describe('that has no winston', () => {
    let dir: string;

    before(async function () {
      dir = join(work, 'plain-app');
      mkdirSync(dir);
      writeJson(join(dir, 'package.json'), { name: 'plain-app', version: '1.0.0', private: true });
      const install = await npm(dir, ['install', ...NPM_FLAGS, tarball]);
      skipIfOffline(this, install);
      assert.equal(install.code, 0, install.stderr);
    });

    it('createLogger() works on the winston the distro brings', async () => {
      const lock = readLock(dir);
      const winston = [...copiesOf(lock, 'winston')];
      assert.equal(winston.length, 1, JSON.stringify(winston));
      assert.match(winston[0][1], /^3\./);
      assert.equal(copiesOf(lock, '@opentelemetry/api').size, 1, 'one api copy in a plain app');
      assert.equal(copiesOf(lock, '@opentelemetry/core').size, 1, 'one core copy in a plain app');
      writeFileSync(join(dir, 'server.cjs'), PLAIN_SERVER);
      app = await startApp({ fixture: join(dir, 'server.cjs'), cwd: dir });
      await assertCorrelated(app, ['handled']);
      assert.deepEqual(app.warnings(), []);
    });
  });
});
