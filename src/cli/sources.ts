/**
 * Where traces are looked up: OTLP JSON line files (the distro's local store, the Collector's
 * file exporter, rotated files too), Jaeger's API v3 and Tempo's HTTP API.
 *
 * Files are streamed, and a line is parsed only when the ID occurs in its text: lookups in a
 * 100 MB store stay interactive without an index.
 */
import { createReadStream, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CORRELATION_ATTRIBUTE } from '../correlation/id';
import { type FlatSpan, flatten, type OtlpTracesData } from './otlp-json';

export interface LookupResult {
  spans: FlatSpan[];
  /** Lines that were not valid OTLP JSON (a truncated last line, corruption). */
  skippedLines: number;
}

const TRACE_ID = /^[0-9a-f]{32}$/;

export function isTraceId(id: string): boolean {
  return TRACE_ID.test(id.toLowerCase());
}

/** Every trace file named by `paths`: files as given, directories expanded (sorted by name). */
export async function traceFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    const stat = await fs.stat(p).catch(() => undefined);
    if (!stat) throw new Error(`no such file or directory: ${p}`);
    if (stat.isDirectory()) {
      const names = (await fs.readdir(p))
        .filter((n) => /\.(jsonl?|ndjson)(\.\d+)?$/.test(n))
        .sort();
      for (const n of names) out.push(join(p, n));
    } else out.push(p);
  }
  return out;
}

async function scan(
  files: readonly string[],
  needles: readonly string[],
  onData: (data: OtlpTracesData) => void,
  damaged: Set<string>,
): Promise<void> {
  for (const file of files) {
    let n = 0;
    const lines = createInterface({
      input: createReadStream(file),
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    for await (const line of lines) {
      n++;
      if (line === '' || !needles.some((needle) => line.includes(needle))) continue;
      try {
        onData(JSON.parse(line) as OtlpTracesData);
      } catch {
        // Only lines that could have held the ID are parsed, so only those can be counted.
        damaged.add(`${file}:${n}`);
      }
    }
  }
}

/** Spans of every trace whose ID is `id` or that has a span with `correlation.id` = `id`. */
export async function lookupInFiles(id: string, files: readonly string[]): Promise<LookupResult> {
  const wanted = id.toLowerCase();
  const traceIds = new Set<string>();
  // Pass 1: which traces? Only lines that contain the ID are parsed.
  const damaged = new Set<string>();
  const pass1 = (data: OtlpTracesData) => {
    for (const s of flatten(data)) {
      if (s.traceId === wanted || s.attributes[CORRELATION_ATTRIBUTE] === id) {
        traceIds.add(s.traceId);
      }
    }
  };
  await scan(files, [id, wanted], pass1, damaged);
  if (traceIds.size === 0) return { spans: [], skippedLines: damaged.size };
  // Pass 2: every span of those traces, from any service.
  const spans = new Map<string, FlatSpan>();
  const pass2 = (data: OtlpTracesData) => {
    for (const s of flatten(data)) {
      if (traceIds.has(s.traceId)) spans.set(`${s.traceId}/${s.spanId}`, s);
    }
  };
  await scan(files, [...traceIds], pass2, damaged);
  return { spans: [...spans.values()], skippedLines: damaged.size };
}

/** `path` under `base`, keeping a base path (`http://host/jaeger/` + `api/v3/…`). */
function endpoint(base: string, path: string): URL {
  return new URL(path.replace(/^\//, ''), base.endsWith('/') ? base : `${base}/`);
}

async function getJson(url: URL, fetcher: typeof fetch): Promise<unknown> {
  const res = await fetcher(url, {
    headers: { accept: 'application/json' },
    signal: AbortSignal.timeout(15_000),
  });
  if (res.status === 404) return undefined;
  if (!res.ok) throw new Error(`${url.origin}${url.pathname} answered ${res.status}`);
  return res.json();
}

function dataOf(body: unknown): OtlpTracesData {
  // Jaeger v3: {result: TracesData}; Tempo v2: {trace: TracesData}; Tempo v1: {batches: [...]}.
  const b = (body ?? {}) as {
    result?: OtlpTracesData;
    trace?: OtlpTracesData;
    batches?: OtlpTracesData['resourceSpans'];
    resourceSpans?: OtlpTracesData['resourceSpans'];
  };
  return b.result ?? b.trace ?? { resourceSpans: b.batches ?? b.resourceSpans ?? [] };
}

/**
 * Jaeger API v3 (OTLP JSON): a trace ID is fetched directly; a correlation ID is searched as a
 * span attribute, per service (`--service`, else every service Jaeger knows), over `lookbackHours`.
 * Jaeger v2's API v3 ignores attribute filters in a search (it answers the service's latest
 * traces), so the search asks its query API's /api/traces, which filters by tag, for the trace
 * IDs, and fetches those through API v3; a server without /api/traces is searched through API v3.
 */
export async function lookupInJaeger(
  id: string,
  base: string,
  options: { service?: string; lookbackHours: number; fetcher?: typeof fetch },
): Promise<LookupResult> {
  const fetcher = options.fetcher ?? fetch;
  const spans: FlatSpan[] = [];
  if (isTraceId(id)) {
    spans.push(
      ...flatten(
        dataOf(await getJson(endpoint(base, `/api/v3/traces/${id.toLowerCase()}`), fetcher)),
      ),
    );
  }
  if (spans.length === 0) {
    let services = options.service ? [options.service] : [];
    if (services.length === 0) {
      const body = (await getJson(endpoint(base, '/api/v3/services'), fetcher)) as {
        services?: string[];
      };
      services = body?.services ?? [];
    }
    const now = Date.now();
    for (const service of services) {
      const found = await jaegerTagSearch(id, service, base, now, options.lookbackHours, fetcher);
      if (found !== undefined) {
        for (const traceId of found) {
          spans.push(
            ...flatten(dataOf(await getJson(endpoint(base, `/api/v3/traces/${traceId}`), fetcher))),
          );
        }
        continue;
      }
      const url = endpoint(base, '/api/v3/traces');
      url.searchParams.set('query.service_name', service);
      // Jaeger's documented form: a JSON map of attributes.
      url.searchParams.set('query.attributes', JSON.stringify({ [CORRELATION_ATTRIBUTE]: id }));
      url.searchParams.set(
        'query.start_time_min',
        new Date(now - options.lookbackHours * 3_600_000).toISOString(),
      );
      url.searchParams.set('query.start_time_max', new Date(now).toISOString());
      spans.push(...flatten(dataOf(await getJson(url, fetcher))));
    }
  }
  return { spans: matchingTraces(id, dedupe(spans)), skippedLines: 0 };
}

/**
 * The IDs of a service's traces with the correlation ID as a span tag, from Jaeger's /api/traces
 * (times in microseconds); undefined when the server has no such API.
 */
async function jaegerTagSearch(
  id: string,
  service: string,
  base: string,
  now: number,
  lookbackHours: number,
  fetcher: typeof fetch,
): Promise<string[] | undefined> {
  const url = endpoint(base, '/api/traces');
  url.searchParams.set('service', service);
  url.searchParams.set('tags', JSON.stringify({ [CORRELATION_ATTRIBUTE]: id }));
  url.searchParams.set('start', String((now - lookbackHours * 3_600_000) * 1000));
  url.searchParams.set('end', String(now * 1000));
  url.searchParams.set('limit', '20');
  const body = (await getJson(url, fetcher).catch(() => undefined)) as
    | { data?: { traceID?: string }[] }
    | undefined;
  if (!body || !Array.isArray(body.data)) return undefined;
  return body.data
    .map((t) => t.traceID?.toLowerCase().padStart(32, '0') ?? '')
    .filter((t) => /^[0-9a-f]{32}$/.test(t));
}

/** Tempo: a trace ID is fetched directly; a correlation ID is found with TraceQL search. */
export async function lookupInTempo(
  id: string,
  base: string,
  options: { lookbackHours: number; fetcher?: typeof fetch },
): Promise<LookupResult> {
  const fetcher = options.fetcher ?? fetch;
  const traceIds = new Set<string>();
  if (isTraceId(id)) traceIds.add(id.toLowerCase());
  else {
    const url = endpoint(base, '/api/search');
    url.searchParams.set('q', `{ span."${CORRELATION_ATTRIBUTE}" = ${JSON.stringify(id)} }`);
    const now = Math.floor(Date.now() / 1000);
    url.searchParams.set('start', String(now - options.lookbackHours * 3600));
    url.searchParams.set('end', String(now));
    const body = (await getJson(url, fetcher)) as { traces?: { traceID?: string }[] } | undefined;
    for (const t of body?.traces ?? [])
      if (t.traceID) traceIds.add(t.traceID.toLowerCase().padStart(32, '0'));
  }
  const spans: FlatSpan[] = [];
  for (const traceId of traceIds) {
    spans.push(
      ...flatten(dataOf(await getJson(endpoint(base, `/api/traces/${traceId}`), fetcher))),
    );
  }
  return { spans: matchingTraces(id, dedupe(spans)), skippedLines: 0 };
}

/**
 * Keeps only traces that really match: a backend that ignores an unsupported filter must not
 * turn every trace of the window into a "match".
 */
function matchingTraces(id: string, spans: FlatSpan[]): FlatSpan[] {
  const wanted = id.toLowerCase();
  const traces = new Set(
    spans
      .filter((s) => s.traceId === wanted || s.attributes[CORRELATION_ATTRIBUTE] === id)
      .map((s) => s.traceId),
  );
  return spans.filter((s) => traces.has(s.traceId));
}

function dedupe(spans: FlatSpan[]): FlatSpan[] {
  return [...new Map(spans.map((s) => [`${s.traceId}/${s.spanId}`, s])).values()];
}
