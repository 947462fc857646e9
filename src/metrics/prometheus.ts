/**
 * `/metrics` in the Prometheus text format, served by the management server rather than the
 * exporter's own HTTP server (one port for metrics and health, one place that decides what is
 * traced). Scope labels are dropped: SPEC §3 series carry exactly their documented labels.
 *
 * In a `cluster` primary the body is the sum of the primary's and its workers' series (see
 * metrics/aggregate.ts); a worker of such a primary serves nothing itself and hands its
 * collection to the primary over the cluster IPC channel.
 *
 * A scraper that asks for OpenMetrics 1.0 in its Accept header (Prometheus does, by default)
 * gets it, with the exemplars of the distro's request counter and latency buckets (in a cluster
 * primary, the latest of any process: metrics/aggregate.ts); any other client gets the text
 * format, unchanged.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type IMetricReader,
  type MetricProducer,
  MetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { collectWorkers, hasWorkers, processRole, serveCollections } from '../cluster';
import { warnOnce } from '../warnings';
import type { MetricsMerger } from './aggregate';
import type { PrometheusTextSerializer } from './prometheus-text';

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const OPENMETRICS_CONTENT_TYPE =
  'application/openmetrics-text; version=1.0.0; charset=utf-8';

// Whether an Accept header prefers OpenMetrics 1.0 text to the text format, as Prometheus
// sends it (`application/openmetrics-text;version=1.0.0;q=0.5,…,text/plain;version=0.0.4;q=0.2,
// */*;q=0.1`): the highest q wins, OpenMetrics on a tie since a client that names it asked for
// it. Only `application/openmetrics-text` without a version or with version 1.0.0 counts;
// `text/plain`, `text/*` and `*/*` stand for the text format. No header, or one naming neither,
// gives the text format.
export function prefersOpenMetrics(accept: string | undefined): boolean {
  if (accept === undefined || accept === '') return false;
  let openMetrics = 0;
  let text = 0;
  for (const range of accept.split(',')) {
    const parts = range.split(';');
    const type = (parts[0] as string).trim().toLowerCase();
    const isOpenMetrics = type === 'application/openmetrics-text';
    if (!isOpenMetrics && type !== 'text/plain' && type !== 'text/*' && type !== '*/*') continue;
    let q = 1;
    let version: string | undefined;
    for (let i = 1; i < parts.length; i++) {
      const param = parts[i] as string;
      const eq = param.indexOf('=');
      if (eq === -1) continue;
      const key = param.slice(0, eq).trim().toLowerCase();
      const value = param
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
      if (key === 'q') q = qValue(value);
      else if (key === 'version') version = value;
    }
    if (isOpenMetrics) {
      if (version === undefined || version === '1.0.0') openMetrics = Math.max(openMetrics, q);
    } else {
      text = Math.max(text, q);
    }
  }
  return openMetrics > 0 && openMetrics >= text;
}

/** RFC 9110 qvalue: 0 to 1, up to three decimals; anything else makes the range unacceptable. */
function qValue(text: string): number {
  if (!/^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(text)) return 0;
  return Number(text);
}

/** A producer that can also collect without a promise (DistroProducer): used at exit. */
interface SyncProducer extends MetricProducer {
  collectSync(): { resourceMetrics: Pick<ResourceMetrics, 'scopeMetrics'> };
}

/**
 * A reader that collects when asked, as exporter-prometheus's PrometheusExporter does with
 * `preventServerStart` (cumulative, default aggregations, the same component type for the SDK's
 * own metrics) without loading that package and its serializer at start-up.
 */
class PullMetricReader extends MetricReader {
  constructor(metricProducers: MetricProducer[]) {
    super({ metricProducers, otelComponentType: 'prometheus_http_text_metric_exporter' });
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

// Aggregation across cluster workers and the serializer are needed at the first scrape, not
// before: loaded then. Should that fail, the scrape answers 500 and the cause is reported once.
function load<T>(name: string, get: () => T): T {
  try {
    return get();
  } catch (err) {
    warnOnce(
      'DLOTEL_INTERNAL_ERROR',
      `metrics-load-${name}`,
      `/metrics could not load ${name} (${err instanceof Error ? err.message : String(err)}); the scrape failed`,
    );
    throw err;
  }
}
const aggregate = () =>
  load('aggregate', () => require('./aggregate') as typeof import('./aggregate'));

export function createPrometheusEndpoint(producers: MetricProducer[] = []): {
  reader: IMetricReader;
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
} {
  const exporter = new PullMetricReader(producers);
  // Keeps the rendered label sets between scrapes: one instance for the process.
  let serializer: PrometheusTextSerializer | undefined;
  const role = processRole();
  if (role.kind === 'cluster-worker') {
    const sync = producers.flatMap((p) =>
      typeof (p as Partial<SyncProducer>).collectSync === 'function' ? [p as SyncProducer] : [],
    );
    serveCollections(
      async () => aggregate().encodeMetrics((await exporter.collect()).resourceMetrics),
      () =>
        aggregate().encodeMetrics({
          resource: undefined as never,
          scopeMetrics: sync.flatMap((p) => p.collectSync().resourceMetrics.scopeMetrics),
        }),
    );
  }
  const merges = role.kind === 'process';
  let merger: MetricsMerger | undefined;
  return {
    reader: exporter,
    async handler(req, res) {
      serializer ??= load('prometheus-text', () => {
        const text = require('./prometheus-text') as typeof import('./prometheus-text');
        return new text.PrometheusTextSerializer();
      });
      if (merges) merger ??= new (aggregate().MetricsMerger)();
      const openMetrics = prefersOpenMetrics(req.headers.accept);
      const { resourceMetrics } = await exporter.collect();
      // Outside a cluster primary with workers, the process's own collection as it is.
      const body =
        merger !== undefined && hasWorkers()
          ? serializer.serialize(merger.merge(resourceMetrics, await collectWorkers()), openMetrics)
          : serializer.serialize(resourceMetrics, openMetrics);
      res.writeHead(200, {
        'content-type': openMetrics ? OPENMETRICS_CONTENT_TYPE : CONTENT_TYPE,
        'content-length': body.length,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
  };
}
