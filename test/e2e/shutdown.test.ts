/**
 * The shutdown sequence on real processes: readiness turns 503 first, requests in flight finish
 * during the drain delay, their spans reach the OTLP receiver, and the process then ends exactly
 * as it would have without the distro: killed by the signal when it had no handler (exit status
 * 128 + 15 = 143 for a shell or a container runtime), or the application's own way.
 */
import assert from 'node:assert/strict';
import { type AppProcess, request, startApp } from '../support/app';
import { blackHole } from '../support/black-hole';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';

const SERVER = 2;
const NO_DEPENDENCIES = { PGHOST: '', PGPORT: '', PGUSER: '', PGDATABASE: '' };

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds from the signal to the exit. */
  ms: number;
}

/** Sends `signal` and resolves when the process has exited (the child's own exit event). */
function signalAndWait(app: AppProcess, signal: NodeJS.Signals): { exited: Promise<Exit> } {
  const start = performance.now();
  const exited = (async () => {
    process.kill(app.pid, signal);
    for (;;) {
      try {
        process.kill(app.pid, 0);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const { code, signal: by } = await app.stop();
    return { code, signal: by, ms: performance.now() - start };
  })();
  return { exited };
}

async function probe(app: AppProcess, path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${app.metricsPort}${path}`);
  return { status: res.status, body: await res.json() };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('shutdown sequence', () => {
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    if (app && alive(app.pid)) process.kill(app.pid, 'SIGKILL');
    await app?.stop();
    app = undefined;
    receiver.clear();
  });

  it('drain delay: ready 503 at once, the request in flight completes, its spans are exported, exit by SIGTERM', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: {
        ...NO_DEPENDENCIES,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        DATALAB_SHUTDOWN_DELAY_MS: '1000',
        // The batch processor would otherwise hold the span for 5 s: only the flush sends it.
        OTEL_BSP_SCHEDULE_DELAY: '60000',
      },
    });
    assert.equal((await probe(app, '/health/ready')).status, 200);
    const inFlight = request(app.url('/slow?ms=600'));
    await new Promise((r) => setTimeout(r, 150));

    const { exited } = signalAndWait(app, 'SIGTERM');
    // kill() returns before the child has run its handler: a probe sent in the same millisecond
    // can overtake the signal. A few milliseconds later, readiness must already be off.
    await new Promise((r) => setTimeout(r, 20));
    const ready = await probe(app, '/health/ready');
    assert.equal(ready.status, 503);
    assert.deepEqual((ready.body as { reason?: string }).reason, 'shutting down');
    assert.equal((await probe(app, '/health/live')).status, 200, 'still alive while draining');
    assert.equal(await inFlight, 200, 'the request in flight completes');
    assert.equal(receiver.spans.length, 0, 'nothing exported before the flush');

    const exit = await exited;
    // Killed by SIGTERM, as without the distro: a shell or a container runtime reports 143.
    assert.deepEqual([exit.code, exit.signal], [null, 'SIGTERM']);
    assert.ok(exit.ms >= 1000, `exited after ${Math.round(exit.ms)} ms, before the delay`);
    assert.ok(exit.ms < 3000, `exited after ${Math.round(exit.ms)} ms`);
    // Already here when the process died: the flush came before the exit.
    const slow = receiver.spans.find(
      (s) => s.kind === SERVER && s.attributes['url.path'] === '/slow',
    );
    assert.ok(slow, `server span of /slow: ${receiver.spans.map((s) => s.name).join(', ')}`);
    assert.equal(slow.attributes['http.response.status_code'], 200);
  });

  it('an app with its own SIGTERM handler that keeps running is not killed', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: { ...NO_DEPENDENCIES, SIGTERM_MODE: 'keep-running', DATALAB_SHUTDOWN_TIMEOUT_MS: '500' },
    });
    process.kill(app.pid, 'SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(alive(app.pid), 'still running after delay + flush timeout');
    assert.ok(
      app.stdout.some((l) => l.includes('"sigterm"')),
      'its handler ran',
    );
    assert.equal(await request(app.url('/ok')), 200, 'still serving');
    assert.equal((await probe(app, '/health/ready')).status, 503, 'but not ready');
    // Telemetry keeps working for the application's own draining.
    assert.match(await app.scrapeText(), /health_check_status|http_requests_total/);
    // Its second SIGTERM is its own decision: exit 0.
    assert.deepEqual(await app.stop(), { code: 0, signal: null });
  });

  it('an app whose handler drains is never held open, even with a drain delay', async () => {
    app = await startApp({
      fixture: 'health-app.mjs',
      env: {
        ...NO_DEPENDENCIES,
        SIGTERM_MODE: 'drain',
        DATALAB_SHUTDOWN_DELAY_MS: '5000',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      },
    });
    assert.equal(await request(app.url('/ok')), 200);
    const exit = await signalAndWait(app, 'SIGTERM').exited;
    assert.deepEqual([exit.code, exit.signal], [0, null]);
    assert.ok(exit.ms < 2000, `exited after ${Math.round(exit.ms)} ms, not after the 5 s delay`);
    // The event loop ran dry and the final flush still sent the request's span.
    assert.ok(receiver.spans.some((s) => s.kind === SERVER && s.attributes['url.path'] === '/ok'));
  });

  it('an app with no handler exits promptly', async () => {
    app = await startApp({ fixture: 'health-app.mjs', env: NO_DEPENDENCIES });
    const exit = await signalAndWait(app, 'SIGTERM').exited;
    assert.deepEqual([exit.code, exit.signal], [null, 'SIGTERM']);
    assert.ok(exit.ms < 1000, `exited after ${Math.round(exit.ms)} ms`);
  });

  it('a backend that never answers holds the exit for DATALAB_SHUTDOWN_TIMEOUT_MS at most', async () => {
    const hole = await blackHole();
    try {
      app = await startApp({
        fixture: 'health-app.mjs',
        env: {
          ...NO_DEPENDENCIES,
          OTEL_EXPORTER_OTLP_ENDPOINT: hole.url,
          DATALAB_SHUTDOWN_TIMEOUT_MS: '1000',
        },
      });
      assert.equal(await request(app.url('/ok')), 200);
      const exit = await signalAndWait(app, 'SIGTERM').exited;
      assert.deepEqual([exit.code, exit.signal], [null, 'SIGTERM']);
      assert.ok(exit.ms >= 900 && exit.ms < 2000, `exited after ${Math.round(exit.ms)} ms`);
    } finally {
      await hole.close();
    }
  });

  it('SIGINT ends a handler-less app by SIGINT', async () => {
    app = await startApp({ fixture: 'health-app.mjs', env: NO_DEPENDENCIES });
    const exit = await signalAndWait(app, 'SIGINT').exited;
    assert.deepEqual([exit.code, exit.signal], [null, 'SIGINT']);
    assert.ok(exit.ms < 1000, `exited after ${Math.round(exit.ms)} ms`);
  });
});
