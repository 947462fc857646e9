/**
 * Outbound HTTP RED metrics (SPEC §3): `http_client_requests_total{method,peer,status,service}`
 * and `http_client_request_duration_seconds{method,peer,service}`, for node:http/https client
 * requests and for undici (which `fetch` is built on), recorded from the diagnostics channels Node
 * and undici publish, not from spans: exact whatever the sampler decides, tracing on or off.
 *
 * A call is counted once, when its outcome is known: the response headers (the status code), or
 * the error that ended it before them (`timeout`, `aborted`, `error`). Its duration runs from the
 * request's creation to that moment, so it is the time to the response headers, not including
 * the body download: a body the application never reads must not keep a call uncounted.
 *
 * Calls made inside a context where tracing is suppressed are the distro's own (its OTLP
 * exporters, its health checks: see @opentelemetry/core's `suppressTracing`) and are not counted.
 *
 * Hot-path budget per call: one context read and one clock read at creation, one listener added
 * (node:http only, to tell a timeout from other errors), a property on the request object for the
 * start time; at the outcome one clock read, a cached peer lookup, two map lookups, one counter
 * increment and one histogram record. No closure and no key string is built per call.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { context } from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';
import type { Config } from '../config';
import { warnOnce } from '../warnings';
import { EndpointRegistry, normalizeMethod, OVERFLOW_ENDPOINT } from './endpoint';
import {
  type CounterSeries,
  DistroCounter,
  DistroHistogram,
  type HistogramSeries,
} from './instruments';

/** The peer value counted once the cap on distinct peers is reached. */
export const OVERFLOW_PEER = OVERFLOW_ENDPOINT;

/** `status` of a call that ended before any response, by why it ended. */
export const STATUS_TIMEOUT = 'timeout';
export const STATUS_ABORTED = 'aborted';
export const STATUS_ERROR = 'error';
export type FailedStatus = typeof STATUS_TIMEOUT | typeof STATUS_ABORTED | typeof STATUS_ERROR;

// `created` is published in the ClientRequest constructor, so in the caller's context and before
// any wait for a socket (Node 22.15, the oldest supported, has it; `start` comes once the request
// has its socket, and is not needed).
const HTTP_CREATED = 'http.client.request.created';
const HTTP_RESPONSE = 'http.client.response.finish';
const HTTP_ERROR = 'http.client.request.error';
const UNDICI_CREATE = 'undici:request:create';
const UNDICI_HEADERS = 'undici:request:headers';
const UNDICI_ERROR = 'undici:request:error';

/** performance.now() at the call's start; DONE once counted, or for a call never counted. */
const kStart = Symbol('datalab.otel.clientStart');
/** Set by the request's 'timeout' event: the error that follows is a timeout. */
const kTimedOut = Symbol('datalab.otel.clientTimedOut');
const DONE = -1;

interface Tracked {
  [kStart]?: number;
  [kTimedOut]?: boolean;
}
type TrackedClientRequest = ClientRequest & Tracked & { host?: string; protocol?: string };

/** What undici's channels carry of a request (undici's own Request, not the fetch one). */
interface UndiciRequest extends Tracked {
  readonly origin?: unknown;
  readonly method?: string;
}

interface MethodSeries {
  readonly durations: HistogramSeries;
  readonly byStatus: Map<number | string, CounterSeries>;
}

export interface HttpClientMetricsOptions {
  readonly service: string;
  /** `http_client_requests_total` and `http_client_request_duration_seconds`. */
  readonly requests: DistroCounter;
  readonly durations: DistroHistogram;
  readonly maxPeers: number;
}

/** Peers are looked up by the raw authority; past this many the lookup is not cached. */
const MAX_CACHED_AUTHORITIES = 1000;

/**
 * `host:port` from an authority (a Host header, `host[:port]`): lower case, the scheme's default
 * port added when there is none, an IPv6 address in brackets. Pure.
 */
export function formatPeer(authority: string, https: boolean): string {
  let host = authority;
  const at = host.lastIndexOf('@');
  if (at !== -1) host = host.slice(at + 1);
  host = host.toLowerCase();
  const defaultPort = https ? '443' : '80';
  if (host === '') return `localhost:${defaultPort}`;
  if (host.charCodeAt(0) === 91 /* [ */) {
    const close = host.indexOf(']');
    if (close === -1) return `${host}]:${defaultPort}`;
    if (close === host.length - 1) return `${host}:${defaultPort}`;
    if (host.charCodeAt(close + 1) === 58 /* : */ && close + 2 < host.length) return host;
    return `${host.slice(0, close + 1)}:${defaultPort}`;
  }
  const colon = host.indexOf(':');
  if (colon === -1) return `${host}:${defaultPort}`;
  // A bare IPv6 address (`::1`, as a hostname option gives it): bracketed, default port.
  if (host.indexOf(':', colon + 1) !== -1) return `[${host}]:${defaultPort}`;
  if (colon === host.length - 1) return `${host}${defaultPort}`;
  return host;
}

/**
 * `host:port` of an origin as undici holds it (`http://host:port`, or a URL whose string form
 * may end in `/`). undefined when it is no http(s) origin. Pure.
 */
export function peerOfOrigin(origin: string): string | undefined {
  let https: boolean;
  let start: number;
  if (origin.startsWith('http://')) {
    https = false;
    start = 7;
  } else if (origin.startsWith('https://')) {
    https = true;
    start = 8;
  } else return undefined;
  const slash = origin.indexOf('/', start);
  return formatPeer(origin.slice(start, slash === -1 ? origin.length : slash), https);
}

const TIMEOUT_CODES = new Set([
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);
const ABORT_CODES = new Set(['ABORT_ERR', 'UND_ERR_ABORTED']);

/**
 * The status of a call that ended with `error` before a response: `timeout` when a timeout ended
 * it (the request's own 'timeout' event, an `AbortSignal.timeout()`, a connect or headers
 * timeout), `aborted` when the application cancelled it otherwise, else `error` (refused,
 * reset, DNS failure, TLS failure...). Pure.
 */
export function failedStatus(error: unknown, timedOut = false): FailedStatus {
  if (timedOut) return STATUS_TIMEOUT;
  if (typeof error !== 'object' || error === null) return STATUS_ERROR;
  const { name, code, cause } = error as { name?: unknown; code?: unknown; cause?: unknown };
  if (name === 'TimeoutError') return STATUS_TIMEOUT;
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return STATUS_TIMEOUT;
  if (name === 'AbortError' || (typeof code === 'string' && ABORT_CODES.has(code))) {
    // An abort by AbortSignal.timeout() carries the TimeoutError as its cause (node:http).
    const causeName = typeof cause === 'object' && cause !== null ? (cause as Error).name : '';
    return causeName === 'TimeoutError' ? STATUS_TIMEOUT : STATUS_ABORTED;
  }
  return STATUS_ERROR;
}

export class HttpClientMetrics {
  /** peer → method → its duration series and its counters by status. */
  private readonly series = new Map<string, Map<string, MethodSeries>>();
  private readonly peers: EndpointRegistry;
  /** Raw authority → admitted peer, one map per scheme; undici's origins → admitted peer. */
  private readonly httpPeers = new Map<string, string>();
  private readonly httpsPeers = new Map<string, string>();
  private readonly originPeers = new Map<string, string>();
  private subscribed = false;

  // Created once; per call only the request's 'timeout' listener is added, and it is shared.
  private readonly onHttpCreated = (message: unknown) =>
    guard(this, this.httpCreated, (message as { request: TrackedClientRequest }).request);
  private readonly onHttpResponse = (message: unknown) => guard(this, this.httpResponse, message);
  private readonly onHttpError = (message: unknown) => guard(this, this.httpError, message);
  private readonly onUndiciCreate = (message: unknown) => guard(this, this.undiciCreate, message);
  private readonly onUndiciHeaders = (message: unknown) => guard(this, this.undiciHeaders, message);
  private readonly onUndiciError = (message: unknown) => guard(this, this.undiciError, message);

  constructor(private readonly options: HttpClientMetricsOptions) {
    this.peers = new EndpointRegistry(options.maxPeers, (peer) =>
      warnOnce(
        'DLOTEL_PEER_OVERFLOW',
        'peers',
        `more than DATALAB_MAX_PEERS=${options.maxPeers} distinct peers of outbound HTTP calls; ` +
          `${JSON.stringify(peer.slice(0, 80))} and later new ones are counted as peer="__overflow__"`,
      ),
    );
  }

  enable(): void {
    if (this.subscribed) return;
    diagnosticsChannel.subscribe(HTTP_CREATED, this.onHttpCreated);
    diagnosticsChannel.subscribe(HTTP_RESPONSE, this.onHttpResponse);
    diagnosticsChannel.subscribe(HTTP_ERROR, this.onHttpError);
    diagnosticsChannel.subscribe(UNDICI_CREATE, this.onUndiciCreate);
    diagnosticsChannel.subscribe(UNDICI_HEADERS, this.onUndiciHeaders);
    diagnosticsChannel.subscribe(UNDICI_ERROR, this.onUndiciError);
    this.subscribed = true;
  }

  disable(): void {
    if (!this.subscribed) return;
    diagnosticsChannel.unsubscribe(HTTP_CREATED, this.onHttpCreated);
    diagnosticsChannel.unsubscribe(HTTP_RESPONSE, this.onHttpResponse);
    diagnosticsChannel.unsubscribe(HTTP_ERROR, this.onHttpError);
    diagnosticsChannel.unsubscribe(UNDICI_CREATE, this.onUndiciCreate);
    diagnosticsChannel.unsubscribe(UNDICI_HEADERS, this.onUndiciHeaders);
    diagnosticsChannel.unsubscribe(UNDICI_ERROR, this.onUndiciError);
    this.subscribed = false;
  }

  private httpCreated(request: TrackedClientRequest): void {
    // The channel runs in the caller's context: the distro's exporters call inside a suppressed one.
    if (isTracingSuppressed(context.active())) {
      request[kStart] = DONE;
      return;
    }
    request[kStart] = performance.now();
    request.on('timeout', markTimedOut);
  }

  private httpResponse(message: unknown): void {
    const { request, response } = message as {
      request: TrackedClientRequest;
      response: IncomingMessage;
    };
    const startedAt = request[kStart];
    if (startedAt === undefined || startedAt === DONE) return;
    request[kStart] = DONE;
    this.record(request.method, this.httpPeer(request), response.statusCode ?? 0, startedAt);
  }

  private httpError(message: unknown): void {
    const { request, error } = message as { request: TrackedClientRequest; error: unknown };
    const startedAt = request[kStart];
    if (startedAt === undefined || startedAt === DONE) return;
    request[kStart] = DONE;
    const status = failedStatus(error, request[kTimedOut] === true);
    this.record(request.method, this.httpPeer(request), status, startedAt);
  }

  private undiciCreate(message: unknown): void {
    const request = (message as { request: UndiciRequest }).request;
    if (request[kStart] !== undefined) return;
    request[kStart] = isTracingSuppressed(context.active()) ? DONE : performance.now();
  }

  private undiciHeaders(message: unknown): void {
    const { request, response } = message as {
      request: UndiciRequest;
      response: { statusCode?: number };
    };
    const startedAt = request[kStart];
    if (startedAt === undefined || startedAt === DONE) return;
    const status = response.statusCode ?? 0;
    // undici announces 1xx interim responses (103 Early Hints...) too; the final one follows.
    if (status < 200 && status !== 101) return;
    request[kStart] = DONE;
    this.record(request.method, this.undiciPeer(request), status, startedAt);
  }

  private undiciError(message: unknown): void {
    const { request, error } = message as { request: UndiciRequest; error: unknown };
    const startedAt = request[kStart];
    if (startedAt === undefined || startedAt === DONE) return;
    request[kStart] = DONE;
    this.record(request.method, this.undiciPeer(request), failedStatus(error), startedAt);
  }

  /** The Host header Node built (or the application set), else the host option. */
  private httpPeer(request: TrackedClientRequest): string {
    const https = request.protocol === 'https:';
    const header = request.getHeader('host');
    const authority = typeof header === 'string' ? header : (request.host ?? '');
    return this.admit(authority, https);
  }

  private undiciPeer(request: UndiciRequest): string {
    const origin = request.origin;
    const text = typeof origin === 'string' ? origin : String(origin);
    const cache = this.originPeers;
    const cached = cache.get(text);
    if (cached !== undefined) return cached;
    const peer = peerOfOrigin(text);
    const admitted = peer === undefined ? OVERFLOW_PEER : this.peers.admit(peer);
    if (cache.size < MAX_CACHED_AUTHORITIES) cache.set(text, admitted);
    return admitted;
  }

  private admit(authority: string, https: boolean): string {
    const cache = https ? this.httpsPeers : this.httpPeers;
    const cached = cache.get(authority);
    if (cached !== undefined) return cached;
    const admitted = this.peers.admit(formatPeer(authority, https));
    if (cache.size < MAX_CACHED_AUTHORITIES) cache.set(authority, admitted);
    return admitted;
  }

  private record(
    rawMethod: string | undefined,
    peer: string,
    status: number | string,
    startedAt: number,
  ): void {
    const seconds = (performance.now() - startedAt) / 1000;
    const method = normalizeMethod(rawMethod);
    let byMethod = this.series.get(peer);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.series.set(peer, byMethod);
    }
    let series = byMethod.get(method);
    if (series === undefined) {
      series = {
        durations: this.options.durations.createSeries(
          Object.freeze({ method, peer, service: this.options.service }),
        ),
        byStatus: new Map(),
      };
      byMethod.set(method, series);
    }
    let counter = series.byStatus.get(status);
    if (counter === undefined) {
      counter = this.options.requests.createSeries(
        Object.freeze({ method, peer, status: String(status), service: this.options.service }),
      );
      series.byStatus.set(status, counter);
    }
    counter.count++;
    series.durations.record(seconds);
  }
}

function markTimedOut(this: Tracked): void {
  this[kTimedOut] = true;
}

function guard<T>(
  self: HttpClientMetrics,
  handler: (this: HttpClientMetrics, arg: T) => void,
  arg: T,
): void {
  try {
    handler.call(self, arg);
  } catch (err) {
    warnOnce(
      'DLOTEL_INTERNAL_ERROR',
      'http-client-metrics',
      `Outbound HTTP metrics hook failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/**
 * The outbound metrics as the configuration asks (DATALAB_HTTP_CLIENT_METRICS,
 * DATALAB_MAX_PEERS), their instruments added to the distro's (read by every reader's producer
 * at collection), subscribed; undefined when turned off.
 */
export function startHttpClientMetrics(
  config: Pick<Config, 'serviceName' | 'metrics'>,
  instruments: { counters: DistroCounter[]; histograms: DistroHistogram[] },
): HttpClientMetrics | undefined {
  if (!config.metrics.httpClient) return undefined;
  const requests = new DistroCounter({
    name: 'http_client_requests_total',
    description: 'Outbound HTTP calls completed (response headers received) or failed.',
  });
  const durations = new DistroHistogram({
    name: 'http_client_request_duration_seconds',
    description: 'Outbound HTTP call latency, from the request to its response headers or failure.',
    unit: 's',
    boundaries: config.metrics.httpBuckets,
  });
  instruments.counters.push(requests);
  instruments.histograms.push(durations);
  const metrics = new HttpClientMetrics({
    service: config.serviceName,
    requests,
    durations,
    maxPeers: config.metrics.maxPeers,
  });
  metrics.enable();
  return metrics;
}
