/**
 * Secrets beyond SQL and Redis values (those are databases.test.ts's markers): OTLP header
 * values, credentials in DATABASE_URL / REDIS_URL (the health checks' fallback connects with
 * them), request Authorization / Cookie headers and the management token never appear in
 * exported OTLP bodies, /metrics, /health, stdout/stderr, `datalab-otel config` / `doctor` output
 * or error messages. And the management port's lock: bearer token, open probes, fail-closed on an
 * invalid token, interface binding.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type AppProcess, freePort, ROOT, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';

const run = promisify(execFile);
const marker = (kind: string) => `${kind}${randomBytes(8).toString('hex')}`;

const M = {
  OTLP_HEADER_KEY: marker('otlpkey'),
  OTLP_HEADER_TENANT: marker('otlptenant'),
  OTLP_TRACES_HEADER: marker('otlptraces'),
  PG_PASSWORD: marker('pgpass'),
  REDIS_PASSWORD: marker('redispass'),
  REQ_BEARER: marker('reqbearer'),
  REQ_COOKIE: marker('reqcookie'),
  REQ_PROXY: marker('reqproxy'),
  REQ_API_KEY: marker('reqapikey'),
  TOKEN: marker('mgmttoken'),
  BAD_TOKEN: marker('badtoken'),
};

/** Every place a secret could end up: { what, text }. */
type Haystack = { what: string; text: string };

function assertNoMarkers(haystacks: readonly Haystack[]): void {
  for (const [name, value] of Object.entries(M)) {
    for (const { what, text } of haystacks) {
      assert.ok(!text.includes(value), `${name} leaked into ${what}`);
    }
  }
}

function secretEnv(otlp: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp,
    OTEL_EXPORTER_OTLP_HEADERS: `x-api-key=${M.OTLP_HEADER_KEY},x-tenant=${M.OTLP_HEADER_TENANT}`,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS: `authorization=Bearer%20${M.OTLP_TRACES_HEADER}`,
    OTEL_BSP_SCHEDULE_DELAY: '100',
    OTEL_METRICS_EXPORTER: 'prometheus,otlp',
    OTEL_METRIC_EXPORT_INTERVAL: '300',
    DATALAB_ACCESS_LOG: 'true',
    // Trust auth ignores the password, so it can be a marker.
    DATABASE_URL: `postgres://postgres:${M.PG_PASSWORD}@127.0.0.1:5432/test`,
    REDIS_URL: `redis://:${M.REDIS_PASSWORD}@127.0.0.1:6379`,
    DATALAB_MANAGEMENT_TOKEN: M.TOKEN,
    ...extra,
  };
}

const SECRET_REQUEST_HEADERS = {
  authorization: `Bearer ${M.REQ_BEARER}`,
  cookie: `session=${M.REQ_COOKIE}; theme=dark`,
  'proxy-authorization': `Basic ${M.REQ_PROXY}`,
  'x-api-key': M.REQ_API_KEY,
};

async function get(url: string, token?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, text: await res.text() };
}

/** `datalab-otel <command>` with the service's environment; stdout and stderr together. */
async function cli(command: string, env: Record<string, string>): Promise<string> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('OTEL_') && !k.startsWith('DATALAB_')) base[k] = v;
  }
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      [join(ROOT, 'dist', 'src', 'cli', 'main.js'), command],
      { cwd: ROOT, env: { ...base, ...env }, timeout: 30_000 },
    );
    return `${stdout}\n${stderr}`;
  } catch (err) {
    // doctor exits 1 when a check fails; its output is what matters here.
    const e = err as { stdout?: string; stderr?: string };
    return `${e.stdout ?? ''}\n${e.stderr ?? ''}`;
  }
}

/** Listening addresses (hex, as in /proc/net/tcp) of a TCP port. */
function listenAddresses(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const [addr, p] = (cols[1] ?? '').split(':');
      if (p === hexPort && cols[3] === '0A') out.push(addr as string);
    }
  }
  return out;
}

describe('secrets never leave the process', function () {
  this.timeout(90_000);
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    receiver.clear();
  });

  it('OTLP headers, DATABASE_URL/REDIS_URL, Authorization/Cookie: not in OTLP, /metrics, /health, output, CLI', async () => {
    const env = secretEnv(receiver.url);
    app = await startApp({ fixture: 'plain-http-app.mjs', env, waitForMetrics: false });
    const running = app;
    for (const path of ['/users/1', '/users/2?session=x', '/error', '/throw', '/nope']) {
      const res = await fetch(running.url(path), { headers: SECRET_REQUEST_HEADERS });
      await res.arrayBuffer();
    }
    await receiver.waitFor(
      () => receiver.spans.filter((s) => s.kind === 2).length >= 5,
      10_000,
      'five server spans',
    );
    await receiver.waitFor(() => receiver.metrics.length > 0, 10_000, 'OTLP metrics');

    const health = await get(`http://127.0.0.1:${running.metricsPort}/health`, M.TOKEN);
    assert.ok([200, 503].includes(health.status), `/health ${health.status}: ${health.text}`);
    const report = JSON.parse(health.text) as { checks?: Record<string, { status: string }> };
    // The fallback connected with the marker credentials (trust auth, no Redis password set).
    assert.equal(report.checks?.database?.status, 'healthy', health.text);
    assert.match(
      health.text,
      /"database":\{[^}]*"source":"environment"/,
      'the fallback, not a pool',
    );
    assert.equal(report.checks?.redis?.status, 'healthy', health.text);
    const metrics = await get(`http://127.0.0.1:${running.metricsPort}/metrics`, M.TOKEN);
    assert.equal(metrics.status, 200);

    const config = await cli('config', env);
    assert.match(config, /\[REDACTED\]/);
    const doctor = await cli('doctor', env);

    await new Promise((r) => setTimeout(r, 200));
    assertNoMarkers([
      ...receiver.bodies.map((b) => ({ what: `OTLP ${b.path}`, text: b.raw.toString('latin1') })),
      { what: '/metrics', text: metrics.text },
      { what: '/health', text: health.text },
      { what: 'stdout', text: running.stdout.join('\n') },
      { what: 'stderr', text: running.stderr.join('\n') },
      { what: 'datalab-otel config', text: config },
      { what: 'datalab-otel doctor', text: doctor },
    ]);
    assert.ok(receiver.bodies.some((b) => b.path === '/v1/traces'));
    assert.ok(
      running.stdout.some((l) => l.includes('"request completed"')),
      'access log on',
    );
  });

  it('error messages: unreachable database, Redis and OTLP endpoint with credentials', async () => {
    const closed = await freePort();
    const env = secretEnv(`http://127.0.0.1:${closed}`, {
      DATABASE_URL: `postgres://postgres:${M.PG_PASSWORD}@127.0.0.1:${closed}/test`,
      REDIS_URL: `redis://:${M.REDIS_PASSWORD}@127.0.0.1:${closed}`,
      OTEL_EXPORTER_OTLP_TIMEOUT: '500',
      DATALAB_HEALTH_TIMEOUT_MS: '1000',
    });
    app = await startApp({ fixture: 'plain-http-app.mjs', env, waitForMetrics: false });
    const running = app;
    const res = await fetch(running.url('/users/1'), { headers: SECRET_REQUEST_HEADERS });
    assert.equal(res.status, 200);
    const deadline = Date.now() + 10_000;
    while (!running.warnings().some((w) => w.startsWith('DLOTEL_EXPORT_FAILED'))) {
      assert.ok(Date.now() < deadline, `no export failure warning:\n${running.stderr.join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const health = await get(`http://127.0.0.1:${running.metricsPort}/health`, M.TOKEN);
    assert.equal(health.status, 503, health.text);
    const report = JSON.parse(health.text) as { checks?: Record<string, { status: string }> };
    assert.equal(report.checks?.database?.status, 'unhealthy', health.text);
    assert.equal(report.checks?.redis?.status, 'unhealthy', health.text);

    // An unparsable URL with a password in it: the error names neither.
    const garbled = secretEnv(`http://127.0.0.1:${closed}`, {
      DATABASE_URL: `postgres://postgres:${M.PG_PASSWORD}@[::1:5432/test`,
      REDIS_URL: `redis://:${M.REDIS_PASSWORD}@[bad`,
    });
    await app.stop();
    app = await startApp({ fixture: 'plain-http-app.mjs', env: garbled, waitForMetrics: false });
    const garbledHealth = await get(`http://127.0.0.1:${app.metricsPort}/health`, M.TOKEN);
    const doctor = await cli('doctor', env);
    const config = await cli('config', garbled);
    assertNoMarkers([
      { what: '/health (unreachable)', text: health.text },
      { what: '/health (garbled URLs)', text: garbledHealth.text },
      { what: 'stderr (unreachable)', text: running.stderr.join('\n') },
      { what: 'stdout (unreachable)', text: running.stdout.join('\n') },
      { what: 'stderr (garbled URLs)', text: app.stderr.join('\n') },
      { what: 'datalab-otel doctor (unreachable)', text: doctor },
      { what: 'datalab-otel config (garbled URLs)', text: config },
    ]);
  });
});

describe('management port lock-down', function () {
  this.timeout(60_000);
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  it('DATALAB_MANAGEMENT_TOKEN: /metrics and /health need it, the probes do not', async () => {
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { DATALAB_MANAGEMENT_TOKEN: M.TOKEN },
      waitForMetrics: false,
    });
    const base = `http://127.0.0.1:${app.metricsPort}`;
    for (const path of ['/metrics', '/health']) {
      const none = await fetch(`${base}${path}`);
      assert.equal(none.status, 401, `${path} without a token`);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer /);
      assert.ok(!(await none.text()).includes(M.TOKEN));
      assert.equal((await get(`${base}${path}`, `${M.TOKEN}x`)).status, 401, `${path} wrong`);
      assert.equal((await get(`${base}${path}`, M.TOKEN.slice(1))).status, 401, `${path} prefix`);
      const basic = await fetch(`${base}${path}`, {
        headers: { authorization: `Basic ${Buffer.from(`u:${M.TOKEN}`).toString('base64')}` },
      });
      assert.equal(basic.status, 401, `${path} with Basic auth`);
      const ok = await get(`${base}${path}`, M.TOKEN);
      assert.ok([200, 503].includes(ok.status), `${path} with the token: ${ok.status}`);
      assert.notEqual(ok.status, 401);
    }
    for (const probe of ['/health/live', '/health/ready']) {
      assert.equal((await get(`${base}${probe}`)).status, 200, `${probe} stays open`);
    }
    assertNoMarkers([
      { what: 'stdout', text: app.stdout.join('\n') },
      { what: 'stderr', text: app.stderr.join('\n') },
    ]);
    assert.deepEqual(app.warnings(), []);
  });

  it('an invalid token keeps /metrics and /health closed, and is never printed', async () => {
    const invalid = `short ${M.BAD_TOKEN}`; // a space: not a valid token
    const env = { DATALAB_MANAGEMENT_TOKEN: invalid };
    app = await startApp({ fixture: 'plain-http-app.mjs', env, waitForMetrics: false });
    const base = `http://127.0.0.1:${app.metricsPort}`;
    for (const path of ['/metrics', '/health']) {
      assert.equal((await get(`${base}${path}`)).status, 401, `${path} without a token`);
      assert.equal((await get(`${base}${path}`, M.BAD_TOKEN)).status, 401, `${path} half`);
      const res = await fetch(`${base}${path}`, {
        headers: { authorization: `Bearer ${invalid}` },
      });
      assert.equal(res.status, 401, `${path} with the invalid value itself`);
    }
    assert.equal((await get(`${base}/health/live`)).status, 200);
    assert.equal((await get(`${base}/health/ready`)).status, 200);
    const warnings = app.warnings().filter((w) => w.includes('DATALAB_MANAGEMENT_TOKEN'));
    assert.equal(warnings.length, 1, app.stderr.join('\n'));
    const config = await cli('config', env);
    assertNoMarkers([
      { what: 'stdout', text: app.stdout.join('\n') },
      { what: 'stderr', text: app.stderr.join('\n') },
      { what: 'datalab-otel config', text: config },
    ]);
  });

  it('DATALAB_METRICS_HOST binds the management server to that interface only', async () => {
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { DATALAB_METRICS_HOST: '127.0.0.1' },
    });
    assert.deepEqual(listenAddresses(app.metricsPort), ['0100007F'], '127.0.0.1 only');
    await app.stop();
    const port = await freePort();
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { DATALAB_METRICS_HOST: '0.0.0.0', DATALAB_METRICS_PORT: String(port) },
    });
    assert.deepEqual(listenAddresses(port), ['00000000'], 'every interface');
  });
});
