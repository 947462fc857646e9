/**
 * The three probes over HTTP, for the management server (`/health`, `/health/live`,
 * `/health/ready`) and for the application's own server (healthHandler(): Express middleware or
 * a plain node:http helper).
 *
 * - `/health`: the full report; 200 for healthy and degraded, 503 for unhealthy.
 * - `/health/live`: answers as long as the process and its event loop do; never runs checks, so
 *   a failing dependency never gets a pod restarted.
 * - `/health/ready`: 200 only when no critical check fails and the process is not shutting down.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeError, type HealthChecker, httpStatusFor } from './runner';

export type Probe = 'health' | 'live' | 'ready';

const HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  // A cached probe answer would hide a change of state; the distro caches checks itself.
  'cache-control': 'no-store',
};

function send(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  if (res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { ...HEADERS, 'content-length': Buffer.byteLength(text) });
  res.end(req.method === 'HEAD' ? undefined : text);
}

export async function answerProbe(
  checker: HealthChecker,
  probe: Probe,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  if (probe === 'live') return send(req, res, 200, checker.liveness());
  if (probe === 'ready') {
    const readiness = await checker.readiness();
    return send(req, res, readiness.ready ? 200 : 503, readiness);
  }
  const report = await checker.report();
  send(req, res, httpStatusFor(report.status), report);
}

/** Routes for ManagementServer.route (which answers 405 to other methods itself). */
export function managementRoutes(
  checker: HealthChecker,
): [
  path: string,
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  options: { open: boolean },
][] {
  // The full report names dependencies and versions: behind the management token when one is
  // set. Liveness and readiness reveal nothing and must stay reachable for probes.
  return [
    ['/health', (req, res) => answerProbe(checker, 'health', req, res), { open: false }],
    ['/health/live', (req, res) => answerProbe(checker, 'live', req, res), { open: true }],
    ['/health/ready', (req, res) => answerProbe(checker, 'ready', req, res), { open: true }],
  ];
}

export interface HealthHandlerOptions {
  /** Base path of the report; `/live` and `/ready` are served under it (default `/health`). */
  readonly path?: string;
}

/**
 * `(req, res, next?) => boolean`: answers the request and returns true when it is for one of
 * the probes; otherwise calls `next()` (Express) or leaves the request alone and returns false
 * (node:http).
 */
export type HealthRequestHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next?: (err?: unknown) => void,
) => boolean;

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const end = raw.search(/[?#]/);
  const path = end === -1 ? raw : raw.slice(0, end);
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

export function createHealthHandler(
  checker: () => HealthChecker,
  options: HealthHandlerOptions = {},
): HealthRequestHandler {
  const base = pathOf(options.path ?? '/health');
  const probes = new Map<string, Probe>([
    [base, 'health'],
    [`${base === '/' ? '' : base}/live`, 'live'],
    [`${base === '/' ? '' : base}/ready`, 'ready'],
  ]);
  return (req, res, next) => {
    // Express strips the mount path into req.baseUrl: `app.use('/health', h)` sees `/ready`,
    // a router mounted at `/api` sees `/health`. Either spelling of the path may match.
    const { baseUrl } = req as IncomingMessage & { baseUrl?: string };
    const relative = pathOf(req.url);
    const full = pathOf(`${baseUrl ?? ''}${relative === '/' ? '' : relative}` || '/');
    const probe = probes.get(full) ?? probes.get(relative);
    if (probe === undefined) {
      if (typeof next === 'function') next();
      return false;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return true;
    }
    answerProbe(checker(), probe, req, res).catch((err: unknown) => {
      if (typeof next === 'function' && !res.headersSent) return next(err);
      send(req, res, 500, { error: `health check failed: ${describeError(err)}` });
    });
    return true;
  };
}
