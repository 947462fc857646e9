/**
 * Run by exit-flush.ts with `spawnSync` while the application's process is exiting: reads the
 * spans and series left over (JSON on stdin) and exports them over OTLP with the exporters and
 * the OTEL_* configuration the application's process uses. Exit status 0 when everything was
 * accepted; 1 and the reason on stderr otherwise.
 */
import { type ExportResult, ExportResultCode, TraceState } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { type ExitPayload, fromWire } from './exit-flush';
import { createOtlpMetricExporter, createOtlpTraceExporter } from './exporters';

function exported(run: (done: (result: ExportResult) => void) => void): Promise<void> {
  return new Promise((resolve, reject) =>
    run((result) =>
      result.code === ExportResultCode.SUCCESS
        ? resolve()
        : reject(result.error ?? new Error('export failed')),
    ),
  );
}

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ExitPayload;
  const resource = resourceFromAttributes(payload.resource);
  const work: Promise<void>[] = [];
  if (payload.spans.length > 0) {
    const exporter = createOtlpTraceExporter(payload.protocol.traces);
    const spans = payload.spans.map((s) => fromWire(s, resource, (t) => new TraceState(t)));
    work.push(exported((done) => exporter.export(spans, done)));
  }
  if (payload.scopeMetrics.length > 0) {
    // The series arrive collected, their temporality fixed: the exporter only encodes them.
    const exporter = createOtlpMetricExporter(payload.protocol.metrics, 'cumulative');
    work.push(
      exported((done) => exporter.export({ resource, scopeMetrics: payload.scopeMetrics }, done)),
    );
  }
  const results = await Promise.allSettled(work);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    const reason = (failed as PromiseRejectedResult).reason;
    process.stderr.write(reason instanceof Error ? reason.message : String(reason));
    process.exit(1);
  }
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
