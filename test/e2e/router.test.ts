/**
 * The `router` package's instrumentation (on by default, as upstream) and Express 5, which
 * dispatches through `router`: a plain `router` service gets router spans; a request Express
 * dispatches gets the Express instrumentation's spans only, not a second span per layer.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type AppProcess, request, startApp } from '../support/app';
import { FIXTURE_APPS, installFixtureApp } from '../support/framework-apps';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';

const ROUTER_SCOPE = '@opentelemetry/instrumentation-router';
const EXPRESS_SCOPE = '@opentelemetry/instrumentation-express';

describe('router (plain and inside Express 5)', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;

  before(async function () {
    this.timeout(300_000);
    await installFixtureApp(this, 'router');
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await app?.stop();
    await receiver?.close();
  });

  it('router spans for the plain router, Express spans only for Express', async () => {
    app = await startApp({
      fixture: join(FIXTURE_APPS, 'router', 'app.cjs'),
      preload: 'require',
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' },
    });
    const listening = JSON.parse(app.stdout.find((l) => l.includes('"listening"')) as string) as {
      expressPort: number;
    };
    assert.equal(await request(app.url('/items/1')), 200);
    assert.equal(await request(`http://127.0.0.1:${listening.expressPort}/items/2`), 200);

    const serverOf = (path: string) => (s: ReceivedSpan) =>
      s.kind === 2 && s.attributes['url.path'] === path;
    await receiver.waitFor(
      () =>
        receiver.spans.some(serverOf('/items/1')) &&
        receiver.spans.some(serverOf('/items/2')) &&
        receiver.spans.some((s) => s.scope === ROUTER_SCOPE) &&
        receiver.spans.some((s) => s.scope === EXPRESS_SCOPE),
      15_000,
      'both server spans and the framework spans',
    );
    const inTrace = (path: string) => {
      const server = receiver.spans.find(serverOf(path)) as ReceivedSpan;
      return receiver.spans.filter((s) => s.traceId === server.traceId);
    };
    const plain = inTrace('/items/1');
    const handler = plain.find((s) => s.scope === ROUTER_SCOPE);
    assert.ok(handler, 'a router span for the plain router');
    assert.equal(handler.name, 'request handler - /items/:id');
    assert.equal(handler.attributes['http.route'], '/items/:id');

    const viaExpress = inTrace('/items/2');
    assert.deepEqual(
      viaExpress.filter((s) => s.scope === ROUTER_SCOPE).map((s) => s.name),
      [],
      'no router span for a request Express dispatches',
    );
    assert.deepEqual(viaExpress.map((s) => [s.scope, s.name]).sort(), [
      ['@datalab/otel', 'GET /items/:id'],
      [EXPRESS_SCOPE, 'request handler'],
    ]);
    assert.deepEqual(app.warnings(), []);
  });
});
