/** How a request that got no answer ended: shared by the HTTP metrics, the spans and upgrades. */
import type { Duplex } from 'node:stream';

/** nginx's "client closed request": the client went away before the response was sent. */
export const CLIENT_CLOSED_REQUEST = 499;

/**
 * Whether the client closed the connection: its FIN (a client that gave up: an abandoned long
 * poll, a half-sent upload) or its reset (a killed client, a proxy that timed out). A socket the
 * application or the server destroyed itself shows neither.
 */
export function clientClosed(socket: Duplex | null | undefined): boolean {
  if (socket === null || socket === undefined) return false;
  if (socket.readableEnded) return true;
  const code = (socket.errored as NodeJS.ErrnoException | null)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE';
}
