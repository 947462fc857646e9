// A minimal OTLP/HTTP receiver, run in its own process: answers 200 to POST /v1/traces,
// /v1/metrics and /v1/logs, and counts what it received (spans are counted by walking the
// protobuf, or the JSON, just deep enough). GET /stats returns the counters, POST /reset zeroes
// them. Prints {"event":"listening","port":N} once ready.
//
// usage: node otlp-sink.mjs [MODE], MODE one of (backend trouble, `npm run bench -- --trouble`):
//   ok         (default) answer 200 at once
//   503        answer every OTLP request 503 with `Retry-After: 1` (still counted)
//   slow       answer every OTLP request 200 after 5 s (still counted)
//   blackhole  a bare TCP server: accepts connections, never reads nor answers (no /stats)
import http from 'node:http';
import net from 'node:net';
import { gunzipSync } from 'node:zlib';

let stats;
function reset() {
  stats = {
    traceRequests: 0,
    spans: 0,
    spanNames: {},
    traceBytes: 0,
    metricRequests: 0,
    otherRequests: 0,
    lastAt: 0,
  };
}
reset();

function varint(buf, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos.i++];
    if (b === undefined) throw new Error('truncated varint');
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return value;
    shift += 7;
  }
}

/** Calls onField(field, start, end) for every length-delimited field of the message in [start, end). */
function fields(buf, start, end, onField) {
  const pos = { i: start };
  while (pos.i < end) {
    const key = varint(buf, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) varint(buf, pos);
    else if (wire === 1) pos.i += 8;
    else if (wire === 5) pos.i += 4;
    else if (wire === 2) {
      const len = varint(buf, pos);
      onField(field, pos.i, pos.i + len);
      pos.i += len;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

function countName(name) {
  stats.spanNames[name] = (stats.spanNames[name] ?? 0) + 1;
}

/** ExportTraceServiceRequest.resource_spans(1).scope_spans(2).spans(2), Span.name(5) */
function countProtoSpans(buf) {
  let n = 0;
  fields(buf, 0, buf.length, (f, s, e) => {
    if (f !== 1) return;
    fields(buf, s, e, (f2, s2, e2) => {
      if (f2 !== 2) return;
      fields(buf, s2, e2, (f3, s3, e3) => {
        if (f3 !== 2) return;
        n++;
        fields(buf, s3, e3, (f4, s4, e4) => {
          if (f4 === 5) countName(buf.toString('utf8', s4, e4));
        });
      });
    });
  });
  return n;
}

function countJsonSpans(buf) {
  const data = JSON.parse(buf.toString('utf8'));
  let n = 0;
  for (const rs of data.resourceSpans ?? []) {
    for (const ss of rs.scopeSpans ?? []) {
      for (const span of ss.spans ?? []) {
        n++;
        countName(span.name);
      }
    }
  }
  return n;
}

const SINK_MODES = ['ok', '503', 'slow', 'blackhole'];
const mode = process.argv[2] ?? 'ok';
if (!SINK_MODES.includes(mode)) throw new Error(`otlp-sink: unknown mode ${mode}`);
const SLOW_MS = 5000;

function answer(res, isJson) {
  if (res.destroyed) return;
  if (mode === '503') {
    res.writeHead(503, { 'retry-after': '1', 'content-type': 'text/plain' });
    res.end('unavailable');
    return;
  }
  // An empty Export*ServiceResponse is a valid answer in both encodings.
  res.writeHead(200, { 'content-type': isJson ? 'application/json' : 'application/x-protobuf' });
  res.end(isJson ? '{}' : undefined);
}

// Sockets held open by the black hole (never read: the client's writes stall once the kernel
// buffers are full, as with a wedged collector).
const held = new Set();
const server = mode === 'blackhole' ? net.createServer(hold) : http.createServer(handle);

function hold(socket) {
  socket.pause();
  held.add(socket);
  socket.on('error', () => {});
  socket.on('close', () => held.delete(socket));
}

function handle(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const path = req.url.split('?')[0];
    if (req.method === 'GET' && path === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    if (req.method === 'POST' && path === '/reset') {
      reset();
      res.writeHead(204).end();
      return;
    }
    const isJson = String(req.headers['content-type'] ?? '').includes('json');
    if (path === '/v1/traces') {
      stats.traceRequests++;
      stats.lastAt = Date.now();
      try {
        let body = Buffer.concat(chunks);
        stats.traceBytes += body.length;
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        stats.spans += isJson ? countJsonSpans(body) : countProtoSpans(body);
      } catch {
        stats.undecodable = (stats.undecodable ?? 0) + 1;
      }
    } else if (path === '/v1/metrics') {
      stats.metricRequests++;
    } else {
      stats.otherRequests++;
    }
    if (mode === 'slow') setTimeout(() => answer(res, isJson), SLOW_MS);
    else answer(res, isJson);
  });
}
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
process.on('SIGTERM', () => process.exit(0));
