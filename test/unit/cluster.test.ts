import assert from 'node:assert/strict';
import { type Attributes, ValueType } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import {
  decideRole,
  PRIMARY_MARK,
  pm2Context,
  type WireMetric,
  withFinal,
} from '../../src/cluster';
import { encodeMetrics, gaugeMerge, MetricsMerger } from '../../src/metrics/aggregate';
import { PrometheusTextSerializer } from '../../src/metrics/prometheus-text';

const T: [number, number] = [0, 0];

function descriptor(name: string) {
  return { name, description: `${name} help`, unit: '', valueType: ValueType.DOUBLE };
}

function collection(
  requests: number,
  buckets: number[],
  active: number,
  p99: number,
  health: number,
): ResourceMetrics {
  const service = { service: 's' };
  const route: Attributes = { method: 'GET', endpoint: '/x', status: '200', service: 's' };
  const metrics: MetricData[] = [
    {
      descriptor: descriptor('http_requests_total'),
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      dataPoints: [{ startTime: T, endTime: T, attributes: { ...route }, value: requests }],
    },
    {
      descriptor: descriptor('http_request_duration_seconds'),
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: [
        {
          startTime: T,
          endTime: T,
          // Another key order: still the same series.
          attributes: { service: 's', endpoint: '/x', method: 'GET' },
          value: {
            count: buckets.reduce((a, b) => a + b, 0),
            sum: 1,
            min: 0.001,
            max: 2,
            buckets: { boundaries: [0.1, 1], counts: buckets },
          },
        },
      ],
    },
    {
      descriptor: descriptor('http_requests_active'),
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.GAUGE,
      dataPoints: [{ startTime: T, endTime: T, attributes: service, value: active }],
    },
    {
      descriptor: descriptor('nodejs_eventloop_delay_p99_seconds'),
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.GAUGE,
      dataPoints: [{ startTime: T, endTime: T, attributes: service, value: p99 }],
    },
    {
      descriptor: descriptor('health_check_status'),
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.GAUGE,
      dataPoints: [
        {
          startTime: T,
          endTime: T,
          attributes: { service: 's', check: 'database', critical: 'true' },
          value: health,
        },
      ],
    },
  ];
  return {
    resource: resourceFromAttributes({ 'service.name': 's' }),
    scopeMetrics: [{ scope: { name: 'x' }, metrics }],
  };
}

describe('cluster: merging the collections of several processes', () => {
  it('adds counters, histograms bucket by bucket and amounts; levels take the worst', () => {
    const primary = collection(0, [0, 0, 0], 0, 0.01, 1);
    const workers = [
      encodeMetrics(collection(600, [500, 90, 10], 3, 0.02, 1)),
      // Through JSON, as over the IPC channel.
      JSON.parse(JSON.stringify(encodeMetrics(collection(400, [300, 99, 1], 2, 0.5, 0)))),
    ];
    const text = new PrometheusTextSerializer()
      .serialize(new MetricsMerger().merge(primary, workers))
      .toString();
    const line = (prefix: string) =>
      text.split('\n').find((l) => l.startsWith(prefix)) ?? `missing ${prefix}`;
    assert.equal(
      line('http_requests_total{'),
      'http_requests_total{method="GET",endpoint="/x",status="200",service="s"} 1000',
    );
    assert.match(line('http_request_duration_seconds_count'), / 1000$/);
    assert.match(line('http_request_duration_seconds_sum'), / 3$/);
    assert.match(
      line('http_request_duration_seconds_bucket{service="s",endpoint="/x",method="GET",le="0.1"}'),
      / 800$/,
    );
    assert.match(
      line('http_request_duration_seconds_bucket{service="s",endpoint="/x",method="GET",le="1"}'),
      / 989$/,
    );
    assert.match(
      line(
        'http_request_duration_seconds_bucket{service="s",endpoint="/x",method="GET",le="+Inf"}',
      ),
      / 1000$/,
    );
    assert.equal(line('http_requests_active{'), 'http_requests_active{service="s"} 5');
    assert.match(line('nodejs_eventloop_delay_p99_seconds{'), / 0\.5$/);
    assert.match(line('health_check_status{'), / 0$/);
    assert.equal(text.match(/^# TYPE http_requests_total counter$/gm)?.length, 1);
  });

  it('adds exited workers up into one collection that keeps the totals', () => {
    const merger = new MetricsMerger();
    const a = encodeMetrics(collection(600, [500, 90, 10], 3, 0.02, 1));
    const b = encodeMetrics(collection(400, [300, 99, 1], 2, 0.5, 0));
    const summed = merger.sum([a, b]);
    assert.equal(summed.length, a.length);
    const requests = summed.find((m) => m.n === 'http_requests_total');
    assert.equal(requests?.p[0]?.[1], 1000);
    const histogram = summed.find((m) => m.n === 'http_request_duration_seconds')?.p[0]?.[1];
    assert.deepEqual(typeof histogram === 'object' ? histogram.c : undefined, [800, 189, 11]);
  });

  it('gauge rules', () => {
    assert.equal(gaugeMerge('memory_usage_bytes'), 'sum');
    assert.equal(gaugeMerge('nodejs_eventloop_utilization_ratio'), 'max');
    assert.equal(gaugeMerge('health_check_status'), 'min');
    // The latest start of any process, so that a worker's restart changes the series.
    assert.equal(gaugeMerge('process_start_time_seconds'), 'max');
    assert.equal(gaugeMerge('nodejs_version_info'), 'max');
    assert.equal(gaugeMerge('process_open_fds'), 'sum');
  });

  it('the same label set object for a series at every scrape (serializer caches hold)', () => {
    const merger = new MetricsMerger();
    const attrs = (r: ResourceMetrics) =>
      r.scopeMetrics[0]?.metrics[0]?.dataPoints[0]?.attributes as Attributes;
    const a = attrs(merger.merge(collection(1, [1, 0, 0], 0, 0, 1), []));
    const b = attrs(merger.merge(collection(2, [1, 1, 0], 0, 0, 1), []));
    assert.equal(a, b);
    assert.ok(Object.isFrozen(a));
  });
});

describe("cluster: a worker's final series", () => {
  const metric = (n: string, value: number): WireMetric => ({
    n,
    d: '',
    u: '',
    t: 3,
    m: true,
    p: [[{ status: '200' }, value]],
  });

  it('replace the same series of the last scrape and keep the others', () => {
    const last = [metric('http_requests_total', 40), metric('otel_sdk_spans_total', 7)];
    assert.deepEqual(withFinal(last, [metric('http_requests_total', 61)]), [
      metric('otel_sdk_spans_total', 7),
      metric('http_requests_total', 61),
    ]);
    assert.deepEqual(withFinal(undefined, [metric('http_requests_total', 3)]), [
      metric('http_requests_total', 3),
    ]);
  });
});

describe('cluster: which role a process has', () => {
  it('a worker of a distro primary aggregates; other workers and PM2 instances get a port each', () => {
    assert.deepEqual(decideRole({}, false, 1), { kind: 'process' });
    assert.deepEqual(decideRole({ [PRIMARY_MARK]: '42', NODE_UNIQUE_ID: '3' }, true, 42), {
      kind: 'cluster-worker',
    });
    // Worker ids are never reused: the lowest free port, not the id, else a respawned worker
    // moves to a new port every time.
    assert.deepEqual(decideRole({ [PRIMARY_MARK]: '41', NODE_UNIQUE_ID: '3' }, true, 42), {
      kind: 'instance',
      offset: 0,
      manager: 'cluster',
      scan: true,
    });
    assert.deepEqual(decideRole({ NODE_UNIQUE_ID: '7', NODE_APP_INSTANCE: '2' }, true, 42), {
      kind: 'instance',
      offset: 2,
      manager: 'cluster',
    });
    assert.deepEqual(decideRole({}, false, 1, '/usr/lib/node_modules/pm2/lib/Daemon.js'), {
      kind: 'manager',
    });
    assert.deepEqual(decideRole({}, false, 1, '/usr/lib/node_modules/pm2/bin/pm2-runtime'), {
      kind: 'manager',
    });
    assert.deepEqual(decideRole({}, false, 1, '/srv/pm2/server.js'), { kind: 'process' });
    const pm2Env = JSON.stringify({ NODE_APP_INSTANCE: 3, pm_exec_path: '/srv/app.js' });
    assert.deepEqual(decideRole({ pm2_env: pm2Env, NODE_UNIQUE_ID: '1' }, true, 7), {
      kind: 'instance',
      offset: 3,
      manager: 'pm2',
    });
  });

  it("reads the app's settings from PM2's environment before PM2 sets them", () => {
    const pm2 = pm2Context({
      PATH: '/bin',
      pm2_env: JSON.stringify({
        DATALAB_METRICS_PORT: '9500',
        DATALAB_MANAGEMENT_TOKEN: 'abcdefghijklmnopqrstuvwxyz',
        OTEL_SERVICE_NAME: 'orders',
        env: { nested: 'ignored' },
        instance_var: 'INSTANCE_ID',
        INSTANCE_ID: 2,
        pm_exec_path: '/srv/orders/server.js',
        pm_cwd: '/srv/orders',
      }),
    });
    assert.equal(pm2?.env.DATALAB_METRICS_PORT, '9500');
    assert.equal(pm2?.env.OTEL_SERVICE_NAME, 'orders');
    assert.equal(pm2?.env.PATH, '/bin');
    assert.equal(pm2?.env.env, undefined);
    assert.equal(pm2?.instance, 2);
    assert.equal(pm2?.mainScript, '/srv/orders/server.js');
    assert.equal(pm2?.cwd, '/srv/orders');
    // Fork mode: the settings are in the environment already.
    assert.equal(
      pm2Context({ pm_exec_path: '/a.js', pm_id: '0', NODE_APP_INSTANCE: '1' })?.instance,
      1,
    );
    assert.equal(pm2Context({ PATH: '/bin' }), undefined);
    assert.equal(pm2Context({ pm2_env: 'not json' }), undefined);
  });
});
