/** How a request that got no answer ended: shared by the HTTP metrics, the spans and upgrades. */
import type { Duplex } from 'node:stream';
import { type Span, SpanStatusCode } from '@opentelemetry/api';

/** nginx's "client closed request": the client went away before the response was sent. */
export const CLIENT_CLOSED_REQUEST = 499;

/**
 * The status of a request whose connection closed before the application answered it:
 * - 499 when the client closed it: its FIN (a client that gave up: an abandoned long poll, a
 *   half-sent upload) or its reset (a killed client, a proxy that timed out);
 * - 408 when Node's `server.requestTimeout` expired first (Node itself wrote that answer);
 * - 500 otherwise: the application or the server destroyed the socket, which shows neither.
 */
export function unansweredStatus(socket: Duplex | null | undefined): number {
  if (socket === null || socket === undefined) return 500;
  if (socket.readableEnded) return CLIENT_CLOSED_REQUEST;
  const code = (socket.errored as NodeJS.ErrnoException | null)?.code;
  if (code === 'ECONNRESET' || code === 'EPIPE') return CLIENT_CLOSED_REQUEST;
  return code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 500;
}

/**
 * Makes a server span say what the metrics counted: its status code, and ERROR with
 * `error.type` only for a 5xx (a 499 or another 4xx is not a server error). Every path that ends
 * a server span with a counted status (node:http, node:http2, allowHTTP1, exit) goes through here.
 */
export function applyOutcome(span: Span, status: number, message?: string): void {
  span.setAttribute('http.response.status_code', status);
  if (status < 500) return;
  span.setAttribute('error.type', String(status));
  span.setStatus(
    message === undefined
      ? { code: SpanStatusCode.ERROR }
      : { code: SpanStatusCode.ERROR, message },
  );
}

/** A request still open at exit, as abandonOpen reports it: the status it was counted with. */
export interface AbandonedRequest {
  readonly span: Span;
  readonly status: number;
}
