/**
 * The HTTP metrics and traces where real traffic gets awkward: propagation across services,
 * pipelined requests on a dying socket, and thousands of distinct series.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { type AppProcess, request, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { samplesNamed, sumOf } from '../support/prometheus-text';

describe('HTTP edge cases', () => {
  const apps: AppProcess[] = [];
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.stop()));
    receiver.clear();
  });

  it('propagates the trace over fetch to the next instrumented service', async () => {
    const otlp = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' };
    const downstream = await startApp({
      fixture: 'express-app.mjs',
      env: { ...otlp, OTEL_SERVICE_NAME: 'downstream' },
    });
    apps.push(downstream);
    const upstream = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { ...otlp, OTEL_SERVICE_NAME: 'upstream', FETCH_TARGET: downstream.url('/users/5') },
    });
    apps.push(upstream);
    assert.equal(await request(upstream.url('/fetch')), 200);
    await receiver.waitFor(
      () => receiver.spans.some((s) => s.resource['service.name'] === 'downstream' && s.kind === 2),
      10_000,
      'downstream server span',
    );
    const server = receiver.spans.find(
      (s) => s.resource['service.name'] === 'downstream' && s.kind === 2,
    );
    await receiver.waitFor(
      () => receiver.spans.some((s) => s.spanId === server?.parentSpanId),
      10_000,
      'upstream client span',
    );
    const client = receiver.spans.find((s) => s.spanId === server?.parentSpanId);
    assert.equal(client?.resource['service.name'], 'upstream');
    assert.equal(client?.kind, 3, 'the parent is the fetch CLIENT span');
    assert.equal(client?.traceId, server?.traceId);
    // Outbound calls are not inbound requests: upstream counts only its own /fetch.
    const counted = samplesNamed(await upstream.scrape(), 'http_requests_total');
    assert.deepEqual(
      counted.map((s) => [s.labels.endpoint, s.value]),
      [['/fetch', 1]],
    );
  });

  it('counts pipelined requests whose socket dies, and the in-flight gauge returns to 0', async () => {
    const app = await startApp({ fixture: 'plain-http-app.mjs' });
    apps.push(app);
    // Three pipelined requests; the first kills the socket, so the other two never get a
    // response of their own.
    await new Promise<void>((resolve) => {
      const socket = connect(app.port, '127.0.0.1', () => {
        socket.write(
          ['/abort', '/users/1', '/users/2']
            .map((p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`)
            .join(''),
        );
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve());
      socket.resume();
    });
    const deadline = Date.now() + 5000;
    let samples = await app.scrape();
    while (sumOf(samplesNamed(samples, 'http_requests_total')) < 3 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      samples = await app.scrape();
    }
    assert.equal(sumOf(samplesNamed(samples, 'http_requests_total')), 3);
    assert.equal(samplesNamed(samples, 'http_requests_active')[0]?.value, 0);
  });

  it('stays exact past the SDK default of 2,000 series per metric', async () => {
    const app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { DATALAB_MAX_ENDPOINTS: '400' },
    });
    apps.push(app);
    const statuses = [200, 201, 204, 400, 404, 409, 500, 503];
    let sent = 0;
    for (let e = 0; e < 300; e++) {
      await Promise.all(statuses.map((code) => request(app.url(`/status/${code}/endpoint-${e}`))));
      sent += statuses.length;
    }
    const counters = samplesNamed(await app.scrape(), 'http_requests_total');
    assert.ok(counters.length > 2000, `${counters.length} series`);
    assert.equal(sumOf(counters), sent);
    assert.ok(counters.every((s) => !('otel_metric_overflow' in s.labels)));
  });
});
