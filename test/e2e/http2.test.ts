/**
 * node:http2 servers (cleartext h2c and TLS; compatibility and stream API) get what node:http
 * servers get: every request counted under its method, normalised endpoint and status, the
 * correlation ID echoed, a server span that continues the caller's trace and is the parent of
 * the handler's outbound calls.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { type AppProcess, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { skipBecause } from '../support/skip';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT_ID = 'b7ad6b7169203331';
const NO_DEPENDENCIES = { PGHOST: '', PGPORT: '', PGUSER: '', PGDATABASE: '' };

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
}

/** One HTTP/2 session, several requests on it, as a browser or a gRPC client would. */
async function h2requests(
  origin: string,
  requests: { path: string; headers?: http2.OutgoingHttpHeaders }[],
): Promise<H2Response[]> {
  const session = http2.connect(origin, { rejectUnauthorized: false });
  try {
    return await Promise.all(
      requests.map(
        ({ path, headers }) =>
          new Promise<H2Response>((resolve, reject) => {
            const req = session.request({ ':path': path, ...headers });
            let response: http2.IncomingHttpHeaders = {};
            req.on('response', (h) => {
              response = h;
            });
            req.on('error', reject);
            req.resume();
            req.on('end', () =>
              resolve({ status: Number(response[':status']), headers: response }),
            );
            req.end();
          }),
      ),
    );
  } finally {
    session.close();
  }
}

function counts(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^http_requests_total\{(.*)\} (\d+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries(
      [...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]),
    );
    out.set(`${labels.method} ${labels.endpoint} ${labels.status}`, Number(m[2]));
  }
  return out;
}

describe('node:http2 servers', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;
  let certDir: string | undefined;
  /** The handler's outbound call lands here, with the headers it carried. */
  let downstream: http.Server;
  const seen: http.IncomingHttpHeaders[] = [];

  before(async () => {
    receiver = await startOtlpReceiver();
    downstream = http.createServer((req, res) => {
      seen.push(req.headers);
      res.end('ok');
    });
    await new Promise<void>((r) => downstream.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    await receiver.close();
    await new Promise((r) => downstream.close(r));
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    receiver.clear();
    seen.length = 0;
  });

  function selfSigned(ctx: Mocha.Context): { H2_KEY: string; H2_CERT: string } {
    certDir ??= mkdtempSync(join(tmpdir(), 'h2-cert-'));
    const key = join(certDir, 'key.pem');
    const cert = join(certDir, 'cert.pem');
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=localhost',
          '-keyout',
          key,
          '-out',
          cert,
        ],
        { stdio: 'ignore' },
      );
    } catch (err) {
      skipBecause(ctx, `openssl could not make a self-signed certificate: ${String(err)}`);
    }
    return { H2_KEY: key, H2_CERT: cert };
  }

  const downstreamUrl = () => {
    const address = downstream.address();
    return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/down`;
  };

  for (const scheme of ['http', 'https'] as const) {
    it(`${scheme === 'http' ? 'h2c' : 'TLS'}: both APIs counted exactly, correlation ID echoed, server spans continue the trace`, async function () {
      const tls = scheme === 'https' ? selfSigned(this) : {};
      app = await startApp({
        fixture: 'http2-app.mjs',
        env: {
          ...NO_DEPENDENCIES,
          ...tls,
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_BSP_SCHEDULE_DELAY: '100',
          FETCH_TARGET: downstreamUrl(),
        },
      });
      const listening = JSON.parse(app.stdout.find((l) => l.includes('"listening"')) as string) as {
        port: number;
        streamPort: number;
      };
      const compat = `${scheme}://127.0.0.1:${listening.port}`;
      const streams = `${scheme}://127.0.0.1:${listening.streamPort}`;

      const traced = { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` };
      const compatAnswers = await h2requests(compat, [
        ...Array.from({ length: 8 }, (_, i) => ({ path: `/users/${i + 1}` })),
        { path: '/users/42?x=1', headers: { 'x-correlation-id': 'order-flow-7' } },
        { path: '/status/503' },
        { path: '/status/503' },
        { path: '/nope' },
        { path: '/fetch', headers: traced },
      ]);
      const streamAnswers = await h2requests(streams, [
        ...Array.from({ length: 5 }, (_, i) => ({ path: `/orders/${i + 1}` })),
        { path: '/orders/9', headers: traced },
        { path: '/status/500' },
        { path: '/nope' },
      ]);
      assert.equal(compatAnswers.length + streamAnswers.length, 21);

      // Counted like node:http, every one of the 21.
      const total = counts(await app.scrapeText());
      assert.deepEqual(Object.fromEntries(total), {
        'GET /users/:id 200': 9,
        'GET /status/:id 503': 2,
        'GET /nope 404': 2,
        'GET /fetch 200': 1,
        'GET /orders/:id 200': 6,
        'GET /status/:id 500': 1,
      });

      // The correlation ID: the one sent is kept, otherwise the trace ID, on both APIs.
      assert.equal(compatAnswers[8]?.headers['x-correlation-id'], 'order-flow-7');
      for (const answer of [...compatAnswers, ...streamAnswers]) {
        assert.match(String(answer.headers['x-correlation-id']), /^[0-9a-f]{32}$|^order-flow-7$/);
      }
      assert.equal(streamAnswers[5]?.headers['x-correlation-id'], TRACE_ID);
      // Browser code reads the trace from Server-Timing, as over HTTP/1.1.
      for (const answer of [...compatAnswers, ...streamAnswers]) {
        const traceresponse = String(answer.headers.traceresponse);
        assert.match(traceresponse, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
        assert.equal(answer.headers['server-timing'], `traceparent;desc="${traceresponse}"`);
        assert.equal(
          answer.headers['access-control-expose-headers'],
          'x-correlation-id, traceresponse, Server-Timing',
        );
      }

      // Server spans, at the OTLP receiver.
      await receiver.waitFor(
        () => receiver.spans.filter((s) => s.kind === SERVER).length >= 21,
        10_000,
        '21 server spans',
      );
      const server = receiver.spans.filter((s) => s.kind === SERVER);
      assert.equal(server.length, 21);
      const fetchSpan = server.find((s) => s.attributes['url.path'] === '/fetch');
      assert.ok(fetchSpan);
      assert.equal(fetchSpan.traceId, TRACE_ID, 'continues the caller trace');
      assert.equal(fetchSpan.parentSpanId, PARENT_ID);
      assert.equal(fetchSpan.attributes['http.request.method'], 'GET');
      assert.equal(fetchSpan.attributes['http.response.status_code'], 200);
      assert.equal(fetchSpan.attributes['network.protocol.version'], '2');
      assert.equal(fetchSpan.attributes['url.scheme'], scheme);
      assert.equal(fetchSpan.attributes['correlation.id'], TRACE_ID);
      const failed = server.find((s) => s.attributes['http.response.status_code'] === 500);
      assert.equal(failed?.status.code, ERROR);
      const order = server.find(
        (s) => s.attributes['url.path'] === '/orders/9' && s.traceId === TRACE_ID,
      );
      assert.ok(order, 'stream API span continues the trace');

      // The handler's outbound call is a child of the HTTP/2 server span and carries the trace.
      assert.equal(seen.length, 1);
      assert.match(String(seen[0]?.traceparent), new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
      await receiver.waitFor(() => receiver.spans.some((s) => s.kind === CLIENT), 10_000, 'client');
      const client = receiver.spans.find((s) => s.kind === CLIENT);
      assert.equal(client?.parentSpanId, fetchSpan.spanId);
    });
  }

  it("both APIs: the handler's own Server-Timing and Access-Control-Expose-Headers stay first, ours appended", async () => {
    app = await startApp({
      fixture: 'http2-app.mjs',
      env: {
        ...NO_DEPENDENCIES,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    const listening = JSON.parse(app.stdout.find((l) => l.includes('"listening"')) as string) as {
      port: number;
      streamPort: number;
    };
    const answers = [
      ...(await h2requests(`http://127.0.0.1:${listening.port}`, [{ path: '/own-timing' }])),
      ...(await h2requests(`http://127.0.0.1:${listening.streamPort}`, [{ path: '/own-timing' }])),
    ];
    await receiver.waitFor(
      () => receiver.spans.filter((s) => s.kind === SERVER).length >= 2,
      10_000,
      '2 server spans',
    );
    for (const answer of answers) {
      assert.equal(answer.status, 200);
      const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(answer.headers.traceresponse));
      assert.ok(m, String(answer.headers.traceresponse));
      const span = receiver.spans.find((s) => s.kind === SERVER && s.traceId === m[1]);
      assert.equal(span?.spanId, m[2], 'traceresponse names the server span');
      assert.equal(
        answer.headers['server-timing'],
        `db;dur=53, traceparent;desc="${answer.headers.traceresponse}"`,
      );
      assert.equal(
        answer.headers['access-control-expose-headers'],
        'X-Foo, x-correlation-id, traceresponse, Server-Timing',
      );
    }
    assert.deepEqual(app.warnings(), []);
  });

  it('TLS with allowHTTP1: an HTTP/1.1 client on the same port is counted, traced and given its correlation ID', async function () {
    const tls = selfSigned(this);
    app = await startApp({
      fixture: 'http2-app.mjs',
      env: {
        ...NO_DEPENDENCIES,
        ...tls,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    const answer = await new Promise<http.IncomingMessage>((resolve, reject) => {
      https
        .get(
          app?.url('/users/7').replace('http:', 'https:') as string,
          { rejectUnauthorized: false, headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res));
          },
        )
        .on('error', reject);
    });
    assert.equal(answer.httpVersion, '1.1');
    assert.equal(answer.statusCode, 200);
    assert.equal(answer.headers['x-correlation-id'], TRACE_ID);
    assert.match(
      String(answer.headers['server-timing']),
      new RegExp(`^traceparent;desc="00-${TRACE_ID}-`),
    );
    assert.equal(counts(await app.scrapeText()).get('GET /users/:id 200'), 1);
    await receiver.waitFor(() => receiver.spans.some((s) => s.kind === SERVER), 10_000, 'span');
    const span = receiver.spans.find((s) => s.kind === SERVER);
    assert.equal(span?.traceId, TRACE_ID);
    assert.equal(span?.parentSpanId, PARENT_ID);
    assert.equal(span?.attributes['network.protocol.version'], '1.1');
    assert.equal(span?.attributes['http.response.status_code'], 200);
  });

  it('a stream the client cancels before the answer is counted 499, not 500', async () => {
    app = await startApp({ fixture: 'http2-app.mjs', env: NO_DEPENDENCIES });
    const { streamPort } = JSON.parse(
      app.stdout.find((l) => l.includes('"listening"')) as string,
    ) as { streamPort: number };
    const session = http2.connect(`http://127.0.0.1:${streamPort}`);
    try {
      const req = session.request({ ':path': '/slow' });
      req.on('error', () => {});
      await new Promise((r) => setTimeout(r, 200));
      req.close(http2.constants.NGHTTP2_CANCEL);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      session.close();
    }
    const total = counts(await app.scrapeText());
    assert.equal(total.get('GET /slow 499'), 1, JSON.stringify(Object.fromEntries(total)));
    assert.equal(total.get('GET /slow 500'), undefined);
  });

  it('a stream whose client closes the connection before the answer is counted 499', async () => {
    app = await startApp({ fixture: 'http2-app.mjs', env: NO_DEPENDENCIES });
    const { streamPort } = JSON.parse(
      app.stdout.find((l) => l.includes('"listening"')) as string,
    ) as { streamPort: number };
    const session = http2.connect(`http://127.0.0.1:${streamPort}`);
    session.on('error', () => {});
    const req = session.request({ ':path': '/slow' });
    req.on('error', () => {});
    await new Promise((r) => setTimeout(r, 200));
    session.destroy();
    await new Promise((r) => setTimeout(r, 300));
    const total = counts(await app.scrapeText());
    assert.equal(total.get('GET /slow 499'), 1, JSON.stringify(Object.fromEntries(total)));
    assert.equal(total.get('GET /slow 500'), undefined);
  });

  it('a stream the server destroys or closes before the answer is counted 500, its span ERROR', async () => {
    app = await startApp({
      fixture: 'http2-app.mjs',
      env: {
        ...NO_DEPENDENCIES,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    const { streamPort } = JSON.parse(
      app.stdout.find((l) => l.includes('"listening"')) as string,
    ) as { streamPort: number };
    const session = http2.connect(`http://127.0.0.1:${streamPort}`);
    try {
      await Promise.all(
        ['/destroy', '/close'].map(
          (path) =>
            new Promise<void>((resolve) => {
              const req = session.request({ ':path': path });
              req.on('error', () => resolve());
              req.on('close', () => resolve());
              req.resume();
              req.end();
            }),
        ),
      );
    } finally {
      session.close();
    }
    const total = counts(await app.scrapeText());
    const all = JSON.stringify(Object.fromEntries(total));
    assert.equal(total.get('GET /destroy 500'), 1, all);
    assert.equal(total.get('GET /close 500'), 1, all);
    assert.equal(total.get('GET /destroy 499'), undefined, all);
    await receiver.waitFor(
      () => receiver.spans.filter((s) => s.kind === SERVER).length >= 2,
      10_000,
      'server spans',
    );
    for (const span of receiver.spans.filter((s) => s.kind === SERVER)) {
      assert.equal(span.attributes['http.response.status_code'], 500);
      assert.equal(span.status?.code, ERROR);
    }
  });

  it('TLS with allowHTTP1: an HTTP/1.1 client that gives up is 499 in the metrics and on the span', async function () {
    const tls = selfSigned(this);
    app = await startApp({
      fixture: 'http2-app.mjs',
      env: {
        ...NO_DEPENDENCIES,
        ...tls,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    const port = Number(new URL(app.url('/')).port);
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('secureConnect', r));
    socket.write('GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    socket.end();
    await new Promise((r) => setTimeout(r, 300));
    socket.destroy();
    const total = counts(await app.scrapeText());
    const all = JSON.stringify(Object.fromEntries(total));
    assert.equal(total.get('GET /slow 499'), 1, all);
    assert.equal(total.get('GET /slow 500'), undefined, all);
    await receiver.waitFor(() => receiver.spans.some((s) => s.kind === SERVER), 10_000, 'span');
    const span = receiver.spans.find((s) => s.kind === SERVER);
    assert.equal(span?.attributes['network.protocol.version'], '1.1');
    assert.equal(span?.attributes['http.response.status_code'], 499);
    assert.notEqual(span?.status?.code, ERROR);
    assert.equal(span?.attributes['error.type'], undefined);
  });

  it('a fault in the HTTP/2 hook: every request answered, one DLOTEL_INTERNAL_ERROR', async () => {
    app = await startApp({
      fixture: 'http2-app.mjs',
      env: { ...NO_DEPENDENCIES, DATALAB_INTERNAL_FAULTS: 'http2-stream' },
    });
    const { port, streamPort } = JSON.parse(
      app.stdout.find((l) => l.includes('"listening"')) as string,
    ) as { port: number; streamPort: number };
    const compat = await h2requests(`http://127.0.0.1:${port}`, [
      { path: '/users/1' },
      { path: '/status/503' },
    ]);
    const streams = await h2requests(`http://127.0.0.1:${streamPort}`, [{ path: '/orders/1' }]);
    assert.deepEqual(
      [...compat, ...streams].map((a) => a.status),
      [200, 503, 200],
    );
    const internal = app.warnings().filter((w) => w.startsWith('DLOTEL_INTERNAL_ERROR'));
    assert.equal(internal.length, 1, app.stderr.join('\n'));
    assert.match(internal[0] as string, /injected fault at http2-stream/);
  });

  it('metrics only (no span leaves the process): counted, correlation ID echoed and propagated', async () => {
    app = await startApp({
      fixture: 'http2-app.mjs',
      env: {
        ...NO_DEPENDENCIES,
        OTEL_TRACES_EXPORTER: 'none',
        DATALAB_TRACES_FILE: 'false',
        FETCH_TARGET: downstreamUrl(),
      },
    });
    const { port } = JSON.parse(app.stdout.find((l) => l.includes('"listening"')) as string) as {
      port: number;
    };
    const answers = await h2requests(`http://127.0.0.1:${port}`, [
      { path: '/users/1' },
      { path: '/fetch', headers: { 'x-correlation-id': 'abc-123' } },
    ]);
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200],
    );
    assert.match(String(answers[0]?.headers['x-correlation-id']), /^[0-9a-f]{32}$/);
    assert.equal(answers[1]?.headers['x-correlation-id'], 'abc-123');
    for (const answer of answers) {
      assert.equal(answer.headers.traceresponse, undefined);
      assert.equal(answer.headers['server-timing'], undefined);
      assert.equal(answer.headers['access-control-expose-headers'], undefined);
    }
    assert.equal(seen[0]?.['x-correlation-id'], 'abc-123');
    const total = counts(await app.scrapeText());
    assert.equal(total.get('GET /users/:id 200'), 1);
    assert.equal(total.get('GET /fetch 200'), 1);
  });
});
