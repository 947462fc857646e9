// The throughput benchmark: every server under every configuration, one fresh process per run,
// configurations alternated round by round, then paired (same-round) ratios to uninstrumented.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { listeningPort, pinned, startChild } from './children.mjs';
import { request, sleep, waitForOk } from './http.mjs';
import { freePort } from './ports.mjs';
import { summary } from './proc.mjs';
import { BENCH, baseEnv, CONFIGS, configsFor, ROOT, SERVERS } from './setup.mjs';

const SERVER_CORE = 0;
const LOAD_CORE = 1;

/**
 * The OTLP sink process (bench/lib/otlp-sink.mjs). `mode`: ok (default), 503, slow, blackhole
 * (see otlp-sink.mjs), or refused: no process, a port nothing listens on.
 */
export class Sink {
  constructor(pin, mode = 'ok') {
    this.pin = pin;
    this.mode = mode;
  }

  /** Whether the sink answers GET /stats and POST /reset. */
  get counts() {
    return this.mode !== 'refused' && this.mode !== 'blackhole';
  }

  async start() {
    if (this.mode === 'refused') {
      this.port = await freePort();
      return this;
    }
    const [cmd, args] = pinned(
      LOAD_CORE,
      process.execPath,
      [join(BENCH, 'lib', 'otlp-sink.mjs'), this.mode],
      this.pin,
    );
    this.proc = startChild(cmd, args, { cwd: ROOT, env: baseEnv() });
    this.port = await this.proc.waitFor(listeningPort, 10_000, 'OTLP sink');
    return this;
  }

  async stats() {
    const res = await request(`http://127.0.0.1:${this.port}/stats`);
    return JSON.parse(res.body.toString('utf8'));
  }

  async reset() {
    await request(`http://127.0.0.1:${this.port}/reset`, { method: 'POST' });
  }

  stop() {
    this.proc?.child.kill('SIGTERM');
  }
}

/**
 * Starts a bench server under a configuration, pinned to the server core. Resolves once it
 * listens and, when the configuration serves metrics, once /metrics answers.
 */
export async function startServer({ server, config, sink, pin, extraEnv = {}, profileFile }) {
  const ports = { sink: sink.port, metrics: await freePort() };
  const cfg = CONFIGS[config];
  const env = baseEnv({
    OTEL_SERVICE_NAME: `bench-${server}`,
    ...cfg.env(ports),
    ...extraEnv,
  });
  const file = SERVERS[server]?.file ?? server;
  const profiling = [];
  if (profileFile) {
    profiling.push('--require', join(BENCH, 'lib', 'profile-preload.cjs'));
    env.BENCH_PROFILE_FILE = profileFile;
  }
  const [cmd, args] = pinned(
    SERVER_CORE,
    process.execPath,
    [...profiling, ...cfg.args(), join(BENCH, 'servers', file)],
    pin,
  );
  const proc = startChild(cmd, args, { cwd: ROOT, env });
  try {
    ports.app = await proc.waitFor(listeningPort, 30_000, `${server} under ${config}`);
    const metricsUrl = cfg.metricsUrl(ports);
    if (metricsUrl) await waitForOk(metricsUrl, 15_000);
    return { proc, ports, metricsUrl, url: (path) => `http://127.0.0.1:${ports.app}${path}` };
  } catch (err) {
    if (proc.isRunning()) proc.child.kill('SIGKILL');
    throw err;
  }
}

/**
 * SIGTERM (the preloads flush what they buffered), then SIGKILL once the process exited, or,
 * when `sink` is given, once the sink has been quiet for a while (stock auto-instrumentation
 * shuts its SDK down on SIGTERM but leaves the process running), or after a deadline.
 */
export async function stopServer(proc, sink) {
  if (!proc.isRunning()) return;
  proc.child.kill('SIGTERM');
  const started = Date.now();
  if (!sink) {
    await Promise.race([proc.exited, sleep(300)]);
  } else {
    let lastSeen = -1;
    let quietSince = Date.now();
    while (proc.isRunning() && Date.now() - started < 5000) {
      await Promise.race([proc.exited, sleep(100)]);
      if (!proc.isRunning()) break;
      const { lastAt } = await sink.stats();
      if (lastAt !== lastSeen) {
        lastSeen = lastAt;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= 250) break;
    }
  }
  if (proc.isRunning()) proc.child.kill('SIGKILL');
  await proc.exited;
}

export function runLoadgen({ url, serverPid, connections, warmup, duration, pin, tool, profile }) {
  const opts = JSON.stringify({ url, serverPid, connections, warmup, duration, tool, profile });
  const [cmd, args] = pinned(
    LOAD_CORE,
    process.execPath,
    [join(BENCH, 'lib', 'loadgen.mjs'), opts],
    pin,
  );
  const proc = startChild(cmd, args, { cwd: ROOT, env: baseEnv() });
  return proc.waitFor(
    (line) => (line.startsWith('{') ? JSON.parse(line) : undefined),
    (warmup + duration) * 1000 + 60_000,
    'load generator',
  );
}

/** Sum of `http_requests_total` samples of the distro's /metrics text. */
export function distroRequestCount(text) {
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('http_requests_total{')) n += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return n;
}

/** Checks that the server answers its benchmark path, then runs the load generator at it. */
export async function loadServer(app, server, opts, profile) {
  const url = app.url(SERVERS[server].path);
  const ready = await request(url);
  if (ready.status !== 200) throw new Error(`${url} answered ${ready.status}`);
  return runLoadgen({
    url,
    serverPid: app.proc.pid,
    connections: opts.connections,
    warmup: opts.warmup,
    duration: opts.duration,
    pin: opts.pin,
    tool: opts.loadgen,
    profile,
  });
}

async function runOne({ server, config, round, sink, opts }) {
  await sink.reset();
  const started = Date.now();
  const profileFile = opts.profileDir
    ? join(opts.profileDir, `${server}-${config}-r${round}.cpuprofile`)
    : undefined;
  const app = await startServer({
    server,
    config,
    sink,
    pin: opts.pin,
    profileFile,
    extraEnv: config.startsWith('datalab') ? opts.distroEnv : {},
  });
  const startMs = Date.now() - started;
  try {
    const load = await loadServer(app, server, opts, Boolean(opts.profileDir));
    const run = { server, config, round, startMs, ...load };
    if (profileFile) {
      await app.proc.waitFor(
        (line) => (line.includes('"profiled"') ? true : undefined),
        30_000,
        'CPU profile',
      );
      run.profile = profileFile;
      writeFileSync(
        `${profileFile}.meta.json`,
        JSON.stringify({ server, config, round, requests: load.requests }),
      );
    }
    if (app.metricsUrl) {
      const scrape = await request(app.metricsUrl);
      run.metricsBytes = scrape.bytes;
      run.metricsMs = scrape.ms;
      if (config.startsWith('datalab')) {
        // Every request sent must be counted (SPEC: exact counts); requests cut off by the end
        // of a load run may or may not have completed, hence "at least".
        run.countedRequests = distroRequestCount(scrape.body.toString('utf8'));
      }
    }
    const stopping = Date.now();
    await stopServer(app.proc, CONFIGS[config].exportsTraces ? sink : undefined);
    run.stopMs = Date.now() - stopping;
    // The readiness request, and every request the load generator sent.
    const sent = 1 + load.warmupSent + load.sent;
    const s = await sink.stats();
    run.sentRequests = sent;
    run.spans = s.spans;
    run.spansPerRequest = CONFIGS[config].exportsTraces ? s.spans / sent : 0;
    run.traceExports = s.traceRequests;
    run.spanNames = s.spanNames;
    run.stderrTail = app.proc.stderr.filter((l) => l.trim()).slice(-5);
    run.totalMs = Date.now() - started;
    return run;
  } finally {
    if (app.proc.isRunning()) app.proc.child.kill('SIGKILL');
  }
}

/** Runs every round; `onRun` sees each run as it finishes. */
export async function runLoad(opts, onRun) {
  const sink = await new Sink(opts.pin).start();
  const runs = [];
  const failures = [];
  try {
    for (let round = 1; round <= opts.rounds; round++) {
      for (const server of opts.servers) {
        if (failures.some((f) => f.server === server && f.fatal)) continue;
        const configs = configsFor(server, opts.configs);
        // Rotate the order every round so that no configuration always runs first or last.
        const shift = (round - 1) % configs.length;
        const order = [...configs.slice(shift), ...configs.slice(0, shift)];
        for (const config of order) {
          try {
            const run = await runOne({ server, config, round, sink, opts });
            runs.push(run);
            onRun?.(run);
          } catch (err) {
            const failure = {
              server,
              config,
              round,
              error: err.message,
              fatal: config === 'none',
            };
            failures.push(failure);
            onRun?.(failure);
          }
        }
      }
    }
  } finally {
    sink.stop();
  }
  return { runs, failures };
}

const METRICS = ['rps', 'p50Ms', 'p99Ms', 'cpuUsPerRequest', 'systemCpuUsPerRequest', 'rssBytes'];

/**
 * Per server and configuration: medians of each metric over the rounds, and the median (min,
 * max) of the paired ratios to the uninstrumented run of the same round.
 */
export function summarize(runs, opts) {
  const out = [];
  const noise = [];
  for (const server of opts.servers) {
    const base = new Map(
      runs.filter((r) => r.server === server && r.config === 'none').map((r) => [r.round, r]),
    );
    const baseRps = summary([...base.values()].map((r) => r.rps));
    const spread = (baseRps.max - baseRps.min) / baseRps.median;
    noise.push({
      server,
      uninstrumentedRps: baseRps,
      spread,
      noisy: !(spread <= opts.noiseThreshold),
      otherCores: summary(runs.filter((r) => r.server === server).map((r) => r.otherCores)),
    });
    for (const config of configsFor(server, opts.configs)) {
      const mine = runs.filter((r) => r.server === server && r.config === config);
      if (mine.length === 0) continue;
      const row = { server, config, rounds: mine.length, values: {}, ratios: {} };
      for (const m of METRICS) {
        row.values[m] = summary(mine.map((r) => r[m]));
        row.ratios[m] = summary(
          mine.filter((r) => base.has(r.round)).map((r) => r[m] / base.get(r.round)[m]),
        );
      }
      row.cpuDeltaUs = summary(
        mine
          .filter((r) => base.has(r.round))
          .map((r) => r.cpuUsPerRequest - base.get(r.round).cpuUsPerRequest),
      );
      row.spansPerRequest = summary(mine.map((r) => r.spansPerRequest));
      const names = new Set(mine.flatMap((r) => Object.keys(r.spanNames ?? {})));
      row.spanNamesPerRequest = Object.fromEntries(
        [...names].map((name) => [
          name,
          summary(mine.map((r) => (r.spanNames?.[name] ?? 0) / r.sentRequests)).median,
        ]),
      );
      row.serverCoreShare = summary(mine.map((r) => r.serverCoreShare));
      row.loadgenCoreShare = summary(mine.map((r) => r.loadgenCoreShare));
      row.startMs = summary(mine.map((r) => r.startMs));
      row.errors = mine.reduce((n, r) => n + r.errors + r.timeouts + r.non2xx, 0);
      if (mine.some((r) => r.countedRequests !== undefined)) {
        // Counted by /metrics minus sent (0 when exact; requests the server had not finished
        // when /metrics was scraped could make it slightly negative).
        row.countDeficit = summary(mine.map((r) => r.countedRequests - r.sentRequests));
      }
      out.push(row);
    }
  }
  return { rows: out, noise };
}
