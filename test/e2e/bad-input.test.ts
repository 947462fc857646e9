/**
 * Configuration mistakes cost one warning line naming the culprit; the service always serves.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { DEFAULT_HTTP_BUCKETS } from '../../src/config';
import { type AppProcess, freePort, request, startApp } from '../support/app';
import { samplesNamed } from '../support/prometheus-text';

describe('bad configuration: one warning, the app serves', () => {
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  function warningsNaming(text: string): string[] {
    return (app as AppProcess).warnings().filter((w) => w.includes(text));
  }

  it('DATALAB_METRICS_PORT=abc', async () => {
    // The default port may or may not be free on this machine; the app must serve either way.
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { DATALAB_METRICS_PORT: 'abc' },
      waitForMetrics: false,
    });
    assert.equal(await request(app.url('/users/1')), 200);
    // (A second line, DLOTEL_PORT_UNAVAILABLE, appears when 9464 is taken on this machine.)
    const lines = warningsNaming('DLOTEL_CONFIG_INVALID');
    assert.equal(lines.length, 1, app.stderr.join('\n'));
    assert.match(
      lines[0] as string,
      /DLOTEL_CONFIG_INVALID: DATALAB_METRICS_PORT="abc" .*default 9464/,
    );
  });

  it('DATALAB_HTTP_BUCKETS=5,1,x falls back to the default buckets', async () => {
    app = await startApp({ fixture: 'plain-http-app.mjs', env: { DATALAB_HTTP_BUCKETS: '5,1,x' } });
    assert.equal(await request(app.url('/users/1')), 200);
    const lines = warningsNaming('DATALAB_HTTP_BUCKETS');
    assert.equal(lines.length, 1, app.stderr.join('\n'));
    assert.match(lines[0] as string, /"5,1,x"/);
    const les = samplesNamed(await app.scrape(), 'http_request_duration_seconds_bucket')
      .map((s) => s.labels.le)
      .filter((le) => le !== '+Inf');
    assert.deepEqual(les, DEFAULT_HTTP_BUCKETS.map(String));
  });

  it('custom DATALAB_HTTP_BUCKETS are used', async () => {
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { DATALAB_HTTP_BUCKETS: '0.2, 1,3' },
    });
    assert.equal(await request(app.url('/users/1')), 200);
    const les = samplesNamed(await app.scrape(), 'http_request_duration_seconds_bucket').map(
      (s) => s.labels.le,
    );
    assert.deepEqual(les, ['0.2', '1', '3', '+Inf']);
    assert.deepEqual(app.warnings(), []);
  });

  it('a management port already taken', async () => {
    const port = await freePort();
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    try {
      app = await startApp({
        fixture: 'plain-http-app.mjs',
        env: { DATALAB_METRICS_PORT: String(port) },
        waitForMetrics: false,
      });
      assert.equal(await request(app.url('/users/1')), 200);
      await new Promise((r) => setTimeout(r, 200));
      const lines = warningsNaming('DLOTEL_PORT_UNAVAILABLE');
      assert.equal(lines.length, 1, app.stderr.join('\n'));
      assert.match(lines[0] as string, new RegExp(`127\\.0\\.0\\.1:${port}.*EADDRINUSE`));
      assert.equal(await request(app.url('/users/2')), 200);
    } finally {
      blocker.close();
    }
  });

  it('an unknown OTEL_TRACES_EXPORTER value', async () => {
    app = await startApp({ fixture: 'plain-http-app.mjs', env: { OTEL_TRACES_EXPORTER: 'bogus' } });
    assert.equal(await request(app.url('/users/1')), 200);
    const lines = warningsNaming('OTEL_TRACES_EXPORTER');
    assert.equal(lines.length, 1, app.stderr.join('\n'));
    assert.match(lines[0] as string, /"bogus"/);
    // Metrics are unaffected by a tracing mistake.
    const counted = samplesNamed(await app.scrape(), 'http_requests_total');
    assert.equal(counted[0]?.value, 1);
  });
});
