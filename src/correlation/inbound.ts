/**
 * Correlation IDs of inbound requests (SPEC §5): the one that came with the request, else the
 * upstream trace's ID, else a fresh one. node:http requests apply the rule in
 * request/lifecycle.ts, node:http2 exchanges through inboundContext.
 */
import { randomFillSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  type Context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  trace,
} from '@opentelemetry/api';
import { inboundCorrelationId, withCorrelationId } from './context';

const ID_BYTES = 16;
// One random fill per 256 IDs: an ID per request must not cost a system call per request.
const idPool = Buffer.allocUnsafe(ID_BYTES * 256);
let idOffset = idPool.length;

/** 32 lower-case hex characters, the shape of a trace ID, from the CSPRNG. */
export function newCorrelationId(): string {
  if (idOffset === idPool.length) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  const id = idPool.toString('hex', idOffset, idOffset + ID_BYTES);
  idOffset += ID_BYTES;
  return id;
}

/**
 * The inbound request's context: what the propagators extract, plus a correlation ID: the one
 * that came with the request, else the upstream trace's ID (a lookup key for that trace), else a
 * fresh one.
 */
export function inboundContext(request: IncomingMessage): { ctx: Context; id: string } {
  let ctx = propagation.extract(ROOT_CONTEXT, request.headers);
  let id = inboundCorrelationId(ctx);
  if (id === undefined) {
    const parent = trace.getSpanContext(ctx);
    id = parent !== undefined && isSpanContextValid(parent) ? parent.traceId : newCorrelationId();
    ctx = withCorrelationId(ctx, id);
  }
  return { ctx, id };
}
