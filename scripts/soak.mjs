#!/usr/bin/env node
// Soak: a fixture service under the preload, under steady load for minutes, while its OTLP
// backend flaps (up, then down, every SOAK_FLAP_SECONDS). Prints RSS, event-loop delay (p99, from
// the service's own /metrics) and what telemetry was dropped over time, then a summary.
//
//   npm run soak                      # 3 minutes
//   SOAK_SECONDS=600 npm run soak     # longer
//
// Settings: SOAK_SECONDS (180), SOAK_FLAP_SECONDS (15), SOAK_RPS (200), SOAK_SAMPLE_SECONDS (10).
// Exits 1 if a request failed or the service died. Not part of `npm test`.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const num = (name, fallback) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};
const SECONDS = num('SOAK_SECONDS', 180);
const FLAP = num('SOAK_FLAP_SECONDS', 15);
const RPS = num('SOAK_RPS', 200);
const SAMPLE = num('SOAK_SAMPLE_SECONDS', 10);

function freePort() {
  return new Promise((done, fail) => {
    const s = net.createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => done(port));
    });
  });
}

// The backend: an OTLP/HTTP sink that accepts everything (an empty protobuf response is valid).
const received = { traces: 0, metrics: 0, logs: 0, bytes: 0 };
const sink = http.createServer((req, res) => {
  let bytes = 0;
  req.on('data', (c) => {
    bytes += c.length;
  });
  req.on('end', () => {
    received.bytes += bytes;
    const signal = (req.url ?? '').split('/').pop();
    if (signal in received) received[signal]++;
    res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end();
  });
});
await new Promise((done) => sink.listen(0, '127.0.0.1', done));
const sinkPort = sink.address().port;

// The flapping front on a fixed port: listening and forwarding, or closed (connections refused,
// open ones cut), as a Collector that restarts.
const frontPort = await freePort();
let front;
const frontSockets = new Set();
async function backendUp() {
  front = net.createServer((socket) => {
    frontSockets.add(socket);
    const up = net.connect(sinkPort, '127.0.0.1');
    const drop = () => {
      socket.destroy();
      up.destroy();
      frontSockets.delete(socket);
    };
    socket.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    socket.pipe(up).pipe(socket);
  });
  await new Promise((done) => front.listen(frontPort, '127.0.0.1', done));
}
async function backendDown() {
  const server = front;
  front = undefined;
  for (const s of frontSockets) s.destroy();
  frontSockets.clear();
  if (server) await new Promise((done) => server.close(done));
}

// The service.
const metricsPort = await freePort();
const tracesDir = mkdtempSync(join(tmpdir(), 'datalab-otel-soak-'));
const stderr = [];
const child = spawn(
  process.execPath,
  ['--import', '@datalab/otel/register', join(ROOT, 'test', 'fixtures', 'plain-http-app.mjs')],
  {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      OTEL_SERVICE_NAME: 'soak-service',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${frontPort}`,
      OTEL_METRICS_EXPORTER: 'prometheus,otlp',
      OTEL_METRIC_EXPORT_INTERVAL: '5000',
      DATALAB_METRICS_HOST: '127.0.0.1',
      DATALAB_METRICS_PORT: String(metricsPort),
      DATALAB_TRACES_DIR: tracesDir,
    },
  },
);
let died;
child.on('exit', (code, signal) => {
  died = `exited (${code ?? signal})`;
});
let stderrBuf = '';
child.stderr.setEncoding('utf8').on('data', (c) => {
  stderrBuf += c;
  const lines = stderrBuf.split('\n');
  stderrBuf = lines.pop();
  stderr.push(...lines);
});
const appPort = await new Promise((done, fail) => {
  let buf = '';
  const timer = setTimeout(() => fail(new Error('the service did not start')), 20_000);
  child.stdout.setEncoding('utf8').on('data', (c) => {
    buf += c;
    const m = /"event":"listening","port":(\d+)/.exec(buf);
    if (m) {
      clearTimeout(timer);
      done(Number(m[1]));
      buf = '';
      child.stdout.resume();
    }
  });
});
const cleanup = () => {
  if (!died) child.kill('SIGKILL');
  rmSync(tracesDir, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

async function scrape() {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const value = (re) => {
    let total = 0;
    let seen = false;
    for (const m of text.matchAll(re)) {
      total += Number(m[1]);
      seen = true;
    }
    return seen ? total : undefined;
  };
  return {
    p99: value(/^nodejs_eventloop_delay_p99_seconds(?:\{[^}]*\})? (\S+)$/gm),
    droppedFailed: value(
      /^otel_exporter_dropped_total\{[^}]*reason="export_failed"[^}]*\} (\S+)$/gm,
    ),
    droppedQueue: value(/^otel_exporter_dropped_total\{[^}]*reason="queue_full"[^}]*\} (\S+)$/gm),
    counted: value(/^http_requests_total\{[^}]*\} (\S+)$/gm),
  };
}

function rssMb() {
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

// Steady open-loop load: RPS requests a second in 10 ms ticks, over keep-alive connections.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const load = { sent: 0, ok: 0, failed: 0, maxMs: 0, failures: [] };
const PATHS = ['/users/1', '/users/2', '/users/3', '/error', '/status/404/x', '/nope'];
function one(path) {
  load.sent++;
  const t0 = performance.now();
  const req = http.get({ host: '127.0.0.1', port: appPort, path, agent, timeout: 5_000 }, (res) => {
    res.resume();
    res.on('end', () => {
      load.ok++;
      load.maxMs = Math.max(load.maxMs, performance.now() - t0);
    });
  });
  const fail = (why) => {
    load.failed++;
    if (load.failures.length < 5) load.failures.push(`${path}: ${why}`);
  };
  req.on('timeout', () => {
    req.destroy();
    fail('no answer within 5 s');
  });
  req.on('error', (err) => fail(err.message));
}

await backendUp();
let up = true;
const started = Date.now();
let carry = 0;
let i = 0;
const ticker = setInterval(() => {
  carry += RPS / 100;
  while (carry >= 1) {
    carry--;
    one(PATHS[i++ % PATHS.length]);
  }
}, 10);
const flapper = setInterval(async () => {
  up = !up;
  await (up ? backendUp() : backendDown());
}, FLAP * 1000);

console.log(
  `soak: ${SECONDS} s at ${RPS} req/s, OTLP backend flapping every ${FLAP} s, sample every ${SAMPLE} s`,
);
console.log(
  '   t  backend  rss_mb  loop_p99_ms  requests_ok  failed  dropped(failed/queue)  otlp_posts',
);
const samples = [];
async function sample() {
  const m = await scrape().catch(() => ({}));
  const s = {
    t: Math.round((Date.now() - started) / 1000),
    backend: up ? 'up' : 'down',
    rss: rssMb(),
    p99ms: m.p99 === undefined ? undefined : m.p99 * 1000,
    ok: load.ok,
    failed: load.failed,
    droppedFailed: m.droppedFailed ?? 0,
    droppedQueue: m.droppedQueue ?? 0,
  };
  samples.push(s);
  console.log(
    `${String(s.t).padStart(4)}  ${s.backend.padEnd(7)}  ${s.rss.toFixed(1).padStart(6)}  ${(s.p99ms ?? Number.NaN).toFixed(2).padStart(11)}  ${String(s.ok).padStart(11)}  ${String(s.failed).padStart(6)}  ${`${s.droppedFailed}/${s.droppedQueue}`.padStart(21)}  ${String(received.traces + received.metrics).padStart(10)}`,
  );
}
await sample();
while (Date.now() - started < SECONDS * 1000 && !died) {
  await sleep(Math.min(SAMPLE * 1000, SECONDS * 1000 - (Date.now() - started)));
  if (!died) await sample();
}
clearInterval(ticker);
clearInterval(flapper);
await sleep(1_000); // let the last requests finish

// Does export resume after the last outage? Bring the backend up and wait for a trace post.
if (!up) await backendUp();
const before = received.traces;
const deadline = Date.now() + 15_000;
while (received.traces === before && Date.now() < deadline && !died) await sleep(200);
const resumed = received.traces > before;

const rss = samples.map((s) => s.rss);
const half = Math.floor(samples.length / 2);
const maxFirst = Math.max(...rss.slice(1, half + 1));
const maxSecond = Math.max(...rss.slice(half + 1));
const p99s = samples
  .map((s) => s.p99ms)
  .filter((v) => v !== undefined)
  .sort((a, b) => a - b);
const warnings = {};
for (const line of stderr) {
  const code = /DLOTEL_[A-Z_]+/.exec(line)?.[0];
  if (code) warnings[code] = (warnings[code] ?? 0) + 1;
}
const last = samples.at(-1) ?? {};
const summary = {
  seconds: SECONDS,
  flapSeconds: FLAP,
  targetRps: RPS,
  requests: {
    sent: load.sent,
    ok: load.ok,
    failed: load.failed,
    maxLatencyMs: Math.round(load.maxMs),
  },
  rssMb: {
    start: rss[0]?.toFixed(1),
    min: Math.min(...rss).toFixed(1),
    max: Math.max(...rss).toFixed(1),
    end: rss.at(-1)?.toFixed(1),
    maxFirstHalf: maxFirst.toFixed(1),
    maxSecondHalf: maxSecond.toFixed(1),
  },
  eventLoopP99Ms: {
    median: p99s[Math.floor(p99s.length / 2)]?.toFixed(2),
    max: p99s.at(-1)?.toFixed(2),
  },
  dropped: { exportFailed: last.droppedFailed, queueFull: last.droppedQueue },
  otlpPostsReceived: { traces: received.traces, metrics: received.metrics },
  exportResumedAfterLastOutage: resumed,
  warnings,
  serviceDied: died ?? false,
  failures: load.failures,
};
console.log('\nsummary:');
console.log(JSON.stringify(summary, null, 2));
agent.destroy();
await backendDown();
sink.close();
sink.closeAllConnections();
const ok = !died && load.failed === 0 && resumed;
if (!died) {
  child.kill('SIGTERM');
  await new Promise((done) => {
    const t = setTimeout(done, 10_000);
    child.once('exit', () => {
      clearTimeout(t);
      done();
    });
  });
}
process.exit(ok ? 0 : 1);
