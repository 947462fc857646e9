// `datalab-otel trace <id>` in a large trace file. The lines are the distro's own: a bench server
// runs under the preload with the local trace store on (OTLP JSON lines written by
// FileSpanExporter), then those lines are repeated with fresh trace and span IDs up to the
// wanted size. The trace looked up sits near the end of the file.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pinned, startChild } from './children.mjs';
import { keepAlive, request } from './http.mjs';
import { startServer, stopServer } from './load.mjs';
import { summary } from './proc.mjs';
import { ROOT, WORK } from './setup.mjs';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Real trace lines: `requests` requests to a bench server writing the local trace store. */
async function templateLines({ sink, pin, server, requests }) {
  const dir = join(WORK, `store-${server}`);
  const app = await startServer({
    server,
    config: 'datalab-metrics',
    sink,
    pin,
    extraEnv: {
      DATALAB_TRACES_FILE: 'true',
      DATALAB_TRACES_DIR: dir,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    },
  });
  try {
    let next = 0;
    const worker = async () => {
      while (next < requests) {
        const res = await request(app.url(`/users/${next++}`), { agent: keepAlive });
        if (res.status !== 200) throw new Error(`template request answered ${res.status}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    await stopServer(app.proc);
  }
  const lines = [];
  for (const name of readdirSync(dir).sort()) {
    for (const line of readFileSync(join(dir, name), 'utf8').split('\n'))
      if (line) lines.push(line);
  }
  if (lines.length === 0) throw new Error(`no trace lines written to ${dir}`);
  return lines;
}

const ID = /"(traceId|spanId|parentSpanId)":"([0-9a-f]+)"/g;
const hex = (bytes) => randomBytes(bytes).toString('hex');

/**
 * A copy of `line` with every trace and span ID (and the correlation IDs equal to them) renewed
 * through `map`: one map per pass over the template lines keeps a trace whose spans were
 * exported in two batches whole.
 */
function renewIds(line, map) {
  const fresh = (id) => {
    let v = map.get(id);
    if (v === undefined) {
      v = hex(id.length / 2);
      map.set(id, v);
    }
    return v;
  };
  let out = line.replace(ID, (_m, key, id) => `"${key}":"${fresh(id)}"`);
  // correlation.id defaults to the trace ID.
  out = out.replace(/"correlation\.id","value":\{"stringValue":"([0-9a-f]{32})"\}/g, (m, id) =>
    map.has(id) ? `"correlation.id","value":{"stringValue":"${map.get(id)}"}` : m,
  );
  return out;
}

export async function writeTraceFile({ sink, pin, megabytes }) {
  let server = 'express-db';
  let templates;
  try {
    templates = await templateLines({ sink, pin, server, requests: 1000 });
  } catch (err) {
    // Without PostgreSQL or Redis, the Express server still gives realistic lines.
    server = 'express';
    templates = await templateLines({ sink, pin, server, requests: 1000 });
    templates.fallbackReason = err.message;
  }
  const path = join(WORK, 'traces-100mb.jsonl');
  const target = megabytes * 1024 * 1024;
  const stream = createWriteStream(path);
  let bytes = 0;
  let lines = 0;
  let targetLine;
  let traceId;
  const correlationId = `bench-${hex(8)}`;
  let ids = new Map();
  while (bytes < target) {
    if (lines % templates.length === 0) ids = new Map();
    let line = renewIds(templates[lines % templates.length], ids);
    if (traceId === undefined && bytes >= target * 0.97) {
      // The trace looked up: near the end, with an application-given correlation ID.
      traceId = /"traceId":"([0-9a-f]{32})"/.exec(line)[1];
      line = line.replace(
        new RegExp(`"correlation\\.id","value":\\{"stringValue":"${traceId}"\\}`, 'g'),
        `"correlation.id","value":{"stringValue":"${correlationId}"}`,
      );
      targetLine = lines + 1;
    }
    line += '\n';
    bytes += Buffer.byteLength(line);
    lines++;
    if (!stream.write(line)) await once(stream, 'drain');
  }
  stream.end();
  await once(stream, 'finish');
  const templateSpans = (templates.join('\n').match(/"spanId"/g) ?? []).length;
  return {
    path,
    bytes,
    lines,
    templateServer: server,
    templateLines: templates.length,
    templateSpans,
    fallbackReason: templates.fallbackReason,
    traceId,
    correlationId,
    targetLine,
  };
}

async function lookupOnce(id, path, pin) {
  const [cmd, args] = pinned(0, process.execPath, [CLI, 'trace', id, '--file', path], pin);
  const t0 = process.hrtime.bigint();
  const proc = startChild(cmd, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' } });
  const { code } = await proc.exited;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await proc.closed;
  if (code !== 0)
    throw new Error(`datalab-otel trace ${id} exited ${code}: ${proc.stderr.join('\n')}`);
  return { ms, output: proc.stdout };
}

export async function runLookup({ sink, pin, megabytes, runs }) {
  const file = await writeTraceFile({ sink, pin, megabytes });
  const result = { file: { ...file, path: undefined } };
  for (const [kind, id] of [
    ['traceId', file.traceId],
    ['correlationId', file.correlationId],
  ]) {
    const times = [];
    let output;
    for (let i = 0; i < runs; i++) {
      const r = await lookupOnce(id, file.path, pin);
      times.push(r.ms);
      output = r.output;
    }
    if (!output.join('\n').includes(file.traceId)) {
      throw new Error(
        `lookup by ${kind} did not print the trace:\n${output.slice(0, 10).join('\n')}`,
      );
    }
    const spans = Number(/ (\d+) spans /.exec(output.join('\n'))?.[1]);
    result[kind] = { ms: summary(times), spans, outputLines: output.length };
  }
  return result;
}
