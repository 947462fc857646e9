/**
 * The text format of `/metrics`, byte for byte, for a fixed set of series (the distro's counter
 * and histograms, SDK gauges and counters, special values, labels that need escaping). The
 * golden file was written from the serializer before `/metrics` learned OpenMetrics: whatever
 * the Accept header asks for, a client that does not ask for OpenMetrics must keep getting
 * exactly this.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Attributes } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { DEFAULT_HTTP_BUCKETS } from '../../src/config/types';
import { DB_BUCKETS } from '../../src/metrics/db';
import { DistroCounter, DistroHistogram, DistroProducer } from '../../src/metrics/instruments';
import { createPrometheusEndpoint } from '../../src/metrics/prometheus';
import { FIXTURES } from '../support/app';

const GOLDEN = join(FIXTURES, 'golden', 'metrics-text.prom');

/** What a scrape of the fixed series returns for each Accept header in `accepts`. */
async function scrape(accepts: readonly (string | undefined)[]) {
  const requests = new DistroCounter({
    name: 'http_requests_total',
    description: 'Inbound HTTP requests completed.',
  });
  const durations = new DistroHistogram({
    name: 'http_request_duration_seconds',
    description: 'Inbound HTTP request latency, from request start to response close.',
    unit: 's',
    boundaries: DEFAULT_HTTP_BUCKETS,
  });
  const db = new DistroHistogram({
    name: 'db_client_operation_duration_seconds',
    description: 'Duration of PostgreSQL queries and Redis commands, as the application sees them.',
    unit: 's',
    boundaries: DB_BUCKETS,
  });
  const endpoint = createPrometheusEndpoint([
    new DistroProducer({ counters: [requests], histograms: [durations, db] }),
  ]);
  const provider = new MeterProvider({
    resource: resourceFromAttributes({
      'service.name': 'golden "svc"',
      'service.version': '1.2.3',
      'host.name': 'back\\slash',
    }),
    readers: [endpoint.reader],
  });
  const meter = provider.getMeter('@datalab/otel', '0.0.0');
  const service = 'golden';

  const users = Object.freeze({ method: 'GET', endpoint: '/users/:id', service });
  const orders = Object.freeze({ method: 'POST', endpoint: '/orders', service });
  const odd = Object.freeze({ method: '_OTHER', endpoint: '/a "quoted"\\path\nx', service });
  const usersSeconds = [0.001, 0.005, 0.0051, 0.02, 0.3, 0.3, 1, 2.5, 9.75, 12];
  const series = durations.createSeries(users);
  for (const v of usersSeconds) series.record(v);
  durations.createSeries(orders).record(0.042);
  durations.createSeries(odd).record(0.5);
  durations.createSeries(Object.freeze({ method: 'GET', endpoint: '/idle', service }));
  const counts: [Attributes, string, number][] = [
    [users, '200', 7],
    [users, '404', 2],
    [users, '500', 1],
    [orders, '201', 1],
    [odd, '200', 1],
  ];
  for (const [labels, status, n] of counts) {
    requests.createSeries(Object.freeze({ ...labels, status })).count = n;
  }
  const dbSeries = db.createSeries(
    Object.freeze({ system: 'postgresql', operation: 'SELECT', service }),
  );
  for (const v of [0.0004, 0.003, 0.07, 20]) dbSeries.record(v);

  const serviceOnly = Object.freeze({ service });
  meter
    .createObservableGauge('http_requests_active', {
      description: 'Inbound HTTP requests in flight.',
    })
    .addCallback((r) => r.observe(3, serviceOnly));
  meter
    .createObservableGauge('memory_usage_bytes', {
      description: 'Resident set size of the process.',
      unit: 'By',
    })
    .addCallback((r) => r.observe(123456789, serviceOnly));
  meter
    .createObservableGauge('health_check_status', { description: 'Health check status.' })
    .addCallback((r) => {
      r.observe(1, Object.freeze({ check: 'db', service }));
      r.observe(0, Object.freeze({ check: 'disk', service }));
    });
  meter
    .createObservableCounter('otel_exporter_dropped_total', {
      description: 'Telemetry items dropped.',
    })
    .addCallback((r) => r.observe(5, Object.freeze({ signal: 'traces', service })));
  meter.createCounter('jobs', { description: 'A counter without the suffix.' }).add(4, users);
  meter
    .createUpDownCounter('queue_depth', { description: 'Up and down.', unit: '{item}' })
    .add(-2, serviceOnly);
  meter
    .createObservableGauge('special_values', { description: 'Help with \\ and\nnewline.' })
    .addCallback((r) => {
      r.observe(Number.NaN, Object.freeze({ kind: 'nan' }));
      r.observe(Number.POSITIVE_INFINITY, Object.freeze({ kind: 'inf' }));
      r.observe(Number.NEGATIVE_INFINITY, Object.freeze({ kind: '-inf' }));
      r.observe(1e21, Object.freeze({ kind: 'huge' }));
      r.observe(1e-7, Object.freeze({ kind: 'tiny' }));
      r.observe(0.1 + 0.2, Object.freeze({ kind: 'float' }));
    });

  const server = createServer((req, res) => void endpoint.handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
    const results: { contentType: string | null; body: string }[] = [];
    for (const accept of accepts) {
      // fetch sends `*/*` when no Accept is given: a raw request sends none at all.
      const res =
        accept === undefined
          ? await rawGet(url)
          : await fetch(url, { headers: { accept } }).then(async (r) => ({
              contentType: r.headers.get('content-type'),
              body: await r.text(),
            }));
      results.push(res);
    }
    return results;
  } finally {
    await new Promise((resolve) => server.close(resolve));
    await provider.shutdown();
  }
}

async function rawGet(url: string): Promise<{ contentType: string | null; body: string }> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          contentType: res.headers['content-type'] ?? null,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('/metrics text format (golden file)', () => {
  it('is byte for byte the golden text when the client does not ask for OpenMetrics', async () => {
    const golden = readFileSync(GOLDEN, 'utf8');
    const accepts = [
      undefined,
      '*/*',
      'text/plain',
      'text/plain;version=0.0.4',
      'text/plain; version=0.0.4; charset=utf-8',
      'application/json',
    ];
    const results = await scrape(accepts);
    results.forEach((result, i) => {
      const accept = accepts[i] ?? '(none)';
      assert.equal(result.contentType, 'text/plain; version=0.0.4; charset=utf-8', accept);
      assert.equal(result.body, golden, `Accept: ${accept}`);
    });
    // What the comparison covers: the golden file holds every kind of family.
    for (const line of [
      '# TYPE http_requests_total counter',
      '# UNIT http_request_duration_seconds s',
      'http_request_duration_seconds_bucket{method="GET",endpoint="/users/:id",service="golden",le="+Inf"} 10',
      '# TYPE memory_usage_bytes gauge',
      'special_values{kind="nan"} NaN',
    ]) {
      assert.ok(golden.split('\n').includes(line), `golden file lacks: ${line}`);
    }
  });
});
