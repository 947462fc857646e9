#!/usr/bin/env node
// `npm run sizing:gateway`: how much one gateway (datalab-otelcol on the shipped
// otelcol-gateway.yaml, tail sampling on) sustains on ONE core, and what a trace held for its
// sampling decision costs in memory. docs/operations.md ("Sizing the gateway tier") quotes it.
//
// The gateway runs pinned to core 0 with GOMAXPROCS=1; this generator, and Jaeger (the gateway's
// trace backend, in-memory), run on the other core. The generator sends OTLP/HTTP protobuf
// batches at a fixed rate: 100 traces of 5 spans each (the shape of the tests' front → back
// request), 1 in 100 traces with an error, 1 in 100 slower than 1 s, so the policies keep about
// 12%. Trace IDs are fresh in every batch. Two phases: one at --rate (default 10,000 spans/s)
// gives the CPU cost per span and the memory per trace held for a decision; the second runs at
// the rate that cost predicts for 85% of the core and says whether the gateway sustained it (all
// spans taken, none refused, no trace decided early for lack of room, the policies' share
// exported). Flat out, the receiver takes far more than the sampler can decide: the excess
// piles up to num_traces and is decided early, so "as fast as it accepts" is no sizing figure.
//
//   npm run sizing:gateway                    ~1.5 minutes: 2 x (12 s warm-up + 25 s measured)
//   npm run sizing:gateway -- --rate 20000    start the first phase elsewhere
//
// Needs `npm run collector:build` and `npm run jaeger:build`. Prints a table and writes
// bench/results/gateway-sizing-<time>.json.
import { randomFillSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import protobuf from 'protobufjs';
import { canPin, pinSelf } from './lib/children.mjs';
import { processCpuMicros, processMemory } from './lib/proc.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => join(ROOT, 'dist', 'test', 'support', p);
const { collectorPorts, OTELCOL, shippedConfig, startCollector, scrapeText } = await import(
  dist('otelcol.js')
);
const { JAEGER, startJaeger } = await import(dist('jaeger.js'));
const { OTLP_PROTO_FILES } = await import(dist('otlp-proto.js'));

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '25' },
    warmup: { type: 'string', default: '12' },
    rate: { type: 'string', default: '10000' },
    senders: { type: 'string', default: '4' },
  },
});
const MEASURE_S = Number(args.seconds);
const WARMUP_S = Number(args.warmup);
const SENDERS = Number(args.senders);
const FIRST_RATE = Number(args.rate);
const TRACES_PER_BATCH = 100;
const SPANS_PER_TRACE = 5;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- one protobuf batch, encoded once; each send gets fresh trace IDs patched in place ---------
const root = new protobuf.Root();
for (const file of OTLP_PROTO_FILES) protobuf.parse(file.source, root);
root.resolveAll();
const Request = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
const marker = (t) =>
  Buffer.from([0xd1, 0xa1, 0xb0, 0x7e, t >> 8, t & 0xff, ...Array(10).fill(0x5a)]);
const kv = (key, value) =>
  typeof value === 'number'
    ? { key, value: { intValue: value } }
    : { key, value: { stringValue: value } };
const nowNs = BigInt(Date.now()) * 1_000_000n;
function spansOf(service) {
  const spans = [];
  for (let t = 0; t < TRACES_PER_BATCH; t++) {
    const error = t % 100 === 7;
    const slowMs = t % 100 === 27 ? 1500 : 12;
    const status = error ? 500 : 200;
    const ids = Array.from({ length: SPANS_PER_TRACE }, (_, i) =>
      Buffer.from([t >> 8, t & 0xff, i, service === 'front' ? 1 : 2, 9, 9, 9, 9]),
    );
    // front: server → handler → client; back: server → handler (5 spans per trace).
    const shape =
      service === 'front'
        ? [
            ['GET /orders/:id', 2, -1],
            ['request handler', 1, 0],
            ['GET', 3, 1],
          ]
        : [
            ['GET /orders/:id', 2, -2],
            ['request handler', 1, 0],
          ];
    shape.forEach(([name, kind, parent], i) => {
      spans.push({
        traceId: marker(t),
        spanId: ids[i + (service === 'front' ? 0 : 3)],
        parentSpanId:
          parent === -1
            ? undefined
            : parent === -2
              ? ids[2]
              : ids[parent + (service === 'front' ? 0 : 3)],
        name,
        kind,
        startTimeUnixNano: nowNs,
        endTimeUnixNano: nowNs + BigInt(slowMs) * 1_000_000n,
        attributes: [
          kv('http.request.method', 'GET'),
          kv('http.route', '/orders/:id'),
          kv('url.path', `/orders/${t}`),
          kv('http.response.status_code', status),
          kv('server.address', '127.0.0.1'),
          kv('correlation.id', 'f'.repeat(32)),
        ],
        status: error ? { code: 2 } : {},
      });
    });
  }
  return spans;
}
const resource = (name) => ({
  attributes: [
    kv('service.name', name),
    kv('service.instance.id', 'sizing'),
    kv('telemetry.sdk.name', 'opentelemetry'),
    kv('telemetry.sdk.language', 'nodejs'),
  ],
});
const template = Buffer.from(
  Request.encode(
    Request.fromObject({
      resourceSpans: ['front', 'back'].map((name) => ({
        resource: resource(`sizing-${name}`),
        scopeSpans: [{ scope: { name: '@datalab/otel' }, spans: spansOf(name) }],
      })),
    }),
  ).finish(),
);
// Where each trace's ID sits in the encoded batch (every span of trace t carries marker(t)).
const offsets = [];
for (let t = 0; t < TRACES_PER_BATCH; t++) {
  const m = marker(t);
  const at = [];
  for (let i = template.indexOf(m); i !== -1; i = template.indexOf(m, i + 1)) at.push(i);
  if (at.length !== SPANS_PER_TRACE) throw new Error(`trace ${t}: ${at.length} spans found`);
  offsets.push(at);
}
function freshBatch() {
  const body = Buffer.from(template);
  const id = Buffer.alloc(16);
  for (const at of offsets) {
    randomFillSync(id);
    for (const i of at) id.copy(body, i);
  }
  return body;
}

// --- processes --------------------------------------------------------------------------------
const pin = canPin();
if (pin) pinSelf(1);
const dir = mkdtempSync(join(tmpdir(), 'datalab-gateway-sizing-'));
mkdirSync(join(dir, 'traces'));
const jaeger = await startJaeger(process.env.DATALAB_JAEGER ?? JAEGER);
// The gateway on core 0 alone; taskset execs, so the PID stays the Collector's.
const binary = process.env.DATALAB_OTELCOL ?? OTELCOL;
const wrapper = join(dir, 'gateway.sh');
writeFileSync(
  wrapper,
  pin ? `#!/bin/sh\nexec taskset -c 0 '${binary}' "$@"\n` : `#!/bin/sh\nexec '${binary}' "$@"\n`,
);
chmodSync(wrapper, 0o755);
const ports = await collectorPorts();
const logsSink = `http://127.0.0.1:${(await collectorPorts()).http}`;
const gateway = await startCollector(wrapper, shippedConfig('otelcol-gateway.yaml', ports), ports, {
  GOMAXPROCS: '1',
  DATALAB_TRACES_ENDPOINT: jaeger.otlpGrpc,
  DATALAB_LOGS_ENDPOINT: logsSink,
  DATALAB_TRACES_FILE: join(dir, 'traces', 'traces.jsonl'),
});

async function own() {
  const text = await scrapeText(ports.telemetry);
  // Counters carry no _total suffix in the Collector's own metrics at v0.161; accept both.
  const sum = (name, filter = '') => {
    let total = 0;
    for (const line of text.split('\n')) {
      const rest = line.startsWith(name) ? line.slice(name.length).replace(/^_total/, '') : '';
      if (/^[{ ]/.test(rest) && line.includes(filter)) {
        total += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
    return total;
  };
  return {
    accepted: sum('otelcol_receiver_accepted_spans'),
    refused: sum('otelcol_receiver_refused_spans'),
    exported: sum('otelcol_exporter_sent_spans', 'otlp_grpc/traces'),
    onMemory: sum('otelcol_processor_tail_sampling_sampling_traces_on_memory'),
    droppedTooEarly: sum('otelcol_processor_tail_sampling_sampling_trace_dropped_too_early'),
    heap: sum('otelcol_process_runtime_heap_alloc_bytes'),
  };
}

async function shutdown() {
  await gateway.stop().catch(() => {});
  await jaeger.stop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}

/** Sends batches at `spansPerS` (SENDERS in flight at most) until `stop()`; counts failures. */
function load(spansPerS) {
  const url = `http://127.0.0.1:${ports.http}/v1/traces`;
  const perBatch = TRACES_PER_BATCH * SPANS_PER_TRACE;
  const start = performance.now();
  let next = 0;
  let running = true;
  const state = { failed: 0, sent: 0 };
  const sender = async () => {
    while (running) {
      const due = start + (next++ * 1000 * perBatch) / spansPerS;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: freshBatch(),
      }).catch(() => undefined);
      if (res) await res.arrayBuffer();
      if (res?.ok) state.sent += perBatch;
      else state.failed++;
    }
  };
  const senders = Array.from({ length: SENDERS }, sender);
  return {
    state,
    stop: async () => {
      running = false;
      await Promise.all(senders);
    },
  };
}

/**
 * One phase at a fixed rate: a warm-up longer than the decision wait (so that decisions are
 * being taken all through the measured window), then the measured window.
 */
async function phase(spansPerS, idle) {
  const generator = load(spansPerS);
  await sleep(WARMUP_S * 1000);
  const t0 = { at: performance.now(), cpu: processCpuMicros(gateway.pid), ...(await own()) };
  const samples = [];
  const until = Date.now() + MEASURE_S * 1000;
  while (Date.now() < until) {
    await sleep(2000);
    samples.push({ ...(await own()), rss: processMemory(gateway.pid).rss });
  }
  const t1 = { at: performance.now(), cpu: processCpuMicros(gateway.pid), ...(await own()) };
  await generator.stop();
  const seconds = (t1.at - t0.at) / 1000;
  const accepted = t1.accepted - t0.accepted;
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const loaded = samples.filter((x) => x.onMemory > 0);
  const result = {
    targetSpansPerSecond: spansPerS,
    spansPerSecond: Math.round(accepted / seconds),
    gatewayCpuCores: Number(((t1.cpu - t0.cpu) / 1e6 / seconds).toFixed(3)),
    cpuMicrosPerSpan: Number(((t1.cpu - t0.cpu) / accepted).toFixed(2)),
    keptShare: Number(((t1.exported - t0.exported) / accepted).toFixed(3)),
    refusedSpans: t1.refused - t0.refused,
    droppedTooEarly: t1.droppedTooEarly - t0.droppedTooEarly,
    failedSends: generator.state.failed,
    tracesOnMemory: median(loaded.map((x) => x.onMemory)) ?? 0,
    // Heap and resident set above idle, over the traces held for a decision.
    heapBytesPerTrace: Math.round(
      median(loaded.map((x) => (x.heap - idle.heap) / x.onMemory)) ?? Number.NaN,
    ),
    rssBytesPerTrace: Math.round(
      median(loaded.map((x) => (x.rss - idle.rss) / x.onMemory)) ?? Number.NaN,
    ),
    peakRssBytes: Math.max(...samples.map((x) => x.rss)),
  };
  // Sustained: every span taken at the asked rate, no trace decided early for lack of room, the
  // policies' share exported, the core not saturated.
  result.sustained =
    result.spansPerSecond >= 0.97 * spansPerS &&
    result.refusedSpans === 0 &&
    result.droppedTooEarly === 0 &&
    result.failedSends === 0 &&
    result.keptShare > 0.08 &&
    result.gatewayCpuCores < 0.95;
  return result;
}

try {
  await sleep(3000);
  const idle = { ...(await own()), rss: processMemory(gateway.pid).rss };
  console.log(
    `gateway-sizing: phase 1 at ${FIRST_RATE} spans/s (${WARMUP_S} s warm-up, ${MEASURE_S} s measured) ...`,
  );
  const first = await phase(FIRST_RATE, idle);
  // The rate that would keep the core 85% busy at phase 1's cost per span, checked in phase 2.
  const predicted = Math.floor((0.85 * 1e6) / first.cpuMicrosPerSpan / 1000) * 1000 || FIRST_RATE;
  await sleep(12_000); // phase 1's held traces decided and gone
  console.log(`gateway-sizing: phase 2 at ${predicted} spans/s ...`);
  const second = await phase(predicted, idle);
  const result = {
    when: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg() },
    pinned: pin,
    gomaxprocs: 1,
    batch: { traces: TRACES_PER_BATCH, spansPerTrace: SPANS_PER_TRACE },
    decisionWaitS: 10,
    idleRssBytes: idle.rss,
    phases: [first, second],
  };
  const mb = (b) => `${(b / 1048576).toFixed(0)} MB`;
  const row = (r) =>
    `| ${r.targetSpansPerSecond.toLocaleString('en')} | ${r.spansPerSecond.toLocaleString('en')} | ${r.gatewayCpuCores} | ${r.cpuMicrosPerSpan} | ${(100 * r.keptShare).toFixed(1)}% | ${r.tracesOnMemory.toLocaleString('en')} | ${(r.heapBytesPerTrace / 1024).toFixed(1)} / ${(r.rssBytesPerTrace / 1024).toFixed(1)} KiB | ${mb(r.peakRssBytes)} | ${r.refusedSpans}/${r.droppedTooEarly}/${r.failedSends} | ${r.sustained ? 'yes' : 'NO'} |`;
  console.log(
    [
      '',
      `one gateway, ${pin ? 'pinned to core 0' : 'NOT pinned'}, GOMAXPROCS=1, shipped config (tail sampling, decision wait 10 s); idle RSS ${mb(idle.rss)}`,
      '',
      '| asked spans/s | taken spans/s | gateway cores | CPU µs/span | kept | traces held | per held trace (heap / RSS) | peak RSS | refused/early/failed | sustained |',
      '|---|---|---|---|---|---|---|---|---|---|',
      row(first),
      row(second),
      '',
      `load average at the end: ${result.machine.loadavg.map((l) => l.toFixed(2)).join(' ')}`,
    ].join('\n'),
  );
  const out = join(ROOT, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  const file = join(out, `gateway-sizing-${result.when.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`gateway-sizing: ${file}`);
} finally {
  await shutdown();
}
