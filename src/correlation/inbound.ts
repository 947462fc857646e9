/**
 * Inbound requests when no span leaves the process (metrics only: no trace exporter and no local
 * trace file). instrumentation-http's server side would build a server span's attributes, a
 * non-recording span and its hooks for every request only to drop them (the bulk of the +50 µs
 * per node:http request measured in docs/performance.md). What the request still needs is a
 * context holding the propagated trace and the correlation ID, for log lines and outbound calls
 * (SPEC §5), and the ID in the response header. So in that mode the http instrumentation handles
 * outbound requests only, and this sets the inbound context, wrapping `Server.prototype.emit` as
 * instrumentation-http does.
 */
import { randomFillSync } from 'node:crypto';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
import {
  type Context,
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  trace,
} from '@opentelemetry/api';
import { injectFault } from '../faults';
import { warnOnce } from '../warnings';
import { inboundCorrelationId, withCorrelationId } from './context';
import { markRequestCorrelationId } from './http';

type Emit = (this: Server, event: string | symbol, ...args: unknown[]) => boolean;
type Patchable = { emit: Emit };

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

export interface InboundOptions {
  readonly header: string;
  /** The distro's own management server: its requests get no context and no header. */
  readonly isOwnServer: (server: Server) => boolean;
}

/**
 * Wraps the `emit` of http and https servers, for the life of the process: like the
 * instrumentations, it stays in place at shutdown, so requests served while telemetry flushes
 * keep their correlation IDs.
 */
export function enableInboundContext(options: InboundOptions): void {
  wrapEmit(http.Server.prototype as unknown as Patchable, options);
  wrapEmit(https.Server.prototype as unknown as Patchable, options);
}

function wrapEmit(proto: Patchable, options: InboundOptions): void {
  const original = proto.emit;
  const { header, isOwnServer } = options;
  // `arguments` rather than rest parameters: every server event passes through here, and only
  // 'request' needs more than a comparison.
  proto.emit = function emit(this: Server, event: string | symbol) {
    // biome-ignore lint/complexity/noArguments: see above
    const all = arguments as unknown as Parameters<Emit>;
    if (event !== 'request' || isOwnServer(this)) return original.apply(this, all);
    const request = all[1] as IncomingMessage;
    const response = all[2] as ServerResponse;
    let ctx: Context;
    try {
      injectFault('inbound-context');
      const inbound = inboundContext(request);
      ctx = inbound.ctx;
      markRequestCorrelationId(request, inbound.id);
      if (!response.headersSent) response.setHeader(header, inbound.id);
    } catch (err) {
      // The request goes on without a correlation ID rather than not at all.
      warnOnce(
        'DLOTEL_INTERNAL_ERROR',
        'inbound-context',
        `inbound request context failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
      );
      return original.apply(this, all);
    }
    return context.with(ctx, original, this, event, request, response);
  };
}
