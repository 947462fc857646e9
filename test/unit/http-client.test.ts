import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { suppressTracing } from '@opentelemetry/core';
import {
  failedStatus,
  formatPeer,
  HttpClientMetrics,
  OVERFLOW_PEER,
  peerOfOrigin,
  startHttpClientMetrics,
} from '../../src/metrics/http-client';
import { DistroCounter, DistroHistogram } from '../../src/metrics/instruments';
import { setWarningSink, type WarningSink } from '../../src/warnings';

describe('outbound peer formatting', () => {
  const cases: [string, boolean, string][] = [
    ['api.example.com', false, 'api.example.com:80'],
    ['api.example.com', true, 'api.example.com:443'],
    ['api.example.com:8080', false, 'api.example.com:8080'],
    ['API.Example.COM:8443', true, 'api.example.com:8443'],
    ['127.0.0.1:3000', false, '127.0.0.1:3000'],
    ['[::1]:3000', false, '[::1]:3000'],
    ['[::1]', true, '[::1]:443'],
    ['[::1]:', false, '[::1]:80'],
    ['::1', false, '[::1]:80'],
    ['host:', true, 'host:443'],
    ['user:secret@host:81', false, 'host:81'],
    ['', false, 'localhost:80'],
  ];
  for (const [authority, https, peer] of cases) {
    it(`${JSON.stringify(authority)} (${https ? 'https' : 'http'}) → ${peer}`, () => {
      assert.equal(formatPeer(authority, https), peer);
    });
  }

  it('takes host:port from undici origins, default ports included', () => {
    assert.equal(peerOfOrigin('http://127.0.0.1:4000'), '127.0.0.1:4000');
    assert.equal(peerOfOrigin('https://api.example.com'), 'api.example.com:443');
    assert.equal(peerOfOrigin('http://api.example.com'), 'api.example.com:80');
    assert.equal(peerOfOrigin('https://api.example.com:8443/'), 'api.example.com:8443');
    assert.equal(peerOfOrigin('http://[::1]:9000'), '[::1]:9000');
    assert.equal(peerOfOrigin('unix:/var/run/x.sock'), undefined);
  });
});

describe('outbound status of a failed call', () => {
  const named = (name: string, extra: object = {}) =>
    Object.assign(new Error('x'), { name }, extra) as Error;
  const cases: [string, unknown, boolean, string][] = [
    ['the request’s own timeout event', new Error('socket hang up'), true, 'timeout'],
    ['AbortSignal.timeout() with fetch', named('TimeoutError'), false, 'timeout'],
    [
      'AbortSignal.timeout() with node:http',
      named('AbortError', { code: 'ABORT_ERR', cause: named('TimeoutError') }),
      false,
      'timeout',
    ],
    [
      'undici connect timeout',
      named('ConnectTimeoutError', { code: 'UND_ERR_CONNECT_TIMEOUT' }),
      false,
      'timeout',
    ],
    [
      'undici headers timeout',
      named('HeadersTimeoutError', { code: 'UND_ERR_HEADERS_TIMEOUT' }),
      false,
      'timeout',
    ],
    [
      'connect ETIMEDOUT',
      Object.assign(new Error('connect'), { code: 'ETIMEDOUT' }),
      false,
      'timeout',
    ],
    ['an abort', named('AbortError', { code: 'ABORT_ERR' }), false, 'aborted'],
    [
      'undici RequestAbortedError',
      named('RequestAbortedError', { code: 'UND_ERR_ABORTED' }),
      false,
      'aborted',
    ],
    [
      'connection refused',
      Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }),
      false,
      'error',
    ],
    ['DNS failure', Object.assign(new Error('nx'), { code: 'ENOTFOUND' }), false, 'error'],
    ['a reset', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), false, 'error'],
    ['a thrown string', 'boom', false, 'error'],
    ['nothing', undefined, false, 'error'],
  ];
  for (const [what, error, timedOut, status] of cases) {
    it(`${what} → ${status}`, () => assert.equal(failedStatus(error, timedOut), status));
  }
});

describe('HttpClientMetrics on the undici channels', () => {
  let metrics: HttpClientMetrics;
  let requests: DistroCounter;
  let durations: DistroHistogram;
  let previousSink: WarningSink;
  const warnings: string[] = [];
  const manager = new AsyncLocalStorageContextManager();

  const publish = (name: string, message: object) =>
    diagnosticsChannel.channel(name).publish(message);
  const counts = () =>
    Object.fromEntries(
      requests.series.map((s) => [
        `${s.attributes.method} ${s.attributes.peer} ${s.attributes.status}`,
        s.count,
      ]),
    );

  before(() => {
    context.setGlobalContextManager(manager.enable());
    previousSink = setWarningSink((code, message) => warnings.push(`${code}: ${message}`));
  });
  after(() => {
    setWarningSink(previousSink);
    context.disable();
  });
  beforeEach(() => {
    requests = new DistroCounter({ name: 'c', description: '' });
    durations = new DistroHistogram({ name: 'h', description: '', unit: 's', boundaries: [1] });
    metrics = new HttpClientMetrics({ service: 'svc', requests, durations, maxPeers: 2 });
    metrics.enable();
  });
  afterEach(() => metrics.disable());

  it('counts a call once, at its final response, by method, peer and status', () => {
    const request = { origin: 'http://upstream:8080', method: 'post' };
    publish('undici:request:create', { request });
    publish('undici:request:headers', { request, response: { statusCode: 103 } });
    publish('undici:request:headers', { request, response: { statusCode: 201 } });
    publish('undici:request:trailers', { request, trailers: [] });
    publish('undici:request:error', { request, error: new Error('body failed') });
    assert.deepEqual(counts(), { 'POST upstream:8080 201': 1 });
    assert.equal(durations.series[0]?.count, 1);
    assert.deepEqual(durations.series[0]?.attributes, {
      method: 'POST',
      peer: 'upstream:8080',
      service: 'svc',
    });
  });

  it('counts a failed call with the status that says why', () => {
    const timedOut = { origin: 'https://slow.example', method: 'GET' };
    publish('undici:request:create', { request: timedOut });
    publish('undici:request:error', {
      request: timedOut,
      error: Object.assign(new Error('t'), { name: 'TimeoutError' }),
    });
    assert.deepEqual(counts(), { 'GET slow.example:443 timeout': 1 });
  });

  it('does not count calls made where tracing is suppressed (the distro’s exporters)', () => {
    const request = { origin: 'http://collector:4318', method: 'POST' };
    context.with(suppressTracing(context.active()), () =>
      publish('undici:request:create', { request }),
    );
    publish('undici:request:headers', { request, response: { statusCode: 200 } });
    assert.deepEqual(counts(), {});
  });

  it('ignores calls it did not see start (created before it subscribed)', () => {
    const request = { origin: 'http://a:1', method: 'GET' };
    publish('undici:request:headers', { request, response: { statusCode: 200 } });
    assert.deepEqual(counts(), {});
  });

  it('caps peers: past DATALAB_MAX_PEERS every new peer is __overflow__, with one warning', () => {
    for (const host of ['a', 'b', 'c', 'd', 'a']) {
      const request = { origin: `http://${host}`, method: 'GET' };
      publish('undici:request:create', { request });
      publish('undici:request:headers', { request, response: { statusCode: 200 } });
    }
    assert.deepEqual(counts(), {
      'GET a:80 200': 2,
      'GET b:80 200': 1,
      [`GET ${OVERFLOW_PEER} 200`]: 2,
    });
    const overflow = warnings.filter((w) => w.startsWith('DLOTEL_PEER_OVERFLOW'));
    assert.equal(overflow.length, 1);
    assert.match(overflow[0] as string, /DATALAB_MAX_PEERS=2\b.*"c:80"/);
  });
});

describe('startHttpClientMetrics', () => {
  const config = (httpClient: boolean) =>
    ({
      serviceName: 'svc',
      metrics: { httpClient, maxPeers: 5, httpBuckets: [0.1, 1] },
    }) as unknown as Parameters<typeof startHttpClientMetrics>[0];

  it('adds the two instruments, with the inbound buckets, and subscribes', () => {
    const instruments = { counters: [] as DistroCounter[], histograms: [] as DistroHistogram[] };
    const metrics = startHttpClientMetrics(config(true), instruments);
    try {
      assert.ok(metrics);
      assert.deepEqual(
        instruments.counters.map((c) => c.options.name),
        ['http_client_requests_total'],
      );
      assert.deepEqual(
        instruments.histograms.map((h) => [h.options.name, h.boundaries]),
        [['http_client_request_duration_seconds', [0.1, 1]]],
      );
      assert.ok(diagnosticsChannel.hasSubscribers('http.client.request.created'));
      assert.ok(diagnosticsChannel.hasSubscribers('undici:request:create'));
    } finally {
      metrics?.disable();
    }
  });

  it('DATALAB_HTTP_CLIENT_METRICS=false: nothing is added or started', () => {
    const instruments = { counters: [] as DistroCounter[], histograms: [] as DistroHistogram[] };
    assert.equal(startHttpClientMetrics(config(false), instruments), undefined);
    assert.deepEqual(instruments, { counters: [], histograms: [] });
  });
});
