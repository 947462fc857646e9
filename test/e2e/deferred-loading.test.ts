/**
 * Instrumentation packages load when the application loads their library, not at start-up: a
 * library the application never loads costs no package. A package the preload loads after
 * start-up (instrumentation-undici, at the first fetch) fails the way it would have failed at
 * start-up: one coded warning, and the application serves on.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { isBuiltin } from 'node:module';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { INSTRUMENTATION_NAMES } from '../../src/config';
import { DEFERRED_MODULES } from '../../src/instrumentations';
import { type AppProcess, request, startApp } from '../support/app';
import { FIXTURE_APPS, installFixtureApp } from '../support/framework-apps';
import { samplesNamed } from '../support/prometheus-text';

/** Instrumentations of libraries (not of Node.js's own modules): every one is deferred. */
const LIBRARY_INSTRUMENTATIONS = Object.entries(DEFERRED_MODULES)
  .filter(([, modules]) => !modules?.some((m) => isBuiltin(m)))
  .map(([name]) => name);

describe('deferred loading: a library never loaded loads no instrumentation', function () {
  this.timeout(60_000);
  let app: AppProcess | undefined;
  before(async function () {
    this.timeout(300_000);
    await installFixtureApp(this, 'amqplib');
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  // No PostgreSQL settings: the health check would load pg for them (this service has none).
  const NO_PG = { PGHOST: '', PGPORT: '', PGUSER: '', PGDATABASE: '' };

  async function loaded(): Promise<string[]> {
    return (await (await fetch((app as AppProcess).url('/loaded'))).json()) as string[];
  }

  for (const file of ['app.cjs', 'app.mjs']) {
    it(`${file}, the default set: only http at start-up; loading amqplib loads its instrumentation`, async () => {
      app = await startApp({
        fixture: join(FIXTURE_APPS, 'amqplib', file),
        preload: file.endsWith('.mjs') ? 'import' : 'require',
        env: { ...NO_PG, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' },
      });
      assert.deepEqual(await loaded(), ['http']);
      assert.equal(await request(app.url('/require')), 200);
      // amqplib requires node:net too, whose instrumentation is off by default: not loaded.
      assert.deepEqual(await loaded(), ['amqplib', 'http']);
      assert.deepEqual(app.warnings(), []);
    });
  }

  it('every instrumentation enabled: no library one loads until its library does', async () => {
    app = await startApp({
      fixture: join(FIXTURE_APPS, 'amqplib', 'app.cjs'),
      preload: 'require',
      env: {
        ...NO_PG,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
        OTEL_NODE_ENABLED_INSTRUMENTATIONS: INSTRUMENTATION_NAMES.join(','),
      },
    });
    assert.ok(LIBRARY_INSTRUMENTATIONS.length > 30, LIBRARY_INSTRUMENTATIONS.join());
    const libraries = async () =>
      (await loaded()).filter((name) => LIBRARY_INSTRUMENTATIONS.includes(name));
    assert.deepEqual(await libraries(), []);
    // The ones loaded at start-up hook nothing or Node.js's own modules.
    assert.ok((await loaded()).includes('http'));
    assert.equal(await request(app.url('/require')), 200);
    assert.deepEqual(await libraries(), ['amqplib']);
    assert.deepEqual(app.warnings(), []);
  });
});

describe('deferred loading', () => {
  let app: AppProcess | undefined;
  let upstream: Server | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    await new Promise((resolve) => (upstream ? upstream.close(resolve) : resolve(undefined)));
    upstream = undefined;
  });

  async function startUpstream(): Promise<string> {
    upstream = createServer((_req, res) => res.end('from upstream'));
    await new Promise<void>((resolve) => upstream?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`;
  }

  it('instrumentation-undici failing to load at the first fetch: one warning, requests served', async () => {
    const target = await startUpstream();
    app = await startApp({
      fixture: 'broken-undici-app.cjs',
      env: { FETCH_TARGET: target, OTEL_TRACES_EXPORTER: 'none' },
    });
    assert.deepEqual(app.warnings(), []);
    const res = await fetch(app.url('/fetch'));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'from upstream');
    assert.equal(await request(app.url('/fetch')), 200);
    assert.equal(await request(app.url('/users/1')), 200);
    const warnings = app.warnings();
    assert.equal(warnings.length, 1, app.stderr.join('\n'));
    assert.match(
      warnings[0] as string,
      /^DLOTEL_INSTRUMENTATION_FAILED: instrumentation "undici" could not be loaded \(instrumentation-undici damaged on purpose\)/,
    );
    // The inbound side is untouched: every request counted.
    const total = samplesNamed(await app.scrape(), 'http_requests_total').reduce(
      (sum, s) => sum + s.value,
      0,
    );
    assert.equal(total, 3);
  });
});
