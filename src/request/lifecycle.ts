/**
 * The life of an inbound node:http request, in one place for both modes: the record is made when
 * Node announces the request, the context (propagated trace, correlation ID, server span when
 * tracing) is entered around the server's `request` event, and one `close` listener on the
 * response counts it, writes the access log line and ends the span. This replaces
 * instrumentation-http's server side, which with the distro's own metrics made every request pay
 * for two sets of listeners, two wrappers and its attribute objects (docs/performance.md).
 *
 * Per request: one record, one `close` listener (two when queued behind another pipelined
 * response), the propagators' extract, one context, and when tracing one span whose attributes
 * are built once.
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import diagnosticsChannel from 'node:diagnostics_channel';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import {
  type Context,
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { type RPCMetadata, setRPCMetadata, suppressTracing } from '@opentelemetry/core';
import { inboundCorrelationId } from '../correlation/context';
import { CORRELATION_ATTRIBUTE } from '../correlation/id';
import { newCorrelationId } from '../correlation/inbound';
import { injectFault } from '../faults';
import { type HttpServerMetrics, responseStatus } from '../metrics/http';
import { OpenList } from '../metrics/open-list';
import type { AbandonedRequest } from '../metrics/outcome';
import { warnOnce } from '../warnings';
import { RequestRecord, recordOf } from './record';
import { installHeaderMerge, setTraceHeaders } from './response-headers';
import { endServerSpan, failServerSpan, serverSpanAttributes } from './server-span';

const REQUEST_START_CHANNEL = 'http.server.request.start';

interface RequestStartMessage {
  request: IncomingMessage;
  response: ServerResponse;
  server: Server;
}

export interface InboundOptions {
  /** The correlation ID response header. */
  readonly header: string;
  /** The distro's own management server: its requests are not counted, traced or correlated. */
  readonly isOwnServer: (server: Server | undefined) => boolean;
  readonly metrics: HttpServerMetrics;
  /** Makes the server spans: set when spans leave the process and `http` is instrumented. */
  readonly tracer: Tracer | undefined;
  /** DATALAB_EXIT_FLUSH_TIMEOUT_MS > 0: requests still open at exit are counted then. */
  readonly trackOpen: boolean;
}

type Emit = (this: Server, event: string | symbol, ...args: unknown[]) => boolean;
type Patchable = { emit: Emit };
// biome-ignore lint/suspicious/noExplicitAny: the emitters' own `this`
type EmitFn = (this: any, ...args: unknown[]) => boolean;

let emitWrapped = false;

export class InboundRequests {
  private counting = false;
  private readonly open: OpenList<RequestRecord> | undefined;
  private readonly onRequestStart: (message: unknown) => void;
  private readonly onResponseClose: (this: ServerResponse) => void;
  private readonly onRequestClose: (this: IncomingMessage) => void;

  constructor(private readonly options: InboundOptions) {
    this.open = options.trackOpen ? new OpenList() : undefined;
    // Created once; per request only the response (and a queued request) get a listener.
    this.onRequestStart = (message) => {
      try {
        const { request, response, server } = message as RequestStartMessage;
        injectFault('http-metrics-start');
        if (this.options.isOwnServer(server)) return;
        this.track(new RequestRecord(request, response, performance.now(), true));
      } catch (err) {
        reportInternal('http-metrics', 'HTTP metrics hook', err);
      }
    };
    const self = this;
    this.onResponseClose = function (this: ServerResponse) {
      const record = recordOf(this.req);
      if (record !== undefined) self.finish(record);
    };
    // Pipelined requests queued behind another one never get a response 'close' when the
    // socket dies; Node destroys their request with an error instead.
    this.onRequestClose = function (this: IncomingMessage) {
      const record = recordOf(this);
      if (record !== undefined && this.errored) self.finish(record);
    };
  }

  enable(): void {
    if (this.counting) return;
    diagnosticsChannel.subscribe(REQUEST_START_CHANNEL, this.onRequestStart);
    this.counting = true;
    this.options.metrics.enable();
    if (this.options.tracer !== undefined) installHeaderMerge(this.options.header);
    if (!emitWrapped) {
      emitWrapped = true;
      // For the life of the process, like the instrumentations: requests served while telemetry
      // flushes at shutdown keep their context and correlation IDs.
      this.wrapEmit(http.Server.prototype as unknown as Patchable, 'http');
      this.wrapEmit(https.Server.prototype as unknown as Patchable, 'https');
    }
  }

  /** At shutdown: requests that arrive from now on are not counted (they keep their context). */
  disable(): void {
    if (!this.counting) return;
    diagnosticsChannel.unsubscribe(REQUEST_START_CHANNEL, this.onRequestStart);
    this.counting = false;
    this.options.metrics.disable();
  }

  private track(record: RequestRecord): void {
    if (record.counted) this.options.metrics.inFlight++;
    this.open?.add(record);
    // 'close' fires once for every response: after 'finish', or when the socket dies first.
    record.response.on('close', this.onResponseClose);
    // A pipelined request queued behind another response (which holds the socket) gets no
    // response 'close' if the socket dies: only those need a listener on the request.
    const holder = (record.request.socket as { _httpMessage?: unknown } | null)?._httpMessage;
    if (holder != null && holder !== record.response) {
      record.request.on('close', this.onRequestClose);
    }
  }

  /**
   * The request enters the application: its context, correlation ID, response headers and (when
   * tracing) server span. Also used for HTTP/1.1 requests on an `allowHTTP1` HTTP/2 server
   * (http2.ts), whose `request` event is not a node:http server's.
   */
  begin(request: IncomingMessage, response: ServerResponse, component: string): Context {
    injectFault('inbound-context');
    let record = recordOf(request);
    if (record === undefined || record.response !== response) {
      // Not announced on the channel: metrics stopped (shutdown), or a server Node does not report.
      record = new RequestRecord(request, response, performance.now(), false);
      this.track(record);
    }
    let ctx = propagation.extract(ROOT_CONTEXT, request.headers);
    const inbound = inboundCorrelationId(ctx);
    let id = inbound;
    const tracer = this.options.tracer;
    if (tracer !== undefined) {
      const span = tracer.startSpan(
        request.method || 'GET',
        { kind: SpanKind.SERVER, attributes: serverSpanAttributes(request, component) },
        ctx,
      );
      record.span = span;
      record.traceId = span.spanContext().traceId;
      if (id === undefined) {
        // An ID that came with the request was put on the span by the correlation span processor.
        id = record.traceId;
        span.setAttribute(CORRELATION_ATTRIBUTE, id);
      }
      ctx = trace.setSpan(ctx, span);
      if (!response.headersSent) setTraceHeaders(response, span);
    } else {
      const parent = trace.getSpanContext(ctx);
      if (parent !== undefined && isSpanContextValid(parent)) record.traceId = parent.traceId;
      // Else the upstream trace's ID (a lookup key for that trace), else a fresh one.
      id ??= record.traceId ?? newCorrelationId();
    }
    record.correlationId = id;
    ctx = setRPCMetadata(ctx, record as unknown as RPCMetadata);
    record.ctx = ctx;
    if (!response.headersSent) response.setHeader(this.options.header, id);
    // Body parsers read the request from its 'data' events, which Node emits in the context of
    // the connection: events of the request and the response run in the request's context.
    (request as unknown as { emit: unknown }).emit = requestEmit;
    (response as unknown as { emit: unknown }).emit = responseEmit;
    return ctx;
  }

  private wrapEmit(proto: Patchable, component: string): void {
    const original = proto.emit;
    const self = this;
    const { isOwnServer } = this.options;
    // `arguments` rather than rest parameters: every server event passes through here, and only
    // 'request' needs more than a comparison.
    proto.emit = function emit(this: Server, event: string | symbol) {
      // biome-ignore lint/complexity/noArguments: see above
      const all = arguments as unknown as Parameters<Emit>;
      if (event !== 'request') return original.apply(this, all);
      const request = all[1] as IncomingMessage;
      const response = all[2] as ServerResponse;
      if (isOwnServer(this)) {
        return context.with(
          suppressTracing(context.active()),
          original,
          this,
          event,
          request,
          response,
        );
      }
      let ctx: Context;
      try {
        ctx = self.begin(request, response, component);
      } catch (err) {
        // The request goes on without telemetry context rather than not at all.
        reportInternal('inbound-context', 'inbound request context', err);
        return original.apply(this, all);
      }
      try {
        return context.with(ctx, original, this, event, request, response);
      } catch (err) {
        self.handlerThrew(request, err);
        throw err;
      }
    };
  }

  private handlerThrew(request: IncomingMessage, err: unknown): void {
    try {
      const record = recordOf(request);
      if (record?.span !== undefined && !record.spanEnded) {
        record.spanEnded = true;
        failServerSpan(record.span, err);
      }
    } catch (hookErr) {
      reportInternal('span-outcome', 'server span', hookErr);
    }
  }

  /** The response closed (or a pipelined request died): counted and its span ended, once. */
  private finish(record: RequestRecord): void {
    try {
      if (record.done) return;
      record.done = true;
      injectFault('http-metrics-finish');
      this.open?.delete(record);
      const status = responseStatus(record.response);
      const seconds = (performance.now() - record.startTime) / 1000;
      // Counted first: the metrics settle the route template the span reports.
      if (record.counted) {
        this.options.metrics.inFlight--;
        this.options.metrics.count(record, status, seconds);
      }
      const span = record.span;
      if (span !== undefined && !record.spanEnded) {
        record.spanEnded = true;
        endServerSpan(span, record.request.method, record.route, status);
      }
    } catch (err) {
      reportInternal('http-metrics', 'HTTP metrics hook', err);
    }
  }

  /**
   * The process is exiting with these requests still open (shutdown.ts): each is counted now
   * (one that never sent its headers as unanswered, 500) and its server span, when traced, is
   * returned with that status for the caller to end the same way, since no 'close' will come.
   */
  abandonOpen(): AbandonedRequest[] {
    const abandoned: AbandonedRequest[] = [];
    if (this.open === undefined) return abandoned;
    for (const record of this.open.toArray()) {
      try {
        const span = record.spanEnded ? undefined : record.span;
        record.spanEnded = true;
        if (record.done) continue;
        record.done = true;
        this.open.delete(record);
        const status = responseStatus(record.response);
        if (record.counted) {
          this.options.metrics.inFlight--;
          this.options.metrics.count(record, status, (performance.now() - record.startTime) / 1000);
        }
        if (span !== undefined) abandoned.push({ span, status });
      } catch (err) {
        reportInternal('http-metrics', 'HTTP metrics hook', err);
      }
    }
    return abandoned;
  }
}

/**
 * The AsyncLocalStorage behind the context manager the distro registered, when it is the one in
 * use: events then enter the request's context without the bound copy of the emitter that
 * `context.with` makes per call. Else `context.with`.
 */
let storage: AsyncLocalStorage<Context> | undefined;

export function useContextStorage(als: AsyncLocalStorage<Context> | undefined): void {
  storage = als;
}

function applyEmit(emit: EmitFn, target: unknown, args: IArguments): boolean {
  return emit.apply(target, args as unknown as unknown[]);
}

function emitIn(ctx: Context, emit: EmitFn, target: unknown, args: IArguments): boolean {
  if (storage !== undefined) return storage.run(ctx, applyEmit, emit, target, args);
  return context.with(ctx, applyEmit, undefined, emit, target, args);
}

// `arguments` rather than rest parameters in both: every event of every request passes here.
function requestEmit(this: IncomingMessage, event: string | symbol): boolean {
  const emit = (Object.getPrototypeOf(this) as { emit: EmitFn }).emit;
  const ctx = recordOf(this)?.ctx;
  // An event nobody listens to needs no context (most of a request's: 'end', 'close', …).
  if (ctx === undefined || this.listenerCount(event) === 0) {
    // biome-ignore lint/complexity/noArguments: see above
    return emit.apply(this, arguments as never);
  }
  // biome-ignore lint/complexity/noArguments: see above
  return emitIn(ctx, emit, this, arguments);
}

function responseEmit(this: ServerResponse, event: string | symbol, error?: unknown): boolean {
  const emit = (Object.getPrototypeOf(this) as { emit: EmitFn }).emit;
  const record = recordOf(this.req);
  const ctx = record?.ctx;
  // biome-ignore lint/complexity/noArguments: see above
  if (ctx === undefined) return emit.apply(this, arguments as never);
  if (event === 'error' && record?.span !== undefined && !record.spanEnded) {
    // instrumentation-http ends the span on the response's errors, before any listener runs.
    try {
      record.spanEnded = true;
      failServerSpan(record.span, error);
    } catch (err) {
      reportInternal('span-outcome', 'server span', err);
    }
  }
  // biome-ignore lint/complexity/noArguments: see above
  if (this.listenerCount(event) === 0) return emit.apply(this, arguments as never);
  // biome-ignore lint/complexity/noArguments: see above
  return emitIn(ctx, emit, this, arguments);
}

function reportInternal(key: string, what: string, err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    key,
    `${what} failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
  );
}
