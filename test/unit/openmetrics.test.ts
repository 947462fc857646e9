import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  MeterProvider,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { encodeMetrics, MetricsMerger } from '../../src/metrics/aggregate';
import {
  DistroCounter,
  DistroHistogram,
  DistroProducer,
  EXEMPLAR_LABELS_MAX,
  EXEMPLARS,
  type Exemplar,
  exemplarCorrelationId,
} from '../../src/metrics/instruments';
import {
  createPrometheusEndpoint,
  OPENMETRICS_CONTENT_TYPE,
  prefersOpenMetrics,
} from '../../src/metrics/prometheus';
import {
  canonicalNumber,
  openMetricsUnit,
  PrometheusTextSerializer,
} from '../../src/metrics/prometheus-text';

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const SPAN = 'b7ad6b7169203331';
const TRACE2 = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN2 = '00f067aa0ba902b7';
const RESOURCE = resourceFromAttributes({ 'service.name': 'svc' });

/** The length OpenMetrics limits: label names and values of an exemplar's label set. */
function labelSetLength(line: string): number {
  const labels = /# \{([^}]*)\}/.exec(line)?.[1];
  assert.ok(labels !== undefined, `no exemplar on ${line}`);
  let n = 0;
  for (const [, name, value] of labels.matchAll(/([a-z_]+)="([^"]*)"/g)) {
    n += [...(name as string)].length + [...(value as string)].length;
  }
  return n;
}

function distro() {
  const requests = new DistroCounter({ name: 'http_requests_total', description: 'Requests.' });
  const durations = new DistroHistogram({
    name: 'http_request_duration_seconds',
    description: 'Latency.',
    unit: 's',
    boundaries: [0.01, 0.1, 1, 10],
  });
  const producer = new DistroProducer({ counters: [requests], histograms: [durations] });
  const serialize = (openMetrics: boolean) => {
    const rm = producer.collectSync().resourceMetrics as ResourceMetrics;
    return new PrometheusTextSerializer()
      .serialize({ ...rm, resource: RESOURCE }, openMetrics)
      .toString('utf8');
  };
  return { requests, durations, producer, serialize };
}

describe('Accept negotiation of /metrics', () => {
  const cases: [string | undefined, boolean][] = [
    [undefined, false],
    ['', false],
    ['*/*', false],
    ['text/plain', false],
    ['text/plain;version=0.0.4', false],
    ['application/json', false],
    ['application/openmetrics-text', true],
    ['application/openmetrics-text; version=1.0.0; charset=utf-8', true],
    ['Application/OpenMetrics-Text;Version=1.0.0', true],
    // Prometheus 2.x's default.
    [
      'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1',
      true,
    ],
    // Prometheus 3.x's default.
    [
      'application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1',
      true,
    ],
    // scrape_protocols: [PrometheusText0.0.4] only.
    ['text/plain;version=0.0.4;q=1,*/*;q=0.1', false],
    ['text/plain;q=0.9, application/openmetrics-text;q=0.5', false],
    ['application/openmetrics-text;q=0.5, text/plain;q=0.9', false],
    ['application/openmetrics-text;q=0.9, text/plain;q=0.5', true],
    ['application/openmetrics-text;q=0.5, */*;q=0.5', true],
    ['application/openmetrics-text;q=0', false],
    ['application/openmetrics-text;q=0.000, text/plain;q=0.001', false],
    ['application/openmetrics-text;q=2', false],
    ['application/openmetrics-text;q=abc', false],
    ['application/openmetrics-text;q="0.8"', true],
    // A version we do not write is not OpenMetrics 1.0.
    ['application/openmetrics-text;version=0.0.1', false],
    ['application/openmetrics-text;version=2.0.0, text/plain;q=0.1', false],
    [' application/openmetrics-text ; version=1.0.0 ; q=0.7 , text/plain ; q=0.6', true],
  ];
  for (const [accept, expected] of cases) {
    it(`${expected ? 'OpenMetrics' : 'text'} for ${JSON.stringify(accept)}`, () => {
      assert.equal(prefersOpenMetrics(accept), expected);
    });
  }

  it('serves each format with its content type, GET and HEAD alike', async () => {
    const counter = new DistroCounter({ name: 'hits_total', description: 'Hits.' });
    counter.createSeries(Object.freeze({ page: 'a' })).count = 2;
    const endpoint = createPrometheusEndpoint([
      new DistroProducer({ counters: [counter], histograms: [] }),
    ]);
    const provider = new MeterProvider({ resource: RESOURCE, readers: [endpoint.reader] });
    const server = createServer((req, res) => void endpoint.handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
      const om = await fetch(url, { headers: { accept: 'application/openmetrics-text' } });
      const omBody = await om.text();
      assert.equal(om.headers.get('content-type'), OPENMETRICS_CONTENT_TYPE);
      assert.ok(omBody.endsWith('# EOF\n'));
      assert.match(omBody, /^# TYPE hits counter$/m);
      assert.equal(om.headers.get('content-length'), String(Buffer.byteLength(omBody)));
      const head = await fetch(url, {
        method: 'HEAD',
        headers: { accept: 'application/openmetrics-text' },
      });
      assert.equal(head.headers.get('content-type'), OPENMETRICS_CONTENT_TYPE);
      assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(omBody)));
      const text = await fetch(url, { headers: { accept: 'text/plain' } });
      const textBody = await text.text();
      assert.equal(text.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      assert.match(textBody, /^# TYPE hits_total counter$/m);
      assert.doesNotMatch(textBody, /# EOF/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await provider.shutdown();
    }
  });
});

describe('OpenMetrics serialization', () => {
  it('writes counters, gauges and histograms as OpenMetrics 1.0 wants them', () => {
    const t = distro();
    const labels = Object.freeze({ method: 'GET', endpoint: '/a "b"', service: 's' });
    t.requests.createSeries(Object.freeze({ ...labels, status: '200' })).count = 5;
    const series = t.durations.createSeries(labels);
    for (const v of [0.005, 0.05, 0.05, 2, 20]) series.record(v);

    const om = t.serialize(true);
    const expected = [
      '# HELP target_info Target metadata',
      '# TYPE target_info gauge',
      'target_info{service_name="svc"} 1',
      '# HELP http_requests Requests.',
      '# TYPE http_requests counter',
      'http_requests_total{method="GET",endpoint="/a \\"b\\"",service="s",status="200"} 5',
      '# HELP http_request_duration_seconds Latency.',
      '# UNIT http_request_duration_seconds seconds',
      '# TYPE http_request_duration_seconds histogram',
      'http_request_duration_seconds_bucket{method="GET",endpoint="/a \\"b\\"",service="s",le="0.01"} 1',
      'http_request_duration_seconds_bucket{method="GET",endpoint="/a \\"b\\"",service="s",le="0.1"} 3',
      'http_request_duration_seconds_bucket{method="GET",endpoint="/a \\"b\\"",service="s",le="1.0"} 3',
      'http_request_duration_seconds_bucket{method="GET",endpoint="/a \\"b\\"",service="s",le="10.0"} 4',
      'http_request_duration_seconds_bucket{method="GET",endpoint="/a \\"b\\"",service="s",le="+Inf"} 5',
      'http_request_duration_seconds_count{method="GET",endpoint="/a \\"b\\"",service="s"} 5',
      'http_request_duration_seconds_sum{method="GET",endpoint="/a \\"b\\"",service="s"} 22.105',
      '# EOF',
      '',
    ].join('\n');
    assert.equal(om, expected);
    // No exemplar was recorded: the text format is what it was, and OpenMetrics shows none.
    assert.doesNotMatch(om, / # \{/);
    const text = t.serialize(false);
    assert.match(text, /^# TYPE http_requests_total counter$/m);
    assert.match(text, /^# UNIT http_request_duration_seconds s$/m);
    assert.match(text, /le="1"\} 3$/m);
  });

  it('names SDK counters, up-down counters, gauges and exponential histograms by family', () => {
    const serializer = new PrometheusTextSerializer();
    const attributes = Object.freeze({ k: 'v' });
    const point = <T>(value: T) => ({
      attributes,
      startTime: [0, 0] as [number, number],
      endTime: [1, 0] as [number, number],
      value,
    });
    const descriptor = (name: string, description: string, unit = '') => ({
      name,
      description,
      unit,
      valueType: 1,
    });
    const metrics: MetricData[] = [
      {
        descriptor: descriptor('jobs', 'No suffix yet.'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: [point(3)],
      },
      {
        descriptor: descriptor('queue.depth', 'Up and down.', '{item}'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: false,
        dataPoints: [point(-2)],
      },
      {
        descriptor: descriptor('memory_usage_bytes', 'Help with \\ "quotes"\nand newline.', 'By'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.GAUGE,
        dataPoints: [point(Number.NaN)],
      },
      {
        descriptor: descriptor('cpu_seconds_total', 'Unit as a word.', 's'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: [point(1.5)],
      },
      {
        descriptor: descriptor('expo', 'Exponential.'),
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.EXPONENTIAL_HISTOGRAM,
        dataPoints: [],
      },
    ];
    const om = serializer
      .serialize({ resource: RESOURCE, scopeMetrics: [{ scope: { name: 'x' }, metrics }] }, true)
      .toString('utf8');
    for (const line of [
      '# TYPE jobs counter',
      'jobs_total{k="v"} 3',
      '# TYPE queue_depth gauge',
      'queue_depth{k="v"} -2',
      '# HELP memory_usage_bytes Help with \\\\ \\"quotes\\"\\nand newline.',
      '# UNIT memory_usage_bytes bytes',
      'memory_usage_bytes{k="v"} NaN',
      '# HELP cpu_seconds Unit as a word.',
      '# UNIT cpu_seconds seconds',
      '# TYPE cpu_seconds counter',
      'cpu_seconds_total{k="v"} 1.5',
      '# TYPE expo unknown',
    ]) {
      assert.ok(om.split('\n').includes(line), `missing ${line}:\n${om}`);
    }
    // An annotation is no unit, and a unit must end the family name.
    assert.doesNotMatch(om, /# UNIT queue_depth/);
    assert.ok(om.endsWith('\n# EOF\n'));
    assert.doesNotMatch(om, /no registered metrics/);
    // The text format of the same collection keeps its own metadata.
    const text = new PrometheusTextSerializer()
      .serialize({ resource: RESOURCE, scopeMetrics: [{ scope: { name: 'x' }, metrics }] })
      .toString('utf8');
    assert.match(text, /^# TYPE jobs_total counter$/m);
    assert.match(text, /^# UNIT queue_depth \{item\}$/m);
  });

  it('writes one exemplar per bucket and per counter series: the latest, with its IDs', () => {
    const t = distro();
    const labels = Object.freeze({ method: 'GET', endpoint: '/x', service: 's' });
    const counter = t.requests.createSeries(Object.freeze({ ...labels, status: '200' }));
    const series = t.durations.createSeries(labels);
    for (const [seconds, trace, span, correlation] of [
      [0.05, TRACE, SPAN, 'order-42'],
      [0.07, TRACE2, SPAN2, TRACE2], // same bucket, later: replaces the first; ID = trace ID
      [3, TRACE, SPAN, undefined],
    ] as const) {
      series.record(seconds);
      series.recordExemplar(seconds, trace, span, correlation);
      counter.count++;
      counter.exemplar(1, trace, span, correlation);
    }
    const om = t.serialize(true);
    const lines = om.split('\n');
    const bucket = (le: string) =>
      lines.find(
        (l) => l.startsWith(`http_request_duration_seconds_bucket{`) && l.includes(`le="${le}"`),
      );
    assert.match(
      bucket('0.1') as string,
      new RegExp(
        `\\} 2 # \\{trace_id="${TRACE2}",span_id="${SPAN2}"\\} 0\\.07 \\d+(\\.\\d{1,3})?$`,
      ),
    );
    assert.match(
      bucket('10.0') as string,
      new RegExp(`\\} 3 # \\{trace_id="${TRACE}",span_id="${SPAN}"\\} 3 \\d+(\\.\\d{1,3})?$`),
    );
    for (const le of ['0.01', '1.0', '+Inf']) assert.doesNotMatch(bucket(le) as string, /#/);
    assert.doesNotMatch(
      lines.find((l) => l.startsWith('http_request_duration_seconds_count')) as string,
      /#/,
    );
    const total = lines.find((l) => l.startsWith('http_requests_total{')) as string;
    assert.match(total, new RegExp(`\\} 3 # \\{trace_id="${TRACE}",span_id="${SPAN}"\\} 1 \\d`));
    // The exemplar's timestamp is now, in seconds.
    const ts = Number(total.split(' ').at(-1));
    assert.ok(Math.abs(ts - Date.now() / 1000) < 60, `timestamp ${ts}`);
    // Counts are the recorded ones, exemplars or not.
    assert.equal(series.count, 3);
    assert.deepEqual(series.counts, [0, 2, 0, 1, 0]);
    // A later scrape shows the same exemplars, timestamps included: Prometheus stores an
    // exemplar again only when something in it changed.
    const again = t.serialize(true).split('\n');
    assert.deepEqual(
      again.filter((l) => l.includes(' # {')),
      lines.filter((l) => l.includes(' # {')),
    );
    // The text format never shows exemplars.
    const text = t.serialize(false);
    assert.doesNotMatch(text, /trace_id/);
  });

  it('keeps a correlation ID that differs from the trace ID, within the 128-character limit', () => {
    const t = distro();
    const counter = t.requests.createSeries(Object.freeze({ status: '200' }));
    const series = t.durations.createSeries(Object.freeze({ endpoint: '/x' }));
    // trace_id (8) + 32 + span_id (7) + 16 + correlation_id (14) leaves 51 for the value.
    const fits = 'c'.repeat(EXEMPLAR_LABELS_MAX - 8 - 32 - 7 - 16 - 14);
    const tooLong = `${fits}d`;
    for (const [seconds, correlationId] of [
      [0.005, fits],
      [0.05, tooLong],
      [0.5, 'short.id:1'],
    ] as const) {
      series.record(seconds);
      series.recordExemplar(seconds, TRACE, SPAN, correlationId);
    }
    counter.count++;
    counter.exemplar(1, TRACE, SPAN, tooLong);
    const lines = t.serialize(true).split('\n');
    const withExemplar = lines.filter((l) => l.includes(' # {'));
    assert.equal(withExemplar.length, 4);
    const byLe = (le: string) => withExemplar.find((l) => l.includes(`le="${le}"`)) as string;
    assert.match(byLe('0.01'), new RegExp(`,correlation_id="${fits}"\\}`));
    assert.equal(labelSetLength(byLe('0.01')), EXEMPLAR_LABELS_MAX);
    assert.doesNotMatch(byLe('0.1'), /correlation_id/);
    assert.match(byLe('1.0'), /,correlation_id="short\.id:1"\}/);
    const total = withExemplar.find((l) => l.startsWith('http_requests_total')) as string;
    assert.doesNotMatch(total, /correlation_id/);
    for (const line of withExemplar) assert.ok(labelSetLength(line) <= EXEMPLAR_LABELS_MAX, line);
  });

  it('counts code points, not UTF-16 units, for the limit', () => {
    const budget = EXEMPLAR_LABELS_MAX - 8 - 32 - 7 - 16 - 14;
    const astral = '😀'.repeat(budget); // 2 UTF-16 units each
    assert.equal(exemplarCorrelationId(TRACE, SPAN, astral), astral);
    assert.equal(exemplarCorrelationId(TRACE, SPAN, `${astral}x`), undefined);
    assert.equal(exemplarCorrelationId(TRACE, SPAN, TRACE), undefined);
    assert.equal(exemplarCorrelationId(TRACE, SPAN, ''), undefined);
    assert.equal(exemplarCorrelationId(TRACE, SPAN, undefined), undefined);
  });

  it('records no exemplar without a trace ID, and none reaches a delta (OTLP) collection', () => {
    const t = distro();
    const series = t.durations.createSeries(Object.freeze({ endpoint: '/x' }));
    const counter = t.requests.createSeries(Object.freeze({ status: '200' }));
    series.record(0.5);
    counter.count++;
    series.recordExemplar(0.5, '', '', undefined);
    counter.exemplar(1, '', '', undefined);
    assert.doesNotMatch(t.serialize(true), /# \{/);
    series.recordExemplar(0.5, TRACE, SPAN, undefined);
    const delta = new DistroProducer(
      { counters: [t.requests], histograms: [t.durations] },
      AggregationTemporality.DELTA,
      AggregationTemporality.DELTA,
    );
    const points = delta
      .collectSync()
      .resourceMetrics.scopeMetrics.flatMap((s) =>
        s.metrics.flatMap((m) => m.dataPoints as object[]),
      );
    assert.equal(points.length, 2);
    for (const p of points) assert.equal((p as { [EXEMPLARS]?: unknown })[EXEMPLARS], undefined);
    const cumulative = t.producer
      .collectSync()
      .resourceMetrics.scopeMetrics.flatMap((s) =>
        s.metrics.flatMap((m) => m.dataPoints as object[]),
      );
    const exemplars = cumulative.map((p) => (p as { [EXEMPLARS]?: unknown })[EXEMPLARS]);
    const histogramExemplars = exemplars.find(Array.isArray) as (Exemplar | undefined)[];
    assert.equal(histogramExemplars.length, 5);
    assert.equal(histogramExemplars[2]?.traceId, TRACE);
  });
});

describe('exemplars across the processes of a cluster', () => {
  it('keeps the latest exemplar of each bucket and counter series of any process', async () => {
    const labels = Object.freeze({ method: 'GET', endpoint: '/x', service: 's' });
    const status = Object.freeze({ ...labels, status: '200' });
    const primary = distro();
    const worker = distro();
    const own = {
      hist: primary.durations.createSeries(labels),
      count: primary.requests.createSeries(status),
    };
    const other = {
      hist: worker.durations.createSeries(labels),
      count: worker.requests.createSeries(status),
    };
    const record = (
      where: typeof own,
      seconds: number,
      trace: string,
      span: string,
      correlation?: string,
    ) => {
      where.hist.record(seconds);
      where.hist.recordExemplar(seconds, trace, span, correlation);
      where.count.count++;
      where.count.exemplar(1, trace, span, correlation);
    };
    const later = async () => {
      const start = performance.now();
      while (performance.now() - start < 3) await new Promise((r) => setTimeout(r, 1));
    };
    // Own (primary) exemplars come first in the merge: the latest must win either way round.
    record(other, 0.05, TRACE2, SPAN2); // 0.1 bucket, older
    record(own, 0.5, TRACE, SPAN); // 1.0 bucket, older
    await later();
    record(own, 0.06, TRACE, SPAN, 'mine'); // 0.1 bucket, newer: wins
    record(other, 0.7, TRACE2, SPAN2, 'theirs'); // 1.0 bucket, newer: wins
    record(own, 0.005, TRACE, SPAN); // 0.01 bucket: only the primary has one
    await later();
    record(other, 5, TRACE2, SPAN2); // 10.0 bucket: only the worker has one; newest on the counter

    // The worker's collection as it crosses the IPC channel: JSON.
    const wire = JSON.parse(
      JSON.stringify(
        encodeMetrics(worker.producer.collectSync().resourceMetrics as ResourceMetrics),
      ),
    );
    const rm = primary.producer.collectSync().resourceMetrics as ResourceMetrics;
    const merged = new MetricsMerger().merge({ ...rm, resource: RESOURCE }, [wire]);
    const lines = new PrometheusTextSerializer()
      .serialize(merged, true)
      .toString('utf8')
      .split('\n');
    const line = (prefix: string) => lines.find((l) => l.startsWith(prefix)) as string;
    const bucket = (le: string) =>
      line(
        `http_request_duration_seconds_bucket{method="GET",endpoint="/x",service="s",le="${le}"}`,
      );
    const exemplar = (trace: string, span: string, rest: string) =>
      new RegExp(`# \\{trace_id="${trace}",span_id="${span}"${rest}`);
    assert.match(bucket('0.01'), /\} 1 # /);
    assert.match(bucket('0.01'), exemplar(TRACE, SPAN, '\\} 0\\.005 '));
    assert.match(bucket('0.1'), /\} 3 # /);
    assert.match(bucket('0.1'), exemplar(TRACE, SPAN, ',correlation_id="mine"\\} 0\\.06 '));
    assert.match(bucket('1.0'), /\} 5 # /);
    assert.match(bucket('1.0'), exemplar(TRACE2, SPAN2, ',correlation_id="theirs"\\} 0\\.7 '));
    assert.match(bucket('10.0'), exemplar(TRACE2, SPAN2, '\\} 5 '));
    assert.doesNotMatch(bucket('+Inf'), /#/);
    const total = line('http_requests_total{');
    assert.match(total, /\} 6 # /);
    assert.match(total, exemplar(TRACE2, SPAN2, '\\} 1 '));
    // Counts are the sums, exemplars or not.
    assert.match(line('http_request_duration_seconds_count{'), /\} 6$/);

    // The retired workers' sum keeps them too, and a merge without exemplars has none.
    const summed = new MetricsMerger().sum([wire]);
    assert.deepEqual(JSON.parse(JSON.stringify(summed)), wire);
    const plain = distro();
    plain.durations.createSeries(labels).record(0.5);
    const none = new MetricsMerger().merge(
      { ...(plain.producer.collectSync().resourceMetrics as ResourceMetrics), resource: RESOURCE },
      [],
    );
    assert.doesNotMatch(new PrometheusTextSerializer().serialize(none, true).toString(), /# \{/);
  });
});

describe('OpenMetrics helpers', () => {
  it('renders le values as canonical numbers', () => {
    const cases: [number, string][] = [
      [0, '0.0'],
      [0.001, '0.001'],
      [0.005, '0.005'],
      [0.01, '0.01'],
      [0.95, '0.95'],
      [1, '1.0'],
      [1.7, '1.7'],
      [2.5, '2.5'],
      [10, '10.0'],
      [1e-10, '1e-10'],
      [1e-5, '1e-05'],
      [0.0001, '0.0001'],
      [100000, '100000.0'],
      [1e6, '1e+06'],
      [1e23, '1e+23'],
      [1.1e23, '1.1e+23'],
      [1234567, '1.234567e+06'],
      [-3, '-3.0'],
      [Number.POSITIVE_INFINITY, '+Inf'],
    ];
    for (const [value, expected] of cases)
      assert.equal(canonicalNumber(value), expected, `${value}`);
  });

  it('gives a UNIT only when it ends the family name', () => {
    const cases: [string, string, string | undefined][] = [
      ['s', 'http_request_duration_seconds', 'seconds'],
      ['s', 'http_request_duration', undefined],
      ['By', 'memory_usage_bytes', 'bytes'],
      ['bytes', 'memory_usage_bytes', 'bytes'],
      ['1', 'nodejs_eventloop_utilization_ratio', 'ratio'],
      ['{item}', 'queue_depth', undefined],
      ['', 'x', undefined],
      ['seconds', 'seconds', undefined],
    ];
    for (const [unit, family, expected] of cases) {
      assert.equal(openMetricsUnit(unit, family), expected, `${unit} ${family}`);
    }
  });
});
