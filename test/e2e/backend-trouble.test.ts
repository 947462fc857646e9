/**
 * The OTLP backend in trouble: refusing connections, a black hole that accepts and never answers,
 * 503/429 with Retry-After, and a backend that answers after 5 s. In every case the application
 * answers every request with its normal status, the distro prints at most one DLOTEL_EXPORT_FAILED
 * per signal per minute, counts what it drops on /metrics, keeps its memory, and resumes
 * exporting when the backend comes back, without a restart.
 *
 * The backend sits behind a front on a fixed port that the test switches between "closed",
 * "black hole" and "forward to the real receiver", so "the backend comes back" happens on the
 * very address the application was started with. Throughput under trouble is measured by the
 * benchmark suite (bench/), not here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AppProcess, freePort, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { samplesNamed } from '../support/prometheus-text';

const SERVER = 2;

type FrontMode = 'closed' | 'blackhole' | 'forward';

/** A TCP front on a fixed port: closed (refuses), black hole (reads, never answers), or forward. */
class BackendFront {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  mode: FrontMode = 'closed';

  constructor(
    readonly port: number,
    private readonly targetPort: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async set(mode: FrontMode): Promise<void> {
    this.mode = mode;
    // Connections of the previous mode go away, as they would when a Collector restarts.
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (mode === 'closed') {
      const server = this.server;
      this.server = undefined;
      if (server) await new Promise<void>((done) => server.close(() => done()));
      return;
    }
    if (this.server) return;
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', fail);
        done();
      });
    });
    this.server = server;
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    if (this.mode === 'blackhole') {
      socket.resume(); // read everything, answer nothing
      return;
    }
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
    socket.pipe(upstream).pipe(socket);
  }

  async close(): Promise<void> {
    await this.set('closed');
  }
}

/** An HTTP backend that forwards each request to the receiver after `delayMs`. */
async function startSlowBackend(
  target: string,
  delayMs: number,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      await sleep(delayMs);
      try {
        const headers: Record<string, string> = {};
        for (const name of ['content-type', 'content-encoding']) {
          const v = req.headers[name];
          if (typeof v === 'string') headers[name] = v;
        }
        const up = await fetch(`${target}${req.url}`, {
          method: 'POST',
          headers,
          body: Buffer.concat(chunks),
        });
        const body = Buffer.from(await up.arrayBuffer());
        res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? '' });
        res.end(body);
      } catch {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      }
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
after(() => agent.destroy());

/** One GET; its status, or 'timeout' / 'error' (any of which fails the test). */
function get(port: number, path: string): Promise<number | string> {
  return new Promise((done) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode ?? 0));
      res.on('error', () => done('error'));
    });
    req.on('timeout', () => {
      req.destroy();
      done('timeout');
    });
    req.on('error', (err) => done(`error ${err.message}`));
  });
}

/**
 * `count` requests, `concurrency` at a time, over the paths the fixture answers: every one must
 * get its normal status (200, 404 or 500 as the route says), none may fail or hang.
 */
async function burst(app: AppProcess, count: number, concurrency = 16): Promise<void> {
  const routes: [string, number][] = [
    ['/users/1', 200],
    ['/users/2', 200],
    ['/error', 500],
    ['/nope', 404],
  ];
  const wrong: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const [path, expected] = routes[i % routes.length] as [string, number];
      const status = await get(app.port, path);
      if (status !== expected) wrong.push(`${path}: ${status} (expected ${expected})`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} of ${count} requests went wrong`);
}

function rssBytes(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

async function dropped(app: AppProcess, signal: string, reason: string): Promise<number> {
  const s = samplesNamed(await app.scrape(), 'otel_exporter_dropped_total').find(
    (x) => x.labels.signal === signal && x.labels.reason === reason,
  );
  assert.ok(s, `otel_exporter_dropped_total{signal="${signal}",reason="${reason}"} on /metrics`);
  return s.value;
}

function exportWarnings(app: AppProcess, signal: 'traces' | 'metrics'): string[] {
  return app
    .warnings()
    .filter((w) => w.startsWith('DLOTEL_EXPORT_FAILED:') && w.includes(`${signal} export`));
}

async function waitUntil(what: string, check: () => Promise<boolean> | boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Fast exports, a small queue (so a burst overflows it) and short timeouts. */
const FAST = {
  OTEL_BSP_SCHEDULE_DELAY: '100',
  OTEL_BSP_MAX_QUEUE_SIZE: '256',
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '64',
  OTEL_BSP_EXPORT_TIMEOUT: '1000',
  OTEL_EXPORTER_OTLP_TIMEOUT: '1000',
  OTEL_METRICS_EXPORTER: 'prometheus,otlp',
  OTEL_METRIC_EXPORT_INTERVAL: '500',
};

describe('OTLP backend in trouble: the service never pays', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver;
  let front: BackendFront;
  let app: AppProcess | undefined;

  before(async () => {
    receiver = await startOtlpReceiver();
    front = new BackendFront(await freePort(), Number(new URL(receiver.url).port));
  });
  after(async () => {
    await front.close();
    await receiver.close();
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    await front.set('closed');
    receiver.setStatus(200);
    receiver.clear();
  });

  /** A request to a unique path, then its server span at the receiver. */
  async function spansArriveAgain(running: AppProcess, tag: string): Promise<void> {
    const path = `/users/${tag}`;
    assert.equal(await get(running.port, path), 200);
    await receiver.waitFor(
      () =>
        receiver.spans.some(
          (s) => s.kind === SERVER && String(s.attributes['url.path'] ?? '').endsWith(tag),
        ),
      15_000,
      `the server span of ${path} after the backend came back`,
    );
  }

  /** Both signals failed, and each printed exactly one warning (the window is a minute). */
  function assertOneWarningPerSignal(running: AppProcess): void {
    for (const signal of ['traces', 'metrics'] as const) {
      const lines = exportWarnings(running, signal);
      assert.equal(lines.length, 1, `${signal}: ${lines.length} warnings\n${lines.join('\n')}`);
    }
  }

  it('(a) connection refused: served, one warning per signal, drops counted, resumes', async () => {
    await front.set('closed');
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: front.url },
    });
    const running = app;
    await burst(running, 400);
    await waitUntil('a failed trace export', () => exportWarnings(running, 'traces').length > 0);
    await waitUntil('a failed metric export', () => exportWarnings(running, 'metrics').length > 0);
    await burst(running, 400);
    // What the service guarantees is that no span goes missing unaccounted: each of the 800
    // server spans is exported or counted as dropped with its reason. How they split between
    // export_failed and queue_full depends on how fast the machine drains the queue, so only
    // the sum is checked (nothing can be exported while the backend refuses connections).
    const sent = 800;
    const accounted = async () => {
      const failed = await dropped(running, 'traces', 'export_failed');
      const full = await dropped(running, 'traces', 'queue_full');
      const exported = receiver.spans.filter((s) => s.kind === SERVER).length;
      return { failed, full, exported, total: failed + full + exported };
    };
    // Spans still queued drain one failed batch at a time (up to the 1 s export timeout each).
    try {
      await waitUntil(
        'every span exported or counted as dropped',
        async () => {
          const { total } = await accounted();
          assert.ok(total <= sent, `more spans accounted for than sent: ${total} > ${sent}`);
          return total === sent;
        },
        30_000,
      );
    } catch (err) {
      // What the next reader needs to tell a slow machine from exports that stopped.
      const { failed, full, exported } = await accounted();
      throw new Error(
        `${(err as Error).message}: sent=${sent} export_failed=${failed} queue_full=${full} exported=${exported}\n` +
          running.stderr.slice(-20).join('\n'),
      );
    }
    const { failed, full, exported } = await accounted();
    assert.equal(exported, 0, 'nothing reached the receiver while the backend refused connections');
    // The warning above came from a failed export, so that batch is counted under its reason.
    assert.ok(failed > 0, `export_failed=${failed} queue_full=${full}`);
    assert.ok((await dropped(running, 'metrics', 'export_failed')) >= 1);
    assert.match(exportWarnings(running, 'traces')[0] as string, /ECONNREFUSED|refused/i);

    await front.set('forward');
    await spansArriveAgain(running, '1001');
    await receiver.waitFor(() => receiver.metrics.length > 0, 5_000, 'metrics again');
    assertOneWarningPerSignal(running);
  });

  it('(b) black hole: served, queue bounded, RSS bounded, one warning per signal, resumes', async () => {
    await front.set('blackhole');
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: front.url },
    });
    const running = app;
    // Warm-up: code paths compiled, pools and buffers at their working size.
    await burst(running, 600);
    await waitUntil('a timed-out trace export', () => exportWarnings(running, 'traces').length > 0);
    const rssBefore = rssBytes(running.pid);
    const queueFullBefore = await dropped(running, 'traces', 'queue_full');
    // Sustained: many times the span queue (256) while nothing ever drains.
    await burst(running, 4000);
    const rssAfter = rssBytes(running.pid);
    const queueFull = (await dropped(running, 'traces', 'queue_full')) - queueFullBefore;
    // At most one batch leaves the queue per 1 s export timeout; the rest must be dropped.
    assert.ok(queueFull >= 1000, `spans dropped because the queue was full: ${queueFull}`);
    const growthMb = (rssAfter - rssBefore) / 2 ** 20;
    assert.ok(
      growthMb < 48,
      `RSS grew ${growthMb.toFixed(1)} MB over 4000 requests (before ${(rssBefore / 2 ** 20).toFixed(1)} MB)`,
    );
    await waitUntil(
      'a timed-out metric export',
      () => exportWarnings(running, 'metrics').length > 0,
    );
    assert.ok((await dropped(running, 'traces', 'export_failed')) >= 64);

    await front.set('forward');
    await spansArriveAgain(running, '2002');
    assertOneWarningPerSignal(running);
    console.log(
      `      black hole: RSS ${(rssBefore / 2 ** 20).toFixed(1)} -> ${(rssAfter / 2 ** 20).toFixed(1)} MB over 4000 requests, ${queueFull} spans dropped (queue full)`,
    );
  });

  for (const [code, retryAfter] of [
    [503, '1'],
    [429, '1'],
  ] as const) {
    it(`(c) ${code} with Retry-After: served, one warning per signal, drops counted, resumes`, async () => {
      receiver.setStatus(code, { 'Retry-After': retryAfter });
      await front.set('forward');
      app = await startApp({
        fixture: 'plain-http-app.mjs',
        env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: front.url },
      });
      const running = app;
      await burst(running, 400);
      await waitUntil(
        'a rejected trace export',
        () => exportWarnings(running, 'traces').length > 0,
      );
      await waitUntil(
        'a rejected metric export',
        () => exportWarnings(running, 'metrics').length > 0,
      );
      await burst(running, 200);
      await waitUntil('rejected spans counted as dropped', async () => {
        return (await dropped(running, 'traces', 'export_failed')) >= 200;
      });
      assert.ok(
        receiver.requests.some((r) => r.status === code),
        `the receiver answered ${code}`,
      );

      receiver.setStatus(200);
      await spansArriveAgain(running, `${code}3`);
      assertOneWarningPerSignal(running);
    });
  }

  it('(d) a backend answering after 5 s: served, no request waits, spans arrive, overflow counted', async () => {
    const slow = await startSlowBackend(receiver.url, 5_000);
    try {
      app = await startApp({
        fixture: 'plain-http-app.mjs',
        env: {
          ...FAST,
          // Long enough for a 5 s answer: exports succeed, slowly.
          OTEL_BSP_EXPORT_TIMEOUT: '8000',
          OTEL_EXPORTER_OTLP_TIMEOUT: '8000',
          OTEL_METRICS_EXPORTER: 'prometheus',
          OTEL_EXPORTER_OTLP_ENDPOINT: slow.url,
        },
      });
      const running = app;
      const started = Date.now();
      await burst(running, 1500);
      const burstMs = Date.now() - started;
      // The app did not wait for the backend (every request had its own 5 s timeout above).
      const queueFull = await dropped(running, 'traces', 'queue_full');
      assert.ok(queueFull > 0, `a 1500-request burst overflows a 256-span queue (${queueFull})`);
      await receiver.waitFor(
        () => receiver.spans.some((s) => s.kind === SERVER),
        15_000,
        'spans through the slow backend',
      );
      assert.deepEqual(exportWarnings(running, 'traces'), [], 'slow is not failed');
      console.log(
        `      slow backend: burst of 1500 in ${burstMs} ms, ${queueFull} spans dropped (queue full)`,
      );
    } finally {
      await slow.close();
    }
  });
});
