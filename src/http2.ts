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
  trace,
} from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
} from '@opentelemetry/instrumentation';
import { inboundCorrelationId, withCorrelationId } from './correlation/context';
import { CORRELATION_ATTRIBUTE } from './correlation/id';
import { inboundContext } from './correlation/inbound';
import { injectFault } from './faults';
import type { HttpServerMetrics } from './metrics/http';
import { OpenList } from './metrics/open-list';
import {
  type AbandonedRequest,
  applyOutcome,
  CLIENT_CLOSED_REQUEST,
  unansweredStatus,
} from './metrics/outcome';
import { DISTRO_NAME, DISTRO_VERSION } from './version';
import { warnOnce } from './warnings';

const kExchange = Symbol('datalab.otel.http2Exchange');
const kWrapped = Symbol('datalab.otel.http2Wrapped');

interface Exchange {
  readonly startedAt: number;
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly correlationId: string;
  readonly traceId: string | undefined;
  readonly span: Span | undefined;
  /** Whether the HTTP metrics counted it in (exchangeStarted). */
  readonly counted: boolean;
  /** The server closed or destroyed the stream (or its session) before it ended. */
  closedHere: boolean;
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
  /** Whether open streams are tracked for the exit flush (DATALAB_EXIT_FLUSH_TIMEOUT_MS > 0). */
  readonly trackOpen?: boolean;
  /** Completes the node:http request record of an HTTP/1.1 request (allowHTTP1). */
  readonly http1: (request: IncomingMessage, response: ServerResponse, scheme: string) => Context;
}

/**
 * The status a closed stream is counted with: the one sent; for a stream closed before its
 * response headers, 499 when the client closed it (its RST_STREAM, or its connection closing:
 * Node closes the stream from nghttp2's callback), else 500, as for node:http (outcome.ts). Node
 * sets `aborted` for both, so the server's own closes are recognised where they start: a
 * `close()`/`destroy()` of a stream Node had not closed yet (patchStreamProto), which is also
 * how a session timeout, `session.destroy()` and a server-side error reach the stream, unless
 * the session's socket shows the client closing it (then the session destroys its streams).
 */
function statusOf(stream: TrackedStream, exchange: Exchange): number {
  if (stream.headersSent) {
    const status = Number(stream.sentHeaders?.[':status'] ?? 200);
    return Number.isInteger(status) ? status : 200;
  }
  return stream.aborted && !exchange.closedHere ? CLIENT_CLOSED_REQUEST : 500;
}

/**
 * Whether the client closed the connection a stream's session runs on: its FIN or reset, which
 * make the session destroy its streams, as the server's own `session.destroy()` would.
 */
function peerClosed(stream: TrackedStream): boolean {
  try {
    const socket = stream.session?.socket;
    return socket !== undefined && unansweredStatus(socket) === CLIENT_CLOSED_REQUEST;
  } catch {
    // ERR_HTTP2_SOCKET_UNBOUND: the session let go of its socket; nothing says the client did.
    return false;
  }
}

function pathOnly(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

export class Http2Instrumentation extends InstrumentationBase {
  private readonly open: OpenList<TrackedStream> | undefined;
  private readonly options: Http2Options;
  private protoPatched = false;
  /** The one 'close' listener of every stream. */
  private readonly onStreamClose: (this: TrackedStream) => void;

  constructor(options: Http2Options) {
    super(`${DISTRO_NAME}/http2`, DISTRO_VERSION, {});
    this.options = options;
    this.open = options.trackOpen === false ? undefined : new OpenList();
    const self = this;
    this.onStreamClose = function (this: TrackedStream) {
      try {
        const exchange = this[kExchange];
        if (exchange !== undefined) self.finish(this, statusOf(this, exchange), true);
      } catch (err) {
        reportInternal(err);
      }
    };
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
  abandonOpen(): AbandonedRequest[] {
    const abandoned: AbandonedRequest[] = [];
    if (this.open === undefined) return abandoned;
    for (const stream of this.open.toArray()) {
      const exchange = stream[kExchange];
      if (exchange === undefined) continue;
      // Headers already sent (a stream still being written): counted with their status.
      const status = stream.headersSent ? statusOf(stream, exchange) : 500;
      this.finish(stream, status, false);
      if (exchange.span !== undefined) abandoned.push({ span: exchange.span, status });
    }
    return abandoned;
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

  /**
   * The request's context, correlation ID and (when tracing) server span; `attributes` is
   * computed by the caller only when tracing.
   */
  private inbound(
    headers: Record<string, string | string[] | undefined>,
    method: string | undefined,
    attributes: Attributes | undefined,
  ): { ctx: Context; id: string; span: Span | undefined } {
    if (!this.options.tracing) {
      const { ctx, id } = inboundContext({ headers } as never);
      return { ctx, id, span: undefined };
    }
    const parent = propagation.extract(ROOT_CONTEXT, headers);
    const span = this.tracer.startSpan(
      method ?? 'HTTP',
      { kind: SpanKind.SERVER, attributes },
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
    const { ctx, id, span } = this.inbound(
      headers,
      method,
      this.options.tracing ? requestAttributes(stream, headers, scheme) : undefined,
    );
    if (!this.protoPatched) this.patchStreamProto(stream);
    stream[kExchange] = {
      startedAt,
      method,
      path: pathOnly(rawPath),
      correlationId: id,
      traceId: span?.spanContext().traceId,
      span,
      counted: this.options.metrics.exchangeStarted(),
      closedHere: false,
      done: false,
    };
    this.open?.add(stream);
    // 'close' is emitted once per stream.
    stream.on('close', this.onStreamClose);
    return ctx;
  }

  /**
   * An HTTP/1.1 request on an `allowHTTP1` TLS server: node:http parses it and announces it on
   * the `http.server.request.start` channel, but its `request` event is this server's, not a
   * node:http server's: the request record is completed from here (request/lifecycle.ts).
   */
  private beginHttp1(request: IncomingMessage, response: ServerResponse, scheme: string) {
    return this.options.http1(request, response, scheme);
  }

  private finish(stream: TrackedStream, status: number, closed: boolean): void {
    const exchange = stream[kExchange];
    if (exchange === undefined || exchange.done) return;
    exchange.done = true;
    this.open?.delete(stream);
    if (exchange.counted) {
      const seconds = (performance.now() - exchange.startedAt) / 1000;
      this.options.metrics.exchangeFinished(
        exchange.method,
        exchange.path,
        status,
        seconds,
        exchange,
      );
    }
    const span = exchange.span;
    // At exit (abandonOpen) the caller ends the span.
    if (span === undefined || !closed) return;
    applyOutcome(span, status);
    span.end();
  }

  /**
   * ServerHttp2Stream's prototype, patched once, on the first stream:
   * - respond/respondWithFD/respondWithFile: the correlation ID and `traceresponse` go into the
   *   response headers unless the handler set them;
   * - close/destroy: called on a stream Node has not closed yet, the server is closing it (the
   *   application, a session timeout or `session.destroy()`); when the client's RST_STREAM or its
   *   connection closes a stream, Node marks it closed first (statusOf).
   */
  private patchStreamProto(stream: TrackedStream): void {
    this.protoPatched = true;
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
      // Fixed parameters, not a copy of `arguments`: each of these takes at most three.
      proto[name] = function (this: TrackedStream, a: unknown, b: unknown, c: unknown) {
        const exchange = this[kExchange];
        if (exchange !== undefined) {
          try {
            if (at === 0) a = withCorrelationHeaders(a, header, exchange);
            else b = withCorrelationHeaders(b, header, exchange);
          } catch (err) {
            reportInternal(err);
          }
        }
        return original.call(this, a, b, c);
      };
    }
    for (const name of ['close', 'destroy'] as const) {
      const original = (proto[name] ?? (stream as unknown as Record<string, unknown>)[name]) as
        | Respond
        | undefined;
      if (typeof original !== 'function') continue;
      proto[name] = function (this: TrackedStream) {
        const exchange = this[kExchange];
        if (exchange !== undefined && !this.closed) exchange.closedHere = !peerClosed(this);
        // biome-ignore lint/complexity/noArguments: the arguments pass through untouched
        return original.apply(this, arguments as unknown as unknown[]);
      };
    }
  }
}

function withCorrelationHeaders(
  headers: unknown,
  header: string,
  exchange: Exchange,
): Http2.OutgoingHttpHeaders {
  const given = headers as Http2.OutgoingHttpHeaders | null | undefined;
  const addTrace = exchange.span !== undefined && given?.traceresponse === undefined;
  if (given?.[header] !== undefined && !addTrace) return given;
  // A copy: an application may pass the same headers object to every response.
  const out = { ...given };
  if (out[header] === undefined) out[header] = exchange.correlationId;
  if (exchange.span !== undefined && addTrace) {
    const sc = exchange.span.spanContext();
    out.traceresponse = `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & 1 ? '01' : '00'}`;
  }
  return out;
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
