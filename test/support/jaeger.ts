/**
 * A real Jaeger v2 (`npm run jaeger:build` into .datalab/jaeger/) for the tests: in-memory
 * storage, its OTLP/gRPC receiver and query API on free local ports, no other listener, and no
 * telemetry of its own sent anywhere. Stopped by PID.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, ROOT } from './app';
import { startConfigProcess } from './config-process';
import { IN_CI } from './prometheus-server';
import { skipBecause } from './skip';

export const JAEGER = join(ROOT, '.datalab', 'jaeger', 'jaeger');

/** The built binary, or the one DATALAB_JAEGER names; missing: skipped, or failed in CI. */
export function requireJaeger(ctx: Mocha.Context): string {
  const chosen = process.env.DATALAB_JAEGER;
  if (chosen) {
    if (!existsSync(chosen)) throw new Error(`DATALAB_JAEGER=${chosen} does not exist`);
    return chosen;
  }
  if (existsSync(JAEGER)) return JAEGER;
  const reason = `${JAEGER} is not built: run \`npm run jaeger:build\` (needs Go and the Go module proxy; CI builds it)`;
  if (IN_CI) throw new Error(`${reason}: required in CI`);
  skipBecause(ctx, reason);
}

export interface JaegerProcess {
  readonly pid: number;
  /** host:port of its OTLP/gRPC receiver. */
  readonly otlpGrpc: string;
  /** Base URL of the query API (and of `datalab-otel trace --jaeger`). */
  readonly queryUrl: string;
  readonly output: string[];
  stop(): Promise<void>;
}

/** The all-in-one's pipeline, cut down to what the tests use. */
function config(ports: { otlp: number; query: number; queryGrpc: number; health: number }) {
  return {
    service: {
      extensions: ['jaeger_storage', 'jaeger_query', 'healthcheckv2'],
      pipelines: {
        traces: { receivers: ['otlp'], processors: [], exporters: ['jaeger_storage_exporter'] },
      },
      // Its own metrics off (the default would bind :8888); its own traces are off by default
      // (jaeger_query's enable_tracing).
      telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
    },
    extensions: {
      jaeger_query: {
        storage: { traces: 'memstore' },
        http: { endpoint: `127.0.0.1:${ports.query}` },
        grpc: { endpoint: `127.0.0.1:${ports.queryGrpc}` },
      },
      jaeger_storage: { backends: { memstore: { memory: { max_traces: 100_000 } } } },
      healthcheckv2: { use_v2: true, http: { endpoint: `127.0.0.1:${ports.health}` } },
    },
    receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${ports.otlp}` } } } },
    exporters: { jaeger_storage_exporter: { trace_storage: 'memstore' } },
  };
}

export async function startJaeger(binary: string): Promise<JaegerProcess> {
  const [otlp, query, queryGrpc, health] = (await Promise.all(
    Array.from({ length: 4 }, () => freePort()),
  )) as [number, number, number, number];
  const queryUrl = `http://127.0.0.1:${query}`;
  const { pid, output, stop } = await startConfigProcess({
    name: 'jaeger',
    binary,
    config: config({ otlp, query, queryGrpc, health }),
    // Nothing of the test run's OTEL_* settings may reach Jaeger's own SDK.
    env: Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')),
    ) as NodeJS.ProcessEnv,
    ready: async () => (await fetch(`${queryUrl}/api/v3/services`)).status === 200,
    timeoutMs: 60_000,
    pollMs: 200,
  });
  return { pid, otlpGrpc: `127.0.0.1:${otlp}`, queryUrl, output, stop };
}

/** One trace from Jaeger's API v3 as OTLP JSON resourceSpans, or [] when it does not have it. */
export async function jaegerTrace(
  queryUrl: string,
  traceId: string,
): Promise<{ service: string; spanId: string; parentSpanId: string; traceId: string }[]> {
  const res = await fetch(`${queryUrl}/api/v3/traces/${traceId}`);
  if (res.status === 404) return [];
  if (!res.ok) throw new Error(`jaeger /api/v3/traces/${traceId} answered ${res.status}`);
  const body = (await res.json()) as {
    result?: {
      resourceSpans?: {
        resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
        scopeSpans?: { spans?: { traceId: string; spanId: string; parentSpanId?: string }[] }[];
      }[];
    };
  };
  const out: { service: string; spanId: string; parentSpanId: string; traceId: string }[] = [];
  for (const rs of body.result?.resourceSpans ?? []) {
    const service =
      rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? '',
          traceId: s.traceId,
        });
      }
    }
  }
  return out;
}
