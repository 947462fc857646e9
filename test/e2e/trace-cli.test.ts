/**
 * `datalab-otel trace` on real telemetry: the two example services under the preload write their
 * spans to the embedded local trace store; the CLI finds a request by correlation ID or trace ID
 * and prints it as one tree across both services. Plus the file store's rotation and damage
 * handling, Jaeger/Tempo sources (servers speaking their documented formats), config and doctor.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { FileSpanExporter } from '../../src/traces/file-exporter';
import { type AppProcess, freePort, ROOT, startApp } from '../support/app';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Runs the CLI as a user would. Asynchronous: the backends it queries live in this process. */
function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      err += c;
    });
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

/** Indentation depth of the tree line for `service` whose text matches `pattern`. */
function depthOf(tree: string, service: string, pattern: RegExp): number {
  const line = tree
    .split('\n')
    .find((l) => l.trimStart().startsWith(`${service}  `) && pattern.test(l));
  assert.ok(line, `no line for ${service} ${pattern} in:\n${tree}`);
  return (line.length - line.trimStart().length) / 2;
}

describe('datalab-otel trace', () => {
  let dir: string;
  let gateway: AppProcess;
  let data: AppProcess;
  let correlationId: string;
  let traceId: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'datalab-cli-'));
    const common = { DATALAB_TRACES_DIR: join(dir, 'traces'), OTEL_BSP_SCHEDULE_DELAY: '100' };
    data = await startApp({
      fixture: '../../examples/data-service.mjs',
      env: { ...common, OTEL_SERVICE_NAME: 'data-service', PORT: '0' },
    });
    gateway = await startApp({
      fixture: '../../examples/api-gateway.mjs',
      env: {
        ...common,
        OTEL_SERVICE_NAME: 'api-gateway',
        PORT: '0',
        DATA_SERVICE_URL: data.url(''),
      },
    });
    correlationId = `ticket-${randomBytes(4).toString('hex')}`;
    const order = `o${randomBytes(4).toString('hex')}`;
    const res = await fetch(gateway.url(`/api/orders/${order}`), {
      headers: { 'x-correlation-id': correlationId },
    });
    assert.equal(res.status, 200);
    await res.text();
    traceId = (res.headers.get('traceresponse') ?? '').split('-')[1] as string;
    // Wait for both services' spans of the request in the local store.
    const deadline = Date.now() + 10_000;
    for (;;) {
      let text = '';
      try {
        text = readdirSync(join(dir, 'traces'))
          .map((f) => readFileSync(join(dir, 'traces', f), 'utf8'))
          .join('');
      } catch {
        // Not written yet.
      }
      const services = ['api-gateway', 'data-service'].filter((s) => text.includes(`"${s}"`));
      if ((services.length === 2 && text.includes('"pg.query')) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    writeFileSync(join(dir, 'gateway.log'), gateway.stdout.join('\n'));
    writeFileSync(join(dir, 'data.log'), data.stdout.join('\n'));
  });
  after(async () => {
    await Promise.all([gateway?.stop(), data?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  for (const which of ['correlation ID', 'trace ID'] as const) {
    it(`finds the request by ${which}: one tree across both services, correctly nested`, async () => {
      const id = which === 'trace ID' ? traceId : correlationId;
      const { code, out, err } = await cli(['trace', id, '--file', join(dir, 'traces')]);
      assert.equal(code, 0, err);
      const headers = out.split('\n').filter((l) => l.startsWith('trace '));
      assert.equal(headers.length, 1, 'one trace');
      assert.match(headers[0] as string, new RegExp(`^trace ${traceId} .*2 services \\(`));
      const gatewayServer = depthOf(out, 'api-gateway', /GET \/api\/orders\/:id /);
      const outbound = depthOf(out, 'api-gateway', /url\.path=\/orders\//);
      const dataServer = depthOf(out, 'data-service', /GET \/orders\/:id /);
      const query = depthOf(out, 'data-service', /pg\.query:SELECT .*db\.query\.text=SELECT \$1/);
      const redis = depthOf(out, 'data-service', /db\.system\.name=redis db\.operation\.name=get/);
      assert.equal(gatewayServer, 1);
      assert.ok(outbound > gatewayServer, 'the fetch is under the gateway request');
      assert.equal(dataServer, outbound + 1, "data-service's request is the fetch's child");
      assert.ok(query > dataServer && redis > dataServer, 'pg and Redis under data-service');
    });
  }

  it('--json prints the spans as OTLP JSON', async () => {
    const { code, out } = await cli([
      'trace',
      correlationId,
      '--file',
      join(dir, 'traces'),
      '--json',
    ]);
    assert.equal(code, 0);
    const data = JSON.parse(out) as {
      resourceSpans: {
        resource: { attributes: { key: string }[] };
        scopeSpans: { spans: { traceId: string }[] }[];
      }[];
    };
    const spans = data.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
    assert.ok(spans.length >= 6);
    assert.ok(spans.every((s) => s.traceId === traceId));
  });

  it('--logs adds the log lines of both services for that request, in time order', async () => {
    const { code, out } = await cli([
      'trace',
      correlationId,
      '--file',
      join(dir, 'traces'),
      '--logs',
      join(dir, 'gateway.log'),
      '--logs',
      join(dir, 'data.log'),
    ]);
    assert.equal(code, 0);
    const logPart = out.split('\nlog lines')[1] ?? '';
    const lines = logPart
      .split('\n')
      .filter((l) => l.trim().startsWith('{'))
      .map((l) => JSON.parse(l) as { service: string; correlation_id: string });
    assert.deepEqual(
      lines.map((l) => l.service),
      ['api-gateway', 'data-service', 'data-service'].slice(0, lines.length),
    );
    assert.ok(lines.length >= 2);
    assert.ok(lines.every((l) => l.correlation_id === correlationId));
  });

  it('an unknown ID: a clear message and exit code 1', async () => {
    const { code, out, err } = await cli(['trace', 'no-such-id', '--file', join(dir, 'traces')]);
    assert.equal(code, 1);
    assert.equal(out, '');
    assert.match(err, /no trace found for "no-such-id"/);
  });

  it('skips a truncated last line and a corrupt line with one warning that counts them', async () => {
    const damaged = join(dir, 'damaged');
    rmSync(damaged, { recursive: true, force: true });
    const src = join(dir, 'traces');
    const good = readdirSync(src)
      .map((f) => readFileSync(join(src, f), 'utf8'))
      .join('');
    const broken = `${good}{"resourceSpans":[{"corrupt ${traceId}\n${good.split('\n')[0]?.slice(0, 200)}${traceId}`;
    rmSync(damaged, { force: true, recursive: true });
    writeFileSync(join(dir, 'damaged.jsonl'), broken);
    const { code, out, err } = await cli(['trace', traceId, '--file', join(dir, 'damaged.jsonl')]);
    assert.equal(code, 0, err);
    assert.match(out, new RegExp(`^trace ${traceId}`, 'm'));
    const warnings = err.split('\n').filter((l) => l.startsWith('warning'));
    assert.deepEqual(warnings, ['warning: skipped 2 unreadable lines (truncated or corrupt)']);
  });
});

describe('local trace store rotation', () => {
  it('keeps the directory under its cap while writing past it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'datalab-rotate-'));
    const cap = 64 * 1024;
    const exporter = new FileSpanExporter({ dir, maxTotalBytes: cap, name: 'rotation' });
    const memory = new InMemorySpanExporter();
    const provider = new TracerProvider({
      spanProcessors: [new SimpleSpanProcessor({ exporter: memory })],
    });
    const tracer = provider.getTracer('test');
    let last = '';
    for (let i = 0; i < 600; i++) {
      const span = tracer.startSpan(`span-${i}`, { attributes: { payload: 'x'.repeat(400) } });
      last = span.spanContext().traceId;
      span.end();
    }
    // Batches of 10, as a batch processor would send them.
    const spans = memory.getFinishedSpans();
    for (let i = 0; i < spans.length; i += 10) {
      const result = await new Promise<{ code: number }>((r) =>
        exporter.export(spans.slice(i, i + 10), r),
      );
      assert.equal(result.code, 0);
    }
    await exporter.shutdown();
    const files = readdirSync(dir);
    const total = files.reduce((n, f) => n + statSync(join(dir, f)).size, 0);
    assert.ok(files.length > 1, 'rotated into several files');
    assert.ok(total <= cap, `total ${total} <= cap ${cap}`);
    assert.ok(total > cap / 2, 'and keeps a useful amount');
    const all = files.map((f) => readFileSync(join(dir, f), 'utf8')).join('');
    assert.ok(all.includes(last), 'the newest spans are kept');
    assert.ok(!all.includes('"span-0"'), 'the oldest were deleted');
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('datalab-otel trace against tracing backends', () => {
  const traceId = randomBytes(16).toString('hex');
  const otlp = {
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'remote-svc' } }] },
        scopeSpans: [
          {
            scope: { name: 'test' },
            spans: [
              {
                traceId,
                spanId: '1111111111111111',
                name: 'GET /remote',
                kind: 2,
                startTimeUnixNano: '1000000000',
                endTimeUnixNano: '1005000000',
                attributes: [{ key: 'correlation.id', value: { stringValue: 'remote-corr' } }],
                status: { code: 0 },
              },
              {
                traceId,
                spanId: '2222222222222222',
                parentSpanId: '1111111111111111',
                name: 'pg.query:SELECT',
                kind: 3,
                startTimeUnixNano: '1001000000',
                endTimeUnixNano: '1002000000',
                attributes: [],
                status: { code: 2, message: 'boom' },
              },
            ],
          },
        ],
      },
    ],
  };
  const unrelated = {
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'other-svc' } }] },
        scopeSpans: [
          {
            scope: { name: 'test' },
            spans: [
              {
                traceId: randomBytes(16).toString('hex'),
                spanId: '3333333333333333',
                name: 'GET /other',
                kind: 2,
                startTimeUnixNano: '1000000000',
                endTimeUnixNano: '1001000000',
                attributes: [{ key: 'correlation.id', value: { stringValue: 'someone-else' } }],
              },
            ],
          },
        ],
      },
    ],
  };
  let server: Server;
  let base: string;
  const requests: string[] = [];

  before(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      requests.push(`${url.pathname}?${url.searchParams}`);
      res.setHeader('content-type', 'application/json');
      // Jaeger API v3 (OTLP JSON wrapped in `result`).
      if (url.pathname === `/jaeger/api/v3/traces/${traceId}`)
        return res.end(JSON.stringify({ result: otlp }));
      if (url.pathname === '/jaeger/api/v3/services')
        return res.end(JSON.stringify({ services: ['remote-svc'] }));
      if (url.pathname === '/jaeger/api/v3/traces') {
        // The documented form is a JSON map; like some Jaeger versions, this server ignores
        // it and answers with every trace of the window, so the CLI must filter itself.
        JSON.parse(url.searchParams.get('query.attributes') ?? 'null');
        return res.end(
          JSON.stringify({
            result: { resourceSpans: [...otlp.resourceSpans, ...unrelated.resourceSpans] },
          }),
        );
      }
      // Tempo: TraceQL search, then the trace (v1 `batches`).
      if (url.pathname === '/tempo/api/search') {
        const hit = (url.searchParams.get('q') ?? '').includes('"remote-corr"');
        return res.end(
          JSON.stringify({
            traces: hit ? [{ traceID: traceId, rootServiceName: 'remote-svc' }] : [],
          }),
        );
      }
      if (url.pathname === `/tempo/api/traces/${traceId}`)
        return res.end(JSON.stringify({ batches: otlp.resourceSpans }));
      res.statusCode = 404;
      res.end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  after(() => server.close());

  for (const backend of ['jaeger', 'tempo'] as const) {
    for (const id of [traceId, 'remote-corr']) {
      it(`--${backend} finds ${id === traceId ? 'a trace ID' : 'a correlation ID'}`, async () => {
        const { code, out, err } = await cli(['trace', id, `--${backend}`, `${base}/${backend}/`]);
        assert.equal(code, 0, err);
        assert.match(
          out,
          new RegExp(
            `^trace ${traceId}  2 spans  1 service \\(remote-svc\\)  5\\.0 ms  1 error`,
            'm',
          ),
        );
        const headers = out.split('\n').filter((l) => l.startsWith('trace '));
        assert.equal(headers.length, 1, 'only the matching trace, whatever the backend returned');
        assert.match(out, /\n {2}remote-svc {2}GET \/remote {2}\+0\.0 ms {2}5\.0 ms/);
        assert.match(
          out,
          /\n {4}remote-svc {2}pg\.query:SELECT {2}\+1\.0 ms {2}1\.0 ms {2}ERROR boom/,
        );
      });
    }
    it(`--${backend}: an unknown ID exits 1`, async () => {
      assert.equal((await cli(['trace', 'nope', `--${backend}`, `${base}/${backend}/`])).code, 1);
    });
  }
});

describe('datalab-otel config and doctor', () => {
  it('config prints the effective configuration with secrets redacted', async () => {
    const secret = `s3cr3t${randomBytes(4).toString('hex')}`;
    const { code, out } = await cli(['config'], {
      OTEL_SERVICE_NAME: 'orders',
      OTEL_EXPORTER_OTLP_ENDPOINT: `https://user:${secret}@collector:4318`,
      OTEL_EXPORTER_OTLP_HEADERS: `api-key=${secret},x-tenant=${secret}`,
      DATABASE_URL: `postgres://app:${secret}@db:5432/orders`,
      DATALAB_METRICS_PORT: '9999',
    });
    assert.equal(code, 0);
    assert.ok(!out.includes(secret), out);
    const report = JSON.parse(out) as Record<string, unknown> & {
      management: { port: number };
      otlpEndpoints: { traces: string };
      environment: Record<string, string>;
    };
    assert.equal(report.serviceName, 'orders');
    assert.equal(report.management.port, 9999);
    assert.equal(report.otlpEndpoints.traces, 'https://user:[REDACTED]@collector:4318/v1/traces');
    assert.equal(
      report.environment.OTEL_EXPORTER_OTLP_HEADERS,
      'api-key=[REDACTED],x-tenant=[REDACTED]',
    );
    assert.equal(report.environment.DATABASE_URL, 'postgres://app:[REDACTED]@db:5432/orders');
  });

  it('doctor says what is wrong, one line each, and exits 1 only for failures', async () => {
    const closed = await freePort();
    const taken = await freePort();
    const blocker = createTcpServer();
    await new Promise<void>((r) => blocker.listen(taken, '127.0.0.1', r));
    try {
      const { code, out } = await cli(['doctor'], {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closed}`,
        DATALAB_METRICS_HOST: '127.0.0.1',
        DATALAB_METRICS_PORT: String(taken),
      });
      assert.equal(code, 1);
      assert.match(
        out,
        new RegExp(
          `^FAIL  traces exporter endpoint http://127.0.0.1:${closed}/v1/traces: unreachable \\(ECONNREFUSED\\)$`,
          'm',
        ),
      );
      assert.match(
        out,
        new RegExp(
          `^FAIL  management port 127.0.0.1:${taken}: not available \\(EADDRINUSE\\)`,
          'm',
        ),
      );
      // The repository's own libraries, as the application the doctor looks at.
      assert.match(
        out,
        /^ok {4}express 5\.\d+\.\d+: endpoint from Express's own request properties \(req\.baseUrl \+ req\.route\.path\); no route = __unmatched__; handler spans \(express\)$/m,
      );
      assert.match(
        out,
        /^ok {4}pg 8\.\d+\.\d+: spans \(pg\), db_client_operation_duration_seconds$/m,
      );
      assert.match(
        out,
        /^ok {4}mysql2 3\.\d+\.\d+: spans \(mysql2\), db_client_operation_duration_seconds/m,
      );
      assert.match(out, /^ok {4}Node\.js \d+\.\d+\.\d+ \(needs >= 22\.15\.0\)$/m);
    } finally {
      blocker.close();
    }
    const healthy = await cli(['doctor'], {
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(await freePort()),
    });
    assert.equal(healthy.code, 0, healthy.out);
  });
});
