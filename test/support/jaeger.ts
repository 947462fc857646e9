/**
 * A real Jaeger v2 (`npm run jaeger:build` into .datalab/jaeger/) for the tests: in-memory
 * storage, its OTLP/gRPC receiver and query API on free local ports, no other listener, and no
 * telemetry of its own sent anywhere. Stopped by PID.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ROOT } from './app';
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

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

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
  const dir = mkdtempSync(join(tmpdir(), 'datalab-jaeger-'));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify(config({ otlp, query, queryGrpc, health }), null, 1));
  const child = spawn(binary, [`--config=${configFile}`], {
    // Nothing of the test run's OTEL_* settings may reach Jaeger's own SDK.
    env: Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')),
    ) as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const output: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (d: string) => output.push(d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => output.push(d));
  const exited = new Promise<void>((done) =>
    child.once('exit', () => {
      live.delete(child);
      done();
    }),
  );
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const queryUrl = `http://127.0.0.1:${query}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`jaeger exited (${child.exitCode}):\n${output.join('')}`);
    }
    const status = await fetch(`${queryUrl}/api/v3/services`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`jaeger's query API never answered:\n${output.join('')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { pid: child.pid as number, otlpGrpc: `127.0.0.1:${otlp}`, queryUrl, output, stop };
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
