/**
 * The trace headers browser code can read: `Server-Timing: traceparent;desc="…"` (the trace of the
 * response, in `PerformanceResourceTiming.serverTiming`, for real-user monitoring) and
 * `Access-Control-Expose-Headers` naming the correlation header, `traceresponse` and
 * `Server-Timing`, which a cross-origin `fetch` may not read otherwise.
 *
 * Both are set with `traceresponse` before the application runs, so an application that sets
 * neither sends ours. Both are also headers applications (and the `cors` middleware) set
 * themselves, and their `setHeader` or `writeHead(status, headers)` would replace ours: so
 * `writeHead`, through which every node:http response's headers go out (`write`, `end` and
 * `flushHeaders` call it when the application did not), is wrapped once on the prototype and
 * appends ours to the application's values there. The application's values come first and stay
 * as they are; an application that removed one of the two headers keeps it removed.
 */
import http, { type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Span } from '@opentelemetry/api';
import { injectFault } from '../faults';
import { warnOnce } from '../warnings';
import { recordOf, traceResponse } from './record';

const SERVER_TIMING = 'server-timing';
const EXPOSE = 'access-control-expose-headers';
/** A `traceparent` metric already in a Server-Timing value. */
const TRACEPARENT_METRIC = /(?:^|,)\s*traceparent\s*(?:[;,]|$)/i;

type HeaderValue = number | string | readonly string[];
type WriteHead = (this: ServerResponse, ...args: unknown[]) => ServerResponse;

/** The names exposed to browser code and the header value naming them (useCorrelationHeader). */
let exposedNames: readonly string[] = ['x-correlation-id', 'traceresponse', 'Server-Timing'];
let exposed = exposedNames.join(', ');
let installed = false;

/** DATALAB_CORRELATION_HEADER, the first exposed name. */
export function useCorrelationHeader(header: string): void {
  if (header === exposedNames[0]) return;
  exposedNames = [header, 'traceresponse', 'Server-Timing'];
  exposed = exposedNames.join(', ');
}

export function serverTiming(span: Span): string {
  return `traceparent;desc="${traceResponse(span)}"`;
}

/** Before the application runs: the three trace headers of a traced response. */
export function setTraceHeaders(response: ServerResponse, span: Span): void {
  const value = traceResponse(span);
  response.setHeader('traceresponse', value);
  response.setHeader('Server-Timing', `traceparent;desc="${value}"`);
  response.setHeader('Access-Control-Expose-Headers', exposed);
}

/**
 * Wraps ServerResponse.prototype.writeHead, once for the process: called when traced node:http
 * responses are made, with DATALAB_CORRELATION_HEADER.
 */
export function installHeaderMerge(correlationHeader: string): void {
  useCorrelationHeader(correlationHeader);
  if (installed) return;
  installed = true;
  const proto = http.ServerResponse.prototype as unknown as {
    writeHead: WriteHead;
    writeHeader: WriteHead;
  };
  const original = proto.writeHead;
  const writeHead = function writeHead(
    this: ServerResponse,
    status: unknown,
    reason: unknown,
    obj: unknown,
  ): ServerResponse {
    // The one check an untraced response pays.
    const span = recordOf(this.req)?.span;
    if (span !== undefined && !this.headersSent) {
      // Node's rule: the headers come after a reason phrase, else second (a third wins).
      const given = typeof reason === 'string' ? obj : (obj ?? reason);
      let merged = given;
      try {
        injectFault('response-headers');
        merged = mergeTraceHeaders(this, span, given);
      } catch (err) {
        warnOnce(
          'DLOTEL_INTERNAL_ERROR',
          'response-headers',
          `response trace headers failed and were skipped: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
      if (merged !== given) {
        return original.call(this, status, typeof reason === 'string' ? reason : undefined, merged);
      }
    }
    // biome-ignore lint/complexity/noArguments: the arguments pass through untouched
    return original.apply(this, arguments as unknown as unknown[]);
  };
  proto.writeHead = writeHead;
  // Node's deprecated alias is the same function.
  if (proto.writeHeader === original) proto.writeHeader = writeHead;
}

/**
 * Our two headers merged into what the response is about to send. Headers given to writeHead
 * replace set ones of the same name (Node's rule), so a name they carry is merged into a copy of
 * them (they may be an object the application passes to every response); other names into the
 * set header. Returns `given` itself when it needs nothing.
 */
function mergeTraceHeaders(response: ServerResponse, span: Span, given: unknown): unknown {
  let timingKey: string | undefined;
  let exposeKey: string | undefined;
  const list = Array.isArray(given);
  if (list) {
    const pairs = given as unknown[];
    for (let i = 0; i < pairs.length; i += 2) {
      const name = pairs[i];
      if (typeof name !== 'string') continue;
      if (isName(name, SERVER_TIMING)) timingKey = name;
      else if (isName(name, EXPOSE)) exposeKey = name;
    }
  } else if (given !== null && typeof given === 'object') {
    for (const name in given) {
      if (!Object.hasOwn(given, name)) continue;
      if (isName(name, SERVER_TIMING)) timingKey = name;
      else if (isName(name, EXPOSE)) exposeKey = name;
    }
  }

  if (timingKey === undefined) {
    // Ours, unless the application replaced it (then merged) or removed it (then left out).
    const set = response.getHeader(SERVER_TIMING) as HeaderValue | undefined;
    if (set !== undefined && !hasTraceparent(set)) {
      response.setHeader('Server-Timing', `${joined(set)}, ${serverTiming(span)}`);
    }
  }
  if (exposeKey === undefined) {
    const set = response.getHeader(EXPOSE) as HeaderValue | undefined;
    if (set !== undefined && set !== exposed) {
      const missing = missingNames(set);
      if (missing !== '') {
        response.setHeader('Access-Control-Expose-Headers', `${joined(set)}, ${missing}`);
      }
    }
  }
  if (timingKey === undefined && exposeKey === undefined) return given;

  const timingValue = timingKey === undefined ? undefined : valuesOf(given, list, timingKey);
  const timing =
    timingValue === undefined || hasTraceparent(timingValue) ? undefined : serverTiming(span);
  const exposeValue = exposeKey === undefined ? undefined : valuesOf(given, list, exposeKey);
  const missing = exposeValue === undefined ? '' : missingNames(exposeValue);
  if (timing === undefined && missing === '') return given;
  if (list) {
    // Every pair is its own field line: ours go after the application's.
    const copy = (given as unknown[]).slice();
    if (timing !== undefined) copy.push('Server-Timing', timing);
    if (missing !== '') copy.push('Access-Control-Expose-Headers', missing);
    return copy;
  }
  const copy: OutgoingHttpHeaders = { ...(given as OutgoingHttpHeaders) };
  if (timing !== undefined && timingValue !== undefined) {
    copy[timingKey as string] = `${joined(timingValue)}, ${timing}`;
  }
  if (missing !== '' && exposeValue !== undefined) {
    copy[exposeKey as string] = `${joined(exposeValue)}, ${missing}`;
  }
  return copy;
}

/** Case-insensitive, allocating only for a name of the right length. */
function isName(name: string, lower: string): boolean {
  return name.length === lower.length && name.toLowerCase() === lower;
}

/**
 * What headers given as an object or as a flat name/value list carry for `key`; undefined for a
 * value Node itself refuses (left for Node to report).
 */
function valuesOf(given: unknown, list: boolean, key: string): HeaderValue | undefined {
  if (!list) return asValue((given as Record<string, unknown>)[key]);
  const pairs = given as unknown[];
  const lower = key.toLowerCase();
  const values: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i];
    if (typeof name !== 'string' || !isName(name, lower)) continue;
    const value = asValue(pairs[i + 1]);
    if (value === undefined) return undefined;
    values.push(joined(value));
  }
  return values;
}

function asValue(value: unknown): HeaderValue | undefined {
  if (typeof value === 'string' || typeof value === 'number') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
  return undefined;
}

function joined(value: HeaderValue): string {
  return typeof value === 'object' ? value.join(', ') : String(value);
}

/** Whether a Server-Timing value already has a `traceparent` metric. */
export function hasTraceparent(value: HeaderValue): boolean {
  if (typeof value === 'object') return value.some((v) => TRACEPARENT_METRIC.test(v));
  return TRACEPARENT_METRIC.test(String(value));
}

/** Our exposed names an Access-Control-Expose-Headers value lacks, comma-separated ('' if none). */
export function missingNames(value: HeaderValue): string {
  const listed = joined(value)
    .split(',')
    .map((name) => name.trim().toLowerCase());
  let missing = '';
  for (const name of exposedNames) {
    if (listed.includes(name.toLowerCase())) continue;
    missing = missing === '' ? name : `${missing}, ${name}`;
  }
  return missing;
}

/**
 * The same two headers in an HTTP/2 response's headers (http2.ts), an object already copied:
 * the application's values first, ours appended when missing.
 */
export function addTraceHeadersTo(headers: OutgoingHttpHeaders, span: Span): void {
  let timingKey = SERVER_TIMING;
  let exposeKey = EXPOSE;
  for (const name in headers) {
    if (isName(name, SERVER_TIMING)) timingKey = name;
    else if (isName(name, EXPOSE)) exposeKey = name;
  }
  if (headers[timingKey] === undefined) headers[timingKey] = serverTiming(span);
  else {
    const timing = asValue(headers[timingKey]);
    if (timing !== undefined && !hasTraceparent(timing)) {
      headers[timingKey] = `${joined(timing)}, ${serverTiming(span)}`;
    }
  }
  if (headers[exposeKey] === undefined) headers[exposeKey] = exposed;
  else {
    const expose = asValue(headers[exposeKey]);
    const missing = expose === undefined ? '' : missingNames(expose);
    if (missing !== '') headers[exposeKey] = `${joined(expose as HeaderValue)}, ${missing}`;
  }
}
