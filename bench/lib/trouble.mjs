// Backend trouble (issue 9, item 1): the app's throughput while its OTLP endpoint misbehaves,
// against the same app with a healthy endpoint in the same round. Each run: a fresh sink in one
// mode, a fresh server under the @datalab/otel default configuration (traces 100% to OTLP +
// metrics) pointed at it, warm-up, measured load. OTEL_EXPORTER_OTLP_TIMEOUT and the batch
// processor's settings are left at their defaults, as a user would leave them.
import { request } from './http.mjs';
import { distroRequestCount, loadServer, Sink, startServer, stopServer } from './load.mjs';
import { summary } from './proc.mjs';
import { SERVERS } from './setup.mjs';

export const TROUBLE_SERVERS = ['hello', 'express'];
export const TROUBLE_CONFIG = 'datalab';
export const TROUBLE_MIN_RATIO = 0.95;

/** Sink modes, healthy first; `sink` is the Sink mode (bench/lib/otlp-sink.mjs). */
export const TROUBLE_MODES = {
  healthy: { sink: 'ok', title: 'healthy (200 at once)' },
  refused: { sink: 'refused', title: 'refusing connections (closed port)' },
  blackhole: { sink: 'blackhole', title: 'black hole (accepts, never answers)' },
  unavailable: { sink: '503', title: '503 + `Retry-After: 1` to every request' },
  slow: { sink: 'slow', title: 'answers after 5 s' },
};

/** `otel_exporter_dropped_total` samples by `signal/reason`. */
function droppedCounts(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('otel_exporter_dropped_total{')) continue;
    const signal = /signal="([^"]*)"/.exec(line)?.[1];
    const reason = /reason="([^"]*)"/.exec(line)?.[1];
    const n = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (n > 0) out[`${signal}/${reason}`] = n;
  }
  return out;
}

async function runOne({ server, mode, round, opts }) {
  const sink = await new Sink(opts.pin, TROUBLE_MODES[mode].sink).start();
  const started = Date.now();
  let app;
  try {
    app = await startServer({
      server,
      config: TROUBLE_CONFIG,
      sink,
      pin: opts.pin,
      extraEnv: opts.distroEnv,
    });
    const startMs = Date.now() - started;
    const load = await loadServer(app, server, opts, false);
    const run = { server, mode, round, startMs, ...load };
    const scrape = await request(app.metricsUrl);
    const text = scrape.body.toString('utf8');
    run.countedRequests = distroRequestCount(text);
    run.dropped = droppedCounts(text);
    run.sentRequests = 1 + load.warmupSent + load.sent;
    if (sink.counts) {
      // Before stopping: what reached the sink while the app was under load.
      const s = await sink.stats();
      run.spansReceived = s.spans;
      run.traceExports = s.traceRequests;
    }
    await stopServer(app.proc);
    run.exportWarnings = app.proc.stderr.filter((l) => l.includes('DLOTEL_EXPORT_FAILED')).length;
    run.stderrTail = app.proc.stderr.filter((l) => l.trim()).slice(-3);
    run.totalMs = Date.now() - started;
    return run;
  } finally {
    if (app?.proc.isRunning()) app.proc.child.kill('SIGKILL');
    sink.stop();
  }
}

/** Every round: each server under every mode, the order rotated round by round. */
export async function runTrouble(opts, onRun) {
  const runs = [];
  const failures = [];
  const modes = Object.keys(TROUBLE_MODES);
  for (let round = 1; round <= opts.rounds; round++) {
    for (const server of TROUBLE_SERVERS) {
      const shift = (round - 1) % modes.length;
      const order = [...modes.slice(shift), ...modes.slice(0, shift)];
      for (const mode of order) {
        try {
          const run = await runOne({ server, mode, round, opts });
          runs.push(run);
          onRun?.(run);
        } catch (err) {
          const failure = { server, mode, round, error: err.message };
          failures.push(failure);
          onRun?.(failure);
        }
      }
    }
  }
  return { runs, failures };
}

/** Per server and mode: medians, and paired (same-round) ratios to the healthy run. */
export function summarizeTrouble(runs) {
  const rows = [];
  for (const server of TROUBLE_SERVERS) {
    const base = new Map(
      runs.filter((r) => r.server === server && r.mode === 'healthy').map((r) => [r.round, r]),
    );
    for (const mode of Object.keys(TROUBLE_MODES)) {
      const mine = runs.filter((r) => r.server === server && r.mode === mode);
      if (mine.length === 0) continue;
      const paired = mine.filter((r) => base.has(r.round));
      const ratio = (m) => summary(paired.map((r) => r[m] / base.get(r.round)[m]));
      const rpsRatio = ratio('rps');
      const dropped = {};
      for (const r of mine) {
        for (const [k, n] of Object.entries(r.dropped ?? {})) {
          dropped[k] = [...(dropped[k] ?? []), n / r.sentRequests];
        }
      }
      rows.push({
        server,
        mode,
        rounds: mine.length,
        rps: summary(mine.map((r) => r.rps)),
        rpsRatio,
        cpuUsPerRequest: summary(mine.map((r) => r.cpuUsPerRequest)),
        cpuRatio: ratio('cpuUsPerRequest'),
        p99Ms: summary(mine.map((r) => r.p99Ms)),
        peakRssBytes: summary(mine.map((r) => r.peakRssBytes)),
        errors: mine.reduce((n, r) => n + r.errors + r.timeouts + r.non2xx, 0),
        countDeficit: summary(mine.map((r) => r.countedRequests - r.sentRequests)),
        droppedPerRequest: Object.fromEntries(
          Object.entries(dropped).map(([k, v]) => [k, summary(v).median]),
        ),
        spansReceivedPerRequest: summary(
          mine
            .filter((r) => r.spansReceived !== undefined)
            .map((r) => r.spansReceived / r.sentRequests),
        ),
        exportWarnings: summary(mine.map((r) => r.exportWarnings)),
        holds: mode === 'healthy' ? undefined : rpsRatio.min >= TROUBLE_MIN_RATIO,
        medianHolds: mode === 'healthy' ? undefined : rpsRatio.median >= TROUBLE_MIN_RATIO,
      });
    }
  }
  return rows;
}

const fixed = (n, d) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const ratioText = (s) =>
  s.n === 0
    ? 'n/a'
    : s.n === 1
      ? `${fixed(s.median, 2)}x`
      : `${fixed(s.median, 2)}x [${fixed(s.min, 2)}-${fixed(s.max, 2)}]`;

/** Markdown, like the main report. */
export function formatTrouble(trouble, opts) {
  const head = [
    '| server | OTLP endpoint | req/s | vs healthy | CPU/request | vs healthy | p99 | peak RSS | spans dropped/req | >= 0.95x |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  let last;
  const body = trouble.rows.map((row) => {
    const dropped = Object.entries(row.droppedPerRequest)
      .map(([k, v]) => `${fixed(v, 2)} ${k.split('/')[1]}`)
      .join(', ');
    const verdict =
      row.holds === undefined ? '' : row.holds ? 'yes' : row.medianHolds ? 'median only' : '**no**';
    const line = `| ${row.server === last ? '' : SERVERS[row.server].title} | ${TROUBLE_MODES[row.mode].title} | ${Math.round(row.rps.median).toLocaleString('en')} | ${row.mode === 'healthy' ? '' : ratioText(row.rpsRatio)} | ${fixed(row.cpuUsPerRequest.median, 1)} µs | ${row.mode === 'healthy' ? '' : ratioText(row.cpuRatio)} | ${fixed(row.p99Ms.median, 2)} ms | ${fixed(row.peakRssBytes.median / 2 ** 20, 0)} MiB | ${dropped || '0'} | ${verdict} |`;
    last = row.server;
    return line;
  });
  const notes = [];
  for (const row of trouble.rows) {
    if (row.errors > 0) notes.push(`- ${row.server} ${row.mode}: ${row.errors} failed requests`);
  }
  for (const f of trouble.failures) {
    notes.push(`- ${f.server} ${f.mode} round ${f.round}: FAILED ${f.error.split('\n')[0]}`);
  }
  return [
    '### Backend trouble',
    `@datalab/otel default configuration (traces 100% to OTLP/HTTP + metrics), \`OTEL_EXPORTER_OTLP_TIMEOUT\` and batch settings at their defaults; ${opts.rounds} round${opts.rounds === 1 ? '' : 's'}, modes alternated, ${opts.warmup} s warm-up + ${opts.duration} s measured per run. Values: median over rounds; ratios: to the healthy-endpoint run of the same round, median [min-max]. ">= 0.95x": yes when every round's ratio is, "median only" when the median is but not every round. Spans dropped per request: \`otel_exporter_dropped_total\` by reason at the end of the run, divided by the requests sent.`,
    [...head, ...body].join('\n'),
    notes.join('\n'),
  ]
    .filter(Boolean)
    .join('\n\n');
}
