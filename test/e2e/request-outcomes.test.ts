/**
 * Requests that end without an answer, over raw sockets: the client abandons an upload or a
 * long poll (499, nginx's "client closed request", not a server error), the client stalls until
 * Node's request timeout answers (408), the application drops the connection or throws (500). The metrics and the server span agree on the status code and
 * on error or not.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { type AppProcess, request, startApp } from '../support/app';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';
import { samplesNamed, sumOf } from '../support/prometheus-text';

const SERVER = 2; // OTLP SpanKind
const STATUS_ERROR = 2; // OTLP status code

/**
 * Sends `head` (and `body`), waits until the server has surely started the request, then closes
 * the connection: with a FIN (`destroy`), or a reset (`resetAndDestroy`); or, with 'wait',
 * leaves it to the server.
 */
async function abandon(
  port: number,
  head: string,
  how: 'fin' | 'rst' | 'wait',
  body = '',
): Promise<void> {
  await new Promise<void>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`${head}\r\n\r\n${body}`);
      if (how === 'wait') return;
      setTimeout(() => (how === 'rst' ? socket.resetAndDestroy() : socket.destroy()), 200);
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve());
    socket.resume();
  });
}

/** Each case, the status it is counted with, and whether its span is an error. */
const CASES = [
  { path: '/upload', method: 'POST', status: '499', error: false },
  { path: '/poll', method: 'GET', status: '499', error: false },
  { path: '/poll-rst', method: 'GET', status: '499', error: false },
  { path: '/slow-upload', method: 'POST', status: '408', error: false },
  { path: '/hang', method: 'GET', status: '500', error: true },
  { path: '/throw', method: 'GET', status: '500', error: true },
] as const;

const OWN_ENDPOINTS = new Set(['/upload', '/poll', '/hang', '/throw']);

async function sendCases(app: AppProcess): Promise<void> {
  const upload =
    'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000';
  await abandon(app.port, upload, 'fin', 'x'.repeat(1000));
  // Half an upload, then nothing: Node's request timeout answers 408 and closes.
  await abandon(app.port, upload.replace('/upload', '/upload?slow=1'), 'wait', 'x'.repeat(1000));
  await abandon(app.port, 'GET /poll HTTP/1.1\r\nHost: x', 'fin');
  await abandon(app.port, 'GET /poll?rst=1 HTTP/1.1\r\nHost: x', 'rst');
  // The application drops the connection itself: the client sees it close without an answer.
  assert.equal(await request(app.url('/hang')), 0);
  assert.equal(await request(app.url('/throw')), 500);
}

describe('request outcomes: client aborts are 499, unanswered and thrown are 500', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver;
  const apps: AppProcess[] = [];
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

  for (const tracing of [true, false]) {
    it(`counts each outcome with its status (tracing ${tracing ? 'on' : 'off'})`, async () => {
      const app = await startApp({
        fixture: 'express-mounts.cjs',
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_BSP_SCHEDULE_DELAY: '100',
          ...(tracing ? {} : { OTEL_TRACES_EXPORTER: 'none' }),
        },
      });
      apps.push(app);
      await sendCases(app);
      const deadline = Date.now() + 5000;
      let counters = samplesNamed(await app.scrape(), 'http_requests_total');
      const own = () => sumOf(counters.filter((s) => OWN_ENDPOINTS.has(String(s.labels.endpoint))));
      while (own() < CASES.length && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        counters = samplesNamed(await app.scrape(), 'http_requests_total');
      }
      // Only the fixture's own endpoints: on a shared machine a stray client may reach the port.
      const got = Object.fromEntries(
        counters
          .filter((s) => OWN_ENDPOINTS.has(String(s.labels.endpoint)))
          .map((s) => [`${s.labels.method} ${s.labels.endpoint} ${s.labels.status}`, s.value]),
      );
      assert.deepEqual(got, {
        'POST /upload 499': 1,
        'POST /upload 408': 1,
        'GET /poll 499': 2,
        'GET /hang 500': 1,
        'GET /throw 500': 1,
      });
    });
  }

  it('gives each server span the status code and error-or-not its metrics count', async () => {
    const app = await startApp({
      fixture: 'express-mounts.cjs',
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' },
    });
    apps.push(app);
    await sendCases(app);
    await receiver.waitFor(
      () => receiver.spans.filter((s) => s.kind === SERVER).length >= CASES.length,
      10_000,
      'a server span per request',
    );
    const servers = receiver.spans.filter((s) => s.kind === SERVER);
    const spanFor = (path: string, query?: string): ReceivedSpan | undefined =>
      servers.find(
        (s) =>
          s.attributes['url.path'] === path &&
          (query === undefined ? s.attributes['url.query'] === undefined : true) &&
          (query === undefined || String(s.attributes['url.query']).includes(query)),
      );
    for (const c of CASES) {
      const span =
        c.path === '/poll-rst'
          ? spanFor('/poll', 'rst')
          : c.path === '/slow-upload'
            ? spanFor('/upload', 'slow')
            : spanFor(c.path);
      assert.ok(span, `a server span for ${c.path}`);
      assert.equal(span.attributes['http.response.status_code'], Number(c.status), c.path);
      assert.equal(span.status.code === STATUS_ERROR, c.error, `error status of ${c.path}`);
      assert.equal(
        span.attributes['error.type'] !== undefined,
        c.error,
        `error.type on ${c.path}: ${String(span.attributes['error.type'])}`,
      );
    }
  });
});
