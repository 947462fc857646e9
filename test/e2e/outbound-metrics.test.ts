/**
 * Outbound HTTP metrics end to end: three stub upstreams (one answers 200, one 503, one never
 * answers), a fixture service under the preload that calls them with node:http and with fetch a
 * known number of times, and the real /metrics scrape, with tracing on and off. The distro's own
 * OTLP traffic to the test's receiver must not be counted. Then 1,000 distinct hosts against the
 * peer cap.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { type AppProcess, freePort, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { requirePrometheusTool } from '../support/prometheus-server';
import { parsePrometheusText, type Sample, samplesNamed, sumOf } from '../support/prometheus-text';

const HTTP_CALLS = 3; // per target and inbound request, node:http GET
const FETCH_CALLS = 2; // per target and inbound request, fetch POST
const INBOUND = 2;
const CLIENT_SPAN = 3; // OTLP SpanKind
// The fixture's client timeout: long enough that the answering upstreams never hit it on a busy
// machine, short enough for the calls to the silent one.
const CLIENT_TIMEOUT_MS = 750;

interface Upstream {
  readonly server: Server;
  readonly url: string;
  readonly peer: string;
  readonly sockets: Set<Socket>;
}

async function startUpstream(answer: (res: ServerResponse) => void): Promise<Upstream> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    req.resume();
    answer(res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { server, url: `http://127.0.0.1:${port}/api`, peer: `127.0.0.1:${port}`, sockets };
}

async function stopUpstream(upstream: Upstream | undefined): Promise<void> {
  if (!upstream) return;
  for (const socket of upstream.sockets) socket.destroy();
  await new Promise<void>((resolve) => upstream.server.close(() => resolve()));
}

/** `method peer status` → count, of every http_client_requests_total series. */
function countsOf(samples: readonly Sample[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const s of samplesNamed(samples, 'http_client_requests_total')) {
    const key = `${s.labels.method} ${s.labels.peer} ${s.labels.status}`;
    counts.set(key, (counts.get(key) ?? 0) + s.value);
  }
  return counts;
}

function sorted(map: Map<string, number>): [string, number][] {
  return [...map.entries()].sort(([a], [b]) => a.localeCompare(b));
}

async function until(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('outbound HTTP metrics: http_client_requests_total / http_client_request_duration_seconds', function () {
  this.timeout(90_000);
  let ok: Upstream | undefined;
  let failing: Upstream | undefined;
  let hanging: Upstream | undefined;
  let receiver: OtlpReceiver | undefined;
  let app: AppProcess | undefined;

  before(async () => {
    ok = await startUpstream((res) => res.writeHead(200).end('fine'));
    failing = await startUpstream((res) => res.writeHead(503).end('unavailable'));
    hanging = await startUpstream(() => {
      // Never answers: the client's timeout ends the call.
    });
    receiver = await startOtlpReceiver();
  });

  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  after(async () => {
    await Promise.all([stopUpstream(ok), stopUpstream(failing), stopUpstream(hanging)]);
    await receiver?.close();
  });

  const modes: [string, (r: OtlpReceiver) => Record<string, string>][] = [
    [
      'tracing on (spans and metrics over OTLP to the receiver)',
      (r) => ({
        OTEL_EXPORTER_OTLP_ENDPOINT: r.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        OTEL_METRICS_EXPORTER: 'prometheus,otlp',
        OTEL_METRIC_EXPORT_INTERVAL: '200',
      }),
    ],
    [
      'tracing off (metrics only, also pushed over OTLP)',
      (r) => ({
        OTEL_TRACES_EXPORTER: 'none',
        DATALAB_TRACES_FILE: 'false',
        OTEL_EXPORTER_OTLP_ENDPOINT: r.url,
        OTEL_METRICS_EXPORTER: 'prometheus,otlp',
        OTEL_METRIC_EXPORT_INTERVAL: '200',
      }),
    ],
  ];

  for (const [mode, envOf] of modes) {
    it(`counts every call by peer, method and status, and nothing of its own: ${mode}`, async function () {
      const rx = receiver as OtlpReceiver;
      rx.clear();
      const targets = [ok, failing, hanging] as Upstream[];
      app = await startApp({
        fixture: 'outbound-app.mjs',
        env: { ...envOf(rx), CLIENT_TIMEOUT_MS: String(CLIENT_TIMEOUT_MS) },
      });
      const query = `targets=${targets.map((t) => encodeURIComponent(t.url)).join(',')}&http=${HTTP_CALLS}&fetch=${FETCH_CALLS}`;
      for (let i = 0; i < INBOUND; i++) {
        const res = await fetch(app.url(`/fanout?${query}`));
        assert.equal(res.status, 200);
        const outcomes = (await res.json()) as [string, string, string][];
        // What the application saw: the stubs behaved.
        assert.equal(outcomes.length, targets.length * (HTTP_CALLS + FETCH_CALLS));
        for (const [target, via, outcome] of outcomes) {
          const expected =
            target === ok?.url
              ? '200'
              : target === failing?.url
                ? '503'
                : via === 'http'
                  ? 'error:upstream took too long'
                  : 'error:TimeoutError';
          assert.equal(outcome, expected, `${via} ${target}`);
        }
      }

      // The distro's own exports happened while the calls were made, and after.
      const before = rx.requests.length;
      await until(() => rx.requests.length >= before + 2, 'OTLP exports after the calls');
      if (mode.startsWith('tracing on')) {
        const clientSpans = () => rx.spans.filter((s) => s.kind === CLIENT_SPAN).length;
        const calls = INBOUND * targets.length * (HTTP_CALLS + FETCH_CALLS);
        await until(() => clientSpans() >= calls, 'the client spans');
      }

      const expected = new Map<string, number>();
      const statusOf = new Map([
        [ok?.peer, '200'],
        [failing?.peer, '503'],
        [hanging?.peer, 'timeout'],
      ]);
      for (const target of targets) {
        const status = statusOf.get(target.peer);
        expected.set(`GET ${target.peer} ${status}`, INBOUND * HTTP_CALLS);
        expected.set(`POST ${target.peer} ${status}`, INBOUND * FETCH_CALLS);
      }
      const text = await app.scrapeText();
      const samples = parsePrometheusText(text);
      assert.deepEqual(sorted(countsOf(samples)), sorted(expected));
      const receiverPeer = new URL(rx.url).host;
      assert.ok(
        !samplesNamed(samples, 'http_client_requests_total').some(
          (s) => s.labels.peer === receiverPeer,
        ),
        'the exporters’ own calls are not counted',
      );
      for (const s of samplesNamed(samples, 'http_client_requests_total')) {
        assert.equal(s.labels.service, 'fixture-service');
      }

      // The histogram counts the same calls, per method and peer, in the inbound buckets.
      const histogramCounts = samplesNamed(samples, 'http_client_request_duration_seconds_count');
      assert.equal(histogramCounts.length, targets.length * 2);
      for (const s of histogramCounts) {
        assert.deepEqual(Object.keys(s.labels).sort(), ['method', 'peer', 'service']);
        assert.equal(s.value, INBOUND * (s.labels.method === 'GET' ? HTTP_CALLS : FETCH_CALLS));
      }
      const les = (name: string) =>
        samplesNamed(samples, name)
          .filter((s) => s.labels.method === 'GET' && s.labels.peer === ok?.peer)
          .map((s) => s.labels.le);
      const inboundLes = samplesNamed(samples, 'http_request_duration_seconds_bucket')
        .filter((s) => s.labels.endpoint === '/fanout')
        .map((s) => s.labels.le);
      assert.deepEqual(les('http_client_request_duration_seconds_bucket'), inboundLes);
      // The hanging upstream's calls lasted at least the client timeout.
      const hangSum = samplesNamed(samples, 'http_client_request_duration_seconds_sum').find(
        (s) => s.labels.method === 'GET' && s.labels.peer === hanging?.peer,
      );
      const minimum = (INBOUND * HTTP_CALLS * CLIENT_TIMEOUT_MS) / 1000;
      assert.ok((hangSum?.value ?? 0) >= minimum * 0.95, `${hangSum?.value} s`);

      const promtool = requirePrometheusTool(this, 'promtool');
      const check = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      const findings = `${check.stdout}${check.stderr}`.split('\n').filter((l) => l !== '');
      assert.deepEqual(findings, [], 'promtool finds nothing in the scrape');
      assert.equal(check.status, 0);
    });
  }

  it('caps distinct peers: 1,000 hosts make DATALAB_MAX_PEERS peers plus one __overflow__, one warning', async () => {
    const closedPort = await freePort();
    app = await startApp({
      fixture: 'outbound-app.mjs',
      env: { OTEL_TRACES_EXPORTER: 'none', DATALAB_TRACES_FILE: 'false' },
    });
    const res = await fetch(app.url(`/scan?host=127.0.1.1&port=${closedPort}&count=1000`));
    assert.deepEqual(await res.json(), { calls: 1000, failed: 1000 });
    const counters = samplesNamed(await app.scrape(), 'http_client_requests_total');
    const peers = new Set(counters.map((s) => s.labels.peer));
    assert.equal(peers.size, 101, 'the default cap, 100, plus __overflow__');
    assert.ok(peers.has('__overflow__'));
    assert.ok(peers.has(`127.0.1.1:${closedPort}`), 'the first hosts keep their own series');
    assert.equal(sumOf(counters), 1000, 'calls past the cap are still counted');
    assert.deepEqual([...new Set(counters.map((s) => s.labels.status))], ['error']);
    const overflow = app.warnings().filter((w) => w.startsWith('DLOTEL_PEER_OVERFLOW'));
    assert.equal(overflow.length, 1, app.warnings().join('\n'));
    assert.match(overflow[0] as string, /DATALAB_MAX_PEERS=100/);
  });
});
