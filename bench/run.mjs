#!/usr/bin/env node
// `npm run bench`: what @datalab/otel costs, against no instrumentation, stock OpenTelemetry
// auto-instrumentation and express-prom-bundle. See docs/performance.md.
//
//   npm run bench                  full run (~10 minutes on 2 cores)
//   npm run bench -- --quick       smoke run (~1 minute): 1 round of short runs, 25 MB trace file
//   npm run bench -- --trouble     backend trouble only (~5 minutes): throughput with a failing
//                                  OTLP endpoint against a healthy one (issue 9)
//   npm run bench -- --help        every option
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { canPin, pinSelf } from './lib/children.mjs';
import { runLoad, Sink, summarize } from './lib/load.mjs';
import { runLookup } from './lib/lookup.mjs';
import { formatReport, targets } from './lib/report.mjs';
import { runScrape } from './lib/scrape.mjs';
import { BENCH, CONFIGS, ROOT, SERVERS, WORK } from './lib/setup.mjs';
import { runFirstResponse, runStartup } from './lib/startup.mjs';
import { runTrouble, summarizeTrouble } from './lib/trouble.mjs';

const USAGE = `usage: npm run bench -- [options]
  --quick               smoke run: --rounds 1 --warmup 0.5 --duration 1 --startup-runs 3
                        --scrapes 5 --lookup-mb 25 --lookup-runs 2
  --trouble             backend trouble only (same as --only trouble): node:http hello and
                        Express under @datalab/otel (traces 100% + metrics) with the OTLP
                        endpoint healthy, refusing connections, a black hole, answering 503 +
                        Retry-After: 1, answering after 5 s; ratios to the healthy run
  --rounds N            rounds of every configuration (default 5; 3 with --trouble)
  --warmup S            seconds of load before each measured run (default 2)
  --duration S          seconds of each measured run (default 3)
  --connections N       concurrent connections of the load generator (default 50)
  --loadgen NAME        autocannon (default, installed by npm ci) or wrk (apt-get install wrk)
  --servers LIST        comma-separated: ${Object.keys(SERVERS).join(',')} (default all)
  --configs LIST        comma-separated: ${Object.keys(CONFIGS)
    .filter((c) => !CONFIGS[c].startupOnly)
    .join(',')} (default all;
                        none is always included)
  --only LIST           sections: load,startup,scrape,lookup,trouble (default all but trouble)
  --startup-runs N      runs of each start-up variant (default 10)
  --scrapes N           timed /metrics scrapes (default 20)
  --lookup-mb N         size of the generated trace file (default 100)
  --lookup-runs N       timed lookups per ID kind (default 5)
  --noise-threshold F   uninstrumented req/s spread (max-min)/median above which a server's
                        results are flagged as too noisy (default 0.10)
  --profile             write a V8 CPU profile of each measured window (sampling every 100 µs)
                        to bench/results/profiles-<timestamp>/; summarise one with
                        node bench/profile-summary.mjs FILE. Figures of a profiled run are
                        slower than normal ones.
  --env KEY=VALUE       extra environment for the @datalab/otel configurations (repeatable),
                        to measure a setting: --env OTEL_TRACES_SAMPLER=always_off
  --no-pin              do not pin server and load generator to separate cores
  --out FILE            JSON result file (default bench/results/<timestamp>.json)`;

function options() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      trouble: { type: 'boolean' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      duration: { type: 'string' },
      connections: { type: 'string' },
      loadgen: { type: 'string' },
      servers: { type: 'string' },
      configs: { type: 'string' },
      only: { type: 'string' },
      'startup-runs': { type: 'string' },
      scrapes: { type: 'string' },
      'lookup-mb': { type: 'string' },
      'lookup-runs': { type: 'string' },
      'noise-threshold': { type: 'string' },
      'no-pin': { type: 'boolean' },
      profile: { type: 'boolean' },
      env: { type: 'string', multiple: true },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const q = values.quick;
  const num = (name, full, quick) => {
    const v = values[name] ?? (q ? quick : full);
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: not a number: ${v}`);
    return n;
  };
  const list = (name, all) => {
    if (!values[name]) return all;
    const wanted = values[name].split(',').map((s) => s.trim());
    for (const w of wanted) if (!all.includes(w)) throw new Error(`--${name}: unknown ${w}`);
    return all.filter((a) => wanted.includes(a));
  };
  const loadgen = values.loadgen ?? 'autocannon';
  if (!['autocannon', 'wrk'].includes(loadgen)) throw new Error(`--loadgen: unknown ${loadgen}`);
  if (loadgen === 'wrk' && spawnSync('wrk', ['--version']).error) {
    throw new Error('--loadgen wrk: wrk is not installed (Debian: apt-get install wrk)');
  }
  const sections = values.trouble
    ? ['trouble']
    : values.only
      ? list('only', ['load', 'startup', 'scrape', 'lookup', 'trouble'])
      : ['load', 'startup', 'scrape', 'lookup'];
  const configs = list(
    'configs',
    Object.keys(CONFIGS).filter((c) => !CONFIGS[c].startupOnly),
  );
  if (!configs.includes('none')) configs.unshift('none');
  return {
    quick: Boolean(q),
    rounds: Math.max(1, Math.round(num('rounds', sections.includes('trouble') ? 3 : 5, 1))),
    warmup: num('warmup', 2, 0.5),
    duration: Math.max(0.5, num('duration', 3, 1)),
    connections: Math.max(1, Math.round(num('connections', 50, 50))),
    loadgen,
    servers: list('servers', Object.keys(SERVERS)),
    configs,
    sections,
    startupRuns: Math.max(1, Math.round(num('startup-runs', 10, 3))),
    scrapes: Math.max(1, Math.round(num('scrapes', 20, 5))),
    lookupMb: Math.max(1, num('lookup-mb', 100, 25)),
    lookupRuns: Math.max(1, Math.round(num('lookup-runs', 5, 2))),
    noiseThreshold: num('noise-threshold', 0.1, 0.1),
    pin: !values['no-pin'] && canPin(),
    pinRequested: !values['no-pin'],
    profile: Boolean(values.profile),
    distroEnv: Object.fromEntries(
      (values.env ?? []).map((kv) => {
        const eq = kv.indexOf('=');
        if (eq < 1) throw new Error(`--env: expected KEY=VALUE, got ${kv}`);
        return [kv.slice(0, eq), kv.slice(eq + 1)];
      }),
    ),
    out: values.out,
  };
}

function environment(opts) {
  const git = (args) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
    } catch {
      return undefined;
    }
  };
  const version = (pkg) => {
    try {
      return JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8'))
        .version;
    } catch {
      return undefined;
    }
  };
  return {
    node: process.version,
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadavgAtStart: loadavg(),
    pinned: opts.pin
      ? { server: 0, loadGenerator: 1, sink: 1, orchestrator: 1 }
      : `no (${opts.pinRequested ? 'taskset missing or fewer than 2 cores' : '--no-pin'})`,
    commit: git(['rev-parse', 'HEAD']),
    dirty: Boolean(git(['status', '--porcelain', '--', 'src', 'register.ts', 'register.mts'])),
    versions: Object.fromEntries(
      [
        'autocannon',
        'express',
        'express-prom-bundle',
        'prom-client',
        'pg',
        'ioredis',
        '@opentelemetry/auto-instrumentations-node',
        '@opentelemetry/sdk-node',
        '@opentelemetry/sdk-trace',
      ].map((p) => [p, version(p)]),
    ),
  };
}

function progress(text) {
  process.stderr.write(`${text}\n`);
}

function describeRun(r) {
  if (r.error)
    return `  round ${r.round} ${r.server} ${r.config}: FAILED ${r.error.split('\n')[0]}`;
  const k = (n) => (n / 1000).toFixed(1);
  return `  round ${r.round} ${r.server.padEnd(10)} ${r.config.padEnd(15)} ${k(r.rps).padStart(6)}k req/s  p99 ${r.p99Ms.toFixed(2)} ms  ${r.cpuUsPerRequest.toFixed(1)} µs CPU/req  core ${(r.serverCoreShare * 100).toFixed(0)}%  others ${r.otherCores.toFixed(2)} cores${r.spansPerRequest ? `  ${r.spansPerRequest.toFixed(2)} spans/req` : ''}`;
}

function describeTroubleRun(r) {
  if (r.error) return `  round ${r.round} ${r.server} ${r.mode}: FAILED ${r.error.split('\n')[0]}`;
  const k = (n) => (n / 1000).toFixed(1);
  const dropped = Object.entries(r.dropped ?? {})
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  return `  round ${r.round} ${r.server.padEnd(10)} ${r.mode.padEnd(12)} ${k(r.rps).padStart(6)}k req/s  p99 ${r.p99Ms.toFixed(2)} ms  ${r.cpuUsPerRequest.toFixed(1)} µs CPU/req  peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB${r.spansReceived !== undefined ? `  ${r.spansReceived} spans received` : ''}${dropped ? `  dropped ${dropped}` : ''}`;
}

async function main() {
  const opts = options();
  if (!existsSync(join(ROOT, 'dist', 'register.mjs'))) {
    throw new Error('dist/ is missing: run `npm run build` first (npm run bench does)');
  }
  if (opts.pin) pinSelf(1);
  const started = Date.now();
  if (opts.profile) {
    opts.profileDir = join(
      BENCH,
      'results',
      `profiles-${new Date(started).toISOString().replace(/[:.]/g, '-')}`,
    );
    mkdirSync(opts.profileDir, { recursive: true });
  }
  const result = { startedAt: new Date(started).toISOString(), options: opts };
  result.environment = environment(opts);
  progress(
    `@datalab/otel benchmark${opts.quick ? ' (--quick)' : ''}: ${opts.rounds} round${opts.rounds === 1 ? '' : 's'}, ${opts.warmup}s warm-up + ${opts.duration}s measured, ${opts.connections} connections (${opts.loadgen}), ${opts.pin ? 'server on CPU 0, load generator on CPU 1' : 'NOT pinned'}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );

  let failed = false;
  if (opts.sections.includes('load')) {
    progress('load: every server under every configuration, alternating…');
    const { runs, failures } = await runLoad(opts, (r) => progress(describeRun(r)));
    result.load = { runs, failures, ...summarize(runs, opts) };
    if (failures.length > 0) failed = true;
  }
  if (opts.sections.includes('trouble')) {
    progress('trouble: @datalab/otel with a healthy and a failing OTLP endpoint, alternating…');
    const { runs, failures } = await runTrouble(opts, (r) => progress(describeTroubleRun(r)));
    result.trouble = { runs, failures, rows: summarizeTrouble(runs) };
    if (failures.length > 0) failed = true;
  }
  const needsSink = ['startup', 'scrape', 'lookup'].some((s) => opts.sections.includes(s));
  const sink = needsSink ? await new Sink(opts.pin).start() : undefined;
  try {
    if (opts.sections.includes('startup')) {
      progress(`start-up: ${opts.startupRuns} runs of each variant…`);
      result.startup = await runStartup({
        runs: opts.startupRuns,
        sinkPort: sink.port,
        pin: opts.pin,
      });
      progress(
        `start-up: spawn to first response, ${opts.startupRuns} runs of each server and configuration…`,
      );
      result.firstResponse = await runFirstResponse({
        runs: opts.startupRuns,
        sinkPort: sink.port,
        pin: opts.pin,
      });
    }
    if (opts.sections.includes('scrape')) {
      progress('scrape: /metrics at the endpoint cap…');
      result.scrape = await runScrape({ sink, pin: opts.pin, scrapes: opts.scrapes });
    }
    if (opts.sections.includes('lookup')) {
      progress(`lookup: datalab-otel trace in a ${opts.lookupMb} MB trace file…`);
      result.lookup = await runLookup({
        sink,
        pin: opts.pin,
        megabytes: opts.lookupMb,
        runs: opts.lookupRuns,
      });
    }
  } finally {
    sink?.stop();
  }
  result.targets = targets(result);
  result.durationSeconds = (Date.now() - started) / 1000;
  result.loadavgAtEnd = loadavg();

  process.stdout.write(`${formatReport(result)}\n`);
  const out = opts.out ?? join(BENCH, 'results', `${result.startedAt.replace(/[:.]/g, '-')}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  progress(`results: ${out} (${result.durationSeconds.toFixed(0)} s)`);
  if (failed) process.exitCode = 1;
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench: ${err.message}\n`);
  process.exitCode = 1;
} finally {
  rmSync(WORK, { recursive: true, force: true });
}
