// `npm run demo`: start an ordinary Express + pg service under the preload, send it traffic, and
// show what the distro produced: the Prometheus series on /metrics and the traces it exported.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

// A minimal OTLP/HTTP JSON sink standing in for a tracing backend.
const spans = [];
const sink = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    if (req.url === '/v1/traces') {
      for (const rs of JSON.parse(body).resourceSpans ?? [])
        for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push(s);
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});
await new Promise((r) => sink.listen(0, '127.0.0.1', r));

const metricsPort = Number(process.env.DATALAB_METRICS_PORT ?? 9464);
const child = spawn(
  process.execPath,
  ['--import', '@datalab/otel/register', join(root, 'examples', 'orders-service.mjs')],
  {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PGHOST: '127.0.0.1',
      PGUSER: 'postgres',
      PGDATABASE: 'postgres',
      ...process.env,
      PORT: '0',
      OTEL_SERVICE_NAME: 'orders-service',
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(metricsPort),
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sink.address().port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '200',
      DATALAB_ACCESS_LOG: 'true',
    },
  },
);
// The service's own output: its access log lines are shown after the traffic.
const serviceLines = [];
child.stderr.on('data', (chunk) => process.stderr.write(chunk));
const port = await new Promise((resolve, reject) => {
  child.once('exit', (code) => reject(new Error(`the example service exited (${code})`)));
  child.stdout.on('data', (chunk) => {
    for (const line of String(chunk).split('\n')) {
      if (line.includes('"listening"')) resolve(JSON.parse(line).port);
      else if (line.startsWith('{')) serviceLines.push(line);
    }
  });
});

// However the demo ends, the service it started goes with it.
process.on('exit', () => child.kill('SIGTERM'));
const base = `http://127.0.0.1:${port}`;
console.log(`\nExample service: ${base}  (started with --import @datalab/otel/register)`);
console.log(`Management server: http://127.0.0.1:${metricsPort}/metrics\n`);
for (const path of ['/orders/1', '/orders/2', '/orders/3', '/orders/42', '/boom', '/nowhere']) {
  const res = await fetch(base + path);
  await res.arrayBuffer();
  console.log(
    `GET ${path.padEnd(11)} → ${res.status}  x-correlation-id: ${res.headers.get('x-correlation-id')}`,
  );
}
await new Promise((r) => setTimeout(r, 800));

const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
console.log('\n/metrics (HTTP series, without buckets):');
for (const line of metrics.split('\n')) {
  if (/^http_/.test(line) && !line.includes('_bucket')) console.log(`  ${line}`);
}

console.log('\nAccess log lines (DATALAB_ACCESS_LOG=true), with trace and correlation IDs:');
for (const line of serviceLines) console.log(`  ${line}`);

console.log('\nTraces exported over OTLP:');
const byTrace = new Map();
for (const s of spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
for (const [traceId, list] of byTrace) {
  const ids = new Set(list.map((s) => s.spanId));
  const print = (parent, depth) => {
    for (const s of list.filter((x) => (x.parentSpanId || '') === parent)) {
      const ms = (Number(BigInt(s.endTimeUnixNano) - BigInt(s.startTimeUnixNano)) / 1e6).toFixed(1);
      const error = s.status?.code === 2 ? '  ERROR' : '';
      console.log(`  ${'  '.repeat(depth)}${s.name}  ${ms} ms${error}`);
      print(s.spanId, depth + 1);
    }
  };
  console.log(` trace ${traceId}`);
  const roots = list.filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId));
  for (const r of roots) print(r.parentSpanId || '', 1);
}

child.kill('SIGTERM');
sink.close();
