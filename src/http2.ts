/**
 * Inbound `node:http2` requests (h2c and TLS, compatibility and stream API): counted in the same
 * HTTP series as node:http, correlation ID in and out, a server span. instrumentation-http covers
 * node:http and node:https only, and http2 servers publish none of the `http.server.*` channels
 * the metrics are built on.
 *
 * Every stream of a server passes through the server's `emit('stream', …)` (the compatibility
 * API's 'request' is emitted from a 'stream' listener), so wrapping that one emit per server
 * covers both APIs and runs the handler inside the request's context. Servers are wrapped as
 * `createServer`/`createSecureServer` make them: node:http2 is loaded (~15 ms) only by the
 * applications that use it, when they first load it. Headers go out through the stream's
 * `respond` (the compatibility response calls it too), patched once on the stream prototype.
 */
import { IncomingMessage, type ServerResponse } from 'node:http';
import type * as Http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { RPCType } from '@opentelemetry/core';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
} from '@opentelemetry/instrumentation';
import { inboundCorrelationId, withCorrelationId } from './correlation/context';
import { markRequestCorrelationId } from './correlation/http';
import { CORRELATION_ATTRIBUTE } from './correlation/id';
import { inboundContext } from './correlation/inbound';
import { injectFault } from './faults';
import { type HttpServerMetrics, trackRequestRoute } from './metrics/http';
import { DISTRO_NAME, DISTRO_VERSION } from './version';
import { warnOnce } from './warnings';

const kExchange = Symbol('datalab.otel.http2Exchange');
const kWrapped = Symbol('datalab.otel.http2Wrapped');

interface Exchange {
  readonly startedAt: number;
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly id: string;
  readonly span: Span | undefined;
  done: boolean;
}

type TrackedStream = Http2.ServerHttp2Stream & { [kExchange]?: Exchange };
type Emit = (this: Http2.Http2Server, event: string | symbol, ...args: unknown[]) => boolean;
type Respond = (this: TrackedStream, ...args: unknown[]) => unknown;

export interface Http2Options {
  /** DATALAB_CORRELATION_HEADER. */
  readonly header: string;
  readonly metrics: HttpServerMetrics;
  /** Whether server spans are made (spans leave the process and the http instrumentation is on). */
  readonly tracing: boolean;
}

/** A stream closed before its response headers: the client gave up (499) or the server (500). */
function statusOf(stream: TrackedStream): number {
  if (stream.headersSent) {
    const status = Number(stream.sentHeaders?.[':status'] ?? 200);
    return Number.isInteger(status) ? status : 200;
  }
  return stream.aborted ? 499 : 500;
}

function pathOnly(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

export class Http2Instrumentation extends InstrumentationBase {
  private readonly open = new Set<TrackedStream>();
  private readonly options: Http2Options;

  constructor(options: Http2Options) {
    super(`${DISTRO_NAME}/http2`, DISTRO_VERSION, {});
    this.options = options;
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        'http2',
        ['*'],
        (exports: typeof Http2) => this.patchModule(exports),
        (exports: typeof Http2) => exports,
      ),
    ];
  }

  /**
   * The process exits with these streams open (shutdown.ts): each is counted now, as a stream
   * the server never answered, and its server span is returned for the caller to end.
   */
  abandonOpen(): Span[] {
    const spans: Span[] = [];
    for (const stream of [...this.open]) {
      const span = stream[kExchange]?.span;
      if (span !== undefined) spans.push(span);
      this.finish(stream, 500, false);
    }
    return spans;
  }

  private patchModule(exports: typeof Http2): typeof Http2 {
    // Imported (import-in-the-middle), `exports` is the module namespace: its named exports are
    // set through it, `default` is the CommonJS object that require() returns.
    const namespace =
      (exports as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === 'Module';
    const real = (
      namespace ? (exports as unknown as { default: typeof Http2 }).default : exports
    ) as typeof Http2 & { [kWrapped]?: boolean };
    for (const [name, scheme] of [
      ['createServer', 'http'],
      ['createSecureServer', 'https'],
    ] as const) {
      if (!real[kWrapped]) {
        const original = real[name] as (...args: unknown[]) => Http2.Http2Server;
        const self = this;
        const wrapped = function (this: unknown, ...args: unknown[]) {
          const server = original.apply(this, args);
          try {
            self.wrapServer(server, scheme);
          } catch (err) {
            reportInternal(err);
          }
          return server;
        };
        Object.defineProperty(real, name, {
          value: wrapped,
          writable: true,
          configurable: true,
          enumerable: true,
        });
      }
      if (namespace) (exports as unknown as Record<string, unknown>)[name] = real[name];
    }
    real[kWrapped] = true;
    return exports;
  }

  private wrapServer(server: Http2.Http2Server, scheme: string): void {
    const original = server.emit as Emit;
    const self = this;
    // `arguments` rather than rest parameters: every server event passes through here.
    server.emit = function emit(this: Http2.Http2Server, event: string | symbol) {
      // biome-ignore lint/complexity/noArguments: see above
      const all = arguments as unknown as Parameters<Emit>;
      let ctx: Context;
      try {
        if (event === 'stream') {
          ctx = self.begin(all[1] as TrackedStream, all[2] as Http2.IncomingHttpHeaders, scheme);
        } else if (event === 'request' && all[1] instanceof IncomingMessage) {
          // HTTP/1.1 on a server with `allowHTTP1`: counted by the node:http metrics already.
          ctx = self.beginHttp1(all[1], all[2] as ServerResponse, scheme);
        } else return original.apply(this, all);
      } catch (err) {
        reportInternal(err);
        return original.apply(this, all);
      }
      return context.with(ctx, () => original.apply(this, all));
    } as typeof server.emit;
  }

  /** The request's context, correlation ID and (when tracing) server span. */
  private inbound(
    headers: Record<string, string | string[] | undefined>,
    method: string | undefined,
    attributes: () => Attributes,
  ): { ctx: Context; id: string; span: Span | undefined } {
    if (!this.options.tracing) {
      const { ctx, id } = inboundContext({ headers } as never);
      return { ctx, id, span: undefined };
    }
    const parent = propagation.extract(ROOT_CONTEXT, headers);
    const span = this.tracer.startSpan(
      method ?? 'HTTP',
      { kind: SpanKind.SERVER, attributes: attributes() },
      parent,
    );
    const id = inboundCorrelationId(parent) ?? span.spanContext().traceId;
    span.setAttribute(CORRELATION_ATTRIBUTE, id);
    return { ctx: withCorrelationId(trace.setSpan(parent, span), id), id, span };
  }

  private begin(stream: TrackedStream, headers: Http2.IncomingHttpHeaders, scheme: string) {
    injectFault('http2-stream');
    const startedAt = performance.now();
    const method = headers[':method'];
    const rawPath = headers[':path'];
    const { ctx, id, span } = this.inbound(headers, method, () =>
      requestAttributes(stream, headers, scheme),
    );
    stream[kExchange] = { startedAt, method, path: pathOnly(rawPath), id, span, done: false };
    this.patchRespond(stream);
    this.open.add(stream);
    this.options.metrics.exchangeStarted();
    stream.once('close', () => {
      try {
        this.finish(stream, statusOf(stream), true);
      } catch (err) {
        reportInternal(err);
      }
    });
    return ctx;
  }

  /**
   * An HTTP/1.1 request on an `allowHTTP1` TLS server: node:http parses it and the HTTP metrics
   * count it (the `http.server.request.start` channel), but instrumentation-http wraps only
   * node:http and node:https servers. The context, the correlation ID and the span come from here.
   */
  private beginHttp1(request: IncomingMessage, response: ServerResponse, scheme: string) {
    const { ctx, id, span } = this.inbound(request.headers, request.method, () =>
      http1Attributes(request, scheme),
    );
    markRequestCorrelationId(request, id);
    if (span !== undefined) {
      // The metrics read the span from here (access log, requests still open at exit).
      trackRequestRoute(request, { type: RPCType.HTTP, span });
      const sc = span.spanContext();
      response.setHeader(
        'traceresponse',
        `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & 1 ? '01' : '00'}`,
      );
      response.once('close', () => {
        // The status the HTTP metrics count for this response (metrics/http.ts, finish).
        const status = response.headersSent ? response.statusCode : 500;
        span.setAttribute('http.response.status_code', status);
        if (status >= 500) {
          span.setAttribute('error.type', String(status));
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
      });
    }
    response.setHeader(this.options.header, id);
    return ctx;
  }

  private finish(stream: TrackedStream, status: number, closed: boolean): void {
    const exchange = stream[kExchange];
    if (exchange === undefined || exchange.done) return;
    exchange.done = true;
    this.open.delete(stream);
    const seconds = (performance.now() - exchange.startedAt) / 1000;
    this.options.metrics.exchangeFinished({
      method: exchange.method,
      path: exchange.path,
      status,
      seconds,
      traceId: exchange.span?.spanContext().traceId,
      correlationId: exchange.id,
    });
    const span = exchange.span;
    // At exit (abandonOpen) the caller ends the span.
    if (span === undefined || !closed) return;
    span.setAttribute('http.response.status_code', status);
    if (status >= 500) {
      span.setAttribute('error.type', String(status));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }

  /**
   * respond/respondWithFD/respondWithFile of ServerHttp2Stream, patched once: the correlation ID
   * and `traceresponse` go into the response headers unless the handler set them.
   */
  private patchRespond(stream: TrackedStream): void {
    const proto = Object.getPrototypeOf(stream) as Record<string | symbol, unknown>;
    if (proto[kWrapped]) return;
    proto[kWrapped] = true;
    const header = this.options.header;
    for (const [name, at] of [
      ['respond', 0],
      ['respondWithFD', 1],
      ['respondWithFile', 1],
    ] as const) {
      const original = proto[name] as Respond | undefined;
      if (typeof original !== 'function') continue;
      proto[name] = function (this: TrackedStream) {
        // biome-ignore lint/complexity/noArguments: the arguments pass through untouched
        const args = Array.prototype.slice.call(arguments);
        const exchange = this[kExchange];
        if (exchange !== undefined) {
          try {
            args[at] = withCorrelationHeaders(args[at], header, exchange);
          } catch (err) {
            reportInternal(err);
          }
        }
        return original.apply(this, args);
      };
    }
  }
}

function withCorrelationHeaders(
  headers: unknown,
  header: string,
  exchange: Exchange,
): Http2.OutgoingHttpHeaders {
  const out = { ...((headers ?? {}) as Http2.OutgoingHttpHeaders) };
  if (out[header] === undefined) out[header] = exchange.id;
  if (exchange.span !== undefined && out.traceresponse === undefined) {
    const sc = exchange.span.spanContext();
    out.traceresponse = `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & 1 ? '01' : '00'}`;
  }
  return out;
}

function http1Attributes(request: IncomingMessage, scheme: string): Attributes {
  const url = request.url ?? '';
  const q = url.indexOf('?');
  const attributes: Attributes = {
    'http.request.method': request.method,
    'url.scheme': scheme,
    'url.path': q === -1 ? url : url.slice(0, q),
    'network.protocol.name': 'http',
    'network.protocol.version': request.httpVersion,
  };
  if (q !== -1) attributes['url.query'] = url.slice(q + 1);
  const agent = request.headers['user-agent'];
  if (agent !== undefined) attributes['user_agent.original'] = agent;
  const address = request.socket?.remoteAddress;
  if (address !== undefined) attributes['client.address'] = address;
  return attributes;
}

/** The stable HTTP semantic conventions instrumentation-http records for node:http. */
function requestAttributes(
  stream: Http2.ServerHttp2Stream,
  headers: Http2.IncomingHttpHeaders,
  scheme: string,
): Attributes {
  const path = headers[':path'] ?? '';
  const q = path.indexOf('?');
  const attributes: Attributes = {
    'http.request.method': headers[':method'],
    'url.scheme': headers[':scheme'] ?? scheme,
    'url.path': q === -1 ? path : path.slice(0, q),
    'network.protocol.name': 'http',
    'network.protocol.version': '2',
  };
  if (q !== -1) attributes['url.query'] = path.slice(q + 1);
  const authority = headers[':authority'] ?? headers.host;
  if (typeof authority === 'string') {
    const colon = authority.lastIndexOf(':');
    const bracket = authority.lastIndexOf(']');
    if (colon > bracket) {
      attributes['server.address'] = authority.slice(0, colon);
      attributes['server.port'] = Number(authority.slice(colon + 1));
    } else attributes['server.address'] = authority;
  }
  const agent = headers['user-agent'];
  if (typeof agent === 'string') attributes['user_agent.original'] = agent;
  const socket = stream.session?.socket;
  if (socket?.remoteAddress !== undefined) {
    attributes['client.address'] = socket.remoteAddress;
    attributes['network.peer.address'] = socket.remoteAddress;
    if (socket.remotePort !== undefined) attributes['network.peer.port'] = socket.remotePort;
  }
  return attributes;
}

function reportInternal(err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    'http2',
    `HTTP/2 request hook failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
  );
}
