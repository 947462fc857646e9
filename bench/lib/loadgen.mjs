// The load generator, run as its own process (pinned to its own core by the orchestrator):
// a warm-up, then the measured run, both with autocannon at a fixed connection count. It reads
// the server's CPU time from /proc right before and right after the measured run, so that the
// window is exactly the load's. Latencies are kept per response with microsecond precision
// (autocannon's own histogram rounds to whole milliseconds).
//
// usage: node loadgen.mjs '{"url":…,"connections":50,"warmup":2,"duration":4,"serverPid":123}'
// prints one JSON line with the result.
import autocannon from 'autocannon';
import { machineCpuMicros, percentile, processCpuMicros, processMemory } from './proc.mjs';

const opts = JSON.parse(process.argv[2]);

function load(seconds, onResponse) {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: opts.url,
        connections: opts.connections,
        duration: seconds,
        pipelining: 1,
        timeout: 10,
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
    if (onResponse) instance.on('response', onResponse);
  });
}

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

const out = { warmupRequests: 0 };
if (opts.warmup > 0) {
  const w = await load(opts.warmup);
  out.warmupRequests = w.requests.total;
}

const latencies = new Samples();
let ok = 0;
let bad = 0;
const cpu0 = processCpuMicros(opts.serverPid);
const self0 = process.cpuUsage();
const machine0 = machineCpuMicros();
const t0 = process.hrtime.bigint();
const result = await load(opts.duration, (_client, statusCode, _bytes, responseTime) => {
  if (statusCode >= 200 && statusCode < 300) {
    ok++;
    latencies.push(responseTime);
  } else bad++;
});
const elapsedUs = Number(process.hrtime.bigint() - t0) / 1e3;
const cpu1 = processCpuMicros(opts.serverPid);
const self1 = process.cpuUsage(self0);
const machine1 = machineCpuMicros();
const memory = processMemory(opts.serverPid);

const sorted = latencies.sorted();
const serverCpuUs = cpu1 - cpu0;
const loadgenCpuUs = self1.user + self1.system;
const machineBusyUs = machine1.busy - machine0.busy;
Object.assign(out, {
  requests: ok,
  non2xx: bad,
  errors: result.errors,
  timeouts: result.timeouts,
  elapsedSeconds: elapsedUs / 1e6,
  rps: ok / (elapsedUs / 1e6),
  p50Ms: percentile(sorted, 50),
  p99Ms: percentile(sorted, 99),
  serverCpuUs,
  cpuUsPerRequest: ok > 0 ? serverCpuUs / ok : Number.NaN,
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
