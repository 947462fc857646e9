/**
 * `/metrics` in the Prometheus text format, served by the management server rather than the
 * exporter's own HTTP server (one port for metrics and health, one place that decides what is
 * traced). Scope labels are dropped: SPEC §3 series carry exactly their documented labels.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import type { IMetricReader } from '@opentelemetry/sdk-metrics';

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export function createPrometheusEndpoint(): {
  reader: IMetricReader;
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
} {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const serializer = new PrometheusSerializer('', false, undefined, false, true);
  return {
    reader: exporter,
    async handler(req, res) {
      const { resourceMetrics } = await exporter.collect();
      const body = serializer.serialize(resourceMetrics);
      res.writeHead(200, {
        'content-type': CONTENT_TYPE,
        'content-length': Buffer.byteLength(body),
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
  };
}
