/**
 * Every way a platform team can switch the distro on, and off.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { MIN_NODE_VERSION } from '../../src/node-version';
import { type AppProcess, type Preload, ROOT, request, startApp } from '../support/app';
import { findNodeOlderThan, versionOf } from '../support/node-binaries';
import { startOtlpReceiver } from '../support/otlp-receiver';
import { samplesNamed, sumOf } from '../support/prometheus-text';
import { skipBecause } from '../support/skip';

describe('entry points', () => {
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  it('NODE_OPTIONS="--import @datalab/otel/register" instruments an ESM app', async () => {
    app = await startApp({ fixture: 'express-app.mjs', preload: 'node-options' });
    assert.equal(await request(app.url('/users/7')), 200);
    const counters = samplesNamed(await app.scrape(), 'http_requests_total');
    assert.equal(counters[0]?.labels.endpoint, '/users/:id');
  });

  it('--import of a CommonJS app', async () => {
    app = await startApp({ fixture: 'express-app.cjs', preload: 'import' });
    assert.equal(await request(app.url('/users/7')), 200);
    const counters = samplesNamed(await app.scrape(), 'http_requests_total');
    assert.equal(counters[0]?.labels.endpoint, '/users/:id');
  });

  it('DATALAB_ESM_HOOKS=false: a CommonJS app keeps its spans; ESM-imported libraries go unpatched', async () => {
    const receiver = await startOtlpReceiver();
    try {
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        DATALAB_ESM_HOOKS: 'false',
      };
      const isExpress = (scope: string) => scope.includes('instrumentation-express');
      app = await startApp({ fixture: 'express-app.cjs', preload: 'import', env });
      assert.equal(await request(app.url('/items/abc')), 200);
      await receiver.waitFor(
        () => receiver.spans.some((s) => isExpress(s.scope)),
        10_000,
        'an Express span of the CommonJS app',
      );
      await app.stop();
      receiver.clear();

      // The trade-off the setting documents: express imported from ESM is not patched (no
      // Express span), the server span and the route-template metrics remain.
      app = await startApp({ fixture: 'express-app.mjs', preload: 'import', env });
      assert.equal(await request(app.url('/items/abc')), 200);
      await receiver.waitFor(
        () => receiver.spans.some((s) => s.kind === 2),
        10_000,
        'the server span of the ESM app',
      );
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(!receiver.spans.some((s) => isExpress(s.scope)), 'no Express span');
      const counters = samplesNamed(await app.scrape(), 'http_requests_total');
      assert.equal(counters[0]?.labels.endpoint, '/items/:name');
    } finally {
      await receiver.close();
    }
  });

  it('loaded twice (NODE_OPTIONS and --require) starts once', async () => {
    app = await startApp({
      fixture: 'express-app.cjs',
      preload: 'require',
      env: { NODE_OPTIONS: '--import @datalab/otel/register' },
    });
    for (let i = 0; i < 3; i++) assert.equal(await request(app.url(`/users/${i}`)), 200);
    assert.equal(sumOf(samplesNamed(await app.scrape(), 'http_requests_total')), 3);
    assert.deepEqual(app.warnings(), [], 'no second management server fighting for the port');
  });

  it('OTEL_SDK_DISABLED=true turns everything off', async () => {
    app = await startApp({
      fixture: 'express-app.mjs',
      env: { OTEL_SDK_DISABLED: 'true' },
      waitForMetrics: false,
    });
    assert.equal(await request(app.url('/users/1')), 200);
    await assert.rejects(fetch(`http://127.0.0.1:${app.metricsPort}/metrics`));
    assert.deepEqual(app.warnings(), []);
  });

  it('the service exits on SIGTERM as it would without the distro', async () => {
    app = await startApp({ fixture: 'plain-http-app.mjs' });
    const { signal } = await app.stop();
    assert.equal(signal, 'SIGTERM');
  });

  it('a service with its own SIGTERM handler exits its own way', async () => {
    // The fixture drains (server.close, pool.end) and exits 0.
    app = await startApp({ fixture: 'express-app.cjs', preload: 'require' });
    assert.equal(await request(app.url('/db')), 200);
    assert.deepEqual(await app.stop(), { code: 0, signal: null });
  });

  it('a process that finishes is not held open by a backend that never answers', async () => {
    // A black hole: accepts connections, never answers.
    const sockets = new Set<Socket>();
    const hole = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
    const address = hole.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      app = await startApp({
        fixture: 'short-job.mjs',
        waitForMetrics: false,
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
          // The exporter alone would wait 30 s for the black hole.
          OTEL_EXPORTER_OTLP_TIMEOUT: '30000',
          DATALAB_SHUTDOWN_TIMEOUT_MS: '1000',
        },
      });
      const running = app;
      const finishedAt = await new Promise<number>((resolve) => {
        const check = () => {
          const line = running.stdout.find((l) => l.includes('"finished"'));
          if (line) resolve((JSON.parse(line) as { at: number }).at);
          else setTimeout(check, 20);
        };
        check();
      });
      const { code } = await running.exited;
      const heldFor = Date.now() - finishedAt;
      assert.equal(code, 0);
      assert.ok(heldFor < 5000, `held open ${heldFor} ms after the job finished`);
      assert.ok(sockets.size > 0, 'the distro did try to export');
    } finally {
      for (const s of sockets) s.destroy();
      hole.close();
    }
  });

  for (const flag of ['--require', '--import']) {
    it(`node ${flag} @datalab/otel/register -e / -p: the code runs, builtins and packages load`, () => {
      const env: NodeJS.ProcessEnv = { ...process.env, OTEL_TRACES_EXPORTER: 'none' };
      delete env.NODE_OPTIONS;
      const code =
        "require('node:module'); require('module'); require('express'); console.log('ran')";
      const evaluated = spawnSync(process.execPath, [flag, '@datalab/otel/register', '-e', code], {
        cwd: ROOT,
        env,
        encoding: 'utf8',
      });
      assert.equal(evaluated.status, 0, evaluated.stderr);
      assert.equal(evaluated.stdout.trim(), 'ran');
      const printed = spawnSync(process.execPath, [flag, '@datalab/otel/register', '-p', '6*7'], {
        cwd: ROOT,
        env,
        encoding: 'utf8',
      });
      assert.equal(printed.status, 0, printed.stderr);
      assert.equal(printed.stdout.trim(), '42');
    });
  }

  it('the service name falls back to the package.json name', async () => {
    app = await startApp({ fixture: 'pkg-app/server.cjs', env: { OTEL_SERVICE_NAME: '' } });
    assert.equal(await request(app.url('/')), 200);
    const counters = samplesNamed(await app.scrape(), 'http_requests_total');
    assert.equal(counters[0]?.labels.service, 'billing-worker');
  });
});

describe('on a Node.js older than supported', () => {
  let oldNode: string | undefined;
  before(() => {
    oldNode = findNodeOlderThan(MIN_NODE_VERSION);
  });

  /** Runs the fixture through a fixed conversation and returns what an observer could see. */
  async function observe(fixture: string, preload: Preload) {
    const app = await startApp({
      fixture,
      preload,
      node: oldNode,
      waitForMetrics: false,
      env: { OTEL_SERVICE_NAME: 'old-node-app' },
    });
    try {
      const bodies: string[] = [];
      for (const path of ['/a', '/b?x=1', '/exit']) {
        const res = await fetch(app.url(path));
        bodies.push(`${res.status} ${await res.text()}`);
      }
      const metricsServed = await fetch(`http://127.0.0.1:${app.metricsPort}/metrics`).then(
        () => true,
        () => false,
      );
      const { code, signal } = await app.exited;
      return {
        code,
        signal,
        bodies,
        metricsServed,
        // The port is the only thing that differs from run to run.
        stdout: app.stdout.map((l) => l.replace(/"port":\d+/, '"port":0')),
        stderr: app.stderr,
      };
    } finally {
      await app.stop();
    }
  }

  for (const [fixture, preload] of [
    ['old-node-app.cjs', 'require'],
    ['old-node-app.mjs', 'import'],
    ['old-node-app.cjs', 'import'],
  ] as const) {
    it(`--${preload} of ${fixture}: one DLOTEL_NODE_UNSUPPORTED warning, and the app behaves as without the flag`, async function () {
      if (!oldNode) {
        const reason = `no Node.js older than ${MIN_NODE_VERSION} on this machine (PATH, /usr/bin, the Node cache)`;
        if (process.env.CI === 'true') throw new Error(`CI must have one: ${reason}`);
        skipBecause(this, reason);
      }
      const version = versionOf(oldNode as string);
      const without = await observe(fixture, 'none');
      const withFlag = await observe(fixture, preload);

      assert.equal(withFlag.code, 7, withFlag.stderr.join('\n'));
      assert.deepEqual(
        { ...withFlag, stderr: undefined },
        { ...without, stderr: undefined },
        'exit status, responses and stdout as without the flag',
      );
      assert.equal(withFlag.metricsServed, false, 'no management server');
      assert.ok(
        withFlag.stdout.some((l) => l.includes('"otel":false')),
        'nothing of OpenTelemetry loaded',
      );
      assert.deepEqual(without.stderr, []);
      assert.equal(withFlag.stderr.length, 1, withFlag.stderr.join('\n'));
      const record = JSON.parse(withFlag.stderr[0] as string) as Record<string, unknown>;
      assert.equal(record.code, 'DLOTEL_NODE_UNSUPPORTED');
      assert.equal(record.logger, '@datalab/otel');
      assert.equal(record.level, 'warn');
      assert.equal(record.service, 'old-node-app');
      assert.match(
        String(record.message),
        new RegExp(`Node\\.js ${version.replace(/\./g, '\\.')} `),
      );
      assert.ok(String(record.message).includes(`>= ${MIN_NODE_VERSION}`), String(record.message));
    });
  }

  it('loaded twice (NODE_OPTIONS and --require) still warns once', async function () {
    if (!oldNode) {
      const reason = `no Node.js older than ${MIN_NODE_VERSION} on this machine`;
      if (process.env.CI === 'true') throw new Error(`CI must have one: ${reason}`);
      skipBecause(this, reason);
    }
    const app = await startApp({
      fixture: 'old-node-app.cjs',
      preload: 'require',
      node: oldNode,
      waitForMetrics: false,
      env: { NODE_OPTIONS: '--import @datalab/otel/register' },
    });
    try {
      assert.equal((await fetch(app.url('/exit'))).status, 200);
      assert.equal((await app.exited).code, 7);
      assert.deepEqual(
        app.warnings().map((w) => w.split(':')[0]),
        ['DLOTEL_NODE_UNSUPPORTED'],
      );
    } finally {
      await app.stop();
    }
  });
});
