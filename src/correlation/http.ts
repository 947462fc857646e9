/**
 * The inbound side, run from the http instrumentation's hooks inside the server span's context:
 * adopt the request's ID or use the trace ID, and return it (and the trace) to the client.
 */
import { type IncomingMessage, ServerResponse } from 'node:http';
import { context, type Span } from '@opentelemetry/api';
import type { RPCMetadata } from '@opentelemetry/core';
import { inboundCorrelationId, setRequestCorrelationId } from './context';
import { CORRELATION_ATTRIBUTE } from './id';

const kRequestCorrelation = Symbol('datalab.otel.requestCorrelation');

type CarryingRequest = IncomingMessage & { [kRequestCorrelation]?: string };

/** Called with the server span and its RPC metadata, before the application sees the request. */
export function adoptCorrelationId(span: Span, request: IncomingMessage, rpc: RPCMetadata): string {
  const id = inboundCorrelationId(context.active()) ?? span.spanContext().traceId;
  setRequestCorrelationId(rpc, id);
  markRequestCorrelationId(request, id);
  span.setAttribute(CORRELATION_ATTRIBUTE, id);
  return id;
}

/** Remembers the request's ID for what runs outside its context (the access log). */
export function markRequestCorrelationId(request: IncomingMessage, id: string): void {
  (request as CarryingRequest)[kRequestCorrelation] = id;
}

export function requestCorrelationId(request: IncomingMessage): string | undefined {
  return (request as CarryingRequest)[kRequestCorrelation];
}

/**
 * Response headers: the correlation ID, and W3C `traceresponse` (Trace Context Level 2) so a
 * client can name the trace even when the correlation ID came from outside. Set before the
 * handler runs; a handler may still override them.
 */
export function correlationResponseHook(header: string) {
  return (span: Span, response: unknown): void => {
    if (!(response instanceof ServerResponse) || response.headersSent) return;
    const id = requestCorrelationId(response.req);
    if (id !== undefined) response.setHeader(header, id);
    const sc = span.spanContext();
    response.setHeader(
      'traceresponse',
      `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & 1 ? '01' : '00'}`,
    );
  };
}
