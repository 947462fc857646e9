/**
 * A bug in the distro's own hooks stays inside the distro. DATALAB_INTERNAL_FAULTS (a test-only
 * seam, src/faults.ts) makes a hook throw on every request; every request still gets exactly the
 * response it gets without the distro, and the error is reported once as DLOTEL_INTERNAL_ERROR.
 */
import assert from 'node:assert/strict';
import { type AppProcess, startApp } from '../support/app';

const CALLS: [string, RequestInit, number][] = [
  ['/users/1', {}, 200],
  ['/users', { method: 'POST', body: 'x' }, 201],
  ['/status/404/x', {}, 404],
  ['/error', {}, 500],
  ['/throw', {}, 500],
];

async function answers(app: AppProcess, rounds: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < rounds; i++) {
    for (const [path, init] of CALLS) {
      const res = await fetch(app.url(path), { ...init, signal: AbortSignal.timeout(5_000) });
      out.push(`${init.method ?? 'GET'} ${path} ${res.status} ${await res.text()}`);
    }
  }
  return out;
}

describe('faults inside distro hooks stay inside', function () {
  this.timeout(60_000);
  let app: AppProcess | undefined;
  let baseline: string[];
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  before(async () => {
    const bare = await startApp({ fixture: 'plain-http-app.mjs', preload: 'none' });
    try {
      baseline = await answers(bare, 4);
    } finally {
      await bare.stop();
    }
    assert.deepEqual(
      baseline.slice(0, CALLS.length).map((a) => Number(a.split(' ')[2])),
      CALLS.map((c) => c[2]),
    );
  });

  const POINTS: [string, Record<string, string>][] = [
    ['http-metrics-start', {}],
    ['http-metrics-finish', {}],
    // The request's context, correlation ID and server span (request/lifecycle.ts), traced…
    ['inbound-context', {}],
    // …and with no span sink (metrics only).
    ['inbound-context', { OTEL_TRACES_EXPORTER: 'none', DATALAB_TRACES_FILE: 'false' }],
  ];
  for (const [point, env] of POINTS) {
    const mode = env.OTEL_TRACES_EXPORTER === 'none' ? ' (metrics only)' : '';
    it(`${point}${mode}: every request answered as without the distro, one DLOTEL_INTERNAL_ERROR`, async () => {
      app = await startApp({
        fixture: 'plain-http-app.mjs',
        env: { ...env, DATALAB_INTERNAL_FAULTS: point, DATALAB_ACCESS_LOG: 'true' },
      });
      assert.deepEqual(await answers(app, 4), baseline);
      // Concurrent requests too: the hook fails on each of them.
      const running = app;
      const statuses = await Promise.all(
        Array.from({ length: 40 }, () =>
          fetch(running.url('/users/7'), { signal: AbortSignal.timeout(5_000) }).then(
            (r) => r.status,
          ),
        ),
      );
      assert.deepEqual(statuses, Array(40).fill(200));
      // The management server is unaffected.
      assert.equal((await fetch(`http://127.0.0.1:${app.metricsPort}/health/live`)).status, 200);
      await app.scrape();

      const internal = app.warnings().filter((w) => w.startsWith('DLOTEL_INTERNAL_ERROR'));
      assert.equal(internal.length, 1, app.stderr.join('\n'));
      assert.match(internal[0] as string, new RegExp(`injected fault at ${point}`));
      assert.equal(app.warnings().length, 1, `no other warning:\n${app.warnings().join('\n')}`);
      assert.ok(!app.stderr.some((l) => /uncaught|unhandled/i.test(l)), app.stderr.join('\n'));
    });
  }

  it('without the seam, no warning (the check is not vacuous)', async () => {
    app = await startApp({ fixture: 'plain-http-app.mjs' });
    assert.deepEqual(await answers(app, 1), baseline.slice(0, CALLS.length));
    assert.deepEqual(app.warnings(), []);
  });
});
