import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import * as zlib from 'node:zlib';
import * as protobuf from 'protobufjs';
import { OTLP_PROTO_FILES } from './otlp-proto';

export type AttrValue =
  | string
  | number
  | boolean
  | bigint
  | null
  | AttrValue[]
  | { [k: string]: AttrValue };

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP enum number: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, AttrValue>;
  resource: Record<string, AttrValue>;
  scope: string;
  status: { code: number; message: string };
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  events: { name: string; attributes: Record<string, AttrValue> }[];
}

export interface ReceivedDataPoint {
  attributes: Record<string, AttrValue>;
  /** Sum and gauge points, whether sent as as_int or as_double. */
  value?: number;
  count?: number;
  sum?: number;
  bucketCounts?: number[];
  explicitBounds?: number[];
}

export interface ReceivedMetric {
  name: string;
  description: string;
  unit: string;
  type: 'sum' | 'gauge' | 'histogram' | 'exponentialHistogram' | 'summary';
  monotonic?: boolean;
  /** OTLP AggregationTemporality: 1 delta, 2 cumulative. */
  temporality?: number;
  resource: Record<string, AttrValue>;
  scope: string;
  dataPoints: ReceivedDataPoint[];
}

export interface ReceivedLog {
  timeUnixNano: bigint;
  severityText: string;
  severityNumber: number;
  body: AttrValue;
  attributes: Record<string, AttrValue>;
  traceId: string;
  spanId: string;
  resource: Record<string, AttrValue>;
  scope: string;
}

export interface ReceivedBody {
  path: string;
  contentType: string;
  /** Request body after content-encoding was undone. */
  raw: Buffer;
}

export interface ReceivedRequest {
  method: string;
  path: string;
  contentType: string;
  contentEncoding: string;
  /** HTTP status the receiver answered with. */
  status: number;
  /** The request's headers, names in lower case. */
  headers: http.IncomingHttpHeaders;
}

export interface OtlpReceiver {
  /** Base URL without a signal path, e.g. http://127.0.0.1:PORT */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  readonly metrics: ReceivedMetric[];
  readonly logs: ReceivedLog[];
  readonly bodies: ReceivedBody[];
  /** Every request seen, including refused and rejected ones, in arrival order. */
  readonly requests: ReceivedRequest[];
  /** Why requests were rejected (bad encoding, undecodable body, unsupported media type). */
  readonly errors: string[];
  /** Polls `predicate` (default timeout 10000 ms); the rejection names `what`. */
  waitFor(predicate: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /**
   * Answers every following request with `code` and `headers` (empty body) without decoding or
   * recording it, e.g. 503 + Retry-After to exercise exporter retries. setStatus(200) restores.
   */
  setStatus(code: number, headers?: Record<string, string>): void;
  clear(): void;
  close(): Promise<void>;
}

type Signal = 'traces' | 'metrics' | 'logs';

interface SignalCodec {
  request: protobuf.Type;
  response: protobuf.Type;
}

interface Decoded {
  spans: ReceivedSpan[];
  metrics: ReceivedMetric[];
  logs: ReceivedLog[];
}

const PATHS: Readonly<Record<string, Signal>> = {
  '/v1/traces': 'traces',
  '/v1/metrics': 'metrics',
  '/v1/logs': 'logs',
};

const PROTOBUF = 'application/x-protobuf';
const JSON_TYPE = 'application/json';

let schema: { codecs: Record<Signal, SignalCodec>; enums: Enums } | undefined;

interface Enums {
  spanKind: protobuf.Enum;
  statusCode: protobuf.Enum;
  temporality: protobuf.Enum;
  severity: protobuf.Enum;
}

function loadSchema(): NonNullable<typeof schema> {
  if (schema) return schema;
  const root = new protobuf.Root();
  for (const file of OTLP_PROTO_FILES) protobuf.parse(file.source, root);
  // Fail at startup rather than on the first request if a type reference is wrong.
  root.resolveAll();
  const collector = 'opentelemetry.proto.collector';
  const codec = (pkg: string, name: string): SignalCodec => ({
    request: root.lookupType(`${collector}.${pkg}.v1.Export${name}ServiceRequest`),
    response: root.lookupType(`${collector}.${pkg}.v1.Export${name}ServiceResponse`),
  });
  schema = {
    codecs: {
      traces: codec('trace', 'Trace'),
      metrics: codec('metrics', 'Metrics'),
      logs: codec('logs', 'Logs'),
    },
    enums: {
      spanKind: root.lookupEnum('opentelemetry.proto.trace.v1.Span.SpanKind'),
      statusCode: root.lookupEnum('opentelemetry.proto.trace.v1.Status.StatusCode'),
      temporality: root.lookupEnum('opentelemetry.proto.metrics.v1.AggregationTemporality'),
      severity: root.lookupEnum('opentelemetry.proto.logs.v1.SeverityNumber'),
    },
  };
  return schema;
}

// ---------------------------------------------------------------------------------------------
// Normalisation. Protobuf messages are first turned into plain objects with 64-bit values as
// decimal strings, which is also how OTLP/JSON carries them, so one walker serves both
// encodings. The remaining differences are handled per value: ids (bytes vs hex string),
// bytesValue (bytes vs base64) and enums (numbers, or names from lenient JSON producers).
// ---------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

class DecodeError extends Error {}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function obj(v: unknown, where: string): Obj {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new DecodeError(`${where}: expected an object`);
  return v;
}

function list(v: unknown, where: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new DecodeError(`${where}: expected an array`);
  return v;
}

function str(v: unknown, where: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new DecodeError(`${where}: expected a string`);
  return v;
}

function bigintOf(v: unknown, where: string): bigint {
  if (v === undefined || v === null) return 0n;
  try {
    if (typeof v === 'bigint') return v;
    if (typeof v === 'number') return BigInt(Math.trunc(v));
    if (typeof v === 'string') return BigInt(v);
    // Long-like values, in case a caller hands over a message that was not converted.
    if (isObj(v) && 'low' in v && 'high' in v) return BigInt(String(v));
  } catch {
    // fall through to the error below
  }
  throw new DecodeError(`${where}: expected a 64-bit integer, got ${JSON.stringify(v)}`);
}

function intOf(v: unknown, where: string): number {
  return Number(bigintOf(v, where));
}

function doubleOf(v: unknown, where: string): number {
  if (typeof v === 'number') return v;
  // OTLP/JSON follows proto3 JSON, where non-finite doubles are strings and numbers may be quoted.
  if (typeof v === 'string') {
    if (v === 'NaN') return Number.NaN;
    if (v === 'Infinity') return Number.POSITIVE_INFINITY;
    if (v === '-Infinity') return Number.NEGATIVE_INFINITY;
    const n = Number(v);
    if (v.trim() !== '' && !Number.isNaN(n)) return n;
  }
  throw new DecodeError(`${where}: expected a double, got ${JSON.stringify(v)}`);
}

function enumOf(v: unknown, e: protobuf.Enum, where: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && v in e.values) return e.values[v];
  throw new DecodeError(`${where}: expected a ${e.name} value, got ${JSON.stringify(v)}`);
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Trace/span ids: raw bytes from protobuf, hex from OTLP/JSON (base64 tolerated). */
function idOf(v: unknown, where: string): string {
  if (v === undefined || v === null) return '';
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (typeof v === 'string') {
    if (HEX.test(v)) return v.toLowerCase();
    if (BASE64.test(v) && v.length % 4 === 0) return Buffer.from(v, 'base64').toString('hex');
  }
  throw new DecodeError(`${where}: expected a hex id, got ${JSON.stringify(v)}`);
}

function bytesOf(v: unknown, where: string): string {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (typeof v === 'string' && BASE64.test(v) && v.length % 4 === 0) {
    return Buffer.from(v, 'base64').toString('hex');
  }
  throw new DecodeError(`${where}: expected bytes, got ${JSON.stringify(v)}`);
}

function anyValue(v: unknown, where: string): AttrValue {
  const o = obj(v, where);
  if (o.stringValue !== undefined) return str(o.stringValue, `${where}.stringValue`);
  if (o.boolValue !== undefined) {
    if (typeof o.boolValue !== 'boolean') throw new DecodeError(`${where}.boolValue: not a bool`);
    return o.boolValue;
  }
  if (o.intValue !== undefined) {
    const n = bigintOf(o.intValue, `${where}.intValue`);
    const safe = n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER);
    return safe ? Number(n) : n;
  }
  if (o.doubleValue !== undefined) return doubleOf(o.doubleValue, `${where}.doubleValue`);
  if (o.arrayValue !== undefined) {
    const values = list(obj(o.arrayValue, `${where}.arrayValue`).values, `${where}.arrayValue`);
    return values.map((item, i) => anyValue(item, `${where}.arrayValue[${i}]`));
  }
  if (o.kvlistValue !== undefined) {
    return attributes(obj(o.kvlistValue, `${where}.kvlistValue`).values, `${where}.kvlistValue`);
  }
  if (o.bytesValue !== undefined) return bytesOf(o.bytesValue, `${where}.bytesValue`);
  // An AnyValue with no member set is legal and means "empty".
  return null;
}

function attributes(v: unknown, where: string): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  list(v, where).forEach((item, i) => {
    const kv = obj(item, `${where}[${i}]`);
    const key = str(kv.key, `${where}[${i}].key`);
    out[key] = anyValue(kv.value, `${where}[${key}]`);
  });
  return out;
}

function resourceOf(v: unknown, where: string): Record<string, AttrValue> {
  return attributes(obj(v, where).attributes, `${where}.attributes`);
}

function scopeOf(v: unknown, where: string): string {
  return str(obj(v, where).name, `${where}.name`);
}

function decodeTraces(req: Obj, enums: Enums): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  list(req.resourceSpans, 'resourceSpans').forEach((rsRaw, r) => {
    const rs = obj(rsRaw, `resourceSpans[${r}]`);
    const resource = resourceOf(rs.resource, `resourceSpans[${r}].resource`);
    list(rs.scopeSpans, `resourceSpans[${r}].scopeSpans`).forEach((ssRaw, s) => {
      const at = `resourceSpans[${r}].scopeSpans[${s}]`;
      const ss = obj(ssRaw, at);
      const scope = scopeOf(ss.scope, `${at}.scope`);
      list(ss.spans, `${at}.spans`).forEach((spanRaw, i) => {
        const where = `${at}.spans[${i}]`;
        const span = obj(spanRaw, where);
        const status = obj(span.status, `${where}.status`);
        out.push({
          traceId: idOf(span.traceId, `${where}.traceId`),
          spanId: idOf(span.spanId, `${where}.spanId`),
          parentSpanId: idOf(span.parentSpanId, `${where}.parentSpanId`),
          name: str(span.name, `${where}.name`),
          kind: enumOf(span.kind, enums.spanKind, `${where}.kind`),
          attributes: attributes(span.attributes, `${where}.attributes`),
          resource,
          scope,
          status: {
            code: enumOf(status.code, enums.statusCode, `${where}.status.code`),
            message: str(status.message, `${where}.status.message`),
          },
          startTimeUnixNano: bigintOf(span.startTimeUnixNano, `${where}.startTimeUnixNano`),
          endTimeUnixNano: bigintOf(span.endTimeUnixNano, `${where}.endTimeUnixNano`),
          events: list(span.events, `${where}.events`).map((evRaw, e) => {
            const ev = obj(evRaw, `${where}.events[${e}]`);
            return {
              name: str(ev.name, `${where}.events[${e}].name`),
              attributes: attributes(ev.attributes, `${where}.events[${e}].attributes`),
            };
          }),
        });
      });
    });
  });
  return out;
}

function numberPoint(v: unknown, where: string): ReceivedDataPoint {
  const p = obj(v, where);
  const point: ReceivedDataPoint = { attributes: attributes(p.attributes, `${where}.attributes`) };
  if (p.asInt !== undefined) point.value = intOf(p.asInt, `${where}.asInt`);
  else if (p.asDouble !== undefined) point.value = doubleOf(p.asDouble, `${where}.asDouble`);
  return point;
}

function distributionPoint(v: unknown, where: string, buckets: boolean): ReceivedDataPoint {
  const p = obj(v, where);
  const point: ReceivedDataPoint = {
    attributes: attributes(p.attributes, `${where}.attributes`),
    count: intOf(p.count, `${where}.count`),
  };
  // sum is proto3 `optional` on histograms: absent means "not recorded", not zero.
  if (p.sum !== undefined && p.sum !== null) point.sum = doubleOf(p.sum, `${where}.sum`);
  if (buckets) {
    point.bucketCounts = list(p.bucketCounts, `${where}.bucketCounts`).map((c, i) =>
      intOf(c, `${where}.bucketCounts[${i}]`),
    );
    point.explicitBounds = list(p.explicitBounds, `${where}.explicitBounds`).map((b, i) =>
      doubleOf(b, `${where}.explicitBounds[${i}]`),
    );
  }
  return point;
}

function decodeMetrics(req: Obj, enums: Enums): ReceivedMetric[] {
  const out: ReceivedMetric[] = [];
  list(req.resourceMetrics, 'resourceMetrics').forEach((rmRaw, r) => {
    const rm = obj(rmRaw, `resourceMetrics[${r}]`);
    const resource = resourceOf(rm.resource, `resourceMetrics[${r}].resource`);
    list(rm.scopeMetrics, `resourceMetrics[${r}].scopeMetrics`).forEach((smRaw, s) => {
      const at = `resourceMetrics[${r}].scopeMetrics[${s}]`;
      const sm = obj(smRaw, at);
      const scope = scopeOf(sm.scope, `${at}.scope`);
      list(sm.metrics, `${at}.metrics`).forEach((mRaw, i) => {
        const where = `${at}.metrics[${i}]`;
        const m = obj(mRaw, where);
        const base = {
          name: str(m.name, `${where}.name`),
          description: str(m.description, `${where}.description`),
          unit: str(m.unit, `${where}.unit`),
          resource,
          scope,
        };
        const temporality = (data: Obj, w: string): number =>
          enumOf(data.aggregationTemporality, enums.temporality, `${w}.aggregationTemporality`);
        if (m.sum !== undefined) {
          const data = obj(m.sum, `${where}.sum`);
          const monotonic = data.isMonotonic ?? false;
          if (typeof monotonic !== 'boolean') {
            throw new DecodeError(`${where}.sum.isMonotonic: not a bool`);
          }
          out.push({
            ...base,
            type: 'sum',
            monotonic,
            temporality: temporality(data, `${where}.sum`),
            dataPoints: list(data.dataPoints, `${where}.sum.dataPoints`).map((p, j) =>
              numberPoint(p, `${where}.sum.dataPoints[${j}]`),
            ),
          });
        } else if (m.gauge !== undefined) {
          const data = obj(m.gauge, `${where}.gauge`);
          out.push({
            ...base,
            type: 'gauge',
            dataPoints: list(data.dataPoints, `${where}.gauge.dataPoints`).map((p, j) =>
              numberPoint(p, `${where}.gauge.dataPoints[${j}]`),
            ),
          });
        } else if (m.histogram !== undefined) {
          const data = obj(m.histogram, `${where}.histogram`);
          out.push({
            ...base,
            type: 'histogram',
            temporality: temporality(data, `${where}.histogram`),
            dataPoints: list(data.dataPoints, `${where}.histogram.dataPoints`).map((p, j) =>
              distributionPoint(p, `${where}.histogram.dataPoints[${j}]`, true),
            ),
          });
        } else if (m.exponentialHistogram !== undefined) {
          const w = `${where}.exponentialHistogram`;
          const data = obj(m.exponentialHistogram, w);
          out.push({
            ...base,
            type: 'exponentialHistogram',
            temporality: temporality(data, w),
            dataPoints: list(data.dataPoints, `${w}.dataPoints`).map((p, j) =>
              distributionPoint(p, `${w}.dataPoints[${j}]`, false),
            ),
          });
        } else if (m.summary !== undefined) {
          const data = obj(m.summary, `${where}.summary`);
          out.push({
            ...base,
            type: 'summary',
            dataPoints: list(data.dataPoints, `${where}.summary.dataPoints`).map((p, j) =>
              distributionPoint(p, `${where}.summary.dataPoints[${j}]`, false),
            ),
          });
        } else {
          throw new DecodeError(`${where} (${base.name}): metric has no data`);
        }
      });
    });
  });
  return out;
}

function decodeLogs(req: Obj, enums: Enums): ReceivedLog[] {
  const out: ReceivedLog[] = [];
  list(req.resourceLogs, 'resourceLogs').forEach((rlRaw, r) => {
    const rl = obj(rlRaw, `resourceLogs[${r}]`);
    const resource = resourceOf(rl.resource, `resourceLogs[${r}].resource`);
    list(rl.scopeLogs, `resourceLogs[${r}].scopeLogs`).forEach((slRaw, s) => {
      const at = `resourceLogs[${r}].scopeLogs[${s}]`;
      const sl = obj(slRaw, at);
      const scope = scopeOf(sl.scope, `${at}.scope`);
      list(sl.logRecords, `${at}.logRecords`).forEach((lrRaw, i) => {
        const where = `${at}.logRecords[${i}]`;
        const lr = obj(lrRaw, where);
        out.push({
          timeUnixNano: bigintOf(lr.timeUnixNano, `${where}.timeUnixNano`),
          severityText: str(lr.severityText, `${where}.severityText`),
          severityNumber: enumOf(lr.severityNumber, enums.severity, `${where}.severityNumber`),
          body:
            lr.body === undefined || lr.body === null ? null : anyValue(lr.body, `${where}.body`),
          attributes: attributes(lr.attributes, `${where}.attributes`),
          traceId: idOf(lr.traceId, `${where}.traceId`),
          spanId: idOf(lr.spanId, `${where}.spanId`),
          resource,
          scope,
        });
      });
    });
  });
  return out;
}

function decodeBody(signal: Signal, media: 'protobuf' | 'json', raw: Buffer): Decoded {
  const { codecs, enums } = loadSchema();
  let req: Obj;
  if (media === 'protobuf') {
    const type = codecs[signal].request;
    const message = type.decode(raw);
    // Strings for 64-bit values keep full precision and match the OTLP/JSON representation;
    // bytes stay Buffers so ids can be told apart from JSON's hex strings.
    req = type.toObject(message, { longs: String, arrays: true });
  } else {
    const parsed: unknown = JSON.parse(raw.toString('utf8'));
    if (!isObj(parsed)) throw new DecodeError('request body is not a JSON object');
    req = parsed;
  }
  const decoded: Decoded = { spans: [], metrics: [], logs: [] };
  if (signal === 'traces') decoded.spans = decodeTraces(req, enums);
  else if (signal === 'metrics') decoded.metrics = decodeMetrics(req, enums);
  else decoded.logs = decodeLogs(req, enums);
  return decoded;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function header(req: http.IncomingMessage, name: string): string {
  const v = req.headers[name];
  return (Array.isArray(v) ? v.join(',') : (v ?? '')).trim();
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const { codecs } = loadSchema();
  const spans: ReceivedSpan[] = [];
  const metrics: ReceivedMetric[] = [];
  const logs: ReceivedLog[] = [];
  const bodies: ReceivedBody[] = [];
  const requests: ReceivedRequest[] = [];
  const errors: string[] = [];
  let override: { code: number; headers: Record<string, string> } | undefined;

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    // Drain the body before answering so keep-alive connections stay usable for retries.
    const body = await readBody(req);
    const path = (req.url ?? '/').split('?')[0];
    const contentType = header(req, 'content-type');
    const contentEncoding = header(req, 'content-encoding').toLowerCase();
    const entry: ReceivedRequest = {
      method: req.method ?? '',
      path,
      contentType,
      contentEncoding,
      status: 0,
      headers: req.headers,
    };
    requests.push(entry);
    const reply = (
      status: number,
      type: string,
      payload: string | Uint8Array,
      extra: http.OutgoingHttpHeaders = {},
    ) => {
      entry.status = status;
      const buf = Buffer.from(payload);
      res.writeHead(status, { 'content-type': type, 'content-length': buf.length, ...extra });
      res.end(buf);
    };
    const reject = (status: number, message: string) => {
      errors.push(`${req.method} ${path}: ${message}`);
      reply(status, 'text/plain', message);
    };

    if (override) {
      reply(override.code, 'text/plain', '', override.headers);
      return;
    }
    const signal = PATHS[path];
    if (!signal) {
      reply(404, 'text/plain', `no OTLP endpoint at ${path}`);
      return;
    }
    if (req.method !== 'POST') {
      reply(405, 'text/plain', 'OTLP/HTTP requires POST', { allow: 'POST' });
      return;
    }

    let raw: Buffer;
    if (contentEncoding === '' || contentEncoding === 'identity') raw = body;
    else if (contentEncoding === 'gzip') {
      try {
        raw = zlib.gunzipSync(body);
      } catch (err) {
        reject(400, `gzip body could not be inflated: ${(err as Error).message}`);
        return;
      }
    } else {
      reject(400, `unsupported content-encoding ${JSON.stringify(contentEncoding)}`);
      return;
    }

    const mediaType = contentType.split(';')[0].trim().toLowerCase();
    const media = mediaType === PROTOBUF ? 'protobuf' : mediaType === JSON_TYPE ? 'json' : null;
    if (!media) {
      reject(415, `unsupported content-type ${JSON.stringify(contentType)}`);
      return;
    }
    bodies.push({ path, contentType: mediaType, raw });

    let decoded: Decoded;
    try {
      decoded = decodeBody(signal, media, raw);
    } catch (err) {
      reject(400, `undecodable ${media} ${signal} body: ${(err as Error).message}`);
      return;
    }
    spans.push(...decoded.spans);
    metrics.push(...decoded.metrics);
    logs.push(...decoded.logs);

    if (media === 'protobuf') {
      const response = codecs[signal].response;
      reply(200, PROTOBUF, response.encode(response.create({})).finish());
    } else {
      reply(200, JSON_TYPE, '{}');
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      errors.push(`${req.method} ${req.url}: receiver failure: ${String(err)}`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    metrics,
    logs,
    bodies,
    requests,
    errors,
    async waitFor(predicate, timeoutMs = 10_000, what = 'condition') {
      const deadline = Date.now() + timeoutMs;
      let lastError: unknown;
      for (;;) {
        try {
          if (predicate()) return;
          lastError = undefined;
        } catch (err) {
          // A predicate that indexes into data that has not arrived yet is just "not yet".
          lastError = err;
        }
        if (Date.now() >= deadline) break;
        await sleep(20);
      }
      const seen =
        `${spans.length} spans, ${metrics.length} metrics, ${logs.length} logs, ` +
        `${requests.length} requests`;
      const errs = errors.length ? `; receiver errors: ${errors.join(' | ')}` : '';
      const last = lastError ? `; predicate last threw: ${String(lastError)}` : '';
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what} (${seen}${errs}${last})`);
    },
    setStatus(code, headers = {}) {
      override = code === 200 ? undefined : { code, headers: { ...headers } };
    },
    clear() {
      spans.length = 0;
      metrics.length = 0;
      logs.length = 0;
      bodies.length = 0;
      requests.length = 0;
      errors.length = 0;
    },
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Exporters keep connections alive; without this close() waits for their idle timeout.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** Every ancestor of `span` within the received spans, nearest first. */
export function ancestors(spans: readonly ReceivedSpan[], span: ReceivedSpan): ReceivedSpan[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const out: ReceivedSpan[] = [];
  let parent = byId.get(span.parentSpanId);
  while (parent) {
    out.push(parent);
    parent = byId.get(parent.parentSpanId);
  }
  return out;
}
