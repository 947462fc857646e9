/**
 * `/metrics` in the Prometheus text format, served by the management server rather than the
 * exporter's own HTTP server (one port for metrics and health, one place that decides what is
 * traced). Scope labels are dropped: SPEC §3 series carry exactly their documented labels.
 *
 * In a `cluster` primary the body is the sum of the primary's and its workers' series (see
 * metrics/aggregate.ts); a worker of such a primary serves nothing itself and hands its
 * collection to the primary over the cluster IPC channel.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { IMetricReader, MetricProducer, ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { collectWorkers, hasWorkers, processRole, serveCollections } from '../cluster';
import { encodeMetrics, MetricsMerger } from './aggregate';
import { PrometheusTextSerializer } from './prometheus-text';

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A producer that can also collect without a promise (DistroProducer): used at exit. */
interface SyncProducer extends MetricProducer {
  collectSync(): { resourceMetrics: Pick<ResourceMetrics, 'scopeMetrics'> };
}

export function createPrometheusEndpoint(producers: MetricProducer[] = []): {
  reader: IMetricReader;
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
} {
  const exporter = new PrometheusExporter({
    preventServerStart: true,
    withoutScopeInfo: true,
    metricProducers: producers,
  });
  // Keeps the rendered label sets between scrapes: one instance for the process.
  const serializer = new PrometheusTextSerializer();
  const role = processRole();
  if (role.kind === 'cluster-worker') {
    const sync = producers.flatMap((p) =>
      typeof (p as Partial<SyncProducer>).collectSync === 'function' ? [p as SyncProducer] : [],
    );
    serveCollections(
      async () => encodeMetrics((await exporter.collect()).resourceMetrics),
      () =>
        encodeMetrics({
          resource: undefined as never,
          scopeMetrics: sync.flatMap((p) => p.collectSync().resourceMetrics.scopeMetrics),
        }),
    );
  }
  const merger = role.kind === 'process' ? new MetricsMerger() : undefined;
  return {
    reader: exporter,
    async handler(req, res) {
      const { resourceMetrics } = await exporter.collect();
      // Outside a cluster primary with workers, the process's own collection as it is.
      const body =
        merger !== undefined && hasWorkers()
          ? serializer.serialize(merger.merge(resourceMetrics, await collectWorkers()))
          : serializer.serialize(resourceMetrics);
      res.writeHead(200, {
        'content-type': CONTENT_TYPE,
        'content-length': body.length,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
  };
}
