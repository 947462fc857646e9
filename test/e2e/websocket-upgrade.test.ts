/**
 * WebSocket handshakes, answered on the raw socket by 'upgrade' listeners: each counted once,
 * with the status the application wrote (101, or a refusal; 500 when it dropped the socket without
 * an answer), under its normalised path.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { type AppProcess, request, startApp } from '../support/app';
import { samplesNamed, sumOf } from '../support/prometheus-text';

/** Sends a handshake; resolves with the status line's code, or 0 if none came in `waitMs`. */
function handshake(port: number, path: string, waitMs = 2000): Promise<number> {
  return new Promise((resolve) => {
    let status = 0;
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
    });
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (chunk: Buffer) => {
      const match = /^HTTP\/1\.1 (\d{3})/.exec(chunk.toString('latin1'));
      if (match && status === 0) status = Number(match[1]);
      // Keep the WebSocket open a little, as a client would, then leave.
      setTimeout(() => socket.destroy(), 50);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(status);
    });
  });
}

describe('WebSocket upgrades are counted', function () {
  this.timeout(30_000);
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  for (const tracing of [true, false]) {
    it(`once each, with status 101 or the refusal, under the normalised path (tracing ${tracing ? 'on' : 'off'})`, async () => {
      app = await startApp({
        fixture: 'upgrade-app.mjs',
        env: tracing ? {} : { OTEL_TRACES_EXPORTER: 'none' },
      });
      assert.equal(await handshake(app.port, '/chat/42'), 101);
      assert.equal(await handshake(app.port, '/chat/43?token=x'), 101);
      assert.equal(await handshake(app.port, '/denied'), 401);
      assert.equal(await handshake(app.port, '/dropped'), 0);
      assert.equal(await request(app.url('/plain')), 200);

      const deadline = Date.now() + 5000;
      let counters = samplesNamed(await app.scrape(), 'http_requests_total');
      while (sumOf(counters) < 5 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        counters = samplesNamed(await app.scrape(), 'http_requests_total');
      }
      assert.deepEqual(
        Object.fromEntries(
          counters.map((s) => [
            `${s.labels.method} ${s.labels.endpoint} ${s.labels.status}`,
            s.value,
          ]),
        ),
        {
          'GET /chat/:id 101': 2,
          'GET /denied 401': 1,
          'GET /dropped 500': 1,
          'GET /plain 200': 1,
        },
      );
      const samples = await app.scrape();
      assert.equal(sumOf(samplesNamed(samples, 'http_request_duration_seconds_count')), 5);
      assert.equal(samplesNamed(samples, 'http_requests_active')[0]?.value, 0);
      assert.deepEqual(app.warnings(), []);
    });
  }

  it('an upgrade answered by a once() listener is counted', async () => {
    app = await startApp({ fixture: 'upgrade-app.mjs', env: { OTEL_TRACES_EXPORTER: 'none' } });
    const { oncePort } = JSON.parse(
      app.stdout.find((l) => l.includes('"listening"')) as string,
    ) as { oncePort: number };
    assert.equal(await handshake(oncePort, '/once'), 403);
    const deadline = Date.now() + 5000;
    let counters = samplesNamed(await app.scrape(), 'http_requests_total');
    while (sumOf(counters) < 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      counters = samplesNamed(await app.scrape(), 'http_requests_total');
    }
    assert.deepEqual(
      Object.fromEntries(
        counters.map((s) => [
          `${s.labels.method} ${s.labels.endpoint} ${s.labels.status}`,
          s.value,
        ]),
      ),
      { 'GET /once 403': 1 },
    );
  });
});
