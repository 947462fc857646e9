/**
 * Where the request's correlation ID lives while the request is handled.
 *
 * An ID that arrived with the request is put into the context by the propagator's extract, before
 * anything else runs. The one chosen for a node:http request (that ID, else the trace ID, else a
 * fresh one) is kept on the request record (request/record.ts), which the request's context holds
 * and every context derived from it shares.
 */
import { type Context, createContextKey } from '@opentelemetry/api';
import { recordFrom } from '../request/record';

const CORRELATION_KEY = createContextKey('@datalab/otel correlation id');

export function withCorrelationId(ctx: Context, id: string): Context {
  return ctx.setValue(CORRELATION_KEY, id);
}

/** An ID that came with the request (header or baggage), already validated. */
export function inboundCorrelationId(ctx: Context): string | undefined {
  return ctx.getValue(CORRELATION_KEY) as string | undefined;
}

/** The correlation ID of the request `ctx` belongs to, if any. */
export function correlationIdFrom(ctx: Context): string | undefined {
  return recordFrom(ctx)?.correlationId ?? (ctx.getValue(CORRELATION_KEY) as string | undefined);
}
