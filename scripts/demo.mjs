// `npm run demo`: the seed's api-gateway and data-service (examples/), each started with
// `--import @datalab/otel/register` and no distro imports, a little traffic, then what an operator
// looks at: /metrics, /health, a correlation ID, and `datalab-otel trace <id>` for it.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'datalab-otel-demo-'));
const tracesDir = join(work, 'traces');
const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function start(name, env) {
  const metricsPort = await freePort();
  const logFile = join(work, `${name}.log`);
  const logStream = createWriteStream(logFile);
  const child = spawn(
    process.execPath,
    ['--import', '@datalab/otel/register', join(root, 'examples', `${name}.mjs`)],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PGHOST: '127.0.0.1',
        PGUSER: 'postgres',
        PGDATABASE: 'postgres',
        ...process.env,
        ...env,
        PORT: '0',
        OTEL_SERVICE_NAME: name,
        DATALAB_METRICS_HOST: '127.0.0.1',
        DATALAB_METRICS_PORT: String(metricsPort),
        DATALAB_TRACES_DIR: tracesDir,
        OTEL_BSP_SCHEDULE_DELAY: '200',
      },
    },
  );
  children.push(child);
  child.stderr.on('data', (c) => process.stderr.write(`[${name}] ${c}`));
  const port = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening`)));
    let buffered = '';
    child.stdout.on('data', (chunk) => {
      logStream.write(chunk);
      buffered += chunk;
      const line = buffered.split('\n').find((l) => l.includes('"listening"'));
      if (line) resolve(JSON.parse(line).port);
    });
  });
  return { name, child, port, metricsPort, logFile, url: `http://127.0.0.1:${port}` };
}

function stop(service) {
  return new Promise((resolve) => {
    if (service.child.exitCode !== null) return resolve();
    service.child.once('exit', () => resolve());
    service.child.kill('SIGTERM');
  });
}

console.log(`== Node.js ${process.version}`);

const data = await start('data-service', {});
const gateway = await start('api-gateway', { DATA_SERVICE_URL: data.url });

console.log('\n== Two services, started with --import @datalab/otel/register');
for (const s of [gateway, data]) {
  console.log(
    `  ${s.name.padEnd(13)} ${s.url}   management: http://127.0.0.1:${s.metricsPort}/metrics`,
  );
}

console.log('\n== Traffic through api-gateway');
let correlationId;
// Fresh order numbers each run, so the first lookup misses the Redis cache and queries PostgreSQL.
const base = 1000 + (Date.now() % 9000);
for (const id of [base, base + 1, base, base + 2].map(String)) {
  const res = await fetch(`${gateway.url}/api/orders/${id}`);
  await res.arrayBuffer();
  const corr = res.headers.get('x-correlation-id');
  correlationId ??= corr;
  console.log(`  GET /api/orders/${id} → ${res.status}   x-correlation-id: ${corr}`);
}

console.log('\n== /metrics of api-gateway (HTTP series, buckets left out)');
const metrics = await (await fetch(`http://127.0.0.1:${gateway.metricsPort}/metrics`)).text();
for (const line of metrics.split('\n')) {
  if (/^http_/.test(line) && !line.includes('_bucket')) console.log(`  ${line}`);
}
const dbMetrics = await (await fetch(`http://127.0.0.1:${data.metricsPort}/metrics`)).text();
console.log('\n== /metrics of data-service (database series)');
for (const line of dbMetrics.split('\n')) {
  if (/^(db_client_operation_duration_seconds_count|database_connections_active)/.test(line)) {
    console.log(`  ${line}`);
  }
}

console.log('\n== /health of data-service');
const health = await fetch(`http://127.0.0.1:${data.metricsPort}/health`).catch(() => undefined);
if (health && (health.status === 200 || health.status === 503)) {
  const report = await health.json();
  console.log(`  HTTP ${health.status}  status: ${report.status}`);
  for (const [name, check] of Object.entries(report.checks ?? {})) {
    console.log(`    ${name.padEnd(11)} ${String(check.status).padEnd(9)} ${check.message ?? ''}`);
  }
} else {
  console.log(`  (no health endpoint: HTTP ${health?.status ?? 'unreachable'})`);
}

// Spans reach the local trace files in batches (OTEL_BSP_SCHEDULE_DELAY); wait until both
// services' spans of the first request are there before stopping them.
const deadline = Date.now() + 10_000;
const written = () => {
  try {
    return readdirSync(tracesDir)
      .map((f) => readFileSync(join(tracesDir, f), 'utf8'))
      .join('\n');
  } catch {
    return '';
  }
};
while (Date.now() < deadline) {
  const text = written();
  if (
    text.includes(`"data-service"`) &&
    text.includes(`"api-gateway"`) &&
    text.includes(correlationId)
  )
    break;
  await new Promise((r) => setTimeout(r, 100));
}
await Promise.all([stop(gateway), stop(data)]);

console.log(`\n== Correlation ID of the first request: ${correlationId}`);
console.log(`\n$ datalab-otel trace ${correlationId} --logs <both services' logs>`);
const cli = spawnSync(
  process.execPath,
  [
    join(root, 'dist', 'src', 'cli', 'main.js'),
    'trace',
    correlationId,
    '--file',
    tracesDir,
    '--logs',
    gateway.logFile,
    '--logs',
    data.logFile,
  ],
  { encoding: 'utf8' },
);
process.stdout.write(cli.stdout);
process.stderr.write(cli.stderr);
process.exitCode = cli.status ?? 1;
