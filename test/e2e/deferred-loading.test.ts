/**
 * A package the preload loads after start-up (instrumentation-undici, at the first fetch) fails
 * the way it would have failed at start-up: one coded warning, and the application serves on.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AppProcess, request, startApp } from '../support/app';
import { samplesNamed } from '../support/prometheus-text';

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
