// The load generator, run as its own process (pinned to its own core by the orchestrator):
// a warm-up, then the measured run, both at a fixed connection count, with autocannon (default,
// from npm) or wrk (`--loadgen wrk`, from Debian's package). It reads the server's CPU time from
// /proc right before and right after the measured run, so that the window is exactly the
// load's. With autocannon, latencies are kept per response with microsecond precision
// (autocannon's own histogram rounds to whole milliseconds).
//
// usage: node loadgen.mjs '{"url":…,"connections":50,"warmup":2,"duration":3,"serverPid":123,
//                           "tool":"autocannon"}'
// prints one JSON line with the result.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { clkTck, machineCpuMicros, percentile, processCpu, processMemory } from './proc.mjs';

const opts = JSON.parse(process.argv[2]);

class Samples {
  constructor() {
    this.values = new Float64Array(1 << 16);
    this.length = 0;
  }
  push(v) {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = v;
  }
  sorted() {
    return this.values.subarray(0, this.length).sort();
  }
}

function autocannonRun(seconds, measure) {
  const latencies = new Samples();
  let ok = 0;
  let bad = 0;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: opts.url,
        connections: opts.connections,
        duration: seconds,
        pipelining: 1,
        timeout: 10,
      },
      (err, result) => {
        if (err) return reject(err);
        const sorted = latencies.sorted();
        resolve({
          requests: measure ? ok : result.requests.total,
          // Requests sent, answered or not: a run cut off at its end leaves up to one request
          // per connection in flight, which the server still handles.
          sent: result.requests.sent,
          non2xx: measure ? bad : result.non2xx,
          errors: result.errors + result.timeouts,
          p50Ms: percentile(sorted, 50),
          p99Ms: percentile(sorted, 99),
        });
      },
    );
    if (measure) {
      instance.on('response', (_client, statusCode, _bytes, responseTime) => {
        if (statusCode >= 200 && statusCode < 300) {
          ok++;
          latencies.push(responseTime);
        } else bad++;
      });
    }
  });
}

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000 };
const toMs = (text) => {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2]] : Number.NaN;
};

function wrkRun(seconds) {
  return new Promise((resolve, reject) => {
    const args = ['-t1', `-c${opts.connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency'];
    const child = spawn('wrk', [...args, opts.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      err += c;
    });
    child.on('error', (e) =>
      reject(new Error(`wrk could not be started (${e.message}); install it: apt-get install wrk`)),
    );
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${err}${out}`));
      const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(out);
      const requests = Number(total?.[1]);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const socketErrors =
        /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      resolve({
        requests: requests - non2xx,
        // wrk does not say how many requests it left in flight: at most one per connection.
        sent: requests + opts.connections,
        non2xx,
        errors: socketErrors ? socketErrors.slice(1).reduce((n, v) => n + Number(v), 0) : 0,
        p50Ms: toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ''),
        p99Ms: toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ''),
        seconds: total ? toMs(`${total[2]}${total[3]}`) / 1000 : undefined,
      });
    });
  });
}

/** CPU time of this process plus that of its finished children (wrk), in microseconds. */
function ownCpuMicros() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime, cstime: fields 14-17.
  const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
  return (ticks * 1e6) / clkTck();
}

const run = opts.tool === 'wrk' ? wrkRun : autocannonRun;
const out = { tool: opts.tool, warmupRequests: 0, warmupSent: 0 };
if (opts.warmup > 0) {
  const w = await run(opts.warmup, false);
  out.warmupRequests = w.requests;
  out.warmupSent = w.sent;
}

if (opts.profile) {
  // Starts the server's profiler (bench/lib/profile-preload.cjs).
  process.kill(opts.serverPid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 100));
}
const cpu0 = processCpu(opts.serverPid);
const self0 = ownCpuMicros();
const machine0 = machineCpuMicros();
const t0 = process.hrtime.bigint();
const result = await run(opts.duration, true);
const elapsedUs = Number(process.hrtime.bigint() - t0) / 1e3;
const cpu1 = processCpu(opts.serverPid);
const self1 = ownCpuMicros();
const machine1 = machineCpuMicros();
const memory = processMemory(opts.serverPid);
if (opts.profile) process.kill(opts.serverPid, 'SIGUSR2');

const serverCpuUs = cpu1.user + cpu1.system - cpu0.user - cpu0.system;
const serverSystemUs = cpu1.system - cpu0.system;
const loadgenCpuUs = self1 - self0;
const machineBusyUs = machine1.busy - machine0.busy;
Object.assign(out, {
  ...result,
  elapsedSeconds: elapsedUs / 1e6,
  // wrk times its own run; autocannon's is the window measured here.
  rps: result.requests / (result.seconds ?? elapsedUs / 1e6),
  serverCpuUs,
  cpuUsPerRequest: result.requests > 0 ? serverCpuUs / result.requests : Number.NaN,
  // The kernel's share of it (system calls: socket reads and writes, mostly).
  systemCpuUsPerRequest: result.requests > 0 ? serverSystemUs / result.requests : Number.NaN,
  minorFaultsPerRequest:
    result.requests > 0 ? (cpu1.minorFaults - cpu0.minorFaults) / result.requests : Number.NaN,
  // Share of one core used by the server during the window (1 = saturated).
  serverCoreShare: serverCpuUs / elapsedUs,
  loadgenCoreShare: loadgenCpuUs / elapsedUs,
  // CPU used by every other process of the machine in the window, in cores (the sink,
  // PostgreSQL, Redis… and whatever else runs here).
  otherCores: Math.max(0, machineBusyUs - serverCpuUs - loadgenCpuUs) / elapsedUs,
  rssBytes: memory.rss,
  peakRssBytes: memory.hwm,
});
process.stdout.write(`${JSON.stringify(out)}\n`);
