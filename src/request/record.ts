/**
 * One record per inbound node:http request: what every part of the distro knows about the
 * request, kept in one place instead of properties spread over objects the distro does not own.
 * It is made when Node announces the request (the `http.server.request.start` diagnostics channel,
 * before any application code), completed when the request enters the server's `request` event
 * (context, correlation ID, server span), and read when the response closes by the metrics, the
 * access log and the server span. Metrics-only and traced mode differ only in `span`.
 *
 * Its first fields have the shape of OpenTelemetry's RPC metadata and it is stored in the
 * request's context under that key: framework instrumentations (Express) write the matched route
 * into it, and the log-line fields and span processors find the correlation ID through it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, Span } from '@opentelemetry/api';
import { getRPCMetadata, RPCType } from '@opentelemetry/core';

const kRecord = Symbol('datalab.otel.request');

type CarryingRequest = IncomingMessage & { [kRecord]?: RequestRecord };

export class RequestRecord {
  readonly type = RPCType.HTTP;
  /** The route template: an instrumentation's (RPC metadata), settled when the request is counted. */
  route: string | undefined = undefined;
  /** The template a route source (src/routes/) read from the framework itself: it wins over
   * `route`, which a framework instrumentation may overwrite with a guess of its own (Koa's
   * drops a koa-mount prefix). */
  template: string | undefined = undefined;
  /** A framework router handled the request and matched no route: counted as `__unmatched__`,
   * with no `http.route` on its span. A route set later (a fallback route) wins. */
  unmatched = false;
  /** The server span, when spans leave the process. */
  span: Span | undefined = undefined;
  /** The context the application's handlers run in. */
  ctx: Context | undefined = undefined;
  correlationId: string | undefined = undefined;
  /** The trace the request belongs to: its server span's, else the propagated caller's. */
  traceId: string | undefined = undefined;
  /** The server span was ended early (the handler threw, the response emitted an error). */
  spanEnded = false;
  /** Counted and closed: nothing more happens to it. */
  done = false;

  constructor(
    readonly request: IncomingMessage,
    readonly response: ServerResponse,
    /** performance.now() when Node announced the request. */
    readonly startTime: number,
    /** Whether the HTTP metrics count it (not once they are stopped at shutdown). */
    readonly counted: boolean,
  ) {
    (request as CarryingRequest)[kRecord] = this;
  }
}

export function recordOf(request: IncomingMessage | undefined): RequestRecord | undefined {
  return (request as CarryingRequest | undefined)?.[kRecord];
}

/** The record of the request `ctx` belongs to, if any. */
export function recordFrom(ctx: Context): RequestRecord | undefined {
  const rpc = getRPCMetadata(ctx);
  return rpc instanceof RequestRecord ? rpc : undefined;
}

/** W3C `traceresponse` (Trace Context Level 2) for a span. */
export function traceResponse(span: Span): string {
  const sc = span.spanContext();
  return `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & 1 ? '01' : '00'}`;
}
