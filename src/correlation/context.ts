/**
 * Where the request's correlation ID lives while the request is handled.
 *
 * An ID that arrived with the request is put into the context by the propagator's extract, before
 * the server span exists. A generated one (the trace ID) can only be chosen once the server span
 * exists, inside a context the http instrumentation has already created and that we cannot
 * replace; it is kept on that context's RPC metadata object, which every context derived from it
 * shares.
 */
import { type Context, createContextKey } from '@opentelemetry/api';
import { getRPCMetadata, type RPCMetadata } from '@opentelemetry/core';

const CORRELATION_KEY = createContextKey('@datalab/otel correlation id');
const kCorrelationId = Symbol('datalab.otel.correlationId');

type CarryingRpc = RPCMetadata & { [kCorrelationId]?: string };

export function withCorrelationId(ctx: Context, id: string): Context {
  return ctx.setValue(CORRELATION_KEY, id);
}

/** An ID that came with the request (header or baggage), already validated. */
export function inboundCorrelationId(ctx: Context): string | undefined {
  return ctx.getValue(CORRELATION_KEY) as string | undefined;
}

export function setRequestCorrelationId(rpc: RPCMetadata, id: string): void {
  (rpc as CarryingRpc)[kCorrelationId] = id;
}

/** The correlation ID of the request `ctx` belongs to, if any. */
export function correlationIdFrom(ctx: Context): string | undefined {
  const rpc = getRPCMetadata(ctx) as CarryingRpc | undefined;
  return rpc?.[kCorrelationId] ?? (ctx.getValue(CORRELATION_KEY) as string | undefined);
}
