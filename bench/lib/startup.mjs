// Start-up cost: wall time and peak RSS of `node -e 0` alone, with `--import @datalab/otel/register`
// and with `--require @opentelemetry/auto-instrumentations-node/register`, same exporters and
// (for the stock one) no cloud detectors. Variants alternate run by run; deltas are paired.
import http from 'node:http';
import { join } from 'node:path';
import { pinned, startChild } from './children.mjs';
import { freePort } from './ports.mjs';
import { median, summary } from './proc.mjs';
import { BENCH, baseEnv, CONFIGS, configsFor, ROOT, SERVERS } from './setup.mjs';

// `node -e 0`, plus an exit hook that reports the peak RSS (getrusage ru_maxrss, in KiB, covers
// every thread, the ESM loader-hooks thread included), how many CommonJS modules were loaded and
// which instrumentation packages (`@opentelemetry/instrumentation-*`) among them. It writes with
// process.stdout (synchronous for pipes on Linux), not fs: requiring fs would load the fs
// instrumentation, when it is on, inside the measurement.
const PROGRAM =
  "process.on('exit',()=>{const m=Object.keys(require.cache);const i=new Set(m.map(f=>/@opentelemetry[\\\\/]instrumentation-([^\\\\/]+)/.exec(f)?.[1]).filter(Boolean));process.stdout.write(JSON.stringify({maxRssKiB:process.resourceUsage().maxRSS,modules:m.length,instrumentations:[...i].sort().join(',')})+'\\n')})";

export const STARTUP_VARIANTS = {
  'node -e 0': 'none',
  '--import @datalab/otel/register': 'datalab',
  '--import @datalab/otel/register, DATALAB_ESM_HOOKS=false': 'datalab-no-esm',
  '--import @datalab/otel/register, every instrumentation enabled': 'datalab-every',
  '--import @datalab/otel/register, OTEL_NODE_ENABLED_INSTRUMENTATIONS=http': 'datalab-http-only',
  '--require @opentelemetry/auto-instrumentations-node/register': 'stock',
};

async function once(config, sinkPort, pin) {
  const cfg = CONFIGS[config];
  const env = baseEnv({
    OTEL_SERVICE_NAME: 'bench-startup',
    ...cfg.env({ sink: sinkPort, metrics: await freePort() }),
  });
  const [cmd, args] = pinned(0, process.execPath, [...cfg.args(), '-e', PROGRAM], pin);
  const t0 = process.hrtime.bigint();
  const proc = startChild(cmd, args, { cwd: ROOT, env });
  const { code, signal } = await proc.exited;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await proc.closed;
  if (code !== 0)
    throw new Error(`${config} start-up run exited ${code ?? signal}: ${proc.stderr.join('\n')}`);
  const report = JSON.parse(proc.stdout.find((l) => l.startsWith('{')) ?? '{}');
  return {
    ms,
    peakRssMiB: report.maxRssKiB / 1024,
    modules: report.modules,
    instrumentations: report.instrumentations,
    stderr: proc.stderr.filter(Boolean),
  };
}

export async function runStartup({ runs, sinkPort, pin }) {
  const samples = Object.fromEntries(Object.values(STARTUP_VARIANTS).map((c) => [c, []]));
  // One untimed run of each first: the file system cache, not the preload, would dominate it.
  for (const config of Object.keys(samples)) await once(config, sinkPort, pin);
  for (let i = 0; i < runs; i++) {
    const order = Object.keys(samples);
    const shifted = [...order.slice(i % order.length), ...order.slice(0, i % order.length)];
    for (const config of shifted) samples[config].push(await once(config, sinkPort, pin));
  }
  const base = samples.none;
  const out = {};
  for (const [label, config] of Object.entries(STARTUP_VARIANTS)) {
    const s = samples[config];
    out[config] = {
      label,
      ms: summary(s.map((x) => x.ms)),
      peakRssMiB: summary(s.map((x) => x.peakRssMiB)),
      modules: median(s.map((x) => x.modules)),
      instrumentations: s[0]?.instrumentations ?? '',
      addedMs: summary(s.map((x, i) => x.ms - base[i].ms)),
      addedPeakRssMiB: summary(s.map((x, i) => x.peakRssMiB - base[i].peakRssMiB)),
      stderr: [...new Set(s.flatMap((x) => x.stderr))].slice(0, 5),
    };
  }
  return { runs, variants: out };
}

// Spawn to first response: what a deploy or a restart waits for. The bench servers are started
// under each configuration and polled until the route answers 200; the app's own start-up
// (Express, pg, ioredis) is inside the figure, as in production.
const FIRST_RESPONSE_CONFIGS = ['none', 'datalab', 'datalab-metrics', 'stock', 'prom-bundle'];

async function firstResponseOnce(server, config, sinkPort, pin) {
  const cfg = CONFIGS[config];
  const port = await freePort();
  const env = baseEnv({
    OTEL_SERVICE_NAME: 'bench-first-response',
    PORT: String(port),
    ...cfg.env({ sink: sinkPort, metrics: await freePort(), app: port }),
  });
  const file = join(BENCH, 'servers', SERVERS[server].file);
  const [cmd, args] = pinned(0, process.execPath, [...cfg.args(), file], pin);
  const t0 = process.hrtime.bigint();
  const proc = startChild(cmd, args, { cwd: ROOT, env });
  try {
    const url = `http://127.0.0.1:${port}${SERVERS[server].path}`;
    for (;;) {
      if (proc.child.exitCode !== null)
        throw new Error(`${server} under ${config} exited: ${proc.stderr.join('\n')}`);
      const ok = await new Promise((resolve) => {
        const req = http.get(url, { agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        });
        req.on('error', () => resolve(false));
      });
      if (ok) return Number(process.hrtime.bigint() - t0) / 1e6;
      if (Number(process.hrtime.bigint() - t0) > 30e9)
        throw new Error(`${server} under ${config} did not answer within 30 s`);
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    proc.child.kill('SIGKILL');
    await proc.closed;
  }
}

export async function runFirstResponse({ runs, sinkPort, pin, servers = Object.keys(SERVERS) }) {
  const out = {};
  for (const server of servers) {
    const configs = configsFor(server, FIRST_RESPONSE_CONFIGS);
    const samples = Object.fromEntries(configs.map((c) => [c, []]));
    for (const config of configs) await firstResponseOnce(server, config, sinkPort, pin);
    for (let i = 0; i < runs; i++) {
      const shifted = [
        ...configs.slice(i % configs.length),
        ...configs.slice(0, i % configs.length),
      ];
      for (const config of shifted)
        samples[config].push(await firstResponseOnce(server, config, sinkPort, pin));
    }
    const base = samples.none;
    out[server] = Object.fromEntries(
      configs.map((c) => [
        c,
        { ms: summary(samples[c]), addedMs: summary(samples[c].map((x, i) => x - base[i])) },
      ]),
    );
  }
  return { runs, servers: out };
}
