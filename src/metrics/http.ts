/**
 * The HTTP RED metrics of SPEC §3, counted from the request record (request/lifecycle.ts), made
 * from Node's `http.server.request.start` diagnostics channel and closed by the response's `close`
 * event, not from spans: counts stay exact whatever the sampler decides, and they do not depend on
 * any instrumentation (only the Express route template needs Express's own request properties).
 *
 * Hot-path budget per request: three map lookups, one counter increment and one histogram record
 * (a bucket search). The counter and the histogram are the distro's own (instruments.ts) and the
 * in-flight gauge is a number read at collection time, so a request costs no SDK call.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Attributes, Meter } from '@opentelemetry/api';
import type { AccessRecord } from '../logging/access-log';
import type { RequestRecord } from '../request/record';
import { warnOnce } from '../warnings';
import {
  EndpointRegistry,
  normalizeMethod,
  normalizePath,
  OVERFLOW_ENDPOINT,
  UNMATCHED_ENDPOINT,
} from './endpoint';
import type { CounterSeries, DistroCounter, DistroHistogram, HistogramSeries } from './instruments';
import { unansweredStatus } from './outcome';
import { countUpgrades } from './upgrade';

type ExpressRequest = IncomingMessage & {
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
  /** The distro's own management server: its upgrade requests are never counted. */
  readonly isOwnServer: (server: Server) => boolean;
  /** DATALAB_ACCESS_LOG: called once per completed request. */
  readonly accessLog?: (record: AccessRecord) => void;
}

/** What the access log says of a request: its IDs (a request record, or a node:http2 exchange). */
interface RequestIds {
  readonly traceId?: string;
  readonly correlationId?: string;
}

export class HttpServerMetrics {
  /** Requests in flight, kept by whoever starts and finishes them (request/lifecycle.ts, http2.ts). */
  inFlight = 0;
  /** endpoint → method → its duration series and its counters by status code. */
  private readonly series = new Map<string, Map<string, MethodSeries>>();
  private readonly endpoints: EndpointRegistry;
  private readonly serviceAttributes: Attributes;
  private enabled = false;
  private upgradesCounted = false;

  constructor(
    meter: Meter,
    private readonly options: HttpMetricsOptions,
  ) {
    this.serviceAttributes = Object.freeze({ service: options.service });
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
  }

  enable(): void {
    this.enabled = true;
    if (this.upgradesCounted) return;
    this.upgradesCounted = true;
    countUpgrades((request, status, seconds) => {
      if (this.enabled) this.countUpgrade(request, status, seconds);
    }, this.options.isOwnServer);
  }

  disable(): void {
    this.enabled = false;
  }

  /**
   * The endpoint a request is counted under: the route template a framework matched, else
   * `__unmatched__` when a framework routed it to no route, else (no framework) the normalised
   * path. For a request Express handled, the template is also the route the server span reports:
   * instrumentation-express leaves one in the record that loses sub-app mounts.
   */
  private endpointOf(request: ExpressRequest, record: RequestRecord): string {
    if (request.app !== undefined) {
      const template = expressEndpoint(request);
      record.route = template;
      if (template !== undefined) return this.endpoints.admit(template, true);
      // Express handled it and no route or mount answered: a 404, or root middleware. (What
      // instrumentation-express left in the record is its guess, often `/`: not a template.)
      record.unmatched = true;
      return UNMATCHED_ENDPOINT;
    }
    // A route source's reading of the framework beats an instrumentation's.
    const template = record.template;
    if (template !== undefined) {
      record.route = template;
      return this.endpoints.admit(template, true);
    }
    if (record.unmatched) {
      record.route = undefined;
      return UNMATCHED_ENDPOINT;
    }
    const route = record.route;
    if (typeof route === 'string' && route !== '') return this.endpoints.admit(route, true);
    if (request.route !== undefined) {
      const template = expressRoute(request);
      if (template !== undefined) return this.endpoints.admit(template, true);
    }
    return this.endpoints.admit(normalizePath(request.url));
  }

  /** A closed node:http request, with the status it is counted with (responseStatus). */
  count(record: RequestRecord, status: number, seconds: number): void {
    const request = record.request as ExpressRequest;
    this.record(request.method, this.endpointOf(request, record), status, seconds, record);
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
        NO_IDS,
      );
    } catch (err) {
      reportInternal(err);
    }
  }

  /**
   * The one place a request is counted (and access-logged), whatever its transport.
   */
  private record(
    rawMethod: string | undefined,
    endpoint: string,
    status: number,
    seconds: number,
    ids: RequestIds,
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
    recordExemplars(ids, series.durations, counter, seconds);

    if (this.options.accessLog) {
      this.options.accessLog({
        method,
        endpoint,
        status: counter.attributes.status as string,
        durationSeconds: seconds,
        traceId: ids.traceId,
        correlationId: ids.correlationId,
      });
    }
  }

  /**
   * A request of another transport (node:http2, see http2.ts) enters. Like node:http requests
   * after disable(), one that enters then is not counted: false, and the caller does not call
   * exchangeFinished for it.
   */
  exchangeStarted(): boolean {
    if (!this.enabled) return false;
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
    ids: RequestIds,
  ): void {
    this.inFlight--;
    this.record(method, this.endpoints.admit(normalizePath(path)), status, seconds, ids);
  }
}

const NO_IDS: RequestIds = Object.freeze({});

/**
 * The status a finished (closed) response is counted with: the one sent; for a response that
 * never sent its headers, 499 when the client closed the connection first, 408 when Node's
 * request timeout answered, else 500 (see outcome.ts). The server span reports the same
 * (request/server-span.ts, endServerSpan). Reads state only: nothing is allocated, and answered responses cost one
 * property read.
 */
export function responseStatus(response: ServerResponse): number {
  if (response.headersSent) return response.statusCode;
  return unansweredStatus(response.req?.socket);
}

/** Mount path → `<mount>/*`, so that a request to mounted middleware builds no string. */
const mountTemplates = new Map<string, string>();
const MAX_CACHED_MOUNTS = 1000;
/** Distinct `<mount>/*` endpoints: an application has a few mounts, unless one has a parameter. */
const distinctMounts = new Set<string>();
export const MAX_MOUNT_TEMPLATES = 100;

/**
 * The endpoint of a request Express handled, or undefined when no route and no mount handled
 * it (the caller then counts it as `__unmatched__`). A matched route gives every mount plus the
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

/**
 * OpenMetrics exemplars (instruments.ts): a request (node:http record or node:http2 exchange)
 * whose server span is sampled becomes the latest exemplar of its latency bucket and of its
 * counter series. Only references to the span context's strings are stored; counts are not
 * touched. The span is still recording here (it ends after the count), unless the distro ended it
 * early because the handler threw: that trace is recorded too. Upgrades carry no span.
 */
function recordExemplars(
  ids: RequestIds,
  durations: HistogramSeries,
  counter: CounterSeries,
  seconds: number,
): void {
  const { span, spanEnded } = ids as Partial<Pick<RequestRecord, 'span' | 'spanEnded'>>;
  if (span === undefined) return;
  const context = span.spanContext();
  if ((context.traceFlags & 1) === 0 || !(spanEnded === true || span.isRecording())) return;
  durations.recordExemplar(seconds, context.traceId, context.spanId, ids.correlationId);
  counter.exemplar(1, context.traceId, context.spanId, ids.correlationId);
}

function reportInternal(err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    'http-metrics',
    `HTTP metrics hook failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
  );
}
