// What is benchmarked: the servers, the configurations each runs under, and the environment
// every child starts with.
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BENCH = join(ROOT, 'bench');
export const WORK = mkdtempSync(join(tmpdir(), 'datalab-otel-bench-'));

export const SERVERS = {
  hello: { file: 'hello.cjs', path: '/', title: 'node:http hello' },
  express: { file: 'express.cjs', path: '/users/42', title: 'Express `/users/:id`' },
  'express-db': {
    file: 'express-db.cjs',
    path: '/users/42',
    title: 'Express + pg query + Redis GET',
  },
};

const STOCK_REGISTER = '@opentelemetry/auto-instrumentations-node/register';
// Every instrumentation the distro ships, the default-off ones (fs, host-metrics) included.
// `npm run bench` builds dist/ first.
const EVERY_INSTRUMENTATION = createRequire(import.meta.url)(
  join(ROOT, 'dist', 'src', 'config', 'types.js'),
).INSTRUMENTATION_NAMES.join(',');
// Stock auto-instrumentation probes cloud metadata endpoints (AWS, GCP, Azure…) at start-up
// unless told otherwise; the distro never does.
const STOCK_DETECTORS = 'env,host,os,process';

/**
 * Each configuration: the node flags, the environment it adds, and where its metrics are
 * scraped (`metrics(ports)`), or null. `ports` = { sink, metrics, app }.
 */
export const CONFIGS = {
  none: {
    title: 'uninstrumented',
    args: () => [],
    env: () => ({}),
    metricsUrl: () => null,
  },
  datalab: {
    title: '@datalab/otel (traces 100% + metrics)',
    args: () => ['--import', '@datalab/otel/register'],
    env: (p) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${p.sink}`,
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(p.metrics),
    }),
    metricsUrl: (p) => `http://127.0.0.1:${p.metrics}/metrics`,
    exportsTraces: true,
  },
  'datalab-metrics': {
    title: '@datalab/otel metrics only',
    args: () => ['--import', '@datalab/otel/register'],
    env: (p) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${p.sink}`,
      OTEL_TRACES_EXPORTER: 'none',
      DATALAB_TRACES_FILE: 'false',
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(p.metrics),
    }),
    metricsUrl: (p) => `http://127.0.0.1:${p.metrics}/metrics`,
  },
  // Start-up only: the same, without import-in-the-middle's ESM loader thread.
  'datalab-no-esm': {
    title: '@datalab/otel with DATALAB_ESM_HOOKS=false',
    args: () => ['--import', '@datalab/otel/register'],
    env: (p) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${p.sink}`,
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(p.metrics),
      DATALAB_ESM_HOOKS: 'false',
    }),
    metricsUrl: (p) => `http://127.0.0.1:${p.metrics}/metrics`,
    startupOnly: true,
  },
  // Start-up only: every instrumentation enabled against http alone. Library instrumentations
  // load with their library, so under `node -e 0` (which loads none) the difference is what is
  // not a library's: host-metrics' gauges (and its `systeminformation`), loaded when enabled.
  'datalab-every': {
    title: '@datalab/otel with every instrumentation enabled',
    args: () => ['--import', '@datalab/otel/register'],
    env: (p) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${p.sink}`,
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(p.metrics),
      OTEL_NODE_ENABLED_INSTRUMENTATIONS: EVERY_INSTRUMENTATION,
    }),
    metricsUrl: (p) => `http://127.0.0.1:${p.metrics}/metrics`,
    startupOnly: true,
  },
  'datalab-http-only': {
    title: '@datalab/otel with OTEL_NODE_ENABLED_INSTRUMENTATIONS=http',
    args: () => ['--import', '@datalab/otel/register'],
    env: (p) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${p.sink}`,
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(p.metrics),
      OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http',
    }),
    metricsUrl: (p) => `http://127.0.0.1:${p.metrics}/metrics`,
    startupOnly: true,
  },
  stock: {
    title: 'stock OTel auto-instrumentations (traces 100% + metrics)',
    args: () => ['--require', STOCK_REGISTER],
    env: (p) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${p.sink}`,
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(p.metrics),
      OTEL_NODE_RESOURCE_DETECTORS: STOCK_DETECTORS,
    }),
    metricsUrl: (p) => `http://127.0.0.1:${p.metrics}/metrics`,
    exportsTraces: true,
  },
  'stock-metrics': {
    title: 'stock OTel auto-instrumentations metrics only',
    args: () => ['--require', STOCK_REGISTER],
    env: (p) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${p.sink}`,
      OTEL_TRACES_EXPORTER: 'none',
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(p.metrics),
      OTEL_NODE_RESOURCE_DETECTORS: STOCK_DETECTORS,
    }),
    metricsUrl: (p) => `http://127.0.0.1:${p.metrics}/metrics`,
  },
  // Not a product: what carrying a request context costs by itself (Node 20's AsyncLocalStorage
  // runs a hook on every promise and async resource once it is in use). Any configuration that
  // puts correlation IDs in log lines pays at least this; see docs/performance.md.
  'floor-context': {
    title: 'floor: request context only (AsyncLocalStorage, nothing recorded)',
    args: () => ['--require', join(BENCH, 'lib', 'floor-context.cjs')],
    env: () => ({}),
    metricsUrl: () => null,
  },
  'prom-bundle': {
    title: 'express-prom-bundle',
    args: () => [],
    env: () => ({ BENCH_PROM_BUNDLE: '1' }),
    metricsUrl: (p) => `http://127.0.0.1:${p.app}/metrics`,
    expressOnly: true,
  },
};

export function configsFor(server, wanted) {
  return wanted.filter((c) => !(CONFIGS[c].expressOnly && server === 'hello'));
}

/** The caller's environment without OTEL_*, DATALAB_* or NODE_OPTIONS, plus the database settings. */
export function baseEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('OTEL_') || k.startsWith('DATALAB_') || k === 'NODE_OPTIONS') continue;
    if (k.startsWith('npm_')) continue;
    env[k] = v;
  }
  return {
    ...env,
    NODE_ENV: 'production',
    PGHOST: process.env.PGHOST ?? '127.0.0.1',
    PGPORT: process.env.PGPORT ?? '5432',
    PGUSER: process.env.PGUSER ?? 'postgres',
    PGDATABASE: process.env.PGDATABASE ?? 'test',
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    // Only used if a configuration writes local trace files: keep them out of the repository.
    DATALAB_TRACES_DIR: join(WORK, 'traces'),
    ...extra,
  };
}
