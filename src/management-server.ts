/**
 * The distro's own HTTP server (`/metrics` now; health endpoints join it later). It never holds
 * the process open, never crashes the app when its port is taken, and its requests are neither
 * counted nor traced (see isOwnServer).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { warn } from './warnings';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface RouteOptions {
  /** Served without the management token (Kubernetes probes cannot send one easily). */
  readonly open?: boolean;
}

/** `Authorization: Bearer <token>`, compared in constant time. */
export function hasBearerToken(header: string | undefined, expected: string): boolean {
  if (header === undefined) return false;
  const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  // Hashing first gives equal lengths, so timingSafeEqual leaks nothing about the length.
  const a = createHash('sha256')
    .update(m[1] as string)
    .digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export class ManagementServer {
  readonly server: Server;
  private readonly routes = new Map<string, { handler: RouteHandler; open: boolean }>();
  private listening = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly token?: string,
  ) {
    this.server = createServer((req, res) => this.handle(req, res));
    // Probes and scrapers keep connections alive between requests. The listening server is
    // unref'd, but accepted sockets would still hold a draining application open.
    this.server.on('connection', (socket) => socket.unref());
    this.server.on('error', (err: NodeJS.ErrnoException) => {
      warn(
        'DLOTEL_PORT_UNAVAILABLE',
        `management server cannot listen on ${host}:${port} (${err.code ?? err.message}); ` +
          '/metrics and /health are not served. Set DATALAB_METRICS_PORT to a free port',
      );
    });
  }

  route(path: string, handler: RouteHandler, options: RouteOptions = {}): this {
    this.routes.set(path, { handler, open: options.open === true });
    return this;
  }

  start(): void {
    this.server.listen(this.port, this.host, () => {
      this.listening = true;
    });
    this.server.unref();
  }

  /** Resolves once closed; idle keep-alive sockets (Prometheus keeps one) are closed too. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.listening) return resolve();
      this.listening = false;
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const route = this.routes.get(path);
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not Found\n');
      return;
    }
    if (
      this.token !== undefined &&
      !route.open &&
      !hasBearerToken(req.headers.authorization, this.token)
    ) {
      res
        .writeHead(401, {
          'www-authenticate': 'Bearer realm="datalab-otel management"',
          'content-type': 'text/plain; charset=utf-8',
        })
        .end('Unauthorized\n');
      return;
    }
    const { handler } = route;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    Promise.resolve()
      .then(() => handler(req, res))
      .catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`internal error: ${err instanceof Error ? err.message : 'unknown'}\n`);
      });
  }
}
