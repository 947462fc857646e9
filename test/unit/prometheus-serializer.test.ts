import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Attributes } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  AggregationType,
  DataPointType,
  MeterProvider,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { createPromClientMetrics } from '../../src/metrics/process';
import { createPrometheusEndpoint } from '../../src/metrics/prometheus';
import { PrometheusTextSerializer } from '../../src/metrics/prometheus-text';

// The settings createPrometheusEndpoint served /metrics with before it had its own serializer.
const reference = () => new PrometheusSerializer('', false, undefined, false, true);

function setup(resource: Attributes = { 'service.name': 'svc' }) {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const provider = new MeterProvider({
    resource: resourceFromAttributes(resource),
    readers: [exporter],
    views: [
      {
        instrumentName: 'expo_latency',
        aggregation: { type: AggregationType.EXPONENTIAL_HISTOGRAM },
      },
      // A processor hands sdk-metrics fresh, unfrozen attribute objects at every recording.
      {
        instrumentName: 'processed_total',
        attributesProcessors: [{ process: (a: Attributes) => ({ kept: a.kept }) }],
      },
    ],
  });
  const serializer = new PrometheusTextSerializer();
  const oldSerializer = reference();
  return {
    meter: provider.getMeter('test-scope', '1.2.3'),
    async collect(): Promise<ResourceMetrics> {
      return (await exporter.collect()).resourceMetrics;
    },
    /** Both texts of one collection, the new serializer's through a warm cache. */
    async both(): Promise<{ actual: string; expected: string }> {
      const { resourceMetrics } = await exporter.collect();
      return {
        actual: serializer.serialize(resourceMetrics).toString('utf8'),
        expected: oldSerializer.serialize(resourceMetrics),
      };
    },
  };
}

const frozen = (a: Attributes): Attributes => Object.freeze(a);

describe('PrometheusTextSerializer', () => {
  it('writes what exporter-prometheus writes, for every instrument kind, at every scrape', async () => {
    const t = setup({
      'service.name': 'svc "quoted"',
      'host.name': 'back\\slash',
      'deployment.environment': 'line\nbreak',
      'service.instance.id': 'ïd-✓',
      'process.pid': 4242,
    });
    const { meter } = t;
    const plain = frozen({ method: 'GET', endpoint: '/users/:id', status: '200', service: 's' });
    const nasty = frozen({
      quote: 'say "hi"',
      backslash: 'C:\\temp\\',
      newline: 'a\nb',
      unicode: 'café ✓ 日本',
      'http.request.method': 'POST',
      'dash-and.dot': 'x',
      double__underscore: 'y',
      number: 3.5,
      flag: true,
      list: ['a', 'b"c'],
      empty: '',
    });

    const counter = meter.createCounter('requests', { description: 'Plain counter.' });
    const total = meter.createCounter('jobs_total', { description: 'Already suffixed.' });
    const weird = meter.createCounter('weird.name-with/slash', { unit: 'By' });
    const digit = meter.createCounter('9lives', { description: 'Starts with a digit.' });
    const updown = meter.createUpDownCounter('queue.depth', { description: 'Up and down.' });
    const gauge = meter.createGauge('temperature', {
      description: 'Help with \\ backslash\nand newline',
      unit: 'Cel\\sius\nx',
    });
    const histogram = meter.createHistogram('http.request.duration', {
      description: 'Latency.',
      unit: 's',
      advice: { explicitBucketBoundaries: [0.005, 0.1, 1, 2.5] },
    });
    const bare = meter.createHistogram('bare_histogram', {
      advice: { explicitBucketBoundaries: [1, 10] },
    });
    const expo = meter.createHistogram('expo_latency', { description: 'Exponential.' });
    const processed = meter.createCounter('processed_total');
    meter.createCounter('unused_counter', { description: 'Never recorded.' });
    meter.createCounter('___', { description: 'Sanitised to "_", skipped by both.' }).add(1);

    let observed = 7;
    meter
      .createObservableGauge('observed.gauge', { description: 'Observed.', unit: '1' })
      .addCallback((r) => {
        r.observe(observed + 0.25, plain);
        r.observe(Number.NaN, frozen({ kind: 'nan' }));
        r.observe(Number.POSITIVE_INFINITY, frozen({ kind: 'inf' }));
        r.observe(Number.NEGATIVE_INFINITY, frozen({ kind: '-inf' }));
        r.observe(-0, frozen({ kind: 'negzero' }));
        r.observe(1e21, frozen({ kind: 'huge' }));
        r.observe(1e-7, frozen({ kind: 'tiny' }));
      });
    meter
      .createObservableCounter('observed_requests', { description: 'Observed counter.' })
      .addCallback((r) => {
        r.observe(observed * 10, plain);
        r.observe(observed, nasty);
        r.observe(Number.MAX_SAFE_INTEGER, frozen({ kind: 'max-safe' }));
        r.observe(2 ** 60, frozen({ kind: 'beyond-safe' }));
      });
    meter
      .createObservableUpDownCounter('observed_updown')
      .addCallback((r) => r.observe(-observed, plain));

    const record = (step: number) => {
      counter.add(step, plain);
      counter.add(2 * step, nasty);
      counter.add(1); // no attributes at all
      total.add(step, plain);
      weird.add(step, frozen({ 'label.with.dots': 'v' }));
      digit.add(step, plain);
      updown.add(-3 * step, plain);
      updown.add(step, nasty);
      gauge.record(21.5 + step, plain);
      for (const v of [0.001, 0.005, 0.05, 0.5, 2, 3 + step]) histogram.record(v, plain);
      histogram.record(0.2 * step, nasty);
      bare.record(5 * step);
      for (const v of [0.1, 1, 10, 100 * step]) expo.record(v, plain);
      processed.add(step, { kept: 'k', dropped: `d${step}` });
      observed += step;
    };

    for (let step = 1; step <= 3; step++) {
      record(step);
      const { actual, expected } = await t.both();
      assert.equal(actual, expected, `scrape ${step}`);
    }
    // What the comparison covered: a broken reference would make the equality above vacuous.
    const { actual } = await t.both();
    for (const line of [
      'requests_total{method="GET",endpoint="/users/:id",status="200",service="s"} 6',
      'jobs_total{method="GET",endpoint="/users/:id",status="200",service="s"} 6',
      'weird_name_with_slash_total{label_with_dots="v"} 6',
      '_9lives_total{method="GET",endpoint="/users/:id",status="200",service="s"} 6',
      String.raw`# UNIT temperature Cel\\sius\nx`,
      String.raw`# HELP temperature Help with \\ backslash\nand newline`,
      '# TYPE queue_depth gauge',
      'queue_depth{method="GET",endpoint="/users/:id",status="200",service="s"} -18',
      '# TYPE http_request_duration histogram',
      'http_request_duration_bucket{method="GET",endpoint="/users/:id",status="200",service="s",le="0.005"} 6',
      'http_request_duration_bucket{method="GET",endpoint="/users/:id",status="200",service="s",le="+Inf"} 18',
      'bare_histogram_bucket{le="10"} 2',
      'bare_histogram_count 3',
      '# TYPE expo_latency untyped',
      'processed_total{kept="k"} 6',
      'observed_gauge{kind="inf"} +Inf',
      'observed_gauge{kind="-inf"} -Inf',
      'observed_gauge{kind="nan"} NaN',
      'observed_gauge{kind="negzero"} 0',
      'observed_gauge{kind="huge"} 1e+21',
      'observed_gauge{kind="tiny"} 1e-7',
      'observed_requests_total{kind="max-safe"} 9007199254740991',
      'observed_requests_total{kind="beyond-safe"} 1152921504606847000',
      String.raw`target_info{service_name="svc \"quoted\"",host_name="back\\slash",deployment_environment="line\nbreak",service_instance_id="ïd-✓",process_pid="4242"} 1`,
      String.raw`requests_total{quote="say \"hi\"",backslash="C:\\temp\\",newline="a\nb",unicode="café ✓ 日本",http_request_method="POST",dash_and_dot="x",double_underscore="y",number="3.5",flag="true",list="[\"a\",\"b\\\"c\"]",empty=""} 12`,
    ]) {
      assert.ok(actual.split('\n').includes(line), `missing line: ${line}\n${actual}`);
    }
    assert.doesNotMatch(actual, /^# HELP _ /m);
  });

  it('shows a new value recorded on the same attributes object (the cache holds no values)', async () => {
    const t = setup();
    const attributes = frozen({ route: '/a' });
    const counter = t.meter.createCounter('hits');
    const histogram = t.meter.createHistogram('lat', { advice: { explicitBucketBoundaries: [1] } });
    let gaugeValue = 1;
    t.meter.createObservableGauge('level').addCallback((r) => r.observe(gaugeValue, attributes));

    counter.add(1, attributes);
    histogram.record(0.5, attributes);
    const first = (await t.both()).actual;
    assert.match(first, /^hits_total\{route="\/a"\} 1$/m);
    assert.match(first, /^lat_bucket\{route="\/a",le="1"\} 1$/m);
    assert.match(first, /^level\{route="\/a"\} 1$/m);

    counter.add(41, attributes);
    histogram.record(5, attributes);
    gaugeValue = 2.5;
    const { actual, expected } = await t.both();
    assert.equal(actual, expected);
    assert.match(actual, /^hits_total\{route="\/a"\} 42$/m);
    assert.match(actual, /^lat_bucket\{route="\/a",le="1"\} 1$/m);
    assert.match(actual, /^lat_bucket\{route="\/a",le="\+Inf"\} 2$/m);
    assert.match(actual, /^lat_count\{route="\/a"\} 2$/m);
    assert.match(actual, /^lat_sum\{route="\/a"\} 5.5$/m);
    assert.match(actual, /^level\{route="\/a"\} 2.5$/m);
  });

  it('renders a mutable attributes object afresh at every scrape', async () => {
    const t = setup();
    // sdk-metrics keeps this very object as the series key, so a change to it shows in the
    // next scrape of the stock serializer: it must in ours too.
    const attributes: Record<string, string> = { user: 'alice' };
    const counter = t.meter.createCounter('logins');
    counter.add(1, attributes);
    assert.match((await t.both()).actual, /^logins_total\{user="alice"\} 1$/m);
    attributes.user = 'bob';
    const { actual, expected } = await t.both();
    assert.equal(actual, expected);
    assert.match(actual, /^logins_total\{user="bob"\} 1$/m);
  });

  it('writes "# no registered metrics" and target_info when nothing was recorded', async () => {
    const t = setup();
    const { actual, expected } = await t.both();
    assert.equal(actual, expected);
    assert.ok(actual.endsWith('# no registered metrics'));
  });

  it('matches the stock serializer on hand-made collections the SDK does not produce itself', async () => {
    const { resource } = await setup().collect();
    const attributes = frozen({ a: 'x' });
    const point = <T>(value: T, attrs: Attributes = attributes) => ({
      attributes: attrs,
      startTime: [0, 0] as [number, number],
      endTime: [1, 0] as [number, number],
      value,
    });
    const descriptor = (name: string, description = '', unit = '') => ({
      name,
      description,
      unit,
      valueType: 1,
    });
    const metrics: MetricData[] = [
      {
        descriptor: descriptor('', 'empty name'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.GAUGE,
        dataPoints: [point(1)],
      },
      {
        descriptor: descriptor('bad\\name\nhere'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: [point(1), point(2, frozen({ undef: undefined, nul: null } as never))],
      },
      {
        descriptor: descriptor('with_infinity', 'boundaries ending in Infinity'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.HISTOGRAM,
        dataPoints: [
          point({ buckets: { boundaries: [1, Infinity], counts: [1, 2, 3] }, count: 3, sum: 4 }),
          point({ buckets: { boundaries: [1, 2], counts: [1, 2, 3] }, count: 6 }, {}),
        ],
      },
      {
        descriptor: descriptor('no_points', 'A family with no samples.', 'ms'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: false,
        dataPoints: [],
      },
    ];
    const rm: ResourceMetrics = {
      resource,
      scopeMetrics: [
        { scope: { name: 'a' }, metrics },
        { scope: { name: 'b' }, metrics: [] },
      ],
    };
    const serializer = new PrometheusTextSerializer();
    for (let i = 0; i < 2; i++) {
      assert.equal(serializer.serialize(rm).toString('utf8'), reference().serialize(rm));
    }
  });
});

describe('PrometheusTextSerializer: the prom-client process series', () => {
  for (const linux of [true, false]) {
    it(`come out under prom-client's names and types, no suffix added (${linux ? 'Linux' : 'elsewhere'})`, async () => {
      const t = setup();
      createPromClientMetrics(t.meter, 'svc', linux);
      const { actual, expected } = await t.both();
      assert.equal(actual, expected);
      // The per-type gauges have samples only while a libuv handle or request is active (the
      // end-to-end tests check them in a process that listens).
      const types = [...actual.matchAll(/^# TYPE (\S+) (\S+)$/gm)]
        .map((m) => `${m[1]} ${m[2]}`)
        .filter((line) => !line.startsWith('target_info ') && !line.startsWith('nodejs_active_'));
      assert.deepEqual(types, [
        'process_cpu_user_seconds_total counter',
        'process_cpu_system_seconds_total counter',
        'process_cpu_seconds_total counter',
        'process_start_time_seconds gauge',
        'process_resident_memory_bytes gauge',
        ...(linux
          ? [
              'process_virtual_memory_bytes gauge',
              'process_heap_bytes gauge',
              'process_open_fds gauge',
              'process_max_fds gauge',
            ]
          : []),
        'nodejs_version_info gauge',
      ]);
      // Every family but the per-type ones has exactly one sample, under the family's own name,
      // with `service`.
      const samples = actual.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
      const single = (n: string) => n !== 'target_info' && !n.startsWith('nodejs_active_');
      assert.deepEqual(
        samples.map((l) => l.slice(0, l.search(/[{ ]/))).filter(single),
        types.map((line) => line.split(' ')[0]).filter(single),
      );
      for (const line of samples.filter((l) => l.startsWith('nodejs_active_'))) {
        assert.match(line, /^nodejs_active_(handles|requests)\{type="\w+",service="svc"\} \d+$/);
      }
      for (const line of samples.filter((l) => !l.startsWith('target_info'))) {
        assert.match(line, /[{,]service="svc"[},]/, line);
      }
      const [major, minor, patch] = process.version.slice(1).split('.');
      assert.ok(
        actual.includes(
          `nodejs_version_info{version="${process.version}",major="${major}",minor="${minor}",patch="${patch}",service="svc"} 1\n`,
        ),
      );
    });
  }
});

describe('createPrometheusEndpoint', () => {
  it('answers GET with the exposition and HEAD with its headers only', async () => {
    const endpoint = createPrometheusEndpoint();
    const provider = new MeterProvider({ readers: [endpoint.reader] });
    provider
      .getMeter('m')
      .createCounter('hits')
      .add(2, frozen({ page: 'é' }));
    const server = createServer((req, res) => void endpoint.handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
      const get = await fetch(url);
      const body = Buffer.from(await get.arrayBuffer());
      assert.equal(get.status, 200);
      assert.equal(get.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(get.headers.get('content-length'), String(body.length));
      assert.match(body.toString('utf8'), /^hits_total\{page="é"\} 2$/m);
      const head = await fetch(url, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(body.length));
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await provider.shutdown();
    }
  });
});
