/**
 * The HTTP RED metrics of SPEC §3, recorded from the request lifecycle itself (Node's
 * `http.server.request.start` diagnostics channel and the response's `close` event), not from
 * spans: counts stay exact whatever the sampler decides, and they work even with the http
 * instrumentation disabled (only the route template then falls back to the normalised path).
 *
 * Hot-path budget per request: two clock reads, two listeners, three map lookups, one counter
 * increment and one histogram record (a bucket search). The counter and the histogram are the
 * distro's own (instruments.ts) and the in-flight gauge is a number read at collection time, so
 * a request costs no SDK call. With tracing on, one more property write: the span's route. With
 * the exit flush on (DATALAB_EXIT_FLUSH_TIMEOUT_MS > 0), a few property writes link the response
 * into the list of open requests and out again (open-list.ts).
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Attributes, Meter, Span } from '@opentelemetry/api';
import type { RPCMetadata } from '@opentelemetry/core';
import { requestCorrelationId } from '../correlation/http';
import { injectFault } from '../faults';
import type { AccessRecord } from '../logging/access-log';
import { warnOnce } from '../warnings';
import { EndpointRegistry, normalizeMethod, normalizePath, OVERFLOW_ENDPOINT } from './endpoint';
import type { CounterSeries, DistroCounter, DistroHistogram, HistogramSeries } from './instruments';
import { OpenList } from './open-list';
import { type AbandonedRequest, unansweredStatus } from './outcome';
import { countUpgrades } from './upgrade';

const REQUEST_START_CHANNEL = 'http.server.request.start';
const kStart = Symbol('datalab.otel.requestStart');
const kRpc = Symbol('datalab.otel.rpcMetadata');
const kResponse = Symbol('datalab.otel.response');

interface RequestStartMessage {
  request: IncomingMessage;
  response: ServerResponse;
  server: Server;
}

interface RouteHolder {
  route?: unknown;
  span?: Span;
}

type TrackedResponse = ServerResponse & { [kStart]?: number };
type TrackedRequest = IncomingMessage & {
  [kRpc]?: RouteHolder;
  [kResponse]?: TrackedResponse;
  // Set by Express: `app` on every request it handles, `route` once a route matched, `baseUrl`
  // the mount path of the router (or sub-app, or mounted middleware) handling it, `originalUrl`
  // the URL before Express stripped mount paths from `url`.
  app?: unknown;
  route?: unknown;
  baseUrl?: unknown;
  originalUrl?: unknown;
};

interface MethodSeries {
  readonly durations: HistogramSeries;
  readonly byStatus: Map<number, CounterSeries>;
}

export interface HttpMetricsOptions {
  readonly service: string;
  /** `http_requests_total` and `http_request_duration_seconds`, exported through the readers'
   * producers (instruments.ts). */
  readonly requests: DistroCounter;
  readonly durations: DistroHistogram;
  readonly maxEndpoints: number;
  /** The distro's own management server: its requests are never counted. */
  readonly isOwnServer: (server: Server) => boolean;
  /** DATALAB_ACCESS_LOG: called once per completed request. */
  readonly accessLog?: (record: AccessRecord) => void;
  /**
   * Whether open requests are tracked for the exit flush (DATALAB_EXIT_FLUSH_TIMEOUT_MS > 0);
   * without it a request costs no list insertion and removal. Default true.
   */
  readonly trackOpen?: boolean;
}

/** What the access log says of a request of another transport (node:http2). */
interface ExchangeIds {
  readonly traceId?: string;
  readonly correlationId?: string;
}

/**
 * Called from instrumentation-http's `requestHook`, inside the server span's context, with the
 * RPC metadata object that the framework instrumentations (Express) fill with the matched route
 * template. Keeping a reference lets the response's close handler read the route (and the
 * server span, for the access log) later.
 */
export function trackRequestRoute(request: IncomingMessage, rpc: RPCMetadata): void {
  (request as TrackedRequest)[kRpc] = rpc;
}

export class HttpServerMetrics {
  private inFlight = 0;
  /** endpoint → method → its duration series and its counters by status code. */
  private readonly series = new Map<string, Map<string, MethodSeries>>();
  private readonly endpoints: EndpointRegistry;
  private readonly serviceAttributes: Attributes;
  private readonly onRequestStart: (message: unknown) => void;
  private readonly onResponseClose: (this: ServerResponse) => void;
  private readonly onRequestClose: (this: IncomingMessage) => void;
  private subscribed = false;
  /** Responses not closed yet: what is still open when the process exits (abandonOpen). */
  private readonly open: OpenList<TrackedResponse> | undefined;

  constructor(
    meter: Meter,
    private readonly options: HttpMetricsOptions,
  ) {
    this.serviceAttributes = Object.freeze({ service: options.service });
    this.open = options.trackOpen === false ? undefined : new OpenList();
    this.endpoints = new EndpointRegistry(options.maxEndpoints, (endpoint) =>
      warnOnce(
        'DLOTEL_ENDPOINT_OVERFLOW',
        'endpoints',
        `more than DATALAB_MAX_ENDPOINTS=${options.maxEndpoints} distinct endpoints; ` +
          `${JSON.stringify(endpoint.slice(0, 80))} and later new ones are counted as endpoint="__overflow__"`,
      ),
    );

    meter
      .createObservableGauge('http_requests_active', {
        description: 'Inbound HTTP requests in flight.',
      })
      .addCallback((result) => result.observe(this.inFlight, this.serviceAttributes));

    // Both handlers are created once; per request only the response gets a listener.
    this.onRequestStart = (message) => {
      try {
        this.start(message as RequestStartMessage);
      } catch (err) {
        reportInternal(err);
      }
    };
    const self = this;
    this.onResponseClose = function (this: ServerResponse) {
      try {
        self.finish(this as TrackedResponse);
      } catch (err) {
        reportInternal(err);
      }
    };
    // Pipelined requests queued behind another one never get a response 'close' when the
    // socket dies; Node destroys their request with an error instead.
    this.onRequestClose = function (this: IncomingMessage) {
      try {
        const response = (this as TrackedRequest)[kResponse];
        if (response && this.errored) self.finish(response);
      } catch (err) {
        reportInternal(err);
      }
    };
  }

  enable(): void {
    if (this.subscribed) return;
    diagnosticsChannel.subscribe(REQUEST_START_CHANNEL, this.onRequestStart);
    this.subscribed = true;
    countUpgrades((request, status, seconds) => {
      if (this.subscribed) this.countUpgrade(request, status, seconds);
    }, this.options.isOwnServer);
  }

  disable(): void {
    if (!this.subscribed) return;
    diagnosticsChannel.unsubscribe(REQUEST_START_CHANNEL, this.onRequestStart);
    this.subscribed = false;
  }

  private start({ request, response, server }: RequestStartMessage): void {
    injectFault('http-metrics-start');
    if (this.options.isOwnServer(server)) return;
    (response as TrackedResponse)[kStart] = performance.now();
    (request as TrackedRequest)[kResponse] = response;
    this.inFlight++;
    this.open?.add(response as TrackedResponse);
    // 'close' fires once for every response: after 'finish', or when the socket dies first.
    response.on('close', this.onResponseClose);
    request.on('close', this.onRequestClose);
  }

  private endpointOf(request: TrackedRequest): string {
    if (request.app !== undefined) {
      const template = expressEndpoint(request);
      // With tracing on, the server span takes its `http.route` (and name) from the RPC metadata
      // when its own 'close' listener runs, which is after this one (the diagnostics channel
      // fires before the 'request' event). instrumentation-express leaves a route there that
      // loses sub-app mounts; the span gets the metrics' template instead.
      const rpc = request[kRpc];
      if (rpc !== undefined) rpc.route = template;
      if (template !== undefined) return this.endpoints.admit(template, true);
      const url = request.originalUrl;
      return this.endpoints.admit(normalizePath(typeof url === 'string' ? url : request.url));
    }
    const route = routeOf(request);
    return route === undefined
      ? this.endpoints.admit(normalizePath(request.url))
      : this.endpoints.admit(route, true);
  }

  /** Counts a closed response once; returns the status it was counted with. */
  private finish(response: TrackedResponse): number | undefined {
    injectFault('http-metrics-finish');
    const startedAt = response[kStart];
    if (startedAt === undefined) return undefined;
    response[kStart] = undefined;
    this.inFlight--;
    this.open?.delete(response);
    (response.req as TrackedRequest)[kResponse] = undefined;
    const seconds = (performance.now() - startedAt) / 1000;

    const request = response.req as TrackedRequest;
    const status = responseStatus(response);
    this.record(request.method, this.endpointOf(request), status, seconds, request);
    return status;
  }

  /**
   * An HTTP/1.1 Upgrade (WebSocket) request, once its handshake was answered (upgrade.ts): Node
   * hands those to 'upgrade' listeners with the raw socket, so no response closes for them. They
   * are counted under their normalised path; they are not requests in flight.
   */
  countUpgrade(request: IncomingMessage, status: number, seconds: number): void {
    try {
      this.record(
        request.method,
        this.endpoints.admit(normalizePath(request.url)),
        status,
        seconds,
        request as TrackedRequest,
      );
    } catch (err) {
      reportInternal(err);
    }
  }

  /**
   * The one place a request is counted (and access-logged), whatever its transport: `source` is
   * the node:http request, or the IDs of a node:http2 exchange, read only for the access log.
   */
  private record(
    rawMethod: string | undefined,
    endpoint: string,
    status: number,
    seconds: number,
    source: TrackedRequest | ExchangeIds,
  ): void {
    const method = normalizeMethod(rawMethod);

    // Nested maps keyed by values the request already holds: no key string built per request.
    let byMethod = this.series.get(endpoint);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.series.set(endpoint, byMethod);
    }
    let series = byMethod.get(method);
    if (series === undefined) {
      const service = this.options.service;
      series = {
        durations: this.options.durations.createSeries(
          Object.freeze({ method, endpoint, service }),
        ),
        byStatus: new Map(),
      };
      byMethod.set(method, series);
    }
    let counter = series.byStatus.get(status);
    if (counter === undefined) {
      counter = this.options.requests.createSeries(
        Object.freeze({ method, endpoint, status: String(status), service: this.options.service }),
      );
      series.byStatus.set(status, counter);
    }
    counter.count++;
    series.durations.record(seconds);

    if (this.options.accessLog) {
      const request = source instanceof IncomingMessage ? (source as TrackedRequest) : undefined;
      this.options.accessLog({
        method,
        endpoint,
        status: counter.attributes.status as string,
        durationSeconds: seconds,
        traceId:
          request === undefined
            ? (source as ExchangeIds).traceId
            : request[kRpc]?.span?.spanContext().traceId,
        correlationId:
          request === undefined
            ? (source as ExchangeIds).correlationId
            : requestCorrelationId(request),
      });
    }
  }
  /**
   * The process is exiting with these responses still open (shutdown.ts): each is counted now
   * (one that never sent its headers as unanswered, 500) and its server span, when traced, is
   * returned with that status for the caller to end the same way, since no 'close' will come.
   */
  abandonOpen(): AbandonedRequest[] {
    const abandoned: AbandonedRequest[] = [];
    if (this.open === undefined) return abandoned;
    for (const response of this.open.toArray()) {
      try {
        const span = (response.req as TrackedRequest)[kRpc]?.span;
        const status = this.finish(response);
        if (span !== undefined && status !== undefined) abandoned.push({ span, status });
      } catch (err) {
        reportInternal(err);
      }
    }
    return abandoned;
  }

  /**
   * A request of another transport (node:http2, see http2.ts) enters. Like node:http requests
   * after disable(), one that enters then is not counted: false, and the caller does not call
   * exchangeFinished for it.
   */
  exchangeStarted(): boolean {
    if (!this.subscribed) return false;
    this.inFlight++;
    return true;
  }

  /**
   * …and completes: counted in the same series, under the same endpoint rules, as a node:http
   * request (no route template: no framework routes node:http2 requests).
   */
  exchangeFinished(
    method: string | undefined,
    path: string | undefined,
    status: number,
    seconds: number,
    ids: ExchangeIds,
  ): void {
    this.inFlight--;
    this.record(method, this.endpoints.admit(normalizePath(path)), status, seconds, ids);
  }
}

/**
 * The status a finished (closed) response is counted with: the one sent; for a response that
 * never sent its headers, 499 when the client closed the connection first, 408 when Node's
 * request timeout answered, else 500 (see outcome.ts). The server span reports the same
 * (instrumentations.ts). Reads state only: nothing is allocated, and answered responses cost one
 * property read.
 */
export function responseStatus(response: ServerResponse): number {
  if (response.headersSent) return response.statusCode;
  return unansweredStatus(response.req?.socket);
}

/** A route template some framework instrumentation put in the RPC metadata, else undefined. */
function routeOf(request: TrackedRequest): string | undefined {
  const route = request[kRpc]?.route;
  if (typeof route === 'string' && route !== '') return route;
  return request.route === undefined ? undefined : expressRoute(request);
}

/** Mount path → `<mount>/*`, so that a request to mounted middleware builds no string. */
const mountTemplates = new Map<string, string>();
const MAX_CACHED_MOUNTS = 1000;
/** Distinct `<mount>/*` endpoints: an application has a few mounts, unless one has a parameter. */
const distinctMounts = new Set<string>();
export const MAX_MOUNT_TEMPLATES = 100;

/**
 * The endpoint of a request Express handled, or undefined when no route and no mount handled
 * it (the caller then normalises the original path). A matched route gives every mount plus the
 * route's path (`/admin` + `/users/:id`); middleware mounted under a path that answered without
 * a route (`express.static` under `/static`, a proxy under `/proxy`) gives the mount path plus
 * `/*`, never the path below the mount (Express strips the mount from `req.url`). Express
 * restores `baseUrl` when a request leaves a router unanswered, so a 404 is not credited to the
 * router it passed through.
 */
export function expressEndpoint(request: {
  route?: unknown;
  baseUrl?: unknown;
}): string | undefined {
  if (request.route !== undefined) return expressRoute(request);
  const base = request.baseUrl;
  if (typeof base !== 'string' || base === '' || base === '/') return undefined;
  let template = mountTemplates.get(base);
  if (template === undefined) {
    template = mountTemplate(base);
    if (!distinctMounts.has(template)) {
      if (distinctMounts.size >= MAX_MOUNT_TEMPLATES) {
        warnOnce(
          'DLOTEL_ENDPOINT_OVERFLOW',
          'express-mounts',
          `more than ${MAX_MOUNT_TEMPLATES} Express mount paths answered without a route (a mount ` +
            "path with a parameter, such as app.use('/:tenant/static', …), gives one per value); " +
            'later ones are counted as endpoint="__overflow__"',
        );
        template = OVERFLOW_ENDPOINT;
      } else {
        distinctMounts.add(template);
      }
    }
    if (mountTemplates.size < MAX_CACHED_MOUNTS) mountTemplates.set(base, template);
  }
  return template;
}

/** `/static` → `/static/*`: the one form under which a mount's unrouted requests are counted. */
export function mountTemplate(base: string): string {
  return `${normalizePath(base)}/*`;
}

const kTemplates = Symbol('datalab.otel.routeTemplates');

/**
 * Distinct templates one route may be counted under. More than a few means a mount path carries
 * a parameter (`app.use('/:tenant', router)`): Express reports its value, not its pattern, so each
 * value would be a series of its own, and route templates are exempt from DATALAB_MAX_ENDPOINTS.
 */
export const MAX_TEMPLATES_PER_ROUTE = 8;
const MAX_CACHED_BASES = 256;

interface RouteTemplates {
  // The last mount path seen and its template: most routes are only ever reached under one.
  lastBase: string;
  lastTemplate: string | undefined;
  readonly byBase: Map<string, string | undefined>;
  readonly distinct: Set<string | undefined>;
}

type ExpressRouteObject = { path?: unknown; [kTemplates]?: RouteTemplates };

/**
 * The template from Express's own request properties. Kept on Express's route object, so a
 * request builds no string: the endpoint lookups then hash a string V8 has hashed before.
 */
export function expressRoute(request: { route?: unknown; baseUrl?: unknown }): string | undefined {
  const route = request.route as ExpressRouteObject | null | undefined;
  if (route === null || typeof route !== 'object') return undefined;
  const base = typeof request.baseUrl === 'string' ? request.baseUrl : '';
  let cache = route[kTemplates];
  if (cache !== undefined && cache.lastBase === base) return cache.lastTemplate;
  if (cache === undefined) {
    cache = { lastBase: base, lastTemplate: undefined, byBase: new Map(), distinct: new Set() };
    route[kTemplates] = cache;
  }
  let template = cache.byBase.get(base);
  if (template === undefined && !cache.byBase.has(base)) {
    // `baseUrl` is the matched prefix, not the mount's pattern: ID values in it (a mount such as
    // `/users/:id/posts`) become `:id`; other values are bounded per route below.
    template = routeTemplate(base === '' ? base : normalizePath(base), route.path);
    if (!cache.distinct.has(template)) {
      if (cache.distinct.size >= MAX_TEMPLATES_PER_ROUTE) {
        warnOnce(
          'DLOTEL_ENDPOINT_OVERFLOW',
          `express-route:${String(route.path)}`,
          `the Express route ${JSON.stringify(String(route.path).slice(0, 80))} was reached under ` +
            `more than ${MAX_TEMPLATES_PER_ROUTE} mount paths (a mount path with a parameter, ` +
            `such as app.use('/:tenant', router), gives one per value); later ones are counted ` +
            'as endpoint="__overflow__"',
        );
        template = OVERFLOW_ENDPOINT;
      } else {
        cache.distinct.add(template);
      }
    }
    if (cache.byBase.size < MAX_CACHED_BASES) cache.byBase.set(base, template);
  }
  cache.lastBase = base;
  cache.lastTemplate = template;
  return template;
}

/**
 * The mount path of the router that matched plus the route's path, built as
 * instrumentation-express builds `http.route` (a `/` route adds nothing to its mount path), so
 * both modes give the same `endpoint`.
 */
export function routeTemplate(base: string, path: unknown): string | undefined {
  let tail: string;
  if (typeof path === 'string') tail = path;
  else if (path instanceof RegExp) tail = path.toString();
  else if (Array.isArray(path)) tail = path.map(String).join(',');
  else return undefined;
  const joined = tail === '/' || tail === '/*' ? base : base + tail;
  if (joined === '') return '/';
  return joined.includes('//') ? joined.replace(/\/{2,}/g, '/') : joined;
}

function reportInternal(err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    'http-metrics',
    `HTTP metrics hook failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
  );
}
